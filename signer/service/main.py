"""``signer serve``: one service process, or a supervisor of several on one port
(``[server] processes``).

The choice lives here, above both: :mod:`~signer.service.supervisor` starts children that
each run :func:`~signer.service.server.run_process`, and the server knows nothing of it.
"""

from __future__ import annotations

from pathlib import Path

from signer.config import build_runtime, load_settings
from signer.service.server import run_process
from signer.service.supervisor import supervise


def run(config_path: Path | None, overrides: dict[str, object]) -> None:
    """Entry point of ``signer serve``. Raises ConfigError for an unusable configuration."""
    settings = load_settings(config_path, overrides)
    if settings.processes > 1:
        build_runtime(settings)  # a bad key stops the parent with a message, not N children
        supervise(settings, config_path, overrides)
        return
    run_process(settings, config_path, overrides)
