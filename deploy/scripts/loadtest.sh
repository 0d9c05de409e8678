# Braid's load tests (`make loadtest`, `make loadtest-restarts`, `make loadtest-scale`): sourced by
# stack.sh, whose helpers (say, die, setup, print_env, as_pg, the PostgreSQL paths, SERVICES,
# export_stack_auth, ensure_secrets) they use.
# shellcheck shell=bash

# The pid of braid-$1: from the pid file `make run` writes, else by its command line.
service_pid() { # service
  cat "$LOG_DIR/$1.pid" 2>/dev/null || pgrep -f "/braid-$1\$" | head -n1
}

# CPU ticks (user + system) used so far by braid-$1.
cpu_ticks() { # service
  local pid
  pid=$(service_pid "$1")
  [[ -n $pid && -r /proc/$pid/stat ]] || { echo 0; return; }
  # Fields 14 and 15 (utime, stime) after the ")" that ends the command name.
  sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}'
}

# CPU ticks of PostgreSQL: the postmaster and its backends (the pools keep their connections
# open, so a scenario's queries run in backends that live through it). Other databases of the
# same cluster (other stacks, tests) are counted too.
pg_cpu_ticks() {
  local pm pid total=0
  pm=$(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null || true)
  [[ -n $pm && -r /proc/$pm/stat ]] || { echo 0; return; }
  for pid in "$pm" $(pgrep -P "$pm" || true); do
    [[ -r /proc/$pid/stat ]] || continue
    total=$(( total + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}') ))
  done
  echo "$total"
}

LOADTEST_PARTS=("${SERVICES[@]}" postgres client)

# Sets CPU_SNAPSHOT to the CPU seconds used so far by each of LOADTEST_PARTS, space-separated;
# client = this shell's finished children (the bench client, once it has exited). Must run in
# this shell, not in $(...): `times` in a subshell counts nothing.
cpu_snapshot() {
  local hz svc file=$LOG_DIR/loadtest-times
  hz=$(getconf CLK_TCK)
  CPU_SNAPSHOT=""
  for svc in "${SERVICES[@]}"; do
    CPU_SNAPSHOT+="$(awk -v t="$(cpu_ticks "$svc")" -v hz="$hz" 'BEGIN { printf "%.3f", t / hz }') "
  done
  CPU_SNAPSHOT+="$(awk -v t="$(pg_cpu_ticks)" -v hz="$hz" 'BEGIN { printf "%.3f", t / hz }') "
  times >"$file"
  CPU_SNAPSHOT+=$(awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, p, "m"); sub("s", "", p[2]); t += p[1] * 60 + p[2] } printf "%.3f", t }' "$file")
}

# Runs one scenario: braidctl bench "$@" --json into $LOG_DIR/loadtest-<slug>.json; appends the
# run (report, CPU seconds per part, idle CPU rates, load) to ${LOADTEST_ROWS%.md}.jsonl and
# renders $LOADTEST_ROWS (target, latency, CPU share) and $LOADTEST_CPU_ROWS (CPU per answer by
# part) from every run so far: runs sharing a label (the repeats of a sweep rate) make one row
# of medians with their spread.
loadtest_scenario() { # slug, label, bench args...
  local slug=$1 name=$2; shift 2
  local before after json started ended
  cpu_snapshot; before=$CPU_SNAPSHOT
  started=$(date +%s.%N)
  json=$("$TARGET_DIR/release/braidctl" bench --json --quiet "${LOADTEST_AUTH[@]}" "$@") || die "bench $name failed"
  ended=$(date +%s.%N)
  cpu_snapshot; after=$CPU_SNAPSHOT
  echo "$json" >"$LOG_DIR/loadtest-$slug.json"
  loadtest_record "$slug" "$name" "$started" "$ended" "$before" "$after"
}

# Appends the run whose report is $LOG_DIR/loadtest-<slug>.json to ${LOADTEST_ROWS%.md}.jsonl
# and renders the rows again.
loadtest_record() { # slug, label, started, ended, CPU snapshot before, after
  local slug=$1 name=$2
  python3 - "$LOG_DIR/loadtest-$slug.json" "$slug" "$name" "$3" "$4" "$(nproc)" \
    "$(uptime | sed 's/.*load average: //')" "${LOADTEST_PARTS[*]}" "$5" "$6" \
    "${LOADTEST_IDLE:-}" "${LOADTEST_ROWS%.md}.jsonl" <<'PY'
import json, sys
path, slug, name, started, ended, cores, load, parts, before, after, idle, runs = sys.argv[1:13]
parts = parts.split()
used = {p: float(a) - float(b) for p, b, a in zip(parts, before.split(), after.split())}
idle = {p: float(r) for p, r in zip(parts, idle.split())} if idle else {}
run = {"slug": slug, "name": name, "seconds": float(ended) - float(started), "cores": int(cores),
       "load": load, "parts": parts, "used": used, "idle": idle, "report": json.load(open(path))}
with open(runs, "a") as out:
    print(json.dumps(run), file=out)
PY
  loadtest_render "${LOADTEST_ROWS%.md}.jsonl" "$LOADTEST_ROWS" "$LOADTEST_CPU_ROWS"
}

