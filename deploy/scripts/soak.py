"""`make soak`'s sampler and its verdict (deploy/scripts/soak.sh runs it).

  soak.py sample --out F --log-dir D --admin svc=port... --db-name N [--interval 10] [--once]
      every --interval seconds appends one JSON line to F: per service (pid from
      D/<service>.pid) RSS (MiB), open file descriptors, threads, PostgreSQL connections
      (pg_stat_activity of database N by application_name) and the pool maxima from its
      /metrics; the ingest queue depth and dead jobs; the gateway's audit queue depth and
      dropped audit records; the documents and chunks in N. --once: one sample (marked final).
  soak.py drain --admin ingest=port [--timeout 180]
      waits until the ingest queue depth is 0; prints the seconds it took.
  soak.py report --samples F --seconds S --bench J --trickle T --section OUT [--meta K=V...]
      applies the growth rule below, prints a table per service and writes the BENCHMARKS
      section; exits 1 on FAIL.

The growth rule (stated in BENCHMARKS.md too): per service and series, the median of the
first window after the warm-up against the median of the last window of the load (warm-up
min(2 min, S/6), windows min(5 min, (S - warm-up)/3)); FAIL when
  - RSS grows by more than max(20 %, 50 MiB),
  - open file descriptors grow by more than 20,
  - threads grow by more than max(50 %, 20),
  - a service's PostgreSQL connections exceed its pools' maxima in any sample,
  - the ingest queue or the gateway's audit queue is not back to 0 after the load (drain
    wait), the dead-letter queue grew, or audit records were dropped,
  - a service restarted (its pid changed) or could not be sampled,
  - any search failed or was degraded, or any ingest or delete of the trickle failed.
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

SERVICES = ["embedding", "vector-search", "text-search", "ingest", "gateway"]
# pg_stat_activity.application_name -> service (crates/core/src/db/connect.rs callers).
APPLICATIONS = {
    "braid-ingest": "ingest",
    "braid-vector-search": "vector-search",
    "braid-gateway-audit": "gateway",
    "braid-gateway-revocation": "gateway",
}
# Pools without a braid_db_pool_max_connections series: the gateway's audit and revocation
# pools (both on audit.database, max_connections 4 by default).
POOL_MAX_DEFAULTS = {"gateway": 8}
RSS_MIN_GROWTH_MIB = 50
RSS_MAX_GROWTH_RATIO = 0.20
FD_MAX_GROWTH = 20
THREAD_MIN_GROWTH = 20
THREAD_MAX_GROWTH_RATIO = 0.50


# --- sampling ---------------------------------------------------------------------------

def read_pid(log_dir, svc):
    try:
        return int(open(os.path.join(log_dir, f"{svc}.pid")).read().strip())
    except (OSError, ValueError):
        return None


def proc_figures(pid):
    """RSS (MiB), open fds and threads of `pid`, or None when it is gone."""
    try:
        status = open(f"/proc/{pid}/status").read()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    rss = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1)) / 1024
    threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))
    return {"rss_mib": round(rss, 1), "fds": fds, "threads": threads}


def metrics(port):
    """Prometheus text of 127.0.0.1:port/metrics as {name: summed value}, or {} when down."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m:
            try:
                out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
            except ValueError:
                pass
    return out


