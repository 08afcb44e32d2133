//! The fake Kubernetes API, driven by the real clients it must satisfy: kubectl 1.32 and kube-rs 5.
//! If these pass, agent tests that use the fake test against what a cluster would do, not against
//! the fake's quirks.

use std::time::{Duration, Instant};

use futures::StreamExt;
use hyper::Method;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v1::ScaleSpec;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchParams};
use kube::core::WatchEvent;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::support::kube_api::{FakeKube, Fault, FaultKind, Gate, Kind};

/// Every wait in these tests; each normally ends in milliseconds.
const DEADLINE: Duration = Duration::from_secs(5);

/// A fake with Deployment `video/worker` at one replica, selecting `app=worker`.
async fn fake_with_worker() -> FakeKube {
    let kube = FakeKube::start().await;
    kube.create_deployment("video", "worker", 1, &[("app", "worker")]);
    kube
}

/// Runs kubectl against the fake, requiring success and a clean stderr (discovery trouble shows up
/// there).
async fn kubectl_ok(kube: &FakeKube, args: &[&str]) -> String {
    let output = kube.kubectl(args).await.expect("run kubectl");
    assert!(output.success, "kubectl {args:?} failed: {}", output.stderr);
    assert_eq!(output.stderr, "", "kubectl {args:?} complained");
    output.stdout
}

fn api_error_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// A Recorder as the agent would make one; it remembers what it published to turn repeats into a
/// series.
fn recorder(kube: &FakeKube) -> Recorder {
    let reporter = Reporter { controller: "queue-scaler".into(), instance: Some("queue-scaler-0".into()) };
    Recorder::new(kube.client("video"), reporter)
}

async fn publish_scaled_event(recorder: &Recorder, deployment: &Deployment) {
    let event = Event {
        type_: EventType::Normal,
        reason: "Scaled".into(),
        note: Some("backlog 120 over 10 per worker: 1 -> 3".into()),
        action: "Scale".into(),
        secondary: None,
    };
    recorder.publish(&event, &deployment.object_ref(&())).await.expect("publish an event through events.k8s.io/v1");
}

#[tokio::test]
async fn kubectl_scales_annotates_and_reads_a_deployment() {
    let kube = fake_with_worker().await;

    let scaled = kubectl_ok(&kube, &["scale", "deployment/worker", "--replicas=3", "-n", "video"]).await;
    assert_eq!(scaled.trim(), "deployment.apps/worker scaled");
    assert_eq!(kube.replicas("video", "worker"), Some(3));
    let writes: Vec<u32> = kube.scale_writes("video", "worker").into_iter().map(|(_, n)| n).collect();
    assert_eq!(writes, [3], "kubectl writes the scale subresource once");
    let scale_patch = kube
        .requests()
        .into_iter()
        .find(|r| r.method == Method::PATCH && r.path.ends_with("/scale"))
        .expect("kubectl scale patches the scale subresource");
    assert_eq!(scale_patch.body, Some(json!({ "spec": { "replicas": 3 } })));

    assert!(kube.set_annotation("video", "worker", "example.com/owner", "media-team"));
    let shown = kubectl_ok(&kube, &["get", "deployment", "worker", "-n", "video", "-o", "json"]).await;
    let shown: Value = serde_json::from_str(&shown).expect("kubectl prints JSON");
    assert_eq!(shown["spec"]["replicas"], 3);
    assert_eq!(shown["status"]["readyReplicas"], 3);
    assert_eq!(shown["metadata"]["generation"], 2, "the scale changed the spec once");
    assert_eq!(shown["metadata"]["annotations"]["example.com/owner"], "media-team");

    let table = kubectl_ok(&kube, &["get", "deployments", "-n", "video"]).await;
    let lines: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert_eq!(lines[1][..4], ["worker", "3/3", "3", "3"]);
    assert_eq!(lines.len(), 2, "one row per deployment:\n{table}");

    let hold = "queue-scaler.io/hold-until=2030-01-01T00:00:00Z";
    kubectl_ok(&kube, &["annotate", "deployment", "worker", "-n", "video", hold]).await;
    let deployment = kube.deployment("video", "worker").expect("the deployment still exists");
    assert_eq!(deployment["metadata"]["annotations"]["queue-scaler.io/hold-until"], "2030-01-01T00:00:00Z");
    assert_eq!(deployment["metadata"]["generation"], 2, "an annotation is not a spec change");
}

