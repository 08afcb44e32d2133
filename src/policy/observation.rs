//! The observation the decision consumes: what one source saw at one poll.
//!
//! It belongs to the policy, not to the sources: the pure decision defines what it needs to know, and every source
//! produces it. The sources check a reading's plausibility before the policy sees it (`Reading::checked`).

use std::time::Duration;

/// What one source saw at one poll.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reading {
    /// The work that `backlogPerWorker` divides: waiting messages, plus in-flight ones where the source counts them.
    pub backlog: f64,
    /// Messages delivered to a worker but not yet acknowledged, when the source can tell.
    pub in_flight: Option<f64>,
    /// Messages arriving per second, when the source can tell.
    pub arrival_rate: Option<f64>,
    /// The most replicas that can do useful work (a Kafka group cannot use more consumers than partitions).
    pub replica_cap: Option<u32>,
    /// How old the newest data point is, for sources that read sampled metrics (Pub/Sub, Prometheus).
    pub data_age: Option<Duration>,
    /// How long the oldest waiting message has waited, when the source can tell.
    pub oldest_message_age: Option<Duration>,
    /// New work waits that the backlog cannot show until a worker runs (messages on a Kafka partition the group
    /// never committed): wakes a target at zero whatever `activation` says.
    pub wakes: bool,
    /// The backlog of each queue the source adds up, by name, for the per-queue metric (a RabbitMQ source can read
    /// several); the decision uses only their sum, `backlog`.
    pub queues: Vec<(String, f64)>,
    /// Partitions the consumer group has no committed offset on, for sources that have partitions.
    pub uncommitted_partitions: Option<u32>,
}
