"""`omnihub bench`: throughput and latency of the whole hub on this machine, as JSON."""
