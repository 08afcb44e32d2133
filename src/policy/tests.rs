//! One test per rule, then the invariants as properties.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use proptest::prelude::*;

use super::*;
use crate::config::{Config, Fallback};

fn target(yaml_target: &str) -> TargetConfig {
    let text = format!("targets:\n{yaml_target}");
    let mut config = Config::parse("test.yaml", &text, |_| None).unwrap_or_else(|e| panic!("{e}"));
    config.targets.remove(0)
}

/// A target on one source with 10 messages per worker, default behavior unless `extra` overrides.
fn one_source(min: u32, max: u32, extra: &str) -> TargetConfig {
    target(&format!(
        "- deployment: worker\n  minReplicas: {min}\n  maxReplicas: {max}\n  sources:\n    - type: rabbitmq\n      url: amqp://localhost\n      queue: jobs\n      managementUrl: http://localhost:15672\n      backlogPerWorker: 10\n{extra}"
    ))
}

fn backlog(n: f64) -> Option<Reading> {
    Some(Reading { backlog: n, ..Reading::default() })
}

fn monday_noon() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z").expect("time").with_timezone(&Utc)
}

/// Drives an autoscaler as the agent does: decide, then apply at once.
struct Run {
    scaler: Autoscaler,
    t0: Instant,
    current: u32,
}

impl Run {
    fn new(target: &TargetConfig, current: u32) -> Run {
        Run { scaler: Autoscaler::new(target), t0: Instant::now(), current }
    }

    fn at(&mut self, seconds: u64, readings: &[Option<Reading>]) -> Decision {
        let now = self.t0 + Duration::from_secs(seconds);
        let wall = monday_noon() + chrono::Duration::seconds(seconds as i64);
        let decision = self.scaler.decide(now, wall, self.current, readings);
        if decision.desired != self.current {
            self.scaler.record_scale(now, self.current, decision.desired);
            self.current = decision.desired;
        }
        decision
    }
}

#[test]
fn recommends_backlog_over_backlog_per_worker_rounded_up() {
    let mut run = Run::new(&one_source(1, 20, ""), 4);
    let d = run.at(0, &[backlog(61.0)]);
    assert_eq!(d.desired, 7);
    assert_eq!(d.reason.rule, Rule::SourceRecommendation);
    assert!(d.reason.message.contains("rabbitmq/jobs: backlog 61 over 10 per worker → 7"), "{}", d.reason);
}

#[test]
fn keeps_the_count_within_the_tolerance() {
    // 4 replicas at 10 per worker is a target of 40; 43 is within 10 %.
    let mut run = Run::new(&one_source(1, 20, ""), 4);
    let d = run.at(0, &[backlog(43.0)]);
    assert_eq!((d.desired, d.reason.rule), (4, Rule::WithinTolerance));
    // 45 is 12.5 % over: scale to ceil(4.5) = 5.
    assert_eq!(run.at(15, &[backlog(45.0)]).desired, 5);
}

#[test]
fn default_behavior_goes_one_to_five_then_seven_as_the_hpa_does() {
    let mut run = Run::new(&one_source(1, 20, ""), 1);
    let d = run.at(0, &[backlog(70.0)]);
    assert_eq!((d.desired, d.reason.rule), (5, Rule::ScaleUpLimit));
    assert_eq!(run.at(5, &[backlog(70.0)]).desired, 5);
    assert_eq!(run.at(10, &[backlog(70.0)]).desired, 5);
    let d = run.at(15, &[backlog(70.0)]);
    assert_eq!((d.desired, d.reason.rule), (7, Rule::SourceRecommendation));
}

#[test]
fn a_generous_scale_up_policy_goes_straight_to_the_recommendation() {
    let extra = "  behavior:\n    scaleUp:\n      policies: [{type: Pods, value: 100, periodSeconds: 15}]\n";
    let mut run = Run::new(&one_source(1, 20, extra), 1);
    assert_eq!(run.at(0, &[backlog(70.0)]).desired, 7);
}

#[test]
fn scale_down_waits_for_the_stabilization_window() {
    let extra = "  behavior:\n    scaleDown:\n      stabilizationWindowSeconds: 60\n";
    let mut run = Run::new(&one_source(1, 20, extra), 7);
    let d = run.at(0, &[backlog(0.0)]);
    assert_eq!((d.desired, d.reason.rule), (7, Rule::ScaleDownStabilized));
    assert_eq!(run.at(55, &[backlog(0.0)]).desired, 7);
    let d = run.at(60, &[backlog(0.0)]);
    assert_eq!((d.desired, d.reason.rule), (1, Rule::MinReplicas));
}

#[test]
fn caps_at_max_replicas() {
    let extra = "  behavior:\n    scaleUp:\n      policies: [{type: Pods, value: 100, periodSeconds: 15}]\n";
    let mut run = Run::new(&one_source(1, 5, extra), 1);
    let d = run.at(0, &[backlog(900.0)]);
    assert_eq!((d.desired, d.reason.rule), (5, Rule::MaxReplicas));
}

#[test]
fn a_current_count_above_max_comes_down_at_once() {
    let mut run = Run::new(&one_source(1, 5, ""), 9);
    let d = run.at(0, &[backlog(90.0)]);
    assert_eq!((d.desired, d.reason.rule), (5, Rule::MaxReplicas));
}

