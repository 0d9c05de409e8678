{{/* Names and labels. */}}
{{- define "braid.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "braid.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: braid
{{- end -}}

{{/* Selector labels of one component: always with the release instance. */}}
{{- define "braid.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "braid.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "braid.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The five services: values key -> Kubernetes name, env section, gRPC health name, binary,
     which services call it, which it calls. */}}
{{- define "braid.catalog" -}}
gateway:      { name: gateway,       section: GATEWAY,       grpc: braid.v1.Gateway,             binary: braid-gateway,       callers: [],                  calls: [ingest, embedding, vectorSearch, textSearch] }
ingest:       { name: ingest,        section: INGEST,        grpc: braid.v1.IngestService,       binary: braid-ingest,        callers: [gateway],           calls: [embedding, vectorSearch, textSearch] }
embedding:    { name: embedding,     section: EMBEDDING,     grpc: braid.v1.EmbeddingService,    binary: braid-embedding,     callers: [gateway, ingest],   calls: [] }
vectorSearch: { name: vector-search, section: VECTOR_SEARCH, grpc: braid.v1.VectorSearchService, binary: braid-vector-search, callers: [gateway, ingest],   calls: [] }
textSearch:   { name: text-search,   section: TEXT_SEARCH,   grpc: braid.v1.TextSearchService,   binary: braid-text-search,   callers: [gateway, ingest],   calls: [] }
{{- end -}}

{{/* "true" when text-search runs as a StatefulSet with a local Tantivy index. */}}
{{- define "braid.textSearchStateful" -}}
{{- if eq .Values.textSearch.backend "tantivy" }}true{{ end -}}
{{- end -}}

{{/* Host of a service for its callers: the headless Service in headless mode (every pod's
     address through DNS), the ClusterIP Service otherwise. */}}
{{- define "braid.host" -}}
{{- $catalog := include "braid.catalog" .root | fromYaml -}}
{{- $name := (get $catalog .key).name -}}
{{- if eq .root.Values.balancing "headless" -}}
{{- printf "%s-%s-headless" (include "braid.fullname" .root) $name -}}
{{- else -}}
{{- printf "%s-%s" (include "braid.fullname" .root) $name -}}
{{- end -}}
{{- end -}}

{{- define "braid.databaseSecret" -}}
{{- default (printf "%s-database" (include "braid.fullname" .)) .Values.database.existingSecret -}}
{{- end -}}

{{- define "braid.redisSecret" -}}
{{- default (printf "%s-redis" (include "braid.fullname" .)) .Values.redis.existingSecret -}}
{{- end -}}

{{- define "braid.internalSecret" -}}
{{- default (printf "%s-internal" (include "braid.fullname" .)) .Values.internalAuth.existingSecret -}}
{{- end -}}

{{/* The key of database Secret holding `.which` (migrateUrl or readUrl); empty when unset. */}}
{{- define "braid.databaseKey" -}}
{{- $db := .root.Values.database -}}
{{- if $db.existingSecret -}}
{{- get $db (printf "%sSecretKey" .which) -}}
{{- else if get $db .which -}}
{{- kebabcase .which -}}
{{- end -}}
{{- end -}}

{{/* The key of the database Secret holding a direct (non-pooled) PostgreSQL URL: the migrate
     URL when one is set; empty otherwise. PgBouncer in transaction mode keeps no session, so
     with pooler=transaction one is required (migrations hold a session-level lock; pg_dump
     needs one snapshot and its session settings). */}}
{{- define "braid.directUrlKey" -}}
{{- $key := include "braid.databaseKey" (dict "root" . "which" "migrateUrl") -}}
{{- if and (eq .Values.database.pooler "transaction") (not $key) -}}
{{- $users := ternary "migrations (a session-level lock) and the backup CronJob's pg_dump (one snapshot, session settings)" "migrations (a session-level lock)" (eq .Values.backup.enabled true) -}}
{{- fail (printf "database.pooler=transaction: PgBouncer in transaction mode keeps no session, so %s need a direct (non-pooled) PostgreSQL URL: set database.migrateUrl (or database.migrateUrlSecretKey with existingSecret)" $users) -}}
{{- end -}}
{{- $key -}}
{{- end -}}

{{/* stringData of the Secrets the chart creates from inline values (the release's own, and the
     migration hook's twins: one definition, so they never differ). */}}
{{- define "braid.databaseSecretData" -}}
{{ .Values.database.secretKey }}: {{ required "database.url or database.existingSecret is required" .Values.database.url | quote }}
{{- with .Values.database.migrateUrl }}
migrate-url: {{ . | quote }}
{{- end }}
{{- with .Values.database.readUrl }}
read-url: {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "braid.internalSecretData" -}}
{{ .Values.internalAuth.secretKey }}: {{ required "internalAuth.key or internalAuth.existingSecret is required (the key signing calls between the services)" .Values.internalAuth.key | quote }}
{{- end -}}

{{- define "braid.redisEnabled" -}}
{{- if or .Values.redis.url .Values.redis.existingSecret }}true{{ end -}}
{{- end -}}

{{/* "true" when the pod of .key (a service, or "migrate") connects to PostgreSQL. */}}
{{- define "braid.usesDatabase" -}}
{{- if or (has .key (list "ingest" "vectorSearch" "migrate")) (and (eq .key "gateway") .root.Values.audit.enabled) }}true{{ end -}}
{{- end -}}

{{/* "true" when the pod of .key connects to Redis. */}}
{{- define "braid.usesRedis" -}}
{{- if and (has .key (list "embedding" "gateway")) (include "braid.redisEnabled" .root) }}true{{ end -}}
{{- end -}}

{{- define "braid.secretsDir" -}}/run/secrets/braid{{- end -}}

{{/* Sources of the projected `secrets` volume of .key: keys and CA files, never env values.
     .internalSecret overrides the internal key's Secret (the migration hook's twin). */}}
{{- define "braid.secretSources" -}}
{{- $root := .root -}}
{{- $V := $root.Values -}}
- secret:
    name: {{ .internalSecret | default (include "braid.internalSecret" $root) }}
    items: [{ key: {{ $V.internalAuth.secretKey }}, path: internal-key }]
{{- if and (eq .key "gateway") (eq $V.gatewayAuth.mode "jwt") $V.gatewayAuth.hs256.existingSecret }}
- secret:
    name: {{ $V.gatewayAuth.hs256.existingSecret }}
    items: [{ key: {{ $V.gatewayAuth.hs256.secretKey }}, path: jwt-hs256 }]
{{- end }}
{{- if and (include "braid.usesDatabase" .) $V.database.tls.rootCertSecret }}
- secret:
    name: {{ $V.database.tls.rootCertSecret }}
    items: [{ key: {{ $V.database.tls.rootCertKey }}, path: postgres-ca.crt }]
{{- end }}
{{- if and (include "braid.usesRedis" .) $V.redis.tls.caSecret }}
- secret:
    name: {{ $V.redis.tls.caSecret }}
    items: [{ key: {{ $V.redis.tls.caKey }}, path: redis-ca.crt }]
{{- end }}
{{- $t := $V.grpcTls }}
{{- if and (eq .key "gateway") $t.gateway.secret }}
- secret:
    name: {{ $t.gateway.secret }}
    items:
      - { key: tls.crt, path: gateway-tls.crt }
      - { key: tls.key, path: gateway-tls.key }
{{- end }}
{{- if and $t.internal.secret (has .key (list "gateway" "ingest" "embedding" "vectorSearch" "textSearch")) }}
- secret:
    name: {{ $t.internal.secret }}
    items:
      - { key: tls.crt, path: internal-tls.crt }
      - { key: tls.key, path: internal-tls.key }
      - { key: ca.crt, path: internal-ca.crt }
{{- end }}
{{- if and (eq .key "textSearch") (not (include "braid.textSearchStateful" $root)) }}
{{- $es := $V.textSearch.elasticsearch }}
{{- if $es.auth.existingSecret }}
- secret:
    name: {{ $es.auth.existingSecret }}
    items:
      {{- if $es.auth.apiKeyKey }}
      - { key: {{ $es.auth.apiKeyKey }}, path: elasticsearch-api-key }
      {{- end }}
      {{- if $es.auth.username }}
      - { key: {{ required "textSearch.elasticsearch.auth.passwordKey is required with a username" $es.auth.passwordKey }}, path: elasticsearch-password }
      {{- end }}
{{- end }}
{{- if $es.tls.caSecret }}
- secret:
    name: {{ $es.tls.caSecret }}
    items: [{ key: {{ $es.tls.caKey }}, path: elasticsearch-ca.crt }]
{{- else if $es.tls.caConfigMap }}
- configMap:
    name: {{ $es.tls.caConfigMap }}
    items: [{ key: {{ $es.tls.caKey }}, path: elasticsearch-ca.crt }]
{{- end }}
{{- end }}
{{- end -}}

{{/* `[database]` env of prefix .prefix (BRAID_<SERVICE>__) under section .section; .secret
     overrides the database Secret (the migration hook's twin). */}}
{{- define "braid.databaseEnv" -}}
{{- $root := .root -}}
{{- $db := $root.Values.database -}}
{{- $p := printf "%s%s__" .prefix .section -}}
{{- $secret := .secret | default (include "braid.databaseSecret" $root) -}}
- name: {{ $p }}URL
  valueFrom:
    secretKeyRef: { name: {{ $secret }}, key: {{ $db.secretKey }} }
- { name: {{ $p }}MAX_CONNECTIONS, value: {{ $db.maxConnections | quote }} }
- { name: {{ $p }}POOLER, value: {{ $db.pooler | quote }} }
{{- with include "braid.databaseKey" (dict "root" $root "which" "migrateUrl") }}
- name: {{ $p }}MIGRATE_URL
  valueFrom:
    secretKeyRef: { name: {{ $secret }}, key: {{ . }} }
{{- end }}
{{- with $db.tls.sslMode }}
- { name: {{ $p }}SSL_MODE, value: {{ . | quote }} }
{{- end }}
{{- if $db.tls.rootCertSecret }}
- { name: {{ $p }}SSL_ROOT_CERT, value: {{ include "braid.secretsDir" $root }}/postgres-ca.crt }
{{- end }}
{{- if .replica }}
{{- with include "braid.databaseKey" (dict "root" $root "which" "readUrl") }}
- name: {{ $p }}READ_URL
  valueFrom:
    secretKeyRef: { name: {{ $secret }}, key: {{ . }} }
- { name: {{ $p }}MAX_REPLICA_LAG_MS, value: {{ $db.maxReplicaLagMs | quote }} }
{{- end }}
{{- end }}
{{- with .migrate }}
- { name: {{ $p }}MIGRATE, value: {{ . | quote }} }
{{- end }}
{{- end -}}

{{/* Redis URL (and CA) env of one setting, e.g. .setting = CACHE__REDIS (from BRAID_X__). */}}
{{- define "braid.redisEnv" -}}
{{- $V := .root.Values -}}
- name: {{ .prefix }}{{ .setting }}_URL
  valueFrom:
    secretKeyRef: { name: {{ include "braid.redisSecret" .root }}, key: {{ $V.redis.secretKey }} }
{{- if $V.redis.tls.caSecret }}
- { name: {{ .prefix }}{{ .setting }}_CA_FILE, value: {{ include "braid.secretsDir" .root }}/redis-ca.crt }
{{- end }}
{{- end -}}

{{/* Backend settings of service .key: credentials (files from the `secrets` volume), database,
     Redis, the text index. String values are TOML-quoted so "-1" or "true" stay strings. */}}
{{- define "braid.settingsEnv" -}}
{{- $root := .root -}}
{{- $V := $root.Values -}}
{{- $key := .key -}}
{{- $p := .prefix -}}
{{- $dir := include "braid.secretsDir" $root -}}
- { name: {{ $p }}INTERNAL_AUTH__KEY__FILE, value: {{ $dir }}/internal-key }
{{- if has $key (list "ingest" "vectorSearch") }}
{{ include "braid.databaseEnv" (dict "root" $root "prefix" $p "section" "DATABASE" "replica" (eq $key "vectorSearch") "migrate" (toString (not $V.migrations.enabled))) }}
{{- end }}
{{- if eq $key "gateway" }}
{{- if eq $V.gatewayAuth.mode "disabled" }}
- { name: {{ $p }}AUTH__MODE, value: disabled }
{{- else }}
{{- if and (not $V.gatewayAuth.hs256.existingSecret) (not $V.gatewayAuth.jwksUrl) }}
{{- fail "gatewayAuth: set gatewayAuth.hs256.existingSecret or gatewayAuth.jwksUrl (or mode: disabled)" }}
{{- end }}
{{- if $V.gatewayAuth.hs256.existingSecret }}
- { name: {{ $p }}AUTH__HS256__FILE, value: {{ $dir }}/jwt-hs256 }
{{- end }}
{{- with $V.gatewayAuth.jwksUrl }}
- { name: {{ $p }}AUTH__JWKS_URL, value: {{ toJson . | quote }} }
{{- end }}
- { name: {{ $p }}AUTH__ISSUER, value: {{ toJson $V.gatewayAuth.issuer | quote }} }
- { name: {{ $p }}AUTH__AUDIENCE, value: {{ toJson $V.gatewayAuth.audience | quote }} }
{{- end }}
{{- if $V.audit.enabled }}
{{ include "braid.databaseEnv" (dict "root" $root "prefix" $p "section" "AUDIT__DATABASE" "replica" false "migrate" "") }}
- { name: {{ $p }}AUDIT__QUERY_TEXT, value: {{ toJson $V.audit.queryText | quote }} }
- { name: {{ $p }}AUDIT__RETENTION_DAYS, value: {{ $V.audit.retentionDays | quote }} }
{{- end }}
{{- if include "braid.redisEnabled" $root }}
{{ include "braid.redisEnv" (dict "root" $root "prefix" $p "setting" "QUERY_CACHE__REDIS") }}
{{ include "braid.redisEnv" (dict "root" $root "prefix" $p "setting" "LIMITS__REDIS") }}
{{- end }}
{{- end }}
{{- if and (eq $key "embedding") (include "braid.redisEnabled" $root) }}
{{ include "braid.redisEnv" (dict "root" $root "prefix" $p "setting" "CACHE__REDIS") }}
{{- end }}
{{- if eq $key "textSearch" }}
{{- if include "braid.textSearchStateful" $root }}
- { name: {{ $p }}INDEX__DIR, value: /data/tantivy }
{{- else }}
{{- $es := $V.textSearch.elasticsearch }}
{{- $e := printf "%sINDEX__ELASTICSEARCH__" $p }}
{{- if not $es.urls }}
{{- fail "textSearch.elasticsearch.urls is required with textSearch.backend=elasticsearch" }}
{{- end }}
- { name: {{ $p }}INDEX__BACKEND, value: elasticsearch }
- { name: {{ $e }}URLS, value: {{ toJson $es.urls | quote }} }
- { name: {{ $e }}INDEX_PREFIX, value: {{ toJson $es.indexPrefix | quote }} }
- { name: {{ $e }}LAYOUT, value: {{ toJson $es.layout | quote }} }
- { name: {{ $e }}SHARDS, value: {{ $es.shards | quote }} }
- { name: {{ $e }}REPLICAS, value: {{ $es.replicas | quote }} }
- { name: {{ $e }}REFRESH_INTERVAL, value: {{ toJson $es.refreshInterval | quote }} }
- { name: {{ $e }}BULK_REFRESH_INTERVAL, value: {{ toJson $es.bulkRefreshInterval | quote }} }
- { name: {{ $e }}REQUEST_TIMEOUT_MS, value: {{ $es.requestTimeoutMs | quote }} }
{{- if and $es.auth.existingSecret $es.auth.apiKeyKey }}
- { name: {{ $e }}API_KEY_FILE, value: {{ $dir }}/elasticsearch-api-key }
{{- end }}
{{- if and $es.auth.existingSecret $es.auth.username }}
- { name: {{ $e }}USERNAME, value: {{ toJson $es.auth.username | quote }} }
- { name: {{ $e }}PASSWORD_FILE, value: {{ $dir }}/elasticsearch-password }
{{- end }}
{{- if or $es.tls.caSecret $es.tls.caConfigMap }}
- { name: {{ $e }}CA_FILE, value: {{ $dir }}/elasticsearch-ca.crt }
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* "true" when service .key serves gRPC over TLS (grpcTls). */}}
{{- define "braid.servesTls" -}}
{{- $t := .root.Values.grpcTls -}}
{{- if eq .key "gateway" -}}
{{- if $t.gateway.secret }}true{{ end -}}
{{- else if $t.internal.secret }}true{{ end -}}
{{- end -}}

