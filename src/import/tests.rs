//! Each KEDA trigger's documented fields, and an HPA, imported and read back by the config loader.

use std::time::Duration;

use super::*;
use crate::config::{Config, TargetConfig};
use crate::source::SourceKind;

fn fixture(name: &str) -> (String, String) {
    let path = format!("{}/tests/fixtures/import/{name}", env!("CARGO_MANIFEST_DIR"));
    (name.to_owned(), std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

/// Values for the placeholders, as a deployment of the agent would set them.
fn env(name: &str) -> Option<String> {
    Some(match name {
        "RABBIT_CONN_HOST" => "amqp://app:secret@rabbitmq:5672/%2f".to_owned(),
        "PROMETHEUS_URL" => "http://prometheus:9090".to_owned(),
        _ => "secret".to_owned(),
    })
}

/// Imports `names` and loads the output as `check` does.
fn imported(names: &[&str]) -> (Imported, Config) {
    let files: Vec<(String, String)> = names.iter().map(|n| fixture(n)).collect();
    let imported = import(&files).unwrap_or_else(|e| panic!("{e}"));
    let config = Config::parse("imported.yaml", &imported.config, env)
        .unwrap_or_else(|e| panic!("the imported config does not load: {e}\n{}", imported.config));
    (imported, config)
}

fn only_target(config: &Config) -> &TargetConfig {
    assert_eq!(config.targets.len(), 1);
    &config.targets[0]
}

/// The line of `needle` in a fixture.
fn line_of(name: &str, needle: &str) -> usize {
    fixture(name).1.lines().position(|l| l.contains(needle)).map(|i| i + 1).expect("in the fixture")
}

#[test]
fn kafka_with_sasl_from_a_trigger_authentication() {
    let (imported, config) = imported(&["kafka.yaml"]);
    assert_eq!(config.namespace.as_deref(), Some("shop"));
    assert_eq!(config.poll_interval, Duration::from_secs(10));
    let target = only_target(&config);
    assert_eq!((target.name(), target.min_replicas, target.max_replicas), ("orders-consumer", 0, 24));
    assert_eq!(target.cooldown_period, Some(Duration::from_secs(120)));
    assert_eq!(target.activation, 5.0);
    assert_eq!(target.fallback.map(|f| (f.failure_threshold, f.replicas)), Some((4, 6)));
    assert!(target.behavior.scale_down.is_some());
    let source = &target.sources[0];
    assert_eq!(source.backlog_per_worker, 50.0);
    let SourceKind::Kafka(kafka) = &source.kind else { panic!("not kafka: {:?}", source.kind) };
    assert_eq!((kafka.brokers.as_str(), kafka.group.as_str()), ("kafka-0.kafka:9092,kafka-1.kafka:9092", "orders"));
    assert_eq!(kafka.topic.as_deref(), Some("orders"));
    assert!(kafka.limit_to_partitions_with_lag && !kafka.allow_idle_consumers);
    assert!(kafka.sasl.is_some());
    assert!(
        imported.config.contains("# ${ORDERS_KAFKA_PASSWORD}: Secret orders-kafka, key password"),
        "{}",
        imported.config
    );
    assert!(imported.config.contains("password: '${ORDERS_KAFKA_PASSWORD}'"), "{}", imported.config);
    let line = line_of("kafka.yaml", "excludePersistentLag");
    let warning = format!("kafka.yaml:{line}: warning: spec.triggers[0].metadata.excludePersistentLag: not imported");
    assert!(imported.warnings.iter().any(|w| w.starts_with(&warning)), "{:?}", imported.warnings);
    assert!(imported.config.contains("# not imported: spec.triggers[0].metadata.excludePersistentLag"));
}

#[test]
fn rabbitmq_with_its_host_from_a_secret_and_keda_defaults() {
    let (imported, config) = imported(&["rabbitmq.yaml"]);
    assert_eq!(config.poll_interval, Duration::from_secs(30), "KEDA's default pollingInterval");
    assert!(imported.config.contains("# pollingInterval: KEDA's default 30s"));
    let target = only_target(&config);
    assert_eq!((target.min_replicas, target.max_replicas, target.activation), (0, 30, 2.0));
    assert_eq!(target.cooldown_period, Some(Duration::from_secs(300)), "KEDA's default cooldownPeriod");
    let SourceKind::RabbitMq(rabbit) = &target.sources[0].kind else { panic!("not rabbitmq") };
    assert_eq!(rabbit.queue.as_deref(), Some("thumbnails"));
    assert_eq!(target.sources[0].backlog_per_worker, 25.0);
    assert!(imported.config.contains("url: '${RABBIT_CONN_HOST}'"), "{}", imported.config);
    assert!(imported.config.contains("Secret rabbit-conn, key host"));
    assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);
}

#[test]
fn sqs_with_its_options() {
    let (imported, config) = imported(&["aws-sqs-queue.yaml"]);
    let target = only_target(&config);
    assert_eq!((target.min_replicas, target.max_replicas, target.activation), (1, 15, 1.0));
    assert_eq!(target.cooldown_period, None, "cooldownPeriod only matters with minReplicas 0");
    let SourceKind::Sqs(sqs) = &target.sources[0].kind else { panic!("not sqs") };
    assert_eq!(sqs.queue_url, "https://sqs.eu-west-1.amazonaws.com/123456789012/invoices");
    assert_eq!(sqs.region.as_deref(), Some("eu-west-1"));
    assert!(sqs.include_in_flight && !sqs.include_delayed);
    assert_eq!(target.sources[0].backlog_per_worker, 8.0);
    assert!(imported.config.contains("Secret aws-keys, key AWS_SECRET_ACCESS_KEY"), "{}", imported.config);
}

#[test]
fn pubsub_by_subscription_size() {
    let (imported, config) = imported(&["gcp-pubsub.yaml"]);
    assert_eq!(config.poll_interval, Duration::from_secs(60));
    let target = only_target(&config);
    let SourceKind::PubSub(pubsub) = &target.sources[0].kind else { panic!("not pubsub") };
    assert_eq!(pubsub.subscription, "projects/media-prod/subscriptions/transcode-jobs");
    assert_eq!((target.sources[0].backlog_per_worker, target.activation), (12.0, 3.0));
    assert!(imported.config.contains("credentialsFromEnv GOOGLE_APPLICATION_CREDENTIALS_JSON"));
}

#[test]
fn prometheus_reports_what_it_cannot_map() {
    let (imported, config) = imported(&["prometheus.yaml"]);
    let target = only_target(&config);
    let SourceKind::Prometheus(prometheus) = &target.sources[0].kind else { panic!("not prometheus") };
    assert_eq!(prometheus.query, r#"sum(export_jobs_pending{env="prod"})"#);
    assert!(!prometheus.ignore_null_values);
    assert_eq!((target.sources[0].backlog_per_worker, target.activation), (40.0, 1.0));
    let line = line_of("prometheus.yaml", "customHeaders:");
    assert_eq!(
        imported.warnings,
        [format!(
            "prometheus.yaml:{line}: warning: spec.triggers[0].metadata.customHeaders: not imported: no equivalent in \
             queue-scaler"
        )]
    );
}

#[test]
fn cron_becomes_a_schedule_and_the_smallest_activation_wins() {
    let (imported, config) = imported(&["cron.yaml"]);
    let target = only_target(&config);
    let schedule = &target.schedules[0];
    assert_eq!(
        (schedule.cron.as_str(), schedule.duration, schedule.min_replicas),
        ("0 8 * * 1-5", Duration::from_secs(630 * 60), 3)
    );
    assert_eq!(schedule.timezone.as_deref(), Some("Europe/Lisbon"));
    assert_eq!(target.sources.len(), 2);
    assert_eq!(target.sources[1].backlog_per_worker, 20.0, "KEDA's default value for rabbitmq");
    assert_eq!(target.activation, 1.0);
    assert!(imported.config.contains("# the smallest of the triggers' activations: 4 (rabbitmq), 1 (rabbitmq)"));
}

#[test]
fn an_hpa_external_metric_becomes_a_prometheus_query_to_check() {
    let (imported, config) = imported(&["hpa.yaml"]);
    assert_eq!(config.poll_interval, Duration::from_secs(15), "the HPA controller's sync period");
    let target = only_target(&config);
    assert_eq!((target.min_replicas, target.max_replicas), (2, 20));
    let SourceKind::Prometheus(prometheus) = &target.sources[0].kind else { panic!("not prometheus") };
    assert_eq!(prometheus.query, r#"sum(rabbitmq_queue_messages_ready{queue="mail"})"#);
    assert_eq!(prometheus.url, "http://prometheus:9090");
    assert_eq!(target.sources[0].backlog_per_worker, 30.0);
    assert!(imported.config.contains("# check this query"));
    let line = line_of("hpa.yaml", "- type: Resource");
    assert!(
        imported.warnings.iter().any(|w| w.starts_with(&format!("hpa.yaml:{line}: warning: spec.metrics[1]"))),
        "{:?}",
        imported.warnings
    );
}

#[test]
fn several_files_make_one_config_polled_at_the_smallest_interval() {
    let names = [
        "kafka.yaml",
        "rabbitmq.yaml",
        "aws-sqs-queue.yaml",
        "gcp-pubsub.yaml",
        "prometheus.yaml",
        "cron.yaml",
        "hpa.yaml",
    ];
    let (imported, config) = imported(&names);
    assert_eq!(config.targets.len(), 7);
    assert_eq!(config.poll_interval, Duration::from_secs(10));
    assert!(
        imported.config.contains("the smallest of the imported objects' (10s, 30s, 30s, 60s, 30s, 30s, 15s)"),
        "{}",
        imported.config
    );
}

#[test]
fn unknown_fields_and_triggers_are_reported_never_dropped() {
    let text = "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec:\n  scaleTargetRef: {name: x}\n  idleReplicaCount: 0\n  triggers:\n    - type: redis\n      metadata: {address: 'redis:6379'}\n";
    let imported = import(&[("x.yaml".to_owned(), text.to_owned())]).expect("imports");
    assert!(
        imported.warnings.iter().any(|w| w.starts_with("x.yaml:6: warning: spec.idleReplicaCount: not imported")),
        "{:?}",
        imported.warnings
    );
    assert!(
        imported.warnings.iter().any(|w| w.starts_with("x.yaml:8: warning: spec.triggers[0].type: not imported")),
        "{:?}",
        imported.warnings
    );
    assert!(imported.config.contains("# not imported: spec.idleReplicaCount"));
    Config::parse("imported.yaml", &imported.config, env).unwrap_or_else(|e| panic!("{e}\n{}", imported.config));
}

#[test]
fn rabbitmq_with_a_queue_pattern_in_a_vhost_scaling_a_stateful_set() {
    let (imported, config) = imported(&["rabbitmq-regex.yaml"]);
    let target = only_target(&config);
    let workload = target.workload();
    assert_eq!(
        (workload.api_version.as_str(), workload.kind.as_str(), workload.name.as_str()),
        ("apps/v1", "StatefulSet", "renderer")
    );
    let SourceKind::RabbitMq(rabbit) = &target.sources[0].kind else { panic!("not rabbitmq") };
    assert_eq!((rabbit.queue_regex.as_deref(), rabbit.queue.as_deref()), (Some("render-.*"), None));
    assert_eq!(rabbit.vhost.as_deref(), Some("jobs"));
    assert_eq!(rabbit.management_url.as_deref(), Some("http://guest:guest@rabbitmq:15672"));
    // KEDA's `max` over the matching queues has no equivalent: queue-scaler sums them, and says so.
    assert!(imported.config.contains("# not imported: operation `max`"), "{}", imported.config);
    let line = line_of("rabbitmq-regex.yaml", "operation: max");
    assert_eq!(
        imported.warnings,
        [format!(
            "rabbitmq-regex.yaml:{line}: warning: spec.triggers[0].metadata.operation: not imported: operation `max`"
        )]
    );
}
