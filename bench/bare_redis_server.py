"""Baseline for the cache figures: an aiohttp+uvloop handler doing one redis-py GET per
request and returning the value as JSON.

    .venv/bin/python bench/bare_redis_server.py PORT REDIS_URL
"""

from __future__ import annotations

import sys

import orjson
import uvloop
from aiohttp import web
from redis.asyncio import Redis


def main() -> None:
    redis = Redis.from_url(sys.argv[2])

    async def handler(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        value = await redis.get(f"bare:{body['userid']}")
        return web.Response(
            body=orjson.dumps({"usersig": value.decode() if value else None}),
            content_type="application/json",
        )

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
