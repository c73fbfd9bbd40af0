"""Named bounds of the token core.

Tokens arrive from outside, so every amount of work a verifier does for one is capped here.
The values are generous for real tokens (a v1 token with a 32-byte userid is ~300 characters)
and small enough that a hostile token costs microseconds and kilobytes.
"""

from __future__ import annotations

from dataclasses import dataclass

UINT32_MAX = 0xFFFF_FFFF
"""time, expire, sdkappid and room ids are 32-bit unsigned on Tencent's side."""

DEFAULT_EXPIRE = 180 * 86400
"""Lifetime Tencent's reference libraries use when none is given: 180 days."""

DEFAULT_MAX_USERID_BYTES = 32
"""Tencent documents a 32-byte maximum for userids."""

MAX_USERBUF_BYTES = 4096
"""Largest userbuf this project signs; a privilege map is under 100 bytes."""

MAX_ROOM_STR_BYTES = 64
"""Tencent's documented maximum for string room ids."""

PRIVILEGE_ALL = 255
"""Privilege bit map granting every TRTC room right."""


@dataclass(frozen=True, slots=True)
class VerifyLimits:
    """What a verifier is willing to spend on one token.

    ``max_token_chars`` caps the input, ``max_inflated_bytes`` the zlib output (checked while
    streaming, so a bomb never materialises), ``max_json_depth`` the nesting of the JSON text
    (a valid token has depth 1) and ``max_int_digits`` the length of any JSON integer literal.
    """

    max_token_chars: int = 16 * 1024
    max_inflated_bytes: int = 32 * 1024
    max_json_depth: int = 4
    max_int_digits: int = 20


DEFAULT_LIMITS = VerifyLimits()
