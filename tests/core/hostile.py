"""Builders for hostile tokens: the envelope around arbitrary bytes, with no checks."""

from __future__ import annotations

import base64
import json
import zlib

from signer.core import EcPrivateKey
from signer.core.tokens import v1_signed_text


def wrap(payload: bytes) -> str:
    """Any bytes in a well-formed envelope (zlib, base64, url map)."""
    return urlmap(zlib.compress(payload))


def urlmap(data: bytes) -> str:
    return base64.b64encode(data).decode().translate(str.maketrans("+/=", "*-_"))


def inflate_bomb(size: int) -> str:
    """A token that inflates to ``size`` bytes of JSON-looking text."""
    stream = zlib.compressobj(9)
    chunks = [stream.compress(b'{"TLS.identifier":"')]
    block = b"A" * (1 << 20)
    for _ in range(size // len(block)):
        chunks.append(stream.compress(block))
    chunks.append(stream.compress(b'"}') + stream.flush())
    return urlmap(b"".join(chunks))


def signed_v1(key: EcPrivateKey, identifier: str, sdkappid: int, issued_at: int) -> str:
    """A v1 token genuinely signed by ``key`` for any identifier at all, as Tencent's own v1
    library makes it: no userid policy stands in the way, unlike ``V1Signer``."""
    fields = {
        "TLS.account_type": "0",
        "TLS.identifier": identifier,
        "TLS.appid_at_3rd": "0",
        "TLS.sdk_appid": str(sdkappid),
        "TLS.expire_after": "100",
        "TLS.version": "201803230000",
        "TLS.time": str(issued_at),
    }
    fields["TLS.sig"] = base64.b64encode(key.sign(v1_signed_text(fields))).decode()
    return wrap(json.dumps(fields).encode())
