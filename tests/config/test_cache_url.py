"""A ``[cache] url`` that cannot work is refused when the configuration is read, with one
line saying what is wrong and never the URL's password."""

from __future__ import annotations

from pathlib import Path

import pytest

from signer.config import ConfigError, load_settings

APP = """
[[apps]]
sdkappid = 1400000001
algorithm = "v2"
secret = "s"
[cache]
"""


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis+cluster://:hunter2@127.0.0.1:70a0", "the port of node '127.0.0.1' is not a port"),
        ("rediss+cluster://:hunter2@h1:7000,h2:99999", "the port of node 'h2' is not a port"),
        ("redis+cluster://:hunter2@h1:7000?ssl_ca_cert=x", "unknown cluster URL option"),
        ("memcached://:hunter2@h1:11211", "unsupported cache url scheme"),
    ],
)
def test_a_bad_cache_url_is_one_clear_line(tmp_path: Path, url: str, expected: str) -> None:
    """Catches: a cluster URL's bad port or option found only when each HTTP process built
    its cache (a traceback per process, then the service giving up), or a message that
    repeats the URL with its password."""
    path = tmp_path / "signer.toml"
    path.write_text(APP + f'url = "{url}"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    (problem,) = caught.value.problems
    assert problem.startswith("cache.url: ") and expected in problem
    assert "hunter2" not in problem


def test_a_good_cluster_url_is_taken(tmp_path: Path) -> None:
    path = tmp_path / "signer.toml"
    url = "rediss+cluster://:pw@h1:7000,h2:7001?ssl_ca_certs=/etc/ca.pem"
    path.write_text(APP + f'url = "{url}"\n')
    assert load_settings(path).cache.url == url
