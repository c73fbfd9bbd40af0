"""v1 tokens interoperate with ECDSA implementations this project did not write:
the openssl command line and the pure-Python ``ecdsa`` package, on both curves."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

import ecdsa
import pytest
from ecdsa.util import sigdecode_der, sigencode_der

from signer.core import EcPrivateKey, V1Signer, decode, load_private_key, verify
from signer.core.der import decode_signature
from signer.core.tokens import v1_signed_text
from tests.conftest import ISSUED_AT, SDKAPPID

pytestmark = pytest.mark.interop

ORDERS = {
    "prime256v1": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "secp256k1": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
}


def _signed_parts(token: str) -> tuple[bytes, bytes]:
    fields = decode(token)
    return v1_signed_text(fields), base64.b64decode(fields["TLS.sig"])


class TestOurTokensVerifyElsewhere:
    def test_openssl_dgst_verifies(self, v1_signer: V1Signer, tmp_path: Path) -> None:
        """`openssl dgst -sha256 -verify` accepts the signature over the rebuilt text."""
        (tmp_path / "pub.pem").write_bytes(v1_signer.key.public_key().to_pem())
        for userid in ["alice", "中文", 'q"uote']:
            text, sig = _signed_parts(v1_signer.sign(userid, issued_at=ISSUED_AT).usersig)
            (tmp_path / "text").write_bytes(text)
            (tmp_path / "sig").write_bytes(sig)
            result = subprocess.run(
                [
                    "openssl",
                    "dgst",
                    "-sha256",
                    "-verify",
                    tmp_path / "pub.pem",
                    "-signature",
                    tmp_path / "sig",
                    tmp_path / "text",
                ],
                capture_output=True,
                text=True,
            )
            assert result.returncode == 0, result.stderr
            assert "Verified OK" in result.stdout

    def test_ecdsa_package_verifies(self, v1_signer: V1Signer) -> None:
        public = ecdsa.VerifyingKey.from_pem(v1_signer.key.public_key().to_pem().decode())
        for userid in ["bob", "user_0002", "😀"]:
            text, sig = _signed_parts(v1_signer.sign(userid, issued_at=ISSUED_AT).usersig)
            assert public.verify(sig, text, hashfunc=hashlib.sha256, sigdecode=sigdecode_der)

    def test_openssl_reads_our_private_key(self, ec_key: EcPrivateKey, tmp_path: Path) -> None:
        """keygen's PKCS#8 output is a key openssl recognises, on the same curve."""
        (tmp_path / "key").write_bytes(ec_key.to_pem())
        out = subprocess.run(
            ["openssl", "pkey", "-in", tmp_path / "key", "-noout", "-text"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert ec_key.curve.value in out or "P-256" in out


def _forge_token(signer: V1Signer, userid: str, sign: object) -> tuple[str, int]:
    """A token for ``userid`` whose signature comes from ``sign(text) -> der``."""
    from signer.core.envelope import pack

    template = decode(signer.sign(userid, issued_at=ISSUED_AT).usersig)
    der = sign(v1_signed_text(template))  # type: ignore[operator]
    rs = decode_signature(der)
    assert rs is not None
    return pack({**template, "TLS.sig": base64.b64encode(der).decode()}), rs[1]


class TestTheirSignaturesVerifyHere:
    def test_openssl_signatures_high_and_low_s(self, ec_key: EcPrivateKey, tmp_path: Path) -> None:
        """Signatures from `openssl dgst -sign` verify, including those with S > n/2."""
        (tmp_path / "key").write_bytes(ec_key.to_pem())
        signer = V1Signer(SDKAPPID, ec_key)
        order = ORDERS[ec_key.curve.value]

        def openssl_sign(text: bytes) -> bytes:
            (tmp_path / "text").write_bytes(text)
            return subprocess.run(
                ["openssl", "dgst", "-sha256", "-sign", tmp_path / "key", tmp_path / "text"],
                capture_output=True,
                check=True,
            ).stdout

        seen = set()
        for i in range(40):
            token, s = _forge_token(signer, f"user{i}", openssl_sign)
            verify(
                token, userid=f"user{i}", sdkappid=SDKAPPID, key=ec_key.public_key(), now=ISSUED_AT
            )
            seen.add(s > order // 2)
            if seen == {True, False}:
                break
        assert seen == {True, False}

    def test_ecdsa_package_high_s_signatures(self, ec_key: EcPrivateKey) -> None:
        """The ecdsa package's signatures, forced to high S, still verify."""
        private = ecdsa.SigningKey.from_pem(ec_key.to_pem().decode())
        order = ORDERS[ec_key.curve.value]
        signer = V1Signer(SDKAPPID, ec_key)

        def high_s(text: bytes) -> bytes:
            r, s = private.sign(text, hashfunc=hashlib.sha256, sigencode=lambda r, s, _n: (r, s))
            s = s if s > order // 2 else order - s
            return sigencode_der(r, s, order)

        token, s = _forge_token(signer, "carol", high_s)
        assert s > order // 2
        verify(token, userid="carol", sdkappid=SDKAPPID, key=ec_key.public_key(), now=ISSUED_AT)


def test_load_private_key_of_openssl_output_signs_verifiable_tokens(tmp_path: Path) -> None:
    """A secp256k1 key from `openssl ecparam -genkey` signs tokens openssl verifies."""
    pem = subprocess.run(
        ["openssl", "ecparam", "-name", "secp256k1", "-genkey"], capture_output=True, check=True
    ).stdout
    key = load_private_key(pem)
    text, sig = _signed_parts(V1Signer(SDKAPPID, key).sign("dan", issued_at=ISSUED_AT).usersig)
    (tmp_path / "pub").write_bytes(key.public_key().to_pem())
    (tmp_path / "sig").write_bytes(sig)
    (tmp_path / "text").write_bytes(text)
    subprocess.run(
        [
            "openssl",
            "dgst",
            "-sha256",
            "-verify",
            tmp_path / "pub",
            "-signature",
            tmp_path / "sig",
            tmp_path / "text",
        ],
        check=True,
        capture_output=True,
    )
