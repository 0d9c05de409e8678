#!/usr/bin/env bash
# make receipts: re-sees every test of tests/RECEIPTS.md fail on its mutation.
#
# Each tests/receipts/NNN-name.patch starts with two header lines, then a `git diff`:
#   Test: <arguments to `cargo test`>      (e.g. -p braid-tests --test e2e cache::x -- --exact)
#   Mutation: <what the patch breaks>
# For each patch (RECEIPTS_ONLY=<regex> keeps those whose name matches it): a scratch
# worktree of HEAD (`git worktree add --detach`, in a temporary directory) gets the patch, the
# named test is built (a patch that does not build is reported, never counted red) and run,
# and must FAIL; the patch is reverted. Then every named test runs once on the clean worktree
# and must PASS. Prints one table; exits non-zero if any row is not red-then-green.
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
git -C "$ROOT" worktree add --detach --quiet "$WT" HEAD
say "scratch worktree $WT at $(git -C "$WT" rev-parse --short HEAD), CARGO_TARGET_DIR=$CARGO_TARGET_DIR"

# header FIELD FILE: the value of the header line `FIELD: ...`.
header() { sed -n "s/^$1: //p; /^diff --git/q" "$2" | head -1; }

declare -A RED GREEN
for p in "${patches[@]}"; do
  name=$(basename "$p" .patch)
  test_args=$(header Test "$p")
  [[ -n $test_args ]] || { RED[$name]="no Test: line"; continue; }
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
  elif grep -q '^test result: .* [1-9][0-9]* failed' "$LOGS/$name.red.log"; then
    RED[$name]="red"
  else
    RED[$name]="no test failed (see $name.red.log)"
  fi
  git -C "$WT" checkout --quiet -- .
done

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

status=0
printf '\n%-40s %-34s %-12s %s\n' "patch" "with the mutation" "without" "test"
for p in "${patches[@]}"; do
  name=$(basename "$p" .patch)
  test=$(header Test "$p" | sed 's/ -- --exact$//; s/^.* --test //')
  printf '%-40s %-34s %-12s %s\n' "$name" "${RED[$name]}" "${GREEN[$name]:-}" "$test"
  [[ ${RED[$name]} == red && ${GREEN[$name]:-} == green ]] || status=1
done
exit $status
