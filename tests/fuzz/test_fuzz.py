"""The fuzz target's short seeded run: libFuzzer (through atheris) mutates real tokens and
request bodies for a few seconds; any exception but the promised refusals fails it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TARGET = Path(__file__).with_name("targets.py")
ROOT = Path(__file__).resolve().parents[2]
RUNS = 20_000

pytestmark = pytest.mark.slow


def _fuzz(corpus: Path, *options: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); sys.argv = ['fuzz', *{list(options)!r},"
        f" {str(corpus)!r}]\n"
        "from tests.fuzz import targets\n"
        f"{prelude}\n"
        "targets.main(sys.argv)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT
    )


def test_a_seeded_run_finds_nothing(tmp_path: Path) -> None:
    """20,000 inputs from seed 1: the verifier only refuses with Tencent's codes, the body
    parser only with its API errors, and the repeated-key check agrees with its exact
    twin on every body."""
    result = _fuzz(tmp_path / "corpus", f"-runs={RUNS}", "-seed=1", f"-artifact_prefix={tmp_path}/")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Done {RUNS} runs" in result.stdout + result.stderr


def test_a_wrong_answer_of_the_repeated_key_check_is_caught(tmp_path: Path) -> None:
    """With the repeated-key check made to miss every repeat, the run stops at the seed
    whose body names a key twice: the target can fail."""
    prelude = "targets.duplicate_key = lambda raw, data: None"
    result = _fuzz(
        tmp_path / "corpus",
        "-runs=100",
        "-seed=1",
        f"-artifact_prefix={tmp_path}/",
        prelude=prelude,
    )
    assert result.returncode != 0
    assert "AssertionError" in result.stdout + result.stderr
