#!/usr/bin/env python3
"""CPU per uncached hybrid answer, by part, of one build of Braid against another (issue 24).

    deploy/scripts/stack_cpu.py A_BIN_DIR B_BIN_DIR [--docs 1000] [--seconds 30] [--rounds 3]
        [--rate 50] [--arms "A:32 B:32"] [--ingest-rounds 1]

A_BIN_DIR and B_BIN_DIR each hold the five service binaries (braid-gateway, braid-ingest,
braid-embedding, braid-vector-search, braid-text-search) of one build, e.g. `target/release` of
this checkout and of a worktree at an older commit. Each build runs as a whole stack of its own:
its own database (`braid_cpu_a`, `braid_cpu_b` in the `make setup` PostgreSQL), its own Tantivy
directory, its own ports; both get the same keys, the same `--docs` SciFact documents and the
`make run` settings that decide CPU per answer (JWT auth and audit on, service tokens, int8 query
graph, one query model thread per core), with the embedding cache off as in `make loadtest`.

First the stacks ingest the documents, in turn, `--ingest-rounds` times (later rounds under new
ids, so each is real indexing work): per round and stack, the seconds until every document is
READY and the CPU per document by part, and with 2 rounds or more the medians and B/A per round.
`--rounds 0` stops there (an ingest-only comparison).

Each arm is STACK:CALLERS: the stack driven (A or B) and how many reader tokens the load rotates
through (32 is what `make loadtest` uses; 1 is the one caller of its runs before 2026-12-07).
`braidctl bench` (this checkout's) drives every arm in turn at the same steady rate (open loop,
query cache bypassed, every SciFact query), arm after arm in each round, so the machine's load
hits every arm alike. Per run and part (the five services, the PostgreSQL backends connected to
that stack's database, the load client): CPU seconds from /proc (utime + stime) over the run less
the part's idle rate (measured with no load before the rounds), divided by the answers. Prints a
row per run, then per arm the median (min-max) of each part and each arm's server total (the
client apart) over the first arm's, round by round.

Needs PostgreSQL running (`make setup` or `make pg-start`), this checkout's release `braidctl`,
and curl. Leaves nothing behind: the stacks are stopped and both databases dropped.
"""

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from cpulib import HZ, ROOT, SERVICES, children_cpu, stack_env, ticks

PARTS = SERVICES + ["postgres", "client"]
# Offsets from a stack's port base: gRPC, and admin (+10).
OFFSET = {"gateway": 1, "ingest": 2, "embedding": 3, "vector-search": 4, "text-search": 5}


