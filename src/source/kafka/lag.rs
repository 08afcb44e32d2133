//! Consumer-group lag arithmetic, kept apart from the client so every rule (clamping, the reset policy for
//! partitions the group never committed, the replica caps) is tested without a broker.

use serde::Deserialize;

/// What counts as lag on a partition the group has never committed an offset for (`offsetResetPolicy`).
///
/// It should match the workers' own `auto.offset.reset`: a worker with `latest` skips the old messages when it
/// first gets the partition, so counting them would scale up for work nobody will do; one with `earliest` will
/// read them all, so they are real backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsetResetPolicy {
    /// No lag until the group commits (the Kafka consumers' default).
    #[default]
    Latest,
    /// Lag from the partition's low watermark, the oldest message still kept.
    Earliest,
}

/// The offsets of one partition, as the cluster reported them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// The group's committed offset (the next message it will read), if it ever committed one.
    pub committed: Option<i64>,
    /// The log-end offset (high watermark): the offset the next produced message gets.
    pub end: i64,
    /// The low watermark; read only for uncommitted partitions under [`OffsetResetPolicy::Earliest`], because it
    /// costs another ListOffsets round trip. Unknown counts as the log's start, 0.
    pub low: Option<i64>,
    /// Under [`OffsetResetPolicy::Latest`], the log-end offset when the agent first saw this partition without a
    /// committed offset: what was produced since then is work nobody will count until a worker runs.
    pub first_seen_end: Option<i64>,
    /// When the next record the group will read here was produced (Unix milliseconds, its Kafka timestamp), or an
    /// earlier record when that one was not read yet: known only for partitions with lag.
    pub next_timestamp_ms: Option<i64>,
}

impl PartitionOffsets {
    /// The offset of the next record the group will read here, when one is waiting there and the group has
    /// committed where it is (under `latest`, an uncommitted partition has no such record; under `earliest` it is
    /// the low watermark).
    pub fn next_unread(&self) -> Option<i64> {
        self.committed.or(self.low).filter(|from| self.end > *from)
    }

    /// Messages the group has yet to read here. Clamped at 0: a committed offset past the end (a topic recreated
    /// or truncated under the group) means nothing to read, not negative work that would hide other partitions'.
    ///
    /// Under `latest` a partition the group never committed counts what was produced since the agent first saw it:
    /// a group with no committed offsets (new, or expired while it sat at zero) has no member to commit, so without
    /// this its messages would pile up unseen and the Deployment would never wake.
    pub fn lag(&self, policy: OffsetResetPolicy) -> u64 {
        let from = match (self.committed, policy) {
            (Some(committed), _) => committed,
            (None, OffsetResetPolicy::Latest) => match self.first_seen_end {
                Some(first_seen) => first_seen,
                None => return 0,
            },
            (None, OffsetResetPolicy::Earliest) => self.low.unwrap_or(0),
        };
        u64::try_from(self.end.saturating_sub(from)).unwrap_or(0)
    }
}

/// A group's lag over a set of partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lag {
    /// The sum over partitions: the backlog.
    pub total: u64,
    /// Partitions measured.
    pub partitions: u32,
    /// Partitions with at least one message to read.
    pub partitions_with_lag: u32,
    /// Partitions the group has no committed offset on.
    pub uncommitted: u32,
    /// Whether, under `latest`, messages arrived on an uncommitted partition since the agent first saw it.
    pub new_on_uncommitted: bool,
    /// The earliest timestamp (Unix milliseconds) of the next record on the partitions with lag, when every one of
    /// them is known.
    pub oldest_unread_ms: Option<i64>,
    /// Lagging partitions whose next record's timestamp is unknown.
    pub lagging_without_timestamp: u32,
}

