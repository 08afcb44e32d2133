//! The agent's footprint against every real peer: resident memory, threads, CPU and the reads it sends, with 1, 10
//! and 1,000 targets of each source type on one broker.
//!
//! `cargo bench --bench footprint [-- SOURCE… COUNT… [--seconds N] [--slow-poll S]]`, where SOURCE is `fixed`,
//! `rabbitmq` (through the management API), `rabbitmq-amqp` (passive declares), `kafka`, `sqs`, `pubsub` or
//! `prometheus` (default: all of them) and COUNT a number of targets (default: 1 10 1000). For each, the release
//! binary runs against the project's fake Kubernetes API with one Deployment per target and one source per target,
//! each on a queue, group, subscription or query of its own, all on one broker:
//!
//! * `rabbitmq`, `rabbitmq-amqp`: the shared RabbitMQ (127.0.0.1:5672, management on 15672), in a vhost of the bench's
//!   own, deleted afterwards;
//! * `kafka`: librdkafka's mock cluster (three brokers) in this process, a topic of four partitions and a group
//!   per target (`offsetResetPolicy: earliest`);
//! * `sqs`: a moto server of the bench's own;
//! * `pubsub`: subscriptions in the shared Pub/Sub emulator (for the existence check), their Cloud Monitoring
//!   numbers from the project's fake Monitoring API in this process (the emulator has no Monitoring API);
//! * `prometheus`: a real Prometheus scraping an exporter in this process, one series and one query per target;
//! * `fixed`: no broker at all, the agent's own cost.
//!
//! Every backlog is 20 at 10 per worker, so every Deployment goes from 1 to 2 replicas; once all have, the steady
//! state is measured over the window (default 15 s) from `/proc`: RSS (VmRSS) and of it the anonymous memory
//! (RssAnon, the agent's own; the rest is clean pages of the binary's code), threads, CPU as (utime + stime) over the
//! window, and the reads sent to the peer per second — counted by a proxy in front of it (HTTP requests, AMQP
//! `queue.declare` frames) or by the mock cluster's request tracking (every Kafka request). Then target 0's backlog
//! rises to 50, and the time from the peer showing the change (for the management API and Prometheus, which sample,
//! from when they first answer the new number) to the scale write at the fake API is the "scale-up" column: within
//! one poll plus the write, the agent decides within one poll of its data changing.
//!
//! `QS_AGENT_BINARY` runs another build of the agent (say, an older one) through the same bench;
//! `QS_BENCH_THREADS=1` prints the names of the agent's threads at the end of each window.

#[allow(dead_code, unused_imports)]
#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use futures::{StreamExt, stream};
use rdkafka::ClientConfig;
use rdkafka::bindings as rd;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use queue_scaler::source::pubsub::{BACKLOG_METRIC, OLDEST_AGE_METRIC};
use support::kube_api::FakeKube;
use support::monitoring::FakeMonitoring;
use support::prometheus::{Exporter, Prometheus};
use support::rabbitmq::{TestVhost, management_api};

const NS: &str = "bench";

/// Every backlog at the start: 2 replicas at 10 per worker.
const BACKLOG: usize = 20;
/// Target 0's backlog after the change: 5 replicas (4 for Kafka, capped at its four partitions).
const RAISED: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Fixed,
    RabbitMq,
    RabbitMqAmqp,
    Kafka,
    Sqs,
    PubSub,
    Prometheus,
}

impl Kind {
    const ALL: [Kind; 7] =
        [Kind::Fixed, Kind::RabbitMq, Kind::RabbitMqAmqp, Kind::Kafka, Kind::Sqs, Kind::PubSub, Kind::Prometheus];

    fn name(self) -> &'static str {
        match self {
            Kind::Fixed => "fixed",
            Kind::RabbitMq => "rabbitmq",
            Kind::RabbitMqAmqp => "rabbitmq-amqp",
            Kind::Kafka => "kafka",
            Kind::Sqs => "sqs",
            Kind::PubSub => "pubsub",
            Kind::Prometheus => "prometheus",
        }
    }

    /// What the bench calls the peer in its table.
    fn peer(self) -> &'static str {
        match self {
            Kind::Fixed => "none",
            Kind::RabbitMq => "RabbitMQ 3.10, management API",
            Kind::RabbitMqAmqp => "RabbitMQ 3.10, AMQP",
            Kind::Kafka => "librdkafka mock cluster, 3 brokers",
            Kind::Sqs => "moto",
            Kind::PubSub => "fake Monitoring + Pub/Sub emulator",
            Kind::Prometheus => "Prometheus 2.42",
        }
    }

    /// The replicas target 0 reaches once its backlog is [`RAISED`].
    fn raised_replicas(self) -> u32 {
        if self == Kind::Kafka { 4 } else { 5 }
    }
}

