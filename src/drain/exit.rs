//! How the drain ends the process: the exit codes, the one summary line, and the watchdog that bounds the whole
//! shutdown.
//!
//! After the grace, acks under way, hand-back calls and the worker's own teardown (closing a broker connection
//! whose socket buffer holds nacks that look sent) can each hang on a broker that stopped answering, and a job may
//! block the runtime's threads. Kubernetes would then SIGKILL the pod with nothing said. So a plain thread, which
//! needs no runtime and no task to be polled, holds the deadline: the flush budget, counted from the end of the
//! grace (or from a second signal). When it runs out, whatever is stuck, the thread prints the summary line on
//! stdout and ends the process with [`EXIT_FLUSH_TIMEOUT`]; a signal during the flush ends it at once with
//! [`EXIT_COLD`].

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use super::state::{Shared, lock};

/// Exit code: the broker ended the stream (RabbitMQ's `consumer_timeout`, a closed connection); nobody asked the
/// worker to stop. Everything it held was still finished or handed back.
pub const EXIT_STREAM_ENDED: i32 = 3;
/// Exit code: at least one hand-back failed or never ran; the broker gives those jobs out again only after its own
/// timeout (visibility timeout, ack deadline, connection close).
pub const EXIT_HAND_BACK_FAILED: i32 = 4;
/// Exit code: the flush budget after the grace ran out (an ack, a hand-back or the worker's own teardown hung); the
/// watchdog ended the process. Jobs it still held go back through the broker's own timeout.
pub const EXIT_FLUSH_TIMEOUT: i32 = 5;
/// Exit code: a signal arrived during the flush (a third signal, or a second one after the grace): the process
/// ended at once, as Celery's cold shutdown does.
pub const EXIT_COLD: i32 = 6;

/// How long the summary line may take to reach stdout before the process ends without it: a stdout nobody reads
/// must not keep a pod alive.
const PRINT_DEADLINE: Duration = Duration::from_millis(500);

/// The flush deadline in real time, shared by whoever moves it and the watchdog thread that waits for it.
#[derive(Debug)]
pub(super) struct Alarm {
    budget: Duration,
    /// When the flush begins: the end of the grace, or a second signal; `None` until the drain begins.
    flush_from: Mutex<Option<Instant>>,
    wake: Condvar,
    /// Whether the summary line was printed: exactly one of the worker's exit and the watchdog prints it.
    reported: AtomicBool,
}

impl Alarm {
    pub fn new(budget: Duration) -> Alarm {
        Alarm { budget, flush_from: Mutex::new(None), wake: Condvar::new(), reported: AtomicBool::new(false) }
    }

    /// The drain began: the flush begins when the grace ends.
    pub fn began(&self, grace: Duration) {
        let now = Instant::now();
        // A grace too long to represent never ends: only a second signal starts the flush then.
        if let Some(at) = now.checked_add(grace) {
            self.flush_from(at);
        }
    }

    /// The grace was cut short: the flush begins now.
    pub fn cut(&self) {
        self.flush_from(Instant::now());
    }

    fn flush_from(&self, at: Instant) {
        let mut from = lock(&self.flush_from);
        *from = Some(from.map_or(at, |earlier| earlier.min(at)));
        self.wake.notify_all();
    }

    /// Whether the flush has begun: a signal now ends the process.
    pub fn flushing(&self) -> bool {
        lock(&self.flush_from).is_some_and(|from| Instant::now() >= from)
    }

    /// Claims the summary line: true for the first caller only.
    pub fn claim_report(&self) -> bool {
        !self.reported.swap(true, Ordering::SeqCst)
    }

    /// Blocks until the flush budget has run out.
    pub(super) fn wait_for_the_deadline(&self) {
        let mut from = lock(&self.flush_from);
        loop {
            match from.and_then(|from| from.checked_add(self.budget)) {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return;
                    }
                    from = self.wake.wait_timeout(from, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
                }
                None => from = self.wake.wait(from).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }
}

/// Starts the watchdog thread: it sleeps until the drain's flush budget runs out, then ends the process.
pub(super) fn watch(shared: Arc<Shared>) -> std::io::Result<()> {
    thread::Builder::new().name("drain-watchdog".into()).spawn(move || {
        shared.alarm.wait_for_the_deadline();
        let why = format!("flush budget of {} ms ran out", shared.alarm.budget.as_millis());
        end(&shared, EXIT_FLUSH_TIMEOUT, &why)
    })?;
    Ok(())
}

/// Prints the summary line as it stands (unless the worker's exit already did) with `why`, and ends the process
/// with `code` at once: no destructor, no runtime shutdown, nothing that could hang.
pub(super) fn end(shared: &Shared, code: i32, why: &str) -> ! {
    if shared.alarm.claim_report() {
        print_line(format!("{}; {why}, exit {code}", shared.summary_now()));
    }
    signal_hook::low_level::exit(code)
}

/// Prints `line` on stdout and flushes it, giving up after [`PRINT_DEADLINE`]: another thread may hold stdout's
/// lock while blocked on a full pipe.
pub(super) fn print_line(line: String) {
    let (printed, wait) = mpsc::channel();
    let printer = thread::Builder::new().name("drain-summary".into()).spawn(move || {
        let mut out = std::io::stdout().lock();
        // Nothing to do about a closed stdout: the exit code still tells.
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        let _ = printed.send(());
    });
    if printer.is_ok() {
        let _ = wait.recv_timeout(PRINT_DEADLINE);
    }
}
