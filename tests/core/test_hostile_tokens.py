"""A corpus of hostile tokens: each gets its Tencent code, quickly and in bounded memory."""

from __future__ import annotations

import base64
import json
import tracemalloc
import zlib

import pytest

from signer.core import (
    DEFAULT_POLICY,
    EcPublicKey,
    HmacSecret,
    IdentifierMismatch,
    UserIdPolicy,
    V1Signer,
    V2Signer,
    VerificationError,
    decode,
    verify,
)
from signer.core.der import decode_signature
from tests.conftest import ISSUED_AT, SDKAPPID
from tests.core.hostile import inflate_bomb, signed_v1, urlmap, wrap

V2_FIELDS = {
    "TLS.ver": "2.0",
    "TLS.identifier": "alice",
    "TLS.sdkappid": SDKAPPID,
    "TLS.time": ISSUED_AT,
    "TLS.expire": 100,
    "TLS.sig": "AAAA",
}


def v2_with(**changes: object) -> str:
    fields: dict[str, object] = {**V2_FIELDS}
    for name, value in changes.items():
        key = "TLS." + name
        if value is ...:
            fields.pop(key)
        else:
            fields[key] = value
    return wrap(json.dumps(fields).encode())


def code_of(token: str, key: object = None, userid: str = "alice") -> int:
    try:
        verify(
            token,
            userid=userid,
            sdkappid=SDKAPPID,
            key=key or HmacSecret(b"k"),  # type: ignore[arg-type]
            now=ISSUED_AT,
        )
    except VerificationError as exc:
        return exc.code
    return 0


CORPUS = {
    "empty": ("", 1),
    "over length cap": ("A" * 20_000, 2),
    "bad alphabet": ("abc$def", 2),
    "standard base64 chars": ("ab+/", 2),
    "non-canonical padding": ("YWJj_", 2),
    "non-ascii": ("tökén", 2),
    "uncompressed oldest form": ('{"TLS.identifier":"alice"}', 2),
    "not zlib": (urlmap(b"hello world, not zlib"), 3),
    "truncated zlib": (urlmap(zlib.compress(b'{"a":"b"}')[:-3]), 3),
    "trailing bytes after stream": (urlmap(zlib.compress(b'{"a":"b"}') + b"extra"), 3),
    "inflate bomb 10 MB": (inflate_bomb(10 << 20), 3),
    "not utf-8": (wrap(b'{"TLS.identifier":"\xff\xfe"}'), 4),
    "not json": (wrap(b"{this is not json"), 4),
    "top level array": (wrap(b"[1,2,3]"), 4),
    "deep nesting": (wrap(b'{"a":' + b"[" * 5_000 + b"]" * 5_000 + b"}"), 4),
    "nested object in string-looking place": (wrap(b'{"a":{"b":{"c":{"d":{"e":1}}}}}'), 4),
    "duplicate keys": (wrap(b'{"TLS.identifier":"alice","TLS.identifier":"bob"}'), 4),
    "NaN": (v2_with(time=float("nan")), 4),
    "Infinity": (wrap(b'{"TLS.ver":"2.0","TLS.time":Infinity}'), 4),
    "lone surrogate": (wrap(b'{"TLS.identifier":"\\ud800"}'), 4),
    "unclosed string with escaped quotes": (wrap(b'"' + b'\\"' * 16383), 4),
    "missing sig": (v2_with(sig=...), 7),
    "identifier as fraction": (v2_with(identifier=1.5), 7),
    "sig as fraction": (v2_with(sig=1.5), 7),
    "sdkappid as fraction": (v2_with(sdkappid=1.5), 7),
    "ver as number": (v2_with(ver=2.0), 7),
    "time as string in v2": (v2_with(time=str(ISSUED_AT)), 7),
    "sdkappid as bool": (v2_with(sdkappid=True), 7),
    "identifier as number": (v2_with(identifier=5), 7),
    "unknown version": (v2_with(ver="9.9"), 7),
    "v1 field not a string": (wrap(json.dumps({"TLS.identifier": 1}).encode()), 7),
    "huge integer literal": (wrap(json.dumps(V2_FIELDS).replace("100", "9" * 5000).encode()), 10),
    "time beyond 32 bits": (v2_with(time=2**32), 10),
    "negative expire": (v2_with(expire=-1), 10),
    "fractional time": (v2_with(time=1.5), 10),
    "newline-forged identifier": (v2_with(identifier="alice\nTLS.sdkappid:1"), 13),
    "other sdkappid": (v2_with(sdkappid=1), 14),
    "sig not base64": (v2_with(sig="!!notbase64"), 6),
}


@pytest.mark.parametrize(("token", "code"), list(CORPUS.values()), ids=list(CORPUS))
def test_corpus_gets_its_code_in_bounded_memory(token: str, code: int) -> None:
    """Every hostile token fails with its code, never an exception, and allocates < 1 MiB."""
    tracemalloc.start()
    try:
        got = code_of(token)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == code
    assert peak < 1 << 20


def test_bad_userbuf_on_a_valid_signature_is_code_15(secret: HmacSecret) -> None:
    """A correctly signed v2 token whose userbuf is not base64 fails with 15."""
    from signer.core.keys import HmacSecret as Secret
    from signer.core.tokens import v2_signed_text

    key = Secret(b"k")
    text = v2_signed_text("alice", SDKAPPID, ISSUED_AT, 100, "%%%")
    import base64

    sig = base64.b64encode(key.digest(text)).decode()
    assert code_of(v2_with(userbuf="%%%", sig=sig), key) == 15


