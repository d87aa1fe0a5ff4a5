"""Kafka helpers on aiokafka: producer, consumer, records, topics, dead letters."""