#[tokio::test]
async fn kubectl_lists_events_written_through_events_v1_and_leases() {
    let kube = fake_with_worker().await;
    let deployment: Deployment =
        Api::namespaced(kube.client("video"), "video").get("worker").await.expect("get the deployment");
    publish_scaled_event(&recorder(&kube), &deployment).await;
    let manifests = tempfile::tempdir().expect("a directory for the manifest");
    let lease = manifests.path().join("lease.yaml");
    let manifest = [
        "apiVersion: coordination.k8s.io/v1",
        "kind: Lease",
        "metadata: { name: queue-scaler, namespace: video }",
        "spec: { holderIdentity: queue-scaler-0, leaseDurationSeconds: 15 }",
    ];
    std::fs::write(&lease, manifest.join("\n")).expect("write the manifest");
    let lease = lease.to_str().expect("a UTF-8 path");
    // Without an OpenAPI document kubectl cannot validate client-side, as the project's notes say.
    let applied = kubectl_ok(&kube, &["apply", "--server-side", "--validate=false", "-f", lease]).await;
    assert_eq!(applied.trim(), "lease.coordination.k8s.io/queue-scaler serverside-applied");

    let events = kubectl_ok(&kube, &["get", "events", "-n", "video"]).await;
    let lines: Vec<&str> = events.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[1..4], ["Normal", "Scaled", "deployment/worker"]);
    assert!(lines[1].ends_with("backlog 120 over 10 per worker: 1 -> 3"), "row: {}", lines[1]);

    let leases = kubectl_ok(&kube, &["get", "lease", "-n", "video"]).await;
    let lines: Vec<Vec<&str>> = leases.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "HOLDER", "AGE"]);
    assert_eq!(lines[1][..2], ["queue-scaler", "queue-scaler-0"]);
}

#[tokio::test]
async fn kubectl_gets_pods_by_label_and_a_not_found_status_for_unknown_paths() {
    let kube = FakeKube::start().await;
    kube.create_pod("video", "worker-a", &[("app", "worker")], "10.0.0.11");
    kube.create_pod("video", "other-b", &[("app", "other")], "10.0.0.12");

    let pods = kubectl_ok(&kube, &["get", "pods", "-n", "video", "-l", "app=worker", "-o", "wide"]).await;
    let lines: Vec<Vec<&str>> = pods.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]);
    assert_eq!(lines.len(), 2, "only the selected pod:\n{pods}");
    assert_eq!(lines[1][..4], ["worker-a", "1/1", "Running", "0"]);
    assert_eq!(lines[1][5], "10.0.0.11");

    let unknown = kube.kubectl(&["get", "--raw", "/apis/nothing.example/v1"]).await.expect("run kubectl get --raw");
    assert!(!unknown.success);
    assert!(unknown.stderr.contains("NotFound"), "stderr: {}", unknown.stderr);
}