# Renders the runs of $1 (JSON lines) as the latency rows ($2) and the CPU-per-answer rows ($3).
loadtest_render() { # runs, rows, cpu rows
  python3 - "$@" <<'PY'
import json, statistics, sys
runs_path, rows_path, cpu_path = sys.argv[1:4]
runs = [json.loads(l) for l in open(runs_path) if l.strip()]
groups = {}
for r in runs:
    groups.setdefault(r["name"], []).append(r)

def spread(values, digits=1):
    """The median, with (min–max) when there is more than one value."""
    fmt = f"{{:.{digits}f}}"
    m = fmt.format(statistics.median(values))
    return m if len(values) == 1 else f"{m} ({fmt.format(min(values))}–{fmt.format(max(values))})"

def target(slug, p95, p99, error_rate, errors, degraded, window):
    # The published targets (issue 10) and the aims past them, by scenario.
    if slug in ("a", "f-ghz-500"):
        return "p95 < 1 s, errors < 0.5%, none degraded", p95 < 1000 and error_rate < 0.005 and degraded == 0
    if slug == "b":
        return "p99 < 1 s, errors < 0.5%", p99 < 1000 and error_rate < 0.005
    if slug == "d":
        return "as a, during a bulk ingest", p95 < 1000 and error_rate < 0.005 and degraded == 0
    if slug == "d-light":
        return "p99 <= 50 ms during ingest", p99 <= 50 and errors == 0
    if slug == "e-gateway":
        return "0 failed requests", errors == 0
    if slug == "e-text":
        return "degraded answers, 0 errors", errors == 0
    if slug == "e-postgres":
        return "errors only in the restart window", errors == 0 or (window is not None and window[1] - window[0] <= 20)
    return "p99 <= 100 ms, no errors", p99 <= 100 and errors == 0

rows, cpu_rows = [], []
for name, group in groups.items():
    reports = [g["report"] for g in group]
    lat = lambda k: [r["latency_ms"][k] for r in reports]
    requests = sum(r["requests"] for r in reports)
    errors = sum(r["errors"] for r in reports)
    degraded = sum(r["degraded"] for r in reports)
    p95, p99 = statistics.median(lat("p95")), statistics.median(lat("p99"))
    window = reports[0].get("error_window") if len(reports) == 1 else None
    tgt, met = target(group[0]["slug"], p95, p99, errors / requests if requests else 1.0, errors, degraded, window)
    by_code = {}
    for r in reports:
        for k, v in r["errors_by_code"].items():
            by_code[k] = by_code.get(k, 0) + v
    err = ", ".join(f"{k} {v}" for k, v in by_code.items()) or "0"
    if len(reports) == 1 and reports[0].get("error_window"):
        w = reports[0]["error_window"]
        err += f" (sent {w[0]}–{w[1] + 1} s)"
    deg = str(degraded)
    if len(reports) == 1 and degraded and reports[0].get("degraded_window"):
        w = reports[0]["degraded_window"]
        deg += f" (sent {w[0]}–{w[1] + 1} s)"
    parts = group[0]["parts"]
    # A part restarted during the scenario counts from zero again: no figure.
    def share(p):
        vals = [g["used"][p] / max(g["seconds"], 1e-9) * 100 for g in group]
        return f"{p} n/a (restarted)" if min(vals) < 0 else f"{p} {statistics.median(vals):.0f}%"
    label = name if len(group) == 1 else f"{name} (median of {len(group)})"
    rows.append(f"| {label} | {tgt} | {'yes' if met else '**no**'} | {requests} | {spread([r['qps'] for r in reports], 0)} "
                f"| {spread(lat('p50'))} | {spread(lat('p95'))} | {spread(lat('p99'))} | {spread(lat('p99_9'))} "
                f"| {max(lat('max')):.0f} | {err} | {deg} | {', '.join(share(p) for p in parts)} "
                f"| {group[-1]['load']} |")
    # CPU per answer: CPU over the whole run (warm-up, window and tail) over every answer of the
    # run (braidctl's answered_whole_run), less each part's idle rate over the run's length.
    per_run = []
    for g in group:
        answers = g["report"].get("answered_whole_run") or 0
        if answers <= 0 or min(g["used"].values()) < 0:
            continue
        above = {p: (g["used"][p] - g["idle"].get(p, 0.0) * g["seconds"]) * 1000 / answers for p in parts}
        raw = sum(g["used"][p] for p in parts if p != "client") * 1000 / answers
        per_run.append((above, raw))
    if not per_run:
        continue
    cells = " | ".join(spread([a[p] for a, _ in per_run], 2) for p in parts if p != "client")
    totals = [sum(v for p, v in a.items() if p != "client") for a, _ in per_run]
    cores = group[0]["cores"]
    ceiling = [cores * 1000 / t if t > 0 else float("inf") for t in totals]
    client = spread([a["client"] for a, _ in per_run], 2) if "client" in parts else "–"
    cpu_rows.append(f"| {label} | {cells} | **{spread(totals, 2)}** | {spread([r for _, r in per_run], 2)} "
                    f"| {spread(ceiling, 0)} | {client} |")
open(rows_path, "w").write("\n".join(rows) + ("\n" if rows else ""))
open(cpu_path, "w").write("\n".join(cpu_rows) + ("\n" if cpu_rows else ""))
PY
}

# The idle CPU rate (seconds per second) of each part of LOADTEST_PARTS, over
# ${LOADTEST_IDLE_SECONDS:-10} s with no load: background work (pollers, probes, the outbox,
# PostgreSQL's own processes) that the scenarios' CPU per answer leaves out. Sets LOADTEST_IDLE.
loadtest_idle() {
  local secs=${LOADTEST_IDLE_SECONDS:-10} before started
  cpu_snapshot; before=$CPU_SNAPSHOT
  started=$(date +%s.%N)
  sleep "$secs"
  cpu_snapshot
  LOADTEST_IDLE=$(python3 -c '
import sys
b, a, t = sys.argv[1].split(), sys.argv[2].split(), float(sys.argv[3])
print(" ".join("%.4f" % max((float(y) - float(x)) / t, 0.0) for x, y in zip(b, a)))' \
    "$before" "$CPU_SNAPSHOT" "$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { print e - s }')")
  # The client (braidctl bench) does not run while idle.
  LOADTEST_IDLE="${LOADTEST_IDLE% *} 0"
  say "idle CPU per part (s/s): ${LOADTEST_PARTS[*]} = $LOADTEST_IDLE"
}

