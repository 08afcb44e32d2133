//! The values a production install reaches for, all set at once: a private registry, extra volumes, relabelled
//! scrapes, a PodMonitor in sidecar mode, NetworkPolicies, alerts and a dashboard. Everything renders, passes
//! kubernetes-validate for Kubernetes 1.29 and 1.33 (the Prometheus Operator's kinds have no schema there and are
//! checked field by field), and lands where the agent and Kubernetes expect it.

use serde_json::{Value, json};

use super::tool::{self, KUBE_VERSIONS, Rendered};
use super::{NAMESPACED_KINDS, assert_all_valid, container};
use crate::support::kube_api::FakeKube;

fn monitoring_namespace() -> Value {
    json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}})
}

/// Deployment mode with every value the chart gained for issue 17 set.
fn everything() -> Value {
    json!({
        "image": {"registry": "registry.example.com/team", "tag": "0.1.0"},
        "imagePullSecrets": [{"name": "regcred"}],
        "extraVolumes": [{"name": "kafka-tls", "secret": {"secretName": "kafka-client-tls"}}],
        "extraVolumeMounts": [{"name": "kafka-tls", "mountPath": "/etc/kafka-tls", "readOnly": true}],
        "metrics": {"serviceMonitor": {
            "enabled": true, "interval": "15s", "labels": {"release": "prometheus"},
            "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}],
            "metricRelabelings": [{"sourceLabels": ["__name__"], "regex": "queue_scaler_kafka_.*", "action": "drop"}],
        }},
        "prometheusRule": {"enabled": true},
        "dashboard": {"enabled": true},
        "networkPolicy": {
            "enabled": true,
            "apiServer": {"cidrs": ["10.0.0.1/32"]},
            "brokers": [{"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "rabbitmq"}}}],
                         "ports": [{"port": 5672}, {"port": 15672}]}],
            "metricsFrom": [monitoring_namespace()],
            "workers": {"podSelector": {"matchLabels": {"app": "thumbnail-worker"}}, "drainFrom": [monitoring_namespace()]},
        },
        "config": {"targets": [{
            "deployment": "thumbnail-worker", "maxReplicas": 10,
            "scaleDown": {"idleFirst": true},
            "sources": [{"type": "rabbitmq", "url": "amqp://app:${RABBITMQ_PASSWORD}@rabbitmq:5672/%2f",
                         "queue": "thumbnails", "backlogPerWorker": 5}],
        }]},
    })
}

async fn render(values: &[&str], overrides: Value) -> Rendered {
    let kube = FakeKube::start().await;
    tool::render(&kube, "video", "queue-scaler", values, Some(overrides))
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

fn named<'a>(rendered: &'a Rendered, kind: &str, name: &str) -> &'a Value {
    let found = rendered.objects.iter().find(|o| o["kind"] == kind && o["metadata"]["name"] == name);
    found.unwrap_or_else(|| panic!("no {kind}/{name} rendered"))
}

