"""The hub's blob store as configured: an S3 bucket (OMNIHUB_BLOB_S3_URL) where the processes
share no disk (Kubernetes gives each pod its own data directory), else a directory.

The S3 store signs with the standard botocore credential chain, so nothing secret passes
through omnihub's settings: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (and
``AWS_SESSION_TOKEN``), ``AWS_PROFILE`` with the shared config files, a web identity token
(EKS IRSA: ``AWS_ROLE_ARN`` + ``AWS_WEB_IDENTITY_TOKEN_FILE``), container credentials (ECS,
EKS Pod Identity) or the EC2 instance metadata, first found wins.
"""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import urlsplit

from channels.base.blobs import BlobMissing, BlobStore, FileBlobStore, event_of
from services.config import Settings

#: The error codes of a GET for a key that does not exist (``404`` when the store answers a
#: HEAD-like error without a body).
MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/optional/prefix`` as (bucket, key prefix ending in ``/`` or empty)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"OMNIHUB_BLOB_S3_URL must look like s3://bucket/optional/prefix: {url!r}")
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


class S3BlobStore:
    """Blobs as objects ``<prefix><event id>/<n>`` of one bucket: S3 answers a PUT only once
    the object is stored durably, and a reader sees the old object or the new one, never half.

    One client (one aiohttp connection pool) serves the store's life. It is made at the first
    call rather than in ``__init__``: the processes build their stores before their event loop
    runs (faust's dispatcher), and the client's connections belong to the loop that uses them.
    ``close()`` releases it at shutdown (a later call would make a new one).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        region: str | None = None,
    ) -> None:
        self.bucket, self.prefix = bucket, prefix
        self.endpoint, self.region = endpoint, region
        self._client: Any = None
        self._exit: AsyncExitStack | None = None
        self._opening = asyncio.Lock()

    async def _s3(self) -> Any:
        """The store's client, made on first use (the lock: one client, however many callers
        race to be first)."""
        if self._client is not None:
            return self._client
        # imported here: a hub on a directory does not pay botocore's ~0.3 s import
        from aiobotocore.config import AioConfig
        from aiobotocore.session import AioSession

        async with self._opening:
            if self._client is None:
                config = AioConfig(
                    retries={"mode": "standard"},
                    # S3-compatible servers on a plain host name (SeaweedFS, MinIO) answer
                    # path-style requests; AWS itself takes its default (virtual-hosted).
                    s3={"addressing_style": "path"} if self.endpoint else None,
                )
                stack = AsyncExitStack()
                self._client = await stack.enter_async_context(
                    AioSession().create_client(
                        "s3", endpoint_url=self.endpoint, region_name=self.region, config=config
                    )
                )
                self._exit = stack
        return self._client

    async def close(self) -> None:
        """Close the client and its connections (nothing to do if it was never made)."""
        stack, self._client, self._exit = self._exit, None, None
        if stack is not None:
            await stack.aclose()

    def _key(self, blob: str) -> str:
        event_of(blob)  # ValueError for anything that is not a blob id
        return self.prefix + blob

    async def put(self, blob: str, data: bytes) -> None:
        """PUT the object; S3 acknowledges it once stored durably."""
        key = self._key(blob)
        s3 = await self._s3()
        await s3.put_object(Bucket=self.bucket, Key=key, Body=data)

    async def get(self, blob: str) -> bytes:
        """GET the object; BlobMissing when there is none."""
        from botocore.exceptions import ClientError

        key = self._key(blob)
        s3 = await self._s3()
        try:
            response = await s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in MISSING:
                raise BlobMissing(blob) from exc
            raise
        async with response["Body"] as body:
            data: bytes = await body.read()
        return data

    async def delete_event(self, event_id: uuid.UUID) -> int:
        """List the event's keys (``<prefix><event id>/``: the slash keeps other events out)
        and delete them in batches of a listing page (at most 1000, DeleteObjects' limit)."""
        s3 = await self._s3()
        removed = 0
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}{event_id}/"
        )
        async for page in pages:
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if not keys:
                continue
            answer = await s3.delete_objects(
                Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
            )
            errors = answer.get("Errors") or []
            if errors:  # an erasure that left a file behind must not pass for done
                first = errors[0]
                raise RuntimeError(
                    f"S3 kept {len(errors)} of event {event_id}'s blobs:"
                    f" {first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )
            removed += len(keys)
        return removed


def blob_store(settings: Settings) -> BlobStore:
    """The store the settings name: S3 when OMNIHUB_BLOB_S3_URL is set, else the directory
    (OMNIHUB_BLOB_DIR, by default ``blobs`` under OMNIHUB_DATA_DIR)."""
    if settings.blob_s3_url:
        bucket, prefix = parse_s3_url(settings.blob_s3_url)
        return S3BlobStore(
            bucket, prefix, endpoint=settings.blob_s3_endpoint, region=settings.blob_s3_region
        )
    return FileBlobStore(settings.blob_dir)


async def close_blob_store(store: BlobStore) -> None:
    """Release what the store holds open (the S3 client; a directory holds nothing)."""
    if isinstance(store, S3BlobStore):
        await store.close()
