"""What the processors' agents share: the worker's pool and producer, the identity rules, the
published marks and the adapters that read staged inputs."""

from __future__ import annotations

from services.config import Settings
from services.identity.rules import load_rules
from services.keys.reader import SealedReader
from services.processors.route import PublishedMarks
from services.processors.staged import stagers_for
from services.worker.resources import Resources


class ProcessorResources(Resources):
    """The worker's resources, with the identity rules (loaded now: a bad file stops the
    worker at start) and the marks of routed events published."""

    def __init__(
        self, settings: Settings, bootstrap: str, database_url: str, *, client_id: str
    ) -> None:
        super().__init__(settings, bootstrap, database_url, client_id=client_id)
        self.identity_rules = load_rules(settings.identity_rules)
        self.marks = PublishedMarks()
        self.reader = SealedReader()  # opens the raw records, sealed with their period's key
        self.stagers = stagers_for(settings, self.producer, self.keyring)

    async def close(self, *args: object, **kwargs: object) -> None:
        """Land the pending published marks, close the staging adapters, then flush the
        producer and close the pool (a faust signal receiver)."""
        await self.marks.flush()
        await self.stagers.close()
        await super().close(*args, **kwargs)
