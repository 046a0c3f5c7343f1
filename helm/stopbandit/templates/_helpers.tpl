{{/* Chart name, cut to the 63 characters a label value allows. */}}
{{- define "stopbandit.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name; the release name alone when it already holds the chart name. */}}
{{- define "stopbandit.fullname" -}}
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

{{- define "stopbandit.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stopbandit.labels" -}}
helm.sh/chart: {{ include "stopbandit.chart" . }}
{{ include "stopbandit.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels never change between upgrades: a Deployment's selector is immutable. */}}
{{- define "stopbandit.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stopbandit.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "stopbandit.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stopbandit.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "stopbandit.checkpointClaim" -}}
{{- default (printf "%s-checkpoints" (include "stopbandit.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{- define "stopbandit.configDir" -}}/etc/stopbandit{{- end }}
{{- define "stopbandit.tlsDir" -}}/etc/stopbandit/kafka-tls{{- end }}
{{- define "stopbandit.checkpointDir" -}}/var/lib/stopbandit/checkpoints{{- end }}

{{/*
The daemon's config.yaml: the `config` values plus the paths only the chart
knows (mounts) and the listen address pods need.
*/}}
{{- define "stopbandit.configYaml" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $_ := set $cfg.http "host" "0.0.0.0" }}
{{- if eq $cfg.checkpoint.store "dir" }}
{{- $_ := set $cfg.checkpoint "dir" (include "stopbandit.checkpointDir" .) }}
{{- end }}
{{- with .Values.secrets.kafkaTls }}
{{- if .name }}
{{- $dir := include "stopbandit.tlsDir" $ }}
{{- if .caKey }}{{ $_ := set $cfg.kafka "ssl_cafile" (printf "%s/ca.crt" $dir) }}{{ end }}
{{- if .certKey }}{{ $_ := set $cfg.kafka "ssl_certfile" (printf "%s/tls.crt" $dir) }}{{ end }}
{{- if .keyKey }}{{ $_ := set $cfg.kafka "ssl_keyfile" (printf "%s/tls.key" $dir) }}{{ end }}
{{- end }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
Checks JSON schema cannot express (it cannot compare one value with another),
plus a second guard against secrets in the ConfigMap for renders that skip
the schema. Each fails the render with the field and the reason.
*/}}
{{- define "stopbandit.validate" -}}
{{- $cfg := .Values.config }}
{{- $prev := -1.0 }}
{{- range $cfg.arms }}
{{- if le (float64 .) $prev }}
{{- fail (printf "config.arms: must be strictly ascending (%v after %v)" . $prev) }}
{{- end }}
{{- $prev = float64 . }}
{{- end }}
{{- range $field := list "default_arm" "reference_arm" }}
{{- $want := float64 (get $cfg $field) }}
{{- $found := false }}
{{- range $cfg.arms }}{{ if eq (float64 .) $want }}{{ $found = true }}{{ end }}{{ end }}
{{- if not $found }}
{{- fail (printf "config.%s: %v is not one of config.arms" $field $want) }}
{{- end }}
{{- end }}
{{- if or (hasKey (default dict $cfg.kafka) "sasl_password") (hasKey (default dict $cfg.publish) "hmac_key") }}
{{- fail "config: sasl_password and hmac_key are secrets; reference an existing Secret under `secrets` instead" }}
{{- end }}
{{- if and (eq $cfg.checkpoint.store "dir") (gt (int .Values.replicaCount) 1) }}
{{- fail "replicaCount: must be 1 with config.checkpoint.store \"dir\": partitions move between replicas but a volume does not; use store \"kafka\" to scale out" }}
{{- end }}
{{- if and (hasPrefix "SASL" $cfg.kafka.security_protocol) (not .Values.secrets.kafkaSaslPassword.name) }}
{{- fail "secrets.kafkaSaslPassword.name: required with a SASL security_protocol" }}
{{- end }}
{{- end }}
