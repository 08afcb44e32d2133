//! A transcoding-style RabbitMQ worker that drains on SIGTERM: unfinished jobs are nacked with requeue.
//!
//! `AMQP_URL`, `QUEUE`, plus the common `JOB_MS`, `DRAIN_GRACE_MS`, `WORKER_METRICS_ADDR`, `CONCURRENCY`.

mod common;

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

use common::BoxError;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let settings = common::Settings::from_env()?;
    let (url, queue) = (common::var("AMQP_URL")?, common::var("QUEUE")?);
    let drain = common::drain(&settings).await?;
    let connection = Connection::connect(&url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    // The broker pushes no more than the worker may hold, so nothing waits unseen in this process.
    channel.basic_qos(u16::try_from(settings.concurrency)?, BasicQosOptions::default()).await?;
    let mut consumer = channel
        .basic_consume(queue.as_str().into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await?;
    while let Some(permit) = drain.next_job(consumer.next()).await {
        let Some(permit) = permit.transpose() else { break };
        let permit = match permit.transpose() {
            Ok(permit) => permit,
            Err(e) => {
                eprintln!("consume: {e}");
                break;
            }
        };
        let acker = permit.message().acker.clone();
        let (job, delivery) = permit.start(move || async move {
            let requeue = BasicNackOptions { requeue: true, ..BasicNackOptions::default() };
            if let Err(e) = acker.nack(requeue).await {
                // The connection closes on exit and the broker requeues whatever is unacked anyway.
                eprintln!("nack: {e}");
            }
        });
        let job_time = settings.job_time;
        tokio::spawn(async move {
            let body = String::from_utf8_lossy(&delivery.data).into_owned();
            if common::work(&job, job_time).await
                && let Some(Ok(true)) = job.complete(delivery.ack(BasicAckOptions::default())).await
            {
                common::done(&body);
            }
        });
    }
    let summary = drain.wait().await;
    // Deliveries prefetched but never started go back to the queue when the connection closes.
    connection.close(200, "drained".into()).await?;
    common::summary(&summary);
    Ok(())
}
