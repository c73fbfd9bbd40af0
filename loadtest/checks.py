"""Checking every token a scenario receives.

Pure (no locust, no gevent): the scenarios call it from their users, the unit tests call it
directly. A token is checked cheaply every time (the answer names the userid and sdkappid
asked for, the token itself decodes and says so too, and it has at least ``min_remaining``
seconds to live) and a sample of tokens is fully verified with signer's own verifier and
the app's public key (v1) or secret (v2).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from signer.core import EcPublicKey, HmacSecret, VerificationError, load_public_key
from signer.core.verify import decode, verify

# The kinds of failure a check reports: the first word of a locust failure's message.
HTTP_STATUS = "http_status"
MALFORMED = "malformed_response"
FOREIGN_USERID = "foreign_userid"
WRONG_SDKAPPID = "wrong_sdkappid"
NEAR_EXPIRY = "near_expiry"
UNDECODABLE = "undecodable_token"
BAD_TOKEN = "bad_token"  # noqa: S105 (a kind, no secret). The full verifier refused it: code in the detail
BATCH_ITEM_ERROR = "batch_item_error"
WRONG_VERIFY_ANSWER = "wrong_verify_answer"
WRONG_DELETE_ANSWER = "wrong_delete_answer"


@dataclass(frozen=True)
class Problem:
    """Why a token (or an answer) is wrong: ``kind`` is stable, ``detail`` for people."""

    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


def expiry(fields: dict[str, Any]) -> int:
    """When a decoded token expires: ``TLS.time`` plus its lifetime, which v2 names
    ``TLS.expire`` and v1 (the seeds', Tencent's tls-sig-api) ``TLS.expire_after``.
    Raises KeyError, TypeError or ValueError for a token without them."""
    life = "TLS.expire_after" if "TLS.expire_after" in fields else "TLS.expire"
    return int(fields["TLS.time"]) + int(fields[life])


@dataclass
class TokenChecker:
    """Checks tokens against what was asked; counts what it checked and found.

    ``keys`` maps a sdkappid to its verification key; apps without one get only the cheap
    checks. ``verify_rate`` is the share of tokens fully verified (0..1).
    """

    keys: dict[int, EcPublicKey | HmacSecret]
    min_remaining: int = 3600
    verify_rate: float = 0.1
    rng: random.Random = field(default_factory=random.Random)
    checked: int = 0
    verified: int = 0
    problems: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def check(
        self, answer: Any, *, userid: str, sdkappid: int, now: float | None = None
    ) -> Problem | None:
        """``None`` if ``answer`` (a TokenResponse object) is a good token for ``userid`` of
        ``sdkappid``, else the first problem found (also counted)."""
        problem = self._check(answer, userid, sdkappid, time.time() if now is None else now)
        with self._lock:
            self.checked += 1
            if problem is not None:
                self.problems[problem.kind] += 1
        return problem

    def count(self, problem: Problem) -> Problem:
        """Count a problem found outside :meth:`check` (a wrong status, a bad answer)."""
        with self._lock:
            self.problems[problem.kind] += 1
        return problem

    def _check(self, answer: Any, userid: str, sdkappid: int, now: float) -> Problem | None:
        if not isinstance(answer, dict):
            return Problem(MALFORMED, f"expected a token object, got {type(answer).__name__}")
        token = answer.get("usersig")
        expires_at = answer.get("expires_at")
        if not isinstance(token, str) or not isinstance(expires_at, int):
            return Problem(MALFORMED, f"no usersig/expires_at in {sorted(answer)}")
        if answer.get("userid") != userid:
            return Problem(
                FOREIGN_USERID, f"asked {userid!r}, answer is for {answer.get('userid')!r}"
            )
        if answer.get("sdkappid") != sdkappid:
            return Problem(
                WRONG_SDKAPPID, f"asked {sdkappid}, answer is for {answer.get('sdkappid')!r}"
            )
        try:
            fields = decode(token)
        except VerificationError as exc:
            return Problem(UNDECODABLE, f"code {exc.code}: {exc}")
        inner_userid = fields.get("TLS.identifier")
        if inner_userid != userid:
            return Problem(FOREIGN_USERID, f"asked {userid!r}, token is for {inner_userid!r}")
        inner_app = fields.get("TLS.sdk_appid", fields.get("TLS.sdkappid"))
        if str(inner_app) != str(sdkappid):
            return Problem(WRONG_SDKAPPID, f"asked {sdkappid}, token is for {inner_app!r}")
        try:
            inner_expiry = expiry(fields)
        except (KeyError, TypeError, ValueError):
            return Problem(UNDECODABLE, "TLS.time or its lifetime is missing or not a number")
        if inner_expiry != expires_at:
            return Problem(MALFORMED, f"expires_at {expires_at} but the token says {inner_expiry}")
        remaining = expires_at - now
        if remaining < self.min_remaining:
            return Problem(
                NEAR_EXPIRY,
                f"{remaining:.0f} s left, fewer than min_remaining {self.min_remaining}",
            )
        key = self.keys.get(sdkappid)
        if key is not None and self.rng.random() < self.verify_rate:
            try:
                verify(token, userid=userid, sdkappid=sdkappid, key=key, now=int(now))
            except VerificationError as exc:
                return Problem(BAD_TOKEN, f"code {exc.code}: {exc}")
            with self._lock:
                self.verified += 1
        return None


def load_keys(
    v1_sdkappid: int | None,
    v1_public_key: Path | None,
    v2_sdkappid: int | None,
    v2_secret_file: Path | None,
) -> dict[int, EcPublicKey | HmacSecret]:
    """The verification keys the files name, by sdkappid (an app without a file: none)."""
    keys: dict[int, EcPublicKey | HmacSecret] = {}
    if v1_sdkappid and v1_public_key is not None:
        keys[v1_sdkappid] = load_public_key(v1_public_key.read_bytes())
    if v2_sdkappid and v2_secret_file is not None:
        keys[v2_sdkappid] = HmacSecret.from_text(v2_secret_file.read_bytes())
    return keys
