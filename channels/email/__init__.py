"""Email: the channel of issue #29 (MIME parsing so far; not registered as a channel yet)."""
