# shellcheck shell=bash
# A single-node OpenSearch for the text leg, sourced by stack.sh (uses its say, die, DL,
# BRAID_HOME, PG_OS_USER, pg_home/PG_HOME and as_pg).
#
# Assembled from Maven Central, nothing else: the integ-test-zip distribution (server, bin/,
# config/, the transport-netty4 module) plus the analysis-common module jar, which Braid's
# index template needs (pattern tokenizer, pattern_replace char filter, length, stop and
# stemmer filters), with a plugin descriptor written here. Downloads are cached in $DL (each
# verified against Maven Central's .sha1); the distribution is unpacked once into
# $PG_HOME/opensearch/opensearch-<version> ($PG_HOME = $BRAID_HOME unless the unprivileged
# user cannot enter it, see pg_home). Each node (one per HTTP port) keeps its config, data and
# logs in $PG_HOME/opensearch/node-<port>; as root it runs as $PG_OS_USER (OpenSearch refuses
# root). Java: OPENSEARCH_JAVA_HOME, else a JDK 17 or 21 under /usr/lib/jvm (2.19 runs on
# 11-21; newer JDKs dropped the security manager it needs).
#
#   BRAID_OPENSEARCH_PORT            HTTP port (default 19200), bound to 127.0.0.1
#   BRAID_OPENSEARCH_TRANSPORT_PORT  transport port (default HTTP port + 100)
#   BRAID_OPENSEARCH_HEAP            -Xms/-Xmx (default 512m)
#   BRAID_MAVEN_URL                  Maven repository (default Maven Central)

