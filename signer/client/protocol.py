"""The wire protocol without I/O: what each client method sends, how an answer is read and
how a transport failure is named. Both clients share it, so they differ only in how they
send a request.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

from signer.client.errors import (
    SignerAPIError,
    SignerClientError,
    SignerConnectionError,
    SignerProtocolError,
    SignerTimeout,
    api_error,
)
from signer.client.results import BatchResult, ItemError, Token, VerifyResult

T = TypeVar("T")
DEFAULT_BASE_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 5.0
PRIVILEGE_ALL = 255
UINT32_MAX = 0xFFFF_FFFF
TLS_SIG_API_V2_EXPIRE = 180 * 86400
"""What ``TLSSigAPIv2.gen_sig`` signs for when called without expire: 180 days."""


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request: ``body`` POSTed as JSON to ``path``; ``parse`` reads a 2xx JSON object
    and raises ValueError (or KeyError/TypeError) if it is not what it should be."""

    path: str
    body: dict[str, Any]
    parse: Callable[[dict[str, Any]], T]


def check_sdkappid(sdkappid: int | str) -> int:
    """``sdkappid`` as an int; a decimal string is accepted, as TLSSigAPIv2 accepts it."""
    if isinstance(sdkappid, str) and sdkappid.isascii() and sdkappid.isdecimal():
        sdkappid = int(sdkappid)
    if type(sdkappid) is not int or not 1 <= sdkappid <= UINT32_MAX:
        raise ValueError(f"sdkappid must be an integer in 1..{UINT32_MAX}")
    return sdkappid


def http_options(api_key: str | None, base_url: str, timeout: float) -> dict[str, Any]:
    """The httpx client settings both clients use. A bad key fails here, at construction,
    with a message that does not quote it."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValueError("timeout must be a positive number of seconds")
    headers = {"Accept": "application/json", "User-Agent": "signer-client"}
    if api_key is not None:
        key = api_key.strip() if isinstance(api_key, str) else ""
        if not key or not key.isascii() or not key.isprintable():
            raise ValueError("api_key must be non-empty printable ASCII text")
        headers["Authorization"] = f"Bearer {key}"
    return {
        "base_url": base_url,
        "headers": headers,
        "timeout": httpx.Timeout(float(timeout)),
        "follow_redirects": False,
    }


def _body(**fields: Any) -> dict[str, Any]:
    """A JSON body without the fields left as None (the service's defaults apply)."""
    return {name: value for name, value in fields.items() if value is not None}


def issue(sdkappid: int, userid: str, expire: int | None, userbuf: bytes | None) -> Call[Token]:
    body = _body(sdkappid=sdkappid, userid=userid, expire=expire)
    if userbuf is not None:
        body["userbuf"] = base64.b64encode(userbuf).decode("ascii")
    return Call("/v1/usersig", body, Token.from_json)


def tencent_issue(
    method: str, sdkappid: int, identifier: object, expire: object, userbuf: object
) -> Call[Token]:
    """The request for ``TLSSigAPIv2.<method>(identifier, expire[, userbuf])``, with the
    arguments taken as Tencent's library takes them: the identifier is ``str(identifier)``
    (12345 is the userid "12345"), expire an integer or its decimal text, userbuf any bytes
    (None: none). One addition: expire None asks for the app's ``default_expire``. What
    Tencent's library would sign wrongly is refused here with an error naming ``method``."""
    return issue(
        sdkappid,
        str(identifier),
        tencent_expire(method, expire),
        _tencent_userbuf(method, userbuf),
    )


def tencent_expire(method: str, expire: object) -> int | None:
    """``expire`` as TLSSigAPIv2 uses it, or None (the app's default).

    Tencent's library writes ``int(expire)`` into the token but signs ``str(expire)``; the
    two agree, and its token verifies, only for an integer or its decimal text. For
    anything else (86400.0, True, " 60") it makes a token that does not verify, so it is
    refused here rather than quietly turned into a different, valid one."""
    if expire is None:
        return None
    try:
        seconds: int | None = int(expire)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        seconds = None
    if seconds is None or str(seconds) != str(expire):
        kind = ValueError if isinstance(expire, str) else TypeError
        raise kind(
            f"{method}(): expire must be whole seconds (an int or its decimal text) or None"
            f" for the app's default_expire, not {type(expire).__name__} {expire!r}"
        )
    return seconds


def _tencent_userbuf(method: str, userbuf: object) -> bytes | None:
    """``userbuf`` as bytes; like TLSSigAPIv2, anything base64 can encode is accepted."""
    if userbuf is None:
        return None
    try:
        return bytes(memoryview(userbuf))  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"{method}(): userbuf must be bytes (or None), not {type(userbuf).__name__}"
        ) from None


