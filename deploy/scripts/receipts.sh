#!/usr/bin/env bash
# make receipts: re-sees every test of tests/RECEIPTS.md fail on its mutation.
#
# Each tests/receipts/NNN-name.patch starts with header lines, then a `git diff`:
#   Test: <arguments to `cargo test`>      (e.g. -p braid-tests --test e2e cache::x -- --exact)
#   Run: <a command instead of `cargo test`>  (e.g. deploy/scripts/check_deploy.sh compose, for
#                                           a patch of a non-Rust file; green = exit 0)
#   Mutation: <what the patch breaks>
#   Red: <text the failing run must print>  (optional: the assertion that catches it)
#   Needs: opensearch                      (optional: the test needs the OpenSearch node)
# In a scratch worktree of HEAD (`git worktree add --detach`, in a temporary directory), every
# named test (RECEIPTS_ONLY=<regex> keeps the patches whose name matches) first runs on the
# clean tree and must PASS (so a broken environment is never mistaken for a catch); then each
# patch is applied, the named test built (a patch that does not build is reported, never
# counted red) and run, and must FAIL (printing its `Red:` text when it has one); the patch is
# reverted. Prints one table; exits non-zero if any row is not green-then-red.
#
# The worktree shares CARGO_TARGET_DIR (default: this repository's target/), so a patch
# rebuilds only the crates it touches and those depending on them. The end-to-end tests need
# the test environment: taken from `stack.sh env` unless BRAID_TEST_DATABASE_URL is set.
# When a selected patch says `Needs: opensearch`, the single-node OpenSearch of `make test` is
# started (stack.sh opensearch-start, its files under RECEIPTS_BRAID_HOME, default this
# checkout's .braid) unless one already answers on its port; one started here is stopped on
# exit. Its URL reaches those patches' tests as BRAID_TEST_ELASTICSEARCH_URL (their `Test:`
# line carries the `elasticsearch` features); the other tests run without it.
# Patches are of the committed tree (HEAD): commit before running.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
ONLY=${RECEIPTS_ONLY:-}
say() { printf '\033[1m[receipts]\033[0m %s\n' "$*" >&2; }

if [[ -z ${BRAID_TEST_DATABASE_URL:-} ]]; then
  eval "$("$ROOT/deploy/scripts/stack.sh" env)"
fi

