//! Every metric the agent exports, named and described in one place.
//!
//! The agent records through the `metrics` facade and renders with `metrics-exporter-prometheus`; names follow
//! Prometheus conventions (base units, `_total` on counters) and pass `promtool check metrics`. Labels are the
//! Deployment name, the source's name and small fixed vocabularies — never a URL, so never a credential.
//!
//! Handles are registered once per target and source and kept, so a poll costs a few atomic stores.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::policy::latency::waiting;
use crate::policy::{Decision, Rule};
use crate::source::{Reading, SourceError};

/// Backlog a source reported.
pub const BACKLOG: &str = "queue_scaler_backlog";
/// Backlog of each queue a source reads and adds up (RabbitMQ: `queue`, `queues` or `queueRegex`), by queue.
pub const QUEUE_BACKLOG: &str = "queue_scaler_queue_backlog";
/// Backlog divided by the current replica count.
pub const BACKLOG_PER_WORKER: &str = "queue_scaler_backlog_per_worker";
/// The replica count a source asks for.
pub const RECOMMENDED_REPLICAS: &str = "queue_scaler_recommended_replicas";
/// Age of the newest data point a sampled source read.
pub const SOURCE_DATA_AGE: &str = "queue_scaler_source_data_age_seconds";
/// How long the oldest waiting message has waited.
pub const OLDEST_MESSAGE_AGE: &str = "queue_scaler_oldest_message_age_seconds";
/// Partitions a Kafka source's consumer group has no committed offset on.
pub const KAFKA_UNCOMMITTED_PARTITIONS: &str = "queue_scaler_kafka_uncommitted_partitions";
/// The replica count decided.
pub const DESIRED_REPLICAS: &str = "queue_scaler_desired_replicas";
/// The replica count the Deployment had when the decision was made.
pub const CURRENT_REPLICAS: &str = "queue_scaler_current_replicas";
/// Failed source reads, by kind.
pub const SOURCE_ERRORS: &str = "queue_scaler_source_errors_total";
/// How long source reads take.
pub const SOURCE_READ_DURATION: &str = "queue_scaler_source_read_duration_seconds";
/// Replica count changes written, by direction.
pub const SCALE_EVENTS: &str = "queue_scaler_scale_events_total";
/// Failed writes to the target.
pub const SCALE_WRITE_ERRORS: &str = "queue_scaler_scale_write_errors_total";
/// 1 for the rule that had the last word in the latest decision, 0 for rules that had it before: a one-hot state.
pub const DECISION: &str = "queue_scaler_decision";
/// The target's `minReplicas`.
pub const MIN_REPLICAS: &str = "queue_scaler_min_replicas";
/// The target's `maxReplicas`.
pub const MAX_REPLICAS: &str = "queue_scaler_max_replicas";
/// 1 while a failing source's `fallback.replicas` is in force.
pub const FALLBACK_ACTIVE: &str = "queue_scaler_fallback_active";
/// When the agent last changed the target's count (Unix seconds).
pub const LAST_SCALE: &str = "queue_scaler_last_scale_timestamp_seconds";
/// 1 while a source's backlog is above `activation` (a reason to run).
pub const SOURCE_ACTIVE: &str = "queue_scaler_source_active";
/// The job duration latency mode uses for a source, configured or learned.
pub const JOB_DURATION: &str = "queue_scaler_job_duration_seconds";
/// A source's smoothed arrival rate.
pub const ARRIVAL_RATE: &str = "queue_scaler_arrival_rate";
/// How long a job arriving now would wait at the current count, by Little's law.
pub const PREDICTED_WAIT: &str = "queue_scaler_predicted_wait_seconds";
/// Config reloads, by result: `applied` or `rejected`.
pub const CONFIG_RELOADS: &str = "queue_scaler_config_reloads_total";
/// 1 while another autoscaler (an HPA, a KEDA ScaledObject) scales the target, by that autoscaler.
pub const OTHER_CONTROLLER: &str = "queue_scaler_other_controller";
/// Changes of the replica count by others, by who made them (from `managedFields`).
pub const CHANGED_BY_OTHERS: &str = "queue_scaler_replicas_changed_by_others_total";
/// 1 while the agent backs off a target that others keep changing.
pub const BACKING_OFF: &str = "queue_scaler_backing_off";
/// Pods through the steps of quiet scale-down: quieted, resumed, removed, timed_out.
pub const QUIET_PODS: &str = "queue_scaler_quiet_pods_total";
/// 1 while the backlog does not drain however many replicas run, and the scale-up is stopped.
pub const NOT_DRAINING: &str = "queue_scaler_not_draining";
/// 1 while a manual hold keeps the agent away from the target.
pub const HOLD_ACTIVE: &str = "queue_scaler_hold_active";
/// 1 while this agent is the leader.
pub const LEADER: &str = "queue_scaler_leader";
/// The version of the running agent, as a label.
pub const BUILD_INFO: &str = "queue_scaler_build_info";

