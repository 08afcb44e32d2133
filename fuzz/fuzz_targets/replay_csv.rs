//! Any text as a replay recording: `read_observations` must answer with ticks or a line-numbered error, never panic,
//! and whatever it accepts must replay through the decision code without a panic either.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use queue_scaler::config::{Config, TargetConfig};
use queue_scaler::replay::{read_observations, replay};

/// Two named sources, latency mode and a schedule: every column and every rule a recording can reach.
const CONFIG: &str = "\
targets:
  - deployment: worker
    minReplicas: 0
    maxReplicas: 50
    latencyTarget: { maxWait: 60s, jobDuration: 10s }
    schedules: [ { cron: '0 8 * * 1-5', duration: 1h, minReplicas: 3 } ]
    sources:
      - { name: jobs, type: rabbitmq, url: 'amqp://h', queue: jobs, backlogPerWorker: 5 }
      - { name: other, type: rabbitmq, url: 'amqp://h', queue: other, backlogPerWorker: 5 }
";

static TARGET: LazyLock<TargetConfig> =
    LazyLock::new(|| Config::parse("fuzz.yaml", CONFIG, |_| None).expect("the fuzz config parses").targets.remove(0));

fuzz_target!(|text: &str| {
    if let Ok(ticks) = read_observations(text, &TARGET) {
        let start = chrono::DateTime::UNIX_EPOCH;
        let _ = replay(&TARGET, &ticks, 1, start);
    }
});
