//! Every validation rule, with the exact message a user sees.

use super::*;

const GOOD: &str = "\
namespace: video
pollInterval: 2s
metrics:
  listen: 127.0.0.1:9095
targets:
  - deployment: transcoding-worker
    minReplicas: 0
    maxReplicas: 20
    sources:
      - type: rabbitmq
        url: amqp://app:${RABBITMQ_PASSWORD}@rabbitmq:5672/%2f
        queue: videos
        backlogPerWorker: 5
";

fn env(name: &str) -> Option<String> {
    (name == "RABBITMQ_PASSWORD").then(|| "hunter2".to_owned())
}

fn errors(text: &str) -> String {
    Config::parse("qs.yaml", text, env).expect_err("config should be rejected").to_string()
}

/// `GOOD` with one line replaced.
fn with(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{from}");
    GOOD.replacen(from, to, 1)
}

#[test]
fn parses_the_good_config_with_defaults() {
    let config = Config::parse("qs.yaml", GOOD, env).expect("valid");
    assert_eq!(config.namespace.as_deref(), Some("video"));
    assert_eq!(config.poll_interval, Duration::from_secs(2));
    assert_eq!(config.read_timeout, Duration::from_secs(10));
    let target = &config.targets[0];
    assert_eq!((target.min_replicas, target.max_replicas), (0, 20));
    assert_eq!(target.sources[0].name, "rabbitmq/videos");
    assert_eq!(target.sources[0].backlog_per_worker, 5.0);
    assert_eq!(target.behavior.down().window, Duration::from_secs(300));
    let crate::source::SourceKind::RabbitMq(rabbit) = &target.sources[0].kind else {
        panic!("the first source is RabbitMQ: {:?}", target.sources[0].kind);
    };
    assert_eq!(rabbit.url, "amqp://app:hunter2@rabbitmq:5672/%2f");
    assert_eq!(config.secrets.scrub("pw hunter2"), "pw ***");
}

#[test]
fn min_above_max_names_line_field_and_fix() {
    assert_eq!(
        errors(&with("minReplicas: 0", "minReplicas: 5").replace("maxReplicas: 20", "maxReplicas: 3")),
        "qs.yaml:7: targets[0].minReplicas: minReplicas (5) is above maxReplicas (3); lower minReplicas or raise maxReplicas"
    );
}

#[test]
fn unknown_fields_suggest_the_closest_name() {
    assert_eq!(
        errors(&with("maxReplicas: 20", "maxReplica: 20")),
        "qs.yaml:8: targets[0].maxReplica: unknown field; did you mean `maxReplicas`?"
    );
    assert_eq!(
        errors(&with("queue: videos", "queueName: videos")),
        "qs.yaml:12: targets[0].sources[0].queueName: unknown field; did you mean `queue`?"
    );
    assert_eq!(
        errors(&with("pollInterval: 2s", "pollIntervall: 2s")),
        "qs.yaml:2: pollIntervall: unknown field; did you mean `pollInterval`?"
    );
}

#[test]
fn missing_required_fields_are_named() {
    assert_eq!(
        errors(&with("    maxReplicas: 20\n", "")),
        "qs.yaml:6: targets[0].maxReplicas: missing; this field is required"
    );
    assert!(errors(&with("        backlogPerWorker: 5\n", "")).starts_with(
        "qs.yaml:10: targets[0].sources[0].backlogPerWorker: missing; set how many waiting messages one worker should carry"
    ));
}

#[test]
fn unknown_source_types_list_the_known_ones() {
    for unknown in ["nats", "kafkaa"] {
        assert_eq!(
            errors(&with("type: rabbitmq", &format!("type: {unknown}"))),
            format!(
                "qs.yaml:10: targets[0].sources[0].type: unknown source type `{unknown}`; use one of kafka, rabbitmq, \
                 sqs, prometheus, pubsub, fixed"
            )
        );
    }
}

