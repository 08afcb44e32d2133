//! The time the oldest unread message was produced: the timestamp of the record at each lagging partition's
//! committed offset, the next one the group will read.
//!
//! Kafka keeps no "oldest waiting message" statistic; the record itself carries when it was produced (CreateTime)
//! or appended (LogAppendTime). Reading it costs a fetch per lagging partition, and a fetch can take a second to
//! start, so it never runs inside a read: [`Heads`] keeps the timestamps read so far, a batch takes what it finds
//! there, and asks for the missing ones in the background, on a client of their own, at most one round at a time
//! per cluster, bounded in bytes (`fetch.message.max.bytes`) and time ([`HEADS_WAIT`]). A partition whose own next
//! record has not been read yet takes the timestamp of the nearest earlier record read there — usually the one the
//! group was at a poll ago: an older record, so the age is too high (by about a poll's progress), never too low,
//! until its own is read a round later.
//!
//! The fetches use librdkafka's legacy consumer (`rd_kafka_consume_start_queue`), which reads a partition from an
//! offset without a group: nothing joins the workers' group, commits or moves their offsets. The rdkafka crate does
//! not wrap it, so this module calls librdkafka directly, as `groups.rs` does. The client is never used as a
//! high-level consumer, so the two do not mix.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{CStr, CString, c_int};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::bindings as rd;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;

use super::reader::PartitionKey;

/// The longest one background round waits for the records it asked for.
pub(super) const HEADS_WAIT: Duration = Duration::from_secs(2);

/// The next records' timestamps of one cluster, read beside its batches.
pub(super) struct Heads {
    settings: ClientConfig,
    /// Created at the first round and kept.
    client: Mutex<Option<BaseConsumer>>,
    /// Per partition, the records read: offset → timestamp (Unix milliseconds).
    read: Mutex<HashMap<PartitionKey, BTreeMap<i64, i64>>>,
    /// Whether a round is under way.
    busy: AtomicBool,
}

impl Heads {
    /// Heads read with a client made from the cluster's `settings`, asking for small fetches and no read-ahead:
    /// only the next record's timestamp is wanted, where librdkafka's defaults fetch 1 MB per partition and keep up
    /// to 64 MB queued (a broker still sends a larger record whole).
    pub(super) fn new(settings: &ClientConfig) -> Arc<Heads> {
        let mut settings = settings.clone();
        settings
            .set("fetch.message.max.bytes", "4096")
            .set("queued.min.messages", "1")
            .set("queued.max.messages.kbytes", "1024");
        Arc::new(Heads {
            settings,
            client: Mutex::new(None),
            read: Mutex::new(HashMap::new()),
            busy: AtomicBool::new(false),
        })
    }

    /// Forgets the records no wanted offset needs; then, for each `(partition, offset)` wanted, the timestamp of that
    /// record if it was read, else of the newest record read before it on that partition; and, unless a round is
    /// under way, starts one in the background for the offsets whose own record has not been read.
    pub(super) fn lookup_and_refresh(
        self: &Arc<Self>,
        wanted: &[(PartitionKey, i64)],
    ) -> HashMap<(PartitionKey, i64), i64> {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        // The lowest offset wanted on each partition, so that forgetting costs one lookup per partition: a batch can
        // want a thousand.
        let mut lowest: HashMap<&PartitionKey, i64> = HashMap::new();
        for (key, offset) in wanted {
            lowest.entry(key).and_modify(|low| *low = (*low).min(*offset)).or_insert(*offset);
        }
        {
            let mut read = self.read.lock().unwrap_or_else(PoisonError::into_inner);
            read.retain(|key, records| {
                let Some(lowest) = lowest.get(key) else { return false };
                // Keep the newest record at or below the lowest offset still wanted here, and everything above it.
                if let Some((&keep, _)) = records.range(..=*lowest).next_back() {
                    records.retain(|offset, _| *offset >= keep);
                }
                true
            });
            for (key, offset) in wanted {
                match read.get(key).and_then(|records| records.range(..=*offset).next_back()) {
                    Some((at, millis)) => {
                        found.insert((key.clone(), *offset), *millis);
                        if at != offset {
                            missing.push((key.clone(), *offset));
                        }
                    }
                    None => missing.push((key.clone(), *offset)),
                }
            }
        }
        if !missing.is_empty() && !self.busy.swap(true, Ordering::AcqRel) {
            let heads = self.clone();
            tokio::task::spawn_blocking(move || {
                heads.round(&missing);
                heads.busy.store(false, Ordering::Release);
            });
        }
        found
    }

