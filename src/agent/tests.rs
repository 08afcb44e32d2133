//! The loop's memory across ticks that decide nothing (holds, standby, an unreadable target) and writes that go
//! unanswered, on tokio's paused clock against a scripted target.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::*;
use crate::config::Config;
use crate::source::fixed;
use crate::target::{ScaleState, TargetError, Written};

/// A target whose count, hold and availability the test sets, and which records every write.
#[derive(Clone, Default)]
struct Scripted {
    state: Arc<Mutex<Script>>,
}

#[derive(Default)]
struct Script {
    replicas: u32,
    hold: Option<Hold>,
    other_controller: Option<String>,
    replicas_set_by: Option<String>,
    warnings: Vec<(String, String)>,
    unreadable: bool,
    /// Apply the write, then take this long to answer.
    answer_after: Duration,
    writes: Vec<(u32, u32)>,
}

impl Scripted {
    fn at(replicas: u32) -> Scripted {
        let target = Scripted::default();
        target.set(|s| s.replicas = replicas);
        target
    }

    fn set(&self, change: impl FnOnce(&mut Script)) {
        change(&mut self.state.lock().expect("script"));
    }

    fn replicas(&self) -> u32 {
        self.state.lock().expect("script").replicas
    }

    fn writes(&self) -> Vec<(u32, u32)> {
        self.state.lock().expect("script").writes.clone()
    }
}

impl ScaleTarget for Scripted {
    async fn read(&self) -> Result<ScaleState, TargetError> {
        let script = self.state.lock().expect("script");
        if script.unreadable {
            return Err(TargetError::Unreachable("scripted".into()));
        }
        Ok(ScaleState {
            replicas: script.replicas,
            hold: script.hold.clone(),
            other_controller: script.other_controller.clone(),
            replicas_set_by: script.replicas_set_by.clone(),
        })
    }

    async fn write(&self, from: u32, to: u32, _reason: &str) -> Result<Written, TargetError> {
        let answer_after = {
            let mut script = self.state.lock().expect("script");
            if script.replicas != from {
                return Err(TargetError::Changed { expected: from, found: Some(script.replicas) });
            }
            script.replicas = to;
            script.writes.push((from, to));
            script.answer_after
        };
        tokio::time::sleep(answer_after).await;
        Ok(Written::Done)
    }

    fn warn(&self, reason: &str, note: &str) {
        self.state.lock().expect("script").warnings.push((reason.to_owned(), note.to_owned()));
    }
}

fn monday_noon() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z").expect("time").with_timezone(&Utc)
}

/// The config of a target `deployment` whose only source always reads `backlog`, with `extra` in the target.
fn spec(deployment: &str, backlog: f64, per_worker: u32, extra: &str) -> TargetConfig {
    let text = format!(
        "targets:\n  - deployment: {deployment}\n    minReplicas: 1\n    maxReplicas: 30\n{extra}    sources:\n      - {{type: fixed, backlog: {backlog}, backlogPerWorker: {per_worker}}}\n"
    );
    let mut config = Config::parse("test.yaml", &text, |_| None).unwrap_or_else(|e| panic!("{e}"));
    config.targets.remove(0)
}

const SETTINGS: LoopSettings = LoopSettings { read_timeout: Duration::from_secs(1), dry_run: false };

/// A loop for `spec` over `target`.
fn loop_for(spec: &TargetConfig, target: &Scripted, leadership: Leadership) -> TargetLoop<Scripted> {
    let crate::source::SourceKind::Fixed(fixed) = &spec.sources[0].kind else { unreachable!("a fixed source") };
    let sources = vec![Source::Fixed(fixed::Fixed::new(fixed))];
    TargetLoop::new(spec, sources, target.clone(), SETTINGS, Secrets::default(), leadership)
}

/// A loop over `target` for one target whose only source always reads `backlog`, with `extra` in the target.
fn looping(target: &Scripted, backlog: f64, extra: &str, leadership: Leadership) -> TargetLoop<Scripted> {
    loop_for(&spec("worker", backlog, 10, extra), target, leadership)
}

/// Ticks every 5 s for `seconds`, returning the replica count after each tick.
async fn run_for(agent: &mut TargetLoop<Scripted>, clock: &Clock, seconds: u64) -> Vec<u32> {
    let mut counts = Vec::new();
    for _ in 0..seconds / 5 {
        agent.tick(clock).await;
        counts.push(agent.target().replicas());
        tokio::time::advance(Duration::from_secs(5)).await;
    }
    counts
}