#[tokio::test]
async fn scale_subresource_round_trips_through_kube_rs() {
    let kube = fake_with_worker().await;
    let deployments: Api<Deployment> = Api::default_namespaced(kube.client("video"));

    let scale = deployments.get_scale("worker").await.expect("get the scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(1));
    assert_eq!(scale.status.and_then(|s| s.selector).as_deref(), Some("app=worker"));

    let patch = Patch::Merge(json!({ "spec": { "replicas": 4 } }));
    let scaled = deployments.patch_scale("worker", &PatchParams::default(), &patch).await.expect("patch the scale");
    assert_eq!(scaled.spec.and_then(|s| s.replicas), Some(4));
    assert_eq!(kube.replicas("video", "worker"), Some(4));
    let deployment = kube.deployment("video", "worker").expect("the deployment exists");
    assert_eq!(deployment["metadata"]["generation"], 2);
    assert_eq!(deployment["status"]["availableReplicas"], 4, "the built-in controller follows the spec");
    let sent = kube.requests().into_iter().rfind(|r| r.method == Method::PATCH).expect("the patch was recorded");
    assert_eq!(sent.content_type.as_deref(), Some("application/merge-patch+json"));
}

#[tokio::test]
async fn a_stale_scale_replace_gets_409_and_changes_nothing() {
    let kube = fake_with_worker().await;
    let deployments: Api<Deployment> = Api::default_namespaced(kube.client("video"));
    let stale = deployments.get_scale("worker").await.expect("get the scale");
    deployments
        .patch_scale("worker", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 2 } })))
        .await
        .expect("patch the scale");

    let mut wanted = stale.clone();
    wanted.spec = Some(ScaleSpec { replicas: Some(9) });
    let error = deployments
        .replace_scale("worker", &PostParams::default(), &wanted)
        .await
        .expect_err("a replace carrying a stale resourceVersion must fail");
    assert_eq!(api_error_code(&error), Some(409), "error: {error}");
    assert_eq!(kube.replicas("video", "worker"), Some(2));

    let mut fresh = deployments.get_scale("worker").await.expect("get the scale again");
    fresh.spec = Some(ScaleSpec { replicas: Some(9) });
    deployments
        .replace_scale("worker", &PostParams::default(), &fresh)
        .await
        .expect("a replace at the current resourceVersion succeeds");
    kube.wait_until_replicas("video", "worker", 9, DEADLINE).await.expect("replicas 9");
}

#[tokio::test]
async fn deployment_status_stays_put_when_the_controller_is_off() {
    let kube = fake_with_worker().await;
    kube.set_deployment_controller(false);
    let deployments: Api<Deployment> = Api::default_namespaced(kube.client("video"));
    deployments
        .patch_scale("worker", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 5 } })))
        .await
        .expect("patch the scale");
    let deployment = deployments.get("worker").await.expect("get the deployment");
    let status = deployment.status.expect("a status");
    assert_eq!(deployment.spec.and_then(|s| s.replicas), Some(5));
    assert_eq!(status.ready_replicas, Some(1), "nobody started the new pods");
    assert_eq!(status.observed_generation, Some(1));

    kube.modify(Kind::Deployment, "video", "worker", |d| d["status"]["readyReplicas"] = json!(3))
        .expect("the deployment exists");
    let status = deployments.get("worker").await.expect("get the deployment").status.expect("a status");
    assert_eq!(status.ready_replicas, Some(3));
}

#[tokio::test]
async fn a_reflector_sees_a_scale_change() {
    let kube = fake_with_worker().await;
    let deployments: Api<Deployment> = Api::default_namespaced(kube.client("video"));
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(deployments.clone(), watcher::Config::default())).applied_objects();
    let reflecting = tokio::spawn(stream.for_each(|_| async {}));
    let replicas_seen = || reader.state().first().and_then(|d| d.spec.as_ref()).and_then(|s| s.replicas);
    kube.wait_until("the reflector to list the deployment", DEADLINE, |_| replicas_seen() == Some(1))
        .await
        .expect("initial list");

    deployments
        .patch_scale("worker", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 6 } })))
        .await
        .expect("patch the scale");
    kube.wait_until("the reflector to see 6 replicas", DEADLINE, |_| replicas_seen() == Some(6))
        .await
        .expect("watch event");
    let watches = kube.requests().into_iter().filter(|r| r.query.contains("watch=true")).count();
    assert_eq!(watches, 1, "one watch carried the change");
    reflecting.abort();
}