#[test]
fn takes_the_maximum_over_sources() {
    let config = target(
        "- deployment: worker\n  maxReplicas: 50\n  behavior: {scaleUp: {policies: [{type: Pods, value: 100, periodSeconds: 15}]}}\n  sources:\n    - {type: rabbitmq, url: 'amqp://h', queue: a, backlogPerWorker: 10}\n    - {type: rabbitmq, url: 'amqp://h', queue: b, backlogPerWorker: 5}\n",
    );
    let mut run = Run::new(&config, 1);
    let d = run.at(0, &[backlog(30.0), backlog(40.0)]);
    assert_eq!(d.desired, 8);
    assert!(d.reason.message.starts_with("rabbitmq/b"), "{}", d.reason);
    assert_eq!(d.sources.iter().map(|s| s.recommendation).collect::<Vec<_>>(), [3, 8]);
}

#[test]
fn respects_the_source_replica_cap() {
    let mut run = Run::new(&one_source(1, 50, ""), 4);
    let d = run.at(0, &[Some(Reading { backlog: 1000.0, replica_cap: Some(6), ..Reading::default() })]);
    assert_eq!((d.desired, d.reason.rule), (6, Rule::ReplicaCap));
}

#[test]
fn scales_to_zero_when_idle_and_wakes_above_activation() {
    let extra = "  activation: 5\n  behavior: {scaleDown: {stabilizationWindowSeconds: 0}}\n";
    let mut run = Run::new(&one_source(0, 10, extra), 2);
    let d = run.at(0, &[backlog(5.0)]);
    assert_eq!((d.desired, d.reason.rule), (0, Rule::Idle));
    // At the threshold it stays asleep (KEDA: active when the value is *above* the threshold).
    assert_eq!(run.at(15, &[backlog(5.0)]).desired, 0);
    let d = run.at(30, &[backlog(6.0)]);
    assert_eq!(d.desired, 1);
    assert!(d.reason.message.contains("backlog 6 over 10 per worker → 1"), "{}", d.reason);
}

#[test]
fn cooldown_period_keeps_the_last_replica_then_goes_to_zero_at_once() {
    // KEDA's semantics: steps down to one follow behavior (a 60 s window here); the last replica goes cooldownPeriod
    // after a source was last above activation, whatever the window says.
    let extra = "  cooldownPeriod: 120s\n  behavior: {scaleDown: {stabilizationWindowSeconds: 60}}\n";
    let mut run = Run::new(&one_source(0, 10, extra), 0);
    assert_eq!(run.at(0, &[backlog(40.0)]).desired, 4);
    // Idle from t = 15: the window holds 4 until t = 60, then one replica stays until 120 s after t = 0.
    assert_eq!(run.at(15, &[backlog(0.0)]).desired, 4);
    let d = run.at(75, &[backlog(0.0)]);
    assert_eq!((d.desired, d.reason.rule), (1, Rule::Activation), "{}", d.reason);
    assert!(d.reason.message.contains("within cooldownPeriod 120s"), "{}", d.reason);
    let d = run.at(120, &[backlog(0.0)]);
    assert_eq!((d.desired, d.reason.rule), (0, Rule::Idle), "{}", d.reason);
    // Without cooldownPeriod the window alone decides: zero once it has passed.
    let mut plain = Run::new(&one_source(0, 10, "  behavior: {scaleDown: {stabilizationWindowSeconds: 60}}\n"), 0);
    plain.at(0, &[backlog(40.0)]);
    assert_eq!(plain.at(75, &[backlog(0.0)]).desired, 0);
}

#[test]
fn wakes_from_zero_even_when_the_rate_policy_would_not_move() {
    let extra =
        "  behavior:\n    scaleUp: {selectPolicy: Min, policies: [{type: Percent, value: 100, periodSeconds: 15}]}\n";
    let mut run = Run::new(&one_source(0, 10, extra), 0);
    let d = run.at(0, &[backlog(50.0)]);
    assert_eq!((d.desired, d.reason.rule), (1, Rule::Activation));
}

#[test]
fn holds_while_a_source_fails_and_never_scales_down_on_errors() {
    let extra = "  behavior: {scaleDown: {stabilizationWindowSeconds: 0}}\n";
    let mut run = Run::new(&one_source(0, 10, extra), 6);
    for t in 0..10 {
        let d = run.at(t * 15, &[None]);
        assert_eq!((d.desired, d.reason.rule), (6, Rule::SourceFailing), "tick {t}");
    }
    // Recovered: the next decision is a normal one.
    assert_eq!(run.at(200, &[backlog(0.0)]).desired, 0);
}

#[test]
fn a_failing_source_blocks_scale_down_asked_by_another() {
    let config = target(
        "- deployment: worker\n  maxReplicas: 50\n  behavior: {scaleDown: {stabilizationWindowSeconds: 0}}\n  sources:\n    - {type: rabbitmq, url: 'amqp://h', queue: a, backlogPerWorker: 10}\n    - {type: rabbitmq, url: 'amqp://h', queue: b, backlogPerWorker: 10}\n",
    );
    let mut run = Run::new(&config, 5);
    let d = run.at(0, &[backlog(0.0), None]);
    assert_eq!((d.desired, d.reason.rule), (5, Rule::SourceFailing));
    // But scaling up on the healthy source is still allowed.
    assert_eq!(run.at(15, &[backlog(80.0), None]).desired, 8);
}

