"""The locust users of each scenario, and the storm's load shape.

Imported only inside the ``python -m loadtest`` process (gevent monkey-patches on import of
locust). Users read the run's :class:`Context` from :data:`CONTEXT`, set by the runner
before the locust environment is made. User number k talks to ``hosts[k % len(hosts)]``.
"""

from __future__ import annotations

import itertools
import math
import random
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent
from locust import LoadTestShape, User
from locust.contrib.fasthttp import FastHttpUser, ResponseContextManager

from loadtest import checks, connections
from loadtest.checks import Problem, TokenChecker
from signer.core import VerificationError
from signer.core.envelope import b64encode, pack
from signer.core.verify import decode

connections.install()


@dataclass
class Context:
    """What every user of a run shares."""

    hosts: list[str]
    api_key: str
    sdkappids: list[int]
    checker: TokenChecker
    options: Any  # the parsed command line (loadtest.options)
    salt: str = field(default_factory=lambda: f"lt{random.getrandbits(32):08x}")
    storm_userids: list[int] = field(default_factory=list)
    warm_at: float = 0.0  # storm: perf_counter() when the warm phase starts (inf: not yet)
    cold_queue: itertools.count[int] = field(default_factory=itertools.count)
    """storm: the next login of the cold phase, an index into ``storm_userids``"""
    warm_queue: itertools.count[int] = field(default_factory=itertools.count)
    cold_answered: int = 0  # storm: cold logins answered
    storm_done: int = 0  # storm: users that found the warm phase's queue empty
    naive: bool = False  # --baseline-naive: POST /usersig {"userid"} -> {"usersig"}
    counter: itertools.count[int] = field(default_factory=itertools.count)

    def userid(self, number: int) -> str:
        """The userid of ``number`` in this run's space (salted: nothing cached before)."""
        return f"{self.salt}-{number}"


CONTEXT: Context | None = None


def context() -> Context:
    if CONTEXT is None:
        raise RuntimeError("loadtest.scenarios.CONTEXT is not set")
    return CONTEXT


