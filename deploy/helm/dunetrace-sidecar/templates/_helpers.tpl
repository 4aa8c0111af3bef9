{{/*
Internal helpers. The named templates meant for your own chart are in _sidecar.tpl.
Every helper takes this chart's context: `.` here, `(index .Subcharts "dunetrace-sidecar")` from a
parent chart.
*/}}

{{/* The chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "dunetrace-sidecar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<chart>", or the release name alone when it already contains the chart name. */}}
{{- define "dunetrace-sidecar.fullname" -}}
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

{{- define "dunetrace-sidecar.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dunetrace-sidecar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dunetrace-sidecar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: {{ .Values.mode }}
{{- end }}

{{- define "dunetrace-sidecar.labels" -}}
helm.sh/chart: {{ include "dunetrace-sidecar.chart" . }}
{{ include "dunetrace-sidecar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "dunetrace-sidecar.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The daemon's config as YAML: the chart's mode-dependent listen addresses, `config` over them. */}}
{{- define "dunetrace-sidecar.configYaml" -}}
{{- $listen := ternary "0.0.0.0" "127.0.0.1" (eq .Values.mode "gateway") }}
{{- $defaults := dict
  "receiver" (dict "grpc_endpoint" (printf "%s:4317" $listen) "http_endpoint" (printf "%s:4318" $listen))
  "api" (dict "endpoint" "0.0.0.0:8002") }}
{{- if .Values.tls.existingSecret }}
{{- $dir := include "dunetrace-sidecar.tlsDir" . }}
{{- $files := dict "cert_file" (printf "%s/tls.crt" $dir) "key_file" (printf "%s/tls.key" $dir) }}
{{- if .Values.tls.receiver }}
{{- $receiverTls := deepCopy $files }}
{{- if .Values.tls.clientAuth }}
{{- $_ := set $receiverTls "client_ca_file" (printf "%s/ca.crt" $dir) }}
{{- end }}
{{- $_ := set $defaults.receiver "tls" $receiverTls }}
{{- end }}
{{- if .Values.tls.api }}
{{- $_ := set $defaults.api "tls" (deepCopy $files) }}
{{- end }}
{{- end }}
{{- toYaml (mustMergeOverwrite $defaults (deepCopy (.Values.config | default dict))) }}
{{- end }}

{{/* Where the TLS Secret is mounted (its own directory: a Secret volume mounted whole is updated
in place when the Secret is renewed; a subPath mount would never be). */}}
{{- define "dunetrace-sidecar.tlsDir" -}}
/etc/dunetrace-tls
{{- end }}

{{/* "HTTPS" when the API serves TLS (the probes follow it), else "HTTP". */}}
{{- define "dunetrace-sidecar.apiScheme" -}}
{{- $api := index (include "dunetrace-sidecar.configYaml" . | fromYaml) "api" | default dict }}
{{- $tls := get $api "tls" | default dict }}
{{- ternary "HTTPS" "HTTP" (not (empty (get $tls "cert_file"))) }}
{{- end }}

{{/* "true" when the OTLP receivers serve TLS. */}}
{{- define "dunetrace-sidecar.receiverTls" -}}
{{- $receiver := index (include "dunetrace-sidecar.configYaml" . | fromYaml) "receiver" | default dict }}
{{- $tls := get $receiver "tls" | default dict }}
{{- if get $tls "cert_file" -}}
true
{{- end }}
{{- end }}

{{/* The ports of the three listeners, read from the config: {grpc, http, api}. */}}
{{- define "dunetrace-sidecar.ports" -}}
{{- $config := include "dunetrace-sidecar.configYaml" . | fromYaml }}
{{- $listeners := dict "grpc" (list "receiver" "grpc_endpoint") "http" (list "receiver" "http_endpoint") "api" (list "api" "endpoint") }}
{{- $ports := dict }}
{{- range $name, $path := $listeners }}
{{- $section := index $config (index $path 0) }}
{{- $endpoint := "" }}
{{- if kindIs "map" $section }}
{{- $endpoint = get $section (index $path 1) | toString }}
{{- end }}
{{- $port := regexFind ":[0-9]+$" $endpoint | trimPrefix ":" }}
{{- if or (not $port) (eq (atoi $port) 0) }}
{{- fail (printf "config.%s must be host:port with a fixed port (the container and Service ports follow it), got %q" (join "." $path) $endpoint) }}
{{- end }}
{{- $_ := set $ports $name (atoi $port) }}
{{- end }}
{{- toYaml $ports }}
{{- end }}

{{/* The secret settings: values key -> environment variable the daemon reads. */}}
{{- define "dunetrace-sidecar.secretVariables" -}}
apiKeys: DUNETRACE_API_KEYS
otlpKeys: DUNETRACE_OTLP_KEYS
hashKey: DUNETRACE_HASH_KEY
policySecret: DUNETRACE_POLICY_SECRET
langfusePublicKey: LANGFUSE_PUBLIC_KEY
langfuseSecretKey: LANGFUSE_SECRET_KEY
anthropicApiKey: ANTHROPIC_API_KEY
openaiApiKey: OPENAI_API_KEY
slackWebhookUrl: SLACK_WEBHOOK_URL
webhookUrl: WEBHOOK_URL
webhookSecret: WEBHOOK_SECRET
{{- end }}

{{/* The secret settings given in values, as {VARIABLE: value}. */}}
{{- define "dunetrace-sidecar.secretValues" -}}
{{- $values := dict }}
{{- range $key, $variable := include "dunetrace-sidecar.secretVariables" . | fromYaml }}
{{- $value := index $.Values.secrets $key }}
{{- if kindIs "slice" $value }}
{{- $value = join "," $value }}
{{- end }}
{{- if $value }}
{{- $_ := set $values $variable $value }}
{{- end }}
{{- end }}
{{- toYaml $values }}
{{- end }}

{{/* "true" when the chart must generate an API key: nothing else provides keys or accepts the risk
of an API without them (it always listens beyond loopback: see dunetrace-sidecar.validate). */}}
{{- define "dunetrace-sidecar.generateApiKey" -}}
{{- $api := index (include "dunetrace-sidecar.configYaml" . | fromYaml) "api" | default dict }}
{{- $insecure := has (get $api "allow_insecure" | toString | lower) (list "true" "1" "yes" "on") }}
{{- if not (or $insecure .Values.secrets.existingSecret .Values.secrets.apiKeys) -}}
true
{{- end }}
{{- end }}

{{/* The variables the daemon's container takes from the Secret, sorted. */}}
{{- define "dunetrace-sidecar.secretKeys" -}}
{{- $keys := list }}
{{- if .Values.secrets.existingSecret }}
{{- $keys = values (include "dunetrace-sidecar.secretVariables" . | fromYaml) }}
{{- else }}
{{- $keys = keys (include "dunetrace-sidecar.secretValues" . | fromYaml) }}
{{- if include "dunetrace-sidecar.generateApiKey" . }}
{{- $keys = append $keys "DUNETRACE_API_KEYS" }}
{{- end }}
{{- end }}
{{- toYaml (sortAlpha (uniq $keys)) }}
{{- end }}

{{- define "dunetrace-sidecar.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "dunetrace-sidecar.fullname" .) }}
{{- end }}

{{/* Fails rendering, naming the value, on settings the daemon would refuse or the chart cannot
honour. Renders nothing. */}}
{{- define "dunetrace-sidecar.validate" -}}
{{- $config := include "dunetrace-sidecar.configYaml" . | fromYaml }}
{{- range $key, $variable := include "dunetrace-sidecar.secretVariables" . | fromYaml }}
{{- $setting := get (dict
  "DUNETRACE_API_KEYS" "api.keys" "DUNETRACE_OTLP_KEYS" "receiver.keys" "DUNETRACE_HASH_KEY" "privacy.hash_key"
  "DUNETRACE_POLICY_SECRET" "policies.signing_secret"
  "LANGFUSE_PUBLIC_KEY" "langfuse.public_key" "LANGFUSE_SECRET_KEY" "langfuse.secret_key"
  "ANTHROPIC_API_KEY" "explain.anthropic_api_key" "OPENAI_API_KEY" "explain.openai_api_key"
  "SLACK_WEBHOOK_URL" "alerts.slack_webhook_url" "WEBHOOK_URL" "alerts.webhook_url"
  "WEBHOOK_SECRET" "alerts.webhook_secret") $variable }}
{{- $section := index $config (splitList "." $setting | first) }}
{{- if and (kindIs "map" $section) (hasKey $section (splitList "." $setting | last)) }}
{{- fail (printf "config.%s is a secret: set secrets.%s instead (or %s in secrets.existingSecret)" $setting $key $variable) }}
{{- end }}
{{- if and $.Values.secrets.existingSecret (index $.Values.secrets $key) }}
{{- fail (printf "secrets.%s: leave it empty when secrets.existingSecret is set (put %s in that Secret)" $key $variable) }}
{{- end }}
{{- end }}
{{- $store := index $config "store" | default dict }}
{{- $path := get $store "path" | toString }}
{{- if not (or (eq $path ":memory:") (hasPrefix "/var/lib/dunetrace/" $path)) }}
{{- fail (printf "config.store.path must be a file under /var/lib/dunetrace/ (the data volume) or :memory:, got %q" $path) }}
{{- end }}
{{- $api := index $config "api" | default dict }}
{{- $apiHost := regexReplaceAll ":[0-9]+$" (get $api "endpoint" | toString) "" | trimPrefix "[" | trimSuffix "]" }}
{{- if or (eq $apiHost "localhost") (eq $apiHost "::1") (hasPrefix "127." $apiHost) }}
{{- fail (printf "config.api.endpoint must listen beyond loopback (e.g. 0.0.0.0:8002): the kubelet's probes and Prometheus reach it on the pod's IP, got %q" (get $api "endpoint")) }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (ne .Values.mode "gateway") }}
{{- fail "metrics.serviceMonitor.enabled needs mode: gateway (a ServiceMonitor selects the gateway's Service); in sidecar mode use metrics.podAnnotations" }}
{{- end }}
{{- if and .Values.exampleAgent.enabled (ne .Values.mode "sidecar") }}
{{- fail "exampleAgent.enabled needs mode: sidecar" }}
{{- end }}
{{- if and (or .Values.tls.clientAuth (not .Values.tls.receiver) (not .Values.tls.api)) (not .Values.tls.existingSecret) }}
{{- fail "tls.receiver, tls.api and tls.clientAuth take effect with tls.existingSecret (a kubernetes.io/tls Secret); set it, or leave them at their defaults" }}
{{- end }}
{{- if and .Values.tls.clientAuth (not .Values.tls.receiver) }}
{{- fail "tls.clientAuth needs tls.receiver: mutual TLS is asked of the OTLP exporters" }}
{{- end }}
{{- if and .Values.exampleAgent.enabled (include "dunetrace-sidecar.receiverTls" .) }}
{{- fail "exampleAgent.enabled exports in plain text to localhost: set tls.receiver: false (TLS for the API only)" }}
{{- end }}
{{- if and .Values.exampleAgent.enabled (not (and .Values.exampleAgent.image.repository .Values.exampleAgent.image.tag)) }}
{{- fail "exampleAgent.image.repository and exampleAgent.image.tag are required when exampleAgent.enabled" }}
{{- end }}
{{- $_ := include "dunetrace-sidecar.ports" . }}
{{- end }}

{{/* Settings shared by the pods this chart renders (gateway, example). */}}
{{- define "dunetrace-sidecar.podSpecCommon" -}}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Pod labels of the pods this chart renders. */}}
{{- define "dunetrace-sidecar.podLabels" -}}
{{ include "dunetrace-sidecar.labels" . }}
{{- with .Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}
