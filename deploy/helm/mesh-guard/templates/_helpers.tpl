{{/*
Labels on every object: the two that deploy/base sets, then the ones Helm charts add by
convention (test/helm.test.ts ignores exactly these four when it compares with kustomize).
*/}}
{{- define "mesh-guard.labels" -}}
app.kubernetes.io/name: mesh-guard
app.kubernetes.io/part-of: mesh-guard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "mesh-guard.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end }}

{{- define "mesh-guard.tlsSecretName" -}}
{{- if .Values.certificates.certManager.enabled -}}mesh-guard-tls{{- else -}}{{ required "certificates.secretName is required" .Values.certificates.secretName }}{{- end -}}
{{- end }}