/// Buckets for source reads: a local broker answers in a millisecond, a cloud API in a few hundred.
const READ_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Installs the Prometheus recorder as the process-wide one and describes every metric.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(SOURCE_READ_DURATION.to_owned()), READ_BUCKETS)?
        .install_recorder()?;
    describe();
    let revision = option_env!("QUEUE_SCALER_REVISION").unwrap_or("unknown");
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "revision" => revision).set(1.0);
    // Nobody leads until the election (or a single agent's start) says so, and the series says it from the first
    // scrape: /readyz can turn ready before the election begins, and an alert on an absent series never fires.
    set_leader(false);
    Ok(handle)
}

fn describe() {
    describe_gauge!(BACKLOG, "Backlog the source reported at the latest poll (messages).");
    describe_gauge!(
        QUEUE_BACKLOG,
        "Backlog of each queue the source adds up, by queue (0 once a queue is no longer read)."
    );
    describe_gauge!(BACKLOG_PER_WORKER, "Backlog divided by the current replica count.");
    describe_gauge!(RECOMMENDED_REPLICAS, "Replica count the source asks for.");
    describe_gauge!(SOURCE_DATA_AGE, metrics::Unit::Seconds, "Age of the newest data point a sampled source read.");
    describe_gauge!(OLDEST_MESSAGE_AGE, metrics::Unit::Seconds, "How long the oldest waiting message has waited.");
    describe_gauge!(
        KAFKA_UNCOMMITTED_PARTITIONS,
        "Partitions the Kafka consumer group has no committed offset on (under `latest`, only messages produced \
         there since the agent first looked count)."
    );
    describe_gauge!(DESIRED_REPLICAS, "Replica count decided at the latest poll.");
    describe_gauge!(CURRENT_REPLICAS, "Replica count of the Deployment at the latest poll.");
    describe_counter!(SOURCE_ERRORS, "Failed source reads, by kind.");
    describe_histogram!(SOURCE_READ_DURATION, metrics::Unit::Seconds, "Duration of source reads.");
    describe_counter!(SCALE_EVENTS, "Replica count changes written, by direction.");
    describe_counter!(SCALE_WRITE_ERRORS, "Writes of the replica count that failed.");
    describe_gauge!(DECISION, "1 for the rule that had the last word in the latest decision, 0 for the others.");
    describe_gauge!(MIN_REPLICAS, "The target's minReplicas.");
    describe_gauge!(MAX_REPLICAS, "The target's maxReplicas.");
    describe_gauge!(FALLBACK_ACTIVE, "1 while a failing source's fallback.replicas is in force.");
    describe_gauge!(LAST_SCALE, metrics::Unit::Seconds, "When the agent last changed the replica count (Unix time).");
    describe_gauge!(SOURCE_ACTIVE, "1 while the source's backlog is above activation.");
    describe_gauge!(JOB_DURATION, metrics::Unit::Seconds, "The job duration latency mode uses, configured or learned.");
    describe_gauge!(ARRIVAL_RATE, "The source's smoothed arrival rate (jobs per second).");
    describe_gauge!(
        PREDICTED_WAIT,
        metrics::Unit::Seconds,
        "How long a job arriving now would wait at the current replica count, by Little's law."
    );
    describe_counter!(CONFIG_RELOADS, "Config file changes, by result: applied or rejected.");
    describe_gauge!(
        OTHER_CONTROLLER,
        "1 while another autoscaler scales the Deployment and the agent leaves it alone."
    );
    describe_counter!(CHANGED_BY_OTHERS, "Changes of the Deployment's replica count by other writers, by writer.");
    describe_gauge!(BACKING_OFF, "1 while the agent backs off a Deployment whose replica count others keep changing.");
    describe_counter!(
        QUIET_PODS,
        "Pods through quiet scale-down, by step: quieted, resumed, removed, timed_out (removed while busy)."
    );
    describe_gauge!(
        NOT_DRAINING,
        "1 while the backlog does not shrink though replicas were added and completions did not rise (no scale-up)."
    );
    describe_gauge!(HOLD_ACTIVE, "1 while a manual hold keeps the agent away from the Deployment.");
    describe_gauge!(LEADER, "1 while this agent is the leader and acts, 0 while it stands by.");
    describe_gauge!(BUILD_INFO, "The running queue-scaler version and the git revision it was built from.");
}

