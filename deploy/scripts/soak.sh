# `make soak`: the `make run` stack for SOAK_MINUTES (30) at half its measured capacity with an
# ingest trickle, sampled every 10 s; fails on growth past the bounds soak.py states or on any
# failed call. Sourced by stack.sh after loadtest.sh, whose stack start (loadtest_stack), load
# client runs (loadtest_sweep: braidctl bench), tokens and BENCHMARKS writer it reuses.
# shellcheck shell=bash

# SOAK_PORT_OFFSET=N: every port of the stack moved by N (gRPC 50051+N.., admin 9101+N..,
# Redis 6390+N), so a soak can run next to a `make run` on the defaults.
soak_ports() {
  local o=${SOAK_PORT_OFFSET:-0} svc env grpc admin
  local -A grpc_of=([gateway]=50051 [ingest]=50052 [embedding]=50053 [vector-search]=50054 [text-search]=50055)
  SOAK_ADMIN=""
  for svc in "${SERVICES[@]}"; do
    env=${svc^^}; env=${env//-/_}
    grpc=$(( grpc_of[$svc] + o )); admin=$(( grpc_of[$svc] - 50051 + 9101 + o ))
    SOAK_ADMIN+="$svc=$admin,"
    (( o == 0 )) && continue
    export "BRAID_${env}__SERVER__GRPC_ADDR=127.0.0.1:$grpc" "BRAID_${env}__SERVER__ADMIN_ADDR=127.0.0.1:$admin"
  done
  SOAK_ADMIN=${SOAK_ADMIN%,}
  (( o == 0 )) && return 0
  local leg
  for leg in INGEST:50052 EMBEDDING:50053 VECTOR_SEARCH:50054 TEXT_SEARCH:50055; do
    export "BRAID_GATEWAY__${leg%%:*}__ENDPOINT=http://127.0.0.1:$(( ${leg#*:} + o ))"
    export "BRAID_HEALTH_${leg%%:*}=http://127.0.0.1:$(( ${leg#*:} + o ))"
    [[ ${leg%%:*} == INGEST ]] || export "BRAID_INGEST__${leg%%:*}__ENDPOINT=http://127.0.0.1:$(( ${leg#*:} + o ))"
  done
  export BRAID_GATEWAY=http://127.0.0.1:$(( 50051 + o )) BRAID_REDIS_PORT=$(( 6390 + o ))
  say "ports moved by $o: gateway $BRAID_GATEWAY, admin ${SOAK_ADMIN//,/ }"
}

# The ingest trickle: one SciFact document a second under a new id (its title prefixed with
# the id, so its chunks are embedded and indexed afresh), and every second document deleted
# 10 s after it was sent, until $2 exists. Writes the counts as JSON to $3.
soak_trickle() { # corpus, stop file, counts file
  local corpus=$1 stop=$2 counts=$3 ctl=$TARGET_DIR/release/braidctl
  local dir=$LOG_DIR/soak-trickle run i=0 lines next
  local ingested=0 ingest_failed=0 deleted=0 delete_failed=0
  run=$(date +%s)
  mkdir -p "$dir"
  lines=$(wc -l <"$corpus")
  next=$(date +%s.%N)
  while [[ ! -e $stop ]]; do
    i=$(( i + 1 ))
    sed -n "$(( (i - 1) % lines + 1 ))p" "$corpus" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read()); i = sys.argv[1]
d["_id"] = i; d["title"] = i + " " + d.get("title", "")
print(json.dumps(d))' "soak-$run-$i" >"$dir/doc.jsonl"
    if "$ctl" ingest "$dir/doc.jsonl" >>"$dir/ingest.log" 2>&1; then
      ingested=$(( ingested + 1 ))
    else
      ingest_failed=$(( ingest_failed + 1 )); say "soak: ingest of soak-$run-$i failed (log $dir/ingest.log)"
    fi
    if (( i > 10 && i % 2 == 0 )); then
      if "$ctl" delete "soak-$run-$(( i - 10 ))" >>"$dir/delete.log" 2>&1; then
        deleted=$(( deleted + 1 ))
      else
        delete_failed=$(( delete_failed + 1 )); say "soak: delete of soak-$run-$(( i - 10 )) failed (log $dir/delete.log)"
      fi
    fi
    printf '{"ingested": %d, "ingest_failed": %d, "deleted": %d, "delete_failed": %d}\n' \
      "$ingested" "$ingest_failed" "$deleted" "$delete_failed" >"$counts"
    next=$(awk -v n="$next" 'BEGIN { printf "%.3f", n + 1 }')
    sleep "$(awk -v n="$next" -v now="$(date +%s.%N)" 'BEGIN { d = n - now; printf "%.3f", (d > 0 ? d : 0) }')" || true
  done
}