{{/* `server.tls` and the downstream clients' `tls` env of service .key (grpcTls). */}}
{{- define "braid.grpcTlsEnv" -}}
{{- $root := .root -}}
{{- $t := $root.Values.grpcTls -}}
{{- $p := .prefix -}}
{{- $dir := include "braid.secretsDir" $root -}}
{{- if and (eq .key "gateway") $t.gateway.secret }}
- { name: {{ $p }}SERVER__TLS__CERT_FILE, value: {{ $dir }}/gateway-tls.crt }
- { name: {{ $p }}SERVER__TLS__KEY_FILE, value: {{ $dir }}/gateway-tls.key }
- { name: {{ $p }}SERVER__TLS__RELOAD_MS, value: {{ $t.reloadMs | quote }} }
{{- end }}
{{- if $t.internal.secret }}
{{- if ne .key "gateway" }}
- { name: {{ $p }}SERVER__TLS__CERT_FILE, value: {{ $dir }}/internal-tls.crt }
- { name: {{ $p }}SERVER__TLS__KEY_FILE, value: {{ $dir }}/internal-tls.key }
- { name: {{ $p }}SERVER__TLS__RELOAD_MS, value: {{ $t.reloadMs | quote }} }
{{- if $t.internal.requireClientCert }}
- { name: {{ $p }}SERVER__TLS__CLIENT_CA_FILE, value: {{ $dir }}/internal-ca.crt }
{{- end }}
{{- end }}
{{- range .calls }}
- { name: {{ $p }}{{ . }}__TLS__CA_FILE, value: {{ $dir }}/internal-ca.crt }
- { name: {{ $p }}{{ . }}__TLS__CERT_FILE, value: {{ $dir }}/internal-tls.crt }
- { name: {{ $p }}{{ . }}__TLS__KEY_FILE, value: {{ $dir }}/internal-tls.key }
- { name: {{ $p }}{{ . }}__TLS__RELOAD_MS, value: {{ $t.reloadMs | quote }} }
{{- end }}
{{- end }}
{{- end -}}

