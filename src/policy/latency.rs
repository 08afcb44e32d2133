//! Latency-target mode: as many replicas as keep every job's wait under `maxWait`, by Little's law.
//!
//! A backlog target (`backlogPerWorker`) says how deep the queue may be, which is only a proxy for what users feel:
//! how long a job waits. With `latencyTarget: {maxWait, jobDuration, concurrency}` the count comes from the traffic
//! itself:
//!
//! ```text
//! replicas = ceil((arrivalRate · jobDuration + waiting · jobDuration / maxWait) / concurrency)
//! ```
//!
//! The first term is Little's law for the workers — the slots that arrivals keep busy on average; the second is the
//! slots that empty what is already waiting within `maxWait`. `waiting` is the backlog minus the in-flight messages
//! when the source reports them (sources count in-flight messages in the backlog, as KEDA does by default).
//!
//! Two numbers have to be learned from the readings, per source ([`SourceLearning`]):
//!
//! * **the arrival rate** — the source's own rate when it has one (RabbitMQ's publish rate), else the backlog's
//!   change plus what the busy workers complete (`in-flight / jobDuration`). It is smoothed with a slow
//!   exponential average that ignores Poisson noise, but jumps to the newest rate as soon as the arrivals of the
//!   last poll, or of the last two, are further from the average than noise can plausibly explain (see
//!   [`ArrivalRate`]), so a burst — or its end — is seen within one or two polls;
//! * **the job duration**, when `jobDuration` is not configured — Little's law again, on the worker side: busy
//!   slot-seconds (in-flight × time) over jobs completed (arrivals minus the backlog's growth — for Kafka, the
//!   committed offsets' growth), summed over about the last hundred jobs. It needs a source that reports its
//!   arrival rate (RabbitMQ with `managementUrl`, Kafka); without an in-flight count, the busy slots are the
//!   replicas' (or the backlog, when smaller). Until enough jobs have completed, the source's `backlogPerWorker`
//!   recommendation stands in. Sources that cannot learn need `jobDuration`; `check` says so.

use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer};

use super::Reading;
use crate::validation::{Problem, duration};

/// `latencyTarget:` of a target.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LatencyTarget {
    /// The longest a job should wait before a worker takes it.
    #[serde(with = "duration")]
    pub max_wait: Duration,
    /// How long one job takes; learned from the sources' arrival rate and in-flight count when omitted.
    #[serde(default, deserialize_with = "optional_duration")]
    pub job_duration: Option<Duration>,
    /// Jobs one replica works on at once.
    #[serde(default = "one")]
    pub concurrency: u32,
}

fn one() -> u32 {
    1
}

fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration::deserialize(d).map(Some)
}

impl LatencyTarget {
    /// Problems with this block, relative to it.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.max_wait.is_zero() {
            problems.push(Problem::new(
                "maxWait",
                "must be longer than zero (no number of replicas makes every job start at once); use e.g. `2m`",
            ));
        }
        if self.job_duration.is_some_and(|d| d.is_zero()) {
            problems.push(Problem::new(
                "jobDuration",
                "must be longer than zero; omit it to learn it from the sources' arrival rate and in-flight count",
            ));
        }
        if self.concurrency == 0 {
            problems.push(Problem::new("concurrency", "must be at least 1 job per replica"));
        }
        problems
    }
}

/// The arrival-rate average reacts to change over about this long, so that noise does not move the count.
const RATE_TIME_CONSTANT_S: f64 = 60.0;
/// One poll's arrivals this surprising (about one chance in a million of being noise) mean the traffic changed.
const ONE_POLL_SURPRISE: f64 = 14.0;
/// Two polls' arrivals this surprising (about one in 150,000) mean the traffic changed.
const TWO_POLL_SURPRISE: f64 = 12.0;
/// The fewest arrivals per poll the average is taken to predict, so that a few arrivals after silence stand out
/// without a single one counting as a change.
const MIN_EXPECTED_ARRIVALS: f64 = 0.5;
/// Job durations are averaged over about this many of the latest jobs, however long they took to come.
const JOBS_REMEMBERED: f64 = 100.0;
/// Completed jobs before a learned job duration is trusted.
const MIN_COMPLETIONS_TO_LEARN: f64 = 10.0;

