"""The signing engine: micro-batched signing on a process pool. No HTTP, no Redis."""

from signer.engine.engine import Engine, EngineSettings, Outcome
from signer.engine.errors import EngineClosed, Overloaded, UnknownApp, WorkerCrashed
from signer.engine.keyset import AppKey, KeySet
from signer.engine.requests import SignRequest
from signer.engine.stats import BATCH_SIZE_BUCKETS, EngineStats

__all__ = [
    "BATCH_SIZE_BUCKETS",
    "AppKey",
    "Engine",
    "EngineClosed",
    "EngineSettings",
    "EngineStats",
    "KeySet",
    "Outcome",
    "Overloaded",
    "SignRequest",
    "UnknownApp",
    "WorkerCrashed",
]