#[tokio::test]
async fn a_watcher_relists_when_its_resource_version_was_compacted_away() {
    let kube = fake_with_worker().await;
    let deployments: Api<Deployment> = Api::default_namespaced(kube.client("video"));
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(deployments, watcher::Config::default())).applied_objects();
    let reflecting = tokio::spawn(stream.for_each(|_| async {}));
    let is_watching = |kube: &FakeKube| kube.requests().iter().any(|r| r.query.contains("watch=true"));
    kube.wait_until("the watcher to start watching", DEADLINE, is_watching).await.expect("watch");

    // The watch is cut, and its reconnection held back while the deployment changes and the history is compacted,
    // as etcd compaction does on a quiet resource: the watcher's resourceVersion is then older than the history.
    let reconnection = Gate::default();
    kube.inject(Fault {
        method: None,
        path_contains: "watch=true".into(),
        kind: FaultKind::Hold(reconnection.clone()),
        times: 1,
    });
    kube.close_watches();
    kube.create_pod("video", "unrelated", &[("app", "other")], "10.0.0.20");
    kube.modify(Kind::Deployment, "video", "worker", |d| d["spec"]["replicas"] = json!(7));
    kube.compact_history();
    reconnection.open();

    let lists = |kube: &FakeKube| {
        kube.requests()
            .into_iter()
            .filter(|r| r.path == "/apis/apps/v1/namespaces/video/deployments" && !r.query.contains("watch"))
            .collect::<Vec<_>>()
    };
    kube.wait_until("a second list", DEADLINE, |kube| lists(kube).len() == 2).await.expect("re-list");
    // Both watches before the re-list asked for the first list's version: the change written after the cut did not
    // reach the watcher over the closed stream, so the 410 for that version is what made it list again.
    let listed = lists(&kube);
    let listed_version = listed[0]
        .response
        .as_ref()
        .and_then(|list| list.pointer("/metadata/resourceVersion"))
        .and_then(Value::as_str)
        .expect("the first list carries a resourceVersion");
    let resumed_from_listed = |query: &str| query.split('&').any(|p| p == format!("resourceVersion={listed_version}"));
    let watches: Vec<String> = kube
        .requests()
        .into_iter()
        .filter(|r| r.query.contains("watch=true") && r.at < listed[1].at)
        .map(|r| r.query)
        .collect();
    assert!(
        watches.len() == 2 && watches.iter().all(|query| resumed_from_listed(query)),
        "the watch before the re-list resumed from version {listed_version}: {watches:?}"
    );
    let replicas_seen = || reader.state().first().and_then(|d| d.spec.as_ref()).and_then(|s| s.replicas);
    kube.wait_until("the re-list to bring 7 replicas", DEADLINE, |_| replicas_seen() == Some(7))
        .await
        .expect("re-listed state");
    reflecting.abort();
}

#[tokio::test]
async fn a_closed_watch_ends_without_what_was_written_after_the_close() {
    let kube = fake_with_worker().await;
    let deployments: Api<Deployment> = Api::default_namespaced(kube.client("video"));
    let mut events = deployments.watch(&WatchParams::default(), "0").await.expect("start the watch").boxed();
    let opening = tokio::time::timeout(DEADLINE, events.next()).await.expect("the opening event in time");
    assert!(matches!(opening, Some(Ok(WatchEvent::Added(_)))), "the watch opens with the deployment: {opening:?}");

    kube.close_watches();
    kube.modify(Kind::Deployment, "video", "worker", |d| d["spec"]["replicas"] = json!(7));
    let rest: Vec<_> = tokio::time::timeout(DEADLINE, events.collect()).await.expect("the closed watch ends in time");
    assert!(rest.is_empty(), "a cut stream carries nothing written after the cut: {rest:?}");
}