class SignerUser(FastHttpUser):
    """A client of the signer API: one host per user, round-robin by the user's number."""

    abstract = True

    def wait_time(self) -> float:
        return float(self.ctx.options.wait)

    def __init__(self, environment: Any) -> None:
        ctx = context()
        self.ctx = ctx
        self.number = next(ctx.counter)
        self.host = ctx.hosts[self.number % len(ctx.hosts)]
        self.network_timeout = ctx.options.timeout
        self.connection_timeout = ctx.options.timeout
        super().__init__(environment)
        self.rng = random.Random(f"{ctx.salt}/{self.number}")  # noqa: S311 (load, not secrets)
        self.headers = {"Authorization": f"Bearer {ctx.api_key}"}

    def app(self) -> int:
        return self.rng.choice(self.ctx.sdkappids)

    # ------------------------------------------------------------------ requests

    def fetch(self, userid: str, sdkappid: int, name: str) -> dict[str, Any] | None:
        """POST /v1/usersig and check the token; a wrong one is a failure of ``name``."""
        if self.ctx.naive:
            return self.fetch_naive(userid, sdkappid, name)
        body = {"sdkappid": sdkappid, "userid": userid}
        with self.client.post(
            "/v1/usersig", json=body, headers=self.headers, name=name, catch_response=True
        ) as response:
            answer = self._json(response, 200)
            if answer is None:
                return None
            problem = self.ctx.checker.check(answer, userid=userid, sdkappid=sdkappid)
            if problem is not None:
                response.failure(str(problem))
                return None
            return answer  # type: ignore[no-any-return]

    def fetch_naive(self, userid: str, sdkappid: int, name: str) -> dict[str, Any] | None:
        """``--baseline-naive``: bench/naive_app.py's ``POST /usersig {"userid"}``, which
        answers ``{"usersig"}`` only. The token gets the same checks (it names the userid
        and sdkappid, has its life left, a share fully verified with the v2 secret); the
        answer's userid, sdkappid and expires_at, which that API lacks, are the asked ones
        and the token's own expiry."""
        with self.client.post(
            "/usersig", json={"userid": userid}, name=name, catch_response=True
        ) as response:
            answer = self._json(response, 200)
            if answer is None:
                return None
            token = answer.get("usersig") if isinstance(answer, dict) else None
            if not isinstance(token, str):
                malformed = Problem(checks.MALFORMED, f"no usersig in {answer!r:.100}")
                response.failure(str(self.ctx.checker.count(malformed)))
                return None
            try:
                expires_at = checks.expiry(decode(token))
            except (VerificationError, KeyError, TypeError, ValueError) as exc:
                undecodable = Problem(checks.UNDECODABLE, f"{type(exc).__name__}: {exc}")
                response.failure(str(self.ctx.checker.count(undecodable)))
                return None
            full = {"usersig": token, "userid": userid, "sdkappid": sdkappid}
            full["expires_at"] = expires_at
            problem = self.ctx.checker.check(full, userid=userid, sdkappid=sdkappid)
            if problem is not None:
                response.failure(str(problem))
                return None
            return full

    def batch(self, userids: list[str], sdkappid: int, name: str) -> None:
        """POST /v1/usersig/batch; every token in it is checked."""
        body = {"sdkappid": sdkappid, "userids": userids}
        with self.client.post(
            "/v1/usersig/batch", json=body, headers=self.headers, name=name, catch_response=True
        ) as response:
            answer = self._json(response, 200)
            if answer is None:
                return
            results = answer.get("results") if isinstance(answer, dict) else None
            if not isinstance(results, list) or len(results) != len(userids):
                got = len(results) if isinstance(results, list) else None
                malformed = Problem(checks.MALFORMED, f"{len(userids)} userids, {got} results")
                response.failure(str(self.ctx.checker.count(malformed)))
                return
            first: Problem | None = None
            bad = 0
            for userid, item in zip(userids, results, strict=True):
                problem: Problem | None
                if isinstance(item, dict) and "error" in item:
                    problem = self.ctx.checker.count(
                        Problem(checks.BATCH_ITEM_ERROR, f"{userid!r}: {item['error']}")
                    )
                else:
                    problem = self.ctx.checker.check(item, userid=userid, sdkappid=sdkappid)
                if problem is not None:
                    bad += 1
                    first = first or problem
            if first is not None:
                response.failure(f"{first} ({bad} of {len(userids)} tokens bad)")

    def verify(self, body: dict[str, Any], want_code: int, name: str) -> None:
        """POST /v1/verify and expect ``code == want_code`` (0: ok)."""
        with self.client.post(
            "/v1/verify", json=body, headers=self.headers, name=name, catch_response=True
        ) as response:
            answer = self._json(response, 200)
            if answer is None:
                return
            ok, code = answer.get("ok"), answer.get("code")
            if ok is not (want_code == 0) or code != want_code:
                problem = Problem(
                    checks.WRONG_VERIFY_ANSWER,
                    f"wanted code {want_code}, got ok={ok} code={code}: {answer.get('reason')}",
                )
                response.failure(str(self.ctx.checker.count(problem)))

    def delete(self, userid: str, sdkappid: int, name: str) -> None:
        path = f"/v1/usersig/{sdkappid}/{urllib.parse.quote(userid, safe='')}"
        with self.client.delete(
            path, headers=self.headers, name=name, catch_response=True
        ) as response:
            answer = self._json(response, 200)
            if answer is None:
                return
            if answer.get("userid") != userid or not isinstance(answer.get("evicted"), int):
                problem = Problem(checks.WRONG_DELETE_ANSWER, f"{answer}")
                response.failure(str(self.ctx.checker.count(problem)))

    def _json(self, response: ResponseContextManager, status: int) -> Any:
        if response.status_code != status:
            text = (
                (response.text or "")[:200]
                if response.status_code
                else getattr(response, "error", None)
            )
            problem = Problem(checks.HTTP_STATUS, f"{response.status_code}: {text}")
            response.failure(str(self.ctx.checker.count(problem)))
            return None
        try:
            return response.json()
        except ValueError:
            problem = Problem(checks.MALFORMED, "the body is not JSON")
            response.failure(str(self.ctx.checker.count(problem)))
            return None


# ---------------------------------------------------------------------- storm


