"""The processors' stage agent: staged inputs go back to the adapter they name; one naming no
staging adapter is dead-lettered with the reason, never dropped, never stopping the agent."""

from __future__ import annotations

from typing import Any

import pytest

from schemas import StagedInput
from schemas.cloudevents import ERROR_HEADER, STAGE_HEADER, header_map
from schemas.topics import DEADLETTER
from services.bus.producer import Producer
from tests.support import eventually, opened_values, read_all, sealing_publisher, unique

pytestmark = pytest.mark.usefixtures("processors")


@pytest.mark.parametrize("adapter", ["nosuch", "twilio"])  # unknown; known but never stages
async def test_an_input_for_no_staging_adapter_is_dead_lettered_with_the_reason(
    stack: Any, producer: Producer, pool: Any, adapter: str
) -> None:
    publisher = await sealing_publisher(producer, stack.database_url)
    payload = unique("staged").encode()
    await publisher.stage(
        StagedInput(adapter=adapter, via="test", order_key="someone", payload=payload)
    )

    async def dead_letters() -> list[str]:
        records = [
            r
            for r in await read_all(stack.bootstrap, DEADLETTER.name)
            if header_map(r.headers).get(STAGE_HEADER) == "stage"
        ]
        values = await opened_values(pool, records)
        return [
            header_map(record.headers).get(ERROR_HEADER, "")
            for record, value in zip(records, values, strict=True)
            if value is not None and payload in StagedInput.model_validate_json(value).payload
        ]

    [reason] = await eventually(dead_letters, timeout=30)
    assert reason == f"no staging adapter named {adapter!r} is installed"
