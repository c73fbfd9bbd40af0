"""The signing engine with a real process pool: batching, errors, backpressure, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from signer.core import (
    EcPrivateKey,
    HmacSecret,
    InvalidArgument,
    InvalidUserId,
    IssuedToken,
    KeyLoadError,
    SignerError,
    verify,
)
from signer.engine import (
    AppKey,
    Engine,
    EngineClosed,
    EngineSettings,
    KeySet,
    Overloaded,
    SignRequest,
    UnknownApp,
)
from signer.engine.errors import WorkerCrashed
from tests.engine.conftest import V1_APP, V2_APP


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:  # a zombie is not alive
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


class TestSigning:
    async def test_many_come_back_in_order_and_verify(
        self, engine: Engine, v1_key: EcPrivateKey
    ) -> None:
        """sign_many returns one token per request, in request order, each valid."""
        userids = [f"user_{i}" for i in range(300)]
        results = await engine.sign_many([SignRequest(V1_APP, u, 600) for u in userids])
        assert [r.userid for r in results if isinstance(r, IssuedToken)] == userids
        for token in results[::37]:
            assert isinstance(token, IssuedToken)
            verify(token.usersig, userid=token.userid, sdkappid=V1_APP, key=v1_key.public_key())
        assert engine.stats.signed[(V1_APP, "v1")] == 300

    async def test_a_backlog_goes_in_few_large_batches(self, engine: Engine) -> None:
        """A large sign_many is split evenly over the idle workers in batches larger than
        max_batch (each round trip costs the loop and the worker time), not in many small."""
        results = await engine.sign_many([SignRequest(V1_APP, f"b{i}", 600) for i in range(300)])
        assert len(results) == 300
        # 300 items, 2 idle workers, max_batch 32: two batches of 150, not ten of 32.
        assert engine.stats.batches == 2
        assert engine.stats.batch_items == 300

    async def test_concurrent_singles_are_coalesced(self, engine: Engine) -> None:
        """Single requests arriving together travel in shared batches."""
        tokens = await asyncio.gather(
            *(engine.sign(SignRequest(V1_APP, f"u{i}")) for i in range(200))
        )
        assert len({t.usersig for t in tokens}) == 200
        assert engine.stats.batches < 50
        assert sum(engine.stats.batch_sizes) == engine.stats.batches

    async def test_up_to_one_batch_goes_to_one_worker(self, engine: Engine) -> None:
        """Fewer items than max_batch are one round trip, not split over idle workers."""
        await engine.sign_many([SignRequest(V1_APP, f"one{i}", 600) for i in range(30)])
        assert engine.stats.batches == 1

    async def test_a_call_over_max_batch_leaves_at_once_spread_over_workers(
        self, keyset: KeySet
    ) -> None:
        """100 items with max_batch 64 leave together as 50 + 50 on the two workers, not
        64 now and 36 after the first batch (or max_delay)."""
        settings = EngineSettings(workers=2, max_batch=64, max_delay=10.0)
        async with Engine(keyset, settings) as engine:
            call = asyncio.ensure_future(
                engine.sign_many([SignRequest(V1_APP, f"mid{i}", 600) for i in range(100)])
            )
            for _ in range(3):  # the dispatch tick, then both batches' tasks start
                await asyncio.sleep(0)
            assert engine.stats.batches == 2  # both left before either came back
            await call
            assert engine.stats.batch_items == 100

    async def test_a_second_worker_is_woken_only_for_a_full_batch(self, keyset: KeySet) -> None:
        """While one worker signs, a few singles gather for it instead of waking the idle
        worker one by one: under steady single-token load one worker takes large batches,
        the fewest round trips and process wake-ups (docs/PERFORMANCE.md)."""
        settings = EngineSettings(workers=2, max_batch=512, max_delay=10.0)
        async with Engine(keyset, settings) as engine:
            first = asyncio.ensure_future(
                engine.sign_many([SignRequest(V1_APP, f"big{i}", 600) for i in range(300)])
            )
            await asyncio.sleep(0)  # the 300 leave for one worker (~10 ms of signing)
            singles = []
            for i in range(5):  # one per loop iteration, each finding a worker idle
                singles.append(asyncio.ensure_future(engine.sign(SignRequest(V1_APP, f"s{i}"))))
                await asyncio.sleep(0)
            await asyncio.gather(first, *singles)
            assert (engine.stats.batches, engine.stats.batch_items) == (2, 305)

    async def test_one_bad_item_fails_alone(self, engine: Engine) -> None:
        """A policy violation or unknown app fails only its own item, with its typed error."""
        requests = [
            SignRequest(V1_APP, "good"),
            SignRequest(V1_APP, "bad\nline"),
            SignRequest(999, "nobody"),
            SignRequest(V1_APP, "x", expire=0),
            SignRequest(V1_APP, "room", room_id=42),
            SignRequest(V1_APP, "also_good"),
        ]
        results = await engine.sign_many(requests)
        assert isinstance(results[0], IssuedToken)
        assert isinstance(results[1], InvalidUserId) and results[1].rule == "control_character"
        assert isinstance(results[2], UnknownApp) and results[2].sdkappid == 999
        assert isinstance(results[3], InvalidArgument) and results[3].field == "expire"
        assert isinstance(results[4], IssuedToken) and isinstance(results[5], IssuedToken)
        with pytest.raises(InvalidUserId):
            await engine.sign(SignRequest(V1_APP, ""))

    async def test_privatemapkey_through_the_pool(
        self, engine: Engine, v2_secret: HmacSecret
    ) -> None:
        results = await engine.sign_many(
            [SignRequest(V2_APP, f"u{i}", room_str="会议") for i in range(100)]
        )
        token = results[7]
        assert isinstance(token, IssuedToken)
        checked = verify(token.usersig, userid="u7", sdkappid=V2_APP, key=v2_secret)
        assert checked.privilege_map is not None and checked.privilege_map.room_str == "会议"

    async def test_few_v2_tokens_are_signed_inline_when_asked(self, keyset: KeySet) -> None:
        """With ``inline_v2_max`` set, v2 singles skip the pool (HMAC is cheaper than a
        round trip) and big v2 batches don't; by default (0) every token goes to the pool."""
        async with Engine(keyset, EngineSettings(workers=1, inline_v2_max=32)) as engine:
            await engine.sign(SignRequest(V2_APP, "inline"))
            assert engine.stats.signed_inline == 1 and engine.stats.batches == 0
            await engine.sign_many([SignRequest(V2_APP, f"u{i}") for i in range(100)])
            assert engine.stats.signed_inline == 1 and engine.stats.batches > 0
        async with Engine(keyset, EngineSettings(workers=1)) as engine:
            await engine.sign(SignRequest(V2_APP, "pooled"))
            assert engine.stats.signed_inline == 0 and engine.stats.batches == 1

    def test_errors_survive_pickling(self) -> None:
        """Typed errors cross the process boundary intact."""
        for error in (
            InvalidUserId("too_long", "m"),
            UnknownApp(5),
            Overloaded("full", 2.0),
            KeyLoadError("not_ec", "m"),
            InvalidArgument("expire", "m"),
        ):
            copy = pickle.loads(pickle.dumps(error))
            assert type(copy) is type(error) and vars(copy) == vars(error)