def userid_list(userids: Iterable[str]) -> list[str]:
    """The userids of a batch; one string is refused rather than split into characters."""
    if isinstance(userids, str | bytes):
        raise TypeError("userids must be a collection of userids, not one string")
    return list(userids)


def batch(sdkappid: int, userids: list[str], expire: int | None) -> Call[list[BatchResult]]:
    def parse(data: dict[str, Any]) -> list[BatchResult]:
        items = data["results"]
        if not isinstance(items, list) or len(items) != len(userids):
            raise ValueError(f"'results' should be a list of {len(userids)} items")
        results: list[BatchResult] = []
        for item in items:
            if not isinstance(item, dict):
                raise ValueError("a batch result is not a JSON object")
            results.append(ItemError.from_json(item) if "error" in item else Token.from_json(item))
        return results

    return Call(
        "/v1/usersig/batch", _body(sdkappid=sdkappid, userids=userids, expire=expire), parse
    )


def privatemapkey(
    sdkappid: int,
    userid: str,
    room_id: int | None,
    room_str: str | None,
    privilege: int,
    expire: int | None,
) -> Call[Token]:
    body = _body(
        sdkappid=sdkappid,
        userid=userid,
        room_id=room_id,
        room_str=room_str,
        privilege=privilege,
        expire=expire,
    )
    return Call("/v1/privatemapkey", body, Token.from_json)


def verify(sdkappid: int, userid: str, usersig: str, now: int | None) -> Call[VerifyResult]:
    body = _body(sdkappid=sdkappid, userid=userid, usersig=usersig, now=now)
    return Call("/v1/verify", body, VerifyResult.from_json)


def read(call: Call[T], response: httpx.Response) -> T:
    """The result of ``call`` from the service's answer; raises SignerAPIError for any
    non-2xx status and SignerProtocolError for a 2xx body that does not parse."""
    if not response.is_success:
        raise error_from(response)
    try:
        data = response.json()
        if not isinstance(data, dict):
            raise ValueError("the body is not a JSON object")
        return call.parse(data)
    except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
        raise SignerProtocolError(
            f"POST {call.path}: cannot read the {response.status_code} answer ({exc})"
        ) from None


def error_from(response: httpx.Response) -> SignerAPIError:
    """The exception for a non-2xx answer, from the service's error body if it has one."""
    status = response.status_code
    detail = _error_detail(response)
    if detail is None:
        code, message, field = "http_error", f"HTTP {status} {response.reason_phrase}", None
    else:
        code, message, field = detail
    return api_error(
        status,
        code,
        message.strip(),
        field,
        _retry_after(response.headers.get("Retry-After")),
        response.headers.get("X-Request-ID"),
    )


def _error_detail(response: httpx.Response) -> tuple[str, str, str | None] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    detail = body.get("error") if isinstance(body, dict) else None
    if not isinstance(detail, dict):
        return None
    code, message, field = detail.get("code"), detail.get("message"), detail.get("field")
    if not isinstance(code, str) or not isinstance(message, str):
        return None
    return code, message, field if isinstance(field, str) else None


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header; the service sends integers (HTTP dates from
    a proxy are ignored rather than guessed at)."""
    try:
        seconds = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def transport_error(exc: httpx.HTTPError, url: str, timeout: float) -> SignerClientError:
    """Our exception for an httpx failure to get an answer from ``url``."""
    if isinstance(exc, httpx.TimeoutException):
        return SignerTimeout(f"POST {url}: no answer within {timeout:g} s ({type(exc).__name__})")
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TransportError):
        return SignerConnectionError(f"POST {url}: {reason}")
    return SignerProtocolError(f"POST {url}: {reason}")
