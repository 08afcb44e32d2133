//! The simulated cluster: a source and a target over one [`World`], for the agent's own loop to drive.
//!
//! The simulated queue answers like RabbitMQ's management API or SQS with in-flight counting: the backlog is the
//! waiting jobs plus the ones being worked on, and it reports the arrival rate since the previous read (what a
//! broker's publish rate gives) and the age of its oldest waiting job (what `head_message_timestamp` or Pub/Sub's
//! `oldest_unacked_message_age` give). The simulated Deployment is the world's replica count; with
//! `scaleDown.quiet` it quiets pods before a scale-down exactly as the real target does, through the same
//! [`ScaleTarget`] contract ([`Written::Pending`] while quiet pods finish, [`ScaleTarget::keep`] to call it off), so
//! the agent's own loop runs the protocol. Time is the agent's [`Clock`], so under a paused tokio runtime both move
//! with the loop.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::World;
use crate::agent::Clock;
use crate::source::{ReadBacklog, Reading, SourceError};
use crate::target::{ScaleState, ScaleTarget, TargetError, Written};

/// The world, shared by the simulated source(s) and target.
pub type SharedWorld = Arc<Mutex<World>>;

fn lock(world: &SharedWorld) -> MutexGuard<'_, World> {
    // The world has no invariant a panicking reader could break half-way; keep simulating.
    world.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A source that reads the simulated queue.
pub struct SimulatedQueue {
    world: SharedWorld,
    clock: Clock,
    previous: Mutex<Option<(f64, u64)>>,
}

impl SimulatedQueue {
    /// A source over `world`, on `clock`.
    pub fn new(world: SharedWorld, clock: Clock) -> SimulatedQueue {
        SimulatedQueue { world, clock, previous: Mutex::new(None) }
    }
}

impl ReadBacklog for SimulatedQueue {
    async fn read(&self) -> Result<Reading, SourceError> {
        let now = self.clock.elapsed().as_secs_f64();
        let snapshot = {
            let mut world = lock(&self.world);
            world.advance_to(now);
            world.snapshot()
        };
        let mut previous = self.previous.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let arrival_rate = match *previous {
            Some((then, arrived)) if now > then => Some((snapshot.arrived - arrived) as f64 / (now - then)),
            _ => None,
        };
        *previous = Some((now, snapshot.arrived));
        Ok(Reading {
            backlog: (snapshot.waiting + snapshot.in_flight) as f64,
            in_flight: Some(snapshot.in_flight as f64),
            arrival_rate,
            oldest_message_age: snapshot.oldest_wait_s.map(Duration::from_secs_f64),
            ..Reading::default()
        })
    }
}

/// A target that is the simulated Deployment.
pub struct SimulatedDeployment {
    world: SharedWorld,
    clock: Clock,
    /// `scaleDown.quietTimeout` when the target scales down quietly.
    quiet_timeout: Option<Duration>,
    /// When the quiet scale-down under way began, in seconds of simulated time.
    quiet_since_s: Mutex<Option<f64>>,
}

impl SimulatedDeployment {
    /// The Deployment of `world`, on `clock`; with `quiet_timeout`, scale-downs quiet pods first (`scaleDown.quiet`).
    pub fn new(world: SharedWorld, clock: Clock, quiet_timeout: Option<Duration>) -> SimulatedDeployment {
        SimulatedDeployment { world, clock, quiet_timeout, quiet_since_s: Mutex::new(None) }
    }

    fn quiet_since_s(&self) -> MutexGuard<'_, Option<f64>> {
        self.quiet_since_s.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One write of a quiet scale-down from `from` towards `to`, as the real target does it: the first write quiets
/// pods (the ones not yet ready need no quieting: they hold no job and go first anyway); later writes wait until the
/// quiet pods hold no job, or `timeout` has passed since `since_s`, and then lower the count by the quiet and
/// not-yet-ready pods, no lower than `to`. Quiet pods the lower count keeps take jobs again.
fn quiet_step(
    world: &mut World,
    since_s: &mut Option<f64>,
    now_s: f64,
    (from, to): (u32, u32),
    timeout: Duration,
) -> Written {
    if since_s.is_none() {
        let to_quiet = (from - to).saturating_sub(world.snapshot().starting_pods);
        if world.quiet(now_s, to_quiet) == 0 {
            // Nothing to quiet (or nobody ready to ask): the scale-down goes ahead idle-first, as the agent's does.
            world.set_replicas(now_s, to);
            return Written::Done;
        }
        *since_s = Some(now_s);
    }
    let (busy, jobs) = world.quiet_load();
    let quiet = world.snapshot().quiet_pods;
    if busy > 0 {
        if now_s - since_s.unwrap_or(now_s) < timeout.as_secs_f64() {
            return Written::Pending(format!("waiting for {busy} of {quiet} quiet pod(s) to finish {jobs} job(s)"));
        }
        world.note_quiet_timeout(busy);
    }
    let lowered = from.saturating_sub(quiet + world.snapshot().starting_pods).max(to);
    world.set_replicas(now_s, lowered);
    world.resume_quiet(now_s);
    *since_s = None;
    Written::Done
}

impl ScaleTarget for SimulatedDeployment {
    async fn read(&self) -> Result<ScaleState, TargetError> {
        Ok(ScaleState { replicas: lock(&self.world).replicas(), ..ScaleState::default() })
    }

