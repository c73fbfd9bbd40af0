"""What the client returns: plain dataclasses read from the service's JSON.

Reading is strict about the fields this client needs (a missing or mistyped one raises
``ValueError``, turned into :class:`SignerProtocolError` by the caller) and ignores fields
it does not know, so a newer service can add some. A usersig is a login credential, so
no ``repr`` here shows one.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


def _get(data: dict[str, Any], name: str, kind: type[T]) -> T:
    value = data.get(name)
    if type(value) is not kind:  # exact: a bool is not an int here
        raise ValueError(f"{name!r} should be {kind.__name__}, got {type(value).__name__}")
    return value


def _optional(data: dict[str, Any], name: str, kind: type[T]) -> T | None:
    return None if data.get(name) is None else _get(data, name, kind)


@dataclass(frozen=True, slots=True)
class Token:
    """One issued token. ``issued_at``/``expires_at`` are Unix seconds; ``cached`` says the
    service served it from its cache (it then has at least the service's ``min_remaining``
    seconds left, but ``issued_at`` is when it was first signed)."""

    usersig: str = field(repr=False)
    sdkappid: int
    userid: str
    issued_at: int
    expires_at: int
    key_version: str
    cached: bool

    @property
    def expire(self) -> int:
        """The lifetime the token was signed with, in seconds."""
        return self.expires_at - self.issued_at

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Token:
        return cls(
            usersig=_get(data, "usersig", str),
            sdkappid=_get(data, "sdkappid", int),
            userid=_get(data, "userid", str),
            issued_at=_get(data, "issued_at", int),
            expires_at=_get(data, "expires_at", int),
            key_version=_get(data, "key_version", str),
            cached=_get(data, "cached", bool),
        )


@dataclass(frozen=True, slots=True)
class ItemError:
    """A userid of a batch that got no token, and why (the same ``code``/``message``/
    ``field`` a single request for it would have raised as :class:`InvalidRequest`)."""

    userid: str
    code: str
    message: str
    field: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ItemError:
        error = _get(data, "error", dict)
        return cls(
            userid=_get(data, "userid", str),
            code=_get(error, "code", str),
            message=_get(error, "message", str),
            field=_optional(error, "field", str),
        )


BatchResult = Token | ItemError


@dataclass(frozen=True, slots=True)
class RoomPrivilege:
    """The TRTC room rights a PrivateMapKey grants (its decoded userbuf)."""

    userid: str
    sdkappid: int
    room_id: int
    room_str: str | None
    expires_at: int
    privilege: int
    account_type: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RoomPrivilege:
        return cls(
            userid=_get(data, "userid", str),
            sdkappid=_get(data, "sdkappid", int),
            room_id=_get(data, "room_id", int),
            room_str=_optional(data, "room_str", str),
            expires_at=_get(data, "expires_at", int),
            privilege=_get(data, "privilege", int),
            account_type=_get(data, "account_type", int),
        )


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The service's verdict on a usersig. ``ok`` False is an answer, not an error: ``code``
    is then Tencent's verification error code (e.g. 13 another userid, 9 expired) and
    ``reason`` says why. The other fields are what could be read from the token (all of
    them when ok); ``key_version`` names the app key that verified it."""

    ok: bool
    code: int
    reason: str
    version: int | None = None
    identifier: str | None = None
    sdkappid: int | None = None
    time: int | None = None
    expire: int | None = None
    expires_at: int | None = None
    userbuf: bytes | None = None
    privilege_map: RoomPrivilege | None = None
    key_version: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VerifyResult:
        userbuf = _optional(data, "userbuf", str)
        privilege = _optional(data, "privilege_map", dict)
        return cls(
            ok=_get(data, "ok", bool),
            code=_get(data, "code", int),
            reason=_get(data, "reason", str),
            version=_optional(data, "version", int),
            identifier=_optional(data, "identifier", str),
            sdkappid=_optional(data, "sdkappid", int),
            time=_optional(data, "time", int),
            expire=_optional(data, "expire", int),
            expires_at=_optional(data, "expires_at", int),
            userbuf=None if userbuf is None else _b64decode(userbuf),
            privilege_map=None if privilege is None else RoomPrivilege.from_json(privilege),
            key_version=_optional(data, "key_version", str),
        )


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("'userbuf' is not base64") from None
