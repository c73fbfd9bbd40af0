"""signer.client against the real service over real HTTP.

One configured service (a v1 app, a v2 app, a third app the API key may not use; a real
engine worker) is served on a free port for the whole module. Most behaviour is proved
for both clients: the sync one runs in a thread so the service keeps its event loop. A
small stub server stands in only for answers the real service cannot be made to give on
demand (a stall, 429/503, a proxy's error page, a broken body).
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import TLSSigAPIv2
from aiohttp import web

from signer.cache import MemoryCache
from signer.client import (
    AsyncSignerClient,
    AuthenticationError,
    InvalidRequest,
    ItemError,
    NotFound,
    PermissionDenied,
    RateLimited,
    RoomPrivilege,
    SignerAPIError,
    SignerClient,
    SignerClientError,
    SignerConnectionError,
    SignerProtocolError,
    SignerTimeout,
    Token,
    Unavailable,
    VerifyResult,
)
from signer.config import build_runtime, load_settings
from signer.core import EcPrivateKey, HmacSecret, decode, generate_private_key, verify
from signer.service.app import create_app
from signer.service.state import ServiceState
from tests.support import free_port

on_module_loop = pytest.mark.asyncio(loop_scope="module")  # where the module's servers run

V1_APP = 1400000001
V2_APP = 1400000002
FORBIDDEN_APP = 1400000003
UNKNOWN_APP = 1400009999
API_KEY = "client-test-key-3f9a1c0e7b5d2468"  # granted V1_APP and V2_APP only
ADMIN_KEY = "client-admin-key-5e0b7d9c1a3f8246"  # granted every app
SECRET = "client-test-secret-8d1e5c7a9b2f4063"
DEFAULT_EXPIRE = 86400


@dataclass
class Service:
    """The running service: its address, its apps' keys, and every client connection's
    (host, port) in the order requests arrived."""

    url: str
    v1_key: EcPrivateKey
    secret: HmacSecret
    peers: list[tuple[str, int]] = field(default_factory=list)


def write_config(directory: Path, v1_key: EcPrivateKey) -> Path:
    (directory / "v1_private_key").write_bytes(v1_key.to_pem())
    (directory / "v2_secret").write_text(SECRET + "\n")
    (directory / "api_key").write_text(API_KEY + "\n")
    (directory / "admin_key").write_text(ADMIN_KEY)
    config = directory / "signer.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [engine]
            workers = 1

            [[apps]]
            sdkappid = {V1_APP}
            algorithm = "v1"
            private_key_file = "v1_private_key"
            default_expire = {DEFAULT_EXPIRE}

            [[apps]]
            sdkappid = {V2_APP}
            algorithm = "v2"
            secret_file = "v2_secret"

            [[apps]]
            sdkappid = {FORBIDDEN_APP}
            algorithm = "v2"
            secret = "not-for-this-caller"

            [[callers]]
            name = "app-servers"
            api_key_file = "api_key"
            sdkappids = [{V1_APP}, {V2_APP}]

            [[callers]]
            name = "admin"
            api_key_file = "admin_key"
            """
        )
    )
    return config


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    """The real application (engine with one worker, memory cache) on a free port."""
    v1_key = generate_private_key()
    config = write_config(tmp_path_factory.mktemp("signer"), v1_key)
    state = ServiceState.create(build_runtime(load_settings(config)), MemoryCache())
    app = create_app(state)
    peers: list[tuple[str, int]] = []

    async def record_peer(request: web.Request, response: web.StreamResponse) -> None:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername")[:2])

    app.on_response_prepare.append(record_peer)
    runner, url = await serve(app)
    try:
        yield Service(url, v1_key, HmacSecret.from_text(SECRET), peers)
    finally:
        await runner.cleanup()


@dataclass
class Stub:
    """A server that answers POST /v1/usersig by the userid: "slow" stalls until the test
    module ends, the others return the canned answers below."""

    url: str
    release: asyncio.Event