patches=()
for p in "$ROOT"/tests/receipts/*.patch; do
  name=$(basename "$p" .patch)
  [[ -z $ONLY || $name =~ $ONLY ]] && patches+=("$p")
done
(( ${#patches[@]} )) || { say "no patch matches RECEIPTS_ONLY=$ONLY"; exit 1; }

# header FIELD FILE: the value of the header line `FIELD: ...`.
header() { sed -n "s/^$1: //p; /^diff --git/q" "$2" | head -1; }

NEEDS_OS=""
for p in "${patches[@]}"; do
  [[ $(header Needs "$p") == *opensearch* ]] && NEEDS_OS=1
done
OS_HOME=${RECEIPTS_BRAID_HOME:-$ROOT/.braid}
OS_STARTED_HERE=""
OS_URL=""
stack_os() { BRAID_HOME=$OS_HOME "$ROOT/deploy/scripts/stack.sh" "$@"; }

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/braid-receipts.XXXXXX")
WT=$SCRATCH/worktree
LOGS=$SCRATCH/logs
mkdir -p "$LOGS"
cleanup() {
  git -C "$ROOT" worktree remove --force "$WT" >/dev/null 2>&1 || true
  [[ -z $OS_STARTED_HERE ]] || stack_os opensearch-stop || true
  say "logs kept in $LOGS"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
git -C "$ROOT" worktree add --detach --quiet "$WT" HEAD
say "scratch worktree $WT at $(git -C "$WT" rev-parse --short HEAD), CARGO_TARGET_DIR=$CARGO_TARGET_DIR"

if [[ -n $NEEDS_OS ]]; then
  eval "$(stack_os opensearch-env)"
  OS_URL=$BRAID_TEST_ELASTICSEARCH_URL
  if curl -fsS --max-time 2 "$OS_URL/" 2>/dev/null | grep -q '"distribution" *: *"opensearch"'; then
    say "OpenSearch already running on $OS_URL: used, left running"
  else
    OS_STARTED_HERE=1
    stack_os opensearch-start
  fi
fi
unset BRAID_TEST_ELASTICSEARCH_URL

# run_test PATCH LOG: the patch's test (its `Run:` command, else `cargo test` with its `Test:`
# arguments) in the scratch worktree, with the OpenSearch URL when it needs the node.
run_test() {
  local p=$1 log=$2 cmd osenv=()
  [[ $(header Needs "$p") == *opensearch* ]] && osenv=("BRAID_TEST_ELASTICSEARCH_URL=$OS_URL")
  cmd=$(header Run "$p")
  if [[ -n $cmd ]]; then
    read -r -a cmd_args <<<"$cmd"
  else
    read -r -a cmd_args <<<"$(header Test "$p")"
    cmd_args=(cargo test --locked "${cmd_args[@]}")
  fi
  (cd "$WT" && env "${osenv[@]}" "${cmd_args[@]}") >"$log" 2>&1
}

# passed PATCH LOG: the run passed at least one test (a `Run:` command: it exited 0). The
# contract suite's own runner (`--test contract`) prints `contract: N passed, M failed`.
passed() {
  [[ -n $(header Run "$1") ]] && return 0
  grep -qE '^test result: ok\. [1-9]|^contract: [1-9][0-9]* passed, 0 failed' "$2"
}
# failed PATCH LOG: the run failed a test (a `Run:` command: it exited non-zero).
failed() {
  [[ -n $(header Run "$1") ]] && return 0
  grep -qE '^test result: .* [1-9][0-9]* failed|^contract: [0-9]+ passed, [1-9][0-9]* failed' "$2"
}

declare -A RED GREEN
for p in "${patches[@]}"; do
  name=$(basename "$p" .patch)
  say "$name: clean tree (expect PASS)"
  if run_test "$p" "$LOGS/$name.green.log" && passed "$p" "$LOGS/$name.green.log"; then
    GREEN[$name]="green"
  else
    GREEN[$name]="FAILED (see $name.green.log)"
  fi
done

for p in "${patches[@]}"; do
  name=$(basename "$p" .patch)
  test_args=$(header Test "$p")
  run_cmd=$(header Run "$p")
  expect=$(header Red "$p")
  [[ -n $test_args || -n $run_cmd ]] || { RED[$name]="no Test: or Run: line"; continue; }
  [[ ${GREEN[$name]} == green ]] || { RED[$name]="not run (not green)"; continue; }
  read -r -a args <<<"$test_args"
  build_args=()
  for a in "${args[@]}"; do [[ $a == -- ]] && break; build_args+=("$a"); done
  say "$name: applying, building, running (expect FAIL)"
  if ! git -C "$WT" apply "$p"; then
    RED[$name]="patch does not apply"
    continue
  fi
  if [[ -z $run_cmd ]] \
    && ! (cd "$WT" && cargo test --locked --no-run "${build_args[@]}") >"$LOGS/$name.build.log" 2>&1; then
    RED[$name]="does not build (see $name.build.log)"
  elif run_test "$p" "$LOGS/$name.red.log"; then
    RED[$name]="PASSED (not caught)"
  elif ! failed "$p" "$LOGS/$name.red.log"; then
    RED[$name]="no test failed (see $name.red.log)"
  elif [[ -n $expect ]] && ! grep -qF -- "$expect" "$LOGS/$name.red.log"; then
    RED[$name]="failed, not on its Red: line (see $name.red.log)"
  else
    RED[$name]="red"
  fi
  git -C "$WT" checkout --quiet -- .
done

status=0
printf '\n%-40s %-12s %-34s %s\n' "patch" "clean tree" "with the mutation" "test"
for p in "${patches[@]}"; do
  name=$(basename "$p" .patch)
  test=$(header Test "$p" | sed 's/ -- --exact$//; s/^.* --test //')
  [[ -n $test ]] || test=$(header Run "$p")
  printf '%-40s %-12s %-34s %s\n' "$name" "${GREEN[$name]:-}" "${RED[$name]:-}" "$test"
  [[ ${RED[$name]:-} == red && ${GREEN[$name]:-} == green ]] || status=1
done
exit $status
