//! Stopping intake at the broker, not only in the loop: the hooks a worker registers, run when intake stops (the
//! drain begins, or `POST /quiet`) and when it resumes (`POST /resume`).
//!
//! Ending the receive loop is not enough. RabbitMQ pushes a new delivery for every ack while the worker drains, and
//! it sits unstarted for the whole grace; a Kafka consumer that stops polling stalls its whole group's rebalance;
//! Pub/Sub keeps leasing messages to an open stream. So the worker says what "stop" and "resume" mean for its broker
//! (cancel the consumer, pause the partitions, shut the stream), and one task runs those hooks in order at each
//! transition, so a resume never overtakes the stop before it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use super::state::{Phase, Shared, lock};

type Hook = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The hooks registered so far.
#[derive(Default)]
pub(super) struct Hooks {
    on_stop: Mutex<Vec<Hook>>,
    on_resume: Mutex<Vec<Hook>>,
}

impl Hooks {
    pub fn on_stop<F, Fut>(&self, hook: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        lock(&self.on_stop).push(boxed(hook));
    }

    pub fn on_resume<F, Fut>(&self, hook: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        lock(&self.on_resume).push(boxed(hook));
    }
}

fn boxed<F, Fut>(hook: F) -> Hook
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move || Box::pin(hook()))
}

/// Runs `hooks` one after the other.
async fn run(hooks: &Mutex<Vec<Hook>>) {
    // Cloned out of the lock: a hook may register another, or take long.
    let hooks: Vec<Hook> = lock(hooks).clone();
    for hook in hooks {
        hook().await;
    }
}

/// Whether intake is open in `phase`.
pub(super) fn open(phase: &Phase) -> bool {
    matches!(phase, Phase::Running { quiet: false })
}

/// Follows the phase and runs the stop hooks when intake closes, the resume hooks when it opens again; ends once
/// the drain has begun and the stop hooks ran.
pub(super) async fn follow(shared: Arc<Shared>) {
    let mut phase = shared.phase.subscribe();
    let mut was_open = true;
    loop {
        let (is_open, draining) = {
            let now = phase.borrow_and_update();
            (open(&now), !matches!(*now, Phase::Running { .. }))
        };
        if was_open && !is_open {
            run(&shared.hooks.on_stop).await;
        } else if !was_open && is_open {
            run(&shared.hooks.on_resume).await;
        }
        was_open = is_open;
        if draining || phase.changed().await.is_err() {
            return;
        }
    }
}