# The load's callers: ${LOADTEST_CALLERS:-32} reader tokens of the default tenant (subjects
# loadtest-1..n) in $LOG_DIR/loadtest-tokens, so no per-caller budget is the limit measured
# (the search budget per caller is 200 tokens/s; an uncached search costs 2). Sets
# LOADTEST_AUTH to the bench arguments that send them. Their lifetime: LOADTEST_TOKEN_TTL (2h).
loadtest_tokens() {
  local n=${LOADTEST_CALLERS:-32} i file=$LOG_DIR/loadtest-tokens
  : >"$file"
  for i in $(seq 1 "$n"); do
    "$TARGET_DIR/release/braidctl" --tenant default token mint --sub "loadtest-$i" --role reader --ttl "${LOADTEST_TOKEN_TTL:-2h}" >>"$file" \
      || die "could not mint the load's tokens (set LOADTEST_CALLERS=0 and BRAID_TOKEN to use one token)"
  done
  LOADTEST_AUTH=(--token-file "$file")
}
LOADTEST_AUTH=()

# Replaces the <!-- bench:$2 --> block of BENCHMARKS.md with file $3 (or appends it under
# heading $1).
write_bench_section() { # heading, marker, file
  python3 - "$ROOT/BENCHMARKS.md" "$1" "$2" "$3" <<'PY'
import pathlib, sys
path, heading, marker, section = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], pathlib.Path(sys.argv[4]).read_text()
text = path.read_text() if path.exists() else "# Benchmarks\n"
start, end = f"<!-- bench:{marker} -->", f"<!-- /bench:{marker} -->"
block = f"{start}\n{section}{end}"
if start in text and end in text:
    head, rest = text.split(start, 1)
    text = head + block + rest.split(end, 1)[1]
else:
    text = text.rstrip("\n") + f"\n\n## {heading}\n\n" + block + "\n"
path.write_text(text)
PY
  python3 "$ROOT/deploy/scripts/check_docs.py" --wrap "$ROOT/BENCHMARKS.md"
}

# Starts the `make run` stack in the background unless one answers already; ingests SciFact
# when it holds fewer than 1,000 chunks. $2: the embedding cache (on/off) of a stack started here.
loadtest_stack() { # embedding cache: on|off
  local ctl=$TARGET_DIR/release/braidctl dataset=$1 cache=$2
  if [[ -x $ctl ]] && "$ctl" health --quiet >/dev/null 2>&1; then
    say "reusing the running stack (its embedding cache settings apply)"
  else
    # Build first, in the foreground: the wait for health below must not include a build.
    say "building release binaries"
    (cd "$ROOT" && cargo build --release --locked --bins) || die "cargo build failed"
    say "starting the stack in the background (embedding cache $cache; log $LOG_DIR/loadtest-stack.log)"
    # The `make run` defaults: the load runs as many callers (loadtest_tokens), so no
    # per-caller budget needs lifting.
    BRAID_EMBEDDING_CACHE=$cache "$0" run >"$LOG_DIR/loadtest-stack.log" 2>&1 &
    # Global: the EXIT trap runs after this function's locals are gone.
    LOADTEST_STACK_PID=$!
    trap 'kill -TERM "$LOADTEST_STACK_PID" 2>/dev/null; wait "$LOADTEST_STACK_PID" 2>/dev/null' EXIT
    local started=""
    for _ in $(seq 1 300); do
      "$ctl" health --quiet >/dev/null 2>&1 && { started=1; break; }
      kill -0 "$LOADTEST_STACK_PID" 2>/dev/null || { tail -n 30 "$LOG_DIR/loadtest-stack.log" >&2; die "the stack did not start"; }
      sleep 1
    done
    [[ -n $started ]] || { tail -n 30 "$LOG_DIR/loadtest-stack.log" >&2; die "the stack was not healthy within 300 s"; }
  fi
  local chunks
  chunks=$("$ctl" stats | awk '/^chunks:/ {print $2}')
  if [[ ${chunks:-0} -lt 1000 ]]; then
    say "ingesting SciFact ($dataset/corpus.jsonl; takes minutes)"
    "$ctl" ingest "$dataset/corpus.jsonl" --wait || die "ingest failed"
  fi
  # Auth is on: the load runs as ${LOADTEST_CALLERS:-32} readers of the default tenant (dev
  # tokens, 2 h); with LOADTEST_CALLERS=0, as the one caller of BRAID_TOKEN.
  if [[ ${LOADTEST_CALLERS:-32} -gt 0 ]]; then
    loadtest_tokens
  else
    [[ -n ${BRAID_TOKEN:-} ]] || BRAID_TOKEN=$("$ctl" --tenant default token mint --sub loadtest --role reader --ttl 2h) \
      || die "could not mint a dev token (set BRAID_TOKEN)"
    export BRAID_TOKEN
  fi
  loadtest_idle
}

# A writer token for tenant $1 (the load's own token is a reader of the default tenant, which
# may not ingest: a bulk ingest run with it is refused).
writer_token() { # tenant
  "$TARGET_DIR/release/braidctl" --tenant "$1" token mint --sub loadtest-ingest --role writer --ttl 2h \
    || die "could not mint a writer token for tenant $1"
}

# Rate sweep: runs each rate ${LOADTEST_REPEATS:-3} times (`<prefix>-<rate>-r<k>`, one row of
# medians) until one misses p99 <= 100 ms (median of its runs) or has an error, then bisects
# between the last rate that met it and the first that did not, to within 10 req/s (or 10%);
# sets LOADTEST_BEST to the highest rate that met it (0: none).
loadtest_sweep() { # slug prefix, label, bench args...
  local prefix=$1 label=$2; shift 2
  local rate failed=0
  LOADTEST_BEST=0
  for rate in 25 50 100 150 200 250 300 400 500 600; do
    if loadtest_sweep_step "$prefix" "$label" "$rate" "$@"; then LOADTEST_BEST=$rate; else failed=$rate; break; fi
  done
  [[ $failed -gt 0 ]] || return 0
  while (( failed - LOADTEST_BEST > 10 && (failed - LOADTEST_BEST) * 10 > LOADTEST_BEST )); do
    rate=$(( (LOADTEST_BEST + failed) / 2 / 5 * 5 ))
    (( rate > LOADTEST_BEST )) || break
    if loadtest_sweep_step "$prefix" "$label" "$rate" "$@"; then LOADTEST_BEST=$rate; else failed=$rate; fi
  done
}

