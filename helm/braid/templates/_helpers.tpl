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
metadata:
  labels:
    {{- include "braid.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $svc.name }}
  annotations:
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
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
        - { name: BRAID_HEALTH_ADDR, value: "127.0.0.1:{{ $v.grpcPort }}" }
        {{- range $svc.calls }}
        {{- $down := get $catalog . }}
        - name: {{ $prefix }}{{ $down.section }}__ENDPOINT
          value: "http://{{ include "braid.host" (dict "root" $root "key" .) }}:{{ (get $root.Values.services .).grpcPort }}"
        {{- end }}
        {{- if has $key (list "ingest" "vectorSearch") }}
        - name: {{ $prefix }}DATABASE__URL
          valueFrom:
            secretKeyRef: { name: {{ include "braid.databaseSecret" $root }}, key: {{ $root.Values.database.secretKey }} }
        - { name: {{ $prefix }}DATABASE__MAX_CONNECTIONS, value: {{ $root.Values.database.maxConnections | quote }} }
        - { name: {{ $prefix }}DATABASE__MIGRATE, value: {{ not $root.Values.migrations.enabled | quote }} }
        {{- end }}
        {{- if and (eq $key "embedding") (or $root.Values.redis.url $root.Values.redis.existingSecret) }}
        - name: {{ $prefix }}CACHE__REDIS_URL
          valueFrom:
            secretKeyRef: { name: {{ include "braid.redisSecret" $root }}, key: {{ $root.Values.redis.secretKey }} }
        {{- end }}
        {{- if eq $key "textSearch" }}
        {{- if include "braid.textSearchStateful" $root }}
        - { name: {{ $prefix }}INDEX__DIR, value: /data/tantivy }
        {{- else }}
        - { name: {{ $prefix }}INDEX__BACKEND, value: elasticsearch }
        - { name: {{ $prefix }}INDEX__ELASTICSEARCH__URL, value: {{ required "textSearch.elasticsearch.url is required with the elasticsearch backend" $root.Values.textSearch.elasticsearch.url | quote }} }
        {{- end }}
        {{- end }}
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
      startupProbe:
        grpc: { port: {{ $v.grpcPort }}, service: {{ $svc.grpc }} }
        periodSeconds: {{ $root.Values.probes.startup.periodSeconds }}
        failureThreshold: {{ $root.Values.probes.startup.failureThreshold }}
      readinessProbe:
        grpc: { port: {{ $v.grpcPort }}, service: {{ $svc.grpc }} }
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
        {{- if $v.config }}
        - { name: config, mountPath: /etc/braid, readOnly: true }
        {{- end }}
        {{- if and (eq $key "textSearch") (include "braid.textSearchStateful" $root) }}
        - { name: index, mountPath: /data }
        {{- end }}
  volumes:
    - name: tmp
      emptyDir: { sizeLimit: 256Mi }
    {{- if $v.config }}
    - name: config
      configMap:
        name: {{ include "braid.fullname" $root }}-config
        items:
          - { key: {{ $svc.name }}.toml, path: {{ $svc.name }}.toml }
    {{- end }}
{{- end -}}