/// What latency mode has learned about one source from its successive readings.
#[derive(Debug, Clone, Default)]
pub struct SourceLearning {
    previous: Option<Previous>,
    arrival_rate: ArrivalRate,
    busy_slot_seconds: f64,
    completions: f64,
}

#[derive(Debug, Clone, Copy)]
struct Previous {
    /// When the data was sampled: the read's time minus its `data_age`.
    at: Instant,
    backlog: f64,
    in_flight: Option<f64>,
}

/// A sampled reading whose data point is this close to the previous one's is the same point read again (the gap is
/// the jitter of two reads' latencies).
const SAME_SAMPLE: Duration = Duration::from_millis(500);

/// The estimates after one reading.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Estimates {
    /// Smoothed arrivals per second, once one interval has been seen.
    pub arrival_rate: Option<f64>,
    /// The job duration in seconds: configured, or learned once enough jobs completed.
    pub job_duration_s: Option<f64>,
    /// Seconds since the previous reading, once there was one.
    pub interval_s: Option<f64>,
    /// How much the backlog grew since the previous reading (negative when it shrank).
    pub backlog_growth: Option<f64>,
    /// Jobs completed per second over the last interval, for sources that report their arrival rate (arrivals
    /// minus the backlog's growth).
    pub completion_rate: Option<f64>,
}

impl SourceLearning {
    /// Takes one reading at `now`. `configured` is `jobDuration` in seconds if set; `busy_fallback` is how many
    /// worker slots are busy when the source does not say (current replicas × concurrency).
    ///
    /// Time is the data's own: a reading with a `data_age` was sampled that long before `now`. Sampled sources
    /// (Cloud Monitoring's one point a minute, a Prometheus value between scrapes) return the same point at several
    /// polls; that is no new observation, and the next point's change spreads over the time between the two
    /// points, not over one poll — otherwise a minute's arrivals would look like a burst in five seconds.
    pub fn observe(
        &mut self,
        now: Instant,
        reading: &Reading,
        configured: Option<f64>,
        busy_fallback: f64,
    ) -> Estimates {
        let mut estimates =
            Estimates { job_duration_s: configured.or_else(|| self.learned_duration()), ..Estimates::default() };
        estimates.arrival_rate = self.arrival_rate.average();
        let sampled_at = reading.data_age.and_then(|age| now.checked_sub(age)).unwrap_or(now);
        let same_point = |previous: &Previous| {
            reading.data_age.is_some() && sampled_at.saturating_duration_since(previous.at) < SAME_SAMPLE
        };
        if self.previous.as_ref().is_some_and(same_point) {
            return estimates;
        }
        let previous =
            self.previous.replace(Previous { at: sampled_at, backlog: reading.backlog, in_flight: reading.in_flight });
        let Some(previous) = previous else {
            return estimates;
        };
        let dt = sampled_at.saturating_duration_since(previous.at).as_secs_f64();
        if dt <= 0.0 {
            return estimates;
        }
        let growth = reading.backlog - previous.backlog;
        let busy = match (previous.in_flight, reading.in_flight) {
            (Some(before), Some(after)) => (before + after) / 2.0,
            _ => busy_fallback.min(previous.backlog),
        };
        let raw_rate = match reading.arrival_rate {
            Some(rate) => Some(rate),
            None => estimates.job_duration_s.map(|d| (growth / dt + busy / d).max(0.0)),
        };
        // Completions are the arrivals the backlog did not keep: for Kafka, exactly the committed offsets' growth.
        // Without an in-flight count the busy slots are the replicas' (or the backlog, when smaller).
        if let Some(rate) = reading.arrival_rate {
            estimates.completion_rate = Some((rate * dt - growth).max(0.0) / dt);
            self.learn_duration(dt, busy, rate * dt - growth);
            estimates.job_duration_s = configured.or_else(|| self.learned_duration());
        }
        if let Some(rate) = raw_rate {
            estimates.arrival_rate = Some(self.arrival_rate.observe(rate, dt));
        }
        estimates.interval_s = Some(dt);
        estimates.backlog_growth = Some(growth);
        estimates
    }