# One sweep step at $3 req/s, ${LOADTEST_REPEATS:-3} runs; succeeds when the median p99 of its
# runs is <= 100 ms and none had an error.
loadtest_sweep_step() { # slug prefix, label, rate, bench args...
  local prefix=$1 label=$2 rate=$3; shift 3
  local k files=()
  for k in $(seq 1 "${LOADTEST_REPEATS:-3}"); do
    loadtest_scenario "$prefix-$rate-r$k" "$label ${rate} req/s" "$@" --rate "$rate"
    files+=("$LOG_DIR/loadtest-$prefix-$rate-r$k.json")
  done
  python3 -c '
import json, statistics, sys
rs = [json.load(open(f)) for f in sys.argv[1:]]
ok = sum(r["errors"] for r in rs) == 0 and statistics.median(r["latency_ms"]["p99"] for r in rs) <= 100
sys.exit(0 if ok else 1)' "${files[@]}"
}

# ghz (github.com/bojand/ghz), an outside gRPC load generator, built once from the Go module
# proxy into $BRAID_HOME/tools/bin. Sets GHZ (empty when Go is missing or the build fails).
GHZ_VERSION=v0.120.0
ensure_ghz() {
  GHZ=$BRAID_HOME/tools/bin/ghz
  [[ -x $GHZ ]] && return 0
  GHZ=""
  command -v go >/dev/null || { say "Go not found: no outside-client comparison (ghz)"; return 1; }
  say "building ghz $GHZ_VERSION from the Go module proxy (once) for the outside-client comparison"
  mkdir -p "$BRAID_HOME/tools/bin"
  GOBIN=$BRAID_HOME/tools/bin GOFLAGS=-mod=mod go install "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION" \
    >"$LOG_DIR/ghz-build.log" 2>&1 || { say "could not build ghz (log $LOG_DIR/ghz-build.log)"; return 1; }
  GHZ=$BRAID_HOME/tools/bin/ghz
}

# One run of ghz against the gateway (server reflection, no proto file): every SciFact query as
# its own request body (round robin), the load's caller tokens as metadata (round robin), query
# cache bypassed. Its JSON is turned into braidctl's report shape (errors by gRPC code; ghz has
# no warm-up, so every answer of the run counts) and recorded like a braidctl run.
loadtest_ghz() { # slug, label, ghz args...
  local slug=$1 name=$2; shift 2
  local before after started ended raw=$LOG_DIR/loadtest-$slug.ghz.json
  cpu_snapshot; before=$CPU_SNAPSHOT
  started=$(date +%s.%N)
  "$GHZ" --insecure --call braid.v1.Gateway/Search --data-file "$LOG_DIR/loadtest-ghz-data.json" \
    --metadata-file "$LOG_DIR/loadtest-ghz-metadata.json" --timeout 10s --format json \
    --output "$raw" --skipFirst 0 "$@" 127.0.0.1:50051 >/dev/null 2>"$LOG_DIR/loadtest-$slug.ghz.log" \
    || { say "ghz $name failed (log $LOG_DIR/loadtest-$slug.ghz.log): no row for it"; return 0; }
  ended=$(date +%s.%N)
  cpu_snapshot; after=$CPU_SNAPSHOT
  python3 - "$raw" "$LOG_DIR/loadtest-$slug.json" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))
ms = lambda ns: round(ns / 1e6, 1)
dist = {int(d["percentage"]): d["latency"] for d in g.get("latencyDistribution") or []}
codes = g.get("statusCodeDistribution") or {}
ok = codes.get("OK", 0)
errors = {k.upper(): v for k, v in codes.items() if k != "OK"}
# A closed-loop run (-z) ends by closing its connections under the requests still in flight
# (one per concurrent worker): ghz reports them Unavailable "use of closed network connection".
# The client cut them, the server did not fail them: not counted as errors.
cut = sum(v for k, v in (g.get("errorDistribution") or {}).items() if "use of closed network connection" in k)
if cut:
    errors["UNAVAILABLE"] = errors.get("UNAVAILABLE", 0) - cut
    errors = {k: v for k, v in errors.items() if v > 0}
requests = g["count"]
secs = g["total"] / 1e9
report = {
    "requests": requests, "answered": ok, "qps": round(ok / secs, 1) if secs else 0.0,
    "latency_ms": {"p50": ms(dist.get(50, 0)), "p95": ms(dist.get(95, 0)), "p99": ms(dist.get(99, 0)),
                   # ghz reports up to p99; its slowest request stands in for p99.9.
                   "p99_9": ms(g.get("slowest", 0)), "max": ms(g.get("slowest", 0))},
    "errors": sum(errors.values()), "errors_by_code": errors, "degraded": 0,
    "error_window": None, "degraded_window": None, "answered_whole_run": ok,
    "whole_run_seconds": round(secs, 3), "cut_by_the_client_at_the_end": cut,
}
json.dump(report, open(sys.argv[2], "w"))
PY
  loadtest_record "$slug" "$name" "$started" "$ended" "$before" "$after"
}

