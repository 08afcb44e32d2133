//! The batching of reads: many sources' reads coalesced into one request to a broker that can answer for many
//! queues at once (see the parent module for the timing rules).

use std::collections::HashSet;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

use super::{GATHER, GATHER_AT_MOST, JOIN_LATE};

/// A client whose broker answers for many sources in one request.
pub(crate) trait Batched: Send + Sync + Sized + 'static {
    /// What one source asks for.
    type Key: Clone + Eq + Hash + Send + 'static;
    /// The answer to one batch, which every source in it gets (each takes its own part).
    type Answer: Clone + Send + 'static;

    /// The client's batcher.
    fn batcher(&self) -> &Batcher<Self>;

    /// Asks the broker about every key at once.
    fn fetch(self: Arc<Self>, keys: Vec<Self::Key>) -> impl Future<Output = Self::Answer> + Send;
}

/// Reads waiting for a batch, and the batch in flight.
pub(crate) struct Batcher<C: Batched> {
    state: Mutex<BatchState<C>>,
}

/// Reads, each with what it asks and where its answer goes.
type Waiting<C> = Vec<(<C as Batched>::Key, oneshot::Sender<<C as Batched>::Answer>)>;

struct BatchState<C: Batched> {
    /// Reads for the next batch.
    waiting: Waiting<C>,
    /// The batch in flight: when it was sent, what it asks, and the reads that joined it late.
    in_flight: Option<InFlight<C>>,
    /// Whether a task is running batches.
    running: bool,
}

struct InFlight<C: Batched> {
    sent: tokio::time::Instant,
    keys: HashSet<C::Key>,
    late: Vec<oneshot::Sender<C::Answer>>,
}

impl<C: Batched> Default for Batcher<C> {
    fn default() -> Self {
        Batcher { state: Mutex::new(BatchState { waiting: Vec::new(), in_flight: None, running: false }) }
    }
}

impl<C: Batched> Batcher<C> {
    fn lock(&self) -> MutexGuard<'_, BatchState<C>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `key`'s batch answer from `client`: from the batch in flight if it left at most [`JOIN_LATE`] ago and asks for
/// `key`, else from the next one. `None` if the task running the batches went away (its runtime stopped).
pub(crate) async fn read<C: Batched>(client: &Arc<C>, key: C::Key) -> Option<C::Answer> {
    let (answer, answered) = oneshot::channel();
    let start_a_task = {
        let mut state = client.batcher().lock();
        match &mut state.in_flight {
            Some(batch) if batch.sent.elapsed() <= JOIN_LATE && batch.keys.contains(&key) => {
                batch.late.push(answer);
                false
            }
            _ => {
                state.waiting.push((key, answer));
                !std::mem::replace(&mut state.running, true)
            }
        }
    };
    if start_a_task {
        tokio::spawn(run_batches(client.clone()));
    }
    answered.await.ok()
}

/// Waits while reads keep arriving ([`GATHER`] apart at most), for at most [`GATHER_AT_MOST`]: a thousand targets
/// that tick in the same moment take a few milliseconds of CPU to get there, and should make one batch, not two.
async fn gather<C: Batched>(client: &Arc<C>) {
    let started = tokio::time::Instant::now();
    let mut waiting = 0;
    loop {
        tokio::time::sleep(GATHER).await;
        let now = client.batcher().lock().waiting.len();
        if now == waiting || started.elapsed() >= GATHER_AT_MOST {
            return;
        }
        waiting = now;
    }
}

/// Marks a client's batches as running while it lives. Dropped before [`Running::finish`] — the task was dropped, as
/// when its runtime shuts down — it fails the reads that were waiting (by dropping their senders) and lets the next
/// read start a task again.
struct Running<C: Batched> {
    client: Arc<C>,
    finished: bool,
}

impl<C: Batched> Running<C> {
    /// Ends the batches if no read waits; otherwise takes the waiting reads as the next batch.
    fn next_batch(&mut self) -> Option<Waiting<C>> {
        let mut state = self.client.batcher().lock();
        if state.waiting.is_empty() {
            state.running = false;
            self.finished = true;
            return None;
        }
        let batch = std::mem::take(&mut state.waiting);
        let keys = batch.iter().map(|(key, _)| key.clone()).collect();
        state.in_flight = Some(InFlight { sent: tokio::time::Instant::now(), keys, late: Vec::new() });
        Some(batch)
    }
}

impl<C: Batched> Drop for Running<C> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut state = self.client.batcher().lock();
        state.running = false;
        state.in_flight = None;
        state.waiting.clear();
    }
}

