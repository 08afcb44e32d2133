//! A trace fitted to a recording, so that `tune --observations` searches settings on the user's own traffic.
//!
//! A recording (a shadow recording, or any replay observations) holds what the sources said at each poll — the
//! backlog, and for some sources the arrival rate and the in-flight count — not the jobs themselves. The fit
//! rebuilds jobs from it:
//!
//! * **arrivals**: the recorded arrival rates (summed over the target's sources) times the time between polls,
//!   spread evenly over each interval; where a poll has no rate, the backlog's growth plus what the live replicas
//!   worked off (at the job duration below). The jobs waiting at the first poll arrive at time 0.
//! * **durations**: every job lasts the job duration latency mode would use — `latencyTarget.jobDuration` when
//!   configured, else the one it learns from the recording (busy slot-seconds over completed jobs, Little's law).
//!   A recording shows the mean, not the spread: on a heavy-tailed workload real waits are longer than the fit's.

use crate::config::TargetConfig;
use crate::replay::Tick;
use crate::replay::report::{grown_and_served, job_duration, recorded_rate, waiting_in};
use crate::sim::Job;

/// Jobs rebuilt from a recording, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    pub jobs: Vec<Job>,
    /// One sentence per choice the fit made, for the user.
    pub how: String,
}

/// Why a recording cannot be turned into a trace.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    /// Fewer than two polls: no interval to see arrivals in.
    #[error("the recording has {0} poll(s); fitting a trace needs at least two")]
    TooShort(usize),
    /// No job duration configured, and none learnable.
    #[error(
        "no job duration: the recording does not show enough completed jobs to learn one (that needs a source \
         that reports its arrival rate, e.g. RabbitMQ with managementUrl or Kafka); set latencyTarget.jobDuration"
    )]
    NoJobDuration,
    /// Nothing arrived in the whole recording.
    #[error("no job arrives in the recording: there is nothing to tune on")]
    NoArrivals,
}

