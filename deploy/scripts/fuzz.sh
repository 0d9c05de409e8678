#!/usr/bin/env bash
# `make fuzz`: the cargo-fuzz targets of fuzz/ (libFuzzer, nightly), each run for a bounded
# time on its committed seeds (fuzz/corpus/<target>/) plus what earlier runs found.
#
#   fuzz.sh            build every target, run each for FUZZ_SECONDS, print executions and
#                      crashes per target; fails when one crashed (its input is saved under
#                      $BRAID_HOME/fuzz/artifacts/<target>/)
#
# Environment (all optional):
#   FUZZ_SECONDS   seconds per target (default 60)
#   FUZZ_TARGETS   the targets to run, space-separated (default: all of fuzz/Cargo.toml)
#   BRAID_FUZZ_TARGET_DIR  build output (default fuzz/target, git-ignored; nothing else builds
#                  there, and `make test` never builds the fuzz crate)
#
# cargo-fuzz is installed once into $BRAID_HOME/tools (crates.io, --locked, pinned). The
# growing corpus and crash inputs live under $BRAID_HOME/fuzz/ (git-ignored); a crash that is
# fixed becomes a unit test in the crate that owns the code, not a file here.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BRAID_HOME=${BRAID_HOME:-$ROOT/.braid}
CARGO_FUZZ_VERSION=0.13.2
SECONDS_EACH=${FUZZ_SECONDS:-60}
TARGET_DIR=${BRAID_FUZZ_TARGET_DIR:-$ROOT/fuzz/target}
WORK=$BRAID_HOME/fuzz

say() { printf '\033[1m[braid]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[braid] error:\033[0m %s\n' "$*" >&2; exit 1; }

# Longest input per target: about the size of what the code sees in one call (a document
# of a few pages, a filter of 16 clauses, a token header).
max_len() {
  case $1 in
    extract_html | extract_markdown) echo 8192 ;;
    chunk) echo 4096 ;;
    filter | jwt) echo 2048 ;;
    page_token) echo 256 ;;
    *) echo 4096 ;;
  esac
}

ensure_cargo_fuzz() {
  rustup toolchain list | grep -q '^nightly' ||
    die "make fuzz needs the nightly toolchain: rustup toolchain install nightly"
  local bin=$BRAID_HOME/tools/bin/cargo-fuzz
  if [[ ! -x $bin ]] || ! "$bin" --version | grep -q " $CARGO_FUZZ_VERSION\$"; then
    say "installing cargo-fuzz $CARGO_FUZZ_VERSION into $BRAID_HOME/tools (once)"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$BRAID_HOME/tools"
  fi
  export PATH=$BRAID_HOME/tools/bin:$PATH
}

main() {
  ensure_cargo_fuzz
  cd "$ROOT"
  local targets=${FUZZ_TARGETS:-$(cargo fuzz list)}
  say "building the fuzz targets (nightly, debug assertions on) into $TARGET_DIR"
  cargo +nightly fuzz build --debug-assertions --target-dir "$TARGET_DIR"
  local t failed=() summary=()
  for t in $targets; do
    local corpus=$WORK/corpus/$t artifacts=$WORK/artifacts/$t log=$WORK/logs/$t.log
    mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
    say "fuzzing $t for ${SECONDS_EACH}s (max_len $(max_len "$t"))"
    # New inputs go to the first corpus directory (under $BRAID_HOME); the seeds are read only.
    local status=0
    cargo +nightly fuzz run --debug-assertions --target-dir "$TARGET_DIR" "$t" \
      "$corpus" "fuzz/corpus/$t" -- \
      -max_total_time="$SECONDS_EACH" -max_len="$(max_len "$t")" -timeout=10 \
      -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1 || status=$?
    local runs
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    if ((status != 0)); then
      failed+=("$t")
      summary+=("$t: CRASHED after ${runs:-?} executions, see $log and $artifacts/")
      tail -n 30 "$log" >&2
    else
      summary+=("$t: ${runs:-?} executions, no crash")
    fi
  done
  printf '%s\n' "${summary[@]}"
  ((${#failed[@]} == 0)) || die "crashed: ${failed[*]} (reproduce: cargo +nightly fuzz run <target> <artifact>)"
}

main "$@"