#[test]
fn kafka_sources_parse_with_a_name_from_group_and_topic() {
    let kafka = "type: kafka\n        brokers: kafka:9092\n        topic: videos\n        group: transcoders\n        \
                 sasl: {mechanism: SCRAM-SHA-512, username: app, password: \"${RABBITMQ_PASSWORD}\"}";
    let text = with("type: rabbitmq", kafka)
        .replace("        url: amqp://app:${RABBITMQ_PASSWORD}@rabbitmq:5672/%2f\n        queue: videos\n", "");
    let config = Config::parse("qs.yaml", &text, env).expect("valid");
    let source = &config.targets[0].sources[0];
    assert_eq!(source.name, "kafka/transcoders/videos");
    let crate::source::SourceKind::Kafka(kafka) = &source.kind else {
        panic!("a Kafka source: {:?}", source.kind);
    };
    assert_eq!((kafka.brokers.as_str(), kafka.group.as_str()), ("kafka:9092", "transcoders"));
    assert_eq!(config.secrets.scrub("sasl hunter2"), "sasl ***", "the expanded SASL password is a secret");

    let topicless = text.replace("        topic: videos\n", "");
    let config = Config::parse("qs.yaml", &topicless, env).expect("valid");
    assert_eq!(config.targets[0].sources[0].name, "kafka/transcoders/*");
    assert_eq!(
        errors(&text.replace("group: transcoders", "group: ''")),
        "qs.yaml:13: targets[0].sources[0].group: is empty; name the workers' consumer group (their `group.id`)"
    );
}

#[test]
fn missing_environment_variables_are_named_without_values() {
    let message = Config::parse("qs.yaml", GOOD, |_| None).unwrap_err().to_string();
    assert_eq!(
        message,
        "qs.yaml:11: targets[0].sources[0].url: environment variable `RABBITMQ_PASSWORD` is not set; set it (e.g. from a Secret) or remove `${RABBITMQ_PASSWORD}`"
    );
}

#[test]
fn wrong_types_and_durations_are_explained() {
    assert_eq!(
        errors(&with("pollInterval: 2s", "pollInterval: soon")),
        "qs.yaml:2: pollInterval: `soon` is not a duration; write it with a unit, such as `30s`, `5m` or `1h30m`"
    );
    let message = errors(&with("maxReplicas: 20", "maxReplicas: lots"));
    assert!(message.starts_with("qs.yaml:8: targets[0].maxReplicas: invalid type: string \"lots\""), "{message}");
}

#[test]
fn a_secret_in_a_misplaced_field_is_scrubbed_from_the_message() {
    let message = errors(&with("maxReplicas: 20", "maxReplicas: ${RABBITMQ_PASSWORD}"));
    assert!(!message.contains("hunter2"), "{message}");
    assert!(message.contains("targets[0].maxReplicas"), "{message}");
}

#[test]
fn reports_every_semantic_problem_at_once() {
    let text = with("maxReplicas: 20", "maxReplicas: 0")
        .replace("backlogPerWorker: 5", "backlogPerWorker: 0")
        .replace("deployment: transcoding-worker", "deployment: Transcoding_Worker")
        .replace("url: amqp://app", "url: http://app")
        .replace("listen: 127.0.0.1:9095", "listen: nine");
    let message = errors(&text);
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines.len(), 5, "{message}");
    assert!(lines[0].starts_with("qs.yaml:4: metrics.listen: `nine` is not an address"), "{message}");
    assert!(
        lines[1].starts_with("qs.yaml:6: targets[0].deployment: `Transcoding_Worker` is not a Deployment name"),
        "{message}"
    );
    assert!(lines[2].starts_with("qs.yaml:8: targets[0].maxReplicas: must be at least 1"), "{message}");
    assert!(
        lines[3].starts_with("qs.yaml:13: targets[0].sources[0].backlogPerWorker: 0 cannot divide a backlog"),
        "{message}"
    );
    assert!(
        lines[4].starts_with(
            "qs.yaml:11: targets[0].sources[0].url: `http://app:***@rabbitmq:5672/%2f` is not an AMQP URL"
        ),
        "{message}"
    );
}

