"""Full-token signing rates of the core against naive and reference implementations.

Each case runs as a whole, fresh Python process pinned to one core; the parent times the
process from spawn to exit (imports and key loading included) and the child reports its
in-loop time as well. Cases are interleaved over several rounds so drift on this shared
machine hits every case alike; the median round is reported.

    .venv/bin/python bench/core_rates.py [--tokens 100000] [--rounds 3]

Cases:
  core-v1-p256 / core-v1-k1   signer's V1Signer.sign
  naive-v1-p256 / naive-v1-k1 the obvious loop over `cryptography`: dict, json.dumps, sign,
                              zlib.compress, base64, replace (what Tencent's v1 library does)
  core-v2                     signer's V2Signer.sign
  tencent-v2                  tls-sig-api-v2's TLSSigAPIv2.gen_sig
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SDKAPPID = 1400000001
SECRET = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e"
EXPIRE = 86400 * 180


def case_core_v1(curve: str, n: int) -> float:
    from signer.core import Curve, V1Signer, generate_private_key

    signer = V1Signer(SDKAPPID, generate_private_key(Curve(curve)))
    start = time.perf_counter()
    for i in range(n):
        signer.sign(f"user_{i}", EXPIRE)
    return time.perf_counter() - start


def case_naive_v1(curve: str, n: int) -> float:
    import base64
    import json as stdjson
    import zlib

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1() if curve == "prime256v1" else ec.SECP256K1())
    start = time.perf_counter()
    for i in range(n):
        m = {
            "TLS.account_type": "0",
            "TLS.identifier": f"user_{i}",
            "TLS.appid_at_3rd": "0",
            "TLS.sdk_appid": str(SDKAPPID),
            "TLS.expire_after": str(EXPIRE),
            "TLS.version": "201803230000",
            "TLS.time": str(int(time.time())),
        }
        text = (
            f"TLS.appid_at_3rd:{m['TLS.appid_at_3rd']}\nTLS.account_type:{m['TLS.account_type']}\n"
            f"TLS.identifier:{m['TLS.identifier']}\nTLS.sdk_appid:{m['TLS.sdk_appid']}\n"
            f"TLS.time:{m['TLS.time']}\nTLS.expire_after:{m['TLS.expire_after']}\n"
        )
        sig = key.sign(text.encode(), ec.ECDSA(hashes.SHA256()))
        m["TLS.sig"] = base64.b64encode(sig).decode()
        raw = zlib.compress(stdjson.dumps(m).encode())
        base64.b64encode(raw).decode().replace("+", "*").replace("/", "-").replace("=", "_")
    return time.perf_counter() - start


def case_core_v2(n: int) -> float:
    from signer.core import HmacSecret, V2Signer

    signer = V2Signer(SDKAPPID, HmacSecret.from_text(SECRET))
    start = time.perf_counter()
    for i in range(n):
        signer.sign(f"user_{i}", EXPIRE)
    return time.perf_counter() - start


def case_tencent_v2(n: int) -> float:
    import TLSSigAPIv2

    api = TLSSigAPIv2.TLSSigAPIv2(SDKAPPID, SECRET)
    start = time.perf_counter()
    for i in range(n):
        api.gen_sig(f"user_{i}", EXPIRE)
    return time.perf_counter() - start


CASES = {
    "core-v1-p256": lambda n: case_core_v1("prime256v1", n),
    "naive-v1-p256": lambda n: case_naive_v1("prime256v1", n),
    "core-v1-k1": lambda n: case_core_v1("secp256k1", n),
    "naive-v1-k1": lambda n: case_naive_v1("secp256k1", n),
    "core-v2": case_core_v2,
    "tencent-v2": case_tencent_v2,
}
# secp256k1 through OpenSSL is ~15x slower; fewer tokens keep the run short.
SCALE = {"naive-v1-k1": 0.1}
PAIRS = [
    ("core-v1-p256", "naive-v1-p256", 1.25),
    ("core-v1-k1", "naive-v1-k1", None),
    ("core-v2", "tencent-v2", 2.0),
]


def run_child(case: str, n: int, cpu: int) -> dict[str, float]:
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--child", case, "--tokens", str(n), "--cpu", str(cpu)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    wall = time.perf_counter() - start
    loop = json.loads(out)["loop_seconds"]
    return {"tokens": n, "loop_rate": n / loop, "process_rate": n / wall}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpu", type=int, default=0)
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        os.sched_setaffinity(0, {args.cpu})
        print(json.dumps({"loop_seconds": CASES[args.child](args.tokens)}))
        return

    results: dict[str, list[dict[str, float]]] = {name: [] for name in CASES}
    for _ in range(args.rounds):
        for name in CASES:
            n = max(1000, int(args.tokens * SCALE.get(name, 1.0)))
            results[name].append(run_child(name, n, args.cpu))
    median = {
        name: {
            key: statistics.median(r[key] for r in runs) for key in ("loop_rate", "process_rate")
        }
        for name, runs in results.items()
    }
    print(f"{'case':16} {'tokens/s (loop)':>16} {'tokens/s (process)':>19}")
    for name, m in median.items():
        print(f"{name:16} {m['loop_rate']:16,.0f} {m['process_rate']:19,.0f}")
    print()
    for ours, base, target in PAIRS:
        loop = median[ours]["loop_rate"] / median[base]["loop_rate"]
        proc = median[ours]["process_rate"] / median[base]["process_rate"]
        goal = f"(target >= {target}x)" if target else ""
        print(f"{ours} / {base}: {loop:.2f}x in-loop, {proc:.2f}x whole process {goal}")


if __name__ == "__main__":
    main()
