"""The envelope shared by every UserSig version: JSON → zlib → base64 → ``+/=`` to ``*-_``.

Packing compresses with ISA-L (python-isal) at level 1. A token's JSON is a few hundred
bytes, so what costs is zlib's per-call set-up and Huffman tree building, not the data, and
ISA-L spends less on both than stdlib ``zlib.compress``, for output of the same size
(figures in docs/PERFORMANCE.md). The output is an ordinary RFC 1950 stream that any
inflater reads.

Unpacking treats the token as hostile: the length is capped, base64 must be canonical,
inflation streams into a bounded buffer, and the JSON parser refuses duplicate keys,
non-finite numbers, oversized integer literals and deep nesting before it recurses.
"""

from __future__ import annotations

import binascii
import json
import re
import zlib
from typing import Any

import orjson
from isal import isal_zlib

from signer.core.errors import DecompressionError, JsonError, TokenEmpty, TokenEncodingError
from signer.core.limits import DEFAULT_LIMITS, VerifyLimits

_TO_URL = bytes.maketrans(b"+/=", b"*-_")
_FROM_URL = bytes.maketrans(b"*-_", b"+/=")
_URL_ALPHABET = re.compile(rb"[A-Za-z0-9*\-_]+")
_COMPRESSION_LEVEL = 1  # ISA-L's levels are 0-3; 1 matches zlib -6's output size here


def compress(data: bytes) -> bytes:
    """Return ``data`` as a complete RFC 1950 zlib stream."""
    return isal_zlib.compress(data, _COMPRESSION_LEVEL)


def urlsafe_b64encode(data: bytes) -> str:
    """Standard base64 with ``+/=`` mapped to ``*-_`` (Tencent's map, not RFC 4648's)."""
    return binascii.b2a_base64(data, newline=False).translate(_TO_URL).decode("ascii")


def pack(fields: dict[str, Any]) -> str:
    """Encode a token's JSON fields into the wire form."""
    return urlsafe_b64encode(compress(orjson.dumps(fields)))


def b64encode(data: bytes) -> str:
    """Standard base64 text, as used inside the JSON for ``TLS.sig`` and ``TLS.userbuf``."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def strict_b64decode(text: str) -> bytes | None:
    """Decode standard base64 only if ``text`` is its canonical encoding, else ``None``.

    Canonical means the re-encoding gives back the same text: no whitespace, padding where
    due and zero unused bits, so no two different strings decode to the same bytes.
    """
    try:
        raw = text.encode("ascii")
        data = binascii.a2b_base64(raw, strict_mode=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        return None
    if binascii.b2a_base64(data, newline=False) != raw:
        return None
    return data


def unwrap(token: str, limits: VerifyLimits = DEFAULT_LIMITS) -> bytes:
    """Undo the url map, base64 and zlib layers; return the JSON bytes.

    Raises :class:`TokenEmpty` (1), :class:`TokenEncodingError` (2) or
    :class:`DecompressionError` (3).
    """
    if not isinstance(token, str):
        raise TokenEncodingError("token must be text")
    if not token:
        raise TokenEmpty("token is empty")
    if len(token) > limits.max_token_chars:
        raise TokenEncodingError(
            f"token is {len(token)} characters, over the cap of {limits.max_token_chars}"
        )
    if token.lstrip().startswith("{"):
        raise TokenEncodingError("token is uncompressed JSON (the oldest form), not supported")
    try:
        raw = token.encode("ascii")
    except UnicodeEncodeError:
        raise TokenEncodingError("token contains non-ASCII characters") from None
    if not _URL_ALPHABET.fullmatch(raw):
        raise TokenEncodingError("token contains characters outside the alphabet A-Za-z0-9*-_")
    compressed = strict_b64decode(raw.translate(_FROM_URL).decode("ascii"))
    if compressed is None:
        raise TokenEncodingError("token is not canonical base64 (bad length or padding)")
    return _bounded_inflate(compressed, limits.max_inflated_bytes)


def _bounded_inflate(data: bytes, cap: int) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, cap + 1)
    except zlib.error as exc:
        raise DecompressionError(f"zlib decompression failed: {exc}") from None
    if len(out) > cap or inflater.unconsumed_tail:
        raise DecompressionError(f"decompressed token exceeds the cap of {cap} bytes")
    if not inflater.eof:
        raise DecompressionError("zlib stream is truncated")
    if inflater.unused_data:
        raise DecompressionError("unexpected bytes after the end of the zlib stream")
    return out


class _Rejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BigInt(int):
    """An integer literal too long to be a valid field; ``literal`` keeps (the start of)
    its text for diagnosis, the value itself is never computed."""

    literal: str

    def __new__(cls, literal: str) -> BigInt:
        obj = super().__new__(cls, 0)
        obj.literal = literal if len(literal) <= 40 else literal[:40] + "..."
        return obj


class Fraction(float):
    """A JSON number with a fraction or exponent; no UserSig field may be one."""


# A string literal, or an unclosed one running to the end (possessive, so an unclosed
# string is consumed once instead of rescanned from every later quote), or a bracket.
_DEPTH_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)|[\[\]{}]', re.DOTALL)


def parse_json(data: bytes, limits: VerifyLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Parse the inflated JSON of a token, refusing anything a token would never contain.

    Raises :class:`JsonError` (4). Field types are left to the caller; integers longer than
    ``max_int_digits`` come back as :class:`BigInt` and non-integers as :class:`Fraction`,
    so the caller can report them with the code that fits the field.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise JsonError("token JSON is not valid UTF-8") from None
    _check_depth(text, limits.max_json_depth)

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in items:
            if key in obj:
                raise _Rejected(f"duplicate key {key[:40]!r} in token JSON")
            obj[key] = value
        return obj

    def constant(name: str) -> Any:
        raise _Rejected(f"non-finite number {name} in token JSON")

    def integer(literal: str) -> int:
        if len(literal.lstrip("-")) > limits.max_int_digits:
            return BigInt(literal)
        return int(literal)

    try:
        parsed = json.loads(
            text,
            object_pairs_hook=pairs,
            parse_constant=constant,
            parse_int=integer,
            parse_float=Fraction,
        )
    except _Rejected as exc:
        raise JsonError(exc.reason) from None
    except (ValueError, RecursionError) as exc:
        raise JsonError(f"token JSON does not parse: {exc}") from None
    if not isinstance(parsed, dict):
        raise JsonError("token JSON is not an object")
    _reject_lone_surrogates(parsed)
    return parsed


def _check_depth(text: str, cap: int) -> None:
    depth = 0
    for piece in _DEPTH_TOKEN.findall(text):
        if piece[0] == '"':
            continue
        depth += 1 if piece in "[{" else -1
        if depth > cap:
            raise JsonError(f"token JSON is nested deeper than {cap} levels")


def _reject_lone_surrogates(obj: dict[str, Any]) -> None:
    for key, value in obj.items():
        for text in (key, value):
            if isinstance(text, str):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    raise JsonError("token JSON contains a lone surrogate escape") from None
