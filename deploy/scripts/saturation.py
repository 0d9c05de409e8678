#!/usr/bin/env python3
"""Saturation of the running `make run` stack by search mode: what an outside client measures.

    deploy/scripts/saturation.py [--modes "text vector hybrid"] [--clients 500] [--seconds 30]
        [--rounds 2] [--callers 32] [--queries FILE]

Closed loop: `--clients` concurrent callers that never pause, rotating through `--callers` reader
tokens of the default tenant, every query of `--queries` (SciFact's 1,109 by default) cycling,
query cache bypassed. The modes run in turn in every round, so the machine's load hits them
alike. Per run: answers per second, p95/p99, errors, and CPU per answer of the server (the five
services from the pid files `make run` writes, PostgreSQL's postmaster and backends) and of the
load client apart, from /proc. Whatever the stack's embedding cache is (`make run`: on;
`BRAID_EMBEDDING_CACHE=off make run`: off) applies: run it against both to see what the cache
does to figures measured from outside.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from cpulib import HZ, ROOT, SERVICES, children_cpu, stack_env, ticks


def server_ticks(log_dir, pg_data):
    total = 0
    for svc in SERVICES:
        with open(f"{log_dir}/{svc}.pid") as f:
            total += ticks(int(f.read().strip()))
    with open(f"{pg_data}/postmaster.pid") as f:
        postmaster = int(f.readline().strip())
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True,
                              text=True).stdout.split()
    return total + ticks(postmaster) + sum(ticks(int(p)) for p in children)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--modes", default="text vector hybrid")
    ap.add_argument("--clients", type=int, default=500)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--callers", type=int, default=32)
    ap.add_argument("--queries", default=os.environ.get(
        "BRAID_EVAL_DIR", f"{ROOT}/../shared/eval") + "/scifact/queries.jsonl")
    args = ap.parse_args()
    env = stack_env()
    home = env["BRAID_HOME"]
    log_dir, pg_data = f"{home}/logs", f"{home}/pgdata"
    ctl = os.environ.get("CARGO_TARGET_DIR", f"{ROOT}/target") + "/release/braidctl"
    tokens = tempfile.NamedTemporaryFile("w", prefix="saturation-tokens-", delete=False)
    try:
        for i in range(args.callers):
            tokens.write(subprocess.run(
                [ctl, "--tenant", "default", "token", "mint", "--sub", f"saturation-{i}",
                 "--role", "reader", "--ttl", "2h"], check=True, capture_output=True,
                text=True).stdout.strip() + "\n")
        tokens.close()
        print("mode\tround\tanswers/s\tp50_ms\tp95_ms\tp99_ms\terrors\tdegraded\t"
              "server_cpu_ms/answer\tclient_cpu_ms/answer\tload1", flush=True)
        rows = []
        for rnd in range(1, args.rounds + 1):
            for mode in args.modes.split():
                s0, c0 = server_ticks(log_dir, pg_data), children_cpu()
                out = subprocess.run(
                    [ctl, "bench", "--clients", str(args.clients), "--mode", mode,
                     "--warmup", "5s", "--duration", f"{args.seconds}s", "--timeout", "10s",
                     "--bypass-cache", "--queries", args.queries, "--token-file", tokens.name,
                     "--json", "--quiet"], check=True, capture_output=True, text=True).stdout
                s1, c1 = server_ticks(log_dir, pg_data), children_cpu()
                r = json.loads(out)
                n = max(r.get("answered_whole_run") or r.get("answered") or 1, 1)
                row = (mode, rnd, r["answered"] / r["seconds"], r["latency_ms"]["p50"],
                       r["latency_ms"]["p95"], r["latency_ms"]["p99"], r["errors"],
                       r["degraded"], (s1 - s0) * 1000 / HZ / n, (c1 - c0) * 1000 / n,
                       float(open("/proc/loadavg").read().split()[0]))
                rows.append(row)
                print("%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%d\t%.2f\t%.2f\t%.2f" % row, flush=True)
                time.sleep(3)
        print("\nmedian of the rounds: answers/s, p95 ms, server CPU ms/answer")
        for mode in args.modes.split():
            mine = [r for r in rows if r[0] == mode]
            print("%s\t%.1f\t%.1f\t%.2f" % (mode, statistics.median(r[2] for r in mine),
                                          statistics.median(r[4] for r in mine),
                                          statistics.median(r[8] for r in mine)))
    finally:
        os.unlink(tokens.name)


if __name__ == "__main__":
    sys.exit(main())
