//! The cost of one decision: what the agent spends per target per poll, and the simulator per virtual tick.
//!
//! `cargo bench --bench decision`. Each case decides for a target that already carries a full scale-down window of
//! history (60 recommendations at a 5 s poll), which is the steady state of a long-running agent.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use queue_scaler::config::Config;
use queue_scaler::policy::Autoscaler;
use queue_scaler::source::Reading;

fn target(sources: usize, extra: &str) -> Config {
    let sources: String = (0..sources)
        .map(|i| format!("      - {{type: rabbitmq, url: 'amqp://h', queue: q{i}, backlogPerWorker: 10}}\n"))
        .collect();
    let text = format!("targets:\n  - deployment: w\n    maxReplicas: 100\n{extra}    sources:\n{sources}");
    Config::parse("bench.yaml", &text, |_| None).expect("valid")
}

fn warmed(config: &Config, readings: &[Option<Reading>]) -> (Autoscaler, Instant, DateTime<Utc>) {
    let mut scaler = Autoscaler::new(&config.targets[0]);
    let start = Instant::now();
    let wall = Utc::now();
    for tick in 0..60u32 {
        let at = Duration::from_secs(u64::from(tick) * 5);
        scaler.decide(start + at, wall, 10, readings);
    }
    (scaler, start + Duration::from_secs(300), wall)
}

fn decisions(c: &mut Criterion) {
    let one = vec![Some(Reading { backlog: 95.0, ..Reading::default() })];
    let three: Vec<Option<Reading>> =
        (0..3).map(|i| Some(Reading { backlog: 80.0 + f64::from(i), ..Reading::default() })).collect();
    let cases = [
        ("one source, default behavior", target(1, ""), one.clone()),
        ("three sources, default behavior", target(3, ""), three),
        (
            "one source, a schedule and a fallback",
            target(
                1,
                "    schedules: [{cron: '0 8 * * 1-5', duration: 10h, minReplicas: 5, timezone: Europe/Lisbon}]\n    fallback: {replicas: 4}\n",
            ),
            one,
        ),
    ];
    for (name, config, readings) in cases {
        let (mut scaler, now, wall) = warmed(&config, &readings);
        let mut tick = 0u64;
        c.bench_function(name, |b| {
            b.iter(|| {
                tick += 1;
                // One poll later each time, as in the agent: the window keeps its 60 recommendations.
                scaler.decide(now + Duration::from_secs(5 * tick), wall, 10, std::hint::black_box(&readings))
            })
        });
    }
}

criterion_group!(benches, decisions);
criterion_main!(benches);
