"""The hub's HTTP app (FastAPI): API channel, customers, timeline, health, metrics."""
