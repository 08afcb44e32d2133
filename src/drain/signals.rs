//! SIGTERM and SIGINT into the drain: the first begins it, a second during the grace cuts the grace short, and any
//! signal during the flush (a third, or a second after the grace) ends the process at once.
//!
//! signal-hook's handler only writes to a self-pipe (async-signal-safe); a plain thread reads it. Not a tokio task:
//! a worker whose jobs block the runtime's threads, or whose `main` never reaches [`Drain::wait`](super::Drain::wait),
//! must still stop when told twice, as with signal-hook's conditional shutdown and Celery's cold shutdown.

use std::io;
use std::sync::Arc;
use std::thread;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::exit::{EXIT_COLD, end};
use super::state::Shared;
use super::summary::Cause;

/// Registers both signals and starts the thread that acts on them.
pub(super) fn install(shared: Arc<Shared>) -> io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    thread::Builder::new().name("drain-signals".into()).spawn(move || {
        for (seen, signal) in signals.forever().enumerate() {
            let cause = Cause::Signal(if signal == SIGTERM { "SIGTERM" } else { "SIGINT" });
            if seen == 0 {
                shared.stop(cause);
            } else if shared.alarm.flushing() {
                end(&shared, EXIT_COLD, "a signal during the flush");
            } else {
                shared.stop_now(cause);
            }
        }
    })?;
    Ok(())
}