OS_VERSION=2.19.6
OS_PORT=${BRAID_OPENSEARCH_PORT:-19200}
OS_TRANSPORT_PORT=${BRAID_OPENSEARCH_TRANSPORT_PORT:-$((OS_PORT + 100))}
OS_HEAP=${BRAID_OPENSEARCH_HEAP:-512m}
OS_URL=http://127.0.0.1:$OS_PORT
MAVEN_URL=${BRAID_MAVEN_URL:-https://repo.maven.apache.org/maven2}

os_paths() {
  pg_home
  OS_ROOT=$PG_HOME/opensearch
  OS_DIST=$OS_ROOT/opensearch-$OS_VERSION
  OS_NODE=$OS_ROOT/node-$OS_PORT
}

# maven_fetch GROUP_PATH ARTIFACT VERSION EXT -> path of the cached file, sha1-verified.
maven_fetch() {
  local group=$1 artifact=$2 version=$3 ext=$4
  local file=$artifact-$version.$ext url=$MAVEN_URL/$1/$2/$3/$artifact-$version.$ext
  mkdir -p "$DL"
  if [[ ! -f $DL/$file ]]; then
    say "downloading $file from $MAVEN_URL"
    local want
    want=$(curl -fsSL --retry 3 "$url.sha1" | cut -c1-40) || die "could not download $url.sha1"
    curl -fsSL --retry 3 -o "$DL/$file.tmp" "$url" || die "could not download $url"
    [[ $(sha1sum "$DL/$file.tmp" | cut -d' ' -f1) == "$want" ]] \
      || { rm -f "$DL/$file.tmp"; die "$file does not match its published sha1 ($want)"; }
    mv "$DL/$file.tmp" "$DL/$file"
  fi
  echo "$DL/$file"
}

os_java_home() {
  local candidate attempt
  for attempt in 1 2; do
    for candidate in "${OPENSEARCH_JAVA_HOME:-}" /usr/lib/jvm/java-17-openjdk-* /usr/lib/jvm/java-21-openjdk-* \
      /usr/lib/jvm/temurin-17-* /usr/lib/jvm/temurin-21-*; do
      [[ -n $candidate && -x $candidate/bin/java ]] && { echo "$candidate"; return 0; }
    done
    [[ $attempt == 1 && $(id -u) -eq 0 ]] && command -v apt-get >/dev/null || break
    say "installing Java 17 for OpenSearch (apt-get install openjdk-17-jre-headless)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >&2 \
      || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >&2; } \
      || break
  done
  die "OpenSearch $OS_VERSION needs Java 17 or 21: install it (apt-get install openjdk-17-jre-headless) or set OPENSEARCH_JAVA_HOME"
}

fetch_opensearch() {
  os_paths
  [[ -f $OS_DIST/modules/analysis-common/plugin-descriptor.properties ]] && return
  local zip jar tmp=$OS_DIST.tmp
  zip=$(maven_fetch org/opensearch/distribution/integ-test-zip opensearch "$OS_VERSION" zip)
  jar=$(maven_fetch org/opensearch/plugin analysis-common "$OS_VERSION" jar)
  rm -rf "$tmp"; mkdir -p "$tmp"
  unpack "$zip" "$tmp"
  [[ -f $tmp/opensearch-$OS_VERSION/bin/opensearch ]] || die "$zip does not hold opensearch-$OS_VERSION/bin/opensearch"
  chmod a+x "$tmp/opensearch-$OS_VERSION"/bin/*
  local module=$tmp/opensearch-$OS_VERSION/modules/analysis-common
  mkdir -p "$module"
  cp "$jar" "$module/"
  cat >"$module/plugin-descriptor.properties" <<PROPERTIES
description=Adds "built in" analyzers to OpenSearch (assembled by deploy/scripts/opensearch.sh).
version=$OS_VERSION
name=analysis-common
classname=org.opensearch.analysis.common.CommonAnalysisPlugin
java.version=11
opensearch.version=$OS_VERSION
custom.foldername=
extended.plugins=
has.native.controller=false
PROPERTIES
  chmod -R a+rX "$tmp"
  rm -rf "$OS_DIST"; mkdir -p "$OS_ROOT"; chmod 755 "$OS_ROOT"
  mv "$tmp/opensearch-$OS_VERSION" "$OS_DIST"; rm -rf "$tmp"
  say "OpenSearch $OS_VERSION (+ analysis-common) assembled in $OS_DIST"
}

os_answers() { curl -fsS --max-time 2 "$OS_URL/" 2>/dev/null | grep -q '"distribution" *: *"opensearch"'; }

os_pid() { # pid of this port's node, if it runs
  local pid
  pid=$(cat "$OS_NODE/opensearch.pid" 2>/dev/null) || return 1
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# The node's own config directory: the distribution's with absolute log/heap-dump paths, the
# heap size, and opensearch.yml for one loopback node.
os_write_config() {
  local conf=$OS_NODE/config
  mkdir -p "$conf" "$OS_NODE/data" "$OS_NODE/logs"
  cp "$OS_DIST/config/log4j2.properties" "$conf/"
  sed -e "s#^-Xms.*#-Xms$OS_HEAP#" -e "s#^-Xmx.*#-Xmx$OS_HEAP#" \
    -e "s#HeapDumpPath=data#HeapDumpPath=$OS_NODE/data#" -e "s#logs/#$OS_NODE/logs/#g" \
    "$OS_DIST/config/jvm.options" >"$conf/jvm.options"
  cat >"$conf/opensearch.yml" <<CONFIG
# Written by deploy/scripts/opensearch.sh: a single-node OpenSearch on loopback for Braid's
# text leg (make test, BRAID_TEXT_BACKEND=opensearch make run).
cluster.name: braid-$OS_PORT
node.name: braid-$OS_PORT
discovery.type: single-node
network.host: 127.0.0.1
http.port: $OS_PORT
transport.port: $OS_TRANSPORT_PORT
path.data: $OS_NODE/data
path.logs: $OS_NODE/logs
# A developer machine's disk is not a cluster's: never turn indices read-only at 95%.
cluster.routing.allocation.disk.threshold_enabled: false
CONFIG
  [[ $(id -u) -eq 0 ]] && chown -R "$PG_OS_USER" "$OS_NODE"
  chmod 755 "$OS_NODE"
}

# Starts the node (daemonised, pid in $OS_NODE/opensearch.pid) unless one already answers on
# the port, and waits for it to report yellow or green. Sets OS_STARTED=1 when it started it.
opensearch_start() {
  OS_STARTED=""
  os_paths
  if os_answers; then
    say "OpenSearch already running on $OS_URL"
    return 0
  fi
  fetch_opensearch
  local java; java=$(os_java_home)
  ensure_pg_user
  os_write_config
  rm -f "$OS_NODE/opensearch.pid"
  as_pg env OPENSEARCH_JAVA_HOME="$java" OPENSEARCH_PATH_CONF="$OS_NODE/config" \
    OPENSEARCH_JAVA_OPTS="-Xms$OS_HEAP -Xmx$OS_HEAP" \
    "$OS_DIST/bin/opensearch" -d -p "$OS_NODE/opensearch.pid" >>"$OS_NODE/logs/stdout.log" 2>&1 \
    || { tail -20 "$OS_NODE/logs/stdout.log" >&2; die "OpenSearch did not start (log $OS_NODE/logs)"; }
  OS_STARTED=1
  local deadline=$((SECONDS + ${BRAID_OPENSEARCH_START_TIMEOUT:-180}))
  until curl -fsS --max-time 5 "$OS_URL/_cluster/health?wait_for_status=yellow&timeout=2s" 2>/dev/null \
      | grep -q '"status":"\(green\|yellow\)"'; do
    if (( SECONDS > deadline )) || { [[ -f $OS_NODE/opensearch.pid ]] && ! os_pid >/dev/null; }; then
      tail -30 "$OS_NODE/logs/braid-$OS_PORT.log" "$OS_NODE/logs/stdout.log" >&2 2>/dev/null || true
      opensearch_stop
      die "OpenSearch on $OS_URL did not become healthy (port busy? set BRAID_OPENSEARCH_PORT; logs in $OS_NODE/logs)"
    fi
    sleep 1
  done
  say "OpenSearch $OS_VERSION started on $OS_URL (logs $OS_NODE/logs)"
}

opensearch_stop() {
  os_paths
  local pid
  pid=$(os_pid) || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { say "OpenSearch on $OS_URL stopped"; return 0; }
    sleep 1
  done
  kill -KILL "$pid" 2>/dev/null || true
  say "OpenSearch on $OS_URL killed (did not stop within 60 s)"
}

# What the tests need to start a node of their own (the node-loss test).
print_opensearch_env() {
  os_paths
  cat <<ENV
export BRAID_TEST_OPENSEARCH_HOME=$OS_DIST
export BRAID_TEST_OPENSEARCH_JAVA_HOME=$(os_java_home)
ENV
}

# `make run`'s text leg, from BRAID_TEXT_BACKEND: tantivy (default), opensearch (the local
# node above) or elasticsearch (a cluster named by BRAID_TEXT_SEARCH__INDEX__ELASTICSEARCH__*).
# Sets TEXT_FEATURES to the cargo flags the release build needs for it.
text_backend_features() {
  case ${BRAID_TEXT_BACKEND:-tantivy} in
    tantivy) TEXT_FEATURES=() ;;
    opensearch | elasticsearch) TEXT_FEATURES=(--features braid-text-search/elasticsearch) ;;
    *) die "BRAID_TEXT_BACKEND is '$BRAID_TEXT_BACKEND': tantivy, opensearch (a local node) or elasticsearch (a cluster named by BRAID_TEXT_SEARCH__INDEX__ELASTICSEARCH__URLS)" ;;
  esac
}

# Starts the node for BRAID_TEXT_BACKEND=opensearch (STACK_OS_STARTED=1 when this call started
# it) and points text-search at it: one node, so no replicas (green, not yellow).
export_text_backend() {
  case ${BRAID_TEXT_BACKEND:-tantivy} in
    tantivy) return 0 ;;
    opensearch)
      opensearch_start
      STACK_OS_STARTED=$OS_STARTED
      export BRAID_TEXT_SEARCH__INDEX__ELASTICSEARCH__URLS="[\"$OS_URL\"]"
      export BRAID_TEXT_SEARCH__INDEX__ELASTICSEARCH__REPLICAS=${BRAID_TEXT_SEARCH__INDEX__ELASTICSEARCH__REPLICAS:-0}
      ;;
  esac
  export BRAID_TEXT_SEARCH__INDEX__BACKEND=elasticsearch
  say "text leg on ${BRAID_TEXT_SEARCH__INDEX__ELASTICSEARCH__URLS:-the default Elasticsearch URL} (BRAID_TEXT_BACKEND=$BRAID_TEXT_BACKEND)"
}
