"""Plots and tables of a storm series (issue 13) from loadtest's result folders.

    .venv/bin/pip install matplotlib     # not a dependency of signer or of its tests
    .venv/bin/python loadtest/report.py SERIES_DIR... --out docs/img/

Each SERIES_DIR holds ``python -m loadtest storm`` result folders named
``{signer,naive}-{instances}-r{round}`` (the alternating rounds; ``naive`` is a
``--baseline-naive`` run) and, optionally, ``sweep-{signer,naive}-u{users}`` (one instance,
other user counts). From locust's ``locust_stats_history.csv`` (one row a second and
request name: the running request count, whose steps give req/s, and the percentiles of
locust's sliding window) and ``summary.json``
(the per-phase ``span_rps``, p50/p95/p99 and failures) it writes:

  storm-timeline.png     req/s (cold and warm) and p50/p95/p99 through round 1's storm,
                         signer and naive, 1 instance
  storm-instances.png    median req/s and p99 of each phase, 1 and 2 instances
  storm-concurrency.png  req/s and p99 of each phase against the storm's users
                         (the sweep and the rounds' median), 1 instance

(``--prefix`` replaces "storm" in those names) and prints a Markdown table of the
medians over the rounds. Reads only; no locust here.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PHASES = ("storm cold", "storm warm")
RUN = re.compile(r"^(signer|naive)-(\d+)-r(\d+)$")
SWEEP = re.compile(r"^sweep-(signer|naive)-u(\d+)$")
LABEL = {"signer": "signer", "naive": "naive (tls-sig-api-v2 in the handler)"}


def load(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "summary.json").read_text())  # type: ignore[no-any-return]


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:  # locust writes "N/A" for a second without requests
        return 0.0


def history(folder: Path) -> dict[str, list[dict[str, float]]]:
    """Per request name (and ``Aggregated``): the rows of each second, times from 0."""
    rows: dict[str, list[dict[str, float]]] = defaultdict(list)
    with open(folder / "locust_stats_history.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            rows[row["Name"]].append(
                {
                    "t": float(row["Timestamp"]),
                    "rps": _number(row["Requests/s"]),
                    "p50": _number(row["50%"]),
                    "p95": _number(row["95%"]),
                    "p99": _number(row["99%"]),
                    "n": _number(row["Total Request Count"]),
                }
            )
    for series in rows.values():  # req/s from the running count (locust's own is smoothed)
        last_t, last_n = None, 0.0
        for r in series:
            if last_t is not None and r["t"] > last_t:
                r["rps"] = (r["n"] - last_n) / (r["t"] - last_t)
            last_t, last_n = r["t"], r["n"]
    start = min(r["t"] for name in rows for r in rows[name])
    for name in rows:
        for r in rows[name]:
            r["t"] -= start
    return rows


Runs = dict[tuple[str, int], list[dict[str, Any]]]
"""The storm summaries by (server, instances), one per round."""
Sweep = dict[tuple[str, int], dict[str, Any]]
"""The summary of one storm by (server, users)."""


def collect(dirs: list[Path]) -> tuple[Runs, Sweep]:
    runs: Runs = defaultdict(list)
    sweep: Sweep = {}
    for series in dirs:
        for folder in sorted(p for p in series.iterdir() if (p / "summary.json").exists()):
            if match := RUN.match(folder.name):
                summary = load(folder)
                summary["_folder"] = folder
                summary["_round"] = int(match.group(3))
                runs[(match.group(1), int(match.group(2)))].append(summary)
            elif match := SWEEP.match(folder.name):
                sweep[(match.group(1), int(match.group(2)))] = load(folder)
    return runs, sweep


def phase(summary: dict[str, Any], name: str, key: str) -> float:
    return float(summary["by_name"][f"POST {name}"][key])


def median(runs: list[dict[str, Any]], name: str, key: str) -> float:
    return statistics.median(phase(s, name, key) for s in runs)


def _storm_size(summary: dict[str, Any]) -> str:
    """The storm's size for a title: users, and the logins each made if more than one."""
    users = summary["users"]
    logins = int(phase(summary, PHASES[0], "requests")) // max(1, users)
    return f"{users:,} users" + (f" x {logins:,} logins" if logins > 1 else "")


