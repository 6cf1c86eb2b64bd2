{{/*
Goods images (app.images): the app's image store settings, and the folder of the local store.
*/}}
{{- define "floodgate.app.imagesEnv" -}}
{{- $i := .Values.app.images }}
- name: FLOODGATE_IMAGE_STORE
  value: {{ $i.store | quote }}
- name: FLOODGATE_IMAGE_MAX_BYTES
  value: {{ $i.maxBytes | int64 | quote }}
- name: FLOODGATE_IMAGE_MAX_PER_GOODS
  value: {{ $i.maxPerGoods | quote }}
- name: FLOODGATE_IMAGE_THUMB_PX
  value: {{ $i.thumbPx | quote }}
{{- if eq $i.store "local" }}
- name: FLOODGATE_IMAGE_DIR
  value: /var/lib/floodgate/images
{{- else }}
- name: FLOODGATE_IMAGE_S3_BUCKET
  value: {{ $i.s3.bucket | quote }}
- name: FLOODGATE_IMAGE_S3_REGION
  value: {{ $i.s3.region | quote }}
{{- with $i.s3.endpoint }}
- name: FLOODGATE_IMAGE_S3_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- with $i.s3.credentials }}
{{- if .secretName }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .secretAccessKeyKey }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* The local store's folder: a claim of yours, or an emptyDir (one replica, trials). */}}
{{- define "floodgate.app.imagesVolumeMounts" -}}
{{- if eq .Values.app.images.store "local" }}
- name: images
  mountPath: /var/lib/floodgate/images
{{- end }}
{{- end }}

{{- define "floodgate.app.imagesVolumes" -}}
{{- $local := .Values.app.images.local }}
{{- if eq .Values.app.images.store "local" }}
- name: images
  {{- if $local.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ $local.existingClaim }}
  {{- else }}
  emptyDir:
    sizeLimit: {{ $local.emptyDirSizeLimit }}
  {{- end }}
{{- end }}
{{- end }}

{{- define "floodgate.app.imagesValidate" -}}
{{- if and (eq .Values.app.images.store "s3") (not .Values.app.images.s3.bucket) }}
{{- fail "app.images.store=s3 needs app.images.s3.bucket (the app refuses to start without FLOODGATE_IMAGE_S3_BUCKET)" }}
{{- end }}
{{- end }}
