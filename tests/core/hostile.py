"""Builders for hostile tokens: the envelope around arbitrary bytes, with no checks."""

from __future__ import annotations

import base64
import zlib


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
