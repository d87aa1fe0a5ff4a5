"""Channel adapters: verify, parse and publish what a channel sends; send replies out on it."""