class Stack:
    def __init__(self, name, bin_dir, port, work, base_env, pg_url, psql):
        self.name, self.bin_dir, self.port = name, bin_dir, port
        self.db = f"braid_cpu_{name.lower()}"
        self.work, self.pg_url, self.psql = work, pg_url, psql
        self.procs = {}
        self.idle = {}
        env = dict(base_env)
        db_url = f"{pg_url}/{self.db}"
        keys = f"{work}/secrets"
        env.update({
            "BRAID_INGEST__DATABASE__URL": db_url,
            "BRAID_VECTOR_SEARCH__DATABASE__URL": db_url,
            "BRAID_GATEWAY__AUDIT__DATABASE__URL": db_url,
            "BRAID_TEXT_SEARCH__INDEX__DIR": f"{work}/tantivy-{name}",
            "BRAID_EMBEDDING__CACHE__L1_ENTRIES": "0",
            "BRAID_EMBEDDING__CACHE__REDIS_URL": "",
            "BRAID_EMBEDDING__MODEL__QUERY_QUANTIZED": "true",
            "BRAID_EMBEDDING__MODEL__QUERY_WORKERS": str(os.cpu_count() or 1),
            "BRAID_GATEWAY__AUTH__MODE": "jwt",
            "BRAID_GATEWAY__AUTH__HS256__FILE": f"{keys}/dev-jwt.key",
        })
        for svc in SERVICES:
            key = svc.upper().replace("-", "_")
            env[f"BRAID_{key}__INTERNAL_AUTH__MODE"] = "service_jwt"
            env[f"BRAID_{key}__INTERNAL_AUTH__KEY__FILE"] = f"{keys}/internal.key"
            env[f"BRAID_{key}__TELEMETRY__LOG_FILTER"] = "warn"
            env[f"BRAID_{key}__SERVER__GRPC_ADDR"] = f"127.0.0.1:{port + OFFSET[svc]}"
            env[f"BRAID_{key}__SERVER__ADMIN_ADDR"] = f"127.0.0.1:{port + 10 + OFFSET[svc]}"
        for client, targets in [("INGEST", ["embedding", "vector-search", "text-search"]),
                                ("GATEWAY", ["ingest", "embedding", "vector-search", "text-search"])]:
            for svc in targets:
                key = svc.upper().replace("-", "_")
                env[f"BRAID_{client}__{key}__ENDPOINT"] = f"http://127.0.0.1:{port + OFFSET[svc]}"
        self.env = env

    def sql(self, statement, db="postgres"):
        return subprocess.run([self.psql, f"{self.pg_url}/{db}", "-Atqc", statement],
                              check=True, capture_output=True, text=True).stdout

    def start(self):
        self.sql(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")
        self.sql(f"CREATE DATABASE {self.db}")
        for svc in SERVICES:
            binary = f"{self.bin_dir}/braid-{svc}"
            log = open(f"{self.work}/{self.name}-{svc}.log", "ab")
            self.procs[svc] = subprocess.Popen([binary], env=self.env, stdout=log,
                                               stderr=subprocess.STDOUT)
        deadline = time.time() + 240
        for svc in SERVICES:
            url = f"http://127.0.0.1:{self.port + 10 + OFFSET[svc]}/healthz"
            while True:
                try:
                    urllib.request.urlopen(url, timeout=2).read()
                    break
                except OSError:
                    if time.time() > deadline or self.procs[svc].poll() is not None:
                        self.stop()
                        sys.exit(f"stack {self.name}: braid-{svc} did not become healthy "
                                 f"(log {self.work}/{self.name}-{svc}.log)")
                    time.sleep(1)

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        try:
            self.sql(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")
        except subprocess.CalledProcessError:
            pass

    def backends(self):
        rows = self.sql(f"SELECT pid FROM pg_stat_activity WHERE datname = '{self.db}'")
        return [int(x) for x in rows.split()]

    def snapshot(self):
        """Clock ticks so far per part (PostgreSQL: per backend of this stack's database)."""
        snap = {svc: ticks(p.pid) for svc, p in self.procs.items()}
        snap["backends"] = {pid: ticks(pid) for pid in self.backends()}
        return snap


def used(before, after):
    """CPU seconds per service part between two snapshots; a backend that started in between
    counts from 0, one that ended in between is lost (the pools keep theirs open)."""
    out = {svc: (after[svc] - before[svc]) / HZ for svc in SERVICES}
    out["postgres"] = sum(t - before["backends"].get(pid, 0)
                          for pid, t in after["backends"].items()) / HZ
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a_bin")
    ap.add_argument("b_bin")
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rate", type=int, default=50)
    ap.add_argument("--arms", default="A:32 B:32")
    ap.add_argument("--ingest-rounds", type=int, default=1,
                    help="ingest the documents this many times per stack, stacks alternating")
    ap.add_argument("--port-base", type=int, default=51300)
    args = ap.parse_args()
    arms = [(a.split(":")[0], int(a.split(":")[1])) for a in args.arms.split()]
    if any(s not in ("A", "B") or n < 1 for s, n in arms):
        sys.exit("--arms: STACK:CALLERS items, STACK A or B, CALLERS >= 1")
    base_env = dict(os.environ)
    base_env.update(stack_env())
    pg_url = base_env["BRAID_TEST_DATABASE_URL"].rsplit("/", 1)[0]
    psql = f"{base_env['BRAID_TEST_PG_BIN']}/psql"
    ctl_bin = os.environ.get("CARGO_TARGET_DIR", f"{ROOT}/target") + "/release/braidctl"
    dataset = os.environ.get("BRAID_EVAL_DIR", f"{ROOT}/../shared/eval") + "/scifact"
    for d in (args.a_bin, args.b_bin):
        for svc in SERVICES:
            if not os.access(f"{d}/braid-{svc}", os.X_OK):
                sys.exit(f"missing binary: {d}/braid-{svc}")
    work = tempfile.mkdtemp(prefix="stack-cpu-")
    os.makedirs(f"{work}/secrets", mode=0o700)
    for k in ("dev-jwt.key", "internal.key"):
        with open(f"{work}/secrets/{k}", "w") as f:
            f.write(secrets.token_hex(32))
    ctl_env = dict(os.environ, BRAID_HOME=work)

    def ctl(stack, *argv, **kw):
        return subprocess.run([ctl_bin, "--gateway", f"http://127.0.0.1:{stack.port + 1}",
                               *argv], env=ctl_env, check=True, capture_output=True, text=True,
                              **kw).stdout

    def mint(sub, role):
        return subprocess.run([ctl_bin, "--tenant", "default", "token", "mint", "--sub", sub,
                               "--role", role, "--ttl", "2h"], env=ctl_env, check=True,
                              capture_output=True, text=True).stdout.strip()

    stacks = {name: Stack(name, os.path.realpath(d), args.port_base + 20 * i, work, base_env,
                          pg_url, psql)
              for i, (name, d) in enumerate([("A", args.a_bin), ("B", args.b_bin)])}
    try:
        with open(f"{dataset}/corpus.jsonl") as src, open(f"{work}/corpus.jsonl", "w") as dst:
            for i, line in enumerate(src):
                if i >= args.docs:
                    break
                dst.write(line)
        writer = mint("stack-cpu-ingest", "writer")
        for n in sorted({n for _, n in arms}):
            with open(f"{work}/tokens-{n}", "w") as f:
                f.write("".join(mint(f"stack-cpu-{i}", "reader") + "\n" for i in range(n)))
        for s in stacks.values():
            print(f"stack {s.name}: {s.bin_dir}, ports {s.port + 1}-{s.port + 15}",
                  file=sys.stderr, flush=True)
            s.start()
        # Ingest: every round, each stack in turn ingests the documents (after the first round
        # under new ids, so each round is real indexing work); seconds until every document is
        # READY, and CPU per document by part (no idle rates subtracted: the ingest dominates).
        ingests = []
        print("\t".join(["ingest", "round", "documents", "seconds"]
                        + [f"{p}_ms/doc" for p in PARTS[:-1]] + ["server_total_ms/doc"]),
              flush=True)
        for rnd in range(1, args.ingest_rounds + 1):
            corpus = f"{work}/corpus-{rnd}.jsonl"
            with open(f"{work}/corpus.jsonl") as src, open(corpus, "w") as dst:
                for line in src:
                    doc = json.loads(line)
                    if rnd > 1:
                        doc["_id"] = f"r{rnd}-{doc['_id']}"
                    dst.write(json.dumps(doc) + "\n")
            for s in stacks.values():
                before, t0 = s.snapshot(), time.time()
                subprocess.run([ctl_bin, "--gateway", f"http://127.0.0.1:{s.port + 1}", "ingest",
                                corpus, "--wait"], check=True,
                               env=dict(ctl_env, BRAID_TOKEN=writer), stdout=subprocess.DEVNULL)
                secs = time.time() - t0
                u = used(before, s.snapshot())
                per_doc = {p: v * 1000 / args.docs for p, v in u.items()}
                ingests.append({"stack": s.name, "round": rnd, "seconds": secs, "cpu": per_doc})
                print("\t".join([s.name, str(rnd), str(args.docs), f"{secs:.1f}"]
                                + [f"{per_doc[p]:.1f}" for p in PARTS[:-1]]
                                + [f"{sum(per_doc.values()):.1f}"]), flush=True)
        if args.ingest_rounds > 1:
            report_ingest(ingests)
        if args.rounds == 0:
            return
        # Idle rates, both stacks up (as in the runs), no load.
        time.sleep(5)
        for s in stacks.values():
            before, t0 = s.snapshot(), time.time()
            time.sleep(10)
            u = used(before, s.snapshot())
            s.idle = {k: v / (time.time() - t0) for k, v in u.items()}
        print("idle CPU s/s: " + "; ".join(
            f"{s.name} " + " ".join(f"{k} {v:.3f}" for k, v in s.idle.items())
            for s in stacks.values()), flush=True)

        def bench(stack, callers, secs):
            out = ctl(stack, "bench", "--rate", str(args.rate), "--warmup", "0s", "--duration",
                      f"{secs}s", "--timeout", "10s", "--bypass-cache", "--queries",
                      f"{dataset}/queries.jsonl", "--token-file", f"{work}/tokens-{callers}",
                      "--json", "--quiet")
            return json.loads(out)

        rows = []
        print("\t".join(["arm", "round", "answers", "p50_ms", "p99_ms", "errors", "degraded"]
                        + [f"{p}_ms" for p in PARTS] + ["server_total_ms", "load1"]), flush=True)
        for rnd in range(1, args.rounds + 1):
            for stack_name, callers in arms:
                s = stacks[stack_name]
                bench(s, callers, 3)  # warm-up, outside the CPU window
                before, c0, t0 = s.snapshot(), children_cpu(), time.time()
                r = bench(s, callers, args.seconds)
                after, c1, t1 = s.snapshot(), children_cpu(), time.time()
                n = max(r.get("answered_whole_run") or r.get("answered") or 1, 1)
                u = used(before, after)
                cpu = {p: (u[p] - s.idle[p] * (t1 - t0)) * 1000 / n for p in u}
                cpu["client"] = (c1 - c0) * 1000 / n
                row = {"arm": f"{stack_name}:{callers}", "round": rnd, "answers": n,
                       "p50": r["latency_ms"]["p50"], "p99": r["latency_ms"]["p99"],
                       "errors": r["errors"], "degraded": r["degraded"], "cpu": cpu,
                       # The server's parts only, as in `make loadtest` (client apart).
                       "total": sum(v for p, v in cpu.items() if p != "client"),
                       "load1": float(open("/proc/loadavg").read().split()[0])}
                rows.append(row)
                print("\t".join([row["arm"], str(rnd), str(n), f"{row['p50']:.1f}",
                                 f"{row['p99']:.1f}", str(row["errors"]), str(row["degraded"])]
                                + [f"{cpu[p]:.3f}" for p in PARTS]
                                + [f"{row['total']:.3f}", f"{row['load1']:.2f}"]), flush=True)
        with open(f"{work}/rows.json", "w") as f:
            json.dump(rows, f)
        report(rows, arms)
        keep = os.environ.get("STACK_CPU_KEEP")
        if keep:
            shutil.copy(f"{work}/rows.json", keep)
    finally:
        for s in stacks.values():
            s.stop()
        shutil.rmtree(work, ignore_errors=True)


def spread(values):
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def report_ingest(ingests):
    print("\nIngest, median (min-max) of the rounds: seconds, server CPU ms per document")
    for name in ("A", "B"):
        mine = [i for i in ingests if i["stack"] == name]
        print(f"{name}: {spread([i['seconds'] for i in mine])} s, "
              + ", ".join(f"{p} {spread([i['cpu'][p] for i in mine])}" for p in PARTS[:-1])
              + f", total {spread([sum(i['cpu'].values()) for i in mine])}")
    ratios = [b["seconds"] / a["seconds"] for a, b in zip(
        [i for i in ingests if i["stack"] == "A"], [i for i in ingests if i["stack"] == "B"])]
    print("B/A seconds per round: " + ", ".join(f"{x:.3f}" for x in ratios)
          + f"; median {statistics.median(ratios):.3f}")


def report(rows, arms):
    names = [f"{s}:{n}" for s, n in arms]
    print("\nCPU ms per answer, median (min-max) of the rounds:")
    print("| arm | " + " | ".join(PARTS) + " | server total | p99 ms |")
    print("| --- |" + " --- |" * (len(PARTS) + 2))
    for name in names:
        mine = [r for r in rows if r["arm"] == name]
        cells = [spread([r["cpu"][p] for r in mine]) for p in PARTS]
        cells += [spread([r["total"] for r in mine]), spread([r["p99"] for r in mine])]
        print(f"| {name} | " + " | ".join(cells) + " |")
    first = names[0]
    for name in names[1:]:
        ratios = [b["total"] / a["total"] for a, b in zip(
            [r for r in rows if r["arm"] == first], [r for r in rows if r["arm"] == name])]
        print(f"{name} / {first}, total per round: "
              + ", ".join(f"{x:.3f}" for x in ratios)
              + f"; median {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
