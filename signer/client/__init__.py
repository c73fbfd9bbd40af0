"""The client app servers use to get UserSigs from the signer service.

It is shaped for a one-line swap from Tencent's library::

    api = TLSSigAPIv2(sdkappid, key)                  # before: the key on every app server
    api = SignerClient(sdkappid, api_key, base_url)   # after: the key only on the service
    usersig = api.gen_sig(userid)

Only httpx and the standard library are needed; nothing here loads the token core.
"""

from signer.client.aio import AsyncSignerClient
from signer.client.errors import (
    AuthenticationError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    SignerAPIError,
    SignerClientError,
    SignerConnectionError,
    SignerProtocolError,
    SignerTimeout,
    Unavailable,
)
from signer.client.results import BatchResult, ItemError, RoomPrivilege, Token, VerifyResult
from signer.client.sync import SignerClient

__all__ = [
    "AsyncSignerClient",
    "AuthenticationError",
    "BatchResult",
    "InvalidRequest",
    "ItemError",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "RoomPrivilege",
    "SignerAPIError",
    "SignerClient",
    "SignerClientError",
    "SignerConnectionError",
    "SignerProtocolError",
    "SignerTimeout",
    "Token",
    "Unavailable",
    "VerifyResult",
]