STUB_ANSWERS: dict[str, tuple[int, dict[str, str], bytes]] = {
    "limited": (
        429,
        {"Retry-After": "7", "Content-Type": "application/json"},
        b'{"error": {"code": "rate_limited", "message": "slow down"}}',
    ),
    "overloaded": (
        503,
        {"Retry-After": "2", "Content-Type": "application/json"},
        b'{"error": {"code": "overloaded", "message": "queue full"}}',
    ),
    "proxy": (502, {"Content-Type": "text/html"}, b"<html>Bad Gateway</html>"),
    "garbage": (200, {"Content-Type": "application/json"}, b"this is not json"),
    "partial": (200, {"Content-Type": "application/json"}, b'{"usersig": "x"}'),
    "boolean": (
        200,
        {"Content-Type": "application/json"},
        b'{"usersig": "x", "sdkappid": true, "userid": "u", "issued_at": 1, "expires_at": 2,'
        b' "key_version": "1", "cached": false}',
    ),
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stub() -> AsyncIterator[Stub]:
    release = asyncio.Event()

    async def usersig(request: web.Request) -> web.Response:
        userid = (await request.json())["userid"]
        if userid == "slow":
            await asyncio.wait_for(release.wait(), 10)
            return web.json_response({})
        status, headers, body = STUB_ANSWERS[userid]
        return web.Response(status=status, headers=headers, body=body)

    app = web.Application()
    app.router.add_post("/v1/usersig", usersig)
    runner, url = await serve(app)
    try:
        yield Stub(url, release)
    finally:
        release.set()
        await runner.cleanup()


class Call:
    """Make one client call through a fresh SignerClient (in a thread) or AsyncSignerClient,
    so a test proves the same behaviour for both."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.url = url

    async def __call__(
        self,
        method: str,
        *args: Any,
        sdkappid: int = V1_APP,
        api_key: str | None = API_KEY,
        url: str | None = None,
        timeout: float = 5.0,
        **kwargs: Any,
    ) -> Any:
        settings = (sdkappid, api_key, url or self.url, timeout)
        if self.kind == "sync":

            def run() -> Any:
                with SignerClient(*settings) as client:
                    return getattr(client, method)(*args, **kwargs)

            return await asyncio.to_thread(run)
        async with AsyncSignerClient(*settings) as client:
            return await getattr(client, method)(*args, **kwargs)


@pytest.fixture(params=["sync", "async"])
def call(request: pytest.FixtureRequest, service: Service) -> Call:
    return Call(request.param, service.url)


@on_module_loop
class TestIssue:
    async def test_v1_usersig_verifies_with_the_apps_public_key(
        self, call: Call, service: Service
    ) -> None:
        """gen_sig returns a v1 usersig that the core verifies with the app's public key."""
        usersig = await call("gen_sig", "alice", 3600)
        result = verify(usersig, userid="alice", sdkappid=V1_APP, key=service.v1_key.public_key())
        assert (result.token_version, result.identifier, result.expire) == (1, "alice", 3600)

    async def test_v2_usersig_is_what_tls_sig_api_v2_makes(
        self, call: Call, service: Service, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A v2 token equals Tencent's TLSSigAPIv2 output for the same userid, expire and
        issue time, signature included, and both verify with the app's secret."""
        token = await call("issue", "bob", 7200, sdkappid=V2_APP)
        with monkeypatch.context() as patch:
            patch.setattr(TLSSigAPIv2.time, "time", lambda: token.issued_at)
            theirs = TLSSigAPIv2.TLSSigAPIv2(V2_APP, SECRET).gen_sig("bob", 7200)
        assert decode(token.usersig) == decode(theirs)
        for usersig in (token.usersig, theirs):
            verify(usersig, userid="bob", sdkappid=V2_APP, key=service.secret)

    async def test_issue_reports_every_field(self, call: Call) -> None:
        """issue() returns the token with its app, user, times and key version."""
        token = await call("issue", "carol", 600)
        assert isinstance(token, Token)
        assert (token.sdkappid, token.userid, token.key_version) == (V1_APP, "carol", "1")
        assert token.expires_at - token.issued_at == token.expire == 600
        assert decode(token.usersig)["TLS.identifier"] == "carol"

    async def test_expire_none_means_the_apps_default(self, call: Call) -> None:
        """Leaving expire out gives the app's configured default_expire."""
        token = await call("issue", "dave")
        assert token.expire == DEFAULT_EXPIRE

    async def test_second_issue_is_served_from_the_cache(self, service: Service) -> None:
        """The service caches tokens; cached says so and the same usersig comes back."""
        async with AsyncSignerClient(V1_APP, API_KEY, service.url) as client:
            first = await client.issue("erin-cache")
            second = await client.issue("erin-cache")
        assert (first.cached, second.cached) == (False, True)
        assert first.usersig == second.usersig

    async def test_userbuf_is_embedded(self, call: Call, service: Service) -> None:
        """gen_sig_with_userbuf puts the bytes in the token, as Tencent's library does."""
        userbuf = bytes(range(40))
        usersig = await call("gen_sig_with_userbuf", "frank", 600, userbuf, sdkappid=V2_APP)
        result = verify(usersig, userid="frank", sdkappid=V2_APP, key=service.secret)
        assert base64.b64decode(result.userbuf or "") == userbuf

    async def test_usersig_is_not_in_the_repr(self, call: Call) -> None:
        """A usersig is a login credential: printing a Token does not show it."""
        token = await call("issue", "grace")
        assert token.usersig not in repr(token)
        assert "grace" in repr(token)


# Calls written exactly as app servers call TLSSigAPIv2 1.1: (method, args, kwargs).
TENCENT_CALL_SHAPES: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("gen_sig", ("shape-positional",), {}),
    ("gen_sig", ("shape-positional-expire", 3600), {}),
    ("gen_sig", (), {"identifier": "shape-keywords", "expire": 7200}),
    ("gen_sig", ("shape-keyword-expire",), {"expire": 7200}),
    ("gen_sig", (12345,), {}),
    ("gen_sig", (67890,), {"expire": "600"}),
    ("gen_sig_with_userbuf", ("shape-userbuf", 600, b"abc"), {}),
    (
        "gen_sig_with_userbuf",
        (),
        {"identifier": "shape-userbuf-keywords", "expire": 600, "userbuf": bytes(range(40))},
    ),
    ("gen_sig_with_userbuf", (24680,), {"expire": 900, "userbuf": b""}),
    ("gen_sig_with_userbuf", ("shape-userbuf-none", 600, None), {}),
]


def _shape_id(shape: tuple[str, tuple[Any, ...], dict[str, Any]]) -> str:
    def show(value: Any) -> str:
        return (
            f"<{len(value)} bytes>" if isinstance(value, bytes) and len(value) > 8 else repr(value)
        )

    method, args, kwargs = shape
    shown = [*map(show, args), *(f"{name}={show(value)}" for name, value in kwargs.items())]
    return f"{method}({', '.join(shown)})"


def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(cls).items()
        if not name.startswith("_") and callable(member)
    }


