{{/* vim: set filetype=mustache: */}}

{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "floodgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name. If the release name already contains the chart name it is used
as is (release "floodgate" → "floodgate", not "floodgate-floodgate").
*/}}
{{- define "floodgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "floodgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels shared by every object; pass (dict "ctx" $ "component" "app"). */}}
{{- define "floodgate.labels" -}}
helm.sh/chart: {{ include "floodgate.chart" .ctx }}
{{ include "floodgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: floodgate
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels; pass (dict "ctx" $ "component" "app"). */}}
{{- define "floodgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "floodgate.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Object names per component. */}}
{{- define "floodgate.app.fullname" -}}
{{- printf "%s-app" (include "floodgate.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "floodgate.operator.fullname" -}}
{{- printf "%s-operator" (include "floodgate.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "floodgate.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "floodgate.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "floodgate.redis.fullname" -}}
{{- printf "%s-redis" (include "floodgate.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "floodgate.app.serviceAccountName" -}}
{{- if .Values.app.serviceAccount.create }}
{{- default (include "floodgate.app.fullname" .) .Values.app.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.app.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "floodgate.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "floodgate.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The namespace whose Campaigns and QueueConfigs the operator serves: operator.watchNamespace,
by default the release namespace; "" (every namespace) only with operator.watchAllNamespaces.
*/}}
{{- define "floodgate.operator.watchNamespace" -}}
{{- if .Values.operator.watchAllNamespaces }}
{{- if .Values.operator.watchNamespace }}
{{- fail "operator.watchNamespace and operator.watchAllNamespaces=true exclude each other" }}
{{- end }}
{{- else }}
{{- default .Release.Namespace .Values.operator.watchNamespace }}
{{- end }}
{{- end }}

{{/*
True (non-empty) when the operator owns floodgate-app's replica count: the chart then leaves
spec.replicas out of the app Deployment, so neither `helm upgrade` nor a GitOps sync of
`helm template` output resets what Campaigns scaled.
*/}}
{{- define "floodgate.app.replicasOwnedByOperator" -}}
{{- if and .Values.operator.enabled .Values.operator.scalesApp }}true{{ end }}
{{- end }}

{{- define "floodgate.operator.leaseName" -}}
{{- default (include "floodgate.operator.fullname" .) .Values.operator.leaderElection.leaseName }}
{{- end }}

{{/* Image reference; pass (dict "image" .Values.app.image "ctx" $). */}}
{{- define "floodgate.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) }}
{{- end }}

{{/* Name of the Secret that holds jwt-secret, database-url and redis-url. */}}
{{- define "floodgate.secretName" -}}
{{- default (include "floodgate.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/*
Environment shared by the app and the operator: the one Redis both must use, and its key
prefix. The operator writes the runtime config the app reads, so these must never diverge.
*/}}
{{- define "floodgate.redisEnv" -}}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "floodgate.secretName" . }}
      key: {{ .Values.secrets.keys.redisUrl }}
- name: FLOODGATE_REDIS_PREFIX
  value: {{ .Values.redisPrefix | quote }}
- name: FLOODGATE_REDIS_MODE
  value: {{ .Values.redisMode | quote }}
{{- if .Values.tls.redisCaSecret }}
- name: FLOODGATE_REDIS_CA_FILE
  value: /etc/floodgate/tls/redis/ca.crt
{{- end }}
{{- if .Values.tls.redisClientCertSecret }}
- name: FLOODGATE_REDIS_CLIENT_CERT_FILE
  value: /etc/floodgate/tls/redis-client/tls.crt
- name: FLOODGATE_REDIS_CLIENT_KEY_FILE
  value: /etc/floodgate/tls/redis-client/tls.key
{{- end }}
{{- end }}

{{/*
TLS material mounted from the Secrets under .Values.tls (docs/deploy.md, "TLS and
PgBouncer"): `names` lists which of postgres, redis, redis-client, prometheus this pod uses.
*/}}
{{- define "floodgate.tlsMounts" -}}
{{- $t := .ctx.Values.tls }}
{{- $all := dict "postgres" $t.postgresCaSecret "redis" $t.redisCaSecret "redis-client" $t.redisClientCertSecret "prometheus" $t.prometheusCaSecret }}
{{- range $n := .names }}
{{- if get $all $n }}
- name: tls-{{ $n }}
  mountPath: /etc/floodgate/tls/{{ $n }}
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{- define "floodgate.tlsVolumes" -}}
{{- $t := .ctx.Values.tls }}
{{- $all := dict "postgres" $t.postgresCaSecret "redis" $t.redisCaSecret "redis-client" $t.redisClientCertSecret "prometheus" $t.prometheusCaSecret }}
{{- range $n := .names }}
{{- with get $all $n }}
- name: tls-{{ $n }}
  secret:
    secretName: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{/* Environment of the app container (and its migrate init container). */}}
{{- define "floodgate.app.env" -}}
- name: FLOODGATE_ENV
  value: {{ .Values.app.environment | quote }}
- name: FLOODGATE_LISTEN_ADDR
  value: {{ printf "0.0.0.0:%d" (int .Values.app.port) | quote }}
- name: FLOODGATE_REPLICA_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: RUST_LOG
  value: {{ .Values.app.logLevel | quote }}
- name: FLOODGATE_DB_POOL_SIZE
  value: {{ .Values.app.dbPoolSize | quote }}
- name: FLOODGATE_REQUEST_TIMEOUT_MS
  value: {{ .Values.app.requestTimeoutMs | quote }}
- name: FLOODGATE_MAX_IN_FLIGHT
  value: {{ .Values.app.maxInFlight | quote }}
- name: FLOODGATE_MAX_CONNECTIONS
  value: {{ .Values.app.maxConnections | quote }}
- name: FLOODGATE_MAX_IN_FLIGHT_BYTES
  value: {{ .Values.app.maxInFlightBytes | int64 | quote }}
- name: FLOODGATE_STALE_MAX_BYTES
  value: {{ .Values.app.staleMaxBytes | int64 | quote }}
- name: FLOODGATE_SHUTDOWN_DELAY_SECS
  value: {{ .Values.app.shutdownDelaySeconds | quote }}
{{- with .Values.app.trustedProxies }}
- name: FLOODGATE_TRUSTED_PROXIES
  value: {{ join "," . | quote }}
{{- end }}
{{- with .Values.app.clientIpHeader }}
- name: FLOODGATE_CLIENT_IP_HEADER
  value: {{ . | quote }}
{{- end }}
- name: FLOODGATE_PASSWORD_HASH_CONCURRENCY
  value: {{ .Values.app.passwordHashConcurrency | quote }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "floodgate.secretName" . }}
      key: {{ .Values.secrets.keys.databaseUrl }}
- name: FLOODGATE_DB_POOLER
  value: {{ .Values.app.dbPooler | quote }}
{{- if eq .Values.app.dbPooler "transaction" }}
- name: FLOODGATE_DB_MIGRATION_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "floodgate.secretName" . }}
      key: {{ .Values.secrets.keys.migrationDatabaseUrl }}
{{- end }}
- name: FLOODGATE_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "floodgate.secretName" . }}
      key: {{ .Values.secrets.keys.jwtSecret }}
{{ include "floodgate.redisEnv" . }}
{{ include "floodgate.app.imagesEnv" . }}
{{- with .Values.app.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Checks that values.schema.json cannot express (cross-field rules). Included once, from the
app Deployment, so a bad combination fails the render with a readable message.
*/}}
{{- define "floodgate.validate" -}}
{{- $drain := add .Values.app.preStopSleepSeconds .Values.app.shutdownDelaySeconds (div .Values.app.requestTimeoutMs 1000) }}
{{- if le (int .Values.app.terminationGracePeriodSeconds) (int $drain) }}
{{- fail (printf "app.terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds + shutdownDelaySeconds + requestTimeoutMs/1000 (%d), or SIGKILL cuts requests that are still draining" (int .Values.app.terminationGracePeriodSeconds) (int $drain)) }}
{{- end }}
{{- include "floodgate.app.imagesValidate" . }}
{{- if and .Values.app.clientIpHeader (not .Values.app.trustedProxies) }}
{{- fail "app.clientIpHeader needs app.trustedProxies: the CIDRs of the proxies whose header is believed (the app refuses to start otherwise)" }}
{{- end }}
{{- if not .Values.secrets.existingSecret }}
{{- if and (not .Values.postgresql.enabled) (not .Values.secrets.databaseUrl) }}
{{- fail "postgresql.enabled=false: set secrets.databaseUrl (your managed PostgreSQL) or secrets.existingSecret" }}
{{- end }}
{{- if and (not .Values.redis.enabled) (not .Values.secrets.redisUrl) }}
{{- fail "redis.enabled=false: set secrets.redisUrl (your managed Redis) or secrets.existingSecret" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Default topology spread for a component: zones first, then nodes. */}}
{{- define "floodgate.topologySpread" -}}
- maxSkew: 1
  topologyKey: topology.kubernetes.io/zone
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "floodgate.selectorLabels" . | nindent 6 }}
  matchLabelKeys:
    - pod-template-hash
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "floodgate.selectorLabels" . | nindent 6 }}
  matchLabelKeys:
    - pod-template-hash
{{- end }}

{{/* NetworkPolicy egress to the cluster DNS (networkPolicy.dns), for the app and the operator. */}}
{{- define "floodgate.netpol.dnsEgress" -}}
- to:
    {{- toYaml .Values.networkPolicy.dns | nindent 4 }}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}

{{/* Egress to one database: pass (dict "ctx" $ "component" "redis" "enabled" bool "port" 6379 "external" .Values.networkPolicy.externalRedis). */}}
{{- define "floodgate.netpol.databaseEgress" -}}
{{- if .enabled -}}
- to:
    - podSelector:
        matchLabels:
          {{- include "floodgate.selectorLabels" (dict "ctx" .ctx "component" .component) | nindent 10 }}
  ports:
    - port: {{ .port }}
      protocol: TCP
{{- else -}}
- ports:
    - port: {{ .external.port }}
      protocol: TCP
  {{- with .external.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}

{{/* This release's `helm test` pods, as a NetworkPolicyPeer. */}}
{{- define "floodgate.netpol.testPods" -}}
- podSelector:
    matchLabels:
      {{- include "floodgate.selectorLabels" (dict "ctx" . "component" "test") | nindent 6 }}
{{- end }}
