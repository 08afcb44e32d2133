//! moto's SQS, which the test command starts on 127.0.0.1:4566: dummy credentials and throwaway queues; and a moto
//! server of a test's own, for a test that kills it (the shared one serves every other test).

use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

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
        let name = format!("qs-test-{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        TestQueue::named(&endpoint(), &name).await
    }

    /// Creates the queue `name` on the moto server at `endpoint` (or finds it, if it exists).
    pub async fn named(endpoint: &str, name: &str) -> TestQueue {
        use_dummy_credentials();
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(endpoint)
            .load()
            .await;
        let client = Client::new(&shared);
        let created = client.create_queue().queue_name(name).send().await.expect("moto is up (scripts/test.sh)");
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

/// A `moto_server` process on a free port, for one test. Dropping it kills the process.
pub struct MotoServer {
    port: u16,
    child: Option<Child>,
}

impl MotoServer {
    /// Starts a server on a free port and waits until it answers.
    pub async fn start() -> MotoServer {
        let mut server = MotoServer { port: super::agent::free_port(), child: None };
        server.restart().await;
        server
    }

    /// The port the server listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the server listens, as an endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILLs the process, as a crash would: no goodbye on open connections, and all its queues are lost.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Best effort: the process may already be gone.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty, as moto keeps nothing) and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server is installed (scripts/peers.sh)");
        self.child = Some(child);
        let probe = format!("{}/moto-api/", self.endpoint());
        super::eventually(Duration::from_secs(30), "moto to answer", || async {
            reqwest::get(&probe).await.ok().filter(|r| r.status().is_success())
        })
        .await;
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.kill();
    }
}
