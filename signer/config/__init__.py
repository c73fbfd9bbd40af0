"""Configuration of ``signer serve``: typed settings, loading, and the runtime built from them."""

from signer.config.loader import DEV_V1_APP, DEV_V2_APP, ConfigError, load_settings
from signer.config.runtime import AppRuntime, Caller, Runtime, build_runtime
from signer.config.settings import Settings, engine_settings

__all__ = [
    "DEV_V1_APP",
    "DEV_V2_APP",
    "AppRuntime",
    "Caller",
    "ConfigError",
    "Runtime",
    "Settings",
    "build_runtime",
    "engine_settings",
    "load_settings",
]
