"""The OpenAPI document: every answer of every API route, so clients (and the fuzz run,
tests/test_fuzz.py) can hold the API to it.

FastAPI describes its routes' parameters, bodies and successes, and each route declares the
refusals only it gives (``responses=``, ``services.api.errors.answers``: 404, 409, ...). What
every route of a kind answers is added here, once, from what the route needs: a bearer token
means 401 and 403 (and 503, since tokens are looked up in PostgreSQL), a body 400 (not UTF-8)
and 413, and FastAPI's 422 gets the shapes the hub really answers. The adapters' routes,
which ``ChannelRoutes`` serves without FastAPI, are described from their ``Route``
declarations by the same rules. The console's pages are not API: left out
(``include_in_schema``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.routing import BaseRoute

from channels.base import Audience, ChannelAdapter, Route, WebhookAdapter
from channels.base.webhook import PLAIN_TEXT, Refusal
from services.api.auth import Require
from services.api.errors import AUTHENTICATE_HEADER, RETRY_AFTER_HEADER, Error, Invalid

REF = "#/components/schemas/{model}"
JSON = "application/json"
TEXT = {"schema": {"type": "string"}}
#: FastAPI's own 422 models, replaced by ``Invalid`` (dropped when nothing refers to them).
FASTAPI_INVALID = ("HTTPValidationError", "ValidationError")

BEARER = {
    "type": "http",
    "scheme": "bearer",
    "description": "an API token (`omnihub token create`); the operation lists the scopes it needs",
}
UNAUTHORIZED = "no bearer token, or an unknown or revoked one"
FORBIDDEN = "the token lacks the scope the route needs (named in `detail`)"
DATABASE_DOWN = "PostgreSQL, where tokens are looked up, is unavailable; retry"
TOO_LARGE = "the body is larger than the route takes"
UNREADABLE = "the body cannot be decoded (JSON that is not UTF-8)"
INVALID = "the request does not validate: one entry per problem, or the reason in words"


def install(app: FastAPI, adapters: Mapping[str, ChannelAdapter]) -> None:
    """Make ``app.openapi()`` describe every answer, and the adapters' routes too."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            describe_routes(schema, app.routes)
            add_channel_routes(schema, adapters)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def describe_routes(schema: dict[str, Any], routes: Iterable[BaseRoute]) -> None:
    """Add to each FastAPI operation the answers its kind of route gives (see the module)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for route in iter_route_contexts(list(routes)):  # included routers' routes too
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        scopes = required_scopes(route.dependant)
        for method in route.methods or ():
            operation = schema["paths"][route.path_format][method.lower()]
            responses = operation["responses"]
            if "422" in responses:
                responses["422"] = answer(INVALID, {JSON: _schema(Invalid, components)})
            if "requestBody" in operation:
                error = {JSON: _schema(Error, components)}
                responses.setdefault("400", answer(UNREADABLE, error))
                responses.setdefault("413", answer(TOO_LARGE, error))
            if scopes:
                add_token_answers(schema, operation, scopes, {JSON: _schema(Error, components)})
            operation["responses"] = _sorted(responses)
    used = repr(schema["paths"])
    for name in FASTAPI_INVALID:
        if REF.format(model=name) not in used:
            components.pop(name, None)


def required_scopes(dependant: Dependant) -> tuple[str, ...]:
    """The token scopes a route's dependencies require (``Require``), none if no token."""
    found: list[str] = []
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, Require):
            found.extend(dependency.call.scopes)
        found.extend(required_scopes(dependency))
    return tuple(dict.fromkeys(found))


def add_token_answers(
    schema: dict[str, Any],
    operation: dict[str, Any],
    scopes: Iterable[str],
    error: dict[str, Any],
) -> None:
    """What a route that needs a token answers besides its own: 401 (with WWW-Authenticate),
    403, and 503 with Retry-After while PostgreSQL is down (unless the route describes its
    own 503); ``error`` is the refusals' content. The scopes go in ``security``."""
    schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes.setdefault("bearer", BEARER)
    operation["security"] = [{"bearer": list(scopes)}]
    responses = operation["responses"]
    responses["401"] = answer(UNAUTHORIZED, error, AUTHENTICATE_HEADER)
    responses.setdefault("403", answer(FORBIDDEN, error))
    responses.setdefault("503", answer(DATABASE_DOWN, error, RETRY_AFTER_HEADER))


def answer(
    description: str, content: dict[str, Any], headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One response object: its description, content by media type and headers."""
    found: dict[str, Any] = {"description": description, "content": content}
    if headers:
        found["headers"] = headers
    return found


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
                operation = _operation(name, route, method, components)
                if route.scopes:
                    error = {JSON: _schema(Error, components)}
                    add_token_answers(schema, operation, route.scopes, error)
                operation["responses"] = _sorted(operation["responses"])
                paths.setdefault(path, {})[method.lower()] = operation


def _schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    """A media type object whose schema is ``model`` (added to the components)."""
    return {"schema": _ref(model, components)}


def _ref(model: type[BaseModel], components: dict[str, Any]) -> dict[str, str]:
    _, top = models_json_schema([(model, "validation")], ref_template=REF)
    components.update(top.get("$defs", {}))
    return {"$ref": REF.format(model=model.__name__)}


def _sorted(responses: dict[str, Any]) -> dict[str, Any]:
    return dict(sorted(responses.items()))


def _operation(name: str, route: Route, method: str, components: dict[str, Any]) -> dict[str, Any]:
    """A channel route's operation: its success, and its refusals as ``receive`` answers them
    (JSON ``{"detail"}`` for a client, plain text for a provider; the 413 of the body limit,
    before the adapter sees the request, is JSON for both)."""
    slug = re.sub(r"[^a-z0-9]+", "_", f"{name} {method} {route.path}".lower()).strip("_")
    if route.response_model is not None:
        ok = {route.media_type or JSON: _schema(route.response_model, components)}
    else:
        ok = {route.media_type or PLAIN_TEXT: TEXT}
    success = "accepted once the broker acknowledged" if route.publishes else "answered"
    responses: dict[str, Any] = {str(route.status): answer(success, ok)}
    if route.audience is Audience.CLIENT:
        error: dict[str, Any] = {JSON: _schema(Error, components)}
        responses["403"] = answer(
            "the token lacks the scope, or may not post as the channel", error
        )
        responses["413"] = answer(TOO_LARGE, error)
        responses["415"] = answer("the body is not in the media type the route reads", error)
        responses["422"] = answer(
            "the body cannot be read: one entry per field, or the reason in words",
            {JSON: _schema(Refusal, components)},
        )
    else:
        error = {PLAIN_TEXT: TEXT}
        responses["403"] = answer("the provider's signature is missing or wrong", error)
        responses["413"] = answer(TOO_LARGE, {JSON: _schema(Error, components), PLAIN_TEXT: TEXT})
        responses["415"] = answer("the body is not in a media type the adapter reads", error)
    down = "the broker did not acknowledge" + (
        ", or PostgreSQL, where tokens are looked up, is unavailable"
        if route.audience is Audience.CLIENT
        else ""
    )
    responses["503"] = answer(f"{down}; retry", error, RETRY_AFTER_HEADER)
    operation: dict[str, Any] = {
        "tags": [f"channel: {name}"],
        "summary": route.summary or f"{name} {route.path}",
        "operationId": slug,
        "responses": responses,
    }
    if route.request_model is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": _ref(route.request_model, components)}},
        }
    return operation
