{{- /*
A `helm test` Pod running one shell check in the tests image (curl on Alpine, as user 100).
Pass (dict "ctx" $ "name" "readyz" "script" "..." "env" (list ...) "serviceAccount" "")
(serviceAccount: one whose token the check needs, created by a hook of weight -5).
The check reads its target from the environment, so the same script runs outside the
cluster too (tests/cluster runs them against the real API server and operator).
*/ -}}
{{- define "floodgate.testPod" -}}
{{- $ctx := .ctx }}
apiVersion: v1
kind: Pod
metadata:
  name: {{ printf "%s-test-%s" (include "floodgate.fullname" $ctx) .name | trunc 63 | trimSuffix "-" }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "floodgate.labels" (dict "ctx" $ctx "component" "test") | nindent 4 }}
  annotations:
    helm.sh/hook: test
    helm.sh/hook-weight: "0"
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  restartPolicy: Never
  {{- if .serviceAccount }}
  serviceAccountName: {{ .serviceAccount }}
  automountServiceAccountToken: true
  {{- else }}
  automountServiceAccountToken: false
  {{- end }}
  {{- with $ctx.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 100
    runAsGroup: 101
    seccompProfile:
      type: RuntimeDefault
  containers:
    - name: {{ .name }}
      image: {{ printf "%s:%s" $ctx.Values.tests.image.repository $ctx.Values.tests.image.tag }}
      imagePullPolicy: {{ $ctx.Values.tests.image.pullPolicy }}
      command: ["sh", "-ec"]
      args:
        - {{ .script | quote }}
      env:
        {{- toYaml .env | nindent 8 }}
      resources:
        requests:
          cpu: 10m
          memory: 16Mi
        limits:
          memory: 32Mi
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        runAsNonRoot: true
        capabilities:
          drop: ["ALL"]
{{- end }}

{{- /* curl that fails on any HTTP error, retrying for about 30 s (a fresh install). */ -}}
{{- define "floodgate.testCurl" -}}
curl --fail --silent --show-error --max-time 5 --retry 10 --retry-delay 3 --retry-all-errors
{{- end }}
