"""Privacy: export everything held about a customer; delete it, with a tombstone downstream."""
