//! The simulated cluster: a source and a target over one [`World`], for the agent's own loop to drive.
//!
//! The simulated queue answers like RabbitMQ's management API or SQS with in-flight counting: the backlog is the
//! waiting jobs plus the ones being worked on, and it reports the arrival rate since the previous read (what a
//! broker's publish rate gives). The simulated Deployment is the world's replica count. Time is the agent's
//! [`Clock`], so under a paused tokio runtime both move with the loop.

use std::sync::{Arc, Mutex, MutexGuard};

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
            ..Reading::default()
        })
    }
}

/// A target that is the simulated Deployment.
pub struct SimulatedDeployment {
    world: SharedWorld,
    clock: Clock,
}

impl SimulatedDeployment {
    /// The Deployment of `world`, on `clock`.
    pub fn new(world: SharedWorld, clock: Clock) -> SimulatedDeployment {
        SimulatedDeployment { world, clock }
    }
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
        world.set_replicas(self.clock.elapsed().as_secs_f64(), to);
        Ok(Written::Done)
    }
}