const ONE_MINUTE_WINDOW: &str = "    behavior: {scaleDown: {stabilizationWindowSeconds: 60}}\n";

#[tokio::test(start_paused = true)]
async fn a_hold_that_ends_never_drops_the_count_faster_than_a_full_window() {
    let clock = Clock::starting_at(monday_noon());
    let target = Scripted::at(1);
    let mut agent = looping(&target, 0.0, ONE_MINUTE_WINDOW, Leadership::always());
    assert_eq!(run_for(&mut agent, &clock, 120).await.last(), Some(&1));
    // `queue-scaler scale worker --replicas 20 --hold 30s` while the queue reads 0.
    let (_, wall) = clock.now();
    target.set(|s| {
        s.replicas = 20;
        s.hold = Some(Hold::Until(wall + chrono::Duration::seconds(30)));
    });
    let counts = run_for(&mut agent, &clock, 150).await;
    // Held for 30 s, then a full 60 s window from the first decision after it, before anything goes.
    assert!(counts[..18].iter().all(|n| *n == 20), "{counts:?}");
    assert_eq!(counts.last(), Some(&1), "then down to minReplicas: {counts:?}");
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_target_and_a_standby_spell_restart_the_window_too() {
    let clock = Clock::starting_at(monday_noon());
    let target = Scripted::at(1);
    let leadership = Leadership::switchable();
    leadership.switch(true);
    let mut agent = looping(&target, 0.0, ONE_MINUTE_WINDOW, leadership.clone());
    run_for(&mut agent, &clock, 120).await;
    // Another agent leads for a while and leaves 20 replicas behind.
    leadership.switch(false);
    run_for(&mut agent, &clock, 30).await;
    target.set(|s| s.replicas = 20);
    leadership.switch(true);
    let counts = run_for(&mut agent, &clock, 60).await;
    assert!(counts.iter().all(|n| *n == 20), "leadership regained: a full window first: {counts:?}");

    let target = Scripted::at(1);
    let mut agent = looping(&target, 0.0, ONE_MINUTE_WINDOW, Leadership::always());
    run_for(&mut agent, &clock, 120).await;
    target.set(|s| s.unreadable = true);
    run_for(&mut agent, &clock, 10).await;
    target.set(|s| {
        s.unreadable = false;
        s.replicas = 20;
    });
    let counts = run_for(&mut agent, &clock, 60).await;
    assert!(counts.iter().all(|n| *n == 20), "readable again: a full window first: {counts:?}");
}

#[tokio::test(start_paused = true)]
async fn a_write_that_landed_without_an_answer_counts_for_the_rate_policy() {
    let clock = Clock::starting_at(monday_noon());
    let target = Scripted::at(1);
    target.set(|s| s.answer_after = WRITE_TIMEOUT + Duration::from_secs(5));
    let up = "    behavior: {scaleUp: {policies: [{type: Pods, value: 4, periodSeconds: 60}]}}\n";
    let mut agent = looping(&target, 200.0, up, Leadership::always());
    agent.tick(&clock).await;
    assert_eq!(target.writes(), [(1, 5)], "the write landed, though its answer never came");
    // Within the minute the policy allows no more: 4 pods per 60 s, counted from 1.
    target.set(|s| s.answer_after = Duration::ZERO);
    for _ in 0..8 {
        tokio::time::advance(Duration::from_secs(5)).await;
        agent.tick(&clock).await;
    }
    assert_eq!(target.writes(), [(1, 5)], "no second step within the period");
    tokio::time::advance(Duration::from_secs(20)).await;
    agent.tick(&clock).await;
    assert_eq!(target.writes(), [(1, 5), (5, 9)]);
}

#[tokio::test(start_paused = true)]
async fn a_reload_keeps_what_unchanged_targets_learned_and_the_windows_of_changed_ones() {
    for change in ["an unrelated target added", "this target's backlogPerWorker changed"] {
        let clock = Clock::starting_at(monday_noon());
        let target = Scripted::at(20);
        let worker = spec("worker", 0.0, 10, ONE_MINUTE_WINDOW);
        let agent = loop_for(&worker, &target, Leadership::always());
        let mut running = vec![agent];
        // 40 s of an empty queue: 20 more seconds of the window to go.
        run_for(&mut running[0], &clock, 40).await;
        let reloaded = match change {
            "an unrelated target added" => vec![worker.clone(), spec("other", 0.0, 10, "")],
            _ => vec![spec("worker", 0.0, 5, ONE_MINUTE_WINDOW)],
        };
        let (mut loops, carried) = reload::carry_over(running, &reloaded, SETTINGS, |spec| {
            loop_for(spec, &Scripted::at(20), Leadership::always())
        });
        let expected = if change.starts_with("an unrelated") {
            reload::CarriedOver { kept: 1, added: 1, ..Default::default() }
        } else {
            reload::CarriedOver { changed: 1, ..Default::default() }
        };
        assert_eq!(carried, expected, "{change}");
        let counts = run_for(&mut loops[0], &clock, 30).await;
        let down_at = counts.iter().position(|n| *n < 20).map(|i| 40 + i * 5);
        assert_eq!(down_at, Some(60), "{change}: scaled down when the window started at 0 s ended: {counts:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_target_another_autoscaler_scales_is_left_alone_and_told_once() {
    let clock = Clock::starting_at(monday_noon());
    let target = Scripted::at(1);
    target.set(|s| s.other_controller = Some("HorizontalPodAutoscaler/worker".into()));
    let mut agent = looping(&target, 40.0, "", Leadership::always());
    let counts = run_for(&mut agent, &clock, 60).await;
    assert!(counts.iter().all(|n| *n == 1), "{counts:?}");
    assert!(target.writes().is_empty());
    let warnings = target.state.lock().expect("script").warnings.clone();
    assert_eq!(warnings.len(), 1, "told once: {warnings:?}");
    assert_eq!(warnings[0].0, "OtherAutoscaler");
    assert!(warnings[0].1.starts_with("HorizontalPodAutoscaler/worker already scales this workload"), "{warnings:?}");
    // The HPA is deleted: the agent takes over.
    target.set(|s| s.other_controller = None);
    assert_eq!(run_for(&mut agent, &clock, 10).await.last(), Some(&4));
}

#[tokio::test(start_paused = true)]
async fn others_changing_the_count_are_named_and_a_third_change_in_ten_minutes_backs_the_agent_off() {
    let clock = Clock::starting_at(monday_noon());
    let target = Scripted::at(1);
    let fast = "    behavior: {scaleDown: {stabilizationWindowSeconds: 0}}\n";
    let mut agent = looping(&target, 40.0, fast, Leadership::always());
    run_for(&mut agent, &clock, 20).await;
    assert_eq!(target.replicas(), 4);
    let warnings = |target: &Scripted| target.state.lock().expect("script").warnings.clone();
    for round in 1..=3 {
        // A GitOps tool syncs a manifest that still says `replicas: 7`.
        target.set(|s| {
            s.replicas = 7;
            s.replicas_set_by = Some("argocd-controller".into());
        });
        run_for(&mut agent, &clock, 60).await;
        let told = warnings(&target);
        assert_eq!(told.iter().filter(|(r, _)| r == "ReplicasChangedByOther").count(), round, "{told:?}");
        assert!(told.last().is_some_and(|(_, note)| note.contains("argocd-controller")), "{told:?}");
    }
    // The third change: the agent backs off and leaves 7 alone for ten minutes, then manages it again.
    assert_eq!(warnings(&target).last().map(|(r, _)| r.as_str()), Some("BackingOff"));
    let before = target.writes().len();
    let counts = run_for(&mut agent, &clock, 540).await;
    assert!(counts.iter().all(|n| *n == 7), "backed off: {counts:?}");
    assert_eq!(target.writes().len(), before);
    assert_eq!(run_for(&mut agent, &clock, 120).await.last(), Some(&4), "managed again after the back-off");

    // A change under a manual hold is the human's to make: not counted.
    let target = Scripted::at(1);
    let mut agent = looping(&target, 40.0, fast, Leadership::always());
    run_for(&mut agent, &clock, 20).await;
    let (_, wall) = clock.now();
    target.set(|s| {
        s.replicas = 9;
        s.hold = Some(Hold::Until(wall + chrono::Duration::seconds(30)));
    });
    run_for(&mut agent, &clock, 60).await;
    assert!(warnings(&target).is_empty(), "{:?}", warnings(&target));
}
