//! Committed offsets of many consumer groups through one client.
//!
//! A consumer's `committed_offsets` asks for the group in its own `group.id`, which is fixed when the client is
//! created: reading a thousand groups that way takes a thousand clients, each with a thread per broker. librdkafka's
//! admin call ListConsumerGroupOffsets takes the group as an argument instead, and any client can make it: it finds
//! the group's coordinator (FindCoordinator) and sends it one OffsetFetch for the partitions asked, exactly what
//! `committed_offsets` sends. The rdkafka crate does not wrap that call, so this module calls librdkafka directly.
//! Partitions are always named, never left out to mean "all": brokers before 0.10.2 and librdkafka's mock cluster
//! answer nothing for "all".
//!
//! Every group's call goes out at once on one reply queue, tagged with its position; the answers are collected from
//! that queue until all are in or the time is up. librdkafka keeps the queue alive for calls still in flight.

use std::ffi::{CStr, CString, c_int, c_void};
use std::time::{Duration, Instant};

use rdkafka::TopicPartitionList;
use rdkafka::bindings as rd;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// A group's committed offset on one partition, as the coordinator answered.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Committed {
    pub topic: String,
    pub partition: i32,
    /// Negative when the group never committed there.
    pub offset: i64,
    /// The partition's own error, if any.
    pub error: Option<RDKafkaErrorCode>,
}

/// For each `(group, partitions)` asked, in order: its committed offsets, its error, or `None` when no answer came
/// within `timeout`.
pub(super) fn committed_offsets(
    client: &BaseConsumer,
    asked: &[(&str, &TopicPartitionList)],
    timeout: Duration,
) -> Vec<Option<Result<Vec<Committed>, KafkaError>>> {
    let started = Instant::now();
    let mut answers: Vec<Option<Result<Vec<Committed>, KafkaError>>> = vec![None; asked.len()];
    let rk = rdkafka::client::Client::native_ptr(rdkafka::consumer::Consumer::client(client));
    // SAFETY: `rk` is the live client `client` owns for the whole call. The queue and options created here are
    // destroyed below; librdkafka copies the options and the request into each call, and holds its own reference to
    // the reply queue for calls still in flight when it is destroyed.
    unsafe {
        let queue = rd::rd_kafka_queue_new(rk);
        let options =
            rd::rd_kafka_AdminOptions_new(rk, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS);
        if queue.is_null() || options.is_null() {
            let error = KafkaError::OffsetFetch(RDKafkaErrorCode::Fail);
            if !queue.is_null() {
                rd::rd_kafka_queue_destroy(queue);
            }
            return answers.into_iter().map(|_| Some(Err(error.clone()))).collect();
        }
        let millis = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX).max(1);
        let mut errstr = [0 as std::ffi::c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(options, millis, errstr.as_mut_ptr(), errstr.len());
        let mut pending = 0;
        for (i, (group, partitions)) in asked.iter().enumerate() {
            let Ok(group) = CString::new(*group) else {
                answers[i] = Some(Err(KafkaError::OffsetFetch(RDKafkaErrorCode::InvalidGroupId)));
                continue;
            };
            rd::rd_kafka_AdminOptions_set_opaque(options, i as *mut c_void);
            let mut request = rd::rd_kafka_ListConsumerGroupOffsets_new(group.as_ptr(), partitions.ptr());
            rd::rd_kafka_ListConsumerGroupOffsets(rk, &mut request, 1, options, queue);
            rd::rd_kafka_ListConsumerGroupOffsets_destroy(request);
            pending += 1;
        }
        rd::rd_kafka_AdminOptions_destroy(options);
        while pending > 0 {
            let Some(left) = timeout.checked_sub(started.elapsed()).filter(|left| !left.is_zero()) else {
                break;
            };
            let event = rd::rd_kafka_queue_poll(queue, c_int::try_from(left.as_millis()).unwrap_or(c_int::MAX).max(1));
            if event.is_null() {
                continue;
            }
            let index = rd::rd_kafka_event_opaque(event) as usize;
            if rd::rd_kafka_event_type(event) == rd::RD_KAFKA_EVENT_LISTCONSUMERGROUPOFFSETS_RESULT
                && let Some(answer) = answers.get_mut(index)
                && answer.is_none()
            {
                *answer = Some(answer_of(event));
                pending -= 1;
            }
            rd::rd_kafka_event_destroy(event);
        }
        rd::rd_kafka_queue_destroy(queue);
    }
    answers
}

/// One ListConsumerGroupOffsets result event as offsets or an error.
///
/// # Safety
/// `event` must be a live ListConsumerGroupOffsets result event.
unsafe fn answer_of(event: *mut rd::rd_kafka_event_t) -> Result<Vec<Committed>, KafkaError> {
    // SAFETY: the caller passes a live result event; everything read here lives as long as it does, and is copied
    // out before it is destroyed.
    unsafe {
        let error = rd::rd_kafka_event_error(event);
        if error != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(KafkaError::OffsetFetch(error.into()));
        }
        let result = rd::rd_kafka_event_ListConsumerGroupOffsets_result(event);
        let mut count = 0;
        let groups = rd::rd_kafka_ListConsumerGroupOffsets_result_groups(result, &mut count);
        if groups.is_null() || count == 0 {
            return Err(KafkaError::OffsetFetch(RDKafkaErrorCode::Fail));
        }
        let group = *groups;
        let group_error = rd::rd_kafka_group_result_error(group);
        if !group_error.is_null() {
            return Err(KafkaError::OffsetFetch(rd::rd_kafka_error_code(group_error).into()));
        }
        let list = rd::rd_kafka_group_result_partitions(group);
        if list.is_null() {
            return Ok(Vec::new());
        }
        let count = usize::try_from((*list).cnt).unwrap_or(0);
        let elements = if count == 0 { &[][..] } else { std::slice::from_raw_parts((*list).elems, count) };
        Ok(elements
            .iter()
            .map(|element| Committed {
                topic: CStr::from_ptr(element.topic).to_string_lossy().into_owned(),
                partition: element.partition,
                offset: element.offset,
                error: (element.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR).then(|| element.err.into()),
            })
            .collect())
    }
}
