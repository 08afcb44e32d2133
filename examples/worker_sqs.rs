//! A transcoding-style SQS worker that drains on SIGTERM: unfinished jobs get visibility 0 so another worker takes
//! them at once.
//!
//! `SQS_QUEUE_URL` (and the SDK's own `AWS_ENDPOINT_URL`, `AWS_REGION`, credentials), plus the common `JOB_MS`,
//! `DRAIN_GRACE_MS`, `WORKER_METRICS_ADDR`, `CONCURRENCY`.

mod common;

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::operation::receive_message::ReceiveMessageOutput;
use tokio::task::JoinHandle;

use common::BoxError;

/// How long to wait before asking an empty queue again.
const EMPTY_BACKOFF: Duration = Duration::from_millis(100);

type Received = Result<ReceiveMessageOutput, BoxError>;

/// A receive of one message, in a task of its own: an SQS receive is not cancel-safe (messages it took are
/// invisible until their timeout), so the loop never drops one midway; it awaits the handle and hands back.
fn receive(client: &Client, url: &str) -> JoinHandle<Received> {
    let request = client.receive_message().queue_url(url).max_number_of_messages(1).wait_time_seconds(0);
    tokio::spawn(async move { request.send().await.map_err(|e| BoxError::from(e.into_service_error())) })
}

async fn make_visible(client: Client, url: String, receipt: String) {
    if let Err(e) =
        client.change_message_visibility().queue_url(url).receipt_handle(receipt).visibility_timeout(0).send().await
    {
        eprintln!("change visibility: {}", e.into_service_error());
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let settings = common::Settings::from_env()?;
    let url = common::var("SQS_QUEUE_URL")?;
    let drain = common::drain(&settings).await?;
    let client = Client::new(&aws_config::load_defaults(BehaviorVersion::latest()).await);
    let mut pending = receive(&client, &url);
    while let Some(permit) = drain.next_job(&mut pending).await {
        pending = receive(&client, &url);
        let message = match permit.map(|joined| joined.map_err(BoxError::from).and_then(|r| r)).transpose() {
            Ok(permit) => permit.map(|out| out.messages.unwrap_or_default().into_iter().next()).transpose(),
            Err(e) => {
                eprintln!("receive: {e}");
                None
            }
        };
        let Some(permit) = message else {
            tokio::select! {
                () = drain.stopping() => {}
                () = tokio::time::sleep(EMPTY_BACKOFF) => {}
            }
            continue;
        };
        let receipt = permit.message().receipt_handle.clone().unwrap_or_default();
        let (back_client, back_url, back_receipt) = (client.clone(), url.clone(), receipt.clone());
        let (job, message) = permit.start(move || make_visible(back_client, back_url, back_receipt));
        let (client, url, job_time) = (client.clone(), url.clone(), settings.job_time);
        tokio::spawn(async move {
            let body = message.body.unwrap_or_default();
            if common::work(&job, job_time).await {
                let delete = client.delete_message().queue_url(&url).receipt_handle(receipt).send();
                match job.complete(delete).await {
                    Some(Ok(_)) => common::done(&body),
                    Some(Err(e)) => eprintln!("delete: {}", e.into_service_error()),
                    None => {}
                }
            }
        });
    }
    let summary = drain.wait().await;
    // The receive under way when the drain began may have taken a message: give it straight back.
    if let Ok(Ok(out)) = pending.await {
        for receipt in out.messages().iter().filter_map(|m| m.receipt_handle.clone()) {
            make_visible(client.clone(), url.clone(), receipt).await;
        }
    }
    common::summary(&summary);
    Ok(())
}