class TestTencentSignatures:
    @pytest.mark.parametrize("cls", [SignerClient, AsyncSignerClient])
    def test_every_public_method_has_tencents_signature(
        self, cls: type[SignerClient | AsyncSignerClient]
    ) -> None:
        """Every public method of TLSSigAPIv2 1.1 exists on the client with the same
        parameter names, kinds, order and defaults, so no call written for Tencent's
        library fails on the client with a TypeError.

        Catches: a renamed keyword (userid= for Tencent's identifier=), a changed default
        (expire None instead of Tencent's 180 days), a missing or reordered parameter, or a
        method Tencent's library has and the client lacks.
        """
        theirs = _public_methods(TLSSigAPIv2.TLSSigAPIv2)
        assert set(theirs) == {"gen_sig", "gen_sig_with_userbuf"}  # what 1.1 offers
        for name, signature in theirs.items():
            ours = inspect.signature(getattr(cls, name))
            assert [(p.name, p.kind, p.default) for p in ours.parameters.values()] == [
                (p.name, p.kind, p.default) for p in signature.parameters.values()
            ], name


@on_module_loop
class TestTencentDropIn:
    @pytest.mark.parametrize("shape", TENCENT_CALL_SHAPES, ids=_shape_id)
    async def test_tencents_call_shapes_give_tencents_token(
        self,
        call: Call,
        service: Service,
        monkeypatch: pytest.MonkeyPatch,
        shape: tuple[str, tuple[Any, ...], dict[str, Any]],
    ) -> None:
        """A call written for TLSSigAPIv2 (positional, identifier=/expire=/userbuf=
        keywords, a non-str identifier, expire as text, an empty or None userbuf) returns
        a token that verifies and decodes to exactly the fields, signature included, that
        Tencent's library makes from the same call at the same time.

        Catches: Tencent's keywords refused with TypeError, a non-str identifier refused
        (422) instead of signed as str(identifier), expire text refused, an empty userbuf
        dropped, None sent as a userbuf, or any field the client or service changes on the
        way.
        """
        method, args, kwargs = shape
        ours = await call(method, *args, sdkappid=V2_APP, **kwargs)
        fields = decode(ours)
        with monkeypatch.context() as patch:
            patch.setattr(TLSSigAPIv2.time, "time", lambda: fields["TLS.time"])
            tencent = TLSSigAPIv2.TLSSigAPIv2(V2_APP, SECRET)
            theirs = getattr(tencent, method)(*args, **kwargs)
        assert fields == decode(theirs)
        identifier = str(kwargs.get("identifier", args[0] if args else None))
        for usersig in (ours, theirs):
            verify(usersig, userid=identifier, sdkappid=V2_APP, key=service.secret)

    async def test_omitted_expire_is_tencents_180_days(self, call: Call) -> None:
        """gen_sig(identifier) without expire signs for 180 days, as TLSSigAPIv2 does,
        even for an app whose default_expire is shorter (here one day).

        Catches: the omitted expire falling back to the app's default_expire, so that a
        call copied from Tencent's library silently gets a shorter-lived token.
        """
        usersig = await call("gen_sig", "omitted-expire")
        assert DEFAULT_EXPIRE != 180 * 86400
        assert decode(usersig)["TLS.expire_after"] == str(180 * 86400)

    async def test_expire_none_still_means_the_apps_default(self, call: Call) -> None:
        """gen_sig(userid, None) and gen_sig_with_userbuf(userid, None, buf) keep the
        client's own meaning of None: the app's default_expire.

        Catches: None handed to Tencent-style int(expire) (a TypeError) or replaced by
        Tencent's 180-day default, which would break callers of the existing API.
        """
        for usersig in (
            await call("gen_sig", "none-expire", None),
            await call("gen_sig_with_userbuf", "none-expire-buf", None, b"x"),
        ):
            assert decode(usersig)["TLS.expire_after"] == str(DEFAULT_EXPIRE)

    @pytest.mark.parametrize(
        ("method", "args", "error", "message"),
        [
            ("gen_sig", ("alice", 86400.0), TypeError, r"gen_sig\(\): expire must be"),
            ("gen_sig", ("alice", True), TypeError, r"gen_sig\(\): expire must be"),
            ("gen_sig", ("alice", " 600"), ValueError, r"gen_sig\(\): expire must be"),
            (
                "gen_sig_with_userbuf",
                ("alice", 600, "not-bytes"),
                TypeError,
                r"gen_sig_with_userbuf\(\): userbuf must be bytes",
            ),
        ],
    )
    async def test_what_tencent_would_sign_wrongly_is_refused_naming_the_method(
        self, call: Call, method: str, args: tuple[Any, ...], error: type, message: str
    ) -> None:
        """Arguments for which TLSSigAPIv2 makes a token that does not verify (it signs
        str(expire) but writes int(expire)) or fails (a str userbuf) raise an error naming
        the method before any request is sent.

        Catches: such an expire quietly turned into a different valid token, or sent to
        the service (here: a closed port, which would raise SignerConnectionError).
        """
        url = f"http://127.0.0.1:{free_port()}"
        with pytest.raises(error, match=message):
            await call(method, *args, url=url)