#[test]
fn fallback_applies_after_the_threshold_and_only_raises() {
    let extra = "  fallback: {failureThreshold: 3, replicas: 4}\n";
    let mut run = Run::new(&one_source(1, 10, extra), 2);
    assert_eq!(run.at(0, &[None]).desired, 2);
    assert_eq!(run.at(15, &[None]).desired, 2);
    let d = run.at(30, &[None]);
    assert_eq!((d.desired, d.reason.rule), (4, Rule::Fallback));
    let mut above = Run::new(&one_source(1, 10, extra), 8);
    for t in 0..4 {
        assert_eq!(above.at(t * 15, &[None]).desired, 8);
    }
}

#[test]
fn a_schedule_raises_the_floor_at_once() {
    // The run starts on Monday at 12:00 UTC.
    let extra = "  schedules: [{cron: '0 12 * * 1', duration: 1h, minReplicas: 9}]\n";
    let mut run = Run::new(&one_source(1, 20, extra), 1);
    let d = run.at(0, &[backlog(0.0)]);
    assert_eq!((d.desired, d.reason.rule), (9, Rule::ScheduleFloor));
    assert!(d.reason.message.contains("0 12 * * 1"), "{}", d.reason);
}

#[test]
fn disabled_scale_down_never_removes_replicas() {
    let extra = "  behavior: {scaleDown: {selectPolicy: Disabled}}\n";
    let mut run = Run::new(&one_source(1, 20, extra), 6);
    run.at(0, &[backlog(60.0)]);
    let d = run.at(400, &[backlog(0.0)]);
    assert_eq!((d.desired, d.reason.rule), (6, Rule::ScaleDownDisabled));
}

#[test]
fn a_restart_does_not_scale_down_before_a_full_window() {
    let mut run = Run::new(&one_source(1, 20, ""), 10);
    assert_eq!(run.at(0, &[backlog(0.0)]).desired, 10);
    assert_eq!(run.at(299, &[backlog(0.0)]).desired, 10);
    assert_eq!(run.at(300, &[backlog(0.0)]).desired, 1);
}

#[test]
fn fallback_config_is_validated() {
    let text = "targets:\n- deployment: w\n  maxReplicas: 3\n  fallback: {replicas: 5}\n  sources: [{type: rabbitmq, url: 'amqp://h', queue: q, backlogPerWorker: 1}]\n";
    let err = Config::parse("f.yaml", text, |_| None).unwrap_err().to_string();
    assert!(err.contains("f.yaml:4: targets[0].fallback.replicas: 5 is outside 1..=3"), "{err}");
    let _ = Fallback { failure_threshold: 1, replicas: 1 };
}

// ---- invariants ----

fn arbitrary_target() -> impl Strategy<Value = TargetConfig> {
    (0u32..4, 1u32..30, 0u32..120, 0u32..3, 1u32..10, prop::bool::ANY).prop_map(
        |(min, span, window, select, pods, with_fallback)| {
            let select = ["Max", "Min", "Disabled"][select as usize];
            let fallback =
                if with_fallback { format!("  fallback: {{failureThreshold: 2, replicas: {}}}\n", min + 1) } else { String::new() };
            let extra = format!(
                "  behavior:\n    scaleUp: {{selectPolicy: Max, policies: [{{type: Pods, value: {pods}, periodSeconds: 15}}]}}\n    scaleDown: {{stabilizationWindowSeconds: {window}, selectPolicy: {select}}}\n{fallback}"
            );
            one_source(min, min + span, &extra)
        },
    )
}

fn arbitrary_readings() -> impl Strategy<Value = Vec<Option<f64>>> {
    prop::collection::vec(prop::option::weighted(0.85, 0.0f64..2000.0), 1..40)
}

proptest! {
    #[test]
    fn always_within_min_and_max(target in arbitrary_target(), readings in arbitrary_readings(), start in 0u32..40) {
        let mut run = Run::new(&target, start);
        // A Deployment stopped by hand (0 replicas with minReplicas above 0) stays stopped, as with the HPA.
        let stopped = start == 0 && target.min_replicas > 0;
        for (tick, reading) in readings.iter().enumerate() {
            let d = run.at(tick as u64 * 5, &[reading.map(|b| Reading { backlog: b, ..Reading::default() })]);
            if stopped {
                prop_assert_eq!((d.desired, d.reason.rule), (0, Rule::ScalingDisabled));
                continue;
            }
            prop_assert!(d.desired <= target.max_replicas, "{} > max {}", d.desired, target.max_replicas);
            prop_assert!(d.desired >= target.min_replicas, "{} < min {}", d.desired, target.min_replicas);
        }
    }

    #[test]
    fn never_down_while_a_source_is_failing(target in arbitrary_target(), readings in arbitrary_readings(), start in 0u32..40) {
        let mut run = Run::new(&target, start.min(target.max_replicas));
        for (tick, reading) in readings.iter().enumerate() {
            let before = run.current;
            let d = run.at(tick as u64 * 5, &[reading.map(|b| Reading { backlog: b, ..Reading::default() })]);
            if reading.is_none() {
                prop_assert!(d.desired >= before, "scaled down from {} to {} on an error", before, d.desired);
            }
        }
    }

    #[test]
    fn no_change_inside_the_tolerance(target in arbitrary_target(), current in 1u32..30, jitter in -0.1f64..0.1) {
        let current = current.clamp(target.min_replicas.max(1), target.max_replicas);
        let mut run = Run::new(&target, current);
        let usage = 10.0 * f64::from(current) * (1.0 + jitter);
        let d = run.at(0, &[backlog(usage)]);
        prop_assert_eq!(d.desired, current);
    }

    #[test]
    fn scale_up_rate_is_respected(pods in 1u32..6, readings in prop::collection::vec(0.0f64..5000.0, 1..60)) {
        let extra = format!("  behavior:\n    scaleUp: {{policies: [{{type: Pods, value: {pods}, periodSeconds: 15}}]}}\n    scaleDown: {{stabilizationWindowSeconds: 0}}\n");
        let target = one_source(1, 1000, &extra);
        let mut run = Run::new(&target, 1);
        let mut changes: Vec<(u64, i64)> = Vec::new();
        for (tick, b) in readings.iter().enumerate() {
            let t = tick as u64 * 5;
            let before = run.current;
            let d = run.at(t, &[backlog(*b)]);
            if d.desired == before {
                continue;
            }
            changes.push((t, i64::from(d.desired) - i64::from(before)));
            // The HPA's rule: at each scale-up, what was added minus what was removed within the period that ends
            // with it never exceeds the policy.
            let net: i64 = changes.iter().filter(|(at, _)| t - at < 15).map(|(_, c)| c).sum();
            if d.desired > before {
                prop_assert!(net <= i64::from(pods), "net change {} within 15s at t={}", net, t);
            }
        }
    }
}