#[tokio::test]
async fn a_streaming_list_watcher_resumes_from_bookmarks_without_listing() {
    let kube = fake_with_worker().await;
    let deployments: Api<Deployment> = Api::default_namespaced(kube.client("video"));
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default().streaming_lists().timeout(1);
    let stream = reflector(writer, watcher(deployments.clone(), config)).applied_objects();
    let reflecting = tokio::spawn(stream.for_each(|_| async {}));
    let replicas_seen = || reader.state().first().and_then(|d| d.spec.as_ref()).and_then(|s| s.replicas);
    kube.wait_until("the initial events", DEADLINE, |_| replicas_seen() == Some(1)).await.expect("initial events");
    let watches =
        |kube: &FakeKube| kube.requests().into_iter().filter(|r| r.query.contains("watch=true")).collect::<Vec<_>>();
    kube.wait_until("the watch to time out and resume", DEADLINE, |kube| watches(kube).len() >= 2)
        .await
        .expect("a second watch");

    deployments
        .patch_scale("worker", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 8 } })))
        .await
        .expect("patch the scale");
    kube.wait_until("the resumed watch to bring 8 replicas", DEADLINE, |_| replicas_seen() == Some(8))
        .await
        .expect("watch event");
    let resumed = &watches(&kube)[1];
    assert!(!resumed.query.contains("sendInitialEvents"), "resumed from a bookmark: {}", resumed.query);
    assert!(!resumed.query.contains("resourceVersion=0&"), "resumed from a bookmark: {}", resumed.query);
    let lists = kube.requests().into_iter().filter(|r| r.method == Method::GET && !r.query.contains("watch")).count();
    assert_eq!(lists, 0, "a streaming list never lists");
    reflecting.abort();
}

#[tokio::test]
async fn a_label_selected_watch_sees_objects_move_in_and_out_of_the_selection() {
    let kube = FakeKube::start().await;
    kube.create_pod("video", "worker-a", &[("app", "worker"), ("tier", "cold")], "10.0.0.11");
    let pods: Api<Pod> = Api::default_namespaced(kube.client("video"));
    let mut events =
        pods.watch(&WatchParams::default().labels("tier=hot").timeout(10), "0").await.expect("start the watch").boxed();
    let mut next = async || match tokio::time::timeout(DEADLINE, events.next()).await.expect("an event in time") {
        Some(Ok(WatchEvent::Added(pod))) => ("ADDED", pod.name_any()),
        Some(Ok(WatchEvent::Modified(pod))) => ("MODIFIED", pod.name_any()),
        Some(Ok(WatchEvent::Deleted(pod))) => ("DELETED", pod.name_any()),
        other => panic!("unexpected watch item: {other:?}"),
    };
    let set_tier = |tier: &str| {
        kube.modify(Kind::Pod, "video", "worker-a", |pod| pod["metadata"]["labels"]["tier"] = json!(tier))
            .expect("the pod exists");
    };

    set_tier("hot");
    assert_eq!(next().await, ("ADDED", "worker-a".to_string()));
    kube.modify(Kind::Pod, "video", "worker-a", |pod| pod["metadata"]["annotations"] = json!({ "a": "b" }));
    assert_eq!(next().await, ("MODIFIED", "worker-a".to_string()));
    set_tier("cold");
    assert_eq!(next().await, ("DELETED", "worker-a".to_string()));
    // A change outside the selection is not sent: the next event is the new hot pod's.
    kube.modify(Kind::Pod, "video", "worker-a", |pod| pod["metadata"]["annotations"] = json!({ "a": "c" }));
    kube.create_pod("video", "worker-b", &[("app", "worker"), ("tier", "hot")], "10.0.0.12");
    assert_eq!(next().await, ("ADDED", "worker-b".to_string()));
}

#[tokio::test]
async fn pods_are_listed_by_label_selector_and_patched_with_a_deletion_cost() {
    let kube = FakeKube::start().await;
    kube.create_pod("video", "worker-a", &[("app", "worker"), ("tier", "queue")], "10.0.0.11");
    kube.create_pod("video", "worker-b", &[("app", "worker")], "10.0.0.12");
    kube.create_pod("video", "web-c", &[("app", "web")], "10.0.0.13");
    kube.create_pod("audio", "worker-d", &[("app", "worker")], "10.0.0.14");
    let pods: Api<Pod> = Api::default_namespaced(kube.client("video"));
    let names = |list: kube::core::ObjectList<Pod>| list.items.iter().map(|p| p.name_any()).collect::<Vec<_>>();

    let workers = pods.list(&ListParams::default().labels("app=worker")).await.expect("list workers");
    let ips: Vec<_> = workers.items.iter().filter_map(|p| p.status.as_ref()?.pod_ip.clone()).collect();
    assert_eq!(names(workers), ["worker-a", "worker-b"]);
    assert_eq!(ips, ["10.0.0.11", "10.0.0.12"]);
    let both = pods.list(&ListParams::default().labels("app in (worker,web),tier!=queue")).await.expect("list");
    assert_eq!(names(both), ["web-c", "worker-b"]);
    let by_name = pods.list(&ListParams::default().fields("metadata.name=worker-b")).await.expect("list");
    assert_eq!(names(by_name), ["worker-b"]);

    let cost = "controller.kubernetes.io/pod-deletion-cost";
    let patch = json!({ "metadata": { "annotations": { cost: "-100" } } });
    pods.patch("worker-a", &PatchParams::default(), &Patch::Merge(patch)).await.expect("patch the pod");
    let pod = kube.pod("video", "worker-a").expect("the pod exists");
    assert_eq!(pod["metadata"]["annotations"][cost], "-100");
    assert_eq!(pod["status"]["podIP"], "10.0.0.11", "a patch keeps what it does not mention");
}