def plot_timeline(runs: Runs, out: Path, prefix: str) -> None:
    instances = min(n for _, n in runs)  # 1, where the series has it
    kinds = [k for k in ("signer", "naive") if (k, instances) in runs]
    fig, axes = plt.subplots(2, len(kinds), figsize=(6 * len(kinds), 7), squeeze=False)
    for col, kind in enumerate(kinds):
        first = min(runs[(kind, instances)], key=lambda s: s["_round"])
        rows = history(first["_folder"])
        top, bottom = axes[0][col], axes[1][col]
        for name, colour in zip(PHASES, ("tab:blue", "tab:orange"), strict=True):
            series = rows.get(name, [])
            top.plot([r["t"] for r in series], [r["rps"] for r in series], label=name, c=colour)
        top.set_title(f"{LABEL[kind]}, {instances} instance(s), {_storm_size(first)}")
        top.set_ylabel("req/s (answers a second)")
        top.legend()
        top.grid(alpha=0.3)
        agg = [r for r in rows.get("Aggregated", []) if r["p50"] > 0]
        for key, style in (("p50", ":"), ("p95", "--"), ("p99", "-")):
            bottom.plot([r["t"] for r in agg], [r[key] for r in agg], style, c="k", label=key)
        bottom.set_ylabel("response time, ms (locust's sliding window)")
        bottom.set_xlabel("seconds since the storm began")
        bottom.legend()
        bottom.grid(alpha=0.3)
    top_max = max(ax.get_ylim()[1] for ax in axes[0])
    bottom_max = max(ax.get_ylim()[1] for ax in axes[1])
    for ax in axes[0]:
        ax.set_ylim(0, top_max)
    for ax in axes[1]:
        ax.set_ylim(0, bottom_max)
    fig.suptitle("The login storm: cold phase (new userids) then warm phase (the same again)")
    fig.tight_layout()
    fig.savefig(out / f"{prefix}-timeline.png", dpi=110)
    plt.close(fig)


def plot_instances(runs: Runs, out: Path, prefix: str) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    groups = [(k, n) for k in ("signer", "naive") for n in (1, 2) if (k, n) in runs]
    width = 0.38
    for i, name in enumerate(PHASES):
        xs = [j + (i - 0.5) * width for j in range(len(groups))]
        rps = [median(runs[g], name, "span_rps") for g in groups]
        p99 = [median(runs[g], name, "p99_ms") for g in groups]
        left.bar(xs, rps, width, label=name)
        right.bar(xs, p99, width, label=name)
        for x, value in zip(xs, rps, strict=True):
            left.text(x, value, f"{value:,.0f}", ha="center", va="bottom", fontsize=8)
        for x, value in zip(xs, p99, strict=True):
            right.text(x, value, f"{value:,.0f}", ha="center", va="bottom", fontsize=8)
    ticks = [f"{k}\n{n} instance{'s' if n > 1 else ''}" for k, n in groups]
    for ax, title in ((left, "req/s of the phase (median)"), (right, "p99, ms (median)")):
        ax.set_xticks(range(len(groups)), ticks)
        ax.set_title(title)
        ax.legend()
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("1 against 2 instances (signer: sharing one Redis), medians over the rounds")
    fig.tight_layout()
    fig.savefig(out / f"{prefix}-instances.png", dpi=110)
    plt.close(fig)