@on_module_loop
class TestBatch:
    async def test_a_refused_userid_gets_an_error_in_place(
        self, call: Call, service: Service
    ) -> None:
        """gen_sigs keeps input order; a bad userid gets an ItemError, the others tokens."""
        userids = ["batch-a", "x" * 40, "batch-b"]
        results = await call("gen_sigs", userids, 600)
        first, refused, last = results
        assert refused == ItemError("x" * 40, "invalid_userid", refused.message, "userid")
        for token, userid in ((first, "batch-a"), (last, "batch-b")):
            assert isinstance(token, Token)
            key = service.v1_key.public_key()
            assert verify(token.usersig, userid=userid, sdkappid=V1_APP, key=key).expire == 600

    async def test_no_userids_is_no_request(self, call: Call) -> None:
        """An empty batch returns [] without asking the service (which would refuse it)."""
        assert await call("gen_sigs", [], api_key="would-be-refused") == []

    async def test_one_string_is_refused(self, call: Call) -> None:
        """A lone string is not split into one-letter userids."""
        with pytest.raises(TypeError, match="not one string"):
            await call("gen_sigs", "alice")


@on_module_loop
class TestPrivateMapKey:
    @pytest.mark.parametrize("room", [{"room_id": 1234}, {"room_str": "lobby-7"}])
    async def test_grants_the_room(self, call: Call, service: Service, room: Any) -> None:
        """privatemapkey returns a v2 token whose userbuf grants the asked room rights."""
        usersig = await call("privatemapkey", "host", privilege=0x2A, sdkappid=V2_APP, **room)
        result = verify(usersig, userid="host", sdkappid=V2_APP, key=service.secret)
        assert result.privilege_map is not None
        assert result.privilege_map.privilege == 0x2A
        assert result.privilege_map.room_id == room.get("room_id", 0)
        assert result.privilege_map.room_str == room.get("room_str")

    async def test_needs_exactly_one_room(self, call: Call) -> None:
        """Neither room_id nor room_str is a 422 naming the problem."""
        with pytest.raises(InvalidRequest, match="exactly one of room_id and room_str"):
            await call("privatemapkey", "host", sdkappid=V2_APP)