def db_connections(db_name):
    """Connections to `db_name` per service (by application_name), via psql ($PG_BIN/psql,
    PGPASSWORD and PGPORT from the environment)."""
    psql = os.path.join(os.environ.get("PG_BIN", ""), "psql")
    sql = ("SELECT application_name, count(*) FROM pg_stat_activity "
           f"WHERE datname = '{db_name}' GROUP BY 1")
    r = subprocess.run([psql, "-h", "127.0.0.1", "-U", "braid", "-d", "postgres", "-tAXF", "\t",
                        "-c", sql], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        return None
    out = {svc: 0 for svc in SERVICES}
    for line in r.stdout.splitlines():
        name, _, n = line.partition("\t")
        svc = APPLICATIONS.get(name)
        if svc:
            out[svc] += int(n)
    return out


def corpus(db_name):
    """Documents and chunks in `db_name` (ingest's tables), or None."""
    psql = os.path.join(os.environ.get("PG_BIN", ""), "psql")
    r = subprocess.run([psql, "-h", "127.0.0.1", "-U", "braid", "-d", db_name, "-tAXF", "\t", "-c",
                        "SELECT (SELECT count(*) FROM ingest.documents), (SELECT count(*) FROM ingest.chunks)"],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0 or "\t" not in r.stdout:
        return None
    docs, chunks = r.stdout.strip().split("\t")
    return {"documents": int(docs), "chunks": int(chunks)}


def take_sample(args, t0):
    conns = db_connections(args.db_name)
    sample = {"t": round(time.time() - t0, 1), "services": {}, "corpus": corpus(args.db_name)}
    for svc, port in args.admin.items():
        pid = read_pid(args.log_dir, svc)
        figs = proc_figures(pid) if pid else None
        m = metrics(port)
        entry = {"pid": pid, "up": figs is not None}
        if figs:
            entry.update(figs)
        entry["db_connections"] = conns.get(svc, 0) if conns is not None else None
        if "braid_db_pool_max_connections" in m:
            entry["db_pool_max"] = m["braid_db_pool_max_connections"]
        if svc == "ingest":
            entry["queue_depth"] = m.get("braid_ingest_queue_depth")
            entry["dead_jobs"] = m.get("braid_ingest_dead_jobs")
        if svc == "gateway":
            entry["audit_queue_depth"] = m.get("braid_gateway_audit_queue_depth")
            entry["audit_dropped"] = m.get("braid_gateway_audit_dropped_total")
        sample["services"][svc] = entry
    return sample


def cmd_sample(args):
    t0 = float(args.t0) if args.t0 else time.time()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    with open(args.out, "a") as out:
        while not stop:
            started = time.time()
            s = take_sample(args, t0)
            if args.once:
                s["final"] = True
            print(json.dumps(s), file=out, flush=True)
            if args.once:
                return 0
            while not stop and time.time() - started < args.interval:
                time.sleep(0.2)
    return 0


def cmd_drain(args):
    port = args.admin["ingest"]
    started = time.time()
    while time.time() - started < args.timeout:
        depth = metrics(port).get("braid_ingest_queue_depth")
        if depth == 0:
            print(f"{time.time() - started:.0f}")
            return 0
        time.sleep(2)
    print(f"{time.time() - started:.0f}")
    return 1


# --- the growth rule ----------------------------------------------------------------------

def windows(seconds):
    """(warm-up, window) in seconds for a load of `seconds`."""
    warmup = min(120.0, seconds / 6)
    return warmup, min(300.0, (seconds - warmup) / 3)


def series_values(samples, svc, key):
    return [s["services"][svc][key] for s in samples
            if svc in s["services"] and s["services"][svc].get(key) is not None]


def median_in(samples, svc, key, lo, hi):
    vals = series_values([s for s in samples if lo <= s["t"] <= hi], svc, key)
    return statistics.median(vals) if vals else None


def evaluate(samples, seconds):
    """The growth rule over `samples` (dicts as `sample` writes them; those marked final come
    after the load and its drain). Returns (rows, failures): rows are (service, series, start,
    end, max, bound, ok); failures name every broken bound."""
    warmup, window = windows(seconds)
    load = [s for s in samples if not s.get("final") and s["t"] <= seconds]
    final = [s for s in samples if s.get("final")]
    rows, failures = [], []
    for svc in SERVICES:
        if not any(svc in s["services"] for s in load):
            continue
        pids = {s["services"][svc].get("pid") for s in load + final if svc in s["services"]}
        down = sum(1 for s in load + final if svc in s["services"] and not s["services"][svc]["up"])
        if len(pids) != 1 or down:
            failures.append(f"{svc}: restarted or unreachable (pids {sorted(p or 0 for p in pids)}, {down} samples down)")

        def growth(key, allowed, label):
            start = median_in(load, svc, key, warmup, warmup + window)
            end = median_in(load, svc, key, seconds - window, seconds)
            vals = series_values(load + final, svc, key)
            if start is None or end is None:
                failures.append(f"{svc}: no {label} samples in a window")
                return
            bound = allowed(start)
            ok = end - start <= bound
            rows.append((svc, label, start, end, max(vals), f"+{bound:.0f}", ok))
            if not ok:
                failures.append(f"{svc}: {label} grew {start:.0f} -> {end:.0f} (bound +{bound:.0f})")

        growth("rss_mib", lambda s: max(RSS_MAX_GROWTH_RATIO * s, RSS_MIN_GROWTH_MIB), "RSS MiB")
        growth("fds", lambda s: FD_MAX_GROWTH, "open fds")
        growth("threads", lambda s: max(THREAD_MAX_GROWTH_RATIO * s, THREAD_MIN_GROWTH), "threads")
        conns = series_values(load + final, svc, "db_connections")
        pool = series_values(load + final, svc, "db_pool_max") or (
            [POOL_MAX_DEFAULTS[svc]] if svc in POOL_MAX_DEFAULTS else [])
        if conns and any(c > 0 for c in conns) or pool:
            limit = max(pool) if pool else 0
            ok = max(conns) <= limit if conns else False
            rows.append((svc, "DB connections", conns[0] if conns else None,
                         conns[-1] if conns else None, max(conns) if conns else None,
                         f"<= {limit:.0f} (pools)", ok))
            if not ok:
                failures.append(f"{svc}: {max(conns or [0]):.0f} DB connections, pools allow {limit:.0f}")
        if svc == "ingest":
            depth = series_values(load, svc, "queue_depth")
            end_depth = series_values(final, svc, "queue_depth")
            ok = bool(end_depth) and end_depth[-1] == 0
            rows.append((svc, "queue depth", depth[0] if depth else None,
                         end_depth[-1] if end_depth else None, max(depth + end_depth) if depth + end_depth else None,
                         "0 after drain", ok))
            if not ok:
                failures.append(f"ingest: queue depth {end_depth[-1] if end_depth else 'unknown'} after the drain")
            dead = series_values(load + final, svc, "dead_jobs")
            ok = bool(dead) and dead[-1] <= dead[0]
            rows.append((svc, "dead jobs", dead[0] if dead else None, dead[-1] if dead else None,
                         max(dead) if dead else None, "no growth", ok))
            if not ok:
                failures.append(f"ingest: dead-letter queue {dead[0] if dead else '?'} -> {dead[-1] if dead else '?'}")
        if svc == "gateway" and series_values(load + final, svc, "audit_queue_depth"):
            depth = series_values(load, svc, "audit_queue_depth")
            end_depth = series_values(final, svc, "audit_queue_depth")
            ok = bool(end_depth) and end_depth[-1] == 0
            rows.append((svc, "audit queue depth", depth[0] if depth else None,
                         end_depth[-1] if end_depth else None, max(depth + end_depth), "0 after drain", ok))
            if not ok:
                failures.append(f"gateway: audit queue depth {end_depth[-1] if end_depth else 'unknown'} after the drain")
            dropped = series_values(load + final, svc, "audit_dropped")
            ok = dropped[-1] <= dropped[0]
            rows.append((svc, "audit records dropped", dropped[0], dropped[-1], max(dropped), "no growth", ok))
            if not ok:
                failures.append(f"gateway: {dropped[-1] - dropped[0]:.0f} audit records dropped")
    return rows, failures


def call_failures(bench, trickle, seconds):
    """Failures of the load's calls: (errors, degraded, trickle ingest failures, trickle delete
    failures) and the messages for those that are not 0, and a trickle that sent fewer than
    half the documents of one a second (it stopped or stalled)."""
    counts = {"search errors": bench.get("errors", 0), "degraded answers": bench.get("degraded", 0),
              "trickle ingest failures": trickle.get("ingest_failed", 0),
              "trickle delete failures": trickle.get("delete_failed", 0)}
    failures = [f"{v} {k}" for k, v in counts.items() if v]
    sent = trickle.get("ingested", 0) + trickle.get("ingest_failed", 0)
    if sent < seconds / 2:
        failures.append(f"the trickle sent {sent} documents in {seconds:.0f} s (stopped or stalled)")
    return counts, failures


# --- report -------------------------------------------------------------------------------

def fmt(v):
    if v is None:
        return "–"
    return f"{v:.0f}" if abs(v) >= 10 or float(v).is_integer() else f"{v:.1f}"


def cmd_report(args):
    samples = [json.loads(line) for line in open(args.samples) if line.strip()]
    bench = json.load(open(args.bench)) if args.bench and os.path.exists(args.bench) else {"errors": 1, "missing": True}
    trickle = json.load(open(args.trickle)) if args.trickle and os.path.exists(args.trickle) else {}
    rows, failures = evaluate(samples, args.seconds)
    counts, call_fail = call_failures(bench, trickle, args.seconds)
    if bench.get("missing"):
        call_fail = ["the load client left no report"]
    failures += call_fail
    verdict = "PASS" if not failures else "FAIL"
    warmup, window = windows(args.seconds)
    meta = dict(kv.split("=", 1) for kv in args.meta)
    lat = bench.get("latency_ms", {})
    sizes = [s["corpus"] for s in samples if s.get("corpus")]
    size = (f"{sizes[0]['documents']} documents / {sizes[0]['chunks']} chunks at the start,"
            f" {sizes[-1]['documents']} / {sizes[-1]['chunks']} at the end") if sizes else "size unknown"
    lines = [
        f"`{meta.get('command', 'make soak')}` ({meta.get('date', '')}, {meta.get('machine', '')},"
        f" {meta.get('commit', '')}, release): the `make run` stack (its own database and ports), SciFact"
        f" loaded ({size}), hybrid search through the gateway from `braidctl bench` at {meta.get('rate', '?')}"
        f" req/s open loop for {args.seconds / 60:.0f} min ({meta.get('capacity_note', '')}), query cache"
        f" bypassed, embedding cache on, {meta.get('callers', '?')} reader identities; with it an ingest"
        f" trickle of 1 new SciFact document/s (new ids, text prefixed so every chunk is embedded again)"
        f" and a delete of every second one 10 s later. Every 10 s per service: RSS, open file"
        f" descriptors, threads (/proc), PostgreSQL connections (pg_stat_activity by"
        f" application_name) against the pools' maxima (/metrics), the ingest queue depth and dead"
        f" jobs (/metrics). Load average at the end: {meta.get('load', '?')}.",
        "",
        f"Growth rule: median of the first {window / 60:.1f} min after a {warmup / 60:.1f} min warm-up against"
        " the median of the last window; FAIL when RSS grows by more than max(20 %, 50 MiB), open fds by"
        " more than 20, threads by more than max(50 %, 20), a service's DB connections exceed its pools'"
        " maxima in any sample (the gateway's two pools, which export no maximum: 4 + 4 by default),"
        " the ingest queue or the audit queue is not back to 0 after the load (the ingest queue"
        f" drained in {meta.get('drain', '?')} s), the dead-letter queue grew or audit records were"
        " dropped, a service restarted, or any call"
        " failed (search errors and degraded answers counted apart, both failures: no restart is part"
        " of this scenario).",
        "",
        f"Result: **{verdict}**. Searches: {bench.get('requests', 0)} sent, {bench.get('qps', 0)} req/s,"
        f" p50 {lat.get('p50', '–')} ms, p95 {lat.get('p95', '–')} ms, p99 {lat.get('p99', '–')} ms,"
        f" max {lat.get('max', '–')} ms; {counts['search errors']} errors, {counts['degraded answers']}"
        f" degraded. Trickle: {trickle.get('ingested', 0)} documents ingested"
        f" ({counts['trickle ingest failures']} failed), {trickle.get('deleted', 0)} deleted"
        f" ({counts['trickle delete failures']} failed).",
        "",
        "| service | series | start (median) | end (median) | max | bound | result |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for svc, label, start, end, mx, bound, ok in rows:
        lines.append(f"| {svc} | {label} | {fmt(start)} | {fmt(end)} | {fmt(mx)} | {bound} | {'PASS' if ok else '**FAIL**'} |")
    if failures:
        lines += ["", "Failures: " + "; ".join(failures) + "."]
    section = "\n".join(lines) + "\n"
    open(args.section, "w").write(section)
    print(section)
    print(f"soak: {verdict}" + (": " + "; ".join(failures) if failures else ""), file=sys.stderr)
    return 0 if not failures else 1


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    admin = lambda s: dict(kv.split("=", 1) for kv in s.split(","))
    s = sub.add_parser("sample")
    s.add_argument("--out", required=True)
    s.add_argument("--log-dir", required=True)
    s.add_argument("--admin", type=admin, required=True, help="svc=port,svc=port,...")
    s.add_argument("--db-name", required=True)
    s.add_argument("--interval", type=float, default=10.0)
    s.add_argument("--t0", help="epoch seconds the sample times count from (default: now)")
    s.add_argument("--once", action="store_true")
    d = sub.add_parser("drain")
    d.add_argument("--admin", type=admin, required=True)
    d.add_argument("--timeout", type=float, default=180.0)
    r = sub.add_parser("report")
    r.add_argument("--samples", required=True)
    r.add_argument("--seconds", type=float, required=True, help="length of the load")
    r.add_argument("--bench")
    r.add_argument("--trickle")
    r.add_argument("--section", required=True)
    r.add_argument("--meta", action="append", default=[])
    args = p.parse_args(argv)
    return {"sample": cmd_sample, "drain": cmd_drain, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
