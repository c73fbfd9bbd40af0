"""Errors of the signing engine; the HTTP edge maps them to 503 and 404."""

from __future__ import annotations

from signer.core.errors import SignerError


class Overloaded(SignerError):
    """The engine's queue is full; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def _init_args(self) -> tuple[object, ...]:
        return (self.message, self.retry_after)


class UnknownApp(SignerError):
    """No key is configured for the sdkappid a request names."""

    def __init__(self, sdkappid: int) -> None:
        super().__init__(f"no key is configured for sdkappid {sdkappid}")
        self.sdkappid = sdkappid

    def _init_args(self) -> tuple[object, ...]:
        return (self.sdkappid,)


class WorkerCrashed(SignerError):
    """A worker process died twice while holding this request; it was not signed."""


class EngineClosed(SignerError):
    """The engine is shutting down or closed and takes no more work."""
