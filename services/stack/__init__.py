"""The embedded stack: Tansu (Kafka protocol) and PostgreSQL as child processes."""
