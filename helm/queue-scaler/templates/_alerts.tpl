{{/*
The alerts of the PrometheusRule, as a YAML list. They read only what the agent exports (README, "Metrics") and
Prometheus's own `up`. A standby agent exports its gauges at 0 (it does not poll), so per-target values are the
max over the agents, which is the leader's.
*/}}
{{- define "queue-scaler.alerts" -}}
{{- $agents := include "queue-scaler.agentSeries" . }}
- alert: QueueScalerAtMaxReplicasBacklogGrowing
  expr: |
    (
      max by (namespace, deployment) (queue_scaler_current_replicas{ {{- $agents -}} })
        >= max by (namespace, deployment) (queue_scaler_max_replicas{ {{- $agents -}} })
    )
    and on (namespace, deployment)
    (
      max by (namespace, deployment) (deriv(queue_scaler_backlog{ {{- $agents -}} }[15m])) > 0
    )
  for: 15m
  labels:
    severity: warning
  annotations:
    summary: {{`"{{ $labels.deployment }} runs at maxReplicas and its backlog keeps growing"`}}
    description: {{`"Deployment {{ $labels.namespace }}/{{ $labels.deployment }} has run at its maxReplicas for 15 minutes while the backlog grew: raise maxReplicas, or find out why the workers are slow (queue_scaler_decision shows MaxReplicas)."`}}
- alert: QueueScalerSourceFailing
  expr: |
    max by (namespace, deployment) (queue_scaler_fallback_active{ {{- $agents -}} }) == 1
  for: 1m
  labels:
    severity: warning
  annotations:
    summary: {{`"A source of {{ $labels.deployment }} failed longer than its fallback threshold"`}}
    description: {{`"A source of {{ $labels.namespace }}/{{ $labels.deployment }} failed fallback.failureThreshold reads in a row, and the target runs at fallback.replicas instead of its backlog. The agent's logs and queue_scaler_source_errors_total{kind} tell why."`}}
- alert: QueueScalerSourceErrors
  expr: |
    sum by (namespace, deployment, source) (rate(queue_scaler_source_errors_total{ {{- $agents -}} }[5m])) > 0
  for: 15m
  labels:
    severity: warning
  annotations:
    summary: {{`"Source {{ $labels.source }} of {{ $labels.deployment }} keeps failing"`}}
    description: {{`"Reads of source {{ $labels.source }} of {{ $labels.namespace }}/{{ $labels.deployment }} have failed for 15 minutes. A target without a fallback holds its replica count meanwhile; the agent's logs and queue_scaler_source_errors_total{kind} tell why."`}}
- alert: QueueScalerScaleWritesFailing
  expr: |
    sum by (namespace, deployment) (rate(queue_scaler_scale_write_errors_total{ {{- $agents -}} }[5m])) > 0
  for: 10m
  labels:
    severity: critical
  annotations:
    summary: {{`"The agent cannot write the replica count of {{ $labels.deployment }}"`}}
    description: {{`"Writes to {{ $labels.namespace }}/{{ $labels.deployment }}/scale have failed for 10 minutes, so it is not autoscaled. Check the agent's logs (RBAC, admission webhooks, API server health)."`}}
- alert: QueueScalerNoLeader
  expr: |
    max by (namespace) (queue_scaler_leader{ {{- $agents -}} }) < 1
  for: 1m
  labels:
    severity: critical
  annotations:
    summary: {{`"No queue-scaler agent leads in {{ $labels.namespace }}"`}}
    description: {{`"The agents of {{ $labels.namespace }} are up but none has held the Lease for a minute, so nothing is scaled. Check the agents' logs and the Lease (kubectl get lease)."`}}
- alert: QueueScalerNotDraining
  expr: |
    max by (namespace, deployment) (queue_scaler_not_draining{ {{- $agents -}} }) == 1
  for: 5m
  labels:
    severity: warning
  annotations:
    summary: {{`"The backlog of {{ $labels.deployment }} does not drain however many workers run"`}}
    description: {{`"Replicas were added to {{ $labels.namespace }}/{{ $labels.deployment }} but the backlog does not shrink and completions did not rise, so the agent stopped scaling up (a NotDraining Event). Look for a poison message, a stuck dependency or failing workers."`}}
- alert: QueueScalerAgentDown
  expr: |
    absent(up{ {{- $agents -}} } == 1)
  for: 5m
  labels:
    severity: critical
    namespace: {{ .Release.Namespace | quote }}
  annotations:
    summary: {{ printf "No queue-scaler agent of release %s answers scrapes" .Release.Name | quote }}
    description: {{ printf "Prometheus has scraped no running agent in %s for 5 minutes, so nothing there is autoscaled. Check the pods (kubectl -n %s get pods) and the ServiceMonitor or PodMonitor." .Release.Namespace .Release.Namespace | quote }}
{{- end }}
