#!/usr/bin/env bash
# Where a light search load's tail comes from during a bulk ingest (`make loadtest`'s (d) at
# 20 req/s), on a running `make run` stack (start it with BRAID_EMBEDDING_CACHE=off; SciFact
# loaded). Windows of 20 req/s uncached hybrid searches for INGEST_TAIL_SECONDS (60) from 32
# reader tokens: one before, three during a re-ingest of SciFact under new ids (tenant
# loadtest), one after it. Per window: the client's p50/p95/p99 and, from the gateway's
# histograms (deltas over the window), each leg's mean and share of calls over 25 and 50 ms.
# Output: a Markdown table and the re-ingest's duration on stdout; raw files in
# .braid/logs/ingest-tail/.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
eval "$(deploy/scripts/stack.sh env)"
ctl=${CARGO_TARGET_DIR:-$ROOT/target}/release/braidctl
out=$ROOT/.braid/logs/ingest-tail
ds=${BRAID_EVAL_DIR:-$ROOT/../shared/eval}/scifact
secs=${INGEST_TAIL_SECONDS:-60}
gw_admin=${INGEST_TAIL_GATEWAY_ADMIN:-127.0.0.1:9101}
rm -rf "$out"
mkdir -p "$out"
for i in $(seq 1 32); do
  "$ctl" --tenant default token mint --sub "tail-$i" --role reader --ttl 2h >>"$out/tokens"
done
writer=$("$ctl" --tenant loadtest token mint --sub tail-ingest --role writer --ttl 2h)
scrape() { curl -fsS "http://$gw_admin/metrics" | grep -E '^braid_search_(leg_)?duration_seconds' >"$1"; }
window() { # name
  scrape "$out/$1.before"
  "$ctl" bench --json --quiet --token-file "$out/tokens" --queries "$ds/queries.jsonl" \
    --warmup 3s --duration "${secs}s" --timeout 10s --bypass-cache --rate 20 >"$out/$1.json"
  scrape "$out/$1.after"
  echo "$1" >>"$out/windows"
}
window before
sed "s/\"_id\": *\"/\"_id\": \"tail-$(date +%s)-/" "$ds/corpus.jsonl" >"$out/corpus.jsonl"
ingest_start=$(date +%s)
BRAID_TENANT=loadtest BRAID_TOKEN=$writer "$ctl" ingest "$out/corpus.jsonl" --wait >"$out/ingest.log" 2>&1 &
ingest=$!
sleep 25
for k in 1 2 3; do
  kill -0 "$ingest" 2>/dev/null || { echo "the ingest ended before window $k" >&2; exit 1; }
  window "during-$k"
done
wait "$ingest"
echo "$(( $(date +%s) - ingest_start ))" >"$out/ingest-seconds"
window after
python3 - "$out" <<'PY'
import json, re, sys
out = sys.argv[1]
def parse(path):
    values = {}
    for line in open(path):
        m = re.match(r'(\w+)\{([^}]*)\} (\S+)', line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            key = (m.group(1), labels.get("leg") or labels.get("mode"), labels.get("outcome", ""), labels.get("le", ""))
            values[key] = float(m.group(3))
    return values
print("| window | p50 / p95 / p99 (ms) | gateway search | vector leg (query embedding + vector-search) | text leg |")
print("| --- | --- | --- | --- | --- |")
for w in open(f"{out}/windows").read().split():
    a, b = parse(f"{out}/{w}.before"), parse(f"{out}/{w}.after")
    d = {k: v - a.get(k, 0) for k, v in b.items()}
    lat = json.load(open(f"{out}/{w}.json"))["latency_ms"]
    cells = [w, f"{lat['p50']:.1f} / {lat['p95']:.1f} / {lat['p99']:.1f}"]
    for series, key, outcome in [("braid_search_duration_seconds", "hybrid", ""),
                                 ("braid_search_leg_duration_seconds", "vector", "ok"),
                                 ("braid_search_leg_duration_seconds", "text", "ok")]:
        n = d.get((series + "_count", key, outcome, ""), 0)
        s = d.get((series + "_sum", key, outcome, ""), 0)
        over = lambda le: 100 * (n - d.get((series + "_bucket", key, outcome, le), 0)) / n
        cells.append(f"mean {1000 * s / n:.1f} ms, > 25 ms {over('0.025'):.1f}%, > 50 ms {over('0.05'):.1f}%" if n else "-")
    print("| " + " | ".join(cells) + " |")
print()
print(f"The re-ingest (until every document was READY) took {open(f'{out}/ingest-seconds').read().strip()} s.")
PY