async fn run_batches<C: Batched>(client: Arc<C>) {
    let mut running = Running { client: client.clone(), finished: false };
    gather(&client).await;
    while let Some(batch) = running.next_batch() {
        let mut asked = HashSet::with_capacity(batch.len());
        let keys: Vec<C::Key> =
            batch.iter().filter(|(key, _)| asked.insert(key.clone())).map(|(k, _)| k.clone()).collect();
        let answer = client.clone().fetch(keys).await;
        let late = client.batcher().lock().in_flight.take().map(|batch| batch.late).unwrap_or_default();
        for sender in batch.into_iter().map(|(_, sender)| sender).chain(late) {
            let _ = sender.send(answer.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;

    /// A broker that answers a batch with the keys it was asked and its batch number, after `delay`.
    #[derive(Default)]
    struct Counting {
        batches: AtomicU32,
        delay: Duration,
        batcher: Batcher<Counting>,
    }

    impl Batched for Counting {
        type Key = u32;
        type Answer = (u32, Arc<Vec<u32>>);

        fn batcher(&self) -> &Batcher<Self> {
            &self.batcher
        }

        async fn fetch(self: Arc<Self>, keys: Vec<u32>) -> (u32, Arc<Vec<u32>>) {
            let number = self.batches.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(self.delay).await;
            (number, Arc::new(keys))
        }
    }

    // The batcher keeps time with tokio's clock, so these run on a paused one: the order of reads and batches is the
    // test's, not the machine load's.
    #[tokio::test(start_paused = true)]
    async fn reads_at_the_same_moment_share_one_batch_that_asks_each_key_once() {
        let broker = Arc::new(Counting::default());
        let reads = (0..100).map(|i| read(&broker, i % 10));
        let answers = futures::future::join_all(reads).await;
        assert_eq!(broker.batches.load(Ordering::SeqCst), 1);
        for answer in answers {
            let (batch, keys) = answer.expect("an answer");
            assert_eq!((batch, keys.len()), (1, 10), "each key asked once");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_after_a_batch_left_is_answered_by_a_fresh_one() {
        let broker = Arc::new(Counting { delay: Duration::from_millis(200), ..Counting::default() });
        let first = tokio::spawn({
            let broker = broker.clone();
            async move { read(&broker, 1).await }
        });
        // Joins the batch in flight: it left less than JOIN_LATE ago and asks the same key.
        tokio::time::sleep(GATHER + JOIN_LATE / 4).await;
        let joined = read(&broker, 1);
        // Asks after the batch left longer ago, or for a key it does not ask: the next batch, sent after this read.
        let late = async {
            tokio::time::sleep(JOIN_LATE * 2).await;
            read(&broker, 1).await
        };
        let other = read(&broker, 2);
        let (joined, late, other) = tokio::join!(joined, late, other);
        assert_eq!(first.await.expect("the first read").expect("an answer").0, 1);
        assert_eq!(joined.expect("an answer").0, 1, "joined the batch in flight");
        assert_eq!(late.expect("an answer").0, 2, "waited for a batch sent after it asked");
        assert_eq!(other.expect("an answer"), (2, Arc::new(vec![2, 1])), "its key was not in the batch in flight");
        assert_eq!(broker.batches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_batches_end_when_nobody_waits_and_start_again_on_the_next_read() {
        let broker = Arc::new(Counting::default());
        assert_eq!(read(&broker, 7).await.expect("an answer").0, 1);
        tokio::time::sleep(GATHER * 3).await;
        assert!(!broker.batcher.lock().running, "no task runs without reads");
        assert_eq!(read(&broker, 7).await.expect("an answer").0, 2);
    }
}