# The outside-client comparison: ghz at the best uncached rate braidctl found ($1; ghz paces
# with --rps but measures from the actual send, so a stalled request does not charge the
# ones queued behind it) and closed loop with 500 concurrent requests, next to braidctl's rows.
loadtest_outside() { # best uncached rate, seconds, dataset
  local best=$1 secs=$2 dataset=$3
  ensure_ghz || return 0
  python3 - "$dataset/queries.jsonl" "$LOG_DIR/loadtest-tokens" "$LOG_DIR/loadtest-ghz-data.json" \
    "$LOG_DIR/loadtest-ghz-metadata.json" "${BRAID_TOKEN:-}" <<'PY'
import json, sys
queries = [json.loads(l)["text"] for l in open(sys.argv[1]) if l.strip()]
json.dump([{"query": q, "top_k": 10, "mode": "SEARCH_MODE_HYBRID", "bypass_cache": True} for q in queries],
          open(sys.argv[3], "w"))
try:
    tokens = [l.strip() for l in open(sys.argv[2]) if l.strip()]
except OSError:
    tokens = []
tokens = tokens or ([sys.argv[5]] if sys.argv[5] else [])
# ghz takes one metadata object (an array fails at its first call: "cannot unmarshal array"),
# executed per call as a Go template with sprig's functions: request n gets token n mod N.
if len(tokens) > 1:
    pick = "{{ index (list %s) (mod .RequestNumber %d) }}" % (" ".join(json.dumps(t) for t in tokens), len(tokens))
    open(sys.argv[4], "w").write('{"authorization": "Bearer %s"}' % pick)
else:
    json.dump({"authorization": f"Bearer {tokens[0]}"} if tokens else {}, open(sys.argv[4], "w"))
PY
  if (( best > 0 )); then
    say "(f) outside client: ghz at $best req/s"
    local k
    for k in $(seq 1 "${LOADTEST_REPEATS:-3}"); do
      loadtest_ghz "f-ghz-$best-r$k" "f: ghz $best req/s" --rps "$best" --concurrency 200 --connections 32 -z "${secs}s"
    done
  fi
  say "(f) outside client: ghz, 500 concurrent requests"
  loadtest_ghz f-ghz-500 "f: ghz 500 concurrent" --concurrency 500 --connections 32 -z "${secs}s"
}

run_loadtest() {
  setup
  eval "$(print_env)"
  local secs=${LOADTEST_SECONDS:-60}
  local dataset=${BRAID_EVAL_DIR:-$ROOT/../shared/eval}/scifact
  [[ -f $dataset/corpus.jsonl ]] || die "SciFact not found at $dataset (set BRAID_EVAL_DIR to the eval directory)"
  mkdir -p "$LOG_DIR"
  if [[ ${LOADTEST_SCALE:-0} == 1 ]]; then run_loadtest_scale "$dataset"; return; fi
  local ctl=$TARGET_DIR/release/braidctl
  loadtest_stack "$dataset" off
  LOADTEST_ROWS=$LOG_DIR/loadtest-rows.md LOADTEST_CPU_ROWS=$LOG_DIR/loadtest-cpu-rows.md
  : >"$LOADTEST_ROWS"; : >"$LOADTEST_CPU_ROWS"; : >"${LOADTEST_ROWS%.md}.jsonl"
  # Uncached figures: the query cache is bypassed (the embedding cache is off in this stack).
  local q=(--queries "$dataset/queries.jsonl" --warmup 5s --duration "${secs}s" --timeout 10s --bypass-cache)
  say "(a) 500 concurrent clients for ${secs} s"
  loadtest_scenario a "a: 500 clients" "${q[@]}" --clients 500
  say "(b) 100 req/s open loop for ${secs} s"
  loadtest_scenario b "b: 100 req/s" "${q[@]}" --rate 100
  local sweep_secs=$(( secs / 3 > 10 ? secs / 3 : 10 )) best cached_best
  say "(c) rate sweep, uncached: highest hybrid rate with p99 <= 100 ms"
  loadtest_sweep c "c: uncached" --queries "$dataset/queries.jsonl" --warmup 3s \
    --duration "${sweep_secs}s" --timeout 10s --bypass-cache
  best=$LOADTEST_BEST
  # Cached: the query cache on, 100 queries cycling, so after the warm-up every answer is a
  # cache hit (the cache keeps answers ${BRAID_GATEWAY__QUERY_CACHE__TTL_SECS:-60} s).
  say "(c) rate sweep, cached: the query cache on, 100 queries cycling"
  head -n 100 "$dataset/queries.jsonl" >"$LOG_DIR/loadtest-cached-queries.jsonl"
  loadtest_sweep cc "c: cached" --queries "$LOG_DIR/loadtest-cached-queries.jsonl" \
    --warmup 3s --duration "${sweep_secs}s" --timeout 10s
  cached_best=$LOADTEST_BEST
  loadtest_outside "$best" "$sweep_secs" "$dataset"
  say "(d) 500 concurrent clients during a bulk ingest"
  local ingest_dir=$LOG_DIR/loadtest-ingest
  mkdir -p "$ingest_dir"
  # The whole corpus again under other ids (and a fresh run prefix, so a re-run is not a no-op
  # of unchanged documents): real indexing work for every document.
  sed "s/\"_id\": *\"/\"_id\": \"reingest-$(date +%s)-/" "$dataset/corpus.jsonl" >"$ingest_dir/corpus.jsonl"
  local ingest_token
  ingest_token=$(writer_token loadtest)
  # --wait: the client lives until every document is READY, so it running means the work runs.
  BRAID_TENANT=loadtest BRAID_TOKEN=$ingest_token "$ctl" ingest "$ingest_dir/corpus.jsonl" --wait >"$LOG_DIR/loadtest-ingest.log" 2>&1 &
  local ingest_pid=$!
  loadtest_scenario d "d: 500 clients + ingest" "${q[@]}" --clients 500
  # The ingest must have run for the whole scenario: one that ended early (refused, failed,
  # done) would make (d) a copy of (a).
  kill -0 "$ingest_pid" 2>/dev/null \
    || die "the bulk ingest of (d) ended before the scenario did (log $LOG_DIR/loadtest-ingest.log)"
  say "(d) 20 req/s during the same bulk ingest"
  loadtest_scenario d-light "d: 20 req/s + ingest" "${q[@]}" --rate 20
  kill -0 "$ingest_pid" 2>/dev/null \
    || die "the bulk ingest of (d) ended before the 20 req/s scenario did (log $LOG_DIR/loadtest-ingest.log)"
  kill -TERM "$ingest_pid" 2>/dev/null || true
  wait "$ingest_pid" 2>/dev/null || true
  loadtest_write_section "$secs" "$sweep_secs" "$best" "$cached_best"
  loadtest_restarts "$dataset"
}

