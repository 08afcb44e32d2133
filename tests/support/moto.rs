//! moto's SQS, which the test command starts on 127.0.0.1:4566: dummy credentials and throwaway queues.

use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_sqs::Client;

/// The region every test queue lives in.
pub const REGION: &str = "us-east-1";

/// Credentials moto accepts (it checks signatures are well formed, not who signed).
pub const CREDENTIALS: [(&str, &str); 2] =
    [("AWS_ACCESS_KEY_ID", "qs-test-access-key"), ("AWS_SECRET_ACCESS_KEY", "qs-test-secret-key")];

/// moto's endpoint (`QS_TEST_MOTO_URL` overrides the local default).
pub fn endpoint() -> String {
    std::env::var("QS_TEST_MOTO_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".to_owned())
}

/// Puts the dummy credentials where the AWS SDK's default chain finds them, as a pod's environment would.
/// Variables already set are kept.
pub fn use_dummy_credentials() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (name, value) in CREDENTIALS {
            if std::env::var_os(name).is_none() {
                // SAFETY: called at the start of a test, before any SDK client or other thread of this test reads the
                // environment; nextest runs every test in a process of its own.
                unsafe { std::env::set_var(name, value) };
            }
        }
    });
}

/// A queue that belongs to one test, and a client to fill it with.
pub struct TestQueue {
    pub url: String,
    client: Client,
}

impl TestQueue {
    /// Creates a fresh queue named after `prefix`.
    pub async fn new(prefix: &str) -> TestQueue {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        use_dummy_credentials();
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(endpoint())
            .load()
            .await;
        let client = Client::new(&shared);
        let name = format!("qs-test-{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let created = client.create_queue().queue_name(&name).send().await.expect("moto is up (scripts/test.sh)");
        TestQueue { url: created.queue_url().expect("a queue URL").to_owned(), client }
    }

    /// Sends `count` messages, deliverable after `delay_seconds`.
    pub async fn send(&self, count: usize, delay_seconds: i32) {
        for i in 0..count {
            self.client
                .send_message()
                .queue_url(&self.url)
                .message_body(format!("job-{i}"))
                .delay_seconds(delay_seconds)
                .send()
                .await
                .expect("send");
        }
    }

    /// Receives `count` messages without deleting them: they stay in flight for ten minutes.
    pub async fn receive(&self, count: usize) {
        let mut received = 0;
        while received < count {
            let batch = self
                .client
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(i32::try_from((count - received).min(10)).expect("at most 10"))
                .visibility_timeout(600)
                .send()
                .await
                .expect("receive");
            let got = batch.messages().len();
            assert!(got > 0, "a message to receive ({received} of {count} so far)");
            received += got;
        }
    }

    /// Deletes the queue.
    pub async fn delete(&self) {
        self.client.delete_queue().queue_url(&self.url).send().await.expect("delete queue");
    }
}