class StormShape(LoadTestShape):
    """0 to U users within S seconds (cold), then the same users again within S (warm).

    It ends 2 S + 2 s after the start, or later if some users have not had both answers
    yet (a storm the service falls behind on), bounded by ``--run-time``."""

    def tick(self) -> tuple[int, float] | None:
        ctx = context()
        users, seconds = ctx.options.users, ctx.options.storm_seconds
        if self.get_run_time() >= 2 * seconds + 2 and ctx.storm_done >= users:
            return None
        return users, max(1.0, users / seconds)


class StormUser(SignerUser):
    """Logs in cold, waits for the warm phase, then logs in again from a random moment of
    the warm phase's S seconds. With ``--logins-per-user`` K, the phase's U x K userids
    (never asked before) are one queue the users take from, each the next as its last
    login is answered, until none is left: every user stays busy to the end of the phase,
    so its rate is the service's, not that of the unluckiest user's K logins in a row
    (a fixed K each left a 1,000,000-login phase on a third of its users, the others
    done and idle, for its second half). The warm phase takes the same queue again and
    starts 1 s after the last cold login is answered (with one login each too: at a fixed
    time, a storm the service fell behind on had its last cold logins in the warm phase's
    figures, and its signatures "at the warm start" short of one per userid)."""

    def on_start(self) -> None:
        self.offset = self.rng.random() * self.ctx.options.storm_seconds
        self.phase = "cold"

    def wait_time(self) -> float:
        # Waiting (not sleeping in a task) lets locust stop the user at once at the end.
        if self.phase == "warm":
            if self.ctx.warm_at == math.inf:
                return 0.2  # the other users' cold logins are still under way
            return max(0.0, float(self.ctx.warm_at + self.offset - time.perf_counter()))
        return 3600.0

    def _login(self, index: int, name: str) -> None:
        ctx = self.ctx
        space = ctx.storm_userids
        sdkappid = ctx.sdkappids[index % len(ctx.sdkappids)]
        self.fetch(ctx.userid(space[index % len(space)]), sdkappid, name)

    def _storm(self) -> None:
        ctx = self.ctx
        total = ctx.options.users * ctx.options.logins_per_user
        if self.phase == "cold":
            while (index := next(ctx.cold_queue)) < total:
                self._login(index, "storm cold")
                ctx.cold_answered += 1
            self.phase = "warm"
            if ctx.cold_answered == total and ctx.warm_at == math.inf:
                ctx.warm_at = time.perf_counter() + 1
        elif self.phase == "warm":
            if time.perf_counter() < ctx.warm_at + self.offset:
                return  # not yet: wait_time says how long
            while (index := next(ctx.warm_queue)) < total:
                self._login(index, "storm warm")
            self.phase = "done"
            ctx.storm_done += 1

    tasks = [_storm]  # noqa: RUF012


# ---------------------------------------------------------------------- stampede


class StampedeUser(SignerUser):
    """Everybody asks for the same few userids, as fast as it can."""

    def _stampede(self) -> None:
        ctx = self.ctx
        userid = ctx.userid(self.rng.randrange(ctx.options.hot_userids))
        self.fetch(userid, self.app(), "stampede")

    tasks = [_stampede]  # noqa: RUF012


# ---------------------------------------------------------------------- batch


class BatchUser(SignerUser):
    """A load-test harness minting tokens 1,000 (--batch-size) at a time."""

    def _batch(self) -> None:
        ctx = self.ctx
        space, size = ctx.options.userid_space, ctx.options.batch_size
        userids = [ctx.userid(n) for n in self.rng.sample(range(space), min(size, space))]
        self.batch(userids, self.app(), f"batch {size}")

    tasks = [_batch]  # noqa: RUF012


# ---------------------------------------------------------------------- verify

TAMPERINGS: dict[str, int] = {"signature": 8, "userid": 13, "sdkappid": 14, "expired": 9}


def tamper(kind: str, body: dict[str, Any], other_sdkappid: int) -> dict[str, Any]:
    """A copy of the verify request ``body`` changed in the way ``kind`` names."""
    body = dict(body)
    if kind == "signature":
        fields = decode(body["usersig"])
        fields["TLS.sig"] = b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01" * 4)
        body["usersig"] = pack(fields)
    elif kind == "userid":
        body["userid"] = body["userid"] + "-x"
    elif kind == "sdkappid":
        body["sdkappid"] = other_sdkappid
    elif kind == "expired":
        body["now"] = body.pop("_expires_at") + 1
    body.pop("_expires_at", None)
    return body


