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
