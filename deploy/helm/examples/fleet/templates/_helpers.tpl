{{/* The headless Service in front of every gateway's pod: what the collector resolves. */}}
{{- define "fleet.gateways" -}}
{{ .Release.Name }}-gateways
{{- end }}

{{- define "fleet.collector" -}}
{{ .Release.Name }}-collector
{{- end }}

{{/* The labels every gateway's pod carries, whichever alias rendered it (the dunetrace-sidecar
chart's selector labels without its name, which is the alias). */}}
{{- define "fleet.gatewaySelector" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "fleet.collectorSelector" -}}
app.kubernetes.io/name: otel-collector
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: collector
{{- end }}

{{- define "fleet.collectorLabels" -}}
{{ include "fleet.collectorSelector" . }}
app.kubernetes.io/version: {{ .Values.collector.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}