def plot_concurrency(runs: Runs, sweep: Sweep, out: Path, prefix: str) -> None:
    if not sweep:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for kind, marker in (("signer", "o"), ("naive", "s")):
        points: dict[int, tuple[dict[str, float], dict[str, float]]] = {}
        for (k, users), summary in sweep.items():
            if k == kind:
                points[users] = (
                    {n: phase(summary, n, "span_rps") for n in PHASES},
                    {n: phase(summary, n, "p99_ms") for n in PHASES},
                )
        if (kind, 1) in runs:
            rounds = runs[(kind, 1)]
            points[rounds[0]["users"]] = (
                {n: median(rounds, n, "span_rps") for n in PHASES},
                {n: median(rounds, n, "p99_ms") for n in PHASES},
            )
        counts = sorted(points)
        for name, style in zip(PHASES, ("-", "--"), strict=True):
            label = f"{kind}, {name.split()[1]}"
            left.plot(
                counts, [points[u][0][name] for u in counts], style, marker=marker, label=label
            )
            right.plot(
                counts, [points[u][1][name] for u in counts], style, marker=marker, label=label
            )
    left.set_title("req/s of the phase")
    right.set_title("p99, ms")
    for ax in (left, right):
        ax.set_xlabel("storm users (each one connection, all arriving within the phase)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Against the storm's size, 1 instance")
    fig.tight_layout()
    fig.savefig(out / f"{prefix}-concurrency.png", dpi=110)
    plt.close(fig)


def table(runs: Runs) -> str:
    lines = [
        "| run | phase | req/s | p99 ms | failures | tokens signed | hit ratio | Redis after |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for kind in ("signer", "naive"):
        for n in (1, 2):
            group = runs.get((kind, n))
            if not group:
                continue
            for name in PHASES:
                cold = name == "storm cold"
                failures = sum(int(phase(s, name, "failures")) for s in group)
                signed = hits = redis = "—"
                if kind == "signer":
                    per_run = []
                    ratios = []
                    for s in group:
                        at, end = s["at_warm_start"]["service"], s["service"]
                        total = end["signatures_computed"]
                        part = at["signatures_computed"]
                        per_run.append(part if cold else total - part)
                        looked = (
                            at["cache_lookups"]
                            if cold
                            else {
                                k: end["cache_lookups"][k] - at["cache_lookups"][k]
                                for k in end["cache_lookups"]
                            }
                        )
                        all_lookups = sum(looked.values())
                        ratios.append((looked["hit"] + looked["stale"]) / all_lookups)
                    signed = "/".join(str(v) for v in per_run)
                    hits = "/".join(f"{v:.3f}" for v in ratios)
                    nodes = [s["at_warm_start"]["redis"] if cold else s["redis"] for s in group]
                    redis = "/".join(
                        f"{node[0]['used_memory_human']} ({node[0]['keys']:,} keys)"
                        for node in nodes
                    )
                lines.append(
                    f"| {kind} ×{n} | {name.split()[1]} | {median(group, name, 'span_rps'):,.0f} "
                    f"| {median(group, name, 'p99_ms'):,.0f} | {failures} | {signed} | {hits} "
                    f"| {redis} |"
                )
    lines.append("")
    lines.append("| phase | instances | signer / naive req/s | p99 signer / naive |")
    lines.append("|---|---:|---:|---:|")
    for n in (1, 2):
        if ("signer", n) in runs and ("naive", n) in runs:
            for name in PHASES:
                ours, theirs = runs[("signer", n)], runs[("naive", n)]
                ratio = median(ours, name, "span_rps") / median(theirs, name, "span_rps")
                p99 = median(ours, name, "p99_ms") / median(theirs, name, "p99_ms")
                lines.append(f"| {name.split()[1]} | {n} | **{ratio:.2f}x** | {p99:.2f}x |")
    share = [s["locust_cpu_share"] for group in runs.values() for s in group]
    lines.append("")
    lines.append(f"locust's CPU share of the 2 cores over a run: {min(share):.0%}-{max(share):.0%}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("series", nargs="+", type=Path, help="folders of result folders")
    parser.add_argument("--out", type=Path, required=True, help="where the PNGs go")
    parser.add_argument("--prefix", default="storm", help="of the PNGs' names (storm)")
    args = parser.parse_args()
    runs, sweep = collect(args.series)
    if not runs:
        parser.error("no {signer,naive}-N-rR result folder with a summary.json found")
    args.out.mkdir(parents=True, exist_ok=True)
    plot_timeline(runs, args.out, args.prefix)
    plot_instances(runs, args.out, args.prefix)
    plot_concurrency(runs, sweep, args.out, args.prefix)
    print(table(runs))


if __name__ == "__main__":
    main()