    /// One round: reads the records at `missing`, within [`HEADS_WAIT`], and keeps their timestamps.
    fn round(&self, missing: &[(PartitionKey, i64)]) {
        let mut client = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        let consumer = match &mut *client {
            Some(consumer) => consumer,
            empty => match self.settings.create::<BaseConsumer>() {
                Ok(consumer) => empty.insert(consumer),
                // The age stays unknown; the batches report the cluster's errors.
                Err(_) => return,
            },
        };
        let timestamps = timestamps(consumer, missing, HEADS_WAIT);
        let mut read = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        for ((key, offset), millis) in timestamps {
            read.entry(key).or_default().insert(offset, millis);
        }
    }
}

/// For each `(partition, offset)` asked, the timestamp (Unix milliseconds) of the first record at or after that
/// offset, for those whose record came within `timeout` and carries one. A partition asked at several offsets (two
/// groups on one topic) is read once per offset, one round after another.
fn timestamps(
    client: &BaseConsumer,
    wanted: &[(PartitionKey, i64)],
    timeout: Duration,
) -> HashMap<(PartitionKey, i64), i64> {
    let deadline = Instant::now() + timeout;
    let mut by_partition: BTreeMap<&PartitionKey, Vec<i64>> = BTreeMap::new();
    for (key, offset) in wanted {
        by_partition.entry(key).or_default().push(*offset);
    }
    for offsets in by_partition.values_mut() {
        offsets.sort_unstable();
        offsets.dedup();
    }
    let mut found = HashMap::new();
    for round in 0.. {
        let asked: Vec<(&PartitionKey, i64)> =
            by_partition.iter().filter_map(|(key, offsets)| offsets.get(round).map(|o| (*key, *o))).collect();
        if asked.is_empty() || Instant::now() >= deadline {
            break;
        }
        for (key, (offset, millis)) in one_round(client, &asked, deadline) {
            found.insert((key, offset), millis);
        }
    }
    found
}

/// One record from each partition in `asked` (at most one offset per partition), until `deadline`: each
/// partition's timestamp, by partition, with the offset it was asked at.
fn one_round(
    client: &BaseConsumer,
    asked: &[(&PartitionKey, i64)],
    deadline: Instant,
) -> HashMap<PartitionKey, (i64, i64)> {
    let mut found = HashMap::new();
    let rk = rdkafka::client::Client::native_ptr(rdkafka::consumer::Consumer::client(client));
    // SAFETY: `rk` is the live client `client` owns for the whole call. Every topic handle, queue and message created
    // here is destroyed here: messages as soon as they are read, the fetches stopped (which purges what they queued)
    // before their topic handles and the queue go.
    unsafe {
        let queue = rd::rd_kafka_queue_new(rk);
        if queue.is_null() {
            return found;
        }
        let mut topics: HashMap<&str, *mut rd::rd_kafka_topic_t> = HashMap::new();
        let mut started: Vec<(*mut rd::rd_kafka_topic_t, i32)> = Vec::new();
        let mut waiting: HashMap<(String, i32), i64> = HashMap::new();
        for ((topic, partition), offset) in asked {
            let rkt = match topics.get(topic.as_str()) {
                Some(rkt) => *rkt,
                None => {
                    let Ok(name) = CString::new(topic.as_str()) else { continue };
                    let rkt = rd::rd_kafka_topic_new(rk, name.as_ptr(), std::ptr::null_mut());
                    if rkt.is_null() {
                        continue;
                    }
                    topics.insert(topic.as_str(), rkt);
                    rkt
                }
            };
            if rd::rd_kafka_consume_start_queue(rkt, *partition, *offset, queue) == 0 {
                started.push((rkt, *partition));
                waiting.insert((topic.clone(), *partition), *offset);
            }
        }
        while !waiting.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let millis = c_int::try_from(left.as_millis()).unwrap_or(c_int::MAX).max(1);
            let message = rd::rd_kafka_consume_queue(queue, millis);
            if message.is_null() {
                continue;
            }
            let record = &*message;
            // Errors (end of partition, an offset reset) leave that partition's age unknown; the time bounds the wait.
            if record.err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && !record.rkt.is_null() {
                let topic = CStr::from_ptr(rd::rd_kafka_topic_name(record.rkt)).to_string_lossy().into_owned();
                let key = (topic, record.partition);
                let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
                let millis = rd::rd_kafka_message_timestamp(message, &mut kind);
                if let Some(&asked_at) = waiting.get(&key)
                    && record.offset >= asked_at
                {
                    waiting.remove(&key);
                    if millis >= 0 {
                        found.insert(key, (asked_at, millis));
                    }
                }
            }
            rd::rd_kafka_message_destroy(message);
        }
        for (rkt, partition) in started {
            rd::rd_kafka_consume_stop(rkt, partition);
        }
        for rkt in topics.into_values() {
            rd::rd_kafka_topic_destroy(rkt);
        }
        rd::rd_kafka_queue_destroy(queue);
    }
    found
}
