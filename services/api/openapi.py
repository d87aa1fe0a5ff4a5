"""The OpenAPI document: FastAPI's own routes plus every route the adapters declare."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from channels.base import Audience, ChannelAdapter, Route, WebhookAdapter

REF = "#/components/schemas/{model}"


def install(app: FastAPI, adapters: Mapping[str, ChannelAdapter]) -> None:
    """Make ``app.openapi()`` describe the adapters' routes too (served by ChannelRoutes)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            add_channel_routes(schema, adapters)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def add_channel_routes(schema: dict[str, Any], adapters: Mapping[str, ChannelAdapter]) -> None:
    """Add a path item for each declared route, with its models in the components."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    paths = schema.setdefault("paths", {})
    for name, adapter in sorted(adapters.items()):
        if not isinstance(adapter, WebhookAdapter):
            continue
        for route in adapter.routes:
            path = route.full_path(name)
            for method in route.methods:
                paths.setdefault(path, {})[method.lower()] = _operation(
                    name, route, method, components
                )
    if any(
        route.scopes
        for adapter in adapters.values()
        if isinstance(adapter, WebhookAdapter)
        for route in adapter.routes
    ):
        schemes = schema["components"].setdefault("securitySchemes", {})
        schemes.setdefault("bearer", {"type": "http", "scheme": "bearer"})


def _ref(model: type[Any], components: dict[str, Any]) -> dict[str, str]:
    _, top = models_json_schema([(model, "validation")], ref_template=REF)
    components.update(top.get("$defs", {}))
    return {"$ref": REF.format(model=model.__name__)}


def _operation(name: str, route: Route, method: str, components: dict[str, Any]) -> dict[str, Any]:
    slug = re.sub(r"[^a-z0-9]+", "_", f"{name} {method} {route.path}".lower()).strip("_")
    ok: dict[str, Any] = {"description": "accepted once the broker acknowledged"}
    if route.response_model is not None:
        ok["content"] = {"application/json": {"schema": _ref(route.response_model, components)}}
    responses: dict[str, Any] = {str(route.status): ok}
    if route.audience is Audience.CLIENT:
        responses["401"] = {"description": "no valid bearer token"}
        responses["422"] = {"description": "the body cannot be read; the reasons as JSON"}
    else:
        responses["403"] = {"description": "the provider's signature is missing or wrong"}
    responses["413"] = {"description": "the body is larger than the route takes"}
    responses["503"] = {"description": "the broker did not acknowledge; retry later"}
    operation: dict[str, Any] = {
        "tags": [f"channel: {name}"],
        "summary": route.summary or f"{name} {route.path}",
        "operationId": slug,
        "responses": responses,
    }
    if route.request_model is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(route.request_model, components)}},
        }
    if route.scopes:
        operation["security"] = [{"bearer": []}]
    return operation
