"""Loading keys: every form Tencent's console and openssl write, and a clear error for the rest."""

from __future__ import annotations

import subprocess

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from signer.core import (
    Curve,
    EcPrivateKey,
    HmacSecret,
    KeyLoadError,
    generate_private_key,
    load_private_key,
    load_public_key,
)

P = serialization.PrivateFormat
E = serialization.Encoding


def _pem(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, fmt: P, password: bytes | None = None
) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(E.PEM, fmt, encryption)


@pytest.fixture(params=[ec.SECP256R1, ec.SECP256K1], ids=["prime256v1", "secp256k1"])
def raw_key(request: pytest.FixtureRequest) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(request.param())


class TestAcceptedForms:
    def test_pkcs8(self, raw_key: ec.EllipticCurvePrivateKey) -> None:
        """BEGIN PRIVATE KEY (the console's keys.zip) loads on both curves."""
        key = load_private_key(_pem(raw_key, P.PKCS8))
        assert key.curve.value == {"secp256r1": "prime256v1"}.get(
            raw_key.curve.name, raw_key.curve.name
        )

    def test_sec1(self, raw_key: ec.EllipticCurvePrivateKey) -> None:
        """BEGIN EC PRIVATE KEY loads on both curves, as the same key: its public half is
        the original's and a signature it makes verifies under the original.

        Catches: a SEC1 key refused, loaded on the wrong curve, or loaded as another key."""
        pem = _pem(raw_key, P.TraditionalOpenSSL)
        assert pem.startswith(b"-----BEGIN EC PRIVATE KEY-----")
        key = load_private_key(pem)
        assert key.curve.value == {"secp256r1": "prime256v1"}.get(
            raw_key.curve.name, raw_key.curve.name
        )
        public = raw_key.public_key().public_bytes(
            E.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        assert key.public_key().to_pem() == public
        signature = key.sign(b"sec1")
        raw_key.public_key().verify(signature, b"sec1", ec.ECDSA(hashes.SHA256()))

    @pytest.mark.parametrize("curve", ["prime256v1", "secp256k1"])
    def test_openssl_ecparam_genkey_output(self, curve: str) -> None:
        """What `openssl ecparam -genkey` writes (EC PARAMETERS block first) loads."""
        pem = subprocess.run(
            ["openssl", "ecparam", "-name", curve, "-genkey"], capture_output=True, check=True
        ).stdout
        assert b"BEGIN EC PARAMETERS" in pem
        assert load_private_key(pem).curve.value == curve

    def test_public_key_derives_and_round_trips(self, ec_key: EcPrivateKey) -> None:
        """The derived public key serialises as BEGIN PUBLIC KEY and loads back."""
        pem = ec_key.public_key().to_pem()
        assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")
        assert load_public_key(pem).curve is ec_key.curve

    def test_str_input_and_surrounding_text(self, p256_key: EcPrivateKey) -> None:
        """A key pasted with text around it, as str, still loads."""
        text = "my key:\n" + p256_key.to_pem().decode() + "\n(end)\n"
        assert load_private_key(text).curve is Curve.P256

    def test_reprs_hide_secrets(self, p256_key: EcPrivateKey) -> None:
        assert "BEGIN" not in repr(p256_key) and "prime256v1" in repr(p256_key)
        assert "s3cret" not in repr(HmacSecret(b"s3cret"))


class TestRefusedForms:
    def _problem(self, pem: bytes | str) -> str:
        with pytest.raises(KeyLoadError) as info:
            load_private_key(pem)
        return info.value.problem

    def test_rsa_key(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        assert self._problem(_pem(key, P.PKCS8)) == "not_ec"
        assert self._problem(_pem(key, P.TraditionalOpenSSL)) == "not_ec"

    def test_ed25519_key(self) -> None:
        pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
            E.PEM, P.PKCS8, serialization.NoEncryption()
        )
        assert self._problem(pem) == "not_ec"

    def test_other_curve_is_named(self) -> None:
        key = ec.generate_private_key(ec.SECP384R1())
        with pytest.raises(KeyLoadError, match="secp384r1") as info:
            load_private_key(_pem(key, P.PKCS8))
        assert info.value.problem == "unsupported_curve"

    @pytest.mark.parametrize("fmt", [P.PKCS8, P.TraditionalOpenSSL])
    def test_encrypted_key(self, fmt: P) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        assert self._problem(_pem(key, fmt, b"pw")) == "encrypted"

    def test_truncated_pem(self, p256_key: EcPrivateKey) -> None:
        pem = p256_key.to_pem()
        assert self._problem(pem[: len(pem) // 2]) == "truncated"

    def test_corrupt_body(self, p256_key: EcPrivateKey) -> None:
        lines = p256_key.to_pem().split(b"\n")
        lines[1] = lines[1][:10] + b"@@" + lines[1][12:]
        assert self._problem(b"\n".join(lines)) == "malformed"

    @pytest.mark.parametrize("garbage", [b"", b"hello", b"\xff\xfe\x00", "ключ"])
    def test_garbage(self, garbage: bytes | str) -> None:
        assert self._problem(garbage) == "not_pem"

    def test_public_key_where_private_needed(self, p256_key: EcPrivateKey) -> None:
        assert self._problem(p256_key.public_key().to_pem()) == "wrong_kind"

    def test_private_key_where_public_needed(self, p256_key: EcPrivateKey) -> None:
        with pytest.raises(KeyLoadError) as info:
            load_public_key(p256_key.to_pem())
        assert info.value.problem == "wrong_kind"

    def test_empty_secret(self) -> None:
        with pytest.raises(KeyLoadError) as info:
            HmacSecret.from_text(" \n")
        assert info.value.problem == "empty_secret"


def test_secp256k1_signatures_are_low_s() -> None:
    """libsecp256k1 signs with low S, which every verifier accepts."""
    from signer.core.der import decode_signature

    key = generate_private_key(Curve.SECP256K1)
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    for i in range(20):
        rs = decode_signature(key.sign(b"m%d" % i))
        assert rs is not None and rs[1] <= n // 2
