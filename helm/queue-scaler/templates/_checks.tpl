{{/*
Values the schema cannot judge alone, refused at render time with what to do instead, so a wrong install fails in
`helm install` rather than in a running agent.
*/}}
{{- define "queue-scaler.checks" -}}
{{- $config := default dict .Values.config }}
{{- if hasKey $config "namespace" }}
{{- fail "config.namespace: the agent works in the release namespace, the only one its Role grants; install the release into the Deployments' namespace (helm install -n NAMESPACE) and remove config.namespace" }}
{{- end }}
{{- if hasKey $config "metrics" }}
{{- fail "config.metrics: set metrics.listen instead, so the container port and probes follow it" }}
{{- end }}
{{- if hasKey $config "leaderElection" }}
{{- fail "config.leaderElection: set leaderElection.enabled and leaderElection.leaseDuration instead; the Lease is named after the release" }}
{{- end }}
{{- /* A URL with user:password@, the password not a ${NAME} reference. */}}
{{- if regexMatch "[A-Za-z][A-Za-z0-9+.-]*://[^/:@\\s]+:[^$@\\s/][^@\\s/]*@" (toYaml $config) }}
{{- fail "config: a URL carries a password in the clear, and the ConfigMap is no place for secrets; put the password in a Secret, pass it in through extraEnv or envFrom, and write ${NAME} in the URL" }}
{{- end }}
{{- $leader := eq (include "queue-scaler.leaderElection" .) "true" }}
{{- if eq .Values.mode "sidecar" }}
{{- $worker := required "sidecar.workerDeployment: sidecar mode needs the name of the Deployment whose pods carry the agent" .Values.sidecar.workerDeployment }}
{{- if not $leader }}
{{- fail "leaderElection.enabled: in sidecar mode every worker pod runs an agent; without leader election they would all write scales" }}
{{- end }}
{{- range $index, $target := $config.targets }}
{{- if and (eq $target.deployment $worker) (hasKey $target "minReplicas") (eq (int $target.minReplicas) 0) }}
{{- fail (printf "config.targets[%d].minReplicas: 0 would let the agent scale away %s, the Deployment it runs in as a sidecar; use 1 or more, or mode: deployment" $index $worker) }}
{{- end }}
{{- end }}
{{- if .Values.metrics.serviceMonitor.enabled }}
{{- fail "metrics.serviceMonitor.enabled: sidecar mode has no Service of its own; set metrics.podMonitor instead, which scrapes the worker pods' scaler-metrics port" }}
{{- end }}
{{- if .Values.podDisruptionBudget.enabled }}
{{- fail "podDisruptionBudget.enabled: in sidecar mode the agent runs in the worker pods, whose budget belongs to the workers' own chart" }}
{{- end }}
{{- if .Values.networkPolicy.enabled }}
{{- fail "networkPolicy.enabled: in sidecar mode the agent runs in the worker pods, whose network policy belongs to the workers' own chart; let it allow the agent's egress (API server, brokers) there" }}
{{- end }}
{{- if and .Values.metrics.podMonitor.enabled (not .Values.metrics.podMonitor.selector) }}
{{- fail "metrics.podMonitor.selector: name the worker pods that carry the agent, e.g. {matchLabels: {app: transcoding-worker}}" }}
{{- end }}
{{- else }}
{{- if .Values.metrics.podMonitor.enabled }}
{{- fail "metrics.podMonitor.enabled: the PodMonitor is for sidecar mode; in deployment mode use metrics.serviceMonitor" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not $leader) }}
{{- fail (printf "leaderElection.enabled: %d replicas without leader election would all write scales; turn it on or use one replica" (int .Values.replicaCount)) }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "metrics.serviceMonitor.enabled: the ServiceMonitor scrapes the metrics Service; enable metrics.service too" }}
{{- end }}
{{- end }}
{{- include "queue-scaler.networkPolicyChecks" . }}
{{- end }}

{{/*
A NetworkPolicy that would cut the agent off from what it needs.
*/}}
{{- define "queue-scaler.networkPolicyChecks" -}}
{{- $policy := .Values.networkPolicy }}
{{- if $policy.enabled }}
{{- if not $policy.apiServer.cidrs }}
{{- fail "networkPolicy.apiServer.cidrs: the agent must reach the Kubernetes API server; list its addresses as CIDRs (kubectl get endpointslices -n default -l kubernetes.io/service-name=kubernetes)" }}
{{- end }}
{{- range $index, $target := (default dict .Values.config).targets }}
{{- $scaleDown := default dict $target.scaleDown }}
{{- if or $scaleDown.idleFirst $scaleDown.quiet $scaleDown.protectBusy }}
{{- if not $policy.workers.podSelector }}
{{- fail (printf "networkPolicy.workers.podSelector: config.targets[%d] reads its workers' drain endpoint (scaleDown); name the worker pods, e.g. {matchLabels: {app: %s}}" $index (default "worker" $target.deployment)) }}
{{- end }}
{{- $port := int (default 9091 $scaleDown.workerMetricsPort) }}
{{- if ne $port (int $policy.workers.drainPort) }}
{{- fail (printf "networkPolicy.workers.drainPort: %d, but config.targets[%d].scaleDown.workerMetricsPort is %d; make them the same port" (int $policy.workers.drainPort) $index $port) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
