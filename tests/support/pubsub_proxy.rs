//! A TCP proxy in front of the Pub/Sub emulator that gives it what real Pub/Sub does when a streaming-pull client
//! goes away: the stream ends, and the messages it held are delivered again.
//!
//! The emulator (0.8.20, from gcloud 528) has two faults that together lose messages whenever a subscriber leaves:
//!
//! * It ignores the stream's flow control and pushes every available message at once to the streams open at that
//!   moment (measured: 146 of 200 messages pushed to one worker with `max_outstanding_messages` 2).
//! * It never learns that a streaming pull ended. On a cancel (`RST_STREAM`) its grpc server throws
//!   `NoSuchMethodError` (`InternalStatus.asRuntimeException`, a jar version mismatch; see its log), and on a
//!   half-close or a closed connection the stream stays registered too. Messages pushed to it stay leased to it for
//!   good: measured after a SIGKILL, none of 146 came back through `Pull` within 36 s on a 10 s ack deadline,
//!   where real Pub/Sub redelivers after the ack deadline.
//!
//! So for each client connection the proxy forwards bytes unchanged, except that (1) a client's reset of a stream
//! it opened becomes an empty `DATA` frame with `END_STREAM` (the half-close a polite client sends, which at least
//! spares the emulator the exception), and (2) it reads the ack ids of every message the emulator pushes down the
//! connection, and once the client is gone it sets their ack deadline to 0 through the emulator's REST API — the
//! redelivery real Pub/Sub would make after the deadline, made at once. Messages pushed down a stream after the
//! client reset it (nobody reads them, and real Pub/Sub would not send them) go back at once, while the worker
//! lives. Acks and nacks the worker sent pass untouched and win: an ack id already acked no longer names a message.
//!
//! It also notes when each streaming pull (a stream whose first request sets `stream_ack_deadline_seconds`) opens
//! and when the client ends or resets it: the moment a worker stops pulling, as the service sees it.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const PREFACE_LEN: usize = 24;
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const END_STREAM: u8 = 1;
/// How long the emulator gets to finish half-closed streams after the client is gone.
const LINGER: Duration = Duration::from_secs(2);

/// The proxy; dropping it stops accepting (connections already open run to their end).
pub struct Proxy {
    pub addr: SocketAddr,
    pulls: Pulls,
    task: JoinHandle<()>,
}

/// Every streaming pull seen: when it opened, and when the client ended or reset it.
type Pulls = Arc<Mutex<Vec<(Instant, Option<Instant>)>>>;

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Listens on a free local port and forwards to `upstream` (`host:port`), whose subscription `subscription`
    /// (`projects/P/subscriptions/S`) the workers consume.
    pub async fn start(upstream: String, subscription: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let pulls = Pulls::default();
        let seen = pulls.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let target = Upstream { host: upstream.clone(), subscription: subscription.clone() };
                let pulls = seen.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&target.host).await {
                        let delivered = relay(client, server, &target, &pulls).await;
                        target.redeliver(delivered).await;
                    }
                });
            }
        });
        Proxy { addr, pulls, task }
    }

    /// When the streaming pulls the proxy has seen were opened and closed by their client.
    pub fn pulls(&self) -> Vec<(Instant, Option<Instant>)> {
        self.pulls.lock().expect("pulls").clone()
    }
}

/// The emulator and the subscription the workers consume.
#[derive(Clone)]
struct Upstream {
    host: String,
    subscription: String,
}

fn half_close(stream: u32) -> [u8; 9] {
    let id = stream.to_be_bytes();
    [0, 0, 0, DATA, END_STREAM, id[0], id[1], id[2], id[3]]
}

/// Relays one connection until the client is gone; returns the ack ids of the messages pushed down it.
async fn relay(client: TcpStream, server: TcpStream, upstream: &Upstream, pulls: &Pulls) -> Vec<String> {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let delivered = Arc::new(Mutex::new(Vec::new()));
    // Streams the client reset: what the server still pushes down them goes back at once.
    let reset = Arc::new(Mutex::new(BTreeSet::new()));
    let (seen, abandoned, target) = (delivered.clone(), reset.clone(), upstream.clone());
    // Server to client unchanged, read along; once the client is gone, keep reading so the server is never blocked.
    let down = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut client_alive = true;
        let mut frames = Frames::default();
        while let Ok(n @ 1..) = server_read.read(&mut buf).await {
            let mut pushed = Vec::new();
            frames.push(&buf[..n], &mut pushed);
            let unread: Vec<String> = {
                let abandoned = abandoned.lock().expect("reset streams");
                pushed.iter().filter(|(stream, _)| abandoned.contains(stream)).map(|(_, id)| id.clone()).collect()
            };
            if !unread.is_empty() {
                let target = target.clone();
                tokio::spawn(async move { target.redeliver(unread).await });
            }
            seen.lock().expect("ack ids").extend(pushed.into_iter().map(|(_, id)| id));
            if client_alive && client_write.write_all(&buf[..n]).await.is_err() {
                client_alive = false;
            }
        }
    });
    let mut open = BTreeSet::new();
    // Streaming pulls open now, by stream: their index in `pulls`.
    let mut pulling = HashMap::new();
    let mut preface = [0u8; PREFACE_LEN];
    if client_read.read_exact(&mut preface).await.is_ok() && server_write.write_all(&preface).await.is_ok() {
        let mut header = [0u8; 9];
        while client_read.read_exact(&mut header).await.is_ok() {
            let length = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
            let (kind, flags) = (header[3], header[4]);
            let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
            let mut payload = vec![0u8; length];
            if client_read.read_exact(&mut payload).await.is_err() {
                break;
            }
            if kind == DATA && open.contains(&stream) && !pulling.contains_key(&stream) && opens_a_pull(&payload) {
                let mut pulls = pulls.lock().expect("pulls");
                pulling.insert(stream, pulls.len());
                pulls.push((Instant::now(), None));
            }
            let ends = kind == RST_STREAM || (matches!(kind, DATA | HEADERS) && flags & END_STREAM != 0);
            if ends && let Some(index) = pulling.remove(&stream) {
                pulls.lock().expect("pulls")[index].1 = Some(Instant::now());
            }
            let forwarded = match kind {
                RST_STREAM if open.remove(&stream) => {
                    reset.lock().expect("reset streams").insert(stream);
                    server_write.write_all(&half_close(stream)).await
                }
                _ => {
                    if kind == HEADERS {
                        open.insert(stream);
                    }
                    if matches!(kind, DATA | HEADERS) && flags & END_STREAM != 0 {
                        open.remove(&stream);
                    }
                    let mut frame = header.to_vec();
                    frame.extend_from_slice(&payload);
                    server_write.write_all(&frame).await
                }
            };
            if forwarded.is_err() {
                break;
            }
        }
    }
    for stream in open {
        let _ = server_write.write_all(&half_close(stream)).await;
    }
    let gone = Instant::now();
    for index in pulling.into_values() {
        pulls.lock().expect("pulls")[index].1 = Some(gone);
    }
    tokio::time::sleep(LINGER).await;
    down.abort();
    std::mem::take(&mut *delivered.lock().expect("ack ids"))
}

