"""The asyncio client: :class:`~signer.client.SignerClient` with ``await``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Self, TypeVar

import httpx

from signer.client import protocol
from signer.client.protocol import (
    DEFAULT_BASE_URL,
    DEFAULT_TIMEOUT,
    PRIVILEGE_ALL,
    TLS_SIG_API_V2_EXPIRE,
    Call,
)
from signer.client.results import BatchResult, Token, VerifyResult

T = TypeVar("T")


class AsyncSignerClient:
    """Tokens for one app from a signer service, for asyncio code.

    Same constructor, methods, results and exceptions as
    :class:`~signer.client.SignerClient`, each method a coroutine. One instance keeps a
    pool of keep-alive connections and belongs to one event loop: create it once, then
    ``await close()`` it or use ``async with``.
    """

    def __init__(
        self,
        sdkappid: int | str,
        api_key: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.sdkappid = protocol.check_sdkappid(sdkappid)
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.AsyncClient(**protocol.http_options(api_key, base_url, timeout))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sdkappid={self.sdkappid}, base_url={self.base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the pooled connections; requests made afterwards raise RuntimeError."""
        await self._http.aclose()

    async def gen_sig(
        self, identifier: object, expire: int | str | None = TLS_SIG_API_V2_EXPIRE
    ) -> str:
        """A usersig for ``identifier``, called exactly as ``TLSSigAPIv2.gen_sig`` (the
        userid is ``str(identifier)``, 180 days by default; None: the app's default)."""
        call = protocol.tencent_issue("gen_sig", self.sdkappid, identifier, expire, None)
        return (await self._send(call)).usersig

    async def gen_sig_with_userbuf(
        self, identifier: object, expire: int | str | None, userbuf: bytes | None
    ) -> str:
        """A usersig carrying ``userbuf`` (opaque bytes), called exactly as
        ``TLSSigAPIv2.gen_sig_with_userbuf``."""
        call = protocol.tencent_issue(
            "gen_sig_with_userbuf", self.sdkappid, identifier, expire, userbuf
        )
        return (await self._send(call)).usersig

    async def issue(
        self, userid: str, expire: int | None = None, userbuf: bytes | None = None
    ) -> Token:
        """The usersig with its times, key version and whether it was cached."""
        return await self._send(protocol.issue(self.sdkappid, userid, expire, userbuf))

    async def gen_sigs(
        self, userids: Iterable[str], expire: int | None = None
    ) -> list[BatchResult]:
        """Tokens for many userids in one request, in input order; a refused userid gets
        an :class:`ItemError` in its place."""
        users = protocol.userid_list(userids)
        if not users:
            return []
        return await self._send(protocol.batch(self.sdkappid, users, expire))

    async def privatemapkey(
        self,
        userid: str,
        room_id: int | None = None,
        room_str: str | None = None,
        privilege: int = PRIVILEGE_ALL,
        expire: int | None = None,
    ) -> str:
        """A TRTC PrivateMapKey for one room (exactly one of ``room_id``/``room_str``)."""
        call = protocol.privatemapkey(self.sdkappid, userid, room_id, room_str, privilege, expire)
        return (await self._send(call)).usersig

    async def verify(self, userid: str, usersig: str, now: int | None = None) -> VerifyResult:
        """The service's verdict on ``usersig`` for ``userid``; a bad token is a result."""
        return await self._send(protocol.verify(self.sdkappid, userid, usersig, now))

    async def _send(self, call: Call[T]) -> T:
        try:
            response = await self._http.post(call.path, json=call.body)
        except httpx.HTTPError as exc:
            raise protocol.transport_error(exc, self.base_url + call.path, self.timeout) from exc
        return protocol.read(call, response)