// ---- latency target, bursts, scale-down ----

/// A latency-mode target on one source, with `extra` appended to the target.
fn latency(min: u32, max: u32, latency_target: &str, extra: &str) -> TargetConfig {
    one_source(min, max, &format!("  latencyTarget: {latency_target}\n{extra}"))
}

fn observed(backlog: f64, in_flight: f64, arrival_rate: Option<f64>) -> Option<Reading> {
    Some(Reading { backlog, in_flight: Some(in_flight), arrival_rate, ..Reading::default() })
}

const GENEROUS_SCALE_UP: &str =
    "  behavior:\n    scaleUp:\n      policies: [{type: Pods, value: 100, periodSeconds: 15}]\n";

#[test]
fn latency_target_counts_by_littles_law() {
    let mut run = Run::new(&latency(1, 50, "{maxWait: 60s, jobDuration: 10s}", GENEROUS_SCALE_UP), 1);
    // No rate yet: 30 waiting × 10 s / 60 s = 5.
    let d = run.at(0, &[observed(30.0, 0.0, None)]);
    assert_eq!((d.desired, d.reason.rule), (5, Rule::LatencyTarget));
    assert!(
        d.reason.message.contains("(0.00/s × 10.0s + 30 waiting × 10.0s / 60s) = 5.00 replicas → 5"),
        "{}",
        d.reason
    );
    // 2/s × 10 s + 25 waiting × 10 s / 60 s = 24.17 → 25.
    let d = run.at(5, &[observed(30.0, 5.0, Some(2.0))]);
    assert_eq!((d.desired, d.reason.rule), (25, Rule::LatencyTarget));
}

#[test]
fn latency_target_divides_by_concurrency() {
    let mut run = Run::new(&latency(1, 50, "{maxWait: 60s, jobDuration: 10s, concurrency: 4}", GENEROUS_SCALE_UP), 1);
    // 60 waiting × 10 / 60 = 10 slots, 4 per replica: 2.5 → 3.
    assert_eq!(run.at(0, &[observed(60.0, 0.0, None)]).desired, 3);
}

#[test]
fn latency_target_uses_backlog_per_worker_until_the_job_duration_is_learned() {
    let mut run = Run::new(&latency(1, 50, "{maxWait: 60s}", GENEROUS_SCALE_UP), 1);
    // No arrival rate from the source: the duration cannot be learned; 61 over 10 per worker.
    let d = run.at(0, &[backlog(61.0)]);
    assert_eq!((d.desired, d.reason.rule), (7, Rule::SourceRecommendation));
    assert!(d.reason.message.contains("(latencyTarget: job duration not learned yet) → 7"), "{}", d.reason);
    // With the publish rate and in-flight count: 8 busy at 2 jobs/s and a steady backlog is 4 s per job, so
    // 2/s × 4 s + 22 waiting × 4 s / 60 s = 9.47 → 10.
    let mut run = Run::new(&latency(1, 50, "{maxWait: 60s}", GENEROUS_SCALE_UP), 7);
    run.at(0, &[observed(30.0, 8.0, Some(2.0))]);
    let d = run.at(5, &[observed(30.0, 8.0, Some(2.0))]);
    assert_eq!((d.desired, d.reason.rule), (10, Rule::LatencyTarget));
}

#[test]
fn a_burst_scales_up_at_once_past_the_rate_policy() {
    let mut run = Run::new(&latency(1, 50, "{maxWait: 60s, jobDuration: 10s}", ""), 2);
    run.at(0, &[observed(0.0, 0.0, Some(0.0))]);
    // 200 arrived in 5 s; the default policy would allow 6 replicas, the burst takes the 50 wanted (capped).
    let d = run.at(5, &[observed(200.0, 2.0, Some(40.0))]);
    assert_eq!((d.desired, d.reason.rule), (50, Rule::Burst));
    assert!(d.reason.message.contains("limited to 6"), "{}", d.reason);
}