/// Counts `pods` pods of `deployment` through a step of quiet scale-down.
pub fn quiet_pods(deployment: &str, step: &'static str, pods: usize) {
    counter!(QUIET_PODS, "deployment" => deployment.to_owned(), "step" => step).increment(pods as u64);
}

/// Counts a config reload that was `applied` or `rejected`.
pub fn config_reloaded(result: &'static str) {
    counter!(CONFIG_RELOADS, "result" => result).increment(1);
}

/// Sets the leader gauge.
pub fn set_leader(leading: bool) {
    gauge!(LEADER).set(f64::from(u8::from(leading)));
}

/// The handles of one target.
pub struct TargetMetrics {
    deployment: String,
    sources: Vec<SourceMetrics>,
    desired: Gauge,
    current: Gauge,
    scale_up: Counter,
    scale_down: Counter,
    write_errors: Counter,
    hold: Gauge,
    fallback: Gauge,
    not_draining: Gauge,
    last_scale: Gauge,
    last_rule: Option<Rule>,
}

struct SourceMetrics {
    name: String,
    backlog: Gauge,
    /// Each queue's backlog gauge, by queue name, for the queues the latest reading counted.
    queues: Mutex<HashMap<String, Gauge>>,
    per_worker: Gauge,
    recommended: Gauge,
    read_duration: Histogram,
    data_age: Gauge,
    /// Registered on the source's first age: a source that never tells it has no series, rather than a 0.
    oldest_message_age: OnceLock<Gauge>,
    active: Gauge,
    job_duration: Gauge,
    arrival_rate: Gauge,
    predicted_wait: Gauge,
}

impl TargetMetrics {
    /// Registers the handles for `deployment`, kept between `min` and `max` replicas, and its sources.
    pub fn new(deployment: &str, (min, max): (u32, u32), source_names: &[String]) -> TargetMetrics {
        let d = deployment.to_owned();
        let sources = source_names
            .iter()
            .map(|s| SourceMetrics {
                name: s.clone(),
                backlog: gauge!(BACKLOG, "deployment" => d.clone(), "source" => s.clone()),
                queues: Mutex::new(HashMap::new()),
                per_worker: gauge!(BACKLOG_PER_WORKER, "deployment" => d.clone(), "source" => s.clone()),
                recommended: gauge!(RECOMMENDED_REPLICAS, "deployment" => d.clone(), "source" => s.clone()),
                read_duration: histogram!(SOURCE_READ_DURATION, "deployment" => d.clone(), "source" => s.clone()),
                data_age: gauge!(SOURCE_DATA_AGE, "deployment" => d.clone(), "source" => s.clone()),
                oldest_message_age: OnceLock::new(),
                active: gauge!(SOURCE_ACTIVE, "deployment" => d.clone(), "source" => s.clone()),
                job_duration: gauge!(JOB_DURATION, "deployment" => d.clone(), "source" => s.clone()),
                arrival_rate: gauge!(ARRIVAL_RATE, "deployment" => d.clone(), "source" => s.clone()),
                predicted_wait: gauge!(PREDICTED_WAIT, "deployment" => d.clone(), "source" => s.clone()),
            })
            .collect();
        gauge!(MIN_REPLICAS, "deployment" => d.clone()).set(f64::from(min));
        gauge!(MAX_REPLICAS, "deployment" => d.clone()).set(f64::from(max));
        TargetMetrics {
            sources,
            desired: gauge!(DESIRED_REPLICAS, "deployment" => d.clone()),
            current: gauge!(CURRENT_REPLICAS, "deployment" => d.clone()),
            scale_up: counter!(SCALE_EVENTS, "deployment" => d.clone(), "direction" => "up"),
            scale_down: counter!(SCALE_EVENTS, "deployment" => d.clone(), "direction" => "down"),
            write_errors: counter!(SCALE_WRITE_ERRORS, "deployment" => d.clone()),
            hold: gauge!(HOLD_ACTIVE, "deployment" => d.clone()),
            fallback: gauge!(FALLBACK_ACTIVE, "deployment" => d.clone()),
            // Registered at 0 from the start, not on the first stall: an alert or a panel on it has a series to
            // read while all is well.
            not_draining: gauge!(NOT_DRAINING, "deployment" => d.clone()),
            last_scale: gauge!(LAST_SCALE, "deployment" => d.clone()),
            deployment: d,
            last_rule: None,
        }
    }

