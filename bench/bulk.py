"""`signer bulk` against single-process baselines, with peak RSS of the whole process tree.

    .venv/bin/python bench/bulk.py [--tokens 1000000] [--baseline-tokens 200000]

Runs, in one go:
  naive v1 loop     one process, `cryptography` + json + zlib (bench/core_rates.py's naive case)
  bulk v1 P-256     `signer bulk --count N --private-key K --out /dev/null`
  tencent v2 loop   one process running tls-sig-api-v2's gen_sig, timed as a whole process
  bulk v2           `signer bulk --count N --secret-file S --out /dev/null`
Memory: RSS of the bulk process and all its descendants is sampled every 50 ms; the peak of
the sum is reported, and the peak over the first fifth of the run, to show it stays flat.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
PYTHON = sys.executable
SIGNER = str(Path(PYTHON).parent / "signer")
SECRET = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e"


def tree_rss(pid: int) -> int:
    """Resident set size in bytes of ``pid`` and every descendant."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def run_bulk(argv: list[str]) -> dict[str, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [SIGNER, "bulk", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    samples: list[tuple[float, int]] = []
    while proc.poll() is None:
        samples.append((time.perf_counter() - start, tree_rss(proc.pid)))
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stderr.read().decode() if proc.stderr else "bulk failed")
    early = [rss for t, rss in samples if t <= seconds / 5] or [0]
    return {"seconds": seconds, "peak": max(r for _, r in samples), "early_peak": max(early)}


def run_python(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([PYTHON, "-c", code], check=True, cwd=HERE)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--baseline-tokens", type=int, default=200_000)
    args = parser.parse_args()
    n, b = args.tokens, args.baseline_tokens
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([SIGNER, "keygen", "--out", tmp], check=True, capture_output=True)
        Path(tmp, "secret").write_text(SECRET)

        naive = b / run_python(
            f"from core_rates import case_naive_v1; case_naive_v1('prime256v1', {b})"
        )
        v1 = run_bulk(
            [
                "--sdkappid",
                "1400000001",
                "--private-key",
                f"{tmp}/private_key",
                "--count",
                str(n),
                "--out",
                os.devnull,
            ]
        )
        tencent = b / run_python(f"from core_rates import case_tencent_v2; case_tencent_v2({b})")
        v2 = run_bulk(
            [
                "--sdkappid",
                "1400000001",
                "--secret-file",
                f"{tmp}/secret",
                "--count",
                str(n),
                "--out",
                os.devnull,
            ]
        )

    mib = 1 << 20
    print(f"cores: {os.cpu_count()}, bulk tokens: {n:,}, baseline tokens: {b:,}\n")
    print(f"naive v1 P-256 loop, 1 process:   {naive:10,.0f} tokens/s")
    print(
        f"signer bulk v1 P-256:             {n / v1['seconds']:10,.0f} tokens/s  "
        f"= {n / v1['seconds'] / naive:.2f}x naive (target >= 1.7x); "
        f"peak RSS {v1['peak'] / mib:.0f} MiB (first fifth {v1['early_peak'] / mib:.0f} MiB, "
        f"target <= 200 MB)"
    )
    print(f"tls-sig-api-v2 gen_sig, process:  {tencent:10,.0f} tokens/s")
    print(
        f"signer bulk v2:                   {n / v2['seconds']:10,.0f} tokens/s  "
        f"= {n / v2['seconds'] / tencent:.2f}x tls-sig-api-v2 (target >= 4x); "
        f"peak RSS {v2['peak'] / mib:.0f} MiB (first fifth {v2['early_peak'] / mib:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