/// Counts requests on their way to a peer: HTTP requests, or AMQP `queue.declare` methods.
#[derive(Clone, Copy)]
enum Protocol {
    Http,
    Amqp,
}

/// A TCP proxy in front of a peer that counts the reads going through it.
struct CountingProxy {
    port: u16,
    count: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    async fn start(target: SocketAddr, protocol: Protocol) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a proxy");
        let port = listener.local_addr().expect("an address").port();
        let count = Arc::new(AtomicU64::new(0));
        let counted = count.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(forward(client, target, protocol, counted.clone()));
            }
        });
        CountingProxy { port, count, task }
    }

    fn reads(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(client: TcpStream, target: SocketAddr, protocol: Protocol, count: Arc<AtomicU64>) {
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let upstream = async move {
        let mut seen = Vec::new();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = match from_client.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            seen.extend_from_slice(&buffer[..n]);
            count.fetch_add(counted(protocol, &mut seen), Ordering::Relaxed);
            if to_server.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
        let _ = to_server.shutdown().await;
    };
    let downstream = async move {
        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
        let _ = to_client.shutdown().await;
    };
    tokio::join!(upstream, downstream);
}

/// The reads complete in `seen`; what may be the start of the next stays in it.
fn counted(protocol: Protocol, seen: &mut Vec<u8>) -> u64 {
    match protocol {
        Protocol::Http => {
            // Every HTTP/1.1 request line ends so, and no header line does.
            const MARK: &[u8] = b" HTTP/1.1\r\n";
            let n = seen.windows(MARK.len()).filter(|w| *w == MARK).count() as u64;
            let keep = seen.len().min(MARK.len() - 1);
            seen.drain(..seen.len() - keep);
            n
        }
        Protocol::Amqp => {
            let mut n = 0;
            let mut at = 0;
            if seen.starts_with(b"AMQP") {
                if seen.len() < 8 {
                    return 0;
                }
                at = 8;
            }
            // Frames: type (1), channel (2), size (4), payload, 0xCE. A method frame (1) of class 50, method 10 is
            // queue.declare.
            while seen.len() >= at + 7 {
                let size = u32::from_be_bytes([seen[at + 3], seen[at + 4], seen[at + 5], seen[at + 6]]) as usize;
                if seen.len() < at + 7 + size + 1 {
                    break;
                }
                let payload = &seen[at + 7..at + 7 + size];
                if seen[at] == 1 && payload.starts_with(&[0, 50, 0, 10]) {
                    n += 1;
                }
                at += 7 + size + 1;
            }
            seen.drain(..at);
            n
        }
    }
}

/// librdkafka's mock cluster, made through a producer so that its requests can be tracked.
struct MockKafka {
    producer: BaseProducer,
    brokers: String,
}

// SAFETY: the mock cluster pointer is only used through librdkafka's thread-safe mock API while `producer` lives.
unsafe impl Send for MockKafka {}
unsafe impl Sync for MockKafka {}

impl MockKafka {
    fn new(topics: usize) -> MockKafka {
        let producer: BaseProducer = ClientConfig::new()
            .set("test.mock.num.brokers", "3")
            .set("linger.ms", "5")
            .create()
            .expect("a producer with a mock cluster");
        let mock = producer.client().mock_cluster().expect("the mock cluster");
        for i in 0..topics {
            mock.create_topic(&format!("bench-{i}"), 4, 1).expect("create a topic");
        }
        let brokers = mock.bootstrap_servers();
        drop(mock);
        MockKafka { producer, brokers }
    }

    fn cluster(&self) -> *mut rd::rd_kafka_mock_cluster_t {
        // SAFETY: the producer owns the mock cluster and outlives every use of the pointer.
        unsafe { rd::rd_kafka_handle_mock_cluster(self.producer.client().native_ptr()) }
    }

    /// Produces `per_partition` messages to each partition of topic `i`.
    fn produce(&self, i: usize, per_partition: usize) {
        let topic = format!("bench-{i}");
        for partition in 0..4 {
            for _ in 0..per_partition {
                let mut record = BaseRecord::<(), str>::to(&topic).partition(partition).payload("job");
                while let Err((_, back)) = self.producer.send(record) {
                    self.producer.poll(Duration::from_millis(10));
                    record = back;
                }
            }
        }
    }

    fn flush(&self) {
        self.producer.flush(Duration::from_secs(60)).expect("every message delivered");
    }

    fn start_tracking(&self) {
        // SAFETY: see `cluster`.
        unsafe { rd::rd_kafka_mock_start_request_tracking(self.cluster()) };
    }

    /// The requests the cluster received since the last call, forgotten.
    fn take_requests(&self) -> u64 {
        // SAFETY: see `cluster`; the array is destroyed with the count it was returned with.
        unsafe {
            let mut count = 0;
            let requests = rd::rd_kafka_mock_get_requests(self.cluster(), &mut count);
            if !requests.is_null() {
                if std::env::var_os("QS_BENCH_DEBUG").is_some() && count > 0 {
                    let mut kinds = std::collections::BTreeMap::new();
                    for i in 0..count {
                        *kinds.entry(rd::rd_kafka_mock_request_api_key(*requests.add(i))).or_insert(0) += 1;
                    }
                    eprintln!("kafka requests by API key: {kinds:?}");
                }
                rd::rd_kafka_mock_request_destroy_array(requests, count);
            }
            rd::rd_kafka_mock_clear_requests(self.cluster());
            count as u64
        }
    }
}

/// A peer set up with one queue (group, subscription, query) per target.
enum Peer {
    Fixed,
    RabbitMq { vhost: TestVhost, proxy: CountingProxy, management: bool },
    Kafka { cluster: MockKafka, taken: AtomicU64 },
    Sqs { _server: support::moto::MotoServer, client: aws_sdk_sqs::Client, urls: Vec<String>, proxy: CountingProxy },
    PubSub { monitoring: FakeMonitoring, ids: Vec<String>, emulator: CountingProxy },
    Prometheus { exporter: Exporter, server: Prometheus, proxy: CountingProxy, targets: usize },
}

fn address(url: &str) -> SocketAddr {
    let url = reqwest::Url::parse(url).expect("a URL");
    let host = url.host_str().expect("a host");
    let port = url.port_or_known_default().unwrap_or(5672);
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port)).expect("resolve").next().expect("an address")
}