def _ber_variants(der: bytes) -> list[bytes]:
    """Encodings of the same (r, s) that BER allows and DER forbids."""
    rs = decode_signature(der)
    assert rs is not None
    r, s = (v.to_bytes((v.bit_length() + 8) // 8, "big") for v in rs)
    body = b"\x02" + bytes([len(r)]) + r + b"\x02" + bytes([len(s)]) + s
    padded_r = b"\x02" + bytes([len(r) + 1]) + b"\x00" + r + b"\x02" + bytes([len(s)]) + s
    return [
        b"\x30\x81" + bytes([len(body)]) + body,  # long-form length
        b"\x30" + bytes([len(padded_r)]) + padded_r,  # superfluous leading zero
        b"\x30" + bytes([len(body)]) + body + b"\x00",  # trailing byte
        b"\x30" + bytes([len(body) + 2]) + body + b"\x00\x00",  # trailing inside sequence
    ]


def test_ber_signatures_are_rejected(v1_signer: V1Signer) -> None:
    """The same signature re-encoded as BER fails with 8, on both curves."""
    import base64

    token = v1_signer.sign("alice", issued_at=ISSUED_AT).usersig
    fields = decode(token)
    der = base64.b64decode(fields["TLS.sig"])
    public = v1_signer.key.public_key()
    assert code_of(token, public) == 0
    for ber in _ber_variants(der):
        forged = wrap(json.dumps({**fields, "TLS.sig": base64.b64encode(ber).decode()}).encode())
        assert code_of(forged, public) == 8


def test_newline_forged_userid_cannot_verify(v2_signer: V2Signer) -> None:
    """A token for "a" cannot pass as one for "a\\nTLS.sdkappid:…" and vice versa."""
    token = v2_signer.sign("alice", 100, issued_at=ISSUED_AT).usersig
    assert code_of(token, v2_signer.secret, userid="alice\nTLS.sdkappid:1") == 13


# Identifiers a genuinely signed token may carry but that break the userid policy, and the
# words the refusal must use to name the rule.
POLICY_BREAKERS = {
    "newline forges a signed line": ("alice\nTLS.sdkappid:1", "U+000A at position 5"),
    "tab": ("tab\there", "U+0009 at position 3"),
    "C1 control": ("c1\x85", "U+0085 at position 2"),
    "line separator": ("line\u2028sep", "U+2028 at position 4"),
    "paragraph separator": ("para\u2029", "U+2029 at position 4"),
    "over 32 bytes": ("x" * 33, "33 bytes in UTF-8; the limit is 32"),
    "empty": ("", "empty"),
}


def _refusal(
    token: str, key: EcPublicKey | HmacSecret, userid: str, policy: UserIdPolicy = DEFAULT_POLICY
) -> str:
    with pytest.raises(IdentifierMismatch) as info:
        verify(token, userid=userid, sdkappid=SDKAPPID, key=key, now=ISSUED_AT, policy=policy)
    assert info.value.code == 13
    return info.value.reason


class TestIdentifierPolicy:
    @pytest.mark.parametrize(
        ("userid", "rule"), list(POLICY_BREAKERS.values()), ids=list(POLICY_BREAKERS)
    )
    def test_signed_v1_identifier_breaking_the_policy_is_code_13(
        self, v1_signer: V1Signer, userid: str, rule: str
    ) -> None:
        """A v1 token validly signed for a policy-breaking userid fails with 13 naming the
        rule, even when the caller expects that very userid."""
        token = signed_v1(v1_signer.key, userid, SDKAPPID, ISSUED_AT)
        reason = _refusal(token, v1_signer.key.public_key(), userid)
        assert "userid policy" in reason and rule in reason

    def test_v2_forged_newline_identifier_is_refused_even_when_expected(self) -> None:
        """A v2 token whose identifier holds a forged line fails on the policy, not the HMAC."""
        from signer.core.tokens import v2_signed_text

        key = HmacSecret(b"k")
        userid = "alice\nTLS.sdkappid:1"
        text = v2_signed_text(userid, SDKAPPID, ISSUED_AT, 100, None)
        sig = base64.b64encode(key.digest(text)).decode()
        reason = _refusal(v2_with(identifier=userid, sig=sig), key, userid)
        assert "userid policy" in reason and "U+000A at position 5" in reason

    @pytest.mark.parametrize(
        ("expected", "rule"),
        [
            ("alice\nTLS.sdkappid:1", "U+000A at position 5"),
            ("lone\ud800", "lone surrogate"),
            ("x" * 33, "33 bytes in UTF-8; the limit is 32"),
        ],
    )
    def test_expected_userid_breaking_the_policy_is_named(
        self, v2_signer: V2Signer, expected: str, rule: str
    ) -> None:
        """Expecting a userid that could never be issued fails with 13 and says why."""
        token = v2_signer.sign("alice", 100, issued_at=ISSUED_AT).usersig
        reason = _refusal(token, v2_signer.secret, expected)
        assert "expected userid" in reason and rule in reason

    def test_byte_limit_is_the_given_policys(self, v1_signer: V1Signer) -> None:
        """The byte limit comes from the policy passed in: an app allowing 64 bytes accepts
        a 33-byte identifier that one allowing 16 refuses."""
        token = signed_v1(v1_signer.key, "x" * 33, SDKAPPID, ISSUED_AT)
        public = v1_signer.key.public_key()
        result = verify(
            token,
            userid="x" * 33,
            sdkappid=SDKAPPID,
            key=public,
            now=ISSUED_AT,
            policy=UserIdPolicy(max_bytes=64),
        )
        assert result.identifier == "x" * 33
        reason = _refusal(token, public, "x" * 33, UserIdPolicy(max_bytes=16))
        assert "33 bytes in UTF-8; the limit is 16" in reason