#[tokio::test]
async fn leases_conflict_on_create_and_on_stale_replace() {
    let kube = FakeKube::start().await;
    let leases: Api<Lease> = Api::default_namespaced(kube.client("video"));
    let lease: Lease = serde_json::from_value(json!({
        "metadata": { "name": "queue-scaler" },
        "spec": { "holderIdentity": "a", "leaseDurationSeconds": 15 },
    }))
    .expect("a valid lease");
    let created = leases.create(&PostParams::default(), &lease).await.expect("create the lease");
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());

    let again = leases.create(&PostParams::default(), &lease).await.expect_err("the lease exists");
    assert_eq!(api_error_code(&again), Some(409));
    assert!(matches!(&again, kube::Error::Api(s) if s.reason == "AlreadyExists"), "error: {again}");

    let mut taken = created.clone();
    taken.spec.as_mut().expect("a spec").holder_identity = Some("b".into());
    let taken =
        leases.replace("queue-scaler", &PostParams::default(), &taken).await.expect("replace at the current version");
    let mut late = created;
    late.spec.as_mut().expect("a spec").holder_identity = Some("c".into());
    let stale = leases.replace("queue-scaler", &PostParams::default(), &late).await.expect_err("stale");
    assert!(matches!(&stale, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"), "error: {stale}");
    assert_eq!(kube.lease("video", "queue-scaler").expect("the lease")["spec"]["holderIdentity"], "b");
    assert_ne!(taken.metadata.resource_version, late.metadata.resource_version);
}

#[tokio::test]
async fn server_side_apply_on_a_lease_conflicts_between_field_managers() {
    let kube = FakeKube::start().await;
    let leases: Api<Lease> = Api::default_namespaced(kube.client("video"));
    let claim = |holder: &str| {
        Patch::Apply(json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "spec": { "holderIdentity": holder, "leaseDurationSeconds": 15 },
        }))
    };
    leases.patch("queue-scaler", &PatchParams::apply("candidate-a"), &claim("a")).await.expect("a claims first");
    let refused = leases
        .patch("queue-scaler", &PatchParams::apply("candidate-b"), &claim("b"))
        .await
        .expect_err("b may not take a's fields");
    assert_eq!(api_error_code(&refused), Some(409), "error: {refused}");
    leases.patch("queue-scaler", &PatchParams::apply("candidate-a"), &claim("a")).await.expect("a renews");

    let renew = Patch::Strategic(json!({ "spec": { "renewTime": "2030-01-01T00:00:00.000000Z" } }));
    let patch_params = PatchParams { field_manager: Some("candidate-a".into()), ..PatchParams::default() };
    leases.patch("queue-scaler", &patch_params, &renew).await.expect("a strategic merge patch");
    leases.patch("queue-scaler", &PatchParams::apply("candidate-b").force(), &claim("b")).await.expect("forced");
    let lease = kube.lease("video", "queue-scaler").expect("the lease");
    assert_eq!(lease["spec"]["holderIdentity"], "b");
    assert_eq!(lease["spec"]["renewTime"], "2030-01-01T00:00:00.000000Z");
}

