//! A transcoding-style Pub/Sub worker that drains on SIGTERM: unfinished jobs are nacked for redelivery.
//!
//! `PUBSUB_PROJECT`, `SUBSCRIPTION` (and `PUBSUB_EMULATOR_HOST` for the emulator), plus the common `JOB_MS`,
//! `DRAIN_GRACE_MS`, `WORKER_METRICS_ADDR`, `CONCURRENCY`.
//!
//! An ack on an at-least-once subscription is fire-and-forget in Google's client; only exactly-once subscriptions
//! confirm one. So `done` follows a confirmed ack where the subscription offers it, and the handed-over ack
//! otherwise, and the stream is shut down before exit so every queued ack and nack reaches the service.

mod common;

use std::sync::{Arc, Mutex};

use google_cloud_auth::credentials::anonymous;
use google_cloud_pubsub::client::Subscriber;
use google_cloud_pubsub::subscriber::ShutdownBehavior;
use google_cloud_pubsub::subscriber::handler::Handler;

use common::BoxError;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let settings = common::Settings::from_env()?;
    let (project, subscription) = (common::var("PUBSUB_PROJECT")?, common::var("SUBSCRIPTION")?);
    let drain = common::drain(&settings).await?;
    let mut client = Subscriber::builder();
    if let Ok(host) = std::env::var("PUBSUB_EMULATOR_HOST") {
        // The emulator speaks plain HTTP/2 and must never see real credentials.
        client = client.with_endpoint(format!("http://{host}")).with_credentials(anonymous::Builder::new().build());
    }
    let client = client.build().await?;
    let mut stream = client
        .subscribe(format!("projects/{project}/subscriptions/{subscription}"))
        .set_max_outstanding_messages(i64::try_from(settings.concurrency)?)
        // Messages leased to this client but never handed to the loop go back at once, not at lease expiry.
        .set_shutdown_behavior(ShutdownBehavior::NackImmediately)
        .build();
    let shutdown = stream.shutdown_token();
    while let Some(permit) = drain.next_job(stream.next()).await {
        let Some(permit) = permit.transpose() else { break };
        let permit = match permit.transpose() {
            Ok(permit) => permit,
            Err(e) => {
                eprintln!("receive: {e}");
                break;
            }
        };
        // The handler acks or nacks, never both: the job guard decides which, so it is shared with the hand-back.
        let handler = Arc::new(Mutex::new(None::<Handler>));
        let permit = permit.map(|(message, h)| {
            *handler.lock().expect("handler lock") = Some(h);
            message
        });
        let back = handler.clone();
        let (job, message) = permit.start(move || async move {
            let taken = back.lock().expect("handler lock").take();
            if let Some(h) = taken {
                h.nack();
            }
        });
        let job_time = settings.job_time;
        tokio::spawn(async move {
            let body = String::from_utf8_lossy(&message.data).into_owned();
            if !common::work(&job, job_time).await {
                return;
            }
            let ack = async {
                let taken = handler.lock().expect("handler lock").take();
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
    let summary = drain.wait().await;
    // Flushes queued acks and nacks, and nacks what was leased but never started.
    shutdown.shutdown().await;
    common::summary(&summary);
    Ok(())
}
