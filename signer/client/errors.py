"""What the client raises.

Every failure is a :class:`SignerClientError`. httpx's own exceptions never escape (they are
kept as ``__cause__`` for debugging), and no message or repr ever contains the API key: the
messages are built from the status, the service's error body and the request path only.
"""

from __future__ import annotations


class SignerClientError(Exception):
    """Base of everything this client raises."""


class SignerConnectionError(SignerClientError):
    """No answer from the service: it could not be reached or the connection broke.

    Issuing is idempotent, so retrying (ideally against another instance) is safe.
    """


class SignerTimeout(SignerConnectionError):
    """No answer within the client's timeout (connecting, sending or reading)."""


class SignerProtocolError(SignerClientError):
    """The service answered success with a body this client cannot read: usually a wrong
    ``base_url`` (something else is listening there) or an incompatible service version."""


class SignerAPIError(SignerClientError):
    """The service refused the request with ``{"error": {"code", "message", "field"?}}``.

    ``status`` is the HTTP status, ``code`` the service's machine-readable code (e.g.
    ``invalid_userid``), ``field`` the request field at fault if any, ``retry_after`` the
    seconds the service asked to wait (429/503) and ``request_id`` what to quote in a report.
    A body that is not the service's JSON (a proxy's error page) gives ``code`` ``http_error``.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(status, code, message, field, retry_after, request_id)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.retry_after = retry_after
        self.request_id = request_id

    def __str__(self) -> str:
        text = f"{self.status} {self.code}: {self.message}"
        if self.retry_after is not None:
            text += f" (retry after {self.retry_after:g} s)"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status}, code={self.code!r}, "
            f"message={self.message!r}, field={self.field!r})"
        )


class InvalidRequest(SignerAPIError):
    """400/413/415/422: the request itself is wrong (bad userid, expire out of the app's
    range, too many userids); sending it again will fail again."""


class AuthenticationError(SignerAPIError):
    """401: the API key is missing or unknown."""


class PermissionDenied(SignerAPIError):
    """403: the API key is valid but may not use this sdkappid."""


class NotFound(SignerAPIError):
    """404: the service has no app with this sdkappid (or ``base_url`` has a wrong path)."""


class RateLimited(SignerAPIError):
    """429: this API key is over its rate limit; wait ``retry_after`` seconds."""


class Unavailable(SignerAPIError):
    """502/503/504: the service is overloaded, starting or stopping; retry after
    ``retry_after`` seconds, ideally against another instance."""


_BY_STATUS: dict[int, type[SignerAPIError]] = {
    400: InvalidRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    413: InvalidRequest,
    415: InvalidRequest,
    422: InvalidRequest,
    429: RateLimited,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}


def api_error(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    retry_after: float | None = None,
    request_id: str | None = None,
) -> SignerAPIError:
    """The most specific :class:`SignerAPIError` subclass for ``status``."""
    cls = _BY_STATUS.get(status, SignerAPIError)
    return cls(status, code, message, field, retry_after, request_id)