# Writes the load section of BENCHMARKS.md from $LOADTEST_ROWS and $LOADTEST_CPU_ROWS.
loadtest_write_section() { # scenario seconds, sweep step seconds, best uncached, best cached
  local secs=$1 sweep_secs=$2 best=$3 cached_best=$4
  local section=$LOG_DIR/loadtest-section.md
  {
    echo "Hybrid search through the gateway, \`braidctl bench\` on the same machine, SciFact queries"
    echo "cycling, top_k 10, ${secs} s per scenario after a 5 s warm-up (sweep steps ${sweep_secs} s after 3 s;"
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(git -C "$ROOT" rev-parse --short HEAD)). Latency in ms."
    echo "Uncached: query cache bypassed, embedding cache off. Cached: query cache on, 100 queries"
    echo "cycling (every answer after the warm-up is a hit). Open-loop latency counts from each"
    echo "request's intended send time. CPU = share of one core per part over the scenario (warm-up"
    echo "included), from /proc/<pid>/stat; postgres = the postmaster and its backends; client ="
    echo "\`braidctl bench\` itself; load = uptime load averages when the scenario ended (other work"
    echo "on the machine shows there). The load runs as ${LOADTEST_CALLERS:-32} callers (reader tokens, requests"
    echo "rotating over them) of one tenant on the \`make run\` defaults, so no per-caller budget is"
    echo "what is measured. Each sweep rate runs ${LOADTEST_REPEATS:-3} times: its row shows the median (min–max) of"
    echo "the runs, and the rate passes when the median p99 is <= 100 ms and no run had an error."
    echo "(f) rows: the same load from an outside client, ghz $GHZ_VERSION (server reflection, every SciFact"
    echo "query as its own body, the same tokens, query cache bypassed; no warm-up; latency from the"
    echo "actual send, so its open-loop p99 can be lower than braidctl's, which counts from the intended"
    echo "send time). Restarts under load: the next section."
    echo
    echo "Highest swept rate with p99 <= 100 ms and no errors: **${best} req/s uncached**, **${cached_best} req/s"
    echo "cached** (published aim: >= 300 req/s uncached)."
    echo
    echo "| scenario | published target | met | requests | QPS | p50 | p95 | p99 | p99.9 | max | errors | degraded | CPU | load |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    cat "$LOADTEST_ROWS"
    echo
    echo "Where the time goes: CPU milliseconds per answer by part (embedding = the query embedding,"
    echo "text-search = BM25, vector-search + postgres = HNSW through pgvector and the audit"
    echo "records, gateway = auth, fan-out, fusion and gRPC). Each part's CPU over the whole run"
    echo "(warm-up, measured window and the requests finishing after it), less its idle rate over"
    echo "the run's length (measured for ${LOADTEST_IDLE_SECONDS:-10} s before the scenarios: $(printf '%s ' "${LOADTEST_PARTS[@]}")="
    echo "$LOADTEST_IDLE s/s), divided by every answer of the run. \"raw\" keeps the idle work in;"
    echo "the ceiling is the rate these $(nproc) cores could serve if CPU were the only bound (cores x 1000 /"
    echo "total). The load generator's own CPU is shown apart and is in no total."
    echo
    local servers=("${LOADTEST_PARTS[@]:0:${#LOADTEST_PARTS[@]}-1}")
    echo "| scenario | $(printf '%s | ' "${servers[@]}")total | total raw | CPU-bound ceiling (req/s) | client (load generator) |"
    echo "| --- | $(printf -- '--- | %.0s' "${servers[@]}")--- | --- | --- | --- |"
    cat "$LOADTEST_CPU_ROWS"
  } >"$section"
  write_bench_section 'Load (`make loadtest`)' load "$section"
  cat "$section"
  say "wrote the load section of BENCHMARKS.md"
}

# `make loadtest-restarts`: only the restart scenarios (e) of `make loadtest`.
run_loadtest_restarts() {
  setup
  eval "$(print_env)"
  local dataset=${BRAID_EVAL_DIR:-$ROOT/../shared/eval}/scifact
  [[ -f $dataset/queries.jsonl ]] || die "SciFact not found at $dataset (set BRAID_EVAL_DIR to the eval directory)"
  mkdir -p "$LOG_DIR"
  loadtest_stack "$dataset" off
  loadtest_restarts "$dataset"
}

# Waits (at most LOADTEST_SETTLE_SECONDS, 1800) until no indexing job has run for 15 s: (d)'s
# bulk ingest stops its client when (d) ends, but the documents it sent stay queued and would
# share the CPU with the scenarios that follow. (Jobs waiting out a retry backoff do not run, so
# they do not hold this up.)
loadtest_settle() {
  local ctl=$TARGET_DIR/release/braidctl running quiet=0 waited=0 limit=${LOADTEST_SETTLE_SECONDS:-1800}
  while (( quiet < 3 )); do
    running=$("$ctl" jobs list --state running | grep -c RUNNING || true)
    if [[ $running -eq 0 ]]; then quiet=$(( quiet + 1 )); else quiet=0; fi
    (( waited < limit )) || die "indexing jobs still running after ${limit} s"
    (( waited % 60 == 0 && quiet == 0 )) && say "waiting for the ingest queue to settle ($("$ctl" stats | awk '/^queue depth:/ {print $3}') jobs queued)"
    sleep 5; waited=$(( waited + 5 ))
  done
  say "no indexing job running (waited ${waited} s)"
}

