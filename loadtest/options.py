"""The command line of ``python -m loadtest``; every option is also an environment variable
(``--users`` is ``LOADTEST_USERS``, ``--sla-p99-ms`` is ``LOADTEST_SLA_P99_MS``); the
command line wins. No locust here: this module is imported before gevent is."""

from __future__ import annotations

import argparse
import datetime
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

SCENARIOS = ("storm", "stampede", "batch", "verify", "mixed")
MAX_RUN_TIME = 3600.0  # seconds: no run is longer, whatever is asked
DEFAULT_WEIGHTS = "warm=80,cold=10,batch=3,verify=5,delete=2"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([hms]?)")


def parse_duration(text: str) -> float:
    """``"30"``, ``"30s"``, ``"2m"``, ``"1h30m"`` as seconds."""
    text = text.strip().lower()
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        value, unit = float(match.group(1)), match.group(2)
        total += value * {"h": 3600, "m": 60, "s": 1, "": 1}[unit]
        pos = match.end()
    if pos != len(text) or not text:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 2m, 1h)")
    return total


def parse_weights(text: str) -> dict[str, int]:
    """``"warm=80,cold=10"`` as a dict; the mixed scenario's task weights."""
    known = {"warm", "cold", "batch", "verify", "delete"}
    weights: dict[str, int] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in known or not value.strip().isdigit():
            raise argparse.ArgumentTypeError(
                f"bad weight {part!r}: want name=integer, names {sorted(known)}"
            )
        weights[name] = int(value)
    if not any(weights.values()):
        raise argparse.ArgumentTypeError("every weight is 0")
    return weights


def _env_name(flag: str) -> str:
    return "LOADTEST_" + flag.lstrip("-").replace("-", "_").upper()


class _Parser(argparse.ArgumentParser):
    def option(self, flag: str, *, type: Callable[[str], Any] = str, **kwargs: Any) -> None:
        """An option whose default comes from its environment variable if set."""
        env = _env_name(flag)
        help_text = kwargs.pop("help", "")
        if env in os.environ:
            kwargs["default"] = type(os.environ[env])
        default = kwargs.get("default")
        self.add_argument(
            flag, type=type, help=f"{help_text} [env {env}; default {default}]", **kwargs
        )

    def flag(self, flag: str, help: str) -> None:
        env = _env_name(flag)
        default = os.environ.get(env, "").lower() in {"1", "true", "yes", "on"}
        self.add_argument(flag, action="store_true", default=default, help=f"{help} [env {env}]")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m loadtest",
        description="Load scenarios for signer, run headless with locust; see loadtest/README.md.",
    )
    p.add_argument(
        "scenario",
        choices=SCENARIOS,
        nargs="?" if "LOADTEST_SCENARIO" in os.environ else None,
        default=os.environ.get("LOADTEST_SCENARIO"),
        help="which load to generate [env LOADTEST_SCENARIO]",
    )
    p.flag("--local", "start redis-server and signer serve instances here, on loopback")
    p.option("--instances", type=int, default=1, help="signer instances with --local")
    p.flag("--cluster", "with --local: a 3-master Redis Cluster instead of one redis-server")
    p.flag(
        "--baseline-naive",
        "with --local, storm or stampede: bench/naive_app.py servers (Tencent's library in "
        "the handler, POST /usersig) in place of signer, for one app: the v2 app, or the v1 "
        "app with --v2-sdkappid 0 (tls-sig-api 1.4 from bench/.venv-naive-v1, made if missing)",
    )
    p.option("--target", default=None, help="base URL of an existing deployment")
    p.option("--api-key-file", type=Path, default=None, help="file holding the API key")
    p.option("--v1-public-key", type=Path, default=None, help="the v1 app's public key (PEM)")
    p.option("--v2-secret-file", type=Path, default=None, help="the v2 app's secret")
    p.option("--v1-sdkappid", type=int, default=1400000001, help="the v1 app (0: none)")
    p.option("--v2-sdkappid", type=int, default=1400000002, help="the v2 app (0: none)")

    p.option("--users", type=int, default=None, help="users (scenario's default if unset)")
    p.option("--spawn-rate", type=float, default=None, help="users started a second")
    p.option("--run-time", type=parse_duration, default=30.0, help="bound of the run")
    p.option("--out", type=Path, default=None, help="results folder")

    p.option("--sla-p99-ms", type=float, default=None, help="fail if p99 is above this")
    p.option("--sla-min-rps", type=float, default=None, help="fail if req/s is below this")
    p.option("--sla-max-failures", type=int, default=0, help="fail if more failures than this")

    p.option("--min-remaining", type=int, default=3600, help="seconds a token must have left")
    p.option("--verify-rate", type=float, default=0.1, help="share of tokens fully verified")
    p.option("--userid-space", type=int, default=1_000_000, help="N: userids drawn from 0..N-1")
    p.option("--storm-seconds", type=float, default=10.0, help="storm: users arrive within S s")
    p.option(
        "--logins-per-user",
        type=int,
        default=1,
        help="storm: U x K userids a phase, taken from one queue by the U users, one login "
        "after another, cold then warm (how a phase reaches 1,000,000 logins)",
    )
    p.option("--hot-userids", type=int, default=5, help="stampede: how many userids")
    p.option("--batch-size", type=int, default=1000, help="batch: userids per request")
    p.option("--tamper-share", type=float, default=0.2, help="verify: share tampered")
    p.option("--weights", type=parse_weights, default=DEFAULT_WEIGHTS, help="mixed: weights")
    p.option("--warm-userids", type=int, default=1000, help="mixed: the warm userids' count")
    p.option("--mixed-batch-size", type=int, default=100, help="mixed: userids per batch")
    p.option("--wait", type=float, default=0.0, help="seconds a user waits between requests")
    p.option("--timeout", type=float, default=30.0, help="seconds per HTTP request")
    return p


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and cross-check the options; errors exit with status 2 like argparse's."""
    parser = build_parser()
    options = parser.parse_args(argv)
    if options.scenario is None:
        parser.error("a scenario is required: " + ", ".join(SCENARIOS))
    if isinstance(options.weights, str):
        options.weights = parse_weights(options.weights)
    if options.local == (options.target is not None):
        parser.error("give exactly one of --local and --target URL")
    if options.target is not None and options.api_key_file is None:
        parser.error("--target needs --api-key-file (the API key is never read from argv)")
    if options.cluster and not options.local:
        parser.error("--cluster needs --local")
    if options.baseline_naive:
        if not options.local or options.cluster:
            parser.error("--baseline-naive needs --local (and no --cluster)")
        if options.scenario not in ("storm", "stampede"):
            parser.error("--baseline-naive runs the storm or stampede scenario only")
        if options.v2_sdkappid:
            options.v1_sdkappid = 0  # a naive server signs one app: v2 unless it is 0
    if not options.v1_sdkappid and not options.v2_sdkappid:
        parser.error("no app: --v1-sdkappid and --v2-sdkappid are both 0")
    if options.instances < 1:
        parser.error("--instances must be at least 1")
    if options.logins_per_user < 1:
        parser.error("--logins-per-user must be at least 1")
    if not 0 < options.run_time <= MAX_RUN_TIME:
        parser.error(f"--run-time must be more than 0 and at most {MAX_RUN_TIME:.0f} s")
    if not 0 <= options.verify_rate <= 1 or not 0 <= options.tamper_share <= 1:
        parser.error("--verify-rate and --tamper-share are shares from 0 to 1")
    if options.out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        options.out = Path("loadtest-results") / f"{stamp}-{options.scenario}"
    return options
