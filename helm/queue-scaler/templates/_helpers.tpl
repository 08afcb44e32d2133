{{/*
Names, labels and the small decisions several templates share.
*/}}

{{- define "queue-scaler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's objects are named after the release, unless the release name already says queue-scaler.
*/}}
{{- define "queue-scaler.fullname" -}}
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

{{- define "queue-scaler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "queue-scaler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "queue-scaler.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "queue-scaler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "queue-scaler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "queue-scaler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: without serviceAccount.create, name the ServiceAccount the Role is bound to" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
"true" or "false": explicit when set, otherwise on wherever several agents run (replicas, or one per worker pod).
*/}}
{{- define "queue-scaler.leaderElection" -}}
{{- if kindIs "invalid" .Values.leaderElection.enabled }}
{{- or (eq .Values.mode "sidecar") (gt (int .Values.replicaCount) 1) }}
{{- else }}
{{- .Values.leaderElection.enabled }}
{{- end }}
{{- end }}

{{/*
registry/repository, then @digest or :tag.
*/}}
{{- define "queue-scaler.image" -}}
{{- $repository := .Values.image.repository }}
{{- with .Values.image.registry }}
{{- $repository = printf "%s/%s" (trimSuffix "/" .) $repository }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
PromQL label matchers that pick this release's agents out of everything Prometheus scrapes. The Prometheus Operator
labels every target it finds through a ServiceMonitor or a PodMonitor with the pod's namespace and container, and
the agent's container is named queue-scaler in both modes.
*/}}
{{- define "queue-scaler.agentSeries" -}}
{{- default (printf "namespace=%q, container=%q" .Release.Namespace "queue-scaler") .Values.prometheusRule.selector }}
{{- end }}

{{/*
The port of metrics.listen ("0.0.0.0:9095", "[::]:9095"), which the container port and probes must follow.
*/}}
{{- define "queue-scaler.metricsPort" -}}
{{- .Values.metrics.listen | splitList ":" | last | int }}
{{- end }}

{{/*
The agent's config file: the user's config plus what the chart owns. No namespace: the agent takes the release's
from POD_NAMESPACE, where the Role applies.
*/}}
{{- define "queue-scaler.config" -}}
{{- $config := deepCopy (default dict .Values.config) }}
{{- $_ := set $config "metrics" (dict "listen" .Values.metrics.listen) }}
{{- $leader := dict "enabled" (eq (include "queue-scaler.leaderElection" .) "true") }}
{{- $_ = set $leader "leaseName" .Release.Name }}
{{- $_ = set $leader "leaseDuration" .Values.leaderElection.leaseDuration }}
{{- $_ = set $config "leaderElection" $leader }}
{{- toYaml $config }}
{{- end }}
