"""Request and response types of the HTTP API.

The same pydantic models validate requests and generate ``/openapi.json``; no hand-kept
copy of the API exists. Userid *policy* (length in bytes, control characters) is the core's
job and is reported as 422 by the error mapping, so it reads the same everywhere.
"""

from __future__ import annotations

import base64
import re
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from signer.core import PRIVILEGE_ALL, UINT32_MAX
from signer.core.limits import MAX_ROOM_STR_BYTES


def _whole_number(value: object) -> object:
    """13128.0 as the integer 13128: JSON has a single number type, JSON Schema's
    "integer" is any number whose value is whole, and JavaScript clients cannot tell the
    two apart. Fractions, booleans and strings go on to the strict check and are refused
    (so are NaN and infinities, which JSON cannot carry anyway)."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


def _bounds(low: int, high: int, description: str | None = None) -> Any:
    """An integer's bounds, and the OpenAPI format that holds them."""
    return Field(
        ge=low,
        le=high,
        description=description,
        json_schema_extra={"format": "int32" if high < 2**31 else "int64"},
    )


WHOLE = BeforeValidator(_whole_number)


def _range(low: int, high: int) -> WrapValidator:
    """Every way an integer field can be wrong (a fraction, text, out of bounds, more digits
    than Python parses) answered with the one thing the client needs: its range."""
    message = f"must be a whole number from {low} to {high}"

    def check(value: object, handler: ValidatorFunctionWrapHandler) -> object:
        try:
            return handler(value)
        except ValidationError as exc:
            if any(error["type"] == "missing" for error in exc.errors()):
                raise
            raise PydanticCustomError("integer_range", message) from None

    return WrapValidator(check)


# What JSON Schema can say of the text policy (signer.core.policy) for userids and room
# names: no C0/C1 control characters and no line or paragraph separator. Lone surrogates
# cannot travel in UTF-8 at all, and limits in UTF-8 bytes have no JSON Schema keyword: as
# many characters bound them from above. The core, not this pattern, refuses such text, so
# that its error (422 invalid_userid, invalid_room_str) reads the same everywhere.
NO_CONTROL_CHARACTERS = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]*$"

SdkAppId = Annotated[
    int, _bounds(1, UINT32_MAX, "The app's SDKAppID."), WHOLE, _range(1, UINT32_MAX)
]
UserId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=1024,
        description="The user.",
        json_schema_extra={"pattern": NO_CONTROL_CHARACTERS},
    ),
]
RoomStr = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_ROOM_STR_BYTES,
        description=f"A room name, at most {MAX_ROOM_STR_BYTES} bytes in UTF-8.",
        json_schema_extra={"pattern": NO_CONTROL_CHARACTERS},
    ),
]
Seconds = Annotated[int, _bounds(1, UINT32_MAX), WHOLE, _range(1, UINT32_MAX)]
RoomId = Annotated[int, _bounds(1, UINT32_MAX), WHOLE, _range(1, UINT32_MAX)]
Privilege = Annotated[int, _bounds(0, PRIVILEGE_ALL), WHOLE, _range(0, PRIVILEGE_ALL)]
UnixTime = Annotated[int, _bounds(0, UINT32_MAX), WHOLE, _range(0, UINT32_MAX)]
Expire = Annotated[
    Seconds | None,
    Field(default=None, description="Lifetime in seconds; the app's default if omitted."),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# Standard base64 with its padding (RFC 4648 section 4), the same rule in the schema and in
# the service: b64decode(validate=True) alone also takes extra "=" after a full quantum.
BASE64_PATTERN = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
_BASE64 = re.compile(BASE64_PATTERN.removeprefix("^").removesuffix("$"))
Base64 = Annotated[
    str, Field(json_schema_extra={"pattern": BASE64_PATTERN, "contentEncoding": "base64"})
]


class UserSigRequest(_Model):
    sdkappid: SdkAppId
    userid: UserId
    expire: Expire = None
    userbuf: Base64 | None = Field(default=None, description="Opaque bytes to embed, base64.")

    @field_validator("userbuf")
    @classmethod
    def _base64(cls, value: str | None) -> str | None:
        if value is not None and _BASE64.fullmatch(value) is None:
            raise ValueError("userbuf must be standard base64")
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


class WarmRequest(BatchRequest):
    """Userids whose tokens to sign into the shared cache ahead of a known event: a
    batch's fields and bounds, and its own name in the OpenAPI document."""


class PrivateMapKeyRequest(_Model):
    """A TRTC room privilege token. Exactly one of room_id and room_str names the room
    (null counts as absent)."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["room_id"], "properties": {"room_id": {"type": "integer"}}},
                {"required": ["room_str"], "properties": {"room_str": {"type": "string"}}},
            ]
        }
    )
    sdkappid: SdkAppId
    userid: UserId
    room_id: RoomId | None = None
    room_str: RoomStr | None = None
    privilege: Privilege = PRIVILEGE_ALL
    expire: Expire = None

    @model_validator(mode="after")
    def _one_room(self) -> PrivateMapKeyRequest:
        if (self.room_id is None) == (self.room_str is None):
            raise ValueError("give exactly one of room_id and room_str")
        return self


class EvictPath(BaseModel):
    """The path parameters of ``DELETE /v1/usersig/{sdkappid}/{userid}``: what the OpenAPI
    document says of them (the handler reads the segments itself)."""

    sdkappid: SdkAppId
    userid: UserId


class VerifyRequest(_Model):
    sdkappid: SdkAppId
    userid: str = Field(max_length=1024)
    usersig: str = Field(max_length=64 * 1024)
    now: UnixTime | None = Field(default=None, description="Judge expiry at this time.")


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


class WarmResponse(BaseModel):
    sdkappid: int
    signed: int = Field(description="Tokens signed and stored now.")
    already_warm: int = Field(
        description=(
            "Userids with a cached token of at least refresh_ahead seconds left, or being"
            " signed by another request or instance now (each userid is signed once)."
        )
    )
    refused: int = Field(description="Userids refused (listed in refusals).")
    refusals: list[BatchItemError]
    keep_warm_days: int = Field(
        description="The app's keep_warm_days: 0 if warmed tokens are not kept warm after."
    )


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