@on_module_loop
class TestVerify:
    async def test_a_good_token(self, call: Call) -> None:
        """verify() says ok, with the token's fields and the key version that verified it."""
        usersig = await call("gen_sig", "henry", 600)
        result = await call("verify", "henry", usersig)
        assert isinstance(result, VerifyResult)
        assert (result.ok, result.code, result.reason) == (True, 0, "ok")
        assert (result.identifier, result.sdkappid, result.expire) == ("henry", V1_APP, 600)
        assert result.key_version == "1"

    async def test_another_users_token_is_code_13(self, call: Call) -> None:
        """A token for someone else is ok=False with Tencent's code 13, not an exception."""
        usersig = await call("gen_sig", "ivy", 600)
        result = await call("verify", "mallory", usersig)
        assert (result.ok, result.code, result.identifier) == (False, 13, "ivy")

    async def test_expiry_is_judged_at_now(self, call: Call) -> None:
        """now= moves the clock: after expires_at the token is code 9."""
        token = await call("issue", "jack", 600)
        result = await call("verify", "jack", token.usersig, now=token.expires_at + 1)
        assert (result.ok, result.code) == (False, 9)

    async def test_privatemapkey_fields_are_read(self, call: Call) -> None:
        """The room rights of a PrivateMapKey come back as a RoomPrivilege, userbuf as bytes."""
        usersig = await call("privatemapkey", "kim", room_id=99, sdkappid=V2_APP)
        result = await call("verify", "kim", usersig, sdkappid=V2_APP)
        assert result.ok
        assert isinstance(result.privilege_map, RoomPrivilege)
        assert (result.privilege_map.room_id, result.privilege_map.privilege) == (99, 255)
        assert isinstance(result.userbuf, bytes)