/// Whether a client's `DATA` frame carries a `StreamingPullRequest` that opens a pull: the first request of a
/// stream, and the only kind that sets `stream_ack_deadline_seconds` (field 5), after gRPC's 5-byte prefix.
fn opens_a_pull(payload: &[u8]) -> bool {
    payload.get(5..).is_some_and(|message| walk(message).any(|(n, value)| n == 5 && matches!(value, Value::Varint)))
}

impl Upstream {
    /// Ends the leases of `ack_ids` (deadline 0), as the end of their stream would on real Pub/Sub.
    async fn redeliver(&self, ack_ids: Vec<String>) {
        if ack_ids.is_empty() {
            return;
        }
        let url = format!("http://{}/v1/{}:modifyAckDeadline", self.host, self.subscription);
        let http = reqwest::Client::new();
        // One at a time: an ack id whose message was acked meanwhile may fail the call it is in.
        for ack_id in ack_ids {
            let _ = http.post(&url).json(&json!({"ackIds": [ack_id], "ackDeadlineSeconds": 0})).send().await;
        }
    }
}

/// The server's side of one HTTP/2 connection, reassembled far enough to read the ack ids of
/// `StreamingPullResponse`s: HTTP/2 frames, then gRPC length-prefixed messages per stream, then two levels of
/// protobuf (`received_messages = 1`, then `ack_id = 1`).
#[derive(Default)]
struct Frames {
    bytes: Vec<u8>,
    streams: HashMap<u32, Vec<u8>>,
}

impl Frames {
    /// Reads `chunk`, adding (stream, ack id) for every message pushed.
    fn push(&mut self, chunk: &[u8], ack_ids: &mut Vec<(u32, String)>) {
        self.bytes.extend_from_slice(chunk);
        while self.bytes.len() >= 9 {
            let length =
                usize::from(self.bytes[0]) << 16 | usize::from(self.bytes[1]) << 8 | usize::from(self.bytes[2]);
            if self.bytes.len() < 9 + length {
                return;
            }
            let frame: Vec<u8> = self.bytes.drain(..9 + length).collect();
            let (kind, flags) = (frame[3], frame[4]);
            let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
            if kind != DATA {
                continue;
            }
            let mut payload = &frame[9..];
            // PADDED: a pad length byte first, that many bytes of padding last.
            if flags & 0x8 != 0 && !payload.is_empty() {
                let pad = usize::from(payload[0]);
                payload = &payload[1..payload.len().saturating_sub(pad)];
            }
            let buffer = self.streams.entry(stream).or_default();
            buffer.extend_from_slice(payload);
            while buffer.len() >= 5 {
                let size = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
                if buffer.len() < 5 + size {
                    break;
                }
                let message: Vec<u8> = buffer.drain(..5 + size).skip(5).collect();
                for received in fields(&message, 1) {
                    let ids = fields(received, 1).filter_map(|id| String::from_utf8(id.to_vec()).ok());
                    ack_ids.extend(ids.map(|id| (stream, id)));
                }
            }
        }
    }
}

/// A protobuf field's value, as far as the proxy reads it.
enum Value<'a> {
    Varint,
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of a protobuf message, as (number, value); stops quietly at anything malformed.
fn walk(mut message: &[u8]) -> impl Iterator<Item = (u64, Value<'_>)> {
    std::iter::from_fn(move || {
        let key = varint(&mut message)?;
        let value = match key & 7 {
            0 => varint(&mut message).map(|_| Value::Varint)?,
            1 => take(&mut message, 8).map(|_| Value::Fixed)?,
            2 => {
                let length = usize::try_from(varint(&mut message)?).ok()?;
                Value::Bytes(take(&mut message, length)?)
            }
            5 => take(&mut message, 4).map(|_| Value::Fixed)?,
            _ => return None,
        };
        Some((key >> 3, value))
    })
}

/// The length-delimited fields numbered `number` of a protobuf message.
fn fields(message: &[u8], number: u64) -> impl Iterator<Item = &[u8]> {
    walk(message).filter_map(move |(n, value)| match value {
        Value::Bytes(bytes) if n == number => Some(bytes),
        _ => None,
    })
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, rest) = (bytes.get(..n)?, bytes.get(n..)?);
    *bytes = rest;
    Some(head)
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}