# (e) Restarts under load (issue 10 item 7), ${LOADTEST_RESTART_RATE:-40} req/s uncached, the
# restart 10 s into a 30 s measured window: one of two gateways stopped with SIGTERM (the load
# spread over both; clients move to the other), text-search stopped with SIGTERM and restarted by
# the stack's supervisor, and PostgreSQL restarted (`pg_ctl restart -m fast`; skipped with
# LOADTEST_PG_RESTART=0, e.g. when tests share the cluster). Writes the "Restarts under load"
# section of BENCHMARKS.md.
loadtest_restarts() { # dataset
  local dataset=$1 rate=${LOADTEST_RESTART_RATE:-40} ctl=$TARGET_DIR/release/braidctl
  loadtest_settle
  LOADTEST_ROWS=$LOG_DIR/loadtest-restart-rows.md LOADTEST_CPU_ROWS=$LOG_DIR/loadtest-restart-cpu-rows.md
  : >"$LOADTEST_ROWS"; : >"$LOADTEST_CPU_ROWS"; : >"${LOADTEST_ROWS%.md}.jsonl"
  local r=(--queries "$dataset/queries.jsonl" --warmup 3s --duration 30s --timeout 10s --bypass-cache --rate "$rate")
  local at=13 gw2 started
  LOADTEST_RESTART_NOTES=""
  say "(e) restarts under load: one of two gateways stopped (SIGTERM)"
  # A second gateway in front of the same services (the gateway keeps no state of its own).
  (
    ensure_secrets >/dev/null
    export_stack_auth
    export BRAID_GATEWAY__SERVER__GRPC_ADDR=127.0.0.1:50061 BRAID_GATEWAY__SERVER__ADMIN_ADDR=127.0.0.1:9111
    exec "$TARGET_DIR/release/braid-gateway"
  ) >>"$LOG_DIR/gateway-2.log" 2>&1 &
  gw2=$!
  started=""
  for _ in $(seq 1 60); do
    "$ctl" health --service gateway --addr 127.0.0.1:50061 --quiet >/dev/null 2>&1 && { started=1; break; }
    sleep 1
  done
  [[ -n $started ]] || { kill -TERM "$gw2" 2>/dev/null; die "the second gateway did not start (log $LOG_DIR/gateway-2.log)"; }
  ( sleep "$at"; kill -TERM "$gw2" 2>/dev/null ) &
  loadtest_scenario e-gateway "e: 1 of 2 gateways stopped" "${r[@]}" \
    --gateway http://127.0.0.1:50051 --gateway http://127.0.0.1:50061
  wait "$gw2" 2>/dev/null || true

  local pid
  pid=$(cat "$LOG_DIR/text-search.pid" 2>/dev/null || true)
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    say "(e) restarts under load: text-search stopped (SIGTERM) and restarted by the supervisor"
    ( sleep "$at"; kill -TERM "$pid" 2>/dev/null ) &
    loadtest_scenario e-text "e: text-search restarted" "${r[@]}"
    "$ctl" health --quiet >/dev/null 2>&1 || sleep 5
  else
    say "(e) skipping the text-search restart: the stack was not started by make run/loadtest (no supervisor)"
  fi

  if [[ ${LOADTEST_PG_RESTART:-1} == 1 ]]; then
    say "(e) restarts under load: PostgreSQL restarted (pg_ctl restart -m fast)"
    local t0 log=$LOG_DIR/loadtest-pg-restart.log
    t0=$(date +%s.%N)
    ( sleep "$at"; a=$(date +%s.%N); as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -m fast -w -t 60 restart >/dev/null 2>&1; b=$(date +%s.%N)
      echo "$a $b" >"$log" ) &
    local restarter=$!
    loadtest_scenario e-postgres "e: PostgreSQL restarted" "${r[@]}"
    wait "$restarter" 2>/dev/null || true
    # The restart's window in seconds of the measured window (which starts 3 s after t0).
    LOADTEST_RESTART_NOTES=$(awk -v t0="$t0" '{ printf "PostgreSQL was down (pg_ctl restart) from %.1f s to %.1f s of the measured window.", $1 - t0 - 3, $2 - t0 - 3 }' "$log" 2>/dev/null || true)
  else
    LOADTEST_RESTART_NOTES="PostgreSQL restart skipped (LOADTEST_PG_RESTART=0)."
  fi
  local section=$LOG_DIR/loadtest-restarts-section.md
  {
    echo "Hybrid search through the gateway, \`braidctl bench\` on the same machine, SciFact queries"
    echo "cycling, ${rate} req/s open loop, uncached (query cache bypassed, embedding cache off), 30 s measured"
    echo "after a 3 s warm-up; each restart starts 10 s into the measured window ($(date -u '+%Y-%m-%d %H:%M UTC'),"
    echo "$(nproc) cores, $(git -C "$ROOT" rev-parse --short HEAD)). Gateways: the stack's and a second one"
    echo "started for the scenario on port 50061, the load spread over both; the second is stopped"
    echo "(SIGTERM: health NOT_SERVING, in-flight calls finish) and the client moves to the other."
    echo "text-search: stopped with SIGTERM, restarted by the stack's supervisor. PostgreSQL:"
    echo "\`pg_ctl restart -m fast\` under the running services. \"sent a–b s\" = the seconds of the measured"
    echo "window in which the failed or degraded requests were sent. $LOADTEST_RESTART_NOTES"
    echo "CPU of the second gateway is not counted."
    echo
    echo "| scenario | target | met | requests | QPS | p50 | p95 | p99 | p99.9 | max | errors | degraded | CPU | load |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    cat "$LOADTEST_ROWS"
  } >"$section"
  write_bench_section 'Restarts under load (`make loadtest`, `make loadtest-restarts`)' load-restarts "$section"
  cat "$section"
  say "wrote the restarts section of BENCHMARKS.md"
}

# Resident memory per service (VmRSS, MiB) and PostgreSQL's proportional share (Pss of the
# postmaster and its backends, so shared buffers count once), as "part MiB, ...".
memory_report() {
  local svc pid out="" pm kb
  for svc in "${SERVICES[@]}"; do
    pid=$(service_pid "$svc")
    kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    out+="$svc $(( ${kb:-0} / 1024 )) MiB, "
  done
  pm=$(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null || true)
  kb=0
  if [[ -n $pm ]]; then
    for pid in "$pm" $(pgrep -P "$pm" || true); do
      kb=$(( kb + $(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0) ))
    done
  fi
  echo "${out}postgres $(( kb / 1024 )) MiB (Pss)"
}

