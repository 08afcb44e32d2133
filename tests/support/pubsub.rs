//! The real Pub/Sub emulator the test command starts: throwaway topics and subscriptions, messages published with
//! `google-cloud-pubsub`, acked as a worker would, and the emulator asked what is left.
//!
//! What is left comes from the emulator itself. Pub/Sub has no call that counts a subscription's backlog, and a
//! ledger of "published minus acked" kept by the test would only repeat the test's own arithmetic, so
//! [`TestSubscription::backlog`] pulls every message the emulator would deliver now (until a pull comes back empty),
//! notes how many there were and the oldest publish time, then nacks them all so they wait again. It cannot see a
//! message leased to a live subscriber, so measure with none running.
//!
//! Acking goes through the emulator's unary `Pull` and `Acknowledge` (REST), not `google-cloud-pubsub`'s
//! `Subscriber`: that client only has streaming pull, and the emulator (0.8.20, from gcloud 528) mishandles a
//! streaming pull that its client cancels. Its log shows a `NoSuchMethodError` in grpc's `ServerImpl` on the
//! RST_STREAM, the dead stream stays registered, and it swallows every message nacked on that subscription
//! afterwards, so counts taken after a `Subscriber` ran come out short (measured here: 15 left, then 5 after 5 more
//! were published).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::SystemTime;

use google_cloud_auth::credentials::{Credentials, anonymous};
use google_cloud_pubsub::client::{Publisher, SubscriptionAdmin, TopicAdmin};
use google_cloud_pubsub::model::Message;
use google_cloud_wkt::Timestamp;
use serde_json::{Value, json};

/// The project every test topic and subscription lives in.
pub const PROJECT: &str = "qs-test";

/// `host:port` of the emulator (`PUBSUB_EMULATOR_HOST`, as Google's tools name it, else the local default).
pub fn emulator_host() -> String {
    std::env::var("PUBSUB_EMULATOR_HOST").unwrap_or_else(|_| "127.0.0.1:8085".to_owned())
}

/// `http://host:port` of the emulator, for a client's endpoint (the source's `pubsubEndpoint`).
pub fn emulator_url() -> String {
    format!("http://{}", emulator_host())
}

/// The emulator wants no credentials, and real ones must never be sent to it.
fn no_credentials() -> Credentials {
    anonymous::Builder::new().build()
}

/// What the emulator still holds for a subscription.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backlog {
    /// Messages it would deliver now.
    pub undelivered: usize,
    /// When the oldest of them was published.
    pub oldest_publish_time: Option<SystemTime>,
}

/// A topic with one subscription that belongs to one test (unique names; the emulator keeps them in memory).
pub struct TestSubscription {
    /// The subscription id.
    pub id: String,
    topic: String,
    http: reqwest::Client,
}

impl TestSubscription {
    /// Creates a topic and a subscription named after `prefix`.
    pub async fn new(prefix: &str) -> TestSubscription {
        // Long enough that counting never sees a message come back before it is nacked.
        TestSubscription::with_ack_deadline(prefix, 60).await
    }

    /// As [`TestSubscription::new`], with the subscription's ack deadline: how long a message leased to a
    /// subscriber that went away waits before it is delivered again.
    pub async fn with_ack_deadline(prefix: &str, seconds: i32) -> TestSubscription {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let id = format!("qs-{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let topic = format!("projects/{PROJECT}/topics/{id}");
        let topics = TopicAdmin::builder()
            .with_endpoint(emulator_url())
            .with_credentials(no_credentials())
            .build()
            .await
            .expect("a topic admin client");
        topics.create_topic().set_name(&topic).send().await.expect("the emulator is up (scripts/test.sh starts it)");
        let subscriptions = SubscriptionAdmin::builder()
            .with_endpoint(emulator_url())
            .with_credentials(no_credentials())
            .build()
            .await
            .expect("a subscription admin client");
        subscriptions
            .create_subscription()
            .set_name(format!("projects/{PROJECT}/subscriptions/{id}"))
            .set_topic(&topic)
            .set_ack_deadline_seconds(seconds)
            .send()
            .await
            .expect("create the subscription");
        TestSubscription { id, topic, http: reqwest::Client::new() }
    }

    /// `projects/P/subscriptions/S`.
    pub fn name(&self) -> String {
        format!("projects/{PROJECT}/subscriptions/{}", self.id)
    }

    /// Publishes `count` messages and waits until the emulator has accepted every one.
    pub async fn publish(&self, count: usize) {
        let publisher = Publisher::builder(&self.topic)
            .with_endpoint(emulator_url())
            .with_credentials(no_credentials())
            .build()
            .await
            .expect("a publisher");
        let sent: Vec<_> = (0..count).map(|i| publisher.publish(Message::new().set_data(format!("job-{i}")))).collect();
        for message in sent {
            message.await.expect("the emulator accepted the message");
        }
    }

    /// Pulls `count` messages and acks them, as a worker that finished them would.
    pub async fn ack(&self, count: usize) {
        let mut acked = 0;
        while acked < count {
            let pulled = self.call("pull", json!({"maxMessages": count - acked, "returnImmediately": true})).await;
            let ack_ids: Vec<String> = pulled["receivedMessages"]
                .as_array()
                .map(|received| received.iter().filter_map(|m| m["ackId"].as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            assert!(!ack_ids.is_empty(), "only {acked} of {count} messages to ack");
            acked += ack_ids.len();
            self.call("acknowledge", json!({"ackIds": ack_ids})).await;
        }
    }

    /// Asks the emulator what it still holds: pull everything it would deliver, then nack it all.
    pub async fn backlog(&self) -> Backlog {
        let mut ack_ids = Vec::new();
        let mut oldest: Option<SystemTime> = None;
        loop {
            let pulled = self.call("pull", json!({"maxMessages": 1000, "returnImmediately": true})).await;
            let received = pulled["receivedMessages"].as_array().cloned().unwrap_or_default();
            if received.is_empty() {
                break;
            }
            for message in received {
                ack_ids.push(message["ackId"].as_str().expect("an ack id").to_owned());
                let published = message["message"]["publishTime"].as_str().expect("a publish time");
                let published: SystemTime = Timestamp::try_from(published)
                    .ok()
                    .and_then(|t| SystemTime::try_from(t).ok())
                    .expect("an RFC 3339 publish time");
                oldest = Some(oldest.map_or(published, |o| o.min(published)));
            }
        }
        if !ack_ids.is_empty() {
            self.call("modifyAckDeadline", json!({"ackIds": ack_ids, "ackDeadlineSeconds": 0})).await;
        }
        Backlog { undelivered: ack_ids.len(), oldest_publish_time: oldest }
    }

    /// `POST /v1/projects/P/subscriptions/S:verb` on the emulator's REST API.
    async fn call(&self, verb: &str, body: Value) -> Value {
        let url = format!("{}/v1/{}:{verb}", emulator_url(), self.name());
        let response = self.http.post(&url).json(&body).send().await.expect("the emulator answers");
        assert!(response.status().is_success(), "{verb}: HTTP {}", response.status());
        response.json().await.expect("JSON from the emulator")
    }
}