@on_module_loop
class TestServiceErrors:
    async def test_wrong_api_key(self, call: Call) -> None:
        """An unknown key is AuthenticationError (401); the key is in no message or repr."""
        wrong = "wrong-key-0123456789"
        with pytest.raises(AuthenticationError) as caught:
            await call("gen_sig", "alice", api_key=wrong)
        error = caught.value
        assert (error.status, error.code) == (401, "unauthenticated")
        for text in (str(error), repr(error), str(error.args)):
            assert wrong not in text
            assert API_KEY not in text

    async def test_no_api_key(self, call: Call) -> None:
        """Without a key the service asks for one."""
        with pytest.raises(AuthenticationError, match="missing Authorization"):
            await call("gen_sig", "alice", api_key=None)

    async def test_app_the_key_may_not_use(self, call: Call) -> None:
        """A valid key used for an app it is not granted is PermissionDenied (403)."""
        with pytest.raises(PermissionDenied) as caught:
            await call("gen_sig", "alice", sdkappid=FORBIDDEN_APP)
        assert (caught.value.status, caught.value.field) == (403, "sdkappid")

    async def test_unknown_app(self, call: Call) -> None:
        """An sdkappid the service does not have is NotFound (404), for a key granted every
        app (a key granted a list gets 403 first: it learns nothing about other apps)."""
        with pytest.raises(NotFound) as caught:
            await call("gen_sig", "alice", sdkappid=UNKNOWN_APP, api_key=ADMIN_KEY)
        assert caught.value.code == "unknown_sdkappid"
        assert caught.value.request_id

    async def test_bad_userid(self, call: Call) -> None:
        """A userid the app's policy refuses is InvalidRequest (422) naming the field."""
        with pytest.raises(InvalidRequest) as caught:
            await call("gen_sig", "x" * 40)
        error = caught.value
        assert (error.status, error.code, error.field) == (422, "invalid_userid", "userid")
        assert str(error).startswith("422 invalid_userid: ")

    async def test_expire_out_of_range(self, call: Call) -> None:
        """An expire below the app's minimum is refused before anything is signed."""
        with pytest.raises(InvalidRequest, match="expire must be between") as caught:
            await call("gen_sig", "alice", 5)
        assert caught.value.field == "expire"

    async def test_every_api_error_is_a_client_error(self, call: Call) -> None:
        """One except clause (SignerClientError) catches whatever the service refuses."""
        with pytest.raises(SignerClientError):
            await call("gen_sig", "alice", sdkappid=UNKNOWN_APP)

    @pytest.mark.parametrize(
        ("userid", "error", "status", "code", "retry_after"),
        [
            ("limited", RateLimited, 429, "rate_limited", 7.0),
            ("overloaded", Unavailable, 503, "overloaded", 2.0),
            ("proxy", Unavailable, 502, "http_error", None),
        ],
    )
    async def test_statuses_the_service_gives_under_load(
        self,
        call: Call,
        stub: Stub,
        userid: str,
        error: type[SignerAPIError],
        status: int,
        code: str,
        retry_after: float | None,
    ) -> None:
        """429 and 503 carry Retry-After; a proxy's HTML error page still maps by status."""
        with pytest.raises(error) as caught:
            await call("gen_sig", userid, url=stub.url)
        assert (caught.value.status, caught.value.code) == (status, code)
        assert caught.value.retry_after == retry_after

    @pytest.mark.parametrize("userid", ["garbage", "partial", "boolean"])
    async def test_unreadable_success_is_a_protocol_error(
        self, call: Call, stub: Stub, userid: str
    ) -> None:
        """A 2xx body that is not the service's token is SignerProtocolError."""
        with pytest.raises(SignerProtocolError, match="cannot read the 200 answer"):
            await call("gen_sig", userid, url=stub.url)


