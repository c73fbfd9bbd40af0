"""Strict DER for ECDSA signatures (``SEQUENCE { INTEGER r, INTEGER s }``).

Verifiers must accept exactly one encoding per signature: BER variants (long-form lengths,
padded integers, trailing bytes) are how signature malleability and parser differentials
creep in, so they are refused here before any library sees them.
"""

from __future__ import annotations

_SEQUENCE = 0x30
_INTEGER = 0x02
_MAX_INT_BYTES = 33  # a 256-bit value plus a sign byte


def decode_signature(der: bytes) -> tuple[int, int] | None:
    """Return ``(r, s)`` if ``der`` is a strictly DER-encoded signature, else ``None``."""
    if len(der) < 8 or der[0] != _SEQUENCE or der[1] != len(der) - 2 or der[1] >= 0x80:
        return None
    r, offset = _read_integer(der, 2)
    if r is None:
        return None
    s, offset = _read_integer(der, offset)
    if s is None or offset != len(der):
        return None
    return r, s


def _read_integer(der: bytes, offset: int) -> tuple[int | None, int]:
    if offset + 2 > len(der) or der[offset] != _INTEGER:
        return None, offset
    length = der[offset + 1]
    start, end = offset + 2, offset + 2 + length
    if length == 0 or length > _MAX_INT_BYTES or end > len(der):
        return None, offset
    body = der[start:end]
    if body[0] & 0x80:
        return None, offset  # negative
    if length > 1 and body[0] == 0 and not body[1] & 0x80:
        return None, offset  # superfluous leading zero
    return int.from_bytes(body, "big"), end


def encode_signature(r: int, s: int) -> bytes:
    """DER-encode ``(r, s)``; both must be positive."""
    body = _encode_integer(r) + _encode_integer(s)
    return bytes((_SEQUENCE, len(body))) + body


def _encode_integer(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 8) // 8, "big")
    return bytes((_INTEGER, len(raw))) + raw
