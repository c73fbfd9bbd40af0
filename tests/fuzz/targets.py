"""A coverage-guided fuzz target (atheris, libFuzzer underneath) on what reads hostile
input: the token verifier and decoder, and the request body parser (JSON, the repeated-key
check, the request models).

What counts as a bug: any exception other than the refusals these functions promise
(``VerificationError`` with Tencent's code from the verifier, ``ApiError`` from the body
parser), and the repeated-key check's fast path disagreeing with its exact check.

    .venv/bin/python tests/fuzz/targets.py -max_total_time=600 -seed=1 tests/fuzz/corpus
    .venv/bin/python tests/fuzz/targets.py -runs=20000 -seed=1     # the suite's short run

Arguments are libFuzzer's. The corpus folder (git-ignored) keeps what it found; seeds are
made below from real tokens and bodies.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["signer"]):
    import orjson

    from signer.core import (
        Curve,
        HmacSecret,
        V1Signer,
        V2Signer,
        VerificationError,
        decode,
        generate_private_key,
        verify,
    )
    from signer.service.errors import ApiError
    from signer.service.handlers import duplicate_key, validate
    from signer.service.schemas import (
        BatchRequest,
        PrivateMapKeyRequest,
        UserSigRequest,
        VerifyRequest,
    )

SDKAPPID = 1400000001
KEY = generate_private_key(Curve.P256)
SECRET = HmacSecret.from_text("5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e")
MODELS = [UserSigRequest, BatchRequest, PrivateMapKeyRequest, VerifyRequest]


def seeds() -> list[bytes]:
    """Inputs to start from: each a mode byte and then a real token or body."""
    v1 = V1Signer(SDKAPPID, KEY).sign("alice", 86400, issued_at=1_700_000_000).usersig
    v2 = V2Signer(SDKAPPID, SECRET).sign("bob", 86400, b"buf", issued_at=1_700_000_000).usersig
    bodies = [
        b'{"sdkappid": 1400000001, "userid": "alice", "expire": 86400}',
        b'{"sdkappid": 1400000001, "userids": ["a", "b", "\\u00e9"]}',
        b'{"sdkappid": 1, "userid": "u", "room_id": 5, "privilege": 255}',
        b'{"sdkappid": 1, "userid": "u", "usersig": "x", "now": 1.0, "userid": "v"}',
    ]
    return [b"\x00" + v1.encode(), b"\x01" + v2.encode(), *(b"\x02" + b for b in bodies)]


def check_token(text: str) -> None:
    for key in (KEY.public_key(), SECRET):
        try:
            verify(text, userid="alice", sdkappid=SDKAPPID, key=key, now=1_700_000_100)
        except VerificationError as exc:
            assert isinstance(exc.code, int) and 1 <= exc.code <= 99, exc
    with contextlib.suppress(VerificationError):
        decode(text)


def check_body(raw: bytes, which: int) -> None:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return
    if not isinstance(data, dict):
        return
    try:
        repeated = duplicate_key(raw, data)
    except ApiError:  # nested too deeply for the stdlib parser: refused as malformed
        return
    exact = _exact_repeat(raw)
    assert (repeated is None) == (exact is None), (raw, repeated, exact)
    if repeated is not None:
        return
    with contextlib.suppress(ApiError):
        validate(MODELS[which % len(MODELS)], data)


def _exact_repeat(raw: bytes) -> str | None:
    found: list[str] = []

    def hook(pairs: list[tuple[str, object]]) -> dict[str, object]:
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys) and not found:
            found.append(next(k for k in keys if keys.count(k) > 1))
        return dict(pairs)

    try:
        json.loads(raw, object_pairs_hook=hook)
    except (ValueError, RecursionError):
        return None
    return found[0] if found else None


def one_input(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0], data[1:]
    if mode % 3 in (0, 1):
        check_token(rest.decode("utf-8", "replace"))
    else:
        check_body(rest, mode // 3)


def main(argv: list[str]) -> None:
    corpus = [a for a in argv[1:] if not a.startswith("-")]
    for folder in corpus:
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        for n, seed in enumerate(seeds()):
            (path / f"seed-{n}").write_bytes(seed)
    if not corpus:  # no folder: run the seeds first, then mutate from nothing
        for seed in seeds():
            one_input(seed)
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
