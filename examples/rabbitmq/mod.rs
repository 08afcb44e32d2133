//! A RabbitMQ worker's life around its jobs, shared by the examples that consume RabbitMQ: intake stops at the
//! broker (`basic.cancel`) on a drain or `POST /quiet`, deliveries pushed but never started go straight back,
//! unfinished jobs are nacked with requeue, and a resumed worker consumes again.
//!
//! `AMQP_URL`, `QUEUE`, plus the common `JOB_MS`, `DRAIN_GRACE_MS`, `DRAIN_FLUSH_MS`, `WORKER_METRICS_ADDR`,
//! `CONCURRENCY`, `DRAIN_TOKEN` / `DRAIN_TOKEN_FILE`, `PANIC_ONCE_ON`.
//!
//! RabbitMQ has no per-delivery lease to extend: its `consumer_timeout` closes the channel when a delivery stays
//! unacked longer (30 min by default). Set it above the longest job; if it fires, the stream ends and the worker
//! exits with the drain's `EXIT_STREAM_ENDED`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, Consumer};
use queue_scaler::drain::{Drain, JobHandle};

use crate::common::{self, BoxError, Settings};

/// What a job does with its body: true when finished (then it is acked), false when it stopped because it was
/// handed back.
pub type Work = fn(JobHandle, Arc<Settings>, String) -> Pin<Box<dyn Future<Output = bool> + Send>>;

const REQUEUE: BasicNackOptions = BasicNackOptions { requeue: true, multiple: false };

/// Runs the worker until it has drained, then exits the process.
pub async fn run(work: Work) -> Result<(), BoxError> {
    let settings = Arc::new(Settings::from_env()?);
    let (url, queue) = (common::var("AMQP_URL")?, common::var("QUEUE")?);
    let drain = common::drain(&settings, settings.concurrency).await?;
    let connection = Connection::connect(&url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    // The broker pushes no more than the worker may hold, so nothing waits unseen in this process.
    channel.basic_qos(u16::try_from(settings.concurrency)?, BasicQosOptions::default()).await?;
    let tag = format!("worker-{}", std::process::id());
    stop_at_the_broker(&drain, &channel, &tag);
    loop {
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        drain.ready();
        let ended = take_jobs(&drain, consumer, &settings, work).await;
        if ended {
            drain.stream_ended();
        }
        if ended || !drain.resumed().await {
            break;
        }
    }
    let summary = drain.wait().await;
    // With a broker that stopped answering this waits for ever: the drain's watchdog bounds it.
    if let Err(e) = connection.close(200, "drained".into()).await {
        eprintln!("close: {e}");
    }
    drain.exit(&summary)
}

/// On a drain or `POST /quiet`, cancel the consumer: RabbitMQ stops pushing at once and no longer counts this
/// worker among the queue's consumers.
fn stop_at_the_broker(drain: &Drain, channel: &Channel, tag: &str) {
    let (channel, tag) = (channel.clone(), tag.to_owned());
    drain.on_drain(move || {
        let (channel, tag) = (channel.clone(), tag.clone());
        async move {
            if let Err(e) = channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await {
                eprintln!("cancel: {e}");
            }
        }
    });
}

/// Takes jobs until intake stops, then hands back what the broker pushed but no job started; true when the
/// broker ended the stream (a closed channel or connection, `consumer_timeout`).
async fn take_jobs(drain: &Drain, mut consumer: Consumer, settings: &Arc<Settings>, work: Work) -> bool {
    while let Some(permit) = drain.next_job(consumer.next()).await {
        let Some(permit) = permit.transpose() else { return true };
        let permit = match permit.transpose() {
            Ok(permit) => permit,
            Err(e) => {
                eprintln!("consume: {e}");
                return true;
            }
        };
        let acker = permit.message().acker.clone();
        let (job, delivery) =
            permit.start(move || async move { acker.nack(REQUEUE).await.inspect_err(|e| eprintln!("nack: {e}")) });
        let settings = settings.clone();
        tokio::spawn(async move {
            let body = String::from_utf8_lossy(&delivery.data).into_owned();
            if work(job.handle(), settings, body.clone()).await
                && let Some(Ok(true)) = job.complete(|| delivery.ack(BasicAckOptions::default())).await
            {
                common::done(&body);
            }
        });
    }
    // Intake stopped and the consumer is being cancelled: its stream ends at the broker's cancel-ok, after the
    // deliveries already pushed, which go straight back to the queue.
    while let Some(Ok(delivery)) = consumer.next().await {
        if let Err(e) = delivery.nack(REQUEUE).await {
            eprintln!("nack an unstarted delivery: {e}");
        }
    }
    false
}