    /// Records one source read.
    pub fn read(&self, index: usize, took: Duration, result: &Result<Reading, SourceError>) {
        let source = &self.sources[index];
        source.read_duration.record(took.as_secs_f64());
        match result {
            Ok(reading) => {
                source.backlog.set(reading.backlog);
                self.queues(source, &reading.queues);
                if let Some(age) = reading.data_age {
                    source.data_age.set(age.as_secs_f64());
                }
                match (reading.oldest_message_age, source.oldest_message_age.get()) {
                    (Some(age), _) => source
                        .oldest_message_age
                        .get_or_init(|| {
                            let labels = [("deployment", self.deployment.clone()), ("source", source.name.clone())];
                            gauge!(OLDEST_MESSAGE_AGE, &labels)
                        })
                        .set(age.as_secs_f64()),
                    // Told before, not now: nothing waits (0), or what waits has no known age (NaN). Never the last
                    // value, which would stand for hours on a dashboard.
                    (None, Some(gauge)) => gauge.set(if waiting(reading) > 0.0 { f64::NAN } else { 0.0 }),
                    (None, None) => {}
                }
                if let Some(partitions) = reading.uncommitted_partitions {
                    let labels = [("deployment", self.deployment.clone()), ("source", source.name.clone())];
                    gauge!(KAFKA_UNCOMMITTED_PARTITIONS, &labels).set(f64::from(partitions));
                }
            }
            Err(error) => counter!(
                SOURCE_ERRORS,
                "deployment" => self.deployment.clone(),
                "source" => source.name.clone(),
                "kind" => error.kind()
            )
            .increment(1),
        }
    }

    /// Sets each queue's backlog; a queue the reading no longer counts (deleted, or no longer matching
    /// `queueRegex`) reads 0 from then on, since the exporter cannot drop a series.
    fn queues(&self, source: &SourceMetrics, queues: &[(String, f64)]) {
        let mut gauges = source.queues.lock().unwrap_or_else(PoisonError::into_inner);
        gauges.retain(|name, gauge| {
            let counted = queues.iter().any(|(queue, _)| queue == name);
            if !counted {
                gauge.set(0.0);
            }
            counted
        });
        for (queue, backlog) in queues {
            let gauge = gauges.entry(queue.clone()).or_insert_with(|| {
                let labels = [
                    ("deployment", self.deployment.clone()),
                    ("source", source.name.clone()),
                    ("queue", queue.clone()),
                ];
                gauge!(QUEUE_BACKLOG, &labels)
            });
            gauge.set(*backlog);
        }
    }

    /// Records a decision and what the sources saw.
    pub fn decision(&mut self, decision: &Decision, readings: &[Option<Reading>]) {
        self.desired.set(f64::from(decision.desired));
        self.current.set(f64::from(decision.current));
        self.hold.set(0.0);
        self.fallback.set(f64::from(u8::from(decision.sources.iter().any(|v| v.fallback))));
        for ((source, verdict), reading) in self.sources.iter().zip(&decision.sources).zip(readings) {
            source.recommended.set(f64::from(verdict.recommendation));
            if let Some(reading) = reading {
                source.per_worker.set(reading.backlog / f64::from(decision.current.max(1)));
                let learned = &verdict.learned;
                source.active.set(f64::from(u8::from(learned.active)));
                let learned_values = [
                    (&source.job_duration, learned.job_duration_s),
                    (&source.arrival_rate, learned.arrival_rate),
                    (&source.predicted_wait, learned.predicted_wait_s),
                ];
                for (gauge, value) in learned_values {
                    if let Some(value) = value {
                        gauge.set(value);
                    }
                }
            }
        }
        let rule = decision.reason.rule;
        if self.last_rule != Some(rule) {
            if let Some(previous) = self.last_rule {
                self.rule_gauge(previous).set(0.0);
            }
            self.rule_gauge(rule).set(1.0);
            self.last_rule = Some(rule);
        }
    }

    /// Records whether the backlog is not draining.
    pub fn not_draining(&self, stuck: bool) {
        self.not_draining.set(f64::from(u8::from(stuck)));
    }

    fn rule_gauge(&self, rule: Rule) -> Gauge {
        gauge!(DECISION, "deployment" => self.deployment.clone(), "rule" => rule.code())
    }

