{{/*
Named templates for your own chart (sidecar mode). Add this chart as a dependency and include
them with this chart's context, `(index .Subcharts "dunetrace-sidecar")`, so names and values
resolve exactly as in this chart's own templates. deploy/helm/README.md has the copy-paste example.

  dunetrace-sidecar.containers      the daemon's container as a list item, unless sidecar.native
  dunetrace-sidecar.initContainers  the same as a native sidecar (restartPolicy: Always), only when
                                    sidecar.native
  dunetrace-sidecar.container       the container itself (restartPolicy: Always when native), to place yourself
  dunetrace-sidecar.volumes         its volumes (config, data, tmp) as list items
  dunetrace-sidecar.podAnnotations  checksums that roll the pod when the config or secrets change,
                                    and the Prometheus annotations when metrics.podAnnotations
  dunetrace-sidecar.config          the daemon's config file (YAML text)
  dunetrace-sidecar.configMap       the ConfigMap manifest (this chart renders it itself)
*/}}

{{/* "true" when the daemon runs as a native sidecar (sidecar mode with sidecar.native). */}}
{{- define "dunetrace-sidecar.native" -}}
{{- if and (eq .Values.mode "sidecar") .Values.sidecar.native -}}
true
{{- end }}
{{- end }}

{{- define "dunetrace-sidecar.config" -}}
{{- include "dunetrace-sidecar.validate" . }}
{{- include "dunetrace-sidecar.configYaml" . }}
{{- end }}

{{- define "dunetrace-sidecar.configMap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "dunetrace-sidecar.fullname" . }}
  labels:
    {{- include "dunetrace-sidecar.labels" . | nindent 4 }}
data:
  config.yaml: |
    {{- include "dunetrace-sidecar.config" . | nindent 4 }}
{{- end }}

{{- define "dunetrace-sidecar.container" -}}
{{- include "dunetrace-sidecar.validate" . }}
{{- $ports := include "dunetrace-sidecar.ports" . | fromYaml -}}
{{- $scheme := include "dunetrace-sidecar.apiScheme" . -}}
- name: dunetrace-sidecar
  image: {{ include "dunetrace-sidecar.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - --config
    - /etc/dunetrace/config.yaml
  {{- if include "dunetrace-sidecar.native" . }}
  restartPolicy: Always
  {{- end }}
  ports:
    - name: otlp-grpc
      containerPort: {{ $ports.grpc }}
      protocol: TCP
    - name: otlp-http
      containerPort: {{ $ports.http }}
      protocol: TCP
    - name: dunetrace-api
      containerPort: {{ $ports.api }}
      protocol: TCP
  {{- $secretName := include "dunetrace-sidecar.secretName" . }}
  {{- $optional := not (empty .Values.secrets.existingSecret) }}
  {{- with include "dunetrace-sidecar.secretKeys" . | fromYamlArray }}
  env:
    {{- range . }}
    - name: {{ . }}
      valueFrom:
        secretKeyRef:
          name: {{ $secretName }}
          key: {{ . }}
          {{- if $optional }}
          optional: true
          {{- end }}
    {{- end }}
  {{- end }}
  startupProbe:
    httpGet:
      path: /healthz
      port: dunetrace-api
      {{- if eq $scheme "HTTPS" }}
      scheme: HTTPS
      {{- end }}
    {{- toYaml .Values.startupProbe | nindent 4 }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: dunetrace-api
      {{- if eq $scheme "HTTPS" }}
      scheme: HTTPS
      {{- end }}
    {{- toYaml .Values.livenessProbe | nindent 4 }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: dunetrace-api
      {{- if eq $scheme "HTTPS" }}
      scheme: HTTPS
      {{- end }}
    {{- toYaml .Values.readinessProbe | nindent 4 }}
  resources:
    {{- toYaml .Values.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: dunetrace-config
      mountPath: /etc/dunetrace
      readOnly: true
    - name: dunetrace-data
      mountPath: /var/lib/dunetrace
    - name: dunetrace-tmp
      mountPath: /tmp
    {{- if .Values.tls.existingSecret }}
    - name: dunetrace-tls
      mountPath: {{ include "dunetrace-sidecar.tlsDir" . }}
      readOnly: true
    {{- end }}
{{- end }}

{{- define "dunetrace-sidecar.containers" -}}
{{- if not (include "dunetrace-sidecar.native" .) }}
{{- include "dunetrace-sidecar.container" . }}
{{- end }}
{{- end }}

{{- define "dunetrace-sidecar.initContainers" -}}
{{- if include "dunetrace-sidecar.native" . }}
{{- include "dunetrace-sidecar.container" . }}
{{- end }}
{{- end }}

{{- define "dunetrace-sidecar.volumes" -}}
- name: dunetrace-config
  configMap:
    name: {{ include "dunetrace-sidecar.fullname" . }}
- name: dunetrace-data
  {{- if .Values.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ .Values.persistence.existingClaim | default (printf "%s-data" (include "dunetrace-sidecar.fullname" .)) }}
  {{- else }}
  emptyDir:
    sizeLimit: {{ .Values.persistence.emptyDirSizeLimit }}
  {{- end }}
- name: dunetrace-tmp
  emptyDir:
    sizeLimit: 64Mi
{{- with .Values.tls.existingSecret }}
- name: dunetrace-tls
  secret:
    secretName: {{ . }}
{{- end }}
{{- end }}

{{- define "dunetrace-sidecar.podAnnotations" -}}
{{- $config := include "dunetrace-sidecar.configYaml" . | fromYaml -}}
checksum/dunetrace-config: {{ omit $config "detectors" | toYaml | sha256sum }}
checksum/dunetrace-secret: {{ printf "%s\n%s" .Values.secrets.existingSecret (include "dunetrace-sidecar.secretValues" .) | sha256sum }}
{{- if .Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ (include "dunetrace-sidecar.ports" . | fromYaml).api | quote }}
prometheus.io/path: /metrics
{{- if eq (include "dunetrace-sidecar.apiScheme" .) "HTTPS" }}
prometheus.io/scheme: https
{{- end }}
{{- end }}
{{- end }}
