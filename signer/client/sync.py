"""The blocking client: what an app server calls where it used ``TLSSigAPIv2``."""

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


class SignerClient:
    """Tokens for one app (``sdkappid``) from a signer service at ``base_url``.

    Swap ``TLSSigAPIv2(sdkappid, key)`` for ``SignerClient(sdkappid, api_key)``: the same
    ``gen_sig``/``gen_sig_with_userbuf`` calls return the same kind of usersig, but the
    signing key stays on the service. ``api_key`` is sent as ``Authorization: Bearer``
    (None when the service runs without auth). ``timeout`` bounds every phase of a request
    (connect, send, each read), in seconds.

    One instance keeps a pool of keep-alive connections: create it once and share it
    (threads included), then ``close()`` it or use it as a context manager. Failures raise
    :class:`~signer.client.SignerClientError` subclasses only.
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
        self._http = httpx.Client(**protocol.http_options(api_key, base_url, timeout))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sdkappid={self.sdkappid}, base_url={self.base_url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections; requests made afterwards raise RuntimeError."""
        self._http.close()

    def gen_sig(self, identifier: object, expire: int | str | None = TLS_SIG_API_V2_EXPIRE) -> str:
        """A usersig for ``identifier`` valid ``expire`` seconds, called exactly as
        ``TLSSigAPIv2.gen_sig``: the userid is ``str(identifier)`` and expire defaults to
        Tencent's 180 days; ``expire=None`` means the app's ``default_expire``. The token
        may come from the service's cache."""
        call = protocol.tencent_issue("gen_sig", self.sdkappid, identifier, expire, None)
        return self._send(call).usersig

    def gen_sig_with_userbuf(
        self, identifier: object, expire: int | str | None, userbuf: bytes | None
    ) -> str:
        """A usersig carrying ``userbuf`` (opaque bytes), called exactly as
        ``TLSSigAPIv2.gen_sig_with_userbuf`` (``userbuf=None``: none, as there)."""
        call = protocol.tencent_issue(
            "gen_sig_with_userbuf", self.sdkappid, identifier, expire, userbuf
        )
        return self._send(call).usersig

    def issue(self, userid: str, expire: int | None = None, userbuf: bytes | None = None) -> Token:
        """The usersig with everything the service knows about it (times, key version,
        whether it was cached)."""
        return self._send(protocol.issue(self.sdkappid, userid, expire, userbuf))

    def gen_sigs(self, userids: Iterable[str], expire: int | None = None) -> list[BatchResult]:
        """Tokens for many userids in one request (at most the service's batch limit,
        10,000 by default), in input order. A userid the service refuses gets an
        :class:`ItemError` in its place instead of failing the batch."""
        users = protocol.userid_list(userids)
        if not users:
            return []
        return self._send(protocol.batch(self.sdkappid, users, expire))

    def privatemapkey(
        self,
        userid: str,
        room_id: int | None = None,
        room_str: str | None = None,
        privilege: int = PRIVILEGE_ALL,
        expire: int | None = None,
    ) -> str:
        """A TRTC PrivateMapKey granting ``privilege`` (bit map, 255 = all) in one room,
        given by exactly one of ``room_id`` and ``room_str``. Works for v1 and v2 apps."""
        call = protocol.privatemapkey(self.sdkappid, userid, room_id, room_str, privilege, expire)
        return self._send(call).usersig

    def verify(self, userid: str, usersig: str, now: int | None = None) -> VerifyResult:
        """Whether ``usersig`` is a valid token of this app for ``userid`` (at Unix time
        ``now``, default the service's clock). A bad token is a result, not an exception."""
        return self._send(protocol.verify(self.sdkappid, userid, usersig, now))

    def _send(self, call: Call[T]) -> T:
        try:
            response = self._http.post(call.path, json=call.body)
        except httpx.HTTPError as exc:
            raise protocol.transport_error(exc, self.base_url + call.path, self.timeout) from exc
        return protocol.read(call, response)