impl Lag {
    /// Adds up `partitions` under `policy`.
    pub fn of(partitions: impl IntoIterator<Item = PartitionOffsets>, policy: OffsetResetPolicy) -> Lag {
        partitions.into_iter().fold(Lag::default(), |mut sum, partition| {
            let lag = partition.lag(policy);
            sum.total = sum.total.saturating_add(lag);
            sum.partitions = sum.partitions.saturating_add(1);
            sum.partitions_with_lag = sum.partitions_with_lag.saturating_add(u32::from(lag > 0));
            if lag > 0 {
                match partition.next_timestamp_ms {
                    Some(produced) => {
                        sum.oldest_unread_ms =
                            Some(sum.oldest_unread_ms.map_or(produced, |oldest| oldest.min(produced)))
                    }
                    None => sum.lagging_without_timestamp = sum.lagging_without_timestamp.saturating_add(1),
                }
            }
            if partition.committed.is_none() {
                sum.uncommitted = sum.uncommitted.saturating_add(1);
                sum.new_on_uncommitted |= policy == OffsetResetPolicy::Latest && lag > 0;
            }
            sum
        })
    }

    /// How long the oldest unread message has waited at `now_ms` (Unix milliseconds): 0 when no partition has lag;
    /// unknown while a lagging partition's next record was not read (it may be the oldest). A clock behind the
    /// broker's reads 0.
    pub fn oldest_unread_age(&self, now_ms: i64) -> Option<std::time::Duration> {
        if self.partitions_with_lag == 0 {
            return Some(std::time::Duration::ZERO);
        }
        if self.lagging_without_timestamp > 0 {
            return None;
        }
        let waited = now_ms.saturating_sub(self.oldest_unread_ms?);
        Some(std::time::Duration::from_millis(u64::try_from(waited).unwrap_or(0)))
    }

