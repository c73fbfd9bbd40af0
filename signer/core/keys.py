"""Key material: EC keys for version 1 (P-256, secp256k1) and HMAC secrets for version 2.

Loading turns every way a key file can be wrong into a :class:`KeyLoadError` that names the
problem. Signing on secp256k1 goes through libsecp256k1 (coincurve), which is much faster
than OpenSSL on that curve (see docs/PERFORMANCE.md); it emits low-S signatures, which
every verifier accepts. Verification accepts high-S signatures on both curves, since about
half of what OpenSSL (and so Tencent's older libraries) produced has S > n/2.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from dataclasses import dataclass, field

import coincurve
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from signer.core.der import decode_signature
from signer.core.errors import KeyLoadError, SigningFailed


class Curve(enum.StrEnum):
    """The two curves version 1 tokens are signed on, by their OpenSSL names."""

    P256 = "prime256v1"
    SECP256K1 = "secp256k1"


_CURVES: dict[str, Curve] = {"secp256r1": Curve.P256, "secp256k1": Curve.SECP256K1}
_ORDERS = {
    Curve.P256: 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    Curve.SECP256K1: 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
}
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


@dataclass(frozen=True, repr=False, eq=False)
class EcPublicKey:
    """A public key that checks version 1 signatures."""

    curve: Curve
    _key: ec.EllipticCurvePublicKey

    def __repr__(self) -> str:
        return f"EcPublicKey(curve={self.curve.value})"

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True if ``signature`` (strict DER, high or low S) signs SHA-256 of ``data``."""
        rs = decode_signature(signature)
        if rs is None:
            return False
        r, s = rs
        order = _ORDERS[self.curve]
        if not (0 < r < order and 0 < s < order):
            return False
        try:
            self._key.verify(encode_dss_signature(r, s), data, _ECDSA_SHA256)
        except InvalidSignature:
            return False
        return True

    def to_pem(self) -> bytes:
        """SubjectPublicKeyInfo PEM (``BEGIN PUBLIC KEY``), what Tencent's console shows."""
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@dataclass(frozen=True, repr=False, eq=False)
class EcPrivateKey:
    """A private key that signs version 1 tokens. Its ``repr`` never shows the secret."""

    curve: Curve
    _key: ec.EllipticCurvePrivateKey
    _fast: coincurve.PrivateKey | None = field(default=None)

    def __repr__(self) -> str:
        return f"EcPrivateKey(curve={self.curve.value})"

    def sign(self, data: bytes) -> bytes:
        """Return the DER ECDSA/SHA-256 signature of ``data``."""
        try:
            if self._fast is not None:
                return bytes(self._fast.sign(data, hasher=_sha256))
            return self._key.sign(data, _ECDSA_SHA256)
        except Exception as exc:  # pragma: no cover - a loaded key does not fail to sign
            raise SigningFailed(f"signing failed: {type(exc).__name__}") from None

    def public_key(self) -> EcPublicKey:
        return EcPublicKey(self.curve, self._key.public_key())

    def to_pem(self) -> bytes:
        """Unencrypted PKCS#8 PEM (``BEGIN PRIVATE KEY``), the form of the console's keys.zip."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


@dataclass(frozen=True, repr=False, eq=False)
class HmacSecret:
    """The shared secret of a version 2 app. Its ``repr`` never shows the value."""

    value: bytes

    def __post_init__(self) -> None:
        if not self.value:
            raise KeyLoadError("empty_secret", "the HMAC secret is empty")

    def __repr__(self) -> str:
        return "HmacSecret(****)"

    @classmethod
    def from_text(cls, text: str | bytes) -> HmacSecret:
        """Build from a file's or variable's contents; surrounding whitespace is dropped."""
        raw = text.encode("utf-8") if isinstance(text, str) else text
        return cls(raw.strip())

    def digest(self, data: bytes) -> bytes:
        return hmac.digest(self.value, data, "sha256")


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def generate_private_key(curve: Curve = Curve.P256) -> EcPrivateKey:
    """A fresh private key on ``curve``."""
    crypto_curve: ec.EllipticCurve = ec.SECP256R1() if curve is Curve.P256 else ec.SECP256K1()
    return _wrap_private(ec.generate_private_key(crypto_curve))


def _wrap_private(key: ec.EllipticCurvePrivateKey) -> EcPrivateKey:
    curve = _curve_of(key.curve)
    fast = None
    if curve is Curve.SECP256K1:
        scalar = key.private_numbers().private_value.to_bytes(32, "big")
        fast = coincurve.PrivateKey(scalar)
    return EcPrivateKey(curve, key, fast)


def _curve_of(curve: ec.EllipticCurve) -> Curve:
    try:
        return _CURVES[curve.name]
    except KeyError:
        raise KeyLoadError(
            "unsupported_curve",
            f"EC key is on curve {curve.name}; only prime256v1 and secp256k1 are supported",
        ) from None


_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)(?:-----END \1-----|\Z)", re.DOTALL)
_PRIVATE_LABELS = (b"PRIVATE KEY", b"EC PRIVATE KEY")
_FOREIGN_PRIVATE = (b"RSA PRIVATE KEY", b"DSA PRIVATE KEY", b"OPENSSH PRIVATE KEY")


def _pem_blocks(pem: bytes) -> list[tuple[str, bytes]]:
    blocks = []
    for match in _PEM_BLOCK.finditer(pem):
        label = match.group(1).decode("ascii")
        whole = match.group(0)
        if not whole.rstrip().endswith(b"-----END " + match.group(1) + b"-----"):
            raise KeyLoadError("truncated", f"PEM block {label!r} has no END line (truncated?)")
        blocks.append((label, whole))
    if not blocks:
        raise KeyLoadError("not_pem", "no PEM block (-----BEGIN ...-----) found")
    return blocks


def _as_bytes(pem: str | bytes) -> bytes:
    if isinstance(pem, str):
        return pem.encode("utf-8", "replace")
    if not isinstance(pem, bytes | bytearray):
        raise KeyLoadError("not_pem", "a key must be given as PEM text")
    return bytes(pem)


def load_private_key(pem: str | bytes) -> EcPrivateKey:
    """Load a P-256 or secp256k1 private key from PEM.

    Accepts PKCS#8 (``BEGIN PRIVATE KEY``) and SEC1 (``BEGIN EC PRIVATE KEY``), with or
    without a leading ``BEGIN EC PARAMETERS`` block. Raises :class:`KeyLoadError`.
    """
    blocks = _pem_blocks(_as_bytes(pem))
    labels = [label for label, _ in blocks]
    for label, block in blocks:
        if label.encode() in _PRIVATE_LABELS:
            if b"ENCRYPTED" in block.split(b"\n\n", 1)[0] and b"Proc-Type" in block:
                raise KeyLoadError("encrypted", "private key is encrypted; give it unencrypted")
            return _wrap_private(_load_private_block(block))
    if "ENCRYPTED PRIVATE KEY" in labels:
        raise KeyLoadError("encrypted", "private key is encrypted; give it unencrypted")
    if any(label.encode() in _FOREIGN_PRIVATE for label in labels):
        raise KeyLoadError("not_ec", f"{labels[0]} is not an EC key; UserSig v1 needs EC")
    if "PUBLIC KEY" in labels:
        raise KeyLoadError("wrong_kind", "this is a public key; a private key is needed")
    raise KeyLoadError("not_pem", f"no private key block found (saw {', '.join(labels)})")


def _load_private_block(block: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(block, password=None)
    except TypeError:
        raise KeyLoadError("encrypted", "private key is encrypted; give it unencrypted") from None
    except UnsupportedAlgorithm as exc:
        raise KeyLoadError("unsupported_curve", f"unsupported key: {exc}") from None
    except ValueError:
        raise KeyLoadError("malformed", "private key PEM does not decode to a key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyLoadError("not_ec", f"{type(key).__name__} is not an EC key; v1 needs EC")
    return key


def load_public_key(pem: str | bytes) -> EcPublicKey:
    """Load a P-256 or secp256k1 public key (``BEGIN PUBLIC KEY``). Raises KeyLoadError."""
    blocks = _pem_blocks(_as_bytes(pem))
    for label, block in blocks:
        if label == "PUBLIC KEY":
            try:
                key = serialization.load_pem_public_key(block)
            except (ValueError, UnsupportedAlgorithm):
                raise KeyLoadError("malformed", "public key PEM does not decode to a key") from None
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise KeyLoadError("not_ec", f"{type(key).__name__} is not an EC key")
            return EcPublicKey(_curve_of(key.curve), key)
    if any("PRIVATE KEY" in label for label, _ in blocks):
        raise KeyLoadError("wrong_kind", "this is a private key; a public key is expected")
    raise KeyLoadError("not_pem", "no PUBLIC KEY block found")
