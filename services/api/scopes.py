"""Token roles and scopes: a module of their own, light enough for the CLI's options."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """Who may do what: admin everything, agent the console, integration the API channel."""

    ADMIN = "admin"
    AGENT = "agent"
    INTEGRATION = "integration"


class Scope(StrEnum):
    """What a token may do; every /v1 route and every channel CLIENT route needs one."""

    #: POST /v1/interactions (as the token's ``channels``)
    INTERACTIONS_WRITE = "interactions:write"
    #: GET /v1/customers, /v1/customers/{id}, .../identities, .../timeline
    CUSTOMERS_READ = "customers:read"
    #: POST /v1/customers/{id}/messages
    MESSAGES_SEND = "messages:send"
    #: POST .../split, .../links, .../merge, PATCH .../profile
    IDENTITY_WRITE = "identity:write"
    #: GET /v1/customers/{id}/export (everything held about a customer)
    PRIVACY_EXPORT = "privacy:export"
    #: DELETE /v1/customers/{id}
    PRIVACY_DELETE = "privacy:delete"
    #: GET /v1/keys/{key_id}: the keys departments open their topic's sealed records with
    KEYS_READ = "keys:read"