# Embedding cache hits so far (both layers), from the embedding service's metrics.
embedding_cache_hits() {
  python3 - <<'PY'
import re, urllib.request
try:
    text = urllib.request.urlopen("http://127.0.0.1:9103/metrics", timeout=5).read().decode()
except OSError:
    print(0)
else:
    print(int(sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                  if re.match(r"\w*embedding_cache_lookups_total\{", l) and 'result="hit"' in l)))
PY
}

# LOADTEST_SCALE=1 make loadtest: >= 100,000 chunks. SciFact (12,205 chunks) under the default
# tenant and LOADTEST_SCALE_TENANTS (8) more, ingested with the embedding cache on (a repeated
# text is embedded once); the ingest time per tenant, an HNSW index built from scratch over every
# vector, memory per service, and hybrid latency before (one tenant: the tenant filter keeps every
# row) and after (the default tenant holds 1/9 of the rows: pgvector's iterative scan).
run_loadtest_scale() { # dataset
  local dataset=$1 ctl=$TARGET_DIR/release/braidctl secs=${LOADTEST_SECONDS:-60}
  local tenants=${LOADTEST_SCALE_TENANTS:-8} psql=("$PG_BIN/psql" "$BRAID_VECTOR_SEARCH__DATABASE__URL" -tAq)
  loadtest_stack "$dataset" on
  LOADTEST_ROWS=$LOG_DIR/loadtest-scale-rows.md LOADTEST_CPU_ROWS=$LOG_DIR/loadtest-scale-cpu-rows.md
  : >"$LOADTEST_ROWS"; : >"$LOADTEST_CPU_ROWS"; : >"${LOADTEST_ROWS%.md}.jsonl"
  local q=(--queries "$dataset/queries.jsonl" --warmup 5s --duration "${secs}s" --timeout 10s --bypass-cache --clients 10)
  local base_chunks chunks
  base_chunks=$("${psql[@]}" -c "SELECT count(*) FROM vectors.chunks")
  say "hybrid latency at $base_chunks chunks"
  loadtest_scenario s-base "$base_chunks chunks, 10 clients" "${q[@]}"
  local ingest_rows=$LOG_DIR/loadtest-scale-ingest.md i t start hits_before hits_after
  : >"$ingest_rows"
  hits_before=$(embedding_cache_hits)
  for i in $(seq 1 "$tenants"); do
    t=scale-$i
    say "ingesting SciFact as tenant $t ($i of $tenants)"
    start=$(date +%s.%N)
    BRAID_TENANT=$t BRAID_TOKEN=$(writer_token "$t") "$ctl" ingest "$dataset/corpus.jsonl" --wait >"$LOG_DIR/loadtest-scale-$t.log" 2>&1 \
      || die "ingest of tenant $t failed (log $LOG_DIR/loadtest-scale-$t.log)"
    chunks=$("${psql[@]}" -c "SELECT count(*) FROM vectors.chunks")
    awk -v s="$start" -v e="$(date +%s.%N)" -v t="$t" -v c="$chunks" -v l="$(uptime | sed 's/.*load average: //')" \
      'BEGIN { printf "| %s | %.0f | %d | %s |\n", t, e - s, c, l }' >>"$ingest_rows"
  done
  hits_after=$(embedding_cache_hits)
  say "building an HNSW index over all $chunks vectors from scratch (timed, then dropped)"
  local hnsw_start hnsw_secs
  hnsw_start=$(date +%s.%N)
  "${psql[@]}" -c "SET maintenance_work_mem = '256MB'" \
    -c "CREATE INDEX loadtest_hnsw_build ON vectors.chunks USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)" \
    || die "HNSW build failed"
  hnsw_secs=$(awk -v s="$hnsw_start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.0f", e - s }')
  "${psql[@]}" -c "DROP INDEX vectors.loadtest_hnsw_build" || die "could not drop vectors.loadtest_hnsw_build"
  say "hybrid latency at $chunks chunks"
  loadtest_scenario s-scaled "$chunks chunks (default tenant: 1/$(( tenants + 1 )) of them), 10 clients" "${q[@]}"
  local memory
  memory=$(memory_report)
  local section=$LOG_DIR/loadtest-scale-section.md
  {
    echo "\`LOADTEST_SCALE=1 make loadtest\` ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores,"
    echo "$(git -C "$ROOT" rev-parse --short HEAD), release): SciFact under the default tenant and $tenants more"
    echo "(scale-1 .. scale-$tenants), embedding cache on for the ingest ($(( hits_after - hits_before )) cache hits"
    echo "during it). Load average (last column) shows other work on the shared machine."
    echo
    echo "| tenant ingested | seconds (--wait, READY) | chunks in total after | load |"
    echo "| --- | --- | --- | --- |"
    cat "$ingest_rows"
    echo
    echo "HNSW index (m 16, ef_construction 64, maintenance_work_mem 256 MB) built from scratch over"
    echo "all $chunks vectors: **${hnsw_secs} s**. Memory after the run: $memory."
    echo
    echo "Hybrid search, 10 closed-loop clients, ${secs} s, query cache bypassed (the query embedding"
    echo "is cached after the first pass over the queries: this measures the legs). Every search is"
    echo "scoped to the caller's tenant inside both legs: before the other tenants exist the tenant"
    echo "filter keeps every row; after, the default tenant holds 1/$(( tenants + 1 )) of the vectors and pgvector's"
    echo "iterative HNSW scan fills top_k from them."
    echo
    echo "| scenario | published target | met | requests | QPS | p50 | p95 | p99 | p99.9 | max | errors | degraded | CPU | load |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    cat "$LOADTEST_ROWS"
  } >"$section"
  write_bench_section 'Scale (`LOADTEST_SCALE=1 make loadtest`)' load-scale "$section"
  cat "$section"
  say "wrote the scale section of BENCHMARKS.md"
}