class TestBackpressure:
    async def test_overfull_queue_is_refused_at_once(self, keyset: KeySet) -> None:
        """Past max_queued waiting items, submit fails immediately with Overloaded."""
        settings = EngineSettings(workers=1, max_batch=8, max_queued=100, inline_v2_max=0)
        async with Engine(keyset, settings) as engine:
            first = asyncio.create_task(
                engine.sign_many([SignRequest(V1_APP, f"a{i}") for i in range(90)])
            )
            await asyncio.sleep(0)
            with pytest.raises(Overloaded):
                await engine.sign_many([SignRequest(V1_APP, f"b{i}") for i in range(20)])
            assert len(await first) == 90
            assert engine.stats.rejected_overloaded == 20
            assert engine.stats.queue_depth == 0
            assert len(await engine.sign_many([SignRequest(V1_APP, "c")] * 100)) == 100


class TestBackground:
    async def test_live_requests_go_before_background_work(self, keyset: KeySet) -> None:
        """A live request sent while a long background job (keep-warm) is under way waits
        for at most the background batch already in its worker, not for the job.

        Catches: background requests queued with live ones (the live request would come
        back after the whole job), or background batches larger than background_batch."""
        settings = EngineSettings(workers=1, max_batch=32, background_batch=16)
        async with Engine(keyset, settings) as engine:
            job = [SignRequest(V1_APP, f"bg{i}", 600) for i in range(5000)]
            background = asyncio.ensure_future(engine.sign_many(job, background=True))
            await asyncio.sleep(0.01)  # the job is under way
            before = engine.stats.batch_items
            token = await engine.sign(SignRequest(V1_APP, "live", 600))
            signed_meanwhile = engine.stats.batch_items - before
            assert token.userid == "live" and not background.done()
            assert signed_meanwhile <= settings.background_batch + 1
            results = await background
            assert [r.userid for r in results if isinstance(r, IssuedToken)] == [
                r.userid for r in job
            ]
            assert engine.stats.queue_depth == 0

    async def test_background_work_finishes_and_close_waits_for_it(self, keyset: KeySet) -> None:
        """Background work nobody else competes with is signed in full, and closing the
        engine finishes what is queued in the background too.

        Catches: background work starved with no live traffic, or dropped by close()."""
        engine = Engine(keyset, EngineSettings(workers=2, background_batch=8))
        await engine.start()
        job = asyncio.ensure_future(
            engine.sign_many([SignRequest(V2_APP, f"w{i}") for i in range(50)], background=True)
        )
        await asyncio.sleep(0)
        await engine.close()
        assert len(await job) == 50 and engine.stats.queue_depth == 0


