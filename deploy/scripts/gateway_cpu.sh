#!/usr/bin/env bash
# Gateway CPU per search, one gateway binary against another (issue 24 item 3).
# One set of downstream services (release build, own database `braid_gwcpu`, own Tantivy
# directory, own keys, ports GWCPU_PORT_BASE..+9, default 5126x) and two gateways in front of
# them with the `make run` settings (auth.mode = "jwt", service tokens, audit trail on, query
# cache on): A runs OLD_BIN, B runs NEW_BIN. `braidctl bench` drives each in turn at a steady
# rate (open loop, GWCPU_RATE req/s, default 50; 32 reader tokens round robin; query cache
# bypassed, as `make loadtest` does), A B A B ..., so machine load hits both alike. Per run:
# the gateway's CPU (utime + stime from /proc) per answer, less its idle rate (measured before
# the rounds, over 10 s). Prints one row per run, the medians and the B/A ratio.
# GWCPU_PERF=1 also records each gateway with `perf record` during one more run and prints
# the top symbols (`perf report --no-children --sort symbol`).
#
#   deploy/scripts/gateway_cpu.sh OLD_BIN NEW_BIN [DOCS=1000] [SECONDS=30] [ROUNDS=3]
# Needs PostgreSQL running (`make setup`) and release binaries of the other services.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=deploy/scripts/bench_lib.sh
source "$ROOT/deploy/scripts/bench_lib.sh"
OLD=$(realpath "${1:?usage: gateway_cpu.sh OLD_BIN NEW_BIN [DOCS] [SECONDS] [ROUNDS]}")
NEW=$(realpath "${2:?usage: gateway_cpu.sh OLD_BIN NEW_BIN [DOCS] [SECONDS] [ROUNDS]}")
DOCS=${3:-1000}
SECS=${4:-30}
ROUNDS=${5:-3}
RATE=${GWCPU_RATE:-50}
PORT=${GWCPU_PORT_BASE:-51260}
export BRAID_HOME=${BRAID_HOME:-$ROOT/.braid}
eval "$("$ROOT/deploy/scripts/stack.sh" env)"
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
PG_BIN=$BRAID_TEST_PG_BIN
PG_URL=${BRAID_TEST_DATABASE_URL%/*}
DB=braid_gwcpu
DATASET=${BRAID_EVAL_DIR:-$ROOT/../shared/eval}/scifact
WORK=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$PG_BIN/psql" "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
for b in "$OLD" "$NEW" "$BIN/braidctl" "$BIN/braid-embedding"; do
  [[ -x $b ]] || { echo "missing binary: $b (make release)" >&2; exit 1; }
done
# Own keys: braidctl mints the load's tokens with $BRAID_HOME/secrets/dev-jwt.key.
HOME_DIR=$WORK/home
mkdir -p "$HOME_DIR/secrets"
for k in dev-jwt.key internal.key; do
  (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$HOME_DIR/secrets/$k")
done

"$PG_BIN/psql" "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
export BRAID_VECTOR_SEARCH__DATABASE__URL=$PG_URL/$DB BRAID_INGEST__DATABASE__URL=$PG_URL/$DB
export BRAID_TEXT_SEARCH__INDEX__DIR=$WORK/tantivy
export BRAID_EMBEDDING__CACHE__REDIS_URL=""
[[ -s $BRAID_EMBEDDING__MODEL__DIR/model.int8.onnx ]] && export BRAID_EMBEDDING__MODEL__QUERY_QUANTIZED=true
for svc in GATEWAY INGEST EMBEDDING VECTOR_SEARCH TEXT_SEARCH; do
  export "BRAID_${svc}__INTERNAL_AUTH__MODE=service_jwt" "BRAID_${svc}__INTERNAL_AUTH__KEY__FILE=$HOME_DIR/secrets/internal.key"
  export "BRAID_${svc}__TELEMETRY__LOG_FILTER=warn"
done
declare -A pid_of
start() { # key binary env-name grpc-port admin-port [env...]
  local key=$1 bin=$2 name=$3 grpc=$4 admin=$5; shift 5
  env "$@" "BRAID_${name}__SERVER__GRPC_ADDR=127.0.0.1:$grpc" "BRAID_${name}__SERVER__ADMIN_ADDR=127.0.0.1:$admin" \
    "$bin" >>"$WORK/$key.log" 2>&1 &
  pids+=($!)
  pid_of[$key]=$!
}
start embedding "$BIN/braid-embedding" EMBEDDING $((PORT + 3)) $((PORT + 13))
start vector "$BIN/braid-vector-search" VECTOR_SEARCH $((PORT + 4)) $((PORT + 14))
start text "$BIN/braid-text-search" TEXT_SEARCH $((PORT + 5)) $((PORT + 15))
start ingest "$BIN/braid-ingest" INGEST $((PORT + 2)) $((PORT + 12)) \
  BRAID_INGEST__EMBEDDING__ENDPOINT=http://127.0.0.1:$((PORT + 3)) \
  BRAID_INGEST__VECTOR_SEARCH__ENDPOINT=http://127.0.0.1:$((PORT + 4)) \
  BRAID_INGEST__TEXT_SEARCH__ENDPOINT=http://127.0.0.1:$((PORT + 5))
gateway=(BRAID_GATEWAY__INGEST__ENDPOINT=http://127.0.0.1:$((PORT + 2))
  BRAID_GATEWAY__EMBEDDING__ENDPOINT=http://127.0.0.1:$((PORT + 3))
  BRAID_GATEWAY__VECTOR_SEARCH__ENDPOINT=http://127.0.0.1:$((PORT + 4))
  BRAID_GATEWAY__TEXT_SEARCH__ENDPOINT=http://127.0.0.1:$((PORT + 5))
  BRAID_GATEWAY__AUTH__MODE=jwt BRAID_GATEWAY__AUTH__HS256__FILE="$HOME_DIR/secrets/dev-jwt.key"
  BRAID_GATEWAY__AUDIT__DATABASE__URL="$PG_URL/$DB")
start A "$OLD" GATEWAY $((PORT + 1)) $((PORT + 11)) "${gateway[@]}"
start B "$NEW" GATEWAY $((PORT + 6)) $((PORT + 16)) "${gateway[@]}"
declare -A port_of=([A]=$((PORT + 1)) [B]=$((PORT + 6)))

wait_healthy "$WORK" $((PORT + 11)) $((PORT + 12)) $((PORT + 13)) $((PORT + 14)) $((PORT + 15)) $((PORT + 16))
ctl() { BRAID_HOME=$HOME_DIR "$BIN/braidctl" --gateway "http://127.0.0.1:${port_of[$1]}" "${@:2}"; }
head -n "$DOCS" "$DATASET/corpus.jsonl" >"$WORK/corpus.jsonl"
echo "ingesting $DOCS SciFact documents" >&2
WRITER=$(BRAID_HOME=$HOME_DIR "$BIN/braidctl" --tenant default token mint --sub gwcpu-ingest --role writer --ttl 2h)
BRAID_TOKEN=$WRITER ctl A ingest "$WORK/corpus.jsonl" --wait >"$WORK/ingest.log" 2>&1 \
  || { tail "$WORK/ingest.log" >&2; exit 1; }
for i in $(seq 1 32); do
  BRAID_HOME=$HOME_DIR "$BIN/braidctl" --tenant default token mint --sub "gwcpu-$i" --role reader --ttl 2h
done >"$WORK/tokens"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
# Idle CPU rate (ticks per second) of each gateway: health probes, metrics upkeep, audit flush.
declare -A idle_of
idle0_A=$(ticks "${pid_of[A]}") idle0_B=$(ticks "${pid_of[B]}")
sleep 10
idle_of[A]=$(python3 -c "print(($(ticks "${pid_of[A]}") - $idle0_A) / 10)")
idle_of[B]=$(python3 -c "print(($(ticks "${pid_of[B]}") - $idle0_B) / 10)")
bench() { # arm seconds
  ctl "$1" bench --rate "$RATE" --warmup 0s --duration "${2}s" --timeout 10s --bypass-cache \
    --queries "$DATASET/queries.jsonl" --token-file "$WORK/tokens" --json --quiet
}
RESULTS=$WORK/results.tsv
run() { # arm round
  local arm=$1 before after t0 t1
  bench "$arm" 3 >/dev/null # warm-up, outside the CPU window
  before=$(ticks "${pid_of[$arm]}") t0=$(date +%s.%N)
  bench "$arm" "$SECS" >"$WORK/run.json"
  after=$(ticks "${pid_of[$arm]}") t1=$(date +%s.%N)
  python3 - "$arm" "$2" "$WORK/run.json" "$before" "$after" "$t0" "$t1" "${idle_of[$arm]}" "$HZ" <<'PY' | tee -a "$RESULTS"
import json, sys
arm, rnd, path, before, after, t0, t1, idle, hz = sys.argv[1:10]
r = json.load(open(path))
n = max(r.get("answered_whole_run") or r.get("requests", 1), 1)
busy = int(after) - int(before) - float(idle) * (float(t1) - float(t0))
cpu = busy * 1000.0 / int(hz) / n
print("\t".join([arm, rnd, str(n), "%.2f" % r["latency_ms"]["p50"], "%.2f" % r["latency_ms"]["p99"],
                 str(r["errors"]), str(r["degraded"]), "%.3f" % cpu, open("/proc/loadavg").read().split()[0]]))
PY
}
echo "idle ticks/s: A ${idle_of[A]}, B ${idle_of[B]}"
echo -e "arm\tround\tanswers\tp50_ms\tp99_ms\terrors\tdegraded\tgateway_cpu_ms/answer\tload1"
for round in $(seq 1 "$ROUNDS"); do
  for arm in A B; do run "$arm" "$round"; done
done
python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]) if l.strip()]
cpu = {a: [float(r[7]) for r in rows if r[0] == a] for a in "AB"}
ratios = [b / a for a, b in zip(cpu["A"], cpu["B"])]
print("gateway CPU ms/answer, median (min-max): A %.3f (%.3f-%.3f), B %.3f (%.3f-%.3f)" % (
    statistics.median(cpu["A"]), min(cpu["A"]), max(cpu["A"]),
    statistics.median(cpu["B"]), min(cpu["B"]), max(cpu["B"])))
print("B/A per round: %s; median %.3f" % (", ".join("%.3f" % x for x in ratios), statistics.median(ratios)))
PY
if [[ ${GWCPU_PERF:-0} == 1 ]]; then
  for arm in A B; do
    perf record -F 499 --call-graph "${GWCPU_PERF_CALLGRAPH:-dwarf,32768}" -o "$WORK/perf-$arm.data" -p "${pid_of[$arm]}" -- sleep "$SECS" >/dev/null 2>&1 &
    perf_pid=$!
    bench "$arm" "$SECS" >/dev/null
    wait "$perf_pid" || true
    echo "== perf top symbols, $arm ($([[ $arm == A ]] && echo "$OLD" || echo "$NEW"))"
    # (head closes the pipe early: not a failure.)
    perf report -i "$WORK/perf-$arm.data" --no-children --sort symbol --stdio 2>/dev/null \
      | grep -E '^ +[0-9]' | sed -E 's/ +(- +)*$//' | head -n "${GWCPU_PERF_TOP:-40}" || true
    [[ -z ${GWCPU_PERF_KEEP:-} ]] || cp "$WORK/perf-$arm.data" "$GWCPU_PERF_KEEP-$arm.data"
  done
fi
