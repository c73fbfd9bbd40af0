"""The token checker of loadtest/ on its own: no servers, no locust."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from loadtest import checks
from loadtest.checks import TokenChecker
from signer.core import HmacSecret, V1Signer, V2Signer, generate_private_key
from signer.core.envelope import b64encode, pack
from signer.core.verify import decode

V1, V2 = 1400000001, 1400000002


@pytest.fixture(scope="module")
def apps() -> tuple[V1Signer, V2Signer, TokenChecker]:
    private = generate_private_key()
    secret = HmacSecret(b"loadtest-unit-secret")
    checker = TokenChecker(
        {V1: private.public_key(), V2: secret}, min_remaining=3600, verify_rate=1.0
    )
    return V1Signer(V1, private), V2Signer(V2, secret), checker


def answer(issued, **override):
    body = {
        "usersig": issued.usersig,
        "sdkappid": issued.sdkappid,
        "userid": issued.userid,
        "issued_at": issued.issued_at,
        "expires_at": issued.expires_at,
        "key_version": "",
        "cached": False,
    }
    body.update(override)
    return body


def resign(token: str) -> str:
    """The same token with another (well-formed, wrong) signature."""
    fields = decode(token)
    fields["TLS.sig"] = b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01")
    return pack(fields)


@pytest.mark.parametrize("version", [1, 2])
def test_good_token_passes_and_is_fully_verified(apps, version):
    """A genuine token for the userid and sdkappid asked, with a day to live, passes every
    check, and with verify_rate 1 is counted as fully verified.
    Catches: a checker that refuses good tokens (every run would fail) or never verifies."""
    signer = apps[version - 1]
    checker = TokenChecker(apps[2].keys, verify_rate=1.0)
    issued = signer.sign("alice", expire=86400)
    assert checker.check(answer(issued), userid="alice", sdkappid=signer.sdkappid) is None
    assert (checker.checked, checker.verified, dict(checker.problems)) == (1, 1, {})


@pytest.mark.parametrize("version", [1, 2])
def test_each_wrong_token_fails_with_its_kind(apps, version):
    """A token for another userid (in the answer or only inside the token), another
    sdkappid, with less than min_remaining left, or with a tampered signature each fail
    with their own kind, and each is counted under it.
    Catches: a foreign, cross-app, near-expiry or forged token passing as good."""
    signer = apps[version - 1]
    other_app = V2 if signer.sdkappid == V1 else V1
    checker = TokenChecker(apps[2].keys, min_remaining=3600, verify_rate=1.0)
    good = signer.sign("alice", expire=86400)
    bob = signer.sign("bob", expire=86400)
    short = signer.sign("alice", expire=600)
    cases = {
        checks.FOREIGN_USERID: [
            (answer(good, userid="bob"), "bob", signer.sdkappid),
            (answer(bob, userid="alice"), "alice", signer.sdkappid),  # only the token says bob
        ],
        checks.WRONG_SDKAPPID: [
            (answer(good, sdkappid=other_app), "alice", other_app),  # the token says otherwise
            (answer(good), "alice", other_app),
        ],
        checks.NEAR_EXPIRY: [(answer(short), "alice", signer.sdkappid)],
        checks.BAD_TOKEN: [(answer(good, usersig=resign(good.usersig)), "alice", signer.sdkappid)],
        checks.UNDECODABLE: [(answer(good, usersig="not a token"), "alice", signer.sdkappid)],
        checks.MALFORMED: [({"userid": "alice"}, "alice", signer.sdkappid)],
    }
    for kind, items in cases.items():
        for body, userid, sdkappid in items:
            problem = checker.check(body, userid=userid, sdkappid=sdkappid)
            assert problem is not None and problem.kind == kind, (kind, body, problem)
            assert str(problem).startswith(f"{kind}: ")
    assert dict(checker.problems) == {kind: len(items) for kind, items in cases.items()}
    if version == 1:
        assert "code 8" in str(
            checker.check(answer(good, usersig=resign(good.usersig)), userid="alice", sdkappid=V1)
        )


def test_without_keys_only_the_cheap_checks_run(apps):
    """With no key for an app, a token is still checked (userid, sdkappid, life left) but
    none is fully verified, and a forged signature goes unnoticed, as the README says.
    Catches: a --target run without key files crashing, or claiming full verification."""
    signer = apps[0]
    checker = TokenChecker({}, verify_rate=1.0)
    good = signer.sign("alice", expire=86400)
    forged = answer(good, usersig=resign(good.usersig))
    assert checker.check(forged, userid="alice", sdkappid=V1) is None
    assert checker.check(answer(good), userid="carol", sdkappid=V1).kind == checks.FOREIGN_USERID
    assert (checker.checked, checker.verified) == (2, 0)


def test_near_expiry_is_judged_at_now(apps):
    """min_remaining is measured from the check's own clock: a token with two hours left
    passes with min_remaining one hour and fails with three.
    Catches: a checker comparing against issue time or ignoring min_remaining."""
    good = apps[0].sign("alice", expire=7200)
    now = time.time()
    assert (
        TokenChecker({}, min_remaining=3600).check(
            answer(good), userid="alice", sdkappid=V1, now=now
        )
        is None
    )
    late = TokenChecker({}, min_remaining=3 * 3600)
    assert late.check(answer(good), userid="alice", sdkappid=V1, now=now).kind == checks.NEAR_EXPIRY


def test_checks_and_options_import_no_gevent():
    """loadtest.checks and loadtest.options can be imported without locust or gevent
    (only the runner patches), so this suite and any tool may use them.
    Catches: gevent's monkey-patching leaking into the pytest process via an import."""
    code = (
        "import sys, loadtest.checks, loadtest.options; "
        "print(sorted(m for m in ('gevent', 'locust') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_redis_info_is_parsed_into_its_fields():
    """``INFO memory`` as Redis sends it: section headers and blank lines dropped, values
    kept as text (``used_memory_human`` is what the storm report quotes).
    Catches: a report that reads a header as a field or loses the human-readable figure."""
    from loadtest.local import parse_info

    text = "# Memory\r\nused_memory:1251480\r\nused_memory_human:1.19M\r\n\r\nmaxmemory:0\r\n"
    assert parse_info(text) == {
        "used_memory": "1251480",
        "used_memory_human": "1.19M",
        "maxmemory": "0",
    }


def test_baseline_naive_options_pick_one_app_and_need_local():
    """A naive server (bench/naive_app.py) signs one app: the v2 app, v1 left out, unless
    ``--v2-sdkappid 0`` asks for the v1 app; it needs --local and the storm or stampede.
    Catches: a baseline run sending v1 requests the naive server would sign as v2."""
    from loadtest.options import parse

    options = parse(["storm", "--local", "--baseline-naive"])
    assert options.baseline_naive and options.v1_sdkappid == 0 and options.v2_sdkappid
    options = parse(["storm", "--local", "--baseline-naive", "--v2-sdkappid", "0"])
    assert options.v1_sdkappid and options.v2_sdkappid == 0
    for argv in (
        ["storm", "--target", "http://x", "--api-key-file", "k", "--baseline-naive"],
        ["batch", "--local", "--baseline-naive"],
        ["storm", "--local", "--baseline-naive", "--v1-sdkappid", "0", "--v2-sdkappid", "0"],
    ):
        with pytest.raises(SystemExit):
            parse(argv)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_tokens_expiry_is_read_from_its_own_fields(apps, version):
    """The naive baseline's answer has no expires_at: the storm reads it from the token.
    Catches: reading v2's TLS.expire from a v1 token (which says TLS.expire_after): every
    token of a naive v1 storm counted undecodable."""
    from loadtest.checks import expiry
    from signer.core.verify import decode

    v1, v2, _ = apps
    token = (v1 if version == "v1" else v2).sign("alice", 600)
    assert expiry(decode(token.usersig)) == token.issued_at + 600
