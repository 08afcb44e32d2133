//! The Helm chart, judged by Helm's own engine: it lints; it installs into the fake API server with the default
//! values, the seed's example, sidecar values and the high-availability example; every object it renders passes
//! kubernetes-validate (strict, Kubernetes 1.29 and 1.33); nothing cluster-scoped is rendered; the agent gets the
//! contract it expects (command, config, environment, mounts, RBAC); and values it must refuse are refused with a
//! reason. [`completeness`] sets every optional value at once, [`monitoring`] puts the alerts and the dashboard
//! through promtool and against what the agent exports. The rendering itself runs in `scripts/chart_check.py`
//! (see [`tool`]).

mod completeness;
mod monitoring;
mod tool;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::support::kube_api::{FakeKube, Kind, PlainKind};
use tool::{KUBE_VERSIONS, Rendered};

/// The kinds the chart may render, all namespaced.
const NAMESPACED_KINDS: &[&str] = &[
    "ConfigMap",
    "Deployment",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "PodMonitor",
    "PrometheusRule",
    "Role",
    "RoleBinding",
    "Service",
    "ServiceAccount",
    "ServiceMonitor",
];

/// The Prometheus Operator's kinds: kubernetes-validate has no schema for a CRD's kind, so tests check their fields.
const OPERATOR_KINDS: &[&str] = &["PodMonitor", "PrometheusRule", "ServiceMonitor"];

/// Kinds that would reach beyond the release namespace: what a one-namespace install must never need.
const CLUSTER_SCOPED_KINDS: &[&str] = &[
    "APIService",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "MutatingWebhookConfiguration",
    "Namespace",
    "PersistentVolume",
    "PriorityClass",
    "StorageClass",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration",
];

/// Installs into a fresh fake and fails the test if Helm or kubernetes-validate refuses.
async fn render(namespace: &str, release: &str, values: &[&str]) -> (FakeKube, Rendered) {
    let kube = FakeKube::start().await;
    let rendered =
        tool::render(&kube, namespace, release, values, None).await.unwrap_or_else(|error| panic!("{error}"));
    (kube, rendered)
}

/// Every object rendered passed strict validation for every version, and only the Prometheus Operator's kinds went
/// without a schema.
fn assert_all_valid(rendered: &Rendered) {
    for version in KUBE_VERSIONS {
        let validated = rendered.validated.get(version).unwrap_or_else(|| panic!("nothing validated for {version}"));
        for object in &rendered.objects {
            let text = |value: &Value| value.as_str().unwrap_or("?").to_owned();
            let name = format!("{}/{}", text(&object["kind"]), text(&object["metadata"]["name"]));
            let kind = object["kind"].as_str().unwrap_or_default();
            let skipped = rendered.unknown.contains(&name) && OPERATOR_KINDS.contains(&kind);
            assert!(validated.contains(&name) || skipped, "{name} was not validated against {version}");
        }
    }
}

fn container(rendered: &Rendered) -> &Value {
    &rendered.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
}

#[tokio::test]
async fn the_chart_lints_with_nothing_above_info() {
    let (passed, report) = tool::lint().await;
    assert!(passed, "helm lint: {report}");
    let messages = report["messages"].as_array().expect("lint messages");
    assert!(messages.iter().all(|m| m["severity"] == "info"), "lint found more than advice: {report}");
    assert_eq!(report["errors"], 0, "{report}");
}

#[tokio::test]
async fn default_values_render_the_agent_with_namespaced_rbac_all_valid() {
    let (kube, rendered) = render("default", "queue-scaler", &[]).await;
    assert_eq!(rendered.kinds(), ["ConfigMap", "Deployment", "Role", "RoleBinding", "Service", "ServiceAccount"]);
    assert_all_valid(&rendered);
    assert!(rendered.unknown.is_empty(), "{:?}", rendered.unknown);
    // Helm created them in the API server, named after the release.
    assert!(kube.object(Kind::Plain(PlainKind::ConfigMap), "default", "queue-scaler").is_some());
    assert!(kube.deployment("default", "queue-scaler").is_some());
    let config = rendered.config();
    assert_eq!(config["leaderElection"]["enabled"], false, "one replica needs no election");
    let deployment = rendered.one("Deployment");
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate", "a lone agent never overlaps its successor");
    assert!(rendered.notes.contains("config.targets is empty"), "NOTES warns: {}", rendered.notes);
}

