"""The keys an engine signs with, as plain bytes that can be shipped to worker processes.

Key objects from ``cryptography`` and ``coincurve`` cannot be pickled, so workers receive
PEM text or secret bytes once, when they start (``worker.initialize``), and build their
signers there. The parent builds the same signers up front too: a bad key fails at
start-up (or at a reload, leaving the old key set in service), never on the first request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from signer.core import (
    DEFAULT_POLICY,
    EcPrivateKey,
    HmacSecret,
    UserIdPolicy,
    V1Signer,
    V2Signer,
    load_private_key,
)
from signer.core.errors import InvalidArgument

Algorithm = Literal["v1", "v2"]


@dataclass(frozen=True, slots=True)
class AppKey:
    """One app's current signing key. ``material`` is PEM (v1) or the secret (v2)."""

    sdkappid: int
    algorithm: Algorithm
    material: bytes = field(repr=False)
    key_version: str = "1"
    max_userid_bytes: int = DEFAULT_POLICY.max_bytes

    @classmethod
    def from_private_key(
        cls, sdkappid: int, key: EcPrivateKey, key_version: str = "1", max_userid_bytes: int = 32
    ) -> AppKey:
        return cls(sdkappid, "v1", key.to_pem(), key_version, max_userid_bytes)

    @classmethod
    def from_secret(
        cls, sdkappid: int, secret: HmacSecret, key_version: str = "1", max_userid_bytes: int = 32
    ) -> AppKey:
        return cls(sdkappid, "v2", secret.value, key_version, max_userid_bytes)

    def build_signer(self) -> V1Signer | V2Signer:
        """Load the key and make its signer. Raises KeyLoadError / InvalidArgument."""
        policy = UserIdPolicy(self.max_userid_bytes)
        if self.algorithm == "v1":
            key = load_private_key(self.material)
            return V1Signer(self.sdkappid, key, policy, self.key_version)
        secret = HmacSecret.from_text(self.material)
        return V2Signer(self.sdkappid, secret, policy, self.key_version)


@dataclass(frozen=True)
class KeySet:
    """Every app's signing key, by sdkappid."""

    apps: Mapping[int, AppKey]

    @classmethod
    def of(cls, keys: Iterable[AppKey]) -> KeySet:
        apps: dict[int, AppKey] = {}
        for key in keys:
            if key.sdkappid in apps:
                raise InvalidArgument("sdkappid", f"sdkappid {key.sdkappid} appears twice")
            apps[key.sdkappid] = key
        return cls(apps)

    def build_signers(self) -> dict[int, V1Signer | V2Signer]:
        """The signer of every app, loading each key once."""
        return {appid: key.build_signer() for appid, key in self.apps.items()}