#[test]
fn no_scale_down_during_a_burst_and_its_hold() {
    let extra = "  scaleDownPolicy: {delay: 0s, keepBusy: false}\n";
    let mut run = Run::new(&latency(1, 50, "{maxWait: 60s, jobDuration: 10s}", extra), 2);
    run.at(0, &[observed(0.0, 0.0, Some(0.0))]);
    assert_eq!(run.at(5, &[observed(200.0, 2.0, Some(40.0))]).desired, 50);
    // Arrivals stop at once; 60 waiting want 10, but the burst (last seen at 5, held 30 s) keeps 50.
    for t in [10, 20, 35] {
        let d = run.at(t, &[observed(60.0, 0.0, Some(0.0))]);
        assert_eq!((d.desired, d.reason.rule), (50, Rule::BurstHold), "t = {t}");
    }
    let d = run.at(36, &[observed(60.0, 0.0, Some(0.0))]);
    assert_eq!((d.desired, d.reason.rule), (10, Rule::LatencyTarget));
}

#[test]
fn bursts_can_be_turned_off() {
    let mut run = Run::new(&latency(1, 50, "{maxWait: 60s, jobDuration: 10s}", "  burst: {enabled: false}\n"), 2);
    run.at(0, &[observed(0.0, 0.0, Some(0.0))]);
    let d = run.at(5, &[observed(200.0, 2.0, Some(40.0))]);
    assert_eq!((d.desired, d.reason.rule), (6, Rule::ScaleUpLimit));
}

#[test]
fn busy_replicas_are_not_removed() {
    let extra = "  scaleDownPolicy: {delay: 0s}\n";
    let mut run = Run::new(&latency(1, 50, "{maxWait: 60s, jobDuration: 10s}", extra), 10);
    // Nothing arrives or waits any more, but 7 jobs still run: 3 replicas go, 7 stay.
    let d = run.at(0, &[observed(7.0, 7.0, Some(0.0))]);
    assert_eq!((d.desired, d.reason.rule), (7, Rule::BusyReplicas));
    assert!(d.reason.message.ends_with("kept at 7: 7 jobs are in flight"), "{}", d.reason);
    let idle = "  scaleDownPolicy: {delay: 0s, keepBusy: false}\n";
    let mut run = Run::new(&latency(1, 50, "{maxWait: 60s, jobDuration: 10s}", idle), 10);
    assert_eq!(run.at(0, &[observed(7.0, 7.0, Some(0.0))]).desired, 1);
}

#[test]
fn latency_mode_scales_down_after_the_scale_down_policy_delay() {
    // Default delay: 30 s instead of the HPA's 300 s.
    let mut run = Run::new(&latency(1, 50, "{maxWait: 60s, jobDuration: 10s}", ""), 8);
    assert_eq!(run.at(0, &[observed(0.0, 0.0, Some(0.0))]).reason.rule, Rule::ScaleDownStabilized);
    assert_eq!(run.at(29, &[observed(0.0, 0.0, Some(0.0))]).desired, 8);
    assert_eq!(run.at(30, &[observed(0.0, 0.0, Some(0.0))]).desired, 1);
    // An explicit behavior window wins.
    let explicit = "  behavior: {scaleDown: {stabilizationWindowSeconds: 60}}\n";
    let mut run = Run::new(&latency(1, 50, "{maxWait: 60s, jobDuration: 10s}", explicit), 8);
    run.at(0, &[observed(0.0, 0.0, Some(0.0))]);
    assert_eq!(run.at(30, &[observed(0.0, 0.0, Some(0.0))]).desired, 8);
    assert_eq!(run.at(60, &[observed(0.0, 0.0, Some(0.0))]).desired, 1);
    // In backlog mode the policy applies only when configured.
    let mut run = Run::new(&one_source(1, 50, "  scaleDownPolicy: {delay: 10s}\n"), 8);
    run.at(0, &[backlog(0.0)]);
    assert_eq!(run.at(10, &[backlog(0.0)]).desired, 1);
}

fn arbitrary_latency_target() -> impl Strategy<Value = TargetConfig> {
    (0u32..4, 1u32..40, 5u64..300, prop::option::of(1u64..60), 1u32..4, 0u64..90).prop_map(
        |(min, span, max_wait, job, concurrency, delay)| {
            let job = job.map(|j| format!(", jobDuration: {j}s")).unwrap_or_default();
            latency(
                min,
                min + span,
                &format!("{{maxWait: {max_wait}s{job}, concurrency: {concurrency}}}"),
                &format!("  scaleDownPolicy: {{delay: {delay}s}}\n"),
            )
        },
    )
}

/// Readings as a queue reports them: in-flight at most the backlog, an arrival rate or not, sometimes a failure.
fn arbitrary_observations() -> impl Strategy<Value = Vec<Option<(f64, f64, Option<f64>)>>> {
    let reading = (0.0f64..3000.0, 0.0f64..1.0, prop::option::of(0.0f64..100.0))
        .prop_map(|(backlog, share, rate)| (backlog, (backlog * share).floor(), rate));
    prop::collection::vec(prop::option::weighted(0.9, reading), 1..50)
}