    /// The most replicas that can do useful work. A group hands each partition to one consumer, so consumers
    /// beyond the partition count idle; `limit_to_partitions_with_lag` tightens that to the partitions that have
    /// work (KEDA's setting of the same name), and `allow_idle_consumers` lifts the cap for workers that are not
    /// plain group members (e.g. they fan out what one consumer reads).
    pub fn replica_cap(&self, allow_idle_consumers: bool, limit_to_partitions_with_lag: bool) -> Option<u32> {
        if allow_idle_consumers {
            None
        } else if limit_to_partitions_with_lag {
            Some(self.partitions_with_lag)
        } else {
            Some(self.partitions)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OffsetResetPolicy::{Earliest, Latest};

    fn at(committed: Option<i64>, end: i64, low: Option<i64>) -> PartitionOffsets {
        PartitionOffsets { committed, end, low, first_seen_end: None, next_timestamp_ms: None }
    }

    #[test]
    fn the_oldest_unread_age_is_the_earliest_next_record_on_a_lagging_partition() {
        let next =
            |committed, end, produced| PartitionOffsets { next_timestamp_ms: produced, ..at(committed, end, None) };
        let lag = Lag::of(
            [next(Some(5), 9, Some(40_000)), next(Some(2), 3, Some(10_000)), next(Some(7), 7, Some(1))],
            Latest,
        );
        assert_eq!(lag.oldest_unread_ms, Some(10_000), "a caught-up partition's record is no wait");
        assert_eq!(lag.oldest_unread_age(100_000), Some(std::time::Duration::from_secs(90)));
        assert_eq!(lag.oldest_unread_age(0), Some(std::time::Duration::ZERO), "a clock behind the broker's");
        let partly = Lag::of([next(Some(5), 9, Some(40_000)), next(Some(1), 9, None)], Latest);
        assert_eq!(partly.oldest_unread_age(100_000), None, "a lagging partition not read yet may hold the oldest");
        let idle = Lag::of([next(Some(9), 9, None)], Latest);
        assert_eq!(idle.oldest_unread_age(100_000), Some(std::time::Duration::ZERO), "nothing waits");
        assert_eq!(next(Some(9), 9, None).next_unread(), None);
        assert_eq!(next(Some(5), 9, None).next_unread(), Some(5));
        assert_eq!(next(None, 9, None).next_unread(), None, "under latest an uncommitted partition has none");
    }

    #[test]
    fn lag_is_end_minus_committed_clamped_at_zero() {
        assert_eq!(at(Some(40), 100, None).lag(Latest), 60);
        assert_eq!(at(Some(100), 100, None).lag(Latest), 0);
        assert_eq!(at(Some(150), 100, None).lag(Earliest), 0, "a committed offset past the end is no work");
        assert_eq!(at(Some(0), i64::MAX, None).lag(Latest), i64::MAX as u64);
        let clamped = Lag::of([at(Some(150), 100, None), at(Some(10), 30, None)], Latest);
        assert_eq!((clamped.total, clamped.partitions_with_lag), (20, 1), "a negative partition hides nothing");
    }

    #[test]
    fn uncommitted_partitions_follow_the_reset_policy() {
        assert_eq!(at(None, 100, Some(30)).lag(Latest), 0, "latest: the group will skip what is there");
        assert_eq!(at(None, 100, Some(30)).lag(Earliest), 70, "earliest: everything still kept");
        assert_eq!(at(None, 100, None).lag(Earliest), 100, "an unknown low watermark is the log's start");
        assert_eq!(at(None, 0, Some(0)).lag(Earliest), 0);
        assert_eq!(at(Some(90), 100, Some(30)).lag(Earliest), 10, "a committed offset wins over the policy");
    }

    #[test]
    fn under_latest_what_arrived_since_first_seen_counts_and_wakes() {
        let seen_at = |committed, end, first| PartitionOffsets { first_seen_end: first, ..at(committed, end, None) };
        assert_eq!(seen_at(None, 100, Some(100)).lag(Latest), 0, "nothing new since the agent looked");
        assert_eq!(seen_at(None, 107, Some(100)).lag(Latest), 7);
        assert_eq!(seen_at(Some(104), 107, Some(100)).lag(Latest), 3, "a commit wins");
        let lag =
            Lag::of([seen_at(None, 107, Some(100)), seen_at(Some(1), 2, None), seen_at(None, 5, Some(5))], Latest);
        assert_eq!((lag.total, lag.uncommitted, lag.new_on_uncommitted), (8, 2, true));
        let quiet = Lag::of([seen_at(None, 5, Some(5))], Latest);
        assert_eq!((quiet.total, quiet.uncommitted, quiet.new_on_uncommitted), (0, 1, false));
        assert!(!Lag::of([at(None, 5, Some(0))], Earliest).new_on_uncommitted, "under earliest it is plain lag");
    }

    #[test]
    fn sums_over_partitions_and_counts_those_with_lag() {
        let partitions = [at(Some(0), 10, None), at(None, 5, Some(0)), at(Some(7), 7, None), at(Some(1), 4, None)];
        let of = |policy| {
            let lag = Lag::of(partitions, policy);
            (lag.total, lag.partitions, lag.partitions_with_lag, lag.uncommitted)
        };
        assert_eq!(of(Latest), (13, 4, 2, 1));
        assert_eq!(of(Earliest), (18, 4, 3, 1));
        assert_eq!(Lag::of([], Latest), Lag::default());
    }

    #[test]
    fn replicas_are_capped_at_partitions_unless_idle_consumers_are_allowed() {
        let lag = Lag { total: 500, partitions: 16, partitions_with_lag: 3, ..Lag::default() };
        assert_eq!(lag.replica_cap(false, false), Some(16));
        assert_eq!(lag.replica_cap(false, true), Some(3));
        assert_eq!(lag.replica_cap(true, false), None);
        let one = Lag { total: 1, partitions: 16, partitions_with_lag: 1, ..Lag::default() };
        assert_eq!(one.replica_cap(false, true), Some(1), "any lag leaves room for one consumer");
        let idle = Lag { total: 0, partitions: 16, partitions_with_lag: 0, ..Lag::default() };
        assert_eq!(idle.replica_cap(false, true), Some(0), "no lag, no consumer needed");
    }

    #[test]
    fn the_policy_is_spelt_as_kafka_spells_it() {
        assert_eq!(serde_norway::from_str::<OffsetResetPolicy>("earliest").expect("parses"), Earliest);
        assert_eq!(OffsetResetPolicy::default(), Latest);
        let wrong = serde_norway::from_str::<OffsetResetPolicy>("smallest").expect_err("old name refused");
        assert!(wrong.to_string().contains("expected `latest` or `earliest`"), "{wrong}");
    }
}