#[tokio::test]
async fn recorder_events_are_one_store_listed_through_core_v1() {
    let kube = fake_with_worker().await;
    let deployment: Deployment = Api::namespaced(kube.client("video"), "video").get("worker").await.expect("get");
    let recorder = recorder(&kube);
    publish_scaled_event(&recorder, &deployment).await;
    publish_scaled_event(&recorder, &deployment).await;

    let core: Api<CoreEvent> = Api::namespaced(kube.client("video"), "video");
    let listed = core.list(&ListParams::default()).await.expect("list core events");
    assert_eq!(listed.items.len(), 1, "a second identical event becomes a series, not a new event");
    let event = &listed.items[0];
    assert_eq!(event.message.as_deref(), Some("backlog 120 over 10 per worker: 1 -> 3"));
    assert_eq!(event.involved_object.name.as_deref(), Some("worker"));
    assert_eq!(event.involved_object.kind.as_deref(), Some("Deployment"));
    assert_eq!(event.reporting_component.as_deref(), Some("queue-scaler"));
    assert_eq!(event.series.as_ref().and_then(|s| s.count), Some(2));
    let stored = kube.events("video");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["reason"], "Scaled");
    let methods: Vec<Method> = kube
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/apis/events.k8s.io/v1/"))
        .map(|r| r.method)
        .collect();
    assert_eq!(methods, [Method::POST, Method::PATCH]);
}

#[tokio::test]
async fn an_injected_status_fails_exactly_times_requests_then_service_resumes() {
    let kube = fake_with_worker().await;
    kube.inject(Fault {
        method: Some(Method::GET),
        path_contains: "/deployments/worker".into(),
        kind: FaultKind::Status(500),
        times: 2,
    });
    let deployments: Api<Deployment> = Api::default_namespaced(kube.client("video"));
    for attempt in 0..2 {
        let error = deployments.get("worker").await.expect_err("the fault answers");
        assert_eq!(api_error_code(&error), Some(500), "attempt {attempt}: {error}");
    }
    deployments.get("worker").await.expect("service resumed");
    let statuses: Vec<Option<u16>> = kube.requests().into_iter().map(|r| r.status).collect();
    assert_eq!(statuses, [Some(500), Some(500), Some(200)]);
}

#[tokio::test]
async fn a_stall_delays_the_answer_once() {
    let kube = fake_with_worker().await;
    let stall = Duration::from_millis(800);
    kube.inject(Fault { method: None, path_contains: "/scale".into(), kind: FaultKind::Stall(stall), times: 1 });
    let deployments: Api<Deployment> = Api::default_namespaced(kube.client("video"));
    let started = Instant::now();
    deployments.get_scale("worker").await.expect("a stalled request is still answered");
    assert!(started.elapsed() >= stall, "answered after {:?}", started.elapsed());
    let started = Instant::now();
    deployments.get_scale("worker").await.expect("get the scale");
    assert!(started.elapsed() < stall, "the second request was stalled too: {:?}", started.elapsed());
}

#[tokio::test]
async fn a_reset_drops_the_connection_and_the_client_sees_an_error() {
    let kube = fake_with_worker().await;
    kube.inject(Fault {
        method: Some(Method::PATCH),
        path_contains: "/deployments/worker/scale".into(),
        kind: FaultKind::Reset,
        times: 1,
    });
    let deployments: Api<Deployment> = Api::default_namespaced(kube.client("video"));
    let patch = Patch::Merge(json!({ "spec": { "replicas": 3 } }));
    let outcome = tokio::time::timeout(DEADLINE, deployments.patch_scale("worker", &PatchParams::default(), &patch))
        .await
        .expect("a dropped connection fails fast instead of hanging");
    let error = outcome.expect_err("no answer is an error");
    assert_eq!(api_error_code(&error), None, "not an API status: {error}");
    assert_eq!(kube.replicas("video", "worker"), Some(1), "the dropped write had no effect");
    assert_eq!(kube.requests().last().map(|r| r.status), Some(None));

    deployments.patch_scale("worker", &PatchParams::default(), &patch).await.expect("the next write works");
    assert_eq!(kube.replicas("video", "worker"), Some(3));
}
