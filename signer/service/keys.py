"""What a request and the application carry besides aiohttp's own: the service's state,
and the caller and app a request turned out to be for (read by the access line).

Kept apart from the handlers so that the edge, the app and tests can name them without
importing every endpoint."""

from __future__ import annotations

from aiohttp import web

from signer.config import Caller
from signer.service.state import ServiceState

STATE = web.AppKey("state", ServiceState)
CALLER = web.RequestKey("caller", Caller)
SDKAPPID = web.RequestKey("sdkappid", int)