#[tokio::test]
async fn every_new_value_at_once_renders_valid_objects_for_both_versions() {
    let rendered = render(&[], everything()).await;
    assert_eq!(
        rendered.kinds(),
        [
            "ConfigMap",
            "ConfigMap",
            "Deployment",
            "NetworkPolicy",
            "NetworkPolicy",
            "PrometheusRule",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "ServiceMonitor"
        ]
    );
    assert_all_valid(&rendered);
    assert!(rendered.kinds().iter().all(|kind| NAMESPACED_KINDS.contains(&kind.as_str())), "nothing cluster-scoped");
    assert!(rendered.objects.iter().all(|object| object["metadata"]["namespace"].is_null()));
    for version in KUBE_VERSIONS {
        let validated = &rendered.validated[version];
        for policy in
            ["NetworkPolicy/queue-scaler", "NetworkPolicy/queue-scaler-workers", "ConfigMap/queue-scaler-dashboard"]
        {
            assert!(validated.iter().any(|name| name == policy), "{policy} not validated against {version}");
        }
    }

    let agent = container(&rendered);
    assert_eq!(agent["image"], "registry.example.com/team/queue-scaler:0.1.0");
    let pod = &rendered.one("Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "regcred"}]));
    let volumes = pod["volumes"].as_array().expect("volumes");
    assert!(volumes.contains(&json!({"name": "kafka-tls", "secret": {"secretName": "kafka-client-tls"}})));
    let mounts = agent["volumeMounts"].as_array().expect("mounts");
    assert!(mounts.contains(&json!({"name": "kafka-tls", "mountPath": "/etc/kafka-tls", "readOnly": true})));
    assert_eq!(mounts[0]["mountPath"], "/etc/queue-scaler", "the chart's own mounts stay");

    let endpoint = &rendered.one("ServiceMonitor")["spec"]["endpoints"][0];
    assert_eq!(endpoint["interval"], "15s");
    assert_eq!(endpoint["relabelings"][0]["targetLabel"], "node");
    assert_eq!(endpoint["metricRelabelings"][0]["action"], "drop");
    assert_eq!(rendered.one("ServiceMonitor")["metadata"]["labels"]["release"], "prometheus");
}

#[tokio::test]
async fn the_network_policies_let_the_agent_reach_only_what_it_needs_and_only_it_reach_the_drain_port() {
    let rendered = render(&[], everything()).await;
    let agent_pods = rendered.one("Deployment")["spec"]["selector"]["matchLabels"].clone();
    let workers = json!({"matchLabels": {"app": "thumbnail-worker"}});

    let agent = &named(&rendered, "NetworkPolicy", "queue-scaler")["spec"];
    assert_eq!(agent["podSelector"]["matchLabels"], agent_pods);
    assert_eq!(agent["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(
        agent["ingress"],
        json!([{"ports": [{"port": "metrics", "protocol": "TCP"}], "from": [monitoring_namespace()]}]),
        "scraped on its metrics port, from the monitoring namespace only"
    );
    let tcp = |port: u16| json!({"port": port, "protocol": "TCP"});
    let dns = json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                     "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}});
    assert_eq!(
        agent["egress"],
        json!([
            {"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}], "ports": [tcp(443), tcp(6443)]},
            {"to": [dns], "ports": [{"port": 53, "protocol": "UDP"}, tcp(53)]},
            {"to": [{"podSelector": workers}], "ports": [tcp(9091)]},
            {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "rabbitmq"}}}],
             "ports": [{"port": 5672}, {"port": 15672}]},
        ]),
        "the API server, DNS, the workers' drain port and the broker: nothing else"
    );

    let drain = &named(&rendered, "NetworkPolicy", "queue-scaler-workers")["spec"];
    assert_eq!(drain["podSelector"], workers);
    assert_eq!(drain["policyTypes"], json!(["Ingress"]));
    assert_eq!(
        drain["ingress"],
        json!([{"from": [{"podSelector": {"matchLabels": agent_pods}}, monitoring_namespace()], "ports": [tcp(9091)]}]),
        "the drain port (POST /quiet stops a worker) from the agent and the scraper only"
    );
}

#[tokio::test]
async fn sidecar_mode_gets_a_pod_monitor_and_the_snippet_carries_the_new_values() {
    let overrides = json!({
        "image": {"registry": "registry.example.com"},
        "imagePullSecrets": [{"name": "regcred"}],
        "extraVolumes": [{"name": "prometheus-token", "secret": {"secretName": "prometheus-reader"}}],
        "extraVolumeMounts": [{"name": "prometheus-token", "mountPath": "/var/run/prometheus", "readOnly": true}],
        "metrics": {"podMonitor": {
            "enabled": true, "selector": {"matchLabels": {"app": "transcoding-worker"}}, "interval": "20s",
            "labels": {"release": "prometheus"},
            "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}],
            "metricRelabelings": [{"sourceLabels": ["__name__"], "regex": "go_.*", "action": "drop"}],
        }},
        "prometheusRule": {"enabled": true},
    });
    let rendered = render(&["sidecar.yaml"], overrides).await;
    assert_eq!(
        rendered.kinds(),
        ["ConfigMap", "PodMonitor", "PrometheusRule", "Role", "RoleBinding", "ServiceAccount"]
    );
    assert_all_valid(&rendered);

    let monitor = rendered.one("PodMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(monitor["spec"]["selector"], json!({"matchLabels": {"app": "transcoding-worker"}}));
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    let snippet = rendered.sidecar.as_ref().expect("the sidecar snippet");
    let agent = &snippet["containers"][0];
    assert_eq!(endpoint["port"], agent["ports"][0]["name"], "it scrapes the agent's port in the worker pod");
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["interval"], "20s");
    assert_eq!(endpoint["relabelings"][0]["targetLabel"], "node");
    assert_eq!(endpoint["metricRelabelings"][0]["action"], "drop");

    // The container and volumes users paste carry the registry, the mounts and the volumes, and stay valid.
    assert_eq!(agent["image"], "registry.example.com/queue-scaler:0.1.0");
    let mount = json!({"name": "prometheus-token", "mountPath": "/var/run/prometheus", "readOnly": true});
    assert!(agent["volumeMounts"].as_array().expect("mounts").contains(&mount));
    let volume = json!({"name": "prometheus-token", "secret": {"secretName": "prometheus-reader"}});
    assert!(snippet["volumes"].as_array().expect("volumes").contains(&volume));
    assert!(rendered.notes.contains("imagePullSecrets:\n- name: regcred"), "{}", rendered.notes);
    for version in KUBE_VERSIONS {
        let validated = &rendered.validated[version];
        assert!(validated.iter().any(|name| name == "Deployment/worker-with-sidecar"), "snippet invalid in {version}");
    }
}

