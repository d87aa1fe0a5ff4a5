"""Settings of the API channel, from OMNIHUB_API_* environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiChannelSettings(BaseSettings):
    """Where replies to API-channel interactions are POSTed, and how they are signed."""

    model_config = SettingsConfigDict(env_prefix="OMNIHUB_API_", extra="ignore")

    callback_url: str | None = Field(
        default=None, description="URL that receives replies (signed POST of the command)"
    )
    callback_secret: str | None = Field(
        default=None, description="HMAC-SHA256 key of the X-Omnihub-Signature header"
    )
    callback_timeout: float = Field(default=10.0, description="Seconds per callback attempt")
    callback_attempts: int = Field(default=5, ge=1, le=20, description="Callback attempts in all")
    callback_backoff: float = Field(default=0.5, gt=0, description="first retry delay, seconds")
    max_body_bytes: int = Field(
        default=1_048_576, description="Largest `POST /v1/interactions` body (413 above)"
    )
    default_phone_region: str | None = Field(
        default=None,
        validation_alias="OMNIHUB_DEFAULT_PHONE_REGION",
        description="ISO country (e.g. FR) for phone numbers given without +country code",
    )