class TestResilience:
    async def test_killed_worker_loses_no_request(
        self, keyset: KeySet, v1_key: EcPrivateKey
    ) -> None:
        """SIGKILL of a worker mid-load: the pool is rebuilt and every request completes."""
        async with Engine(keyset, EngineSettings(workers=2, max_batch=16)) as engine:
            victim = engine.worker_pids()[0]
            tasks = [
                asyncio.create_task(engine.sign(SignRequest(V1_APP, f"u{i}"))) for i in range(3000)
            ]
            while engine.stats.batches < 10:
                await asyncio.sleep(0.001)
            os.kill(victim, 9)
            tokens = await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
            assert [t.userid for t in tokens] == [f"u{i}" for i in range(3000)]
            assert engine.stats.worker_restarts >= 1
            assert victim not in engine.worker_pids()
            after = await engine.sign(SignRequest(V1_APP, "after"))
            verify(after.usersig, userid="after", sdkappid=V1_APP, key=v1_key.public_key())

    async def test_reload_switches_keys_without_dropping(
        self, keyset: KeySet, v1_key: EcPrivateKey
    ) -> None:
        """A new key set reaches the workers; a batch in flight at the switch is finished
        by the old workers, with the old key, and every request succeeds.

        The old workers are stopped (SIGSTOP) while they hold the batch, so it is still in
        flight when the new generation takes over, however fast the machine. Catches: a
        reload that kills the old workers or drops what they hold (their calls would fail,
        or be signed again by the new workers with the new key)."""
        from signer.core import generate_private_key

        new_key = generate_private_key()
        rotated = KeySet.of([AppKey.from_private_key(V1_APP, new_key, key_version="2")])
        async with Engine(keyset, EngineSettings(workers=2, max_batch=16)) as engine:
            old_workers = engine.worker_pids()
            for pid in old_workers:
                os.kill(pid, signal.SIGSTOP)
            try:
                before = asyncio.create_task(
                    engine.sign_many([SignRequest(V1_APP, f"u{i}") for i in range(16)])
                )
                while engine.stats.batches < 1:  # handed to an old worker's pipe
                    await asyncio.sleep(0.001)
                await engine.reload(rotated)
                assert not before.done(), "the batch was not in flight at the switch"
                assert set(engine.worker_pids()).isdisjoint(old_workers)
            finally:
                for pid in old_workers:
                    os.kill(pid, signal.SIGCONT)
            old_results = await asyncio.wait_for(before, 30)
            after = await engine.sign_many([SignRequest(V1_APP, f"v{i}") for i in range(200)])
        for token in old_results:
            assert isinstance(token, IssuedToken) and token.key_version == "1"
            verify(token.usersig, userid=token.userid, sdkappid=V1_APP, key=v1_key.public_key())
        for token in after:
            assert isinstance(token, IssuedToken) and token.key_version == "2"
            verify(token.usersig, userid=token.userid, sdkappid=V1_APP, key=new_key.public_key())

    async def test_bad_reload_keeps_the_old_keys(self, engine: Engine) -> None:
        bad = KeySet.of(
            [
                AppKey(
                    V1_APP,
                    "v1",
                    b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n",
                )
            ]
        )
        with pytest.raises(SignerError):
            await engine.reload(bad)
        assert isinstance(await engine.sign(SignRequest(V1_APP, "still")), IssuedToken)