# The EXIT trap of run_soak: stops the trickle and the sampler, then the stack it started.
soak_stop() {
  touch "$SOAK_STOP"
  [[ -z $SOAK_SAMPLER ]] || kill -TERM "$SOAK_SAMPLER" 2>/dev/null || true
  [[ -z $SOAK_TRICKLE ]] || wait "$SOAK_TRICKLE" 2>/dev/null || true
  [[ -z $SOAK_SAMPLER ]] || wait "$SOAK_SAMPLER" 2>/dev/null || true
  if [[ -n ${LOADTEST_STACK_PID:-} ]]; then
    kill -TERM "$LOADTEST_STACK_PID" 2>/dev/null || true
    wait "$LOADTEST_STACK_PID" 2>/dev/null || true
  fi
}

run_soak() {
  setup
  eval "$(print_env)"
  local minutes=${SOAK_MINUTES:-30} ctl=$TARGET_DIR/release/braidctl
  local dataset=${BRAID_EVAL_DIR:-$ROOT/../shared/eval}/scifact soak=$LOG_DIR/soak
  [[ -f $dataset/corpus.jsonl ]] || die "SciFact not found at $dataset (set BRAID_EVAL_DIR to the eval directory)"
  [[ $minutes =~ ^[0-9]+$ && $minutes -ge 1 ]] || die "SOAK_MINUTES must be a whole number of minutes >= 1"
  mkdir -p "$LOG_DIR"; rm -rf "$soak"; mkdir -p "$soak"
  soak_ports
  # The callers' tokens must outlive the soak.
  LOADTEST_TOKEN_TTL=$(( minutes + 60 ))m
  # The embedding cache on (the trickle's documents and the queries go through it); a stack
  # already running is reused as it is.
  loadtest_stack "$dataset" on
  local q=(--queries "$dataset/queries.jsonl" --timeout 10s --bypass-cache)
  local capacity rate note
  if [[ -n ${SOAK_RATE:-} ]]; then
    rate=$SOAK_RATE; note="rate set with SOAK_RATE"
  else
    # A short ramp: one 10 s run per rate of loadtest_sweep, the highest with p99 <= 100 ms
    # and no errors is the capacity.
    say "soak: capacity ramp (10 s per rate)"
    LOADTEST_ROWS=$soak/ramp-rows.md LOADTEST_CPU_ROWS=$soak/ramp-cpu-rows.md
    : >"$LOADTEST_ROWS"; : >"$LOADTEST_CPU_ROWS"; : >"${LOADTEST_ROWS%.md}.jsonl"
    LOADTEST_REPEATS=1 loadtest_sweep ramp "soak ramp" "${q[@]}" --warmup 3s --duration 10s
    capacity=$LOADTEST_BEST
    # Half of it, within [5, SOAK_MAX_RATE (100)] so a loaded machine does not fail on load alone.
    rate=$(( capacity / 2 ))
    (( rate >= 5 )) || rate=5
    (( rate <= ${SOAK_MAX_RATE:-100} )) || rate=${SOAK_MAX_RATE:-100}
    local ramp
    ramp=$(python3 -c '
import json, sys
out = []
for line in open(sys.argv[1]):
    if line.strip():
        r = json.loads(line)
        rep = r["report"]
        out.append("%s/s p99 %.0f ms" % (r["name"].split()[-2], rep["latency_ms"]["p99"])
                   + (" %d errors" % rep["errors"] if rep["errors"] else ""))
print(", ".join(out))' \
      "${LOADTEST_ROWS%.md}.jsonl")
    note="half of the ${capacity} req/s a ramp measured at p99 <= 100 ms (${ramp}), bounded to 5–${SOAK_MAX_RATE:-100}"
  fi
  say "soak: ${minutes} min at ${rate} req/s (${note}), ingest trickle 1 document/s"
  # Globals: the EXIT trap runs after this function's locals are gone.
  local t0
  SOAK_STOP=$soak/stop SOAK_SAMPLER="" SOAK_TRICKLE=""
  t0=$(date +%s.%N)
  # The sampler's psql: PostgreSQL's binaries, port and braid's password (pg_start exported it).
  export PG_BIN PGPORT=$PG_PORT
  python3 "$ROOT/deploy/scripts/soak.py" sample --out "$soak/samples.jsonl" --log-dir "$LOG_DIR" \
    --admin "$SOAK_ADMIN" --db-name "$PG_DB" --t0 "$t0" &
  SOAK_SAMPLER=$!
  soak_trickle "$dataset/corpus.jsonl" "$SOAK_STOP" "$soak/trickle.json" &
  SOAK_TRICKLE=$!
  trap soak_stop EXIT
  local bench_ok=1
  "$ctl" bench --json --quiet "${LOADTEST_AUTH[@]}" "${q[@]}" --rate "$rate" --warmup 0s \
    --duration "${minutes}m" >"$soak/bench.json" 2>"$soak/bench.log" || bench_ok=""
  [[ -n $bench_ok ]] || { say "soak: the load client failed (log $soak/bench.log)"; rm -f "$soak/bench.json"; }
  touch "$SOAK_STOP"
  wait "$SOAK_TRICKLE" 2>/dev/null || true
  local drain
  drain=$(python3 "$ROOT/deploy/scripts/soak.py" drain --admin "$SOAK_ADMIN") || say "soak: the ingest queue did not drain within ${drain} s"
  kill -TERM "$SOAK_SAMPLER" 2>/dev/null; wait "$SOAK_SAMPLER" 2>/dev/null || true
  python3 "$ROOT/deploy/scripts/soak.py" sample --once --out "$soak/samples.jsonl" --log-dir "$LOG_DIR" \
    --admin "$SOAK_ADMIN" --db-name "$PG_DB" --t0 "$t0"
  local verdict=0 machine
  machine="$(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
  python3 "$ROOT/deploy/scripts/soak.py" report --samples "$soak/samples.jsonl" --seconds $(( minutes * 60 )) \
    --bench "$soak/bench.json" --trickle "$soak/trickle.json" --section "$soak/section.md" \
    --meta "command=$( [[ $minutes == 30 ]] && echo "make soak" || echo "SOAK_MINUTES=$minutes make soak")" \
    --meta "date=$(date -u '+%Y-%m-%d %H:%M UTC')" --meta "machine=$machine" \
    --meta "commit=$(git -C "$ROOT" rev-parse --short HEAD)" --meta "rate=$rate" --meta "capacity_note=$note" \
    --meta "callers=${LOADTEST_CALLERS:-32}" --meta "drain=$drain" \
    --meta "load=$(uptime | sed 's/.*load average: //')" || verdict=1
  write_bench_section 'Soak (`make soak`)' soak "$soak/section.md"
  say "wrote the soak section of BENCHMARKS.md (samples in $soak/samples.jsonl)"
  (( verdict == 0 )) || die "soak failed (see the table above)"
  say "soak passed"
}
