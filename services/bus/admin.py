"""Create omnihub's topics (idempotent) from the definitions in schemas.topics."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from schemas.topics import ALL_TOPICS, TopicSpec

log = logging.getLogger(__name__)


async def ensure_topics(
    bootstrap: str, topics: tuple[TopicSpec, ...] = ALL_TOPICS, replication: int = 1
) -> list[str]:
    """Create whichever topics do not exist yet; return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="omnihub-admin")
    for attempt in range(50):
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            if attempt == 49:
                raise
            await asyncio.sleep(0.2)
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t.name not in existing]
        created = []
        for spec in missing:
            try:
                await admin.create_topics([NewTopic(spec.name, spec.partitions, replication)])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass
        if created:
            log.info("created topics: %s", ", ".join(created))
        return created
    finally:
        await admin.close()
