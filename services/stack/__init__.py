"""The embedded stack: Tansu (Kafka protocol, durable on SeaweedFS or in memory) and PostgreSQL
as child processes."""