    fn learn_duration(&mut self, dt: f64, busy: f64, completed: f64) {
        let completed = completed.max(0.0);
        let keep = (-completed / JOBS_REMEMBERED).exp();
        self.busy_slot_seconds = self.busy_slot_seconds * keep + busy * dt;
        self.completions = self.completions * keep + completed;
    }

    fn learned_duration(&self) -> Option<f64> {
        (self.completions >= MIN_COMPLETIONS_TO_LEARN).then(|| self.busy_slot_seconds / self.completions)
    }
}

/// The smoothed arrival rate of one source.
///
/// Arrivals in an interval are close to Poisson. Most intervals are noise around the average and move it only a
/// little (an exponential average over about a minute). An interval — or two in a row — whose count the average
/// makes very unlikely is a change of regime, and the average restarts from what those intervals saw. "Very
/// unlikely" is measured by the Chernoff bound on the Poisson tail: seeing `k` arrivals where `μ` were expected
/// has a probability of at most `e^(−μ·h(k/μ))`, with `h(x) = x·ln x − x + 1`; [`surprise`] is that exponent. It
/// treats a burst (many more) and a stop (none at all) alike.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ArrivalRate {
    average: Option<f64>,
    previous: Option<(f64, f64)>,
}

impl ArrivalRate {
    /// Takes an interval of `dt` seconds in which arrivals came at `rate` per second; returns the new average.
    pub fn observe(&mut self, rate: f64, dt: f64) -> f64 {
        let arrivals = rate * dt;
        let next = match self.average {
            None => rate,
            Some(average) => {
                let two_polls = self.previous.map(|(before, before_dt)| (arrivals + before, dt + before_dt));
                if surprise(average * dt, arrivals) > ONE_POLL_SURPRISE {
                    rate
                } else if let Some((seen, seconds)) =
                    two_polls.filter(|&(seen, seconds)| surprise(average * seconds, seen) > TWO_POLL_SURPRISE)
                {
                    seen / seconds
                } else {
                    average + (1.0 - (-dt / RATE_TIME_CONSTANT_S).exp()) * (rate - average)
                }
            }
        };
        self.average = Some(next);
        self.previous = Some((arrivals, dt));
        next
    }

    /// The current average, once an interval has been seen.
    pub fn average(&self) -> Option<f64> {
        self.average
    }
}

/// How surprising `seen` arrivals are when `expected` were due: `μ·h(k/μ)`, the exponent of the Chernoff bound
/// on the Poisson tail (about `z²/2` for a deviation of `z` standard deviations).
pub fn surprise(expected: f64, seen: f64) -> f64 {
    let expected = expected.max(MIN_EXPECTED_ARRIVALS);
    let ratio = seen.max(0.0) / expected;
    let h = if ratio > 0.0 { ratio * ratio.ln() - ratio + 1.0 } else { 1.0 };
    expected * h
}

/// The latency-mode count for one source, before the tolerance and not yet rounded:
/// `(arrivalRate · D + waiting · D / maxWait · correction) / c`, with the measured-wait [`correction`]. `None` while
/// the job duration is unknown.
pub fn wanted_slots(target: &LatencyTarget, reading: &Reading, estimates: &Estimates) -> Option<f64> {
    let duration = estimates.job_duration_s?;
    let arrivals = estimates.arrival_rate.unwrap_or(0.0);
    let draining = waiting(reading) * duration / target.max_wait.as_secs_f64() * correction(target, reading);
    Some((arrivals * duration + draining) / f64::from(target.concurrency))
}

/// The most the measured wait multiplies the capacity for the waiting jobs.
const MOST_CORRECTION: f64 = 4.0;

/// Measured wait closes the loop: Little's law is an estimate (of arrivals, of the job duration), and when the
/// oldest waiting message has already waited longer than `maxWait` the estimate was short. The capacity for the
/// waiting jobs is then multiplied by how far over the limit the oldest is (`age / maxWait`, at most 4), until it
/// falls back under; 1 when the source cannot tell the age or all is well.
pub fn correction(target: &LatencyTarget, reading: &Reading) -> f64 {
    let limit = target.max_wait.as_secs_f64();
    let age = reading.oldest_message_age.map_or(0.0, |age| age.as_secs_f64());
    if age > limit { (age / limit).min(MOST_CORRECTION) } else { 1.0 }
}