#[test]
fn duplicate_targets_and_source_names_are_rejected() {
    let two = format!(
        "{GOOD}  - deployment: transcoding-worker\n    maxReplicas: 2\n    sources: [{{type: rabbitmq, url: 'amqp://h', queue: a, backlogPerWorker: 1}}, {{type: rabbitmq, url: 'amqp://h', queue: a, backlogPerWorker: 1}}]\n"
    );
    let message = errors(&two);
    assert!(
        message.contains("qs.yaml:14: targets[1].deployment: `transcoding-worker` is already scaled by targets[0]"),
        "{message}"
    );
    assert!(message.contains("targets[1].sources[1].name: `rabbitmq/a` is also the name of sources[0]"), "{message}");
}

#[test]
fn syntax_errors_carry_the_line() {
    let message = errors("targets:\n  - deployment: a\n   maxReplicas: 1\n");
    assert!(message.starts_with("qs.yaml:3: not valid YAML"), "{message}");
}

#[test]
fn empty_files_and_empty_targets_are_explained() {
    assert_eq!(errors(""), "qs.yaml: the file is empty; a config needs at least `targets:`");
    assert_eq!(errors("targets: []\n"), "qs.yaml:1: targets: no targets; add at least one Deployment to scale");
}

#[test]
fn dollar_escapes_and_plain_dollars_survive() {
    let mut secrets = Secrets::default();
    let out = expand_str("a$${literal} $5 ${X}", &|_| Some("v".into()), &mut secrets).expect("expands");
    assert_eq!(out, "a${literal} $5 v");
}

#[test]
fn line_index_finds_nested_paths_in_flow_and_block_style() {
    let index = LineIndex::build("a: 1\nb:\n  - x: {y: 2,\n      z: 3}\n  - q\n");
    assert_eq!(index.line_of("a"), Some(1));
    assert_eq!(index.line_of("b[0].x.z"), Some(4));
    assert_eq!(index.line_of("b[1]"), Some(5));
    assert_eq!(index.line_of("b[0].nope"), Some(3));
}

#[test]
fn latency_target_and_its_companions_parse_with_defaults() {
    let text = with("    sources:\n", "    latencyTarget: { maxWait: 2m, concurrency: 2 }\n    sources:\n")
        .replace("queue: videos\n", "queue: videos\n        managementUrl: http://rabbitmq:15672\n");
    let config = Config::parse("qs.yaml", &text, env).expect("valid");
    let target = &config.targets[0];
    let latency = target.latency_target.expect("latency mode");
    assert_eq!((latency.max_wait, latency.job_duration, latency.concurrency), (Duration::from_secs(120), None, 2));
    assert_eq!(target.burst, crate::policy::burst::BurstConfig::default());
    // Latency mode brings the default scale-down policy; backlog mode has none unless configured.
    assert_eq!(
        target.effective_scale_down_policy(),
        Some(crate::policy::scale_down_policy::ScaleDownPolicy::default())
    );
    let plain = Config::parse("qs.yaml", GOOD, env).expect("valid");
    assert_eq!(plain.targets[0].effective_scale_down_policy(), None);
}

#[test]
fn latency_target_problems_name_line_and_field() {
    let text = with("    sources:\n", "    latencyTarget: { maxWait: 0s, jobDuration: 0s }\n    sources:\n");
    assert_eq!(
        errors(&text),
        "qs.yaml:9: targets[0].latencyTarget.maxWait: must be longer than zero (no number of replicas makes every \
         job start at once); use e.g. `2m`\nqs.yaml:9: targets[0].latencyTarget.jobDuration: must be longer than \
         zero; omit it to learn it from the sources' arrival rate and in-flight count"
    );
    let text = with("    sources:\n", "    latencyTarget: { maxWait: 1m }\n    sources:\n")
        .replace("        backlogPerWorker: 5\n", "        backlogPerWorker: 5\n        managementUrl: http://rabbitmq:15672\n        excludeUnacknowledged: true\n");
    assert!(
        errors(&text).contains("targets[0].sources[0].excludeUnacknowledged: latencyTarget needs in-flight messages"),
        "{}",
        errors(&text)
    );
}