    async fn write(&self, from: u32, to: u32, _reason: &str) -> Result<Written, TargetError> {
        let mut world = lock(&self.world);
        let found = world.replicas();
        if found != from {
            return Err(TargetError::Changed { expected: from, found: Some(found) });
        }
        let now_s = self.clock.elapsed().as_secs_f64();
        world.advance_to(now_s);
        let mut since_s = self.quiet_since_s();
        if let Some(timeout) = self.quiet_timeout.filter(|_| to < from) {
            return Ok(quiet_step(&mut world, &mut since_s, now_s, (from, to), timeout));
        }
        // A scale-up, or no quiet: quiet pods take jobs again before any pod is added.
        if since_s.take().is_some() {
            world.resume_quiet(now_s);
        }
        world.set_replicas(now_s, to);
        Ok(Written::Done)
    }

    async fn keep(&self, _count: u32) {
        if self.quiet_since_s().take().is_some() {
            lock(&self.world).resume_quiet(self.clock.elapsed().as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::trace::Job;
    use crate::sim::{Snapshot, WorldSettings};

    /// Three ready pods, each on a 100 s job, behind a target that quiets with `timeout_s`.
    fn three_busy_pods(timeout_s: u64) -> (SharedWorld, SimulatedDeployment) {
        let jobs = vec![Job { arrival_s: 0.0, duration_s: 100.0 }; 3];
        let world = Arc::new(Mutex::new(World::new(jobs, WorldSettings { initial_replicas: 3, ..Default::default() })));
        let clock = Clock::starting_at(crate::sim::run::start_of_simulated_time());
        let target = SimulatedDeployment::new(world.clone(), clock, Some(Duration::from_secs(timeout_s)));
        (world, target)
    }

    fn snapshot(world: &SharedWorld) -> Snapshot {
        lock(world).snapshot()
    }

    /// Moves the paused clock on by `seconds`, and the world with it (both started at 0).
    async fn at(world: &SharedWorld, seconds: u64) -> Snapshot {
        tokio::time::advance(Duration::from_secs(seconds)).await;
        let mut locked = lock(world);
        let now_s = locked.snapshot().now_s + seconds as f64;
        locked.advance_to(now_s);
        locked.snapshot()
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_scale_down_keeps_the_count_until_the_quiet_pods_are_idle_and_interrupts_nothing() {
        let (world, target) = three_busy_pods(3_600);
        let pending = target.write(3, 1, "backlog fell").await;
        assert!(matches!(&pending, Ok(Written::Pending(why)) if why.contains("2 of 2 quiet pod(s)")), "{pending:?}");
        let quiet = snapshot(&world);
        assert_eq!((quiet.quiet_pods, quiet.ready_pods, lock(&world).replicas()), (2, 1, 3));
        // Still busy at 99 s: the count stays.
        at(&world, 99).await;
        assert!(matches!(target.write(3, 1, "").await, Ok(Written::Pending(_))));
        // At 100 s every job is done: the two quiet pods go.
        let done = at(&world, 1).await;
        assert_eq!(done.completed, 3);
        assert_eq!(target.write(3, 1, "").await, Ok(Written::Done));
        let after = snapshot(&world);
        assert_eq!((after.quiet_pods, after.ready_pods, after.draining_pods, lock(&world).replicas()), (0, 1, 0, 1));
        drop(target);
        let report = Arc::try_unwrap(world).expect("one owner").into_inner().expect("unpoisoned").finish("q").report;
        assert_eq!((report.interrupted_jobs, report.quieted_pods, report.quiet_timeouts), (0, 2, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_rise_while_pods_are_quiet_resumes_them_before_adding_any_pod() {
        let (world, target) = three_busy_pods(3_600);
        assert!(matches!(target.write(3, 1, "").await, Ok(Written::Pending(_))));
        // 3 → 4: the two quiet pods work again and exactly one pod is added.
        assert_eq!(target.write(3, 4, "").await, Ok(Written::Done));
        let after = snapshot(&world);
        assert_eq!((after.quiet_pods, after.ready_pods, after.starting_pods), (0, 3, 1));
        // A decision that keeps the count calls a quiet scale-down off too.
        assert!(matches!(target.write(4, 2, "").await, Ok(Written::Pending(_))));
        assert_eq!(snapshot(&world).quiet_pods, 1, "the starting pod needs no quieting");
        target.keep(4).await;
        assert_eq!((snapshot(&world).quiet_pods, lock(&world).replicas()), (0, 4));
    }

    #[tokio::test(start_paused = true)]
    async fn at_quiet_timeout_the_scale_down_goes_ahead_cutting_the_jobs_and_says_so() {
        let (world, target) = three_busy_pods(60);
        assert!(matches!(target.write(3, 1, "").await, Ok(Written::Pending(_))));
        at(&world, 59).await;
        assert!(matches!(target.write(3, 1, "").await, Ok(Written::Pending(_))));
        at(&world, 1).await;
        assert_eq!(target.write(3, 1, "").await, Ok(Written::Done));
        assert_eq!((snapshot(&world).draining_pods, lock(&world).replicas()), (2, 1));
        // The drained pods hand their jobs back at the end of the 30 s grace period.
        at(&world, 30).await;
        drop(target);
        let report = Arc::try_unwrap(world).expect("one owner").into_inner().expect("unpoisoned").finish("q").report;
        assert_eq!((report.interrupted_jobs, report.handed_back, report.quiet_timeouts), (2, 2, 2));
    }
}
