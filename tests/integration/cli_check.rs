//! `queue-scaler check` and `run` on broken configs: exit 2, one line per problem naming file, line and field, and
//! nothing contacted.

use std::time::Duration;

use crate::support::agent::BINARY;
use crate::support::kube_api::FakeKube;

const GOOD: &str = "\
namespace: video
pollInterval: 5s
targets:
  - deployment: worker
    minReplicas: 1
    maxReplicas: 10
    sources:
      - type: rabbitmq
        url: amqp://app:${QS_TEST_PASSWORD}@rabbitmq:5672/%2f
        queue: videos
        backlogPerWorker: 10
";

/// Each broken config: what is changed in `GOOD`, and the start of the line `check` must print after `FILE:`.
const BROKEN: &[(&str, &str, &str)] = &[
    ("minReplicas: 1", "minReplicas: 12", "5: targets[0].minReplicas: minReplicas (12) is above maxReplicas (10)"),
    ("maxReplicas: 10", "maxReplicaz: 10", "6: targets[0].maxReplicaz: unknown field; did you mean `maxReplicas`?"),
    ("    maxReplicas: 10\n", "", "4: targets[0].maxReplicas: missing; this field is required"),
    ("pollInterval: 5s", "pollInterval: 5", "2: pollInterval: must be a duration with a unit"),
    ("type: rabbitmq", "type: nats", "8: targets[0].sources[0].type: unknown source type `nats`"),
    (
        "backlogPerWorker: 10",
        "backlogPerWorker: 0",
        "11: targets[0].sources[0].backlogPerWorker: 0 cannot divide a backlog",
    ),
    ("deployment: worker", "deployment: Worker_1", "4: targets[0].deployment: `Worker_1` is not a Deployment name"),
    (
        "url: amqp://app",
        "url: http://app",
        "9: targets[0].sources[0].url: `http://app:***@rabbitmq:5672/%2f` is not an AMQP URL",
    ),
    ("queue: videos", "queue: ''", "10: targets[0].sources[0].queue: is empty"),
    ("namespace: video", "namespace: Video", "1: namespace: `Video` is not a namespace name"),
    (
        "    sources:",
        "    schedules: [{cron: 'at noon', duration: 1h, minReplicas: 2}]\n    sources:",
        "7: targets[0].schedules[0].cron: `at noon` is not a cron expression",
    ),
    (
        "    sources:",
        "    fallback: {replicas: 0}\n    sources:",
        "7: targets[0].fallback.replicas: 0 is outside 1..=10 (maxReplicas); an outage must never scale to zero",
    ),
    (
        "    sources:",
        "    behavior: {scaleUp: {policies: [{type: Pods, value: 0, periodSeconds: 15}]}}\n    sources:",
        "7: targets[0].behavior.scaleUp.policies[0].value: must be at least 1",
    ),
    ("  - deployment: worker", "  - deployment: worker\n   bad: indent", "5: not valid YAML"),
];

async fn check(text: &str, password: Option<&str>) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("qs.yaml");
    std::fs::write(&file, text).expect("write");
    let mut command = tokio::process::Command::new(BINARY);
    command.arg("check").arg("-c").arg(&file).env_remove("QS_TEST_PASSWORD");
    if let Some(password) = password {
        command.env("QS_TEST_PASSWORD", password);
    }
    let out = command.output().await.expect("run queue-scaler check");
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&file.display().to_string(), "FILE");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

#[tokio::test]
async fn check_accepts_the_good_config() {
    let (code, stdout, stderr) = check(GOOD, Some("s3cret")).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("ok (1 target(s))"), "{stdout}");
}

#[tokio::test]
async fn check_rejects_each_kind_of_broken_config_naming_the_field() {
    for (from, to, expected) in BROKEN {
        assert!(GOOD.contains(from), "{from}");
        let (code, _, stderr) = check(&GOOD.replacen(from, to, 1), Some("s3cret-pw")).await;
        assert_eq!(code, 2, "{to}: {stderr}");
        assert!(stderr.starts_with(&format!("FILE:{expected}")), "{to}:\n  expected FILE:{expected}\n  got {stderr}");
        assert!(!stderr.contains("s3cret-pw"), "the password leaked: {stderr}");
    }
}

#[tokio::test]
async fn check_names_a_missing_environment_variable_and_a_missing_file() {
    let (code, _, stderr) = check(GOOD, None).await;
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("FILE:9: targets[0].sources[0].url: environment variable `QS_TEST_PASSWORD` is not set")
    );

    let out = tokio::process::Command::new(BINARY)
        .args(["check", "-c", "/nonexistent/qs.yaml"])
        .output()
        .await
        .expect("run queue-scaler check");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/qs.yaml: cannot read the config file"));
}

#[tokio::test]
async fn run_with_a_broken_config_exits_2_before_contacting_anything() {
    let kube = FakeKube::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("qs.yaml");
    std::fs::write(&file, GOOD.replace("minReplicas: 1", "minReplicas: 12")).expect("write");
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::process::Command::new(BINARY)
            .arg("run")
            .arg("-c")
            .arg(&file)
            .env("KUBECONFIG", kube.kubeconfig_path())
            .env("QS_TEST_PASSWORD", "pw")
            .output(),
    )
    .await
    .expect("exits at once")
    .expect("ran");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("minReplicas (12) is above maxReplicas (10)"));
    assert!(kube.requests().is_empty(), "the API was contacted: {:?}", kube.requests());
}

#[tokio::test]
async fn check_prints_warnings_and_refuses_them_only_with_strict() {
    // Over AMQP a RabbitMQ source counts ready messages only: busy workers look idle.
    let (code, stdout, stderr) = check(GOOD, Some("pw")).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("ok (1 target(s))"), "{stdout}");
    assert!(
        stderr.starts_with(
            "FILE:8: warning: targets[0].sources[0].managementUrl: is not set, so only ready messages count"
        ),
        "{stderr}"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("qs.yaml");
    std::fs::write(&file, GOOD).expect("write");
    let strict = tokio::process::Command::new(BINARY)
        .args(["check", "--strict", "-c"])
        .arg(&file)
        .env("QS_TEST_PASSWORD", "pw")
        .output()
        .await
        .expect("run queue-scaler check --strict");
    assert_eq!(strict.status.code(), Some(2), "{}", String::from_utf8_lossy(&strict.stderr));
    assert!(String::from_utf8_lossy(&strict.stderr).contains("1 warning(s), refused by --strict"));
    // Counting unacknowledged messages too: nothing to warn about.
    let counted = GOOD.replace("queue: videos\n", "queue: videos\n        managementUrl: http://rabbitmq:15672\n");
    let (code, _, stderr) = check(&counted, Some("pw")).await;
    assert_eq!((code, stderr.as_str()), (0, ""));
}

#[tokio::test]
async fn an_absurd_hold_is_a_clear_error_not_a_panic() {
    let out = tokio::process::Command::new(BINARY)
        .args(["scale", "worker", "--replicas", "3", "--hold", "1000000y", "--namespace", "video"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .await
        .expect("run queue-scaler scale");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is longer than a year; hold for at most 365d"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