    /// Records a change written to the target.
    pub fn scaled(&self, from: u32, to: u32) {
        if to > from {
            self.scale_up.increment(1)
        } else {
            self.scale_down.increment(1)
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        self.last_scale.set(now.as_secs_f64());
    }

    /// Records a failed write.
    pub fn write_failed(&self) {
        self.write_errors.increment(1);
    }

    /// Records whether `owner` (another autoscaler) scales the target.
    pub fn other_controller(&self, owner: &str, scaling: bool) {
        let labels = [("deployment", self.deployment.clone()), ("owner", owner.to_owned())];
        gauge!(OTHER_CONTROLLER, &labels).set(f64::from(u8::from(scaling)));
    }

    /// Counts a change of the replica count by `writer`.
    pub fn changed_by_other(&self, writer: &str) {
        let labels = [("deployment", self.deployment.clone()), ("writer", writer.to_owned())];
        counter!(CHANGED_BY_OTHERS, &labels).increment(1);
    }

    /// Records whether the agent backs off the target.
    pub fn backing_off(&self, backing_off: bool) {
        gauge!(BACKING_OFF, "deployment" => self.deployment.clone()).set(f64::from(u8::from(backing_off)));
    }

    /// Records that a manual hold is in force.
    pub fn held(&self, replicas: u32) {
        self.hold.set(1.0);
        self.current.set(f64::from(replicas));
    }
}

#[cfg(test)]
mod tests {
    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::*;

    #[test]
    fn each_queue_has_its_backlog_and_a_queue_no_longer_read_reads_zero() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let target = TargetMetrics::new("worker", (0, 5), &["rabbitmq/jobs".to_owned()]);
            let queues = |list: &[(&str, f64)]| Reading {
                backlog: list.iter().map(|(_, n)| n).sum(),
                queues: list.iter().map(|(q, n)| ((*q).to_owned(), *n)).collect(),
                ..Reading::default()
            };
            target.read(0, Duration::ZERO, &Ok(queues(&[("jobs-a", 3.0), ("jobs-b", 4.0)])));
            target.read(0, Duration::ZERO, &Ok(queues(&[("jobs-b", 6.0), ("jobs-c", 1.0)])));
        });
        let exposition = handle.render();
        let series = |queue: &str| {
            format!("queue_scaler_queue_backlog{{deployment=\"worker\",source=\"rabbitmq/jobs\",queue=\"{queue}\"}}")
        };
        for (queue, value) in [("jobs-a", 0), ("jobs-b", 6), ("jobs-c", 1)] {
            assert!(exposition.contains(&format!("{} {value}\n", series(queue))), "{queue} = {value} in\n{exposition}");
        }
        assert!(exposition.contains("queue_scaler_backlog{deployment=\"worker\",source=\"rabbitmq/jobs\"} 7\n"));
    }

    #[test]
    fn the_oldest_age_exists_only_where_a_source_tells_it_and_never_goes_stale() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let series = |source: &str| {
            format!("queue_scaler_oldest_message_age_seconds{{deployment=\"worker\",source=\"{source}\"}}")
        };
        let aged = |backlog: f64, age: Option<u64>| Reading {
            backlog,
            oldest_message_age: age.map(Duration::from_secs),
            ..Reading::default()
        };
        metrics::with_local_recorder(&recorder, || {
            let target = TargetMetrics::new("worker", (0, 5), &["rabbitmq/jobs".to_owned(), "sqs/jobs".to_owned()]);
            let read = |backlog: f64, age: Option<u64>| {
                target.read(0, Duration::ZERO, &Ok(aged(backlog, age)));
                target.read(1, Duration::ZERO, &Ok(aged(backlog, None)));
                handle.render()
            };
            // A source that never tells the age has no series: 0 would say its oldest message has not waited.
            let exposition = read(4.0, Some(300));
            assert!(exposition.contains(&format!("{} 300\n", series("rabbitmq/jobs"))), "{exposition}");
            assert!(!exposition.contains(&series("sqs/jobs")), "{exposition}");
            // The queue empties and the broker stops telling the age: nothing waits, so 0, not the last 300.
            assert!(read(0.0, None).contains(&format!("{} 0\n", series("rabbitmq/jobs"))));
            // Messages wait but their age is unknown (no timestamp on them): NaN, not a value from the past.
            assert!(read(3.0, None).contains(&format!("{} NaN\n", series("rabbitmq/jobs"))));
        });
    }
}
