//! A transcoding-style RabbitMQ worker that drains on SIGTERM: intake stops at the broker (`basic.cancel`),
//! deliveries pushed but never started go straight back, unfinished jobs are nacked with requeue.
//!
//! Settings and behaviour: `rabbitmq/mod.rs`. Each job "transcodes" for `JOB_MS`.

mod common;
#[path = "rabbitmq/mod.rs"]
mod rabbitmq;

use common::BoxError;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    rabbitmq::run(|job, settings, body| Box::pin(async move { common::work(&job, &settings, &body).await })).await
}