fn queue_name(i: usize) -> String {
    format!("bench-{i}")
}

fn exposition(targets: usize, first: usize) -> String {
    let mut text = String::from("# HELP qs_bench_backlog A queue's backlog.\n# TYPE qs_bench_backlog gauge\n");
    for i in 0..targets {
        text.push_str(&format!("qs_bench_backlog{{queue=\"{i}\"}} {}\n", if i == 0 { first } else { BACKLOG }));
    }
    text
}

async fn prometheus_value(server: &Prometheus, query: &str) -> Option<f64> {
    let answer: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/v1/query", server.url))
        .query(&[("query", query)])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    answer["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

async fn pubsub_admins() -> (google_cloud_pubsub::client::TopicAdmin, google_cloud_pubsub::client::SubscriptionAdmin) {
    let credentials = || google_cloud_auth::credentials::anonymous::Builder::new().build();
    let topics = google_cloud_pubsub::client::TopicAdmin::builder()
        .with_endpoint(support::pubsub::emulator_url())
        .with_credentials(credentials())
        .build()
        .await
        .expect("a topic admin");
    let subscriptions = google_cloud_pubsub::client::SubscriptionAdmin::builder()
        .with_endpoint(support::pubsub::emulator_url())
        .with_credentials(credentials())
        .build()
        .await
        .expect("a subscription admin");
    (topics, subscriptions)
}

/// Runs `work` on every index, 16 at a time.
async fn each<F, Fut>(count: usize, work: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    stream::iter(0..count).for_each_concurrent(16, work).await;
}

impl Peer {
    async fn start(kind: Kind, targets: usize) -> Peer {
        match kind {
            Kind::Fixed => Peer::Fixed,
            Kind::RabbitMq | Kind::RabbitMqAmqp => {
                let vhost = TestVhost::new("bench").await;
                let connection = lapin::Connection::connect(&vhost.url(), lapin::ConnectionProperties::default())
                    .await
                    .expect("connect");
                let channel = connection.create_channel().await.expect("a channel");
                for i in 0..targets {
                    let queue = queue_name(i);
                    channel
                        .queue_declare(queue.as_str().into(), Default::default(), Default::default())
                        .await
                        .expect("declare");
                    for _ in 0..BACKLOG {
                        channel
                            .basic_publish(
                                "".into(),
                                queue.as_str().into(),
                                Default::default(),
                                b"job",
                                Default::default(),
                            )
                            .await
                            .expect("publish");
                    }
                }
                let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
                channel
                    .queue_declare(queue_name(0).as_str().into(), passive, Default::default())
                    .await
                    .expect("all in");
                let management = kind == Kind::RabbitMq;
                let target = if management {
                    address(&support::rabbitmq::management_url())
                } else {
                    address(&support::rabbitmq::amqp_url())
                };
                let proxy =
                    CountingProxy::start(target, if management { Protocol::Http } else { Protocol::Amqp }).await;
                let peer = Peer::RabbitMq { vhost, proxy, management };
                if management {
                    // The management API adds a queue's counts at its next statistics emission.
                    peer.wait_for_management(targets).await;
                }
                peer
            }
            Kind::Kafka => {
                let cluster = MockKafka::new(targets);
                for i in 0..targets {
                    cluster.produce(i, BACKLOG / 4);
                }
                cluster.flush();
                cluster.start_tracking();
                Peer::Kafka { cluster, taken: AtomicU64::new(0) }
            }
            Kind::Sqs => {
                let server = support::moto::MotoServer::start().await;
                support::moto::use_dummy_credentials();
                let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(aws_config::Region::new(support::moto::REGION))
                    .endpoint_url(server.endpoint())
                    .load()
                    .await;
                let client = aws_sdk_sqs::Client::new(&shared);
                let urls = stream::iter(0..targets)
                    .map(|i| {
                        let client = client.clone();
                        async move {
                            let created = client.create_queue().queue_name(queue_name(i)).send().await.expect("create");
                            let url = created.queue_url().expect("a URL").to_owned();
                            for batch in 0..BACKLOG / 10 {
                                let entries = (0..10).map(|n| {
                                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                                        .id(format!("m{batch}-{n}"))
                                        .message_body("job")
                                        .build()
                                        .expect("an entry")
                                });
                                client
                                    .send_message_batch()
                                    .queue_url(&url)
                                    .set_entries(Some(entries.collect()))
                                    .send()
                                    .await
                                    .expect("send");
                            }
                            (i, url)
                        }
                    })
                    .buffer_unordered(16)
                    .collect::<Vec<_>>()
                    .await;
                let mut urls = urls;
                urls.sort();
                let proxy = CountingProxy::start(address(&server.endpoint()), Protocol::Http).await;
                Peer::Sqs { _server: server, client, urls: urls.into_iter().map(|(_, url)| url).collect(), proxy }
            }
            Kind::PubSub => {
                let (topics, subscriptions) = pubsub_admins().await;
                let project = support::pubsub::PROJECT;
                let ids: Vec<String> = (0..targets).map(|i| format!("qs-bench-{}-{i}", std::process::id())).collect();
                each(targets, |i| {
                    let (topics, subscriptions, id) = (&topics, &subscriptions, &ids[i]);
                    async move {
                        let topic = format!("projects/{project}/topics/{id}");
                        topics.create_topic().set_name(&topic).send().await.expect("create a topic");
                        subscriptions
                            .create_subscription()
                            .set_name(format!("projects/{project}/subscriptions/{id}"))
                            .set_topic(&topic)
                            .send()
                            .await
                            .expect("create a subscription");
                    }
                })
                .await;
                let monitoring = FakeMonitoring::start().await;
                let now = SystemTime::now();
                for id in &ids {
                    monitoring.record(id, BACKLOG_METRIC, now, BACKLOG as i64);
                    monitoring.record(id, OLDEST_AGE_METRIC, now, 10);
                }
                let emulator = CountingProxy::start(address(&support::pubsub::emulator_url()), Protocol::Http).await;
                Peer::PubSub { monitoring, ids, emulator }
            }
            Kind::Prometheus => {
                let exporter = Exporter::start(&exposition(targets, BACKLOG)).await;
                let server = Prometheus::start(exporter.address).await;
                let all = format!("count(qs_bench_backlog == {BACKLOG})");
                let wanted = targets as f64;
                let started = Instant::now();
                while prometheus_value(&server, &all).await != Some(wanted) {
                    assert!(started.elapsed() < Duration::from_secs(60), "Prometheus scraped every series");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                let proxy = CountingProxy::start(address(&server.url), Protocol::Http).await;
                Peer::Prometheus { exporter, server, proxy, targets }
            }
        }
    }

    /// Target `i`'s source, as a YAML flow mapping.
    fn source(&self, i: usize) -> String {
        let per_worker = "backlogPerWorker: 10";
        match self {
            Peer::Fixed => format!("{{type: fixed, backlog: {BACKLOG}, {per_worker}}}"),
            Peer::RabbitMq { vhost, proxy, management: true } => format!(
                "{{type: rabbitmq, url: '{}', queue: {}, managementUrl: 'http://guest:guest@127.0.0.1:{}', {per_worker}}}",
                vhost.url(),
                queue_name(i),
                proxy.port
            ),
            Peer::RabbitMq { vhost, proxy, management: false } => {
                let mut url = reqwest::Url::parse(&vhost.url()).expect("a URL");
                url.set_host(Some("127.0.0.1")).expect("a host");
                url.set_port(Some(proxy.port)).expect("a port");
                format!("{{type: rabbitmq, url: '{url}', queue: {}, {per_worker}}}", queue_name(i))
            }
            Peer::Kafka { cluster, .. } => format!(
                "{{type: kafka, brokers: '{}', topic: bench-{i}, group: bench-group-{i}, offsetResetPolicy: earliest, {per_worker}}}",
                cluster.brokers
            ),
            Peer::Sqs { urls, proxy, .. } => format!(
                "{{type: sqs, queueUrl: '{}', region: {}, endpointUrl: 'http://127.0.0.1:{}', {per_worker}}}",
                urls[i],
                support::moto::REGION,
                proxy.port
            ),
            Peer::PubSub { monitoring, ids, emulator } => format!(
                "{{type: pubsub, project: {}, subscription: {}, endpoint: '{}', pubsubEndpoint: 'http://127.0.0.1:{}', {per_worker}}}",
                support::pubsub::PROJECT,
                ids[i],
                monitoring.endpoint(),
                emulator.port
            ),
            Peer::Prometheus { proxy, .. } => format!(
                "{{type: prometheus, url: 'http://127.0.0.1:{}', query: 'sum(qs_bench_backlog{{queue=\"{i}\"}})', {per_worker}}}",
                proxy.port
            ),
        }
    }

    /// Reads the agent sent to the peer so far.
    fn reads(&self) -> Option<u64> {
        match self {
            Peer::Fixed => None,
            Peer::RabbitMq { proxy, .. } | Peer::Sqs { proxy, .. } | Peer::Prometheus { proxy, .. } => {
                Some(proxy.reads())
            }
            Peer::Kafka { cluster, taken } => {
                let new = cluster.take_requests();
                Some(taken.fetch_add(new, Ordering::Relaxed) + new)
            }
            Peer::PubSub { monitoring, emulator, .. } => Some(monitoring.requests().len() as u64 + emulator.reads()),
        }
    }

    /// Waits until the management API reports every bench queue's counts.
    async fn wait_for_management(&self, targets: usize) {
        let Peer::RabbitMq { vhost, .. } = self else {
            return;
        };
        let path = format!("/api/queues/{}?columns=name,messages_ready", vhost.name.replace('/', "%2F"));
        let started = Instant::now();
        loop {
            let (_, answer) = management_api(reqwest::Method::GET, &path, None).await;
            let counted = answer.as_array().map_or(0, |queues| {
                queues.iter().filter(|q| q["messages_ready"].as_u64() == Some(BACKLOG as u64)).count()
            });
            if counted == targets {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "management statistics: {counted} of {targets}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Raises target 0's backlog to [`RAISED`] and returns when its data changed — when the change began, or for a
    /// peer that samples (the management API, Prometheus) when it first answered with a new number; `None` for
    /// `fixed`.
    async fn raise(&self) -> Option<Instant> {
        let began = Instant::now();
        match self {
            Peer::Fixed => None,
            Peer::RabbitMq { vhost, management, .. } => {
                let connection = lapin::Connection::connect(&vhost.url(), lapin::ConnectionProperties::default())
                    .await
                    .expect("connect");
                let channel = connection.create_channel().await.expect("a channel");
                let began = Instant::now();
                for _ in BACKLOG..RAISED {
                    channel
                        .basic_publish(
                            "".into(),
                            queue_name(0).as_str().into(),
                            Default::default(),
                            b"job",
                            Default::default(),
                        )
                        .await
                        .expect("publish");
                }
                let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
                channel
                    .queue_declare(queue_name(0).as_str().into(), passive, Default::default())
                    .await
                    .expect("all in");
                if !management {
                    return Some(began);
                }
                let path = format!("/api/queues/{}/{}", vhost.name.replace('/', "%2F"), queue_name(0));
                loop {
                    let (_, answer) = management_api(reqwest::Method::GET, &path, None).await;
                    if answer["messages_ready"].as_u64().is_some_and(|n| n != BACKLOG as u64) {
                        return Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            Peer::Kafka { cluster, .. } => {
                cluster.produce(0, (RAISED - BACKLOG).div_ceil(4));
                cluster.flush();
                Some(began)
            }
            Peer::Sqs { client, urls, .. } => {
                for batch in 0..(RAISED - BACKLOG) / 10 {
                    let entries = (0..10).map(|n| {
                        aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                            .id(format!("r{batch}-{n}"))
                            .message_body("job")
                            .build()
                            .expect("an entry")
                    });
                    client
                        .send_message_batch()
                        .queue_url(&urls[0])
                        .set_entries(Some(entries.collect()))
                        .send()
                        .await
                        .expect("send");
                }
                Some(began)
            }
            Peer::PubSub { monitoring, ids, .. } => {
                monitoring.record(&ids[0], BACKLOG_METRIC, SystemTime::now(), RAISED as i64);
                Some(began)
            }
            Peer::Prometheus { exporter, server, targets, .. } => {
                exporter.set(&exposition(*targets, RAISED));
                let query = "sum(qs_bench_backlog{queue=\"0\"})";
                while prometheus_value(server, query).await == Some(BACKLOG as f64) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Some(Instant::now())
            }
        }
    }

    async fn stop(self) {
        match self {
            Peer::Sqs { client, urls, .. } => {
                each(urls.len(), |i| {
                    let (client, url) = (&client, &urls[i]);
                    async move {
                        let _ = client.delete_queue().queue_url(url).send().await;
                    }
                })
                .await;
            }
            Peer::PubSub { ids, .. } => {
                let (topics, subscriptions) = pubsub_admins().await;
                let project = support::pubsub::PROJECT;
                each(ids.len(), |i| {
                    let (topics, subscriptions, id) = (&topics, &subscriptions, &ids[i]);
                    async move {
                        let name = format!("projects/{project}/subscriptions/{id}");
                        let _ = subscriptions.delete_subscription().set_subscription(name).send().await;
                        let _ = topics.delete_topic().set_topic(format!("projects/{project}/topics/{id}")).send().await;
                    }
                })
                .await;
            }
            // The vhost goes with its queues and connections when dropped; the rest is in this process.
            _ => {}
        }
    }
}

/// What `/proc` says about a process.
struct Sample {
    ticks: u64,
    rss_kb: u64,
    anonymous_kb: u64,
    threads: u64,
}

fn sample(pid: u32) -> Sample {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(") ").expect("stat format").1.split(' ').collect();
    let ticks = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |key: &str| {
        status.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
    };
    Sample { ticks, rss_kb: field("VmRSS:"), anonymous_kb: field("RssAnon:"), threads: field("Threads:") }
}

/// Each thread's name and CPU ticks (utime + stime), by thread id.
fn thread_ticks(pid: u32) -> std::collections::BTreeMap<String, (String, u64)> {
    let tasks =
        std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.flatten().collect::<Vec<_>>()).unwrap_or_default();
    tasks
        .iter()
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            let (head, rest) = stat.rsplit_once(") ")?;
            let name = head.split_once(" (")?.1.to_owned();
            let fields: Vec<&str> = rest.split(' ').collect();
            let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
            Some((task.file_name().to_string_lossy().into_owned(), (name, ticks)))
        })
        .collect()
}

/// The names of a process's threads, for `QS_BENCH_THREADS=1`.
fn thread_names(pid: u32) -> Vec<String> {
    let tasks =
        std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.flatten().collect::<Vec<_>>()).unwrap_or_default();
    let mut names: Vec<String> = tasks
        .iter()
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect();
    names.sort();
    names
}

fn clock_ticks_per_second() -> f64 {
    let out = std::process::Command::new("getconf").arg("CLK_TCK").output().expect("getconf");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(100.0)
}

/// One row of the table.
struct Row {
    kind: Kind,
    targets: usize,
    poll: Duration,
    rss_mb: f64,
    anonymous_mb: f64,
    threads: u64,
    cpu: f64,
    reads_per_second: Option<f64>,
    scale_up: Option<Duration>,
}

impl Row {
    /// The goals this row misses.
    fn misses(&self) -> Vec<String> {
        let mut misses = Vec::new();
        if self.threads > 32 {
            misses.push(format!("threads {} > 32", self.threads));
        }
        if self.targets >= 10 && self.targets < 1_000 {
            if self.anonymous_mb > 8.0 {
                misses.push(format!("anon {:.1} > 8 MB", self.anonymous_mb));
            }
            if self.rss_mb > 28.0 {
                misses.push(format!("RSS {:.1} > 28 MB", self.rss_mb));
            }
        }
        if self.targets >= 1_000 {
            if self.rss_mb > 64.0 {
                misses.push(format!("RSS {:.1} > 64 MB", self.rss_mb));
            }
            if self.anonymous_mb > 40.0 {
                misses.push(format!("anon {:.1} > 40 MB", self.anonymous_mb));
            }
            if self.cpu > 2.0 {
                misses.push(format!("CPU {:.2} > 2 %", self.cpu));
            }
        }
        if let Some(took) = self.scale_up
            && took > self.poll + Duration::from_millis(500)
        {
            misses.push(format!("scale-up {:.2} s > one poll", took.as_secs_f64()));
        }
        misses
    }

    fn print(&self) {
        let reads = self.reads_per_second.map_or("—".to_owned(), |r| format!("{r:.1}"));
        let scale_up = self.scale_up.map_or("—".to_owned(), |t| format!("{:.2} s", t.as_secs_f64()));
        let misses = self.misses();
        println!(
            "| {} | {} | {} s | {:.1} | {:.1} | {} | {:.2} | {reads} | {scale_up} | {} |",
            self.kind.name(),
            self.targets,
            self.poll.as_secs(),
            self.rss_mb,
            self.anonymous_mb,
            self.threads,
            self.cpu,
            if misses.is_empty() { "✓".to_owned() } else { misses.join(", ") }
        );
    }
}

fn config(peer: &Peer, targets: usize, poll: Duration, metrics_port: u16) -> String {
    let mut text = format!(
        "namespace: {NS}\npollInterval: {}s\nmetrics: {{listen: '127.0.0.1:{metrics_port}'}}\ntargets:\n",
        poll.as_secs()
    );
    for i in 0..targets {
        text.push_str(&format!("  - deployment: worker-{i}\n    maxReplicas: 10\n    sources: [{}]\n", peer.source(i)));
    }
    text
}

async fn measure(kind: Kind, targets: usize, poll: Duration, window: Duration) -> Row {
    let peer = Peer::start(kind, targets).await;
    let kube = FakeKube::start().await;
    for i in 0..targets {
        kube.create_deployment(NS, &format!("worker-{i}"), 1, &[("app", &format!("worker-{i}"))]);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, config(&peer, targets, poll, support::agent::free_port())).expect("config");
    let binary = std::env::var("QS_AGENT_BINARY").unwrap_or_else(|_| env!("CARGO_BIN_EXE_queue-scaler").to_owned());
    let mut agent = tokio::process::Command::new(binary)
        .arg("run")
        .arg("-c")
        .arg(&file)
        .env("KUBECONFIG", kube.kubeconfig_path())
        .env("RUST_LOG", "error")
        .envs(support::moto::CREDENTIALS)
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the agent");
    let pid = agent.id().expect("pid");
    kube.wait_until("every Deployment scaled", Duration::from_secs(300), |kube| {
        (0..targets).all(|i| kube.replicas(NS, &format!("worker-{i}")) == Some(2))
    })
    .await
    .unwrap_or_else(|e| panic!("{} × {targets}: {e}", kind.name()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (before, reads_before, begun) = (sample(pid), peer.reads(), Instant::now());
    let threads_before = thread_ticks(pid);
    tokio::time::sleep(window).await;
    let (after, reads_after) = (sample(pid), peer.reads());
    if std::env::var_os("QS_BENCH_DEBUG").is_some() {
        let mut by_name = std::collections::BTreeMap::<String, u64>::new();
        for (tid, (name, ticks)) in thread_ticks(pid) {
            let earlier = threads_before.get(&tid).map_or(0, |(_, t)| *t);
            *by_name.entry(name).or_default() += ticks - earlier;
        }
        eprintln!("{} × {targets}: CPU ticks by thread over the window: {by_name:?}", kind.name());
        eprintln!(
            "{} × {targets}: anonymous {:.1} → {:.1} MB over the window",
            kind.name(),
            before.anonymous_kb as f64 / 1024.0,
            after.anonymous_kb as f64 / 1024.0
        );
    }
    if std::env::var_os("QS_BENCH_THREADS").is_some() {
        eprintln!("{} × {targets}: threads {:?}", kind.name(), thread_names(pid));
    }
    let seconds = begun.elapsed().as_secs_f64();
    let cpu = (after.ticks - before.ticks) as f64 / clock_ticks_per_second() / seconds * 100.0;
    let reads_per_second = reads_before.zip(reads_after).map(|(b, a)| (a - b) as f64 / seconds);

    let scale_up = match peer.raise().await {
        None => None,
        Some(changed) => {
            let wanted = kind.raised_replicas();
            kube.wait_until_replicas(NS, "worker-0", wanted, Duration::from_secs(60))
                .await
                .unwrap_or_else(|e| panic!("{} × {targets}: {e}", kind.name()));
            // The store changes before the request is recorded with its answer: wait for the record too.
            let written = |kube: &FakeKube| {
                kube.scale_writes(NS, "worker-0").last().filter(|(_, replicas)| *replicas == wanted).map(|(at, _)| *at)
            };
            kube.wait_until("the write recorded", Duration::from_secs(10), |kube| written(kube).is_some())
                .await
                .unwrap_or_else(|e| panic!("{} × {targets}: {e}", kind.name()));
            let at = written(&kube).expect("recorded");
            Some(at.saturating_duration_since(changed))
        }
    };
    agent.kill().await.expect("stop the agent");
    peer.stop().await;
    let mb = |kb: u64| kb as f64 / 1024.0;
    Row {
        kind,
        targets,
        poll,
        rss_mb: mb(after.rss_kb),
        anonymous_mb: mb(after.anonymous_kb),
        threads: after.threads,
        cpu,
        reads_per_second,
        scale_up,
    }
}

#[tokio::main]
async fn main() {
    let (mut window, mut slow_poll, mut kinds, mut counts) = (15, 5, Vec::new(), Vec::new());
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => window = args.next().and_then(|s| s.parse().ok()).expect("--seconds N"),
            "--slow-poll" => slow_poll = args.next().and_then(|s| s.parse().ok()).expect("--slow-poll S"),
            other => match Kind::ALL.iter().find(|k| k.name() == other) {
                Some(kind) => kinds.push(*kind),
                None => counts.push(other.parse::<usize>().expect("a source type or a target count")),
            },
        }
    }
    if kinds.is_empty() {
        kinds = Kind::ALL.to_vec();
    }
    if counts.is_empty() {
        counts = vec![1, 10, 1000];
    }
    println!(
        "| source | targets | poll | RSS (MB) | anonymous (MB) | threads | CPU (% of one core) | reads/s to the peer | scale-up after the change | goals missed |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let mut rows = Vec::new();
    for kind in kinds {
        for &targets in &counts {
            // SQS and Prometheus have no batch call: a read per target per poll. At 1,000 targets the issue allows
            // them a 5 s poll (`--slow-poll 1` measures them at 1 s too).
            let slow = matches!(kind, Kind::Sqs | Kind::Prometheus) && targets >= 1_000;
            let poll = Duration::from_secs(if slow { slow_poll } else { 1 });
            let row = measure(kind, targets, poll, Duration::from_secs(window)).await;
            row.print();
            rows.push(row);
        }
    }
    println!();
    for kind in Kind::ALL {
        if rows.iter().any(|r| r.kind == kind) {
            println!("{}: {}", kind.name(), kind.peer());
        }
    }
}