#[tokio::test]
async fn the_role_grants_only_what_the_agent_uses_in_its_namespace() {
    let (_kube, rendered) = render("video", "transcoder-scaler", &["transcoding-worker.yaml"]).await;
    let expected = json!([
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get", "patch"]},
        {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": ["list", "watch"]},
        {"apiGroups": ["keda.sh"], "resources": ["scaledobjects"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "patch"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["transcoder-scaler"],
         "verbs": ["get", "update"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
    ]);
    assert_eq!(rendered.one("Role")["rules"], expected);
    assert_eq!(rendered.config()["leaderElection"]["leaseName"], "transcoder-scaler", "the Lease the Role names");
    let binding = rendered.one("RoleBinding");
    let account = rendered.one("ServiceAccount")["metadata"]["name"].clone();
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
        "name": rendered.one("Role")["metadata"]["name"]})
    );
    assert_eq!(binding["subjects"], json!([{"kind": "ServiceAccount", "name": account, "namespace": "video"}]));
    let pod = &rendered.one("Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], account, "the agent runs as the bound ServiceAccount");
}

/// (API group, resource) → verbs, as the README's RBAC table lists them.
fn readme_rbac_table() -> BTreeMap<(String, String), BTreeSet<String>> {
    const VERBS: [&str; 6] = ["get", "list", "watch", "patch", "create", "update"];
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let table = readme.split("| API group | resources | verbs |\n|---|---|---|\n").nth(1).expect("the RBAC table");
    let ticked = |cell: &str| cell.split('`').nth(1).map(|t| t.trim_matches('"').to_owned()).expect("`name`");
    table
        .lines()
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let verbs = cells[3].split(|c: char| !c.is_ascii_alphabetic()).filter(|w| VERBS.contains(w));
            ((ticked(cells[1]), ticked(cells[2])), verbs.map(str::to_owned).collect())
        })
        .collect()
}

#[tokio::test]
async fn the_readmes_rbac_table_lists_exactly_what_the_role_grants() {
    let (_kube, rendered) = render("video", "transcoder-scaler", &["transcoding-worker.yaml"]).await;
    let mut granted = BTreeMap::<(String, String), BTreeSet<String>>::new();
    for rule in rendered.one("Role")["rules"].as_array().expect("rules") {
        let key = (
            rule["apiGroups"][0].as_str().expect("group").to_owned(),
            rule["resources"][0].as_str().expect("resource").to_owned(),
        );
        let verbs = rule["verbs"].as_array().expect("verbs").iter().map(|v| v.as_str().expect("verb").to_owned());
        granted.entry(key).or_default().extend(verbs);
    }
    assert_eq!(readme_rbac_table(), granted, "README table (left) against the chart's Role (right)");
}