proptest! {
    #[test]
    fn latency_mode_stays_within_min_and_max(
        target in arbitrary_latency_target(),
        observations in arbitrary_observations(),
        start in 0u32..60,
    ) {
        let mut run = Run::new(&target, start.max(target.min_replicas));
        for (tick, o) in observations.iter().enumerate() {
            let reading = o.map(|(b, i, r)| Reading { backlog: b, in_flight: Some(i), arrival_rate: r, ..Reading::default() });
            let d = run.at(tick as u64 * 5, &[reading]);
            prop_assert!(d.desired <= target.max_replicas, "{} > max {}", d.desired, target.max_replicas);
            prop_assert!(d.desired >= target.min_replicas, "{} < min {}", d.desired, target.min_replicas);
        }
    }

    #[test]
    fn never_down_during_a_burst(
        target in arbitrary_latency_target(),
        observations in arbitrary_observations(),
        bursts in prop::collection::vec(0usize..50, 1..4),
        start in 0u32..60,
    ) {
        // A burst interval: the backlog jumps by far more than any replicas drain in 5 s, or noise explains — seen
        // as a jump, so after a tick whose read succeeded (after a failed read there is no interval to judge).
        let job = target.latency_target.and_then(|l| l.job_duration);
        prop_assume!(job.is_some());
        let hold = target.burst.hold_for.as_secs();
        let mut run = Run::new(&target, start.min(target.max_replicas));
        let mut last_burst: Option<u64> = None;
        let mut backlog = 0.0;
        for (tick, o) in observations.iter().enumerate() {
            let t = tick as u64 * 5;
            let jump = bursts.contains(&tick) && tick > 0 && observations[tick - 1].is_some();
            let reading = o.map(|(b, i, r)| {
                backlog = if jump { backlog + 100_000.0 } else { b };
                Reading { backlog, in_flight: Some(i.min(backlog)), arrival_rate: r, ..Reading::default() }
            });
            if jump && reading.is_some() {
                last_burst = Some(t);
            }
            let before = run.current;
            let d = run.at(t, &[reading]);
            if last_burst.is_some_and(|at| t - at <= hold) {
                prop_assert!(d.desired >= before, "scaled down from {} to {} at t={} in a burst", before, d.desired, t);
            }
        }
    }
}

// ---- the edges (issue: decisions that keep their promises) ----

#[test]
fn a_scale_down_limit_quotes_the_scale_down_policies_even_when_it_holds_the_count() {
    let extra = "  behavior: {scaleDown: {stabilizationWindowSeconds: 0, policies: [{type: Pods, value: 5, periodSeconds: 120}]}}\n";
    let mut run = Run::new(&one_source(1, 30, extra), 20);
    let d = run.at(0, &[backlog(0.0)]);
    assert_eq!((d.desired, d.reason.rule), (15, Rule::ScaleDownLimit));
    // Inside the same 120 s period the limit is the current count: the scale-down rule still binds.
    let d = run.at(15, &[backlog(0.0)]);
    assert_eq!((d.desired, d.reason.rule), (15, Rule::ScaleDownLimit));
    assert!(d.reason.message.contains("limited to 15 (Pods 5/120s, select Max)"), "{}", d.reason);
}

/// Latency mode on a source that reports its publish rate, with a 10 s job and a burst in the next interval.
fn bursting(extra: &str) -> (Run, Decision) {
    let mut run = Run::new(&latency(1, 50, "{maxWait: 60s, jobDuration: 10s}", extra), 2);
    run.at(0, &[observed(0.0, 0.0, Some(0.0))]);
    let d = run.at(5, &[observed(200.0, 2.0, Some(40.0))]);
    (run, d)
}

#[test]
fn a_burst_never_exceeds_a_scale_up_the_user_wrote() {
    let (_, d) = bursting("  behavior: {scaleUp: {selectPolicy: Disabled}}\n");
    assert_eq!((d.desired, d.reason.rule), (2, Rule::ScaleUpDisabled));
    // Two pods a minute to spare a database: two now, and nothing more within the minute, burst or not.
    let (mut run, d) = bursting("  behavior: {scaleUp: {policies: [{type: Pods, value: 2, periodSeconds: 60}]}}\n");
    assert_eq!((d.desired, d.reason.rule), (4, Rule::ScaleUpLimit));
    assert!(d.reason.message.contains("(Pods 2/60s, select Max)"), "{}", d.reason);
    let d = run.at(10, &[observed(400.0, 4.0, Some(40.0))]);
    assert_eq!((d.desired, d.reason.rule), (4, Rule::ScaleUpLimit));
    assert_eq!(run.at(65, &[observed(600.0, 4.0, Some(40.0))]).desired, 6);
    // A window the user set is obeyed too; with the defaults the burst jumps (see above).
    let (_, d) = bursting("  behavior: {scaleUp: {stabilizationWindowSeconds: 60}}\n");
    assert_eq!((d.desired, d.reason.rule), (2, Rule::ScaleUpStabilized));
}

#[test]
fn at_zero_a_failing_source_never_wakes_the_target_on_a_backlog_below_activation() {
    let config = target(
        "- deployment: worker\n  minReplicas: 0\n  maxReplicas: 20\n  activation: 5\n  sources:\n    - {type: rabbitmq, url: 'amqp://h', queue: a, managementUrl: 'http://h:15672', backlogPerWorker: 1}\n    - {type: rabbitmq, url: 'amqp://h', queue: b, managementUrl: 'http://h:15672', backlogPerWorker: 1}\n",
    );
    let mut run = Run::new(&config, 0);
    for t in 0..5 {
        let d = run.at(t * 15, &[backlog(4.0), None]);
        assert_eq!((d.desired, d.reason.rule), (0, Rule::SourceFailing), "tick {t}: {}", d.reason);
    }
    // Above activation it wakes, failing source or not.
    let d = run.at(100, &[backlog(6.0), None]);
    assert!(d.desired > 0, "{}", d.reason);
    // With a fallback, the failing source's fallback count is what runs.
    let with_fallback = target(
        "- deployment: worker\n  minReplicas: 0\n  maxReplicas: 20\n  activation: 5\n  fallback: {failureThreshold: 2, replicas: 3}\n  sources:\n    - {type: rabbitmq, url: 'amqp://h', queue: a, managementUrl: 'http://h:15672', backlogPerWorker: 1}\n    - {type: rabbitmq, url: 'amqp://h', queue: b, managementUrl: 'http://h:15672', backlogPerWorker: 1}\n",
    );
    let mut run = Run::new(&with_fallback, 0);
    assert_eq!(run.at(0, &[backlog(4.0), None]).desired, 0);
    let d = run.at(15, &[backlog(4.0), None]);
    assert_eq!((d.desired, d.reason.rule), (3, Rule::Fallback), "{}", d.reason);
}

