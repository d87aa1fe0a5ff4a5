"""Generate the committed JSON Schemas from the models: ``python -m schemas.jsonschema``
(which also regenerates the AsyncAPI document, ``schemas/asyncapi.yaml``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from schemas.events import (
    CustomerEvent,
    DeliveryStatus,
    Interaction,
    OutboundCommand,
    PeriodKey,
    RoutedEvent,
    StagedInput,
    UnifiedEvent,
)

SCHEMA_DIR = Path(__file__).parent / "json"

MODELS: dict[str, type[BaseModel]] = {
    "interaction.v1": Interaction,
    "unified.v1": UnifiedEvent,
    "routed.v1": RoutedEvent,
    "outbound.v1": OutboundCommand,
    "delivery.v1": DeliveryStatus,
    "customer.v1": CustomerEvent,
    "periodkey.v1": PeriodKey,
    "staged.v1": StagedInput,
}


def render(model: type[BaseModel], name: str) -> str:
    """Return the JSON Schema text of one model, stable across runs."""
    schema = model.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://omnihub.dev/schemas/{name}.schema.json"
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def rendered() -> dict[str, str]:
    """Return every schema file's name and expected text."""
    return {f"{name}.schema.json": render(model, name) for name, model in MODELS.items()}


def main() -> int:
    """Write every schema file and the AsyncAPI document built from them; print what changed."""
    from schemas import asyncapi  # it imports this module

    SCHEMA_DIR.mkdir(exist_ok=True)
    for filename, text in rendered().items():
        path = SCHEMA_DIR / filename
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path}")
    return asyncapi.main()


if __name__ == "__main__":
    sys.exit(main())