#[tokio::test]
async fn the_role_grants_the_scale_subresource_of_exactly_the_kinds_listed() {
    let kube = FakeKube::start().await;
    let kinds = json!({"rbac": {"scaleTargets": [
        {"apiGroup": "apps", "resource": "statefulsets"},
        {"apiGroup": "argoproj.io", "resource": "rollouts"},
    ]}});
    let rendered = tool::render(&kube, "video", "transcoder-scaler", &["transcoding-worker.yaml"], Some(kinds))
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert_all_valid(&rendered);
    let rules = rendered.one("Role")["rules"].as_array().expect("rules").clone();
    let workload_rules: Vec<&Value> = rules
        .iter()
        .filter(|r| r["apiGroups"] == json!(["apps"]) || r["apiGroups"] == json!(["argoproj.io"]))
        .collect();
    assert_eq!(
        workload_rules,
        [
            &json!({"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["get", "list", "watch"]}),
            &json!({"apiGroups": ["apps"], "resources": ["statefulsets/scale"], "verbs": ["get", "patch"]}),
            &json!({"apiGroups": ["argoproj.io"], "resources": ["rollouts"], "verbs": ["get", "list", "watch"]}),
            &json!({"apiGroups": ["argoproj.io"], "resources": ["rollouts/scale"], "verbs": ["get", "patch"]}),
        ],
        "the listed kinds only: no Deployments once the list names others"
    );
    let wrong = json!({"rbac": {"scaleTargets": [{"apiGroup": "apps", "resource": "StatefulSets"}]}});
    let refused = tool::render(&kube, "video", "bad-kinds", &[], Some(wrong)).await;
    assert!(refused.is_err(), "a resource is a lowercase plural: the schema refuses `StatefulSets`");
}

#[tokio::test]
async fn the_seed_example_scales_transcoding_worker_on_its_pubsub_subscription() {
    let (_kube, rendered) = render("video", "transcoder-scaler", &["transcoding-worker.yaml"]).await;
    assert_all_valid(&rendered);
    let expected: serde_norway::Value = serde_norway::from_str(
        "leaderElection: {enabled: false, leaseName: transcoder-scaler, leaseDuration: 15s}
metrics: {listen: 0.0.0.0:9095}
pollInterval: 5s
targets:
  - deployment: transcoding-worker
    minReplicas: 1
    maxReplicas: 20
    sources:
      - {type: pubsub, project: my-project, subscription: transcoder_subscription, backlogPerWorker: 10}
",
    )
    .expect("expected config");
    assert_eq!(rendered.config(), expected, "no namespace: the agent takes POD_NAMESPACE");
    // The agent itself accepts what the chart rendered.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("config.yaml");
    let text = rendered.one("ConfigMap")["data"]["config.yaml"].as_str().expect("config.yaml").to_owned();
    std::fs::write(&file, text).expect("write");
    let out = tokio::process::Command::new(crate::support::agent::BINARY)
        .arg("check")
        .arg("-c")
        .arg(&file)
        .output()
        .await
        .expect("queue-scaler check");
    assert!(out.status.success(), "check: {}", String::from_utf8_lossy(&out.stderr));
    let account = rendered.one("ServiceAccount");
    assert!(account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].is_string(), "workload identity");
}

#[tokio::test]
async fn the_agent_container_runs_the_contract_locked_down() {
    let (_kube, rendered) = render("video", "transcoder-scaler", &["transcoding-worker.yaml"]).await;
    let agent = container(&rendered);
    assert_eq!(agent["command"], json!(["queue-scaler"]));
    assert_eq!(agent["args"], json!(["run", "--config", "/etc/queue-scaler/config.yaml", "--log-format", "json"]));
    let field = |name: &str| {
        let env = agent["env"].as_array().expect("env").iter().find(|e| e["name"] == name).cloned();
        env.unwrap_or_else(|| panic!("no {name}"))["valueFrom"]["fieldRef"]["fieldPath"].clone()
    };
    assert_eq!(field("POD_NAMESPACE"), "metadata.namespace");
    assert_eq!(field("POD_NAME"), "metadata.name");
    let mount = &agent["volumeMounts"][0];
    assert_eq!(mount["mountPath"], "/etc/queue-scaler", "the directory, so updates reach the agent");
    assert!(mount.get("subPath").is_none(), "a subPath mount never sees ConfigMap updates");
    let pod = &rendered.one("Deployment")["spec"]["template"]["spec"];
    let volume = pod["volumes"].as_array().expect("volumes").iter().find(|v| v["name"] == mount["name"]).cloned();
    assert_eq!(volume.expect("the mounted volume")["configMap"]["name"], rendered.one("ConfigMap")["metadata"]["name"]);

    let security = &agent["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(agent["resources"]["requests"], json!({"cpu": "10m", "memory": "32Mi"}));

    assert_eq!(agent["ports"], json!([{"name": "metrics", "containerPort": 9095, "protocol": "TCP"}]));
    assert_eq!(agent["livenessProbe"]["httpGet"], json!({"path": "/healthz", "port": "metrics"}));
    assert_eq!(agent["readinessProbe"]["httpGet"], json!({"path": "/readyz", "port": "metrics"}));
    let service = rendered.one("Service");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");
    assert_eq!(service["spec"]["selector"], rendered.one("Deployment")["spec"]["selector"]["matchLabels"]);
}

#[tokio::test]
async fn sidecar_values_render_rbac_and_config_only_and_a_valid_container_to_paste() {
    let (_kube, rendered) = render("video", "transcoder-scaler", &["sidecar.yaml"]).await;
    assert_eq!(rendered.kinds(), ["ConfigMap", "Role", "RoleBinding", "ServiceAccount"]);
    assert_all_valid(&rendered);
    assert_eq!(rendered.config()["leaderElection"]["enabled"], true, "every worker pod runs an agent");
    assert_eq!(rendered.config()["targets"][0]["minReplicas"], 1);

    let snippet = rendered.sidecar.as_ref().expect("NOTES.txt carries the sidecar snippet");
    for version in KUBE_VERSIONS {
        let validated = &rendered.validated[version];
        assert!(validated.iter().any(|name| name == "Deployment/worker-with-sidecar"), "snippet invalid in {version}");
    }
    let agent = &snippet["containers"][0];
    assert_eq!(agent["args"], json!(["run", "--config", "/etc/queue-scaler/config.yaml", "--log-format", "json"]));
    assert_eq!(agent["ports"][0]["name"], "scaler-metrics", "clear of the worker's own metrics port");
    assert!(agent.get("readinessProbe").is_none(), "the agent must not decide the worker pod's readiness");
    assert_eq!(snippet["volumes"][0]["configMap"]["name"], rendered.one("ConfigMap")["metadata"]["name"]);
    let account = rendered.one("ServiceAccount")["metadata"]["name"].as_str().expect("a name").to_owned();
    assert!(rendered.notes.contains(&format!("serviceAccountName: {account}")), "{}", rendered.notes);
}

#[tokio::test]
async fn the_high_availability_example_adds_a_budget_a_service_monitor_and_a_secret_from_env() {
    let (_kube, rendered) = render("video", "queue-scaler", &["high-availability.yaml"]).await;
    assert_all_valid(&rendered);
    assert_eq!(rendered.unknown, ["ServiceMonitor/queue-scaler"], "only the CRD's kind has no schema here");
    assert_eq!(rendered.config()["leaderElection"]["enabled"], true, "two replicas elect a leader");
    let deployment = rendered.one("Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert!(deployment["spec"].get("strategy").is_none(), "leaders hand over, so a rolling update is fine");
    assert_eq!(rendered.one("PodDisruptionBudget")["spec"]["maxUnavailable"], 1);

    let monitor = rendered.one("ServiceMonitor");
    let service = rendered.one("Service");
    assert_eq!(monitor["spec"]["selector"]["matchLabels"], deployment["spec"]["selector"]["matchLabels"]);
    for (key, value) in monitor["spec"]["selector"]["matchLabels"].as_object().expect("labels") {
        assert_eq!(&service["metadata"]["labels"][key], value, "the ServiceMonitor selects the Service");
    }
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], service["spec"]["ports"][0]["name"]);

    let url = &rendered.config()["targets"][0]["sources"][0]["url"];
    assert_eq!(url.as_str(), Some("amqp://app:${RABBITMQ_PASSWORD}@rabbitmq:5672/%2f"), "expanded by the agent");
    let env = container(&rendered)["env"].as_array().expect("env").clone();
    let password = env.iter().find(|e| e["name"] == "RABBITMQ_PASSWORD").expect("RABBITMQ_PASSWORD");
    assert_eq!(password["valueFrom"]["secretKeyRef"], json!({"name": "rabbitmq", "key": "password"}));
    assert!(rendered.notes.contains("It scales: thumbnail-worker (0..30)."), "{}", rendered.notes);
}

#[tokio::test]
async fn sidecar_mode_can_bind_the_role_to_the_workers_own_service_account() {
    let kube = FakeKube::start().await;
    let own_account = json!({"serviceAccount": {"create": false, "name": "transcoding-worker"}});
    let rendered = tool::render(&kube, "video", "transcoder-scaler", &["sidecar.yaml"], Some(own_account))
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(rendered.kinds(), ["ConfigMap", "Role", "RoleBinding"], "no ServiceAccount of its own");
    assert_eq!(rendered.one("RoleBinding")["subjects"][0]["name"], "transcoding-worker");
    assert!(rendered.notes.contains("serviceAccountName: transcoding-worker"), "{}", rendered.notes);
}

#[tokio::test]
async fn no_values_render_a_cluster_scoped_kind_or_write_outside_the_release_namespace() {
    for values in [&[][..], &["transcoding-worker.yaml"], &["sidecar.yaml"], &["high-availability.yaml"]] {
        let (kube, rendered) = render("video", "queue-scaler", values).await;
        for kind in rendered.kinds() {
            assert!(!CLUSTER_SCOPED_KINDS.contains(&kind.as_str()), "{values:?} renders cluster-scoped {kind}");
            assert!(NAMESPACED_KINDS.contains(&kind.as_str()), "{values:?} renders {kind}, not known namespaced");
        }
        for object in &rendered.objects {
            let namespace = &object["metadata"]["namespace"];
            assert!(namespace.is_null(), "{values:?}: an object names namespace {namespace}");
        }
        let writes: Vec<_> = kube.requests().into_iter().filter(|r| r.method != "GET").collect();
        assert!(!writes.is_empty(), "{values:?}: Helm wrote nothing");
        for write in writes {
            assert!(write.path.contains("/namespaces/video/"), "{values:?}: {} {}", write.method, write.path);
        }
    }
}

#[tokio::test]
async fn values_the_chart_must_refuse_are_refused_with_what_to_do() {
    let sidecar_on_itself = json!({"mode": "sidecar", "sidecar": {"workerDeployment": "worker"}, "config": {"targets": [
        {"deployment": "worker", "minReplicas": 0, "maxReplicas": 5, "sources": [{"type": "sqs"}]}]}});
    let inline_password = json!({"config": {"targets": [{"deployment": "worker", "maxReplicas": 5, "sources": [
        {"type": "rabbitmq", "url": "amqp://app:hunter2@rabbitmq:5672/%2f", "queue": "jobs"}]}]}});
    let cases = [
        (json!({"config": {"namespace": "other"}}), "config.namespace: the agent works in the release namespace"),
        (sidecar_on_itself, "config.targets[0].minReplicas: 0 would let the agent scale away worker"),
        (inline_password, "a URL carries a password in the clear"),
        (json!({"replicaCount": 2, "leaderElection": {"enabled": false}}), "2 replicas without leader election"),
        (json!({"mode": "sidecar"}), "sidecar.workerDeployment: sidecar mode needs the name"),
        (json!({"replicas": 2}), "additional properties 'replicas' not allowed"),
        (json!({"metrics": {"listen": "9095"}}), "/metrics/listen"),
    ];
    for (values, reason) in cases {
        let kube = FakeKube::start().await;
        let refused = tool::render(&kube, "video", "queue-scaler", &[], Some(values.clone())).await;
        let error = refused.err().unwrap_or_else(|| panic!("{values} was accepted"));
        assert!(error.contains(reason), "{values}: expected {reason:?} in {error}");
        assert!(!error.contains("hunter2"), "the refusal repeats the password");
        let writes = kube.requests().into_iter().filter(|r| r.method != "GET").count();
        assert_eq!(writes, 0, "{values}: Helm wrote before refusing");
    }
}
