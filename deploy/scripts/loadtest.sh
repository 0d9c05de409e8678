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

# Runs one scenario: braidctl bench "$@" --json into $LOG_DIR/loadtest-<slug>.json; appends its
# row (target, CPU per part, load average) to $LOADTEST_ROWS and its CPU per answered query by
# part to $LOADTEST_CPU_ROWS.
loadtest_scenario() { # slug, label, bench args...
  local slug=$1 name=$2; shift 2
  local before after json
  cpu_snapshot; before=$CPU_SNAPSHOT
  local started=$SECONDS
  json=$("$TARGET_DIR/release/braidctl" bench --json --quiet "$@") || die "bench $name failed"
  local secs=$(( SECONDS - started ))
  cpu_snapshot; after=$CPU_SNAPSHOT
  echo "$json" >"$LOG_DIR/loadtest-$slug.json"
  python3 - "$LOG_DIR/loadtest-$slug.json" "$slug" "$name" "$secs" "$(nproc)" \
    "$(uptime | sed 's/.*load average: //')" "${LOADTEST_PARTS[*]}" "$before" "$after" \
    "$LOADTEST_ROWS" "$LOADTEST_CPU_ROWS" <<'PY'
import json, sys
path, slug, name, secs, cores, load, parts, before, after, rows, cpu_rows = sys.argv[1:12]
r = json.load(open(path))
l = r["latency_ms"]
secs, cores = max(float(secs), 1.0), int(cores)
used = {p: float(a) - float(b) for p, b, a in zip(parts.split(), before.split(), after.split())}
# The published targets (issue 10) and the aims past them, by scenario.
error_rate = r["errors"] / r["requests"] if r["requests"] else 1.0
if slug == "a":
    target, met = "p95 < 1 s, errors < 0.5%, none degraded", l["p95"] < 1000 and error_rate < 0.005 and r["degraded"] == 0
elif slug == "b":
    target, met = "p99 < 1 s, errors < 0.5%", l["p99"] < 1000 and error_rate < 0.005
elif slug == "d":
    target, met = "as a, during a bulk ingest", l["p95"] < 1000 and error_rate < 0.005 and r["degraded"] == 0
elif slug == "d-light":
    target, met = "p99 <= 50 ms during ingest", l["p99"] <= 50 and r["errors"] == 0
elif slug == "e-gateway":
    target, met = "0 failed requests", r["errors"] == 0
elif slug == "e-text":
    target, met = "degraded answers, 0 errors", r["errors"] == 0
elif slug == "e-postgres":
    target, met = "errors only in the restart window", r["errors"] == 0 or (r["error_window"] is not None and r["error_window"][1] - r["error_window"][0] <= 20)
else:
    target, met = "p99 <= 100 ms, no errors", l["p99"] <= 100 and r["errors"] == 0
errors = ", ".join(f"{k} {v}" for k, v in r["errors_by_code"].items()) or "0"
# Where in the measured window failed and degraded requests were sent (restart scenarios).
if r.get("error_window"):
    errors += " (sent {}–{} s)".format(r["error_window"][0], r["error_window"][1] + 1)
degraded = str(r["degraded"])
if r["degraded"] and r.get("degraded_window"):
    degraded += " (sent {}–{} s)".format(r["degraded_window"][0], r["degraded_window"][1] + 1)
# A part restarted during the scenario (restart scenarios) counts from zero again: no figure.
share = ", ".join(f"{p} {used[p] / secs * 100:.0f}%" if used[p] >= 0 else f"{p} n/a (restarted)" for p in parts.split())
with open(rows, "a") as out:
    print(f"| {name} | {target} | {'yes' if met else '**no**'} | {r['requests']} | {r['qps']:.0f} | {l['p50']:.1f} | {l['p95']:.1f} | {l['p99']:.1f} | {l['p99_9']:.1f} | {l['max']:.0f} | {errors} | {degraded} | {share} | {load} |", file=out)
# CPU per answered query: the warm-up ran too, at about the measured rate, so the divisor is
# the answers over the whole run (warm-up included).
answers = r["qps"] * secs
if answers > 0:
    ms = {p: used[p] * 1000 / answers for p in parts.split()}
    total = sum(ms.values())
    ceiling = cores * 1000 / total if total > 0 else float("inf")
    cells = " | ".join(f"{ms[p]:.2f}" for p in parts.split())
    with open(cpu_rows, "a") as out:
        print(f"| {name} | {cells} | {total:.2f} | {ceiling:.0f} |", file=out)
PY
}

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
    # The load runs as one caller: lift its per-caller search budget (200/s by default) so the
    # sweep measures the stack, not the rate limiter (the per-tenant budget still applies).
    BRAID_GATEWAY__LIMITS__SEARCH__PER_SUBJECT__RATE_PER_SECOND=${BRAID_GATEWAY__LIMITS__SEARCH__PER_SUBJECT__RATE_PER_SECOND:-1000} \
    BRAID_GATEWAY__LIMITS__SEARCH__PER_SUBJECT__BURST=${BRAID_GATEWAY__LIMITS__SEARCH__PER_SUBJECT__BURST:-2000} \
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
  # Auth is on: the load runs as a reader of the default tenant (a dev token, 2 h).
  [[ -n ${BRAID_TOKEN:-} ]] || BRAID_TOKEN=$("$ctl" --tenant default token mint --sub loadtest --role reader --ttl 2h) \
    || die "could not mint a dev token (set BRAID_TOKEN)"
  export BRAID_TOKEN
}

