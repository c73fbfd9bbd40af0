"""The scenarios for locust's own command line, for distributed runs (``--processes N``,
or ``--master`` here and ``--worker --master-host H`` on other machines): the scenario and
deployment come from the LOADTEST_* environment variables (``--target`` only), the users,
spawn rate and run time from locust's options. See loadtest/README.md.

Each worker checks the tokens it receives (a wrong one is a locust failure, aggregated by
the master as usual); ``summary.json`` and the SLA gates are ``python -m loadtest``'s."""

from __future__ import annotations

from loadtest import scenarios
from loadtest.checks import TokenChecker, load_keys
from loadtest.options import parse

_options = parse([])
if _options.local:
    raise SystemExit("loadtest/locustfile.py runs against a deployment: set LOADTEST_TARGET")
_options.users = _options.users or 100
_apps = [a for a in (_options.v1_sdkappid, _options.v2_sdkappid) if a]
_keys = load_keys(
    _options.v1_sdkappid, _options.v1_public_key, _options.v2_sdkappid, _options.v2_secret_file
)
scenarios.CONTEXT = scenarios.Context(
    hosts=[h.rstrip("/") for h in _options.target.split(",")],
    api_key=_options.api_key_file.read_text().strip(),
    sdkappids=_apps,
    checker=TokenChecker(_keys, _options.min_remaining, _options.verify_rate),
    options=_options,
)
if _options.scenario == "storm":
    # Each worker draws its own userids: distinct with high probability in a space of 1e6.
    import random

    _wanted = _options.users * _options.logins_per_user
    scenarios.CONTEXT.storm_userids = random.sample(
        range(_options.userid_space), min(_wanted, _options.userid_space)
    )

for _cls in scenarios.user_classes(_options.scenario, _options):
    globals()[_cls.__name__] = _cls
del _cls
if _options.scenario == "storm":
    StormShape = scenarios.StormShape