#[test]
fn a_deployment_stopped_by_hand_stays_stopped_while_min_replicas_is_above_zero() {
    let mut run = Run::new(&one_source(2, 20, ""), 0);
    for t in 0..4 {
        let d = run.at(t * 15, &[backlog(500.0)]);
        assert_eq!((d.desired, d.reason.rule), (0, Rule::ScalingDisabled), "{}", d.reason);
        assert!(d.reason.message.contains("minReplicas is 2"), "{}", d.reason);
    }
    // Scaled up by hand again, it is managed again, and its scale-down window starts afresh from that count.
    run.current = 8;
    assert_eq!(run.at(100, &[backlog(0.0)]).desired, 8);
    assert_eq!(run.at(399, &[backlog(0.0)]).desired, 8);
    assert_eq!(run.at(400, &[backlog(0.0)]).desired, 2);
    // minReplicas 0: zero is where the agent put it, and it wakes.
    let mut run = Run::new(&one_source(0, 20, ""), 0);
    assert!(run.at(0, &[backlog(50.0)]).desired > 0);
}

#[test]
fn latency_mode_does_not_scale_a_steady_stream_of_short_jobs_to_zero() {
    // One 2 s job every second on average: two workers busy, yet the backlog reads 0 at most polls because the
    // workers take each job at once. The publish rate says what arrives.
    let mut run = Run::new(&latency(0, 20, "{maxWait: 30s, jobDuration: 2s}", ""), 2);
    let mut lowest = u32::MAX;
    for tick in 0..120 {
        let waiting = if tick % 7 == 0 { 1.0 } else { 0.0 };
        let d = run.at(tick * 5, &[observed(waiting + 2.0 * f64::from(tick % 2 == 0), 0.0, Some(1.0))]);
        lowest = lowest.min(d.desired);
        assert_ne!(d.reason.rule, Rule::Idle, "t = {}: {}", tick * 5, d.reason);
    }
    assert!(lowest >= 1, "scaled to zero under steady traffic");
    // The traffic stops at 600 s: once the smoothed rate says the arrivals are gone, and the scale-down window (30 s
    // by default in latency mode) has passed without any, it goes to zero.
    let mut idle_at = None;
    for tick in 120..220 {
        let d = run.at(tick * 5, &[observed(0.0, 0.0, Some(0.0))]);
        if d.reason.rule == Rule::Idle && idle_at.is_none() {
            idle_at = Some(tick * 5);
        }
    }
    let idle_at = idle_at.expect("idle once the arrivals stopped");
    assert!((630..=900).contains(&idle_at), "went idle at {idle_at} s; the traffic stopped at 600 s");
}

#[test]
fn a_repeated_sample_is_no_observation_and_a_minute_of_growth_is_no_burst() {
    // Cloud Monitoring gives one point a minute; the agent polls every 5 s and sees the same point 12 times, then
    // a point 60 s newer with 40 more messages. 10 replicas of 10 s jobs complete 60 a minute: growing by 40 in a
    // minute is no burst, though growing by 40 in the 5 s of one poll would be.
    let config = latency(10, 50, "{maxWait: 120s, jobDuration: 10s}", "");
    let mut run = Run::new(&config, 10);
    let sampled = |backlog: f64, age: u64| {
        Some(Reading { backlog, data_age: Some(Duration::from_secs(age)), ..Reading::default() })
    };
    for tick in 0..12 {
        let d = run.at(tick * 5, &[sampled(100.0, 30 + tick * 5)]);
        assert_eq!(d.desired, 10, "tick {tick}: {}", d.reason);
    }
    let d = run.at(60, &[sampled(140.0, 30)]);
    assert_ne!(d.reason.rule, Rule::Burst, "{}", d.reason);
    // The same jump in a source read fresh at every poll is a burst.
    let mut fresh = Run::new(&config, 10);
    for tick in 0..12 {
        fresh.at(tick * 5, &[backlog(100.0)]);
    }
    assert_eq!(fresh.at(60, &[backlog(140.0)]).reason.rule, Rule::Burst);
}

#[test]
fn new_messages_where_the_group_never_committed_wake_a_target_at_zero() {
    let extra = "  activation: 50\n";
    let mut run = Run::new(&one_source(0, 20, extra), 0);
    assert_eq!(run.at(0, &[backlog(3.0)]).desired, 0);
    let d = run.at(5, &[Some(Reading { backlog: 3.0, wakes: true, ..Reading::default() })]);
    assert_eq!(d.desired, 1, "{}", d.reason);
}

