"""A reload applies new keys and limits at once, keeps the callers' rate-limit buckets, retires
tokens of a replaced key and names what only a restart applies."""

from __future__ import annotations

from signer.core import verify
from signer.service.handlers import STATE
from tests.service.conftest import (
    V2_APP,
    ClientFactory,
    Deployment,
    write_config,
)


class TestReload:
    async def test_a_reload_keeps_the_callers_rate_limit_buckets(
        self, make_client: ClientFactory, deployment: Deployment
    ) -> None:
        """A SIGHUP with unchanged limits must not hand every caller a fresh burst."""
        from signer.config import load_settings

        tight = write_config(
            deployment.directory, name="tight.toml", rate_limit={"rate": 0.001, "burst": 3}
        )
        client = await make_client(tight)
        body = {"sdkappid": V2_APP, "userid": "rl"}
        statuses = [
            (await client.post("/v1/usersig", json=body, headers=deployment.headers())).status
            for _ in range(3)
        ]
        assert statuses == [200, 200, 200]
        await client.app[STATE].reload(load_settings(tight))
        again = await client.post("/v1/usersig", json=body, headers=deployment.headers())
        assert again.status == 429

    async def test_new_key_without_new_version_retires_cached_tokens(
        self, make_client: ClientFactory, deployment: Deployment
    ) -> None:
        """Replacing a leaked secret and reloading must not keep serving old tokens."""
        from signer.config import load_settings
        from signer.core import HmacSecret

        client = await make_client()
        body = {"sdkappid": V2_APP, "userid": "rot"}
        old = await (
            await client.post("/v1/usersig", json=body, headers=deployment.headers())
        ).json()
        (deployment.directory / "keys" / "app2" / "secret").write_text("a brand new secret")
        await client.app[STATE].reload(load_settings(deployment.config))
        new = await (
            await client.post("/v1/usersig", json=body, headers=deployment.headers())
        ).json()
        assert new["cached"] is False and new["usersig"] != old["usersig"]
        verify(new["usersig"], userid="rot", sdkappid=V2_APP, key=HmacSecret(b"a brand new secret"))

    def test_settings_that_need_a_restart_are_named(self, deployment: Deployment) -> None:
        """What a reload cannot apply (bind address, pool, cache client) is listed, and
        what it does apply is not."""
        from signer.config import load_settings
        from signer.service.state import restart_only_changes

        old = load_settings(deployment.config)
        new = old.model_copy(
            update={
                "server": old.server.model_copy(update={"port": 9999, "max_batch_userids": 5}),
                "engine": old.engine.model_copy(update={"max_batch": 7}),
                "cache": old.cache.model_copy(
                    update={"url": "redis://elsewhere:6379/0", "min_remaining": 60}
                ),
            }
        )
        assert restart_only_changes(old, new) == ["server.port", "engine.max_batch", "cache.url"]
        assert restart_only_changes(old, old) == []
