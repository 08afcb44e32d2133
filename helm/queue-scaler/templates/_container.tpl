{{/*
The agent's container and volumes: one definition for the chart's own Deployment and for the sidecar snippet that
NOTES.txt prints, so the snippet users paste is the container the chart's checks validate.
Called with (dict "root" $ "sidecar" BOOL).
*/}}

{{/*
Inside a worker pod the port name must not clash with the worker's own "metrics".
*/}}
{{- define "queue-scaler.portName" -}}
{{- if .sidecar }}scaler-metrics{{ else }}metrics{{ end }}
{{- end }}

{{- define "queue-scaler.container" -}}
{{- $root := .root }}
{{- $port := include "queue-scaler.portName" . -}}
name: queue-scaler
image: {{ include "queue-scaler.image" $root | quote }}
imagePullPolicy: {{ $root.Values.image.pullPolicy }}
command: ["queue-scaler"]
args: ["run", "--config", "/etc/queue-scaler/config.yaml", "--log-format", "json"]
env:
  - name: POD_NAMESPACE
    valueFrom:
      fieldRef:
        fieldPath: metadata.namespace
  # The agent's identity in the leader-election Lease.
  - name: POD_NAME
    valueFrom:
      fieldRef:
        fieldPath: metadata.name
  {{- with $root.Values.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $root.Values.envFrom }}
envFrom:
  {{- toYaml . | nindent 2 }}
{{- end }}
ports:
  - name: {{ $port }}
    containerPort: {{ include "queue-scaler.metricsPort" $root }}
    protocol: TCP
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ $port }}
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
{{- /* Not in a worker pod: the agent's readiness would become the worker pod's, and unready pods are the first
       a scale-down removes. */}}
{{- if not .sidecar }}
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ $port }}
  periodSeconds: 5
  timeoutSeconds: 2
{{- end }}
resources:
  {{- toYaml $root.Values.resources | nindent 2 }}
securityContext:
  {{- toYaml $root.Values.securityContext | nindent 2 }}
volumeMounts:
  # The directory, not a subPath: only then do ConfigMap updates reach the running agent, which reloads them.
  - name: queue-scaler-config
    mountPath: /etc/queue-scaler
    readOnly: true
  # The root filesystem is read-only.
  - name: queue-scaler-tmp
    mountPath: /tmp
  {{- with $root.Values.extraVolumeMounts }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{- define "queue-scaler.volumes" -}}
- name: queue-scaler-config
  configMap:
    name: {{ include "queue-scaler.fullname" . }}
- name: queue-scaler-tmp
  emptyDir:
    sizeLimit: 16Mi
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}