#[test]
fn scale_down_policy_and_an_explicit_window_cannot_both_be_set() {
    let text = with(
        "    sources:\n",
        "    scaleDownPolicy: { delay: 20s }\n    behavior: { scaleDown: { stabilizationWindowSeconds: 60 } }\n    sources:\n",
    );
    assert_eq!(
        errors(&text),
        "qs.yaml:9: targets[0].scaleDownPolicy.delay: is the scale-down stabilization window; remove it or \
         behavior.scaleDown.stabilizationWindowSeconds"
    );
    let long = with("    sources:\n", "    scaleDownPolicy: { delay: 2h }\n    burst: { holdFor: 2h }\n    sources:\n");
    let message = errors(&long);
    assert!(message.contains("targets[0].burst.holdFor: is longer than an hour"), "{message}");
    assert!(message.contains("targets[0].scaleDownPolicy.delay: is longer than an hour"), "{message}");
}

/// The table users read: every rule `check` applies, with an example and the message it prints.
const ERROR_TABLE: &str = include_str!("../../docs/config-errors.md");

/// Where an example's key goes in the base config: a top-level or target field goes there; any other key (a
/// source setting, or a misspelt field) goes where the row's message points.
const TOP_FIELDS: &[&str] = &["namespace", "pollInterval", "readTimeout", "metrics", "leaderElection", "targets"];
const TARGET_FIELDS: &[&str] = &[
    "deployment",
    "scaleTargetRef",
    "minReplicas",
    "maxReplicas",
    "activation",
    "sources",
    "behavior",
    "schedules",
    "fallback",
    "latencyTarget",
    "burst",
    "scaleDownPolicy",
    "scaleDown",
];

/// The text of a markdown code span (`` `a` `` or ``` `` a `b` `` ```).
fn code_span(cell: &str) -> &str {
    let ticks = cell.len() - cell.trim_start_matches('`').len();
    assert!(ticks > 0 && cell.ends_with(&"`".repeat(ticks)), "not one code span: {cell}");
    let inner = &cell[ticks..cell.len() - ticks];
    inner.strip_prefix(' ').and_then(|i| i.strip_suffix(' ')).unwrap_or(inner)
}

/// The top level (0), the first target (1) or its first source (2) of a config.
fn level_in(tree: &mut Value, level: usize) -> &mut serde_norway::Mapping {
    let mut node = tree;
    if level >= 1 {
        node = node.get_mut("targets").and_then(|t| t.get_mut(0)).expect("the base has a target");
    }
    if level >= 2 {
        node = node.get_mut("sources").and_then(|s| s.get_mut(0)).expect("the base has a source");
    }
    node.as_mapping_mut().expect("a mapping")
}

