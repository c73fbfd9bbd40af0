"""The endpoint functions. Each reads and validates its input, checks the caller may use
the app, and answers JSON; errors are raised and shaped by the edge (edge.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes

import orjson
from aiohttp import hdrs, web
from aiohttp.http_exceptions import ContentEncodingError, ContentLengthError
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ValidationError

from signer.cache import CacheKey, Issued
from signer.cache.base import RevocationNotRecorded
from signer.cache.warming import warm_many
from signer.config import AppRuntime
from signer.core import (
    UINT32_MAX,
    SignatureMismatch,
    SignerError,
    UserIdPolicy,
    VerificationError,
    decode,
    summarize,
    verify,
)
from signer.engine import SignRequest
from signer.service.auth import authorize
from signer.service.errors import (
    BodyTimeout,
    InvalidExpire,
    InvalidField,
    MalformedBody,
    MalformedJson,
    NotReady,
    TooManyUserIds,
    UnsupportedContentEncoding,
    UnsupportedMediaType,
    from_revocation_error,
    from_signer_error,
    from_validation_error,
    status_of,
)
from signer.service.keys import CALLER, SDKAPPID, STATE
from signer.service.schemas import (
    BatchRequest,
    PrivateMapKeyRequest,
    UserSigQuery,
    UserSigRequest,
    VerifyRequest,
    WarmRequest,
)

M = TypeVar("M", bound=BaseModel)
NO_STORE = {"Cache-Control": "no-store"}


def json_response(
    body: Any, status: int = HTTPStatus.OK, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


# What aiohttp undoes (br with brotli, zstd with backports.zstd); it passes any other coding
# through untouched, which would then be parsed as if it were plain JSON.
CONTENT_CODINGS = ("gzip", "deflate", "br", "zstd", "identity")


async def read_json(request: web.Request, model: type[M]) -> M:
    if request.content_type != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    if hdrs.CONTENT_ENCODING in request.headers:
        _check_content_coding(request.headers.getall(hdrs.CONTENT_ENCODING))
    try:
        if request.content.is_eof():  # the whole body came with the headers: no timer
            raw = await request.read()  # aiohttp enforces the body cap (413) here
        else:
            timeout = request.app[STATE].runtime.settings.server.body_timeout
            async with asyncio.timeout(timeout):
                raw = await request.read()
    except (ContentEncodingError, ContentLengthError, web.RequestPayloadError):
        raise MalformedBody("body could not be read (bad encoding)") from None
    except TimeoutError:
        raise BodyTimeout(f"the request body did not arrive within {timeout:g} s") from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedJson(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MalformedJson("body must be a JSON object")
    repeated = duplicate_key(raw, data)
    if repeated is not None:
        shown = repr(repeated) if len(repeated) <= 64 else repr(repeated[:64]) + "..."
        raise MalformedJson(f"the key {shown} appears twice in one object of the body")
    return validate(model, data)


class _Repeated(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _refuse_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _Repeated(key)
        seen[key] = value
    return seen


def duplicate_key(raw: bytes, data: dict[str, Any]) -> str | None:
    """A key that appears twice in one object of ``raw`` (which parsed to ``data``), if any.

    orjson keeps the last of two equal keys, Tencent's C++ verifier the first: a repeated
    key makes the body mean whatever its reader picks. Parsing every body a second time
    would cost every request, so absence is proved cheaply first, for the usual body: no
    backslash (every string is spelt in the bytes as its quoted UTF-8, and none contains
    a quote) and a single ``{`` (the top object is the only object). Then each member has
    one ``:`` of its own, so as many colons as distinct keys means no key came twice;
    failing that (a colon inside a string), a key given twice would be two disjoint
    occurrences of ``"key"``, so a key found exactly once is there once. A body with an
    escape, a nested object, or a value spelt like one of its keys takes the exact check:
    the stdlib's C parser with a hook on every object.
    """
    if b"\\" not in raw and raw.find(b"{", raw.find(b"{") + 1) < 0:
        # On a short body a call and a loop would cost more than counting every byte.
        short = len(raw) <= 4096
        colons = raw.count(b":") if short else _occurrences(raw, b":", len(data) + 1)
        if colons == len(data):
            return None
        if all(_occurrences(raw, f'"{key}"'.encode(), 2) == 1 for key in data):
            return None
    try:
        json.loads(raw, object_pairs_hook=_refuse_repeats)
    except _Repeated as repeated:
        return repeated.key
    except (ValueError, RecursionError):  # orjson took it; the stdlib allows less nesting
        raise MalformedJson("body is nested too deeply") from None
    return None


def _occurrences(raw: bytes, needle: bytes, stop: int) -> int:
    """How many times ``needle`` starts in ``raw``, counting no further than ``stop``.
    For one byte, ``bytes.find`` jumps there with memchr where ``bytes.count`` compares
    byte by byte, which on a large batch is many times slower."""
    found, at = 0, raw.find(needle)
    while at >= 0 and found < stop:
        found += 1
        at = raw.find(needle, at + 1)
    return found


def _check_content_coding(values: list[str]) -> None:
    """One coding aiohttp can undo, or none. aiohttp decodes by one header only, so two
    different codings could not both have been undone."""
    codings = {value.strip().lower() for value in values} - {"", "identity"}
    if len(codings) <= 1 and codings <= set(CONTENT_CODINGS):
        return
    shown = ", ".join(sorted(codings))[:80]
    raise UnsupportedContentEncoding(
        f"Content-Encoding {shown!r} is not supported; send one of " + ", ".join(CONTENT_CODINGS),
    )


def validate(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def _app_for(request: web.Request, sdkappid: int) -> AppRuntime:
    state = request.app[STATE]
    request[SDKAPPID] = sdkappid
    authorize(request[CALLER], sdkappid)
    return state.app(sdkappid)


def _expire(app: AppRuntime, requested: int | None) -> int:
    settings = app.settings
    expire = settings.default_expire if requested is None else requested
    if not settings.min_expire <= expire <= settings.max_expire:
        raise InvalidExpire(
            f"expire must be between {settings.min_expire} and {settings.max_expire} "
            f"seconds for sdkappid {app.sdkappid}",
            "expire",
        )
    return expire


def token_body(issued: Issued) -> dict[str, Any]:
    return {
        "usersig": issued.usersig,
        "sdkappid": issued.sdkappid,
        "userid": issued.userid,
        "issued_at": issued.issued_at,
        "expires_at": issued.expires_at,
        "key_version": issued.key_version,
        "cached": issued.cached,
    }


async def _issue(
    request: web.Request, body: UserSigRequest | UserSigQuery, userbuf: bytes | None
) -> web.Response:
    state = request.app[STATE]
    app = _app_for(request, body.sdkappid)
    expire = _expire(app, body.expire)
    issued = await state.issuer.issue(state.policy(app), body.userid, expire, userbuf)
    return json_response(token_body(issued), headers=NO_STORE)


async def post_usersig(request: web.Request) -> web.Response:
    body = await read_json(request, UserSigRequest)
    return await _issue(request, body, body.userbuf_bytes())


async def get_usersig(request: web.Request) -> web.Response:
    try:  # aiohttp would quietly turn bytes that are not UTF-8 into U+FFFD
        unquote_to_bytes(request.rel_url.raw_query_string).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidField("the query string is not valid UTF-8") from None
    query = request.query
    if len(query) != len(set(query)):  # dict() would keep the first and drop the rest
        repeated = next(name for name in query if len(query.getall(name)) > 1)
        shown = repr(repeated) if len(repeated) <= 64 else repr(repeated[:64]) + "..."
        field = repeated if repeated in UserSigQuery.model_fields else None
        raise InvalidField(f"the query parameter {shown} is given more than once", field)
    return await _issue(request, validate(UserSigQuery, dict(query)), None)


def _check_batch_size(request: web.Request, userids: list[str]) -> None:
    limit = request.app[STATE].runtime.settings.server.max_batch_userids
    if len(userids) > limit:
        raise TooManyUserIds(f"at most {limit} userids per batch", "userids")


def _charge_batch(request: web.Request, userids: list[str]) -> None:
    """Charge the caller's rate limit a batch's size."""
    state = request.app[STATE]
    if state.runtime.settings.rate_limit.enabled and len(userids) > 1:
        # A batch costs its size (the request itself was charged 1), capped at the burst
        # so that a full batch is possible at all.
        burst = state.runtime.settings.rate_limit.burst
        state.limiter.check(request[CALLER].name, min(len(userids) - 1, burst - 1))


async def post_batch(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await read_json(request, BatchRequest)
    app = _app_for(request, body.sdkappid)
    _check_batch_size(request, body.userids)
    expire = _expire(app, body.expire)
    _charge_batch(request, body.userids)
    outcomes = await state.issuer.issue_many(state.policy(app), body.userids, expire)
    results = []
    for userid, outcome in zip(body.userids, outcomes, strict=True):
        if isinstance(outcome, SignerError):
            results.append({"userid": userid, **from_signer_error(outcome).body()})
        else:
            results.append(token_body(outcome))
    return json_response({"results": results}, headers=NO_STORE)


async def post_warm(request: web.Request) -> web.Response:
    """Sign the userids' tokens into the cache ahead of a known event (a launch, a live
    show), in the engine's background queue so live requests go first. Authorised and
    rate-limited like a batch; answers counts, not tokens. With keep-warm on for the app,
    each userid also counts as having asked (it is then kept warm)."""
    state = request.app[STATE]
    body = await read_json(request, WarmRequest)
    app = _app_for(request, body.sdkappid)
    _check_batch_size(request, body.userids)
    expire = _expire(app, body.expire)
    _charge_batch(request, body.userids)
    counts = await warm_many(state.issuer, state.policy(app), body.userids, expire)
    refusals = [
        {"userid": userid, **from_signer_error(error).body()} for userid, error in counts.refused
    ]
    return json_response(
        {
            "sdkappid": app.sdkappid,
            "signed": counts.signed,
            "already_warm": counts.already_warm,
            "refused": len(refusals),
            "refusals": refusals,
            "keep_warm_days": app.settings.keep_warm_days,
        }
    )


async def post_privatemapkey(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await read_json(request, PrivateMapKeyRequest)
    app = _app_for(request, body.sdkappid)
    expire = _expire(app, body.expire)
    token = await state.engine.sign(
        SignRequest(
            app.sdkappid,
            body.userid,
            expire,
            room_id=body.room_id,
            room_str=body.room_str,
            privilege=body.privilege,
        )
    )
    return json_response(token_body(Issued.from_token(token)), headers=NO_STORE)


async def post_verify(request: web.Request) -> web.Response:
    body = await read_json(request, VerifyRequest)
    app = _app_for(request, body.sdkappid)
    # The app's own userid policy, the one it signs under: a token for an identifier this
    # app would never sign (a forged line, over its byte limit) fails with 13.
    policy = UserIdPolicy(app.signing.max_userid_bytes)
    failure: VerificationError | None = None
    for version, key in app.verify_keys.items():  # the current key first
        try:
            result = verify(
                body.usersig,
                userid=body.userid,
                sdkappid=body.sdkappid,
                key=key,
                now=body.now,
                policy=policy,
            )
        except SignatureMismatch as exc:
            failure = failure or exc
            continue
        except VerificationError as exc:
            failure = exc
            break
        return json_response(
            {"ok": True, "code": 0, "reason": "ok", **result.to_dict(), "key_version": version}
        )
    assert failure is not None
    report: dict[str, Any] = {"ok": False, "code": failure.code, "reason": failure.reason}
    with contextlib.suppress(VerificationError):  # undecodable: the code says why
        report.update(summarize(decode(body.usersig)))
    return json_response(report)


async def delete_usersig(request: web.Request) -> web.Response:
    """Logout or ban: every cached token of the user goes, on every instance.

    The path is checked as a body would be (a userid the app would never sign cannot have
    tokens, and must not cost the store a marker). 200 means the revocation is recorded
    where every instance reads; a shared store that could not take it gives 503
    ``revocation_not_recorded`` with Retry-After (this instance's copies are gone anyway)."""
    state = request.app[STATE]
    raw = request.match_info["sdkappid"]
    # Plain digits, no sign or leading zero, at most 10 of them (int() of thousands of
    # digits would raise): the number as a JSON body would spell it.
    if not (
        0 < len(raw) <= 10
        and raw.isascii()
        and raw.isdigit()
        and raw[0] != "0"
        and int(raw) <= UINT32_MAX
    ):
        raise InvalidField(
            f"sdkappid: must be a decimal number from 1 to {UINT32_MAX}, without sign or "
            "leading zeros",
            "sdkappid",
        )
    try:  # aiohttp leaves an undecodable escape such as %FF in the userid as literal text
        unquote_to_bytes(request.rel_url.raw_path).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidField("userid: the path is not valid UTF-8", "userid") from None
    app = _app_for(request, int(raw))
    userid = request.match_info["userid"]
    UserIdPolicy(app.signing.max_userid_bytes).check(userid)  # InvalidUserId: 422, as in a body
    policy = state.policy(app)
    known = [CacheKey(app.sdkappid, policy.key_version, app.settings.default_expire, "", userid)]
    try:
        evicted = await state.cache.delete_user(
            app.sdkappid, userid, known, max_lifetime=app.settings.max_expire
        )
    except RevocationNotRecorded as exc:
        raise from_revocation_error(exc) from None
    return json_response({"sdkappid": app.sdkappid, "userid": userid, "evicted": evicted})


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    pids = state.engine.worker_pids()
    cache_up = state.cache.healthy()
    details = {
        "engine": {"workers": len(pids), "queue_depth": state.engine.stats.queue_depth},
        "cache": {"backend": state.cache.name, "up": cache_up},
        "keep_warm": state.keep_warm_details(),
    }
    ready = bool(pids)  # a down cache is reported, but signing locally still works
    return json_response(
        {"status": "ready" if ready else "starting", "details": details},
        status=HTTPStatus.OK if ready else status_of(NotReady),
    )


async def metrics(request: web.Request) -> web.Response:
    body = request.app[STATE].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
