"""``python -m deploy.local {up,down,status}``: what ``deploy/local/up`` and ``down`` run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deploy.local.topology import DEFAULT_DIR, describe, down, read_state, running, up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/local", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_DIR,
        help=f"where the keys, config, logs and state live (default {DEFAULT_DIR})",
    )
    parser.add_argument("--instances", type=int, default=3, help="signer instances (3)")
    parser.add_argument(
        "--processes", type=int, default=1, help="[server] processes of each instance (1)"
    )
    parser.add_argument("--port", type=int, default=0, help="nginx's port (default: a free one)")
    parser.add_argument(
        "--standalone", action="store_true", help="one redis-server instead of the cluster"
    )
    parser.add_argument(
        "--tls", action="store_true", help="Redis over TLS only (a CA and certificate made here)"
    )
    args = parser.parse_args(argv)
    directory = args.dir.resolve()
    if args.command == "down":
        return down(directory)
    if args.command == "status":
        state = read_state(directory)
        if state is None:
            print(f"deploy/local: nothing runs in {directory}")
            return 3
        alive, gone = running(state)
        print(describe(state, directory), end="")
        for record in gone:
            print(f"not running:  {record.name} (pid {record.pid})")
        return 0 if alive and not gone else 1
    if not 1 <= args.instances <= 32:
        parser.error("--instances must be 1..32")
    if not 1 <= args.processes <= 8:
        parser.error("--processes must be 1..8")
    try:
        return up(
            directory,
            instances=args.instances,
            processes=args.processes,
            port=args.port,
            standalone=args.standalone,
            tls=args.tls,
        )
    except (RuntimeError, OSError) as exc:
        print(f"deploy/local: could not start: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
