"""Which userids may be signed.

The signed text of a UserSig is line based (``TLS.identifier:<userid>\\n``), so a newline in a
userid would let a caller forge an extra signed line; control characters are therefore
refused outright, together with the Unicode line and paragraph separators that some
consumers also treat as line breaks. Lone surrogates cannot be encoded as UTF-8 at all.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from signer.core.errors import InvalidUserId
from signer.core.limits import DEFAULT_MAX_USERID_BYTES

_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


@dataclass(frozen=True, slots=True)
class UserIdPolicy:
    """The rules a userid must satisfy before it is signed.

    ``max_bytes`` counts UTF-8 bytes, not characters: Tencent's limit is in bytes, and an
    emoji is four of them.
    """

    max_bytes: int = DEFAULT_MAX_USERID_BYTES

    def check(self, userid: str) -> bytes:
        """Return the UTF-8 bytes of ``userid`` or raise :class:`InvalidUserId`."""
        if not isinstance(userid, str):
            raise InvalidUserId("invalid_unicode", "userid must be a string")
        if not userid:
            raise InvalidUserId("empty", "userid is empty")
        if userid.isascii() and userid.isprintable():  # the common case, without a scan
            encoded = userid.encode("ascii")
        else:
            try:
                encoded = userid.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidUserId(
                    "invalid_unicode", "userid contains a lone surrogate and is not valid Unicode"
                ) from None
            _reject_control_characters(userid)
        if len(encoded) > self.max_bytes:
            raise InvalidUserId(
                "too_long",
                f"userid is {len(encoded)} bytes in UTF-8; the limit is {self.max_bytes}",
            )
        return encoded


def first_control_character(text: str) -> int | None:
    """Index of the first character a line-based signed text must never contain, if any:
    C0/C1 controls and DEL, lone surrogates, U+2028 and U+2029."""
    for position, char in enumerate(text):
        if unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
            return position
    return None


def _reject_control_characters(userid: str) -> None:
    position = first_control_character(userid)
    if position is not None:
        raise InvalidUserId(
            "control_character",
            f"userid contains the control character U+{ord(userid[position]):04X} "
            f"at position {position}",
        )


DEFAULT_POLICY = UserIdPolicy()
