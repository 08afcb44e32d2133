//! A transcoding-style Pub/Sub worker that drains on SIGTERM: the stream stops pulling at once, what it leased but
//! never handed out is nacked, unfinished jobs are nacked for redelivery.
//!
//! `PUBSUB_PROJECT`, `SUBSCRIPTION` (and `PUBSUB_EMULATOR_HOST` for the emulator), plus the common `JOB_MS`,
//! `DRAIN_GRACE_MS`, `DRAIN_FLUSH_MS`, `WORKER_METRICS_ADDR`, `CONCURRENCY`, `DRAIN_TOKEN` / `DRAIN_TOKEN_FILE`,
//! `PANIC_ONCE_ON`.
//!
//! Google's client extends the lease of every message it handed out until it is acked or nacked, so long jobs
//! need nothing more. An ack on an at-least-once subscription is fire-and-forget in that client; only
//! exactly-once subscriptions confirm one. So `done` follows a confirmed ack where the subscription offers it, and
//! the handed-over ack otherwise, and every stream's lease management is awaited before exit so each queued ack and
//! nack reaches the service.
//!
//! On a drain or `POST /quiet` the stream is shut down and dropped: the streaming pull ends, so the service stops
//! leasing messages to this worker. The jobs it holds go on: the client's `WaitForProcessing` keeps their leases
//! and takes their acks and nacks until the last one is settled, then nacks whatever it had received but never
//! handed out. (`NackImmediately` would nack the jobs still running as well, and drop their acks.)
mod common;

use std::sync::{Arc, Mutex, PoisonError};

use google_cloud_auth::credentials::anonymous;
use google_cloud_pubsub::client::Subscriber;
use google_cloud_pubsub::subscriber::handler::Handler;
use google_cloud_pubsub::subscriber::{MessageStream, ShutdownBehavior, ShutdownToken};
use queue_scaler::drain::Drain;

use common::{BoxError, Settings};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let settings = Arc::new(Settings::from_env()?);
    let (project, subscription) = (common::var("PUBSUB_PROJECT")?, common::var("SUBSCRIPTION")?);
    let drain = common::drain(&settings, settings.concurrency).await?;
    let mut client = Subscriber::builder();
    if let Some(host) = common::optional("PUBSUB_EMULATOR_HOST") {
        // The emulator speaks plain HTTP/2 and must never see real credentials.
        client = client.with_endpoint(format!("http://{host}")).with_credentials(anonymous::Builder::new().build());
    }
    let client = client.build().await?;
    let mut streams = Vec::new();
    let current = Current::default();
    let hook = current.clone();
    drain.on_drain(move || {
        stop_pulling(&hook);
        std::future::ready(())
    });
    loop {
        let mut stream = client
            .subscribe(format!("projects/{project}/subscriptions/{subscription}"))
            .set_max_outstanding_messages(i64::try_from(settings.concurrency)?)
            .set_shutdown_behavior(ShutdownBehavior::WaitForProcessing)
            .build();
        streams.push(stream.shutdown_token());
        *current.lock().unwrap_or_else(PoisonError::into_inner) = Some(stream.shutdown_token());
        drain.ready();
        let ended = take_jobs(&drain, &mut stream, &settings).await;
        // Intake stopped: the hook has begun the shutdown (or does so now); dropping the stream ends the pull.
        stop_pulling(&current);
        drop(stream);
        if ended {
            drain.stream_ended();
        }
        if ended || !drain.resumed().await {
            break;
        }
    }
    let summary = drain.wait().await;
    // Every job is settled: the lease management of each stream ends once its acks and nacks are flushed (and the
    // messages it received but never handed out are nacked); bounded by the drain's watchdog.
    for stream in streams {
        stream.shutdown().await;
    }
    drain.exit(&summary)
}

/// The open stream's shutdown token, for the hook that stops it.
type Current = Arc<Mutex<Option<ShutdownToken>>>;

/// Signals the open stream's shutdown, once: its `next` returns `None` from now on and its lease management starts
/// winding down. Its end is awaited at exit.
fn stop_pulling(current: &Current) {
    if let Some(token) = current.lock().unwrap_or_else(PoisonError::into_inner).take() {
        tokio::spawn(async move { token.shutdown().await });
    }
}

/// Takes jobs until intake stops; true when the stream ended on its own.
async fn take_jobs(drain: &Drain, stream: &mut MessageStream, settings: &Arc<Settings>) -> bool {
    while let Some(permit) = drain.next_job(stream.next()).await {
        let Some(permit) = permit.transpose() else { return true };
        let permit = match permit.transpose() {
            Ok(permit) => permit,
            Err(e) => {
                eprintln!("receive: {e}");
                return true;
            }
        };
        // The handler acks or nacks, never both: the job guard decides which, so it is shared with the hand-back.
        let handler = Arc::new(Mutex::new(None::<Handler>));
        let permit = permit.map(|(message, h)| {
            *handler.lock().unwrap_or_else(PoisonError::into_inner) = Some(h);
            message
        });
        let back = handler.clone();
        let (job, message) = permit.start(move || async move {
            let taken = back.lock().unwrap_or_else(PoisonError::into_inner).take();
            taken.map(Handler::nack).is_some()
        });
        let settings = settings.clone();
        tokio::spawn(async move {
            let body = String::from_utf8_lossy(&message.data).into_owned();
            if !common::work(&job.handle(), &settings, &body).await {
                return;
            }
            let ack = || async {
                let taken = handler.lock().unwrap_or_else(PoisonError::into_inner).take();
                match taken {
                    Some(Handler::ExactlyOnce(h)) => h.confirmed_ack().await.is_ok(),
                    Some(h) => {
                        h.ack();
                        true
                    }
                    None => false,
                }
            };
            if job.complete(ack).await == Some(true) {
                common::done(&body);
            }
        });
    }
    false
}