# A writer token for tenant $1 (the load's own token is a reader of the default tenant, which
# may not ingest: a bulk ingest run with it is refused).
writer_token() { # tenant
  "$TARGET_DIR/release/braidctl" --tenant "$1" token mint --sub loadtest-ingest --role writer --ttl 2h \
    || die "could not mint a writer token for tenant $1"
}

# Rate sweep: runs `<prefix>-<rate>` for each rate until one misses p99 <= 100 ms (or has an
# error), then bisects between the last rate that met it and the first that did not, to within
# 10 req/s (or 10%); sets LOADTEST_BEST to the highest rate that met it (0: none).
loadtest_sweep() { # slug prefix, label, bench args...
  local prefix=$1 label=$2; shift 2
  local rate failed=0
  LOADTEST_BEST=0
  for rate in 25 50 100 150 200 250 300 400 500; do
    if loadtest_sweep_step "$prefix" "$label" "$rate" "$@"; then LOADTEST_BEST=$rate; else failed=$rate; break; fi
  done
  [[ $failed -gt 0 ]] || return 0
  while (( failed - LOADTEST_BEST > 10 && (failed - LOADTEST_BEST) * 10 > LOADTEST_BEST )); do
    rate=$(( (LOADTEST_BEST + failed) / 2 / 5 * 5 ))
    (( rate > LOADTEST_BEST )) || break
    if loadtest_sweep_step "$prefix" "$label" "$rate" "$@"; then LOADTEST_BEST=$rate; else failed=$rate; fi
  done
}

# One sweep step at $3 req/s; succeeds when its p99 <= 100 ms with no error.
loadtest_sweep_step() { # slug prefix, label, rate, bench args...
  local prefix=$1 label=$2 rate=$3; shift 3
  loadtest_scenario "$prefix-$rate" "$label ${rate} req/s" "$@" --rate "$rate"
  local p99
  p99=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["latency_ms"]["p99"] if r["errors"] == 0 else 1e9)' \
    "$LOG_DIR/loadtest-$prefix-$rate.json")
  awk -v p="$p99" 'BEGIN { exit !(p <= 100) }'
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
  : >"$LOADTEST_ROWS"; : >"$LOADTEST_CPU_ROWS"
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
    echo "on the machine shows there). The load runs as one caller, whose per-caller search budget"
    echo "(200/s by default) the stack started here lifts to 1000/s. Restarts under load: the next section."
    echo
    echo "Highest swept rate with p99 <= 100 ms and no errors: **${best} req/s uncached**, **${cached_best} req/s"
    echo "cached** (published aim: >= 300 req/s uncached)."
    echo
    echo "| scenario | published target | met | requests | QPS | p50 | p95 | p99 | p99.9 | max | errors | degraded | CPU | load |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    cat "$LOADTEST_ROWS"
    echo
    echo "Where the time goes: CPU milliseconds per answered query by part (embedding = the query"
    echo "embedding, text-search = BM25, vector-search + postgres = HNSW through pgvector, gateway ="
    echo "fan-out, fusion and gRPC, client = the load generator), and the rate these $(nproc) cores"
    echo "could serve if CPU were the only bound (cores x 1000 / total)."
    echo
    echo "| scenario | $(printf '%s | ' "${LOADTEST_PARTS[@]}")total | CPU-bound ceiling (req/s) |"
    echo "| --- | $(printf -- '--- | %.0s' "${LOADTEST_PARTS[@]}")--- | --- |"
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

# (e) Restarts under load (issue 10 item 7), ${LOADTEST_RESTART_RATE:-40} req/s uncached, the
# restart 10 s into a 30 s measured window: one of two gateways stopped with SIGTERM (the load
# spread over both; clients move to the other), text-search stopped with SIGTERM and restarted by
# the stack's supervisor, and PostgreSQL restarted (`pg_ctl restart -m fast`; skipped with
# LOADTEST_PG_RESTART=0, e.g. when tests share the cluster). Writes the "Restarts under load"
# section of BENCHMARKS.md.
loadtest_restarts() { # dataset
  local dataset=$1 rate=${LOADTEST_RESTART_RATE:-40} ctl=$TARGET_DIR/release/braidctl
  LOADTEST_ROWS=$LOG_DIR/loadtest-restart-rows.md LOADTEST_CPU_ROWS=$LOG_DIR/loadtest-restart-cpu-rows.md
  : >"$LOADTEST_ROWS"; : >"$LOADTEST_CPU_ROWS"
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
  : >"$LOADTEST_ROWS"; : >"$LOADTEST_CPU_ROWS"
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