@on_module_loop
class TestTransport:
    async def test_closed_port_is_a_connection_error(self, call: Call) -> None:
        """Nothing listening: SignerConnectionError (not a timeout, not httpx's own type)."""
        url = f"http://127.0.0.1:{free_port()}"
        with pytest.raises(SignerConnectionError) as caught:
            await call("gen_sig", "alice", url=url)
        assert not isinstance(caught.value, SignerTimeout)
        assert isinstance(caught.value.__cause__, httpx.ConnectError)
        assert url in str(caught.value)
        assert API_KEY not in str(caught.value)

    async def test_stalled_service_is_a_timeout(self, call: Call, stub: Stub) -> None:
        """A service that does not answer within the timeout is SignerTimeout."""
        with pytest.raises(SignerTimeout, match=r"no answer within 0\.2 s"):
            await call("gen_sig", "slow", url=stub.url, timeout=0.2)

    async def test_sync_client_reuses_one_connection(self, service: Service) -> None:
        """Consecutive calls on one SignerClient travel over one kept-alive connection."""

        def three_calls() -> None:
            with SignerClient(V1_APP, API_KEY, service.url) as client:
                client.gen_sig("reuse-1")
                client.gen_sigs(["reuse-2", "reuse-3"])
                client.verify("reuse-1", "bogus")

        service.peers.clear()
        await asyncio.to_thread(three_calls)
        assert len(service.peers) == 3
        assert len(set(service.peers)) == 1

    async def test_async_client_reuses_one_connection(self, service: Service) -> None:
        """The same holds for AsyncSignerClient."""
        service.peers.clear()
        async with AsyncSignerClient(V1_APP, API_KEY, service.url) as client:
            for userid in ("reuse-4", "reuse-5", "reuse-6"):
                await client.gen_sig(userid)
        assert len(service.peers) == 3
        assert len(set(service.peers)) == 1

    async def test_closed_client_refuses_requests(self, service: Service) -> None:
        """After the with block the pool is closed; using the client is a programming error."""
        async with AsyncSignerClient(V1_APP, API_KEY, service.url) as client:
            pass
        with pytest.raises(RuntimeError):
            await client.gen_sig("late")


class TestConstruction:
    def test_one_line_swap_signature(self) -> None:
        """SignerClient(sdkappid, api_key) works like TLSSigAPIv2(sdkappid, key); the
        sdkappid may be a decimal string, as Tencent's library allows."""
        with SignerClient("1400000001", API_KEY) as client:
            assert client.sdkappid == V1_APP
            assert client.base_url == "http://127.0.0.1:8080"
            assert client.timeout == 5.0

    @pytest.mark.parametrize("cls", [SignerClient, AsyncSignerClient])
    def test_repr_hides_the_api_key(self, cls: type[SignerClient | AsyncSignerClient]) -> None:
        """The client's repr shows the app and address, never the key."""
        client = cls(V1_APP, API_KEY, "http://signer:8080/")
        assert repr(client) == f"{cls.__name__}(sdkappid=1400000001, base_url='http://signer:8080')"

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"sdkappid": 0}, "sdkappid must be"),
            ({"sdkappid": True}, "sdkappid must be"),
            ({"api_key": ""}, "api_key must be"),
            ({"api_key": "secret\nInjected: 1"}, "api_key must be"),
            ({"timeout": 0}, "timeout must be"),
        ],
    )
    def test_bad_settings_fail_at_construction(self, kwargs: dict[str, Any], message: str) -> None:
        """Bad settings raise ValueError at once, and the message never quotes the key."""
        settings: dict[str, Any] = {"sdkappid": V1_APP, "api_key": API_KEY, **kwargs}
        for cls in (SignerClient, AsyncSignerClient):
            with pytest.raises(ValueError, match=message) as caught:
                cls(**settings)
            assert "secret" not in str(caught.value)
