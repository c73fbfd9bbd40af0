"""Token records as output lines (JSON Lines or CSV), rendered where the tokens are made.

``signer bulk`` has workers render whole chunks of records, so a token crosses the process
boundary once, as finished bytes, and the parent only writes them out in order.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import orjson

from signer.core import IssuedToken, SignerError

Format = Literal["jsonl", "csv"]
CSV_HEADER = b"userid,usersig,issued_at,expires_at,error\n"


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered chunk. ``clean_bytes`` is the length of the part before the first error
    record (all of ``data`` when there is none), so ``--strict`` can stop exactly there."""

    data: bytes
    tokens: int
    errors: int
    clean_bytes: int
    clean_records: int
    first_error: str | None = None


def error_detail(error: SignerError) -> dict[str, object]:
    """``{"type", "message", "rule"?, "field"?}`` for a failed item."""
    detail: dict[str, object] = {"type": type(error).__name__, "message": error.message}
    for attribute in ("rule", "field"):
        value = getattr(error, attribute, None)
        if value is not None:
            detail[attribute] = value
    return detail


def _jsonl(userid: str, outcome: IssuedToken | SignerError) -> bytes:
    if isinstance(outcome, SignerError):
        record: dict[str, object] = {"userid": userid, "error": error_detail(outcome)}
    else:
        record = {
            "userid": userid,
            "usersig": outcome.usersig,
            "issued_at": outcome.issued_at,
            "expires_at": outcome.expires_at,
        }
    try:
        return orjson.dumps(record) + b"\n"
    except orjson.JSONEncodeError:  # a userid read with undecodable bytes
        record["userid"] = userid.encode("utf-8", "backslashreplace").decode("ascii", "replace")
        return orjson.dumps(record) + b"\n"


def _csv(userid: str, outcome: IssuedToken | SignerError) -> bytes:
    buffer = io.StringIO()
    if isinstance(outcome, SignerError):
        row: tuple[object, ...] = (
            userid,
            "",
            "",
            "",
            f"{type(outcome).__name__}: {outcome.message}",
        )
    else:
        row = (userid, outcome.usersig, outcome.issued_at, outcome.expires_at, "")
    csv.writer(buffer, lineterminator="\n").writerow(row)
    return buffer.getvalue().encode("utf-8", "backslashreplace")


def render(outcomes: Iterable[tuple[str, IssuedToken | SignerError]], fmt: Format) -> Rendered:
    """Render ``(userid, outcome)`` pairs in order, one record each, errors included."""
    line = _jsonl if fmt == "jsonl" else _csv
    parts: list[bytes] = []
    size = tokens = errors = 0
    clean: int | None = None
    clean_records = 0
    first_error = None
    for userid, outcome in outcomes:
        if isinstance(outcome, SignerError):
            errors += 1
            if clean is None:
                clean, clean_records = size, tokens
                first_error = f"{userid!r}: {outcome.message}"
        else:
            tokens += 1
        part = line(userid, outcome)
        parts.append(part)
        size += len(part)
    if clean is None:
        clean, clean_records = size, tokens
    return Rendered(b"".join(parts), tokens, errors, clean, clean_records, first_error)