#[test]
fn chart_yaml_says_where_the_chart_comes_from_and_who_keeps_it() {
    let text = std::fs::read_to_string(tool::chart().join("Chart.yaml")).expect("Chart.yaml");
    let chart: serde_norway::Value = serde_norway::from_str(&text).expect("YAML");
    let home = chart["home"].as_str().expect("home");
    assert!(home.starts_with("https://"), "{home}");
    let sources = chart["sources"].as_sequence().expect("sources");
    assert!(!sources.is_empty() && sources.iter().all(|s| s.as_str().is_some_and(|s| s.starts_with("https://"))));
    let maintainers = chart["maintainers"].as_sequence().expect("maintainers");
    assert!(maintainers.iter().all(|m| m["name"].as_str().is_some_and(|n| !n.is_empty())), "{maintainers:?}");
}

#[tokio::test]
async fn new_values_that_would_break_the_agent_are_refused_with_what_to_do() {
    let idle_first = json!([{"deployment": "worker", "maxReplicas": 5, "scaleDown": {"idleFirst": true},
        "sources": [{"type": "sqs", "queueUrl": "https://sqs.us-east-1.amazonaws.com/1/jobs"}]}]);
    let other_port = json!([{"deployment": "worker", "maxReplicas": 5,
        "scaleDown": {"quiet": true, "workerMetricsPort": 8081},
        "sources": [{"type": "sqs", "queueUrl": "https://sqs.us-east-1.amazonaws.com/1/jobs"}]}]);
    let workers = json!({"podSelector": {"matchLabels": {"app": "worker"}}});
    let cases = [
        (
            json!({"networkPolicy": {"enabled": true}}),
            "networkPolicy.apiServer.cidrs: the agent must reach the Kubernetes API server",
        ),
        (
            json!({"networkPolicy": {"enabled": true, "apiServer": {"cidrs": ["10.0.0.1/32"]}}, "config": {"targets": idle_first}}),
            "networkPolicy.workers.podSelector: config.targets[0] reads its workers' drain endpoint",
        ),
        (
            json!({"networkPolicy": {"enabled": true, "apiServer": {"cidrs": ["10.0.0.1/32"]}, "workers": workers},
                   "config": {"targets": other_port}}),
            "networkPolicy.workers.drainPort: 9091, but config.targets[0].scaleDown.workerMetricsPort is 8081",
        ),
        (
            json!({"mode": "sidecar", "sidecar": {"workerDeployment": "worker"},
                   "networkPolicy": {"enabled": true, "apiServer": {"cidrs": ["10.0.0.1/32"]}}}),
            "networkPolicy.enabled: in sidecar mode the agent runs in the worker pods",
        ),
        (
            json!({"mode": "sidecar", "sidecar": {"workerDeployment": "worker"}, "metrics": {"podMonitor": {"enabled": true}}}),
            "metrics.podMonitor.selector: name the worker pods",
        ),
        (
            json!({"metrics": {"podMonitor": {"enabled": true}}}),
            "metrics.podMonitor.enabled: the PodMonitor is for sidecar mode",
        ),
        (
            json!({"networkPolicy": {"enabled": true, "apiServer": {"cidrs": ["10.0.0.1"]}}}),
            "/networkPolicy/apiServer/cidrs/0",
        ),
        (json!({"imagePullSecrets": ["regcred"]}), "/imagePullSecrets/0"),
        (json!({"extraVolumeMounts": [{"name": "tls"}]}), "mountPath"),
    ];
    for (values, reason) in cases {
        let kube = FakeKube::start().await;
        let refused = tool::render(&kube, "video", "queue-scaler", &[], Some(values.clone())).await;
        let error = refused.err().unwrap_or_else(|| panic!("{values} was accepted"));
        assert!(error.contains(reason), "{values}: expected {reason:?} in {error}");
        let writes = kube.requests().into_iter().filter(|r| r.method != "GET").count();
        assert_eq!(writes, 0, "{values}: Helm wrote before refusing");
    }
}
