//! A transcoding-style SQS worker that drains on SIGTERM: it receives only when a job slot is free, long-polls,
//! keeps each job's message invisible while it runs, and hands back (visibility 0) what it did not finish,
//! including whatever a receive under way when intake stopped brings in.
//!
//! `SQS_QUEUE_URL` (and the SDK's own `AWS_ENDPOINT_URL`, `AWS_REGION`, credentials), `SQS_WAIT_SECONDS` (long
//! poll, 0–20, default 20; an idle worker may take that long to exit, so keep it under the grace),
//! `SQS_VISIBILITY_SECONDS` (how long a received message stays invisible, renewed every third of it while its job
//! runs; default 30), plus the common `JOB_MS`, `DRAIN_GRACE_MS`, `DRAIN_FLUSH_MS`, `WORKER_METRICS_ADDR`,
//! `CONCURRENCY`, `DRAIN_TOKEN` / `DRAIN_TOKEN_FILE`, `PANIC_ONCE_ON`.

mod common;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::operation::receive_message::ReceiveMessageOutput;
use aws_sdk_sqs::types::Message;
use queue_scaler::drain::Drain;
use tokio::task::JoinHandle;

use common::{BoxError, Settings};

/// How long to wait before asking an empty queue again when not long-polling.
const EMPTY_BACKOFF: Duration = Duration::from_millis(100);

type Received = Result<ReceiveMessageOutput, BoxError>;

/// The receive under way, if any. An SQS receive is not cancel-safe (messages it took stay invisible until their
/// timeout), so it runs in a task of its own; when intake stops, whoever takes it from here hands back what it got.
type Pending = Arc<Mutex<Option<JoinHandle<Received>>>>;

/// The queue and how to talk to it.
#[derive(Clone)]
struct Queue {
    client: Client,
    url: String,
    wait_seconds: i32,
    visibility_seconds: i32,
}

impl Queue {
    /// Starts a receive of one message: the caller holds the slot it goes to.
    fn receive(&self) -> JoinHandle<Received> {
        let request = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(1)
            .wait_time_seconds(self.wait_seconds)
            .visibility_timeout(self.visibility_seconds);
        tokio::spawn(async move { request.send().await.map_err(|e| BoxError::from(e.into_service_error())) })
    }

    /// Sets a message's visibility: 0 hands it back, more keeps it.
    async fn set_visibility(&self, receipt: String, seconds: i32) -> Result<(), BoxError> {
        let change = self.client.change_message_visibility().queue_url(&self.url).receipt_handle(receipt);
        change.visibility_timeout(seconds).send().await.map_err(|e| e.into_service_error())?;
        Ok(())
    }

    /// Hands back every message of the receive under way (waiting for it: at most its long poll).
    async fn hand_back_pending(&self, pending: &Pending) {
        let taken = pending.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(Ok(Ok(out))) = match taken {
            Some(receive) => Some(receive.await),
            None => None,
        } {
            for receipt in out.messages().iter().filter_map(|m| m.receipt_handle.clone()) {
                if let Err(e) = self.set_visibility(receipt, 0).await {
                    eprintln!("hand back a received message: {e}");
                }
            }
        }
    }
}

/// Puts the receive back where the next call or the hand-back finds it, if the future awaiting it is dropped.
struct Receiving {
    pending: Pending,
    receive: Option<JoinHandle<Received>>,
}

impl Drop for Receiving {
    fn drop(&mut self) {
        if let Some(receive) = self.receive.take() {
            *self.pending.lock().unwrap_or_else(PoisonError::into_inner) = Some(receive);
        }
    }
}

/// The receive under way, or a new one; cancel-safe.
async fn next_message(queue: &Queue, pending: &Pending) -> Option<Message> {
    let under_way = pending.lock().unwrap_or_else(PoisonError::into_inner).take();
    let mut receiving =
        Receiving { pending: pending.clone(), receive: Some(under_way.unwrap_or_else(|| queue.receive())) };
    let received = receiving.receive.as_mut().expect("set above").await;
    receiving.receive = None;
    match received.map_err(BoxError::from).and_then(|r| r) {
        Ok(out) => out.messages.unwrap_or_default().into_iter().next(),
        Err(e) => {
            eprintln!("receive: {e}");
            None
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let settings = Arc::new(Settings::from_env()?);
    let queue = Queue {
        client: Client::new(&aws_config::load_defaults(BehaviorVersion::latest()).await),
        url: common::var("SQS_QUEUE_URL")?,
        wait_seconds: bounded("SQS_WAIT_SECONDS", 20, 0..=20)?,
        visibility_seconds: bounded("SQS_VISIBILITY_SECONDS", 30, 1..=43_200)?,
    };
    let drain = common::drain(&settings, settings.concurrency).await?;
    let pending = Pending::default();
    let (hook_queue, hook_pending) = (queue.clone(), pending.clone());
    drain.on_drain(move || {
        let (queue, pending) = (hook_queue.clone(), hook_pending.clone());
        async move { queue.hand_back_pending(&pending).await }
    });
    drain.ready();
    loop {
        take_jobs(&drain, &queue, &pending, &settings).await;
        // The hook may have run before the receive was put back: hand it back here too (whoever takes it).
        queue.hand_back_pending(&pending).await;
        if !drain.resumed().await {
            break;
        }
    }
    let summary = drain.wait().await;
    drain.exit(&summary)
}

/// A whole number of seconds within `range`, or `default` when unset.
fn bounded(name: &str, default: u64, range: std::ops::RangeInclusive<i32>) -> Result<i32, BoxError> {
    let value = common::number(name, default)?;
    i32::try_from(value)
        .ok()
        .filter(|v| range.contains(v))
        .ok_or_else(|| format!("{name}={value}: must be {} to {} seconds", range.start(), range.end()).into())
}

/// Takes jobs until intake stops.
async fn take_jobs(drain: &Drain, queue: &Queue, pending: &Pending, settings: &Arc<Settings>) {
    while let Some(permit) = drain.next_job(next_message(queue, pending)).await {
        let Some(permit) = permit.transpose() else {
            if queue.wait_seconds == 0 {
                tokio::select! {
                    () = drain.stopping() => {}
                    () = tokio::time::sleep(EMPTY_BACKOFF) => {}
                }
            }
            continue;
        };
        let receipt = permit.message().receipt_handle.clone().unwrap_or_default();
        let back = (queue.clone(), receipt.clone());
        let (job, message) = permit.start(move || async move { back.0.set_visibility(back.1, 0).await });
        let lease = (queue.clone(), receipt.clone());
        let every = Duration::from_secs(u64::try_from(queue.visibility_seconds).unwrap_or(30)) / 3;
        job.keep_alive(every, move || {
            let (queue, receipt) = lease.clone();
            async move {
                if let Err(e) = queue.set_visibility(receipt, queue.visibility_seconds).await {
                    eprintln!("extend visibility: {e}");
                }
            }
        });
        let (queue, settings) = (queue.clone(), settings.clone());
        tokio::spawn(async move {
            let body = message.body.unwrap_or_default();
            if common::work(&job.handle(), &settings, &body).await {
                let delete = || queue.client.delete_message().queue_url(&queue.url).receipt_handle(receipt).send();
                match job.complete(delete).await {
                    Some(Ok(_)) => common::done(&body),
                    Some(Err(e)) => eprintln!("delete: {}", e.into_service_error()),
                    None => {}
                }
            }
        });
    }
}
