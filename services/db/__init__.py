"""PostgreSQL access: connection pools, migrations, queries."""
