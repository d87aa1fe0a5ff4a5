"""Sealing keys for departments (keys:read): a department opens its topic's records with them.

A key answers until its customer is erased; then 404, the same as a key that never existed,
so the answer does not tell whether someone was a customer.
"""

from __future__ import annotations

import base64
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel

from services.api.auth import Principal, Scope, require
from services.api.errors import answers
from services.keys.store import key_by_id

router = APIRouter(prefix="/v1/keys")


class SealingKey(BaseModel):
    """A key as departments get it: AES-256-GCM, 32 bytes, standard base64."""

    key_id: uuid.UUID
    algorithm: str = "AES-256-GCM"
    key: str


@router.get("/{key_id}", responses=answers({404: "no such key (never made, or erased)"}))
async def get_key(
    request: Request,
    principal: Annotated[Principal, Depends(require(Scope.KEYS_READ))],
    key_id: uuid.UUID,
) -> SealingKey:
    """The key a sealed record names in ``x-omnihub-key-id``; forget it on the customer's
    ``customer.deleted`` (docs/topics.md)."""
    found = await key_by_id(request.app.state.pool, key_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such key (never made, or erased)")
    return SealingKey(key_id=key_id, key=base64.b64encode(found.key).decode())