class VerifyUser(SignerUser):
    """Verifies the tokens it got; a --tamper-share of them changed, which must fail with
    the right code (8 signature, 13 userid, 14 sdkappid, 9 expired)."""

    def on_start(self) -> None:
        self.pool: list[dict[str, Any]] = []
        for _ in range(5):
            userid = self.ctx.userid(self.rng.randrange(self.ctx.options.userid_space))
            sdkappid = self.app()
            answer = self.fetch(userid, sdkappid, "verify: fetch")
            if answer is not None:
                self.pool.append(
                    {
                        "sdkappid": sdkappid,
                        "userid": userid,
                        "usersig": answer["usersig"],
                        "_expires_at": answer["expires_at"],
                    }
                )

    def _verify(self) -> None:
        if not self.pool:
            gevent.sleep(1)
            return
        body = self.rng.choice(self.pool)
        if self.rng.random() < self.ctx.options.tamper_share:
            kinds = list(TAMPERINGS)
            if len(set(self.ctx.sdkappids)) < 2:
                kinds.remove("sdkappid")
            kind = self.rng.choice(kinds)
            other = next(a for a in [*self.ctx.sdkappids, 0] if a != body["sdkappid"])
            self.verify(tamper(kind, body, other), TAMPERINGS[kind], f"verify tampered {kind}")
        else:
            clean = {k: v for k, v in body.items() if k != "_expires_at"}
            self.verify(clean, 0, "verify good")

    tasks = [_verify]  # noqa: RUF012


# ---------------------------------------------------------------------- mixed


def mixed_user(weights: dict[str, int]) -> type[SignerUser]:
    """A user class doing the production mix with these task weights."""

    def warm(user: SignerUser) -> None:
        ctx = user.ctx
        number = user.rng.randrange(ctx.options.warm_userids)
        user.fetch(ctx.userid(number), ctx.sdkappids[number % len(ctx.sdkappids)], "mixed warm")

    def cold(user: SignerUser) -> None:
        ctx = user.ctx
        number = ctx.options.warm_userids + user.rng.randrange(ctx.options.userid_space)
        user.fetch(ctx.userid(number), user.app(), "mixed cold")

    def batch(user: SignerUser) -> None:
        ctx = user.ctx
        numbers = user.rng.sample(range(ctx.options.userid_space), ctx.options.mixed_batch_size)
        userids = [ctx.userid(ctx.options.warm_userids + n) for n in numbers]
        user.batch(userids, user.app(), "mixed batch")

    def verify(user: SignerUser) -> None:
        ctx = user.ctx
        number = user.rng.randrange(ctx.options.warm_userids)
        userid, sdkappid = ctx.userid(number), ctx.sdkappids[number % len(ctx.sdkappids)]
        answer = user.fetch(userid, sdkappid, "mixed warm")
        if answer is not None:
            body = {"sdkappid": sdkappid, "userid": userid, "usersig": answer["usersig"]}
            user.verify(body, 0, "mixed verify")

    def delete(user: SignerUser) -> None:
        ctx = user.ctx
        number = user.rng.randrange(ctx.options.warm_userids)
        user.delete(ctx.userid(number), ctx.sdkappids[number % len(ctx.sdkappids)], "mixed delete")

    everything: dict[str, Callable[[SignerUser], None]] = {
        "warm": warm,
        "cold": cold,
        "batch": batch,
        "verify": verify,
        "delete": delete,
    }
    tasks = {everything[name]: weight for name, weight in weights.items() if weight > 0}
    return type("MixedUser", (SignerUser,), {"tasks": tasks, "abstract": False})


def user_classes(scenario: str, options: Any) -> list[type[User]]:
    if scenario == "mixed":
        return [mixed_user(options.weights)]
    return [
        {
            "storm": StormUser,
            "stampede": StampedeUser,
            "batch": BatchUser,
            "verify": VerifyUser,
        }[scenario]
    ]