{{- define "braid.terminationGrace" -}}
{{- add .Values.shutdown.preStopSeconds .Values.shutdown.drainSeconds 10 -}}
{{- end -}}

{{/* The pod template of service .key. */}}
{{- define "braid.podTemplate" -}}
{{- $root := .root -}}
{{- $key := .key -}}
{{- $catalog := include "braid.catalog" $root | fromYaml -}}
{{- $svc := get $catalog $key -}}
{{- $v := get $root.Values.services $key -}}
{{- $image := ternary $root.Values.embeddingImage $root.Values.image (eq $key "embedding") -}}
{{- $prefix := printf "BRAID_%s__" $svc.section -}}
{{- $tls := include "braid.servesTls" (dict "root" $root "key" $key) -}}
metadata:
  labels:
    {{- include "braid.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $svc.name }}
  annotations:
    # A changed service config or chart-created Secret rolls the pods (they read both only at
    # start). An existingSecret's content is not visible here: roll after rotating it.
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    checksum/secret: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
    {{- with $root.Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "braid.serviceAccountName" $root }}
  automountServiceAccountToken: false
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ include "braid.terminationGrace" $root }}
  {{- if $root.Values.topologySpread.enabled }}
  topologySpreadConstraints:
    - maxSkew: {{ $root.Values.topologySpread.maxSkew }}
      topologyKey: {{ $root.Values.topologySpread.topologyKey }}
      whenUnsatisfiable: {{ $root.Values.topologySpread.whenUnsatisfiable }}
      labelSelector:
        matchLabels:
          {{- include "braid.selector" (dict "root" $root "component" $svc.name) | nindent 10 }}
  {{- end }}
  {{- with $root.Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ $svc.name }}
      image: "{{ $image.repository }}:{{ default $root.Chart.AppVersion $image.tag }}"
      imagePullPolicy: {{ $image.pullPolicy }}
      command: [{{ $svc.binary | quote }}]
      {{- if $v.config }}
      args: ["--config", "/etc/braid/{{ $svc.name }}.toml"]
      {{- end }}
      ports:
        - { name: grpc, containerPort: {{ $v.grpcPort }}, protocol: TCP }
        - { name: admin, containerPort: {{ $v.adminPort }}, protocol: TCP }
      env:
        - { name: {{ $prefix }}SERVER__GRPC_ADDR, value: "0.0.0.0:{{ $v.grpcPort }}" }
        - { name: {{ $prefix }}SERVER__ADMIN_ADDR, value: "0.0.0.0:{{ $v.adminPort }}" }
        - { name: {{ $prefix }}SERVER__SHUTDOWN_GRACE_MS, value: {{ mul $root.Values.shutdown.drainSeconds 1000 | quote }} }
        - { name: {{ $prefix }}TELEMETRY__LOG_FILTER, value: {{ $root.Values.logFilter | quote }} }
        {{- with $root.Values.otlpEndpoint }}
        - { name: {{ $prefix }}TELEMETRY__OTLP_ENDPOINT, value: {{ . | quote }} }
        {{- end }}
        - { name: BRAID_HEALTH_SERVICE, value: {{ $svc.name }} }
        {{- if $tls }}
        - { name: BRAID_HEALTH_ADDR, value: "https://127.0.0.1:{{ $v.grpcPort }}" }
        {{- if ne $key "gateway" }}
        # `braidctl health` in the pod: the internal CA, a client certificate, the Service name.
        - { name: BRAID_TLS_CA, value: {{ include "braid.secretsDir" $root }}/internal-ca.crt }
        - { name: BRAID_TLS_CERT, value: {{ include "braid.secretsDir" $root }}/internal-tls.crt }
        - { name: BRAID_TLS_KEY, value: {{ include "braid.secretsDir" $root }}/internal-tls.key }
        - { name: BRAID_TLS_SERVER_NAME, value: {{ include "braid.host" (dict "root" $root "key" $key) }} }
        {{- end }}
        {{- else }}
        - { name: BRAID_HEALTH_ADDR, value: "127.0.0.1:{{ $v.grpcPort }}" }
        {{- end }}
        {{- $scheme := ternary "https" "http" (not (not $root.Values.grpcTls.internal.secret)) }}
        {{- $sections := list }}
        {{- range $svc.calls }}
        {{- $down := get $catalog . }}
        {{- $sections = append $sections $down.section }}
        - name: {{ $prefix }}{{ $down.section }}__ENDPOINT
          value: "{{ $scheme }}://{{ include "braid.host" (dict "root" $root "key" .) }}:{{ (get $root.Values.services .).grpcPort }}"
        {{- end }}
        {{- include "braid.grpcTlsEnv" (dict "root" $root "key" $key "prefix" $prefix "calls" $sections) | nindent 8 }}
        {{- include "braid.settingsEnv" (dict "root" $root "key" $key "prefix" $prefix) | nindent 8 }}
        {{- with $root.Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with $v.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $root.Values.extraEnvFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      # Started = the process serves (model loaded, listeners up), whatever its dependencies: a
      # pod that starts during a database outage waits unready instead of being killed in a
      # loop. Ready = its own gRPC health status, NOT_SERVING while a hard dependency is down
      # (over TLS, which the kubelet's gRPC probe cannot speak: the same status on /healthz).
      startupProbe:
        httpGet: { path: /livez, port: admin }
        periodSeconds: {{ $root.Values.probes.startup.periodSeconds }}
        failureThreshold: {{ $root.Values.probes.startup.failureThreshold }}
      readinessProbe:
        {{- if $tls }}
        httpGet: { path: /healthz, port: admin }
        {{- else }}
        grpc: { port: {{ $v.grpcPort }}, service: {{ $svc.grpc }} }
        {{- end }}
        periodSeconds: {{ $root.Values.probes.readiness.periodSeconds }}
        failureThreshold: {{ $root.Values.probes.readiness.failureThreshold }}
      livenessProbe:
        httpGet: { path: /livez, port: admin }
        periodSeconds: {{ $root.Values.probes.liveness.periodSeconds }}
        failureThreshold: {{ $root.Values.probes.liveness.failureThreshold }}
      lifecycle:
        preStop:
          exec:
            command: ["sleep", "{{ $root.Values.shutdown.preStopSeconds }}"]
      resources:
        {{- toYaml $v.resources | nindent 8 }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
      volumeMounts:
        - { name: tmp, mountPath: /tmp }
        - { name: secrets, mountPath: {{ include "braid.secretsDir" $root }}, readOnly: true }
        {{- if $v.config }}
        - { name: config, mountPath: /etc/braid, readOnly: true }
        {{- end }}
        {{- if and (eq $key "textSearch") (include "braid.textSearchStateful" $root) }}
        - { name: index, mountPath: /data }
        {{- end }}
  volumes:
    - name: tmp
      emptyDir: { sizeLimit: 256Mi }
    - name: secrets
      projected:
        defaultMode: 0440
        sources:
          {{- include "braid.secretSources" (dict "root" $root "key" $key) | nindent 10 }}
    {{- if $v.config }}
    - name: config
      configMap:
        name: {{ include "braid.fullname" $root }}-config
        items:
          - { key: {{ $svc.name }}.toml, path: {{ $svc.name }}.toml }
    {{- end }}
{{- end -}}