class TestPoolFailures:
    async def test_a_worker_that_cannot_be_replaced_at_once_is_replaced_later(
        self, keyset: KeySet, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If starting the replacement of a killed worker fails (no file descriptors,
        say), the pool keeps trying; no request hangs meanwhile."""
        from signer.engine import pool as pool_module

        async with Engine(keyset, EngineSettings(workers=1, max_batch=8)) as engine:
            real_spawn = pool_module.WorkerPool._spawn
            failures = []

            def flaky_spawn(self: pool_module.WorkerPool, keys: KeySet) -> object:
                if not failures:
                    failures.append(1)
                    raise OSError(24, "Too many open files")
                return real_spawn(self, keys)

            monkeypatch.setattr(pool_module, "RESPAWN_PAUSE", 0.05)
            monkeypatch.setattr(pool_module.WorkerPool, "_spawn", flaky_spawn)
            os.kill(engine.worker_pids()[0], 9)
            token = await asyncio.wait_for(engine.sign(SignRequest(V1_APP, "later")), 30)
            assert token.userid == "later" and failures == [1]

    async def test_a_reload_whose_workers_fail_changes_nothing(
        self, keyset: KeySet, v1_key: EcPrivateKey, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """New workers that die while starting make reload raise; the old keys keep
        signing everywhere (inline v2 included), and the old workers keep serving."""
        from signer.core import generate_private_key
        from signer.engine import pool as pool_module

        rotated = KeySet.of([AppKey.from_private_key(V1_APP, generate_private_key(), "9")])
        async with Engine(keyset, EngineSettings(workers=2, max_batch=8)) as engine:
            before = engine.worker_pids()

            async def dying_start(self: pool_module.WorkerPool, fresh: object) -> None:
                raise WorkerCrashed("a worker process died while starting")

            monkeypatch.setattr(pool_module.WorkerPool, "_start", dying_start)
            with pytest.raises(WorkerCrashed):
                await engine.reload(rotated)
            assert engine.keyset is keyset and engine.worker_pids() == before
            token = await engine.sign(SignRequest(V1_APP, "still"))
            verify(token.usersig, userid="still", sdkappid=V1_APP, key=v1_key.public_key())

    async def test_a_hung_worker_is_killed_and_its_call_retried(self, engine: Engine) -> None:
        """A worker that stops answering (SIGSTOP) is killed after the call timeout; the
        call is retried on another worker and a replacement starts."""
        assert engine._pool is not None
        engine._pool.call_timeout = 0.5
        victim = engine.worker_pids()[0]
        os.kill(victim, signal.SIGSTOP)
        try:
            tokens = await asyncio.wait_for(
                asyncio.gather(*(engine.sign(SignRequest(V1_APP, f"h{i}")) for i in range(40))),
                20,
            )
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        assert [t.userid for t in tokens] == [f"h{i}" for i in range(40)]
        deadline = asyncio.get_running_loop().time() + 20
        while victim in engine.worker_pids() or len(engine.worker_pids()) < 2:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)

    async def test_a_call_that_cannot_be_pickled_fails_alone(self, engine: Engine) -> None:
        """An argument pickle refuses raises to its caller and leaves no call pending."""
        import threading

        assert engine._pool is not None
        with pytest.raises(TypeError):
            await engine._pool.call(len, threading.Lock())
        assert all(not w.calls for w in engine._pool._current)
        assert (await engine.sign(SignRequest(V1_APP, "fine"))).userid == "fine"


class TestShutdown:
    async def test_close_finishes_work_and_leaves_no_workers(self, keyset: KeySet) -> None:
        """close() completes queued requests, then no worker process remains."""
        engine = Engine(keyset, EngineSettings(workers=2))
        await engine.start()
        pids = engine.worker_pids()
        assert pids and all(alive(p) for p in pids)
        pending = asyncio.create_task(
            engine.sign_many([SignRequest(V1_APP, f"u{i}") for i in range(400)])
        )
        await asyncio.sleep(0)
        await engine.close()
        assert len(await pending) == 400
        assert not any(alive(p) for p in pids)
        assert multiprocessing.active_children() == []
        with pytest.raises(EngineClosed):
            await engine.sign(SignRequest(V1_APP, "late"))

    async def test_close_after_reload_stops_every_generation(self, keyset: KeySet) -> None:
        engine = Engine(keyset, EngineSettings(workers=1))
        await engine.start()
        first = engine.worker_pids()
        await engine.reload(keyset)
        await engine.sign_many([SignRequest(V1_APP, "x")] * 10)
        second = engine.worker_pids()
        await engine.close()
        assert not any(alive(p) for p in first + second)


def test_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    """SIGKILL of the process that owns the pool leaves no orphaned worker holding keys."""
    script = tmp_path / "owner.py"
    script.write_text(
        "import asyncio, sys\n"
        "from signer.core import HmacSecret\n"
        "from signer.engine import AppKey, Engine, EngineSettings, KeySet\n"
        "async def main():\n"
        "    keys = KeySet.of([AppKey.from_secret(1, HmacSecret(b's'))])\n"
        "    engine = Engine(keys, EngineSettings(workers=2))\n"
        "    await engine.start()\n"
        "    print(*engine.worker_pids(), flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "if __name__ == '__main__':\n"
        "    asyncio.run(main())\n"
    )
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    pids = [int(p) for p in owner.stdout.readline().split()]
    assert len(pids) == 2 and all(alive(p) for p in pids)
    owner.kill()
    owner.wait()
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids)
