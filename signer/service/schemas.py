"""Request and response types of the HTTP API.

The same pydantic models validate requests and generate ``/openapi.json``; no hand-kept
copy of the API exists. Userid *policy* (length in bytes, control characters) is the core's
job and is reported as 422 by the error mapping, so it reads the same everywhere.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from signer.core import PRIVILEGE_ALL, UINT32_MAX

SdkAppId = Annotated[int, Field(ge=1, le=UINT32_MAX, description="The app's SDKAppID.")]
UserId = Annotated[str, Field(min_length=1, max_length=1024, description="The user.")]
Expire = Annotated[
    int | None,
    Field(
        default=None,
        ge=1,
        le=UINT32_MAX,
        description="Lifetime in seconds; the app's default if omitted.",
    ),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class UserSigRequest(_Model):
    sdkappid: SdkAppId
    userid: UserId
    expire: Expire = None
    userbuf: str | None = Field(default=None, description="Opaque bytes to embed, base64.")

    @field_validator("userbuf")
    @classmethod
    def _base64(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("userbuf must be standard base64") from None
        return value

    def userbuf_bytes(self) -> bytes | None:
        return None if self.userbuf is None else base64.b64decode(self.userbuf)


class UserSigQuery(BaseModel):
    """``GET /v1/usersig`` takes the same fields as query parameters (plain decimal digits
    only: no signs, underscores, spaces or fractions)."""

    model_config = ConfigDict(extra="forbid")
    sdkappid: SdkAppId
    userid: UserId
    expire: Expire = None

    @field_validator("sdkappid", "expire", mode="before")
    @classmethod
    def _digits(cls, value: object) -> object:
        if isinstance(value, str) and not (value.isascii() and value.isdigit()):
            raise ValueError("must be a decimal number")
        return value


class BatchRequest(_Model):
    sdkappid: SdkAppId
    userids: list[str] = Field(
        min_length=1,
        max_length=100_000,
        description="Userids, at most server.max_batch_userids (10,000 by default).",
    )
    expire: Expire = None


class PrivateMapKeyRequest(_Model):
    sdkappid: SdkAppId
    userid: UserId
    room_id: int | None = Field(default=None, ge=1, le=UINT32_MAX)
    room_str: str | None = Field(default=None, min_length=1, max_length=256)
    privilege: int = Field(default=PRIVILEGE_ALL, ge=0, le=PRIVILEGE_ALL)
    expire: Expire = None

    @model_validator(mode="after")
    def _one_room(self) -> PrivateMapKeyRequest:
        if (self.room_id is None) == (self.room_str is None):
            raise ValueError("give exactly one of room_id and room_str")
        return self


class VerifyRequest(_Model):
    sdkappid: SdkAppId
    userid: str = Field(max_length=1024)
    usersig: str = Field(max_length=64 * 1024)
    now: int | None = Field(
        default=None, ge=0, le=UINT32_MAX, description="Judge expiry at this time."
    )


class TokenResponse(BaseModel):
    usersig: str
    sdkappid: int
    userid: str
    issued_at: int
    expires_at: int
    key_version: str
    cached: bool


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable error code, e.g. invalid_userid.")
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class BatchItemError(BaseModel):
    userid: str
    error: ErrorDetail


class BatchResponse(BaseModel):
    results: list[TokenResponse | BatchItemError]


class PrivilegeMapModel(BaseModel):
    userid: str
    sdkappid: int
    room_id: int
    room_str: str | None
    expires_at: int
    privilege: int
    account_type: int


class VerifyResponse(BaseModel):
    ok: bool
    code: int = Field(description="0 when ok, else Tencent's verification error code.")
    reason: str
    version: int | None = None
    identifier: str | None = None
    sdkappid: int | None = None
    time: int | None = None
    expire: int | None = None
    expires_at: int | None = None
    userbuf: str | None = None
    privilege_map: PrivilegeMapModel | None = None
    key_version: str | None = Field(
        default=None, description="Which of the app's keys verified it."
    )


class EvictResponse(BaseModel):
    sdkappid: int
    userid: str
    evicted: int = Field(description="Cache entries (or per-user hashes) removed.")


class Health(BaseModel):
    status: str
    details: dict[str, Any] = {}
