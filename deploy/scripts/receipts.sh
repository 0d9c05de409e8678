#!/usr/bin/env bash
# make receipts: re-sees every test of tests/RECEIPTS.md fail on its mutation.
#
# Each tests/receipts/NNN-name.patch starts with header lines, then a `git diff`:
#   Test: <arguments to `cargo test`>      (e.g. -p braid-tests --test e2e cache::x -- --exact)
#   Mutation: <what the patch breaks>
#   Red: <text the failing run must print>  (optional: the assertion that catches it)
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

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/braid-receipts.XXXXXX")
WT=$SCRATCH/worktree
LOGS=$SCRATCH/logs
mkdir -p "$LOGS"
cleanup() {
  git -C "$ROOT" worktree remove --force "$WT" >/dev/null 2>&1 || true
  say "logs kept in $LOGS"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
git -C "$ROOT" worktree add --detach --quiet "$WT" HEAD
say "scratch worktree $WT at $(git -C "$WT" rev-parse --short HEAD), CARGO_TARGET_DIR=$CARGO_TARGET_DIR"

# header FIELD FILE: the value of the header line `FIELD: ...`.
header() { sed -n "s/^$1: //p; /^diff --git/q" "$2" | head -1; }

declare -A RED GREEN
for p in "${patches[@]}"; do
  name=$(basename "$p" .patch)
  read -r -a args <<<"$(header Test "$p")"
  say "$name: clean tree (expect PASS)"
  if (cd "$WT" && cargo test --locked "${args[@]}") >"$LOGS/$name.green.log" 2>&1 \
    && grep -q '^test result: ok\. [1-9]' "$LOGS/$name.green.log"; then
    GREEN[$name]="green"
  else
    GREEN[$name]="FAILED (see $name.green.log)"
  fi
done

for p in "${patches[@]}"; do
  name=$(basename "$p" .patch)
  test_args=$(header Test "$p")
  expect=$(header Red "$p")
  [[ -n $test_args ]] || { RED[$name]="no Test: line"; continue; }
  [[ ${GREEN[$name]} == green ]] || { RED[$name]="not run (not green)"; continue; }
  read -r -a args <<<"$test_args"
  build_args=()
  for a in "${args[@]}"; do [[ $a == -- ]] && break; build_args+=("$a"); done
  say "$name: applying, building, running (expect FAIL)"
  if ! git -C "$WT" apply "$p"; then
    RED[$name]="patch does not apply"
    continue
  fi
  if ! (cd "$WT" && cargo test --locked --no-run "${build_args[@]}") >"$LOGS/$name.build.log" 2>&1; then
    RED[$name]="does not build (see $name.build.log)"
  elif (cd "$WT" && cargo test --locked "${args[@]}") >"$LOGS/$name.red.log" 2>&1; then
    RED[$name]="PASSED (not caught)"
  elif ! grep -q '^test result: .* [1-9][0-9]* failed' "$LOGS/$name.red.log"; then
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
  printf '%-40s %-12s %-34s %s\n' "$name" "${GREEN[$name]:-}" "${RED[$name]:-}" "$test"
  [[ ${RED[$name]:-} == red && ${GREEN[$name]:-} == green ]] || status=1
done
exit $status