/// The messages not yet taken by a worker: the backlog minus the in-flight ones, when the source reports them.
pub fn waiting(reading: &Reading) -> f64 {
    (reading.backlog - reading.in_flight.unwrap_or(0.0)).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(max_wait: u64, job: Option<u64>, concurrency: u32) -> LatencyTarget {
        LatencyTarget {
            max_wait: Duration::from_secs(max_wait),
            job_duration: job.map(Duration::from_secs),
            concurrency,
        }
    }

    fn reading(backlog: f64, in_flight: Option<f64>, arrival_rate: Option<f64>) -> Reading {
        Reading { backlog, in_flight, arrival_rate, ..Reading::default() }
    }

    #[test]
    fn littles_law_counts_arrivals_and_the_waiting_backlog() {
        // 2 jobs/s of 10 s jobs keep 20 slots busy; 30 waiting jobs of 10 s within 60 s need 5 more; 2 per replica.
        let estimates = Estimates { arrival_rate: Some(2.0), job_duration_s: Some(10.0), ..Estimates::default() };
        let slots = wanted_slots(&target(60, Some(10), 2), &reading(50.0, Some(20.0), None), &estimates);
        assert_eq!(slots, Some(12.5));
    }

    #[test]
    fn without_a_job_duration_there_is_no_latency_count() {
        let estimates = Estimates { arrival_rate: Some(2.0), ..Estimates::default() };
        assert_eq!(wanted_slots(&target(60, None, 1), &reading(50.0, None, None), &estimates), None);
    }

    #[test]
    fn surprise_is_the_chernoff_exponent_of_the_poisson_tail() {
        // As many as expected: no surprise; none of 16 expected: e^(−16).
        assert_eq!(surprise(5.0, 5.0), 0.0);
        assert_eq!(surprise(16.0, 0.0), 16.0);
        // 21 where 5 were due: 5 · (4.2 ln 4.2 − 3.2).
        assert!((surprise(5.0, 21.0) - 5.0 * (4.2 * 4.2f64.ln() - 3.2)).abs() < 1e-12);
        // After silence the average still predicts half an arrival.
        assert_eq!(surprise(0.0, 0.0), surprise(0.5, 0.0));
    }

    #[test]
    fn noise_moves_the_rate_a_little() {
        // At 1 job/s over 5 s, 5 ± 2.2 arrive: 12 is noise (surprise 3.5), and so are 8 then 12 (2.9 over two
        // polls). The average moves by 1 − e^(−5/60) of the gap each time.
        let weight = 1.0 - (-5.0f64 / 60.0).exp();
        let mut rate = ArrivalRate::default();
        assert_eq!(rate.observe(1.0, 5.0), 1.0);
        let after_12 = rate.observe(2.4, 5.0);
        assert!((after_12 - (1.0 + weight * 1.4)).abs() < 1e-12, "{after_12}");
        let after_8 = rate.observe(1.6, 5.0);
        assert!((after_8 - (after_12 + weight * (1.6 - after_12))).abs() < 1e-12, "{after_8}");
    }

    #[test]
    fn a_burst_is_seen_in_one_poll_and_a_stop_in_two() {
        let mut rate = ArrivalRate::default();
        rate.observe(1.0, 5.0);
        // 30 arrivals where 5 were due (surprise 29.8): the traffic changed.
        assert_eq!(rate.observe(6.0, 5.0), 6.0);
        // After silence, 8 arrivals where half of one is predicted.
        let mut quiet = ArrivalRate::default();
        quiet.observe(0.0, 5.0);
        assert_eq!(quiet.observe(1.6, 5.0), 1.6);
        // Traffic stops: one empty poll (surprise 8.3) could be noise, two (16.7) cannot.
        let mut stopping = ArrivalRate::default();
        stopping.observe(1.67, 5.0);
        let after_one = stopping.observe(0.0, 5.0);
        assert!(after_one > 1.5, "{after_one}");
        assert_eq!(stopping.observe(0.0, 5.0), 0.0);
    }

    #[test]
    fn the_source_rate_is_smoothed_and_growth_reported() {
        let t0 = Instant::now();
        let mut learning = SourceLearning::default();
        let first = learning.observe(t0, &reading(10.0, Some(4.0), Some(1.0)), Some(10.0), 4.0);
        assert_eq!((first.arrival_rate, first.backlog_growth, first.interval_s), (None, None, None));
        let second =
            learning.observe(t0 + Duration::from_secs(5), &reading(20.0, Some(4.0), Some(1.0)), Some(10.0), 4.0);
        assert_eq!((second.arrival_rate, second.backlog_growth, second.interval_s), (Some(1.0), Some(10.0), Some(5.0)));
    }

    #[test]
    fn without_a_source_rate_arrivals_are_growth_plus_completions() {
        // The backlog grew by 10 in 5 s while 4 busy slots completed 4/10 jobs per second: 2.4 jobs/s arrived.
        let t0 = Instant::now();
        let mut learning = SourceLearning::default();
        learning.observe(t0, &reading(10.0, Some(4.0), None), Some(10.0), 4.0);
        let estimates = learning.observe(t0 + Duration::from_secs(5), &reading(20.0, Some(4.0), None), Some(10.0), 4.0);
        assert_eq!(estimates.arrival_rate, Some(2.4));
    }

    #[test]
    fn learns_the_job_duration_from_busy_time_over_completions() {
        // Steady state: 8 slots busy, 2 jobs/s arrive and the backlog stays put: 8 / 2 = 4 s per job, that is 10
        // jobs and 40 busy slot-seconds per 5 s interval.
        let t0 = Instant::now();
        let at = |tick: u64| t0 + Duration::from_secs(tick * 5);
        let mut learning = SourceLearning::default();
        let steady = reading(30.0, Some(8.0), Some(2.0));
        assert_eq!(learning.observe(at(0), &steady, None, 1.0).job_duration_s, None, "no interval yet");
        assert_eq!(learning.observe(at(1), &steady, None, 1.0).job_duration_s, Some(4.0));
        // The jobs get twice as long: 16 slots busy for the same 2 jobs/s. The old jobs weigh e^(−n/100) after n
        // new ones, so after 100 jobs (10 intervals) the estimate is past 7.5 (the first interval, averaging 8 and
        // 16 in flight, counts 12); after 1,000 it is there.
        let longer = reading(30.0, Some(16.0), Some(2.0));
        let mut learned = Vec::new();
        for tick in 2..102 {
            learned.push(learning.observe(at(tick), &longer, None, 1.0).job_duration_s.unwrap_or(0.0));
        }
        assert!(learned[9] > 7.5 && learned[9] < 8.0, "{}", learned[9]);
        assert!((learned[99] - 8.0).abs() < 1e-3, "{}", learned[99]);
        // A configured duration always wins.
        assert_eq!(learning.observe(at(102), &longer, Some(7.0), 1.0).job_duration_s, Some(7.0));
    }

    #[test]
    fn learns_the_job_duration_without_an_in_flight_count_as_kafka_reports() {
        // Kafka: 2 messages/s arrive (the log ends' growth), the lag stays at 30, so the committed offsets grow by 2/s
        // too; 8 replicas, all busy since the lag exceeds them: 8 / 2 = 4 s per job.
        let t0 = Instant::now();
        let mut learning = SourceLearning::default();
        let kafka = reading(30.0, None, Some(2.0));
        assert_eq!(learning.observe(t0, &kafka, None, 8.0).job_duration_s, None);
        let learned = learning.observe(t0 + Duration::from_secs(5), &kafka, None, 8.0).job_duration_s;
        assert_eq!(learned, Some(4.0));
    }

    #[test]
    fn validation_names_each_field() {
        let bad = LatencyTarget { max_wait: Duration::ZERO, job_duration: Some(Duration::ZERO), concurrency: 0 };
        let paths: Vec<String> = bad.problems().into_iter().map(|p| p.path).collect();
        assert_eq!(paths, ["maxWait", "jobDuration", "concurrency"]);
        assert!(target(60, None, 1).problems().is_empty());
    }
}
