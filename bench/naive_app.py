"""The naive app server that signer is judged against (issue 12): signing inside the handler.

    # v2 (HMAC): Tencent's tls-sig-api-v2 1.1, from signer's own venv
    .venv/bin/python bench/naive_app.py --mode v2 --port 9001 --processes 2 \\
        --sdkappid 1400000002 --secret-file KEYS/v2/secret
    # v1 (ECDSA): Tencent's tls-sig-api 1.4, which only runs with pyOpenSSL 24.2.1 and
    # cryptography < 44, so from a venv of its own (bench/storm.py makes it)
    bench/.venv-naive-v1/bin/python bench/naive_app.py --mode v1 --port 9002 --processes 2 \\
        --sdkappid 1400000001 --private-key KEYS/v1/private_key --public-key KEYS/v1/public_key
    # the ceiling: the same server returning constant JSON, no signing at all
    .venv/bin/python bench/naive_app.py --mode bare --port 9003 --processes 2

What an app server does when every app server holds the key: aiohttp on uvloop, one route
``POST /usersig`` taking ``{"userid": ...}`` (and ``GET /usersig?userid=...``) that calls
Tencent's library in the request handler, on the event loop, for every request, and
answers ``{"usersig": ...}``: ``TLSSigAPIv2.TLSSigAPIv2(sdkappid, key).gen_sig(userid)``
for v2, ``TLSSigAPI.TLSSigAPI(sdkappid, private_pem, public_pem).gen_sig(userid)`` for v1
(one library object per process, built at start-up as an app would; building it costs
nothing, both libraries only keep their arguments). No cache, no auth, no access log
(aiohttp's access logger has no handler unless the app configures logging).

``--processes N`` runs N processes on one port as ``[server] processes`` does in signer:
the parent binds N ``SO_REUSEPORT`` sockets (the kernel spreads connections), forks one
child per socket and then only waits; SIGTERM or SIGINT is passed on to the children, and
a child that dies takes the whole server down (a benchmark must not go on with fewer).

``--mode v1-cryptography`` is a stand-in used only where tls-sig-api 1.4 cannot be
installed: the same steps as Tencent's ``tls_gen_sig`` (load the PEM key on every call,
the same fields and signed text, ECDSA-SHA256 DER, ``json.dumps``, ``zlib.compress``,
Tencent's base64 alphabet), with ``cryptography`` in place of pyOpenSSL. It says so on
stderr at start-up.

Only the standard library, aiohttp, uvloop and the signing library are imported, so it
runs from either venv.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import wait

import uvloop
from aiohttp import web

BARE_BODY = b'{"usersig":"constant","sdkappid":1400000001,"userid":"u","cached":true}'


def _die_with_parent() -> None:
    """SIGTERM this process when its parent exits (Linux prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def _cryptography_v1(sdkappid: int, private_pem: str) -> Callable[[str], str]:
    """tls-sig-api 1.4's ``gen_sig`` step by step, with cryptography for the ECDSA."""
    import base64
    import zlib

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    def gen_sig(identifier: str, expire: int = 3600 * 24 * 180) -> str:
        m = {
            "TLS.account_type": "0",
            "TLS.identifier": f"{identifier}",
            "TLS.appid_at_3rd": "",
            "TLS.sdk_appid": f"{int(sdkappid)}",
            "TLS.expire_after": f"{int(expire)}",
            "TLS.version": "20151204",
            "TLS.time": f"{int(time.time())}",
        }
        fix_str = (
            "TLS.appid_at_3rd:" + m["TLS.appid_at_3rd"] + "\n"
            "TLS.account_type:" + m["TLS.account_type"] + "\n"
            "TLS.identifier:" + m["TLS.identifier"] + "\n"
            "TLS.sdk_appid:" + m["TLS.sdk_appid"] + "\n"
            "TLS.time:" + m["TLS.time"] + "\n"
            "TLS.expire_after:" + m["TLS.expire_after"] + "\n"
        )
        key = serialization.load_pem_private_key(private_pem.encode(), password=None)
        signature = key.sign(fix_str.encode(), ec.ECDSA(hashes.SHA256()))  # type: ignore[union-attr,call-arg]
        m["TLS.sig"] = base64.b64encode(signature).decode()
        compressed = zlib.compress(json.dumps(m).encode())
        text = base64.b64encode(compressed).decode()
        return text.replace("+", "*").replace("/", "-").replace("=", "_")

    return gen_sig


def make_signer(args: argparse.Namespace) -> Callable[[str], str] | None:
    """The per-request signing call of ``--mode``; None for the bare handler."""
    if args.mode == "bare":
        return None
    if args.mode == "v2":
        import TLSSigAPIv2

        with open(args.secret_file) as handle:
            secret = handle.read().strip()
        return TLSSigAPIv2.TLSSigAPIv2(args.sdkappid, secret).gen_sig  # type: ignore[no-any-return]
    with open(args.private_key) as handle:
        private_pem = handle.read()
    if args.mode == "v1-cryptography":
        print(
            "naive_app: WARNING: v1 is NOT Tencent's tls-sig-api here but the same steps "
            "with the cryptography package (tls-sig-api 1.4 could not be used)",
            file=sys.stderr,
        )
        return _cryptography_v1(args.sdkappid, private_pem)
    import TLSSigAPI

    with open(args.public_key) as handle:
        public_pem = handle.read()
    return TLSSigAPI.TLSSigAPI(args.sdkappid, private_pem, public_pem).gen_sig  # type: ignore[no-any-return]


def make_app(gen_sig: Callable[[str], str] | None) -> web.Application:
    async def post(request: web.Request) -> web.Response:
        if gen_sig is None:
            await request.read()
            return web.Response(body=BARE_BODY, content_type="application/json")
        try:
            userid = (await request.json())["userid"]
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": 'send {"userid": ...}'}, status=400)
        return web.json_response({"usersig": gen_sig(str(userid))})

    async def get(request: web.Request) -> web.Response:
        if gen_sig is None:
            return web.Response(body=BARE_BODY, content_type="application/json")
        userid = request.query.get("userid")
        if not userid:
            return web.json_response({"error": "userid is required"}, status=400)
        return web.json_response({"usersig": gen_sig(userid)})

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    for path in ("/usersig", "/v1/usersig"):
        app.router.add_post(path, post)
        app.router.add_get(path, get)
    app.router.add_get("/healthz", healthz)
    return app


def serve(args: argparse.Namespace, sock: socket.socket | None) -> None:
    """One HTTP process: its own event loop, on ``sock`` (or binding the port itself)."""
    if sock is not None:
        _die_with_parent()
    app = make_app(make_signer(args))
    where: dict[str, object] = (
        {"sock": sock} if sock is not None else {"host": args.host, "port": args.port}
    )
    web.run_app(app, access_log=None, print=None, loop=uvloop.new_event_loop(), **where)  # type: ignore[arg-type]


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    return [socket.create_server((host, port), reuse_port=True, backlog=1024) for _ in range(count)]


def supervise(args: argparse.Namespace) -> int:
    """Start one child per socket, pass SIGTERM/SIGINT on, stop all if one dies."""
    sockets = listening_sockets(args.host, args.port, args.processes)
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=serve, args=(args, sock)) for sock in sockets]
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.pid is not None and child.exitcode is None:
                os.kill(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for child in children:
        child.start()
    wait([child.sentinel for child in children])  # the first to exit ends the server
    if not stopping:
        print("naive_app: a child exited; stopping the others", file=sys.stderr)
        stop(signal.SIGTERM, None)
    for child in children:
        child.join(10)
        if child.exitcode is None:
            child.kill()
            child.join()
    return 0 if stopping else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["v1", "v2", "v1-cryptography", "bare"], required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--sdkappid", type=int, default=1400000001)
    parser.add_argument("--private-key", help="v1: PEM private key file")
    parser.add_argument("--public-key", help="v1 (tls-sig-api wants it too): PEM public key")
    parser.add_argument("--secret-file", help="v2: the app's secret")
    args = parser.parse_args()
    if args.mode == "v2" and not args.secret_file:
        parser.error("--mode v2 needs --secret-file")
    if args.mode in ("v1", "v1-cryptography") and not args.private_key:
        parser.error(f"--mode {args.mode} needs --private-key")
    if args.mode == "v1" and not args.public_key:
        parser.error("--mode v1 needs --public-key (TLSSigAPI's constructor takes it)")
    if args.processes == 1:
        serve(args, None)
    else:
        sys.exit(supervise(args))


if __name__ == "__main__":
    main()
