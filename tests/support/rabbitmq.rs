//! The real RabbitMQ the test command starts: connection settings and throwaway queues.

use std::sync::atomic::{AtomicU32, Ordering};

use lapin::options::{BasicPublishOptions, QueueDeclareOptions, QueuePurgeOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

/// The broker's AMQP URL (`QS_TEST_AMQP_URL` overrides the local default).
pub fn amqp_url() -> String {
    std::env::var("QS_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// The management API (`QS_TEST_RABBITMQ_MANAGEMENT_URL` overrides the local default).
pub fn management_url() -> String {
    std::env::var("QS_TEST_RABBITMQ_MANAGEMENT_URL").unwrap_or_else(|_| "http://guest:guest@127.0.0.1:15672".to_owned())
}

/// A queue that belongs to one test: a unique name, and RabbitMQ deletes it ten minutes after its last use.
pub struct TestQueue {
    pub name: String,
    channel: Channel,
    _connection: Connection,
}

impl TestQueue {
    /// Declares a fresh queue named after `prefix`.
    pub async fn new(prefix: &str) -> TestQueue {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("qs-test-{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .expect("RabbitMQ is up (scripts/test.sh starts it)");
        let channel = connection.create_channel().await.expect("channel");
        let mut arguments = FieldTable::default();
        arguments.insert("x-expires".into(), AMQPValue::LongUInt(600_000));
        channel.queue_declare(name.as_str().into(), QueueDeclareOptions::default(), arguments).await.expect("declare");
        TestQueue { name, channel, _connection: connection }
    }

    /// Publishes `count` messages, numbered from `first`, and waits for the broker to confirm them.
    pub async fn publish(&self, first: usize, count: usize) {
        for i in first..first + count {
            self.channel
                .basic_publish(
                    "".into(),
                    self.name.as_str().into(),
                    BasicPublishOptions::default(),
                    format!("job-{i}").as_bytes(),
                    BasicProperties::default(),
                )
                .await
                .expect("publish");
        }
        // A round trip on the same channel: every publish before it has reached the queue.
        self.ready().await;
    }

    /// Ready messages, by passive declare.
    pub async fn ready(&self) -> u32 {
        let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        self.channel
            .queue_declare(self.name.as_str().into(), options, FieldTable::default())
            .await
            .expect("declare")
            .message_count()
    }

    /// Removes every ready message.
    pub async fn purge(&self) {
        self.channel.queue_purge(self.name.as_str().into(), QueuePurgeOptions::default()).await.expect("purge");
    }

    /// The channel, to consume with.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }
}

/// A call to the management API as its administrator (the user of [`management_url`]): the status and the JSON answer
/// (`null` when there is none).
pub async fn management_api(
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let base = reqwest::Url::parse(&management_url()).expect("a management URL");
    let (user, password) = (base.username().to_owned(), base.password().unwrap_or_default().to_owned());
    let mut url = base.clone();
    url.set_username("").expect("no user");
    url.set_password(None).expect("no password");
    let url = format!("{}{}", url.as_str().trim_end_matches('/'), path);
    let mut request = reqwest::Client::new().request(method, url).basic_auth(user, Some(password));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the management API answers (scripts/test.sh enables it)");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

/// The broker's AMQP URL with another user, password and vhost.
pub fn amqp_url_as(user: &str, password: &str, vhost: &str) -> String {
    let mut url = reqwest::Url::parse(&amqp_url()).expect("an AMQP URL");
    url.set_username(user).expect("a user");
    url.set_password(Some(password)).expect("a password");
    url.set_path(&format!("/{}", percent_encode(vhost)));
    url.to_string()
}

/// The management URL with another user and password.
pub fn management_url_as(user: &str, password: &str) -> String {
    let mut url = reqwest::Url::parse(&management_url()).expect("a management URL");
    url.set_username(user).expect("a user");
    url.set_password(Some(password)).expect("a password");
    url.to_string()
}

fn percent_encode(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A vhost that belongs to one test, open to the administrator; deleted (with its queues and connections) when
/// dropped.
pub struct TestVhost {
    pub name: String,
}

impl TestVhost {
    /// Creates a fresh vhost named after `prefix`.
    pub async fn new(prefix: &str) -> TestVhost {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("qs-test-{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let path = percent_encode(&name);
        let (status, _) = management_api(reqwest::Method::PUT, &format!("/api/vhosts/{path}"), None).await;
        assert!(matches!(status, 201 | 204), "create vhost {name}: HTTP {status}");
        let admin = reqwest::Url::parse(&management_url()).expect("a management URL").username().to_owned();
        let all = serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"});
        let (status, _) =
            management_api(reqwest::Method::PUT, &format!("/api/permissions/{path}/{admin}"), Some(all)).await;
        assert!(matches!(status, 201 | 204), "permissions on {name}: HTTP {status}");
        TestVhost { name }
    }

    /// The AMQP URL of this vhost as the administrator.
    pub fn url(&self) -> String {
        let base = reqwest::Url::parse(&management_url()).expect("a management URL");
        amqp_url_as(base.username(), base.password().unwrap_or_default(), &self.name)
    }

    /// Declares `queue` here with `messages` ready messages in it.
    pub async fn queue(&self, queue: &str, messages: usize) {
        let connection = Connection::connect(&self.url(), ConnectionProperties::default()).await.expect("connect");
        let channel = connection.create_channel().await.expect("channel");
        channel
            .queue_declare(queue.into(), QueueDeclareOptions::default(), FieldTable::default())
            .await
            .expect("declare");
        for i in 0..messages {
            let body = format!("job-{i}");
            channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    BasicProperties::default(),
                )
                .await
                .expect("publish");
        }
        let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        channel.queue_declare(queue.into(), passive, FieldTable::default()).await.expect("every publish arrived");
    }

    /// The connections open to this vhost, as the management API lists them.
    pub async fn connections(&self) -> usize {
        let path = format!("/api/vhosts/{}/connections", percent_encode(&self.name));
        let (status, answer) = management_api(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "list connections of {}", self.name);
        answer.as_array().map_or(0, Vec::len)
    }
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        let path = format!("/api/vhosts/{}", percent_encode(&self.name));
        // Drop cannot await; a thread of its own runs the call to the end.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(management_api(reqwest::Method::DELETE, &path, None));
        })
        .join();
    }
}

/// A broker user that belongs to one test, with no permission anywhere and no management tag; deleted when dropped.
pub struct TestUser {
    pub name: String,
    pub password: String,
}

impl TestUser {
    /// Creates a fresh user named after `prefix`.
    pub async fn new(prefix: &str) -> TestUser {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("qs-test-{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let password = format!("pw-{name}");
        let body = serde_json::json!({"password": password, "tags": ""});
        let (status, _) =
            management_api(reqwest::Method::PUT, &format!("/api/users/{}", percent_encode(&name)), Some(body)).await;
        assert!(matches!(status, 201 | 204), "create user {name}: HTTP {status}");
        TestUser { name, password }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let path = format!("/api/users/{}", percent_encode(&self.name));
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(management_api(reqwest::Method::DELETE, &path, None));
        })
        .join();
    }
}
