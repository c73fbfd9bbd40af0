"""The typed errors of the token core.

Every failure the core can report is one of these classes, so the edges (CLI, HTTP) map
them to exit codes and status codes in one place and never show a traceback. Verification
failures carry Tencent's numeric code (docs/FORMAT.md has the table) next to a readable
reason.
"""

from __future__ import annotations


class SignerError(Exception):
    """Base of every error the core raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[object, ...]:
        # Errors cross process boundaries (engine workers); rebuild them from their fields.
        return (type(self), self._init_args())

    def _init_args(self) -> tuple[object, ...]:
        return (self.message,)


class InvalidArgument(SignerError):
    """An argument is out of its documented range (expire, sdkappid, room id, ...).

    ``field`` names the argument, so an HTTP layer can point at the offending field.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field

    def _init_args(self) -> tuple[object, ...]:
        return (self.field, self.message)


class InvalidUserId(InvalidArgument):
    """A userid breaks the userid policy; ``rule`` says which rule.

    Rules: ``empty``, ``too_long``, ``control_character``, ``invalid_unicode``.
    """

    def __init__(self, rule: str, message: str) -> None:
        super().__init__("userid", message)
        self.rule = rule

    def _init_args(self) -> tuple[object, ...]:
        return (self.rule, self.message)


class KeyLoadError(SignerError):
    """A key could not be loaded; ``problem`` is a short machine-readable tag.

    Problems: ``not_pem``, ``truncated``, ``encrypted``, ``not_ec``, ``unsupported_curve``,
    ``wrong_kind`` (a public key where a private one is needed, or the reverse),
    ``malformed`` (the PEM body does not decode to a key), ``empty_secret``.
    """

    def __init__(self, problem: str, message: str) -> None:
        super().__init__(message)
        self.problem = problem

    def _init_args(self) -> tuple[object, ...]:
        return (self.problem, self.message)


class VerificationError(SignerError):
    """A token failed verification. ``code`` is Tencent's numeric code for the failure."""

    code: int = 16

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TokenEmpty(VerificationError):
    code = 1


class TokenEncodingError(VerificationError):
    """The token is not the url-mapped base64 of anything (or is over the length cap)."""

    code = 2


class DecompressionError(VerificationError):
    """The decoded bytes are not one complete zlib stream within the inflate cap."""

    code = 3


class JsonError(VerificationError):
    """The inflated bytes are not one acceptable JSON object."""

    code = 4


class SignatureEncodingError(VerificationError):
    """``TLS.sig`` is not valid base64."""

    code = 6


class FieldError(VerificationError):
    """A required field is missing or has the wrong type."""

    code = 7


class SignatureMismatch(VerificationError):
    """The signature does not verify under the given key (usually the wrong key)."""

    code = 8


class TokenExpired(VerificationError):
    code = 9


class TimeFieldError(VerificationError):
    """``time`` or ``expire`` is malformed or out of the 32-bit range."""

    code = 10


class IdentifierMismatch(VerificationError):
    code = 13


class SdkAppIdMismatch(VerificationError):
    code = 14


class UserbufError(VerificationError):
    """The userbuf is missing, malformed or does not match the token it rides in."""

    code = 15


class SigningFailed(SignerError):
    """Signing itself failed (code 17 in Tencent's table): the private key is unusable."""

    code = 17