#[test]
fn a_backlog_more_replicas_do_not_drain_stops_the_scale_up_until_it_moves() {
    // A downstream limit: 4 jobs/s arrive, the workers complete 2/s whatever their number, the backlog grows by
    // 10 every 5 s. Backlog mode asks for ever more replicas; after five minutes of that, no more are added.
    let extra = "  behavior: {scaleUp: {policies: [{type: Pods, value: 1, periodSeconds: 15}]}}\n";
    let mut run = Run::new(&one_source(1, 200, extra), 4);
    let mut backlog = 1000.0;
    let mut stopped_at = None;
    for tick in 0..120u64 {
        backlog += 10.0;
        let d = run
            .at(tick * 5, &[Some(Reading { backlog, in_flight: None, arrival_rate: Some(4.0), ..Reading::default() })]);
        if d.reason.rule == Rule::NotDraining && stopped_at.is_none() {
            stopped_at = Some((tick * 5, d.current));
            assert!(d.not_draining.as_deref().is_some_and(|why| why.contains("more replicas do not help")), "{d:?}");
        }
    }
    let (at, count) = stopped_at.expect("the scale-up stops");
    assert!(at >= 300, "only after a whole window: {at}");
    assert_eq!(run.current, count, "held from then on");
    // The limit lifts: completions jump, the backlog shrinks, and decisions are normal again.
    backlog -= 300.0;
    let d = run.at(605, &[Some(Reading { backlog, in_flight: None, arrival_rate: Some(4.0), ..Reading::default() })]);
    assert_ne!(d.reason.rule, Rule::NotDraining, "{}", d.reason);
    assert_eq!(d.not_draining, None);
}

#[test]
fn a_measured_wait_past_max_wait_adds_capacity_until_it_falls_back() {
    let mut run = Run::new(&latency(1, 50, "{maxWait: 60s, jobDuration: 10s}", GENEROUS_SCALE_UP), 1);
    let aged = |age: u64| {
        Some(Reading {
            backlog: 30.0,
            in_flight: Some(0.0),
            arrival_rate: Some(0.0),
            oldest_message_age: Some(Duration::from_secs(age)),
            ..Reading::default()
        })
    };
    // 30 waiting × 10 s / 60 s = 5 replicas by Little's law; the oldest waited 120 s, twice maxWait: 10.
    let d = run.at(0, &[aged(120)]);
    assert_eq!((d.desired, d.reason.rule), (10, Rule::MeasuredWait), "{}", d.reason);
    assert!(d.reason.message.contains("× 2.00 (the oldest message waited 120s, over maxWait)"), "{}", d.reason);
    // Back under maxWait: Little's law alone again (the scale-down waits for its window).
    let d = run.at(5, &[aged(30)]);
    assert_eq!(d.reason.rule, Rule::ScaleDownStabilized, "{}", d.reason);
    assert!(!d.reason.message.contains("over maxWait"), "{}", d.reason);
    // Far past it, the correction is capped at four times.
    let mut capped = Run::new(&latency(1, 50, "{maxWait: 60s, jobDuration: 10s}", GENEROUS_SCALE_UP), 1);
    assert_eq!(capped.at(0, &[aged(3600)]).desired, 20);
}

#[test]
fn a_small_scale_down_waits_four_minutes_and_a_large_one_only_the_window() {
    // 10 s jobs, nothing waiting: the arrival rate alone sets the count. 1.6 jobs/s keep 16 busy, four fewer than
    // the 20 running (past the 10 % tolerance): a step under a quarter of 20, so it waits until 16 have been wanted
    // for 240 s.
    let mut run = Run::new(&latency(1, 50, "{maxWait: 60s, jobDuration: 10s}", ""), 20);
    let mut first_deferred = None;
    let mut taken_at = None;
    for tick in 0..80 {
        let d = run.at(tick * 5, &[observed(16.0, 16.0, Some(1.6))]);
        if d.reason.rule == Rule::ScaleDownDeferred {
            first_deferred.get_or_insert(tick * 5);
            assert!(d.reason.message.contains("a step under 25% of 20 waits 240s"), "{}", d.reason);
        }
        if d.desired < 20 {
            taken_at = Some(tick * 5);
            assert_eq!(d.desired, 16, "{}", d.reason);
            break;
        }
    }
    let (first, taken) = (first_deferred.expect("deferred"), taken_at.expect("taken at last"));
    assert_eq!(taken - first, 240, "deferred from {first} s, taken at {taken} s");
    // From 16, 0.8 jobs/s want 8: as the smoothed rate falls, a quarter or more goes in one step as soon as the
    // window allows, not four minutes later.
    let start = taken + 5;
    let quarter_gone =
        (0..40).map(|tick| run.at(start + tick * 5, &[observed(8.0, 8.0, Some(0.8))]).desired).position(|n| n <= 12);
    // The smoothed rate takes about a minute to fall a quarter, then the 30 s window: well before 240 s.
    assert!(quarter_gone.is_some_and(|tick| tick * 5 <= 90), "a quarter of 16 went only at tick {quarter_gone:?}");
}

#[test]
fn small_step_percent_zero_takes_every_step_after_the_window() {
    let config = latency(1, 50, "{maxWait: 60s, jobDuration: 10s}", "  scaleDownPolicy: {smallStepPercent: 0}\n");
    let mut run = Run::new(&config, 20);
    let taken = (0..20).map(|tick| run.at(tick * 5, &[observed(16.0, 16.0, Some(1.6))])).position(|d| d.desired == 16);
    assert!(taken.is_some_and(|tick| tick * 5 <= 35), "taken at tick {taken:?}");
}