/// The base config with one row's example applied, as the doc's "How to read the table" describes it.
fn config_for_example(base: &str, example: &str, message_path: &str) -> String {
    if example == "an empty file" {
        return String::new();
    }
    if let Some(file) = example.strip_prefix("the whole file is ") {
        return code_span(file).to_owned();
    }
    let mut tree: Value = serde_norway::from_str(base).expect("the base config is YAML");
    let level_of_message = if message_path.starts_with("targets[0].sources[0].") {
        2
    } else {
        usize::from(message_path.starts_with("targets[0]."))
    };
    // An example with `type:` is a whole new source, whatever field the message is about.
    let new_source_example = example.split('`').skip(1).step_by(2).any(|span| span.starts_with("type:"));
    let level = |key: &str| match key {
        _ if TOP_FIELDS.contains(&key) => 0,
        _ if TARGET_FIELDS.contains(&key) => 1,
        _ if new_source_example => 2,
        _ => level_of_message,
    };
    if let Some(key) = example.strip_prefix("no ") {
        let key = code_span(key);
        assert!(level_in(&mut tree, level(key)).remove(key).is_some(), "the base config has no `{key}` to remove");
    } else {
        let spans: Vec<&str> = example.split('`').skip(1).step_by(2).collect();
        assert!(!spans.is_empty(), "the example `{example}` has no code span");
        let mut new_source = serde_norway::Mapping::new();
        for span in spans {
            let entry: serde_norway::Mapping =
                serde_norway::from_str(span).unwrap_or_else(|e| panic!("`{span}` is not `key: value`: {e}"));
            for (key, value) in entry {
                let name = key.as_str().expect("keys are strings").to_owned();
                match level(&name) {
                    2 => new_source.insert(key, value),
                    level => level_in(&mut tree, level).insert(key, value),
                };
            }
        }
        // A `type:` starts a new source; other source settings change the base's RabbitMQ source.
        if new_source.contains_key("type") {
            *level_in(&mut tree, 2) = new_source;
        } else if !new_source.is_empty() {
            level_in(&mut tree, 2).extend(new_source);
        }
    }
    serde_norway::to_string(&tree).expect("serializes")
}

#[test]
fn every_row_of_the_config_error_table_is_what_check_prints() {
    let base = ERROR_TABLE
        .split_once("```yaml\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("the doc shows the base config in a ```yaml block")
        .0;
    Config::parse("qs.yaml", base, env).expect("the base config is valid");
    let rows: Vec<&str> = ERROR_TABLE
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("| Rule ") && !l.starts_with("|--"))
        .collect();
    let mut checked = 0;
    let mut failures = Vec::new();
    for row in &rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let [_, _rule, example, message, _] = cells[..] else {
            panic!("a row needs three cells (rule, example, message): {row}");
        };
        let expected = code_span(message);
        let path = expected.strip_prefix("warning: ").unwrap_or(expected).split_once(": ").map_or("", |(p, _)| p);
        let text = config_for_example(base, example, path);
        let printed = match Config::parse("qs.yaml", &text, env) {
            Ok(config) if expected.starts_with("warning: ") => {
                config.warnings.iter().map(LocatedProblem::as_warning).collect::<Vec<_>>().join("\n")
            }
            Ok(_) => String::new(),
            Err(error) => error.to_string(),
        };
        // What follows `FILE:LINE: ` (or `FILE: ` for a problem without a line).
        let shown = printed.strip_prefix("qs.yaml:").map(|rest| {
            let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            rest.strip_prefix(": ").unwrap_or(rest.trim_start())
        });
        if printed.lines().count() == 1 && shown == Some(expected) {
            checked += 1;
        } else {
            failures.push(format!("{example}\n  expected: {expected}\n  printed:  {printed}\n  config:\n{text}"));
        }
    }
    assert!(failures.is_empty(), "{} rows differ from `check`:\n{}", failures.len(), failures.join("\n"));
    assert!(rows.len() > 50, "the table has only {} rows; did the row format change?", rows.len());
    assert_eq!(checked, rows.len());
}

#[test]
fn dotted_names_up_to_253_characters_are_accepted_for_deployments_and_leases() {
    // Kubernetes names most objects as RFC 1123 subdomains; a DNS label rule would refuse these.
    let longest = format!("{}.{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61));
    assert_eq!(longest.len(), 253);
    for name in ["transcoding.worker-v2", "a.b.c", longest.as_str()] {
        let text = with("deployment: transcoding-worker", &format!("deployment: {name}"))
            .replace("targets:", &format!("leaderElection:\n  leaseName: {name}\ntargets:"));
        let config = Config::parse("qs.yaml", &text, env).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(config.targets[0].name(), name);
        assert_eq!(config.leader_election.lease_name, name);
    }
    let too_long = format!("{longest}e");
    let refused = errors(&with("deployment: transcoding-worker", &format!("deployment: {too_long}")));
    assert!(refused.contains("longer than 253 characters"), "{refused}");
}
