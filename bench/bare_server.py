"""The baseline for HTTP figures: a bare aiohttp handler on uvloop returning constant JSON.

.venv/bin/python bench/bare_server.py PORT
"""

from __future__ import annotations

import sys

import uvloop
from aiohttp import web

BODY = b'{"usersig":"constant","sdkappid":1400000001,"userid":"u","cached":true}'


async def handler(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=BODY, content_type="application/json")


def main() -> None:
    app = web.Application()
    app.router.add_post("/v1/usersig", handler)
    web.run_app(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