/// Fits a trace to `ticks`, as `target` reads them.
pub fn fit(target: &TargetConfig, ticks: &[Tick]) -> Result<Fitted, FitError> {
    if ticks.len() < 2 {
        return Err(FitError::TooShort(ticks.len()));
    }
    let (Some(duration_s), duration_from) = job_duration(target, ticks) else {
        return Err(FitError::NoJobDuration);
    };
    let concurrency = f64::from(target.latency_target.map_or(1, |l| l.concurrency.max(1)));
    let start_s = ticks[0].time_s;
    let mut waiting = waiting_in(&ticks[0], &vec![0.0; target.sources.len()]);
    let mut jobs = vec![Job { arrival_s: 0.0, duration_s }; waiting.iter().sum::<f64>().round() as usize];
    let (mut from_rates, mut from_growth) = (0usize, 0usize);
    // Arrivals owed but not yet whole: a rate of 0.3/s over 5 s polls is one job every few polls, not none.
    let mut carry = 0.0;
    let mut live_replicas = ticks[0].live_replicas.unwrap_or(0);
    for pair in ticks.windows(2) {
        let (before, now) = (&pair[0], &pair[1]);
        let dt = now.time_s - before.time_s;
        let now_waiting = waiting_in(now, &waiting);
        let arrived = match recorded_rate(now) {
            Some(rate) => {
                from_rates += 1;
                rate * dt
            }
            None => {
                from_growth += 1;
                let (before_sum, now_sum) = (waiting.iter().sum(), now_waiting.iter().sum());
                grown_and_served(before_sum, now_sum, live_replicas, Some(duration_s), concurrency, dt)
            }
        };
        carry += arrived;
        let whole = carry.floor();
        carry -= whole;
        let count = whole as usize;
        for k in 0..count {
            let offset = dt * (k as f64 + 0.5) / count as f64;
            jobs.push(Job { arrival_s: before.time_s - start_s + offset, duration_s });
        }
        waiting = now_waiting;
        live_replicas = now.live_replicas.unwrap_or(live_replicas);
    }
    if jobs.is_empty() {
        return Err(FitError::NoArrivals);
    }
    let span_s = ticks[ticks.len() - 1].time_s - start_s;
    let arrivals_from = match (from_rates, from_growth) {
        (_, 0) => "the recorded arrival rates".to_owned(),
        (0, _) => "the backlog's growth plus what the live replicas worked off (no arrival_rate recorded)".to_owned(),
        (r, g) => format!("the recorded arrival rates ({r} intervals) or, without one, the backlog's growth ({g})"),
    };
    let how = format!(
        "fitted {} jobs to {} polls over {span_s:.0}s: arrivals from {arrivals_from}, spread evenly between polls; \
         every job lasts {duration_s:.1}s ({duration_from}), the mean — the recording does not show the spread",
        jobs.len(),
        ticks.len()
    );
    Ok(Fitted { jobs, how })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::read_observations;
    use crate::sim::run::{default_config, run_agent};

    fn target() -> TargetConfig {
        default_config().targets[0].clone()
    }

    /// A queue fed at 0.5 jobs/s whose 4 workers each finish a 6 s job in turn: 2 busy on average.
    fn recording(polls: usize, with_rates: bool) -> String {
        let mut text = String::from(if with_rates {
            "time_s,source,backlog,in_flight,arrival_rate\n"
        } else {
            "time_s,source,backlog,in_flight\n"
        });
        for i in 0..polls {
            let backlog = 3.0 + (i % 2) as f64;
            let rate = if with_rates { ",0.5" } else { "" };
            text.push_str(&format!("{},0,{backlog},3{rate}\n", i * 5));
        }
        text
    }

    #[test]
    fn arrivals_follow_the_recorded_rate_and_durations_the_learned_mean() {
        let target = target();
        let ticks = read_observations(&recording(241, true), &target).expect("valid");
        let fitted = fit(&target, &ticks).expect("fits");
        // 1,200 s at 0.5 jobs/s, and nothing waiting at the start (the backlog there is in flight).
        assert_eq!(fitted.jobs.len(), 600, "{}", fitted.how);
        let (learned, _) = job_duration(&target, &ticks);
        assert!(fitted.jobs.iter().all(|j| Some(j.duration_s) == learned));
        // Little's law: 3 busy slots over 0.5 completions a second.
        assert!((fitted.jobs[0].duration_s - 6.0).abs() < 0.5, "{}", fitted.jobs[0].duration_s);
        assert!(fitted.jobs.windows(2).all(|w| w[0].arrival_s <= w[1].arrival_s));
        assert!(fitted.how.contains("the recorded arrival rates"), "{}", fitted.how);
        assert!(fitted.how.contains("learned from the recording"), "{}", fitted.how);
    }

    #[test]
    fn a_fitted_trace_runs_in_the_simulator() {
        let target = target();
        let ticks = read_observations(&recording(241, true), &target).expect("valid");
        let fitted = fit(&target, &ticks).expect("fits");
        let settings = crate::sim::WorldSettings { initial_replicas: 1, ..crate::sim::WorldSettings::default() };
        let report = run_agent(fitted.jobs, &target, std::time::Duration::from_secs(5), settings, &mut |_| {})
            .expect("runs")
            .report;
        assert_eq!(report.jobs, 600);
        assert_eq!(report.unfinished, 0);
    }

    #[test]
    fn without_arrival_rates_or_a_job_duration_it_says_what_is_missing() {
        let target = target();
        let ticks = read_observations(&recording(241, false), &target).expect("valid");
        assert_eq!(fit(&target, &ticks), Err(FitError::NoJobDuration));
        assert_eq!(fit(&target, &ticks[..1]), Err(FitError::TooShort(1)));
    }

    #[test]
    fn a_configured_job_duration_lets_the_backlog_growth_stand_in_for_rates() {
        let mut target = target();
        let latency = crate::policy::latency::LatencyTarget {
            max_wait: std::time::Duration::from_secs(60),
            job_duration: Some(std::time::Duration::from_secs(10)),
            concurrency: 1,
        };
        target.latency_target = Some(latency);
        let text = "time_s,source,backlog,live_replicas,target\n0,0,0,2,w\n10,0,5,2,w\n20,0,5,2,w\n";
        let ticks = read_observations(text, &target).expect("valid");
        let fitted = fit(&target, &ticks).expect("fits");
        // 5 grew in the first 10 s while 2 replicas served 2 more; 2 served and none grew in the next.
        assert_eq!(fitted.jobs.len(), 9, "{}", fitted.how);
        assert!(fitted.jobs.iter().all(|j| j.duration_s == 10.0));
        assert!(fitted.how.contains("latencyTarget.jobDuration"), "{}", fitted.how);
    }
}
