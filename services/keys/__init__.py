"""The keys records are sealed with (crypto-shredding): kept in PostgreSQL, deleted on erasure."""
