//! Scheduled floors: more replicas before a peak everyone knows is coming.
//!
//! Reactive scaling always lags: pods take time to start. When the peak is on the calendar (the start of the
//! workday, a sale), a schedule raises `minReplicas` for a while: `{cron: "0 8 * * 1-5", duration: 10h,
//! minReplicas: 5, timezone: Europe/Lisbon}` keeps at least 5 replicas from 08:00 to 18:00 Lisbon time on weekdays.
//! A floor bypasses the rate policies, as `minReplicas` does in the HPA: pre-warming is its whole point.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};

use crate::validation::{Problem, duration};

/// One entry of `schedules:`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Schedule {
    /// When the floor starts, as a five-field cron expression (`minute hour day-of-month month day-of-week`).
    pub cron: String,
    /// How long the floor lasts after each start.
    #[serde(with = "duration")]
    pub duration: Duration,
    /// The floor.
    pub min_replicas: u32,
    /// The IANA time zone the cron expression is read in; default UTC.
    #[serde(default)]
    pub timezone: Option<String>,
}

impl Schedule {
    /// Problems with this schedule, relative to it.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        match parse_cron(&self.cron) {
            Err(e) => problems.push(Problem::new(
                "cron",
                format!("`{}` is not a cron expression ({e}); write five fields, e.g. `0 8 * * 1-5`", self.cron),
            )),
            Ok(cron) if !ever_fires(&cron) => problems.push(Problem::new(
                "cron",
                format!(
                    "`{}` never fires: no date matches its day and month (e.g. 30 February); check both fields",
                    self.cron
                ),
            )),
            Ok(_) => {}
        }
        if let Some(tz) = &self.timezone
            && Tz::from_str(tz).is_err()
        {
            problems.push(Problem::new(
                "timezone",
                format!("`{tz}` is not an IANA time zone; write e.g. `Europe/Lisbon` or `UTC`"),
            ));
        }
        if self.duration.is_zero() {
            problems.push(Problem::new("duration", "must be longer than zero, e.g. `10h`"));
        }
        problems
    }

    /// The schedule ready to evaluate; `None` if it has problems (validation reports them).
    pub fn compile(&self) -> Option<CompiledSchedule> {
        let tz = match &self.timezone {
            Some(name) => Tz::from_str(name).ok()?,
            None => Tz::UTC,
        };
        Some(CompiledSchedule {
            cron: parse_cron(&self.cron).ok()?,
            cron_text: self.cron.clone(),
            tz,
            duration: chrono::Duration::from_std(self.duration).ok()?,
            min_replicas: self.min_replicas,
        })
    }
}

fn parse_cron(text: &str) -> Result<Cron, croner::errors::CronError> {
    Cron::from_str(text)
}

/// Whether `cron` matches any moment at all. Every day-and-month combination that exists comes round within
/// eight years (29 February included), so one search over that span settles it, and a schedule that could never
/// raise its floor is refused instead of silently doing nothing — and instead of each decision searching for a
/// start back to the year 0.
fn ever_fires(cron: &Cron) -> bool {
    use chrono::TimeZone;
    let from = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).single().expect("a valid date");
    cron.find_next_occurrence(&from, true).is_ok_and(|next| next.signed_duration_since(from).num_days() < 8 * 366)
}

/// A schedule with its cron expression parsed and its time zone resolved.
#[derive(Debug, Clone)]
pub struct CompiledSchedule {
    cron: Cron,
    cron_text: String,
    tz: Tz,
    duration: chrono::Duration,
    min_replicas: u32,
}

impl CompiledSchedule {
    /// The floor this schedule imposes at `now`, if it is active.
    pub fn floor_at(&self, now: DateTime<Utc>) -> Option<u32> {
        let local = now.with_timezone(&self.tz);
        let started = self.cron.find_previous_occurrence(&local, true).ok()?;
        (local.signed_duration_since(started) < self.duration).then_some(self.min_replicas)
    }

    /// The cron expression, for reasons.
    pub fn cron(&self) -> &str {
        &self.cron_text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(cron: &str, hours: u64, tz: Option<&str>) -> CompiledSchedule {
        Schedule {
            cron: cron.into(),
            duration: Duration::from_secs(hours * 3600),
            min_replicas: 5,
            timezone: tz.map(Into::into),
        }
        .compile()
        .expect("valid schedule")
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("timestamp").with_timezone(&Utc)
    }

    #[test]
    fn active_from_the_cron_time_for_the_duration() {
        let s = schedule("0 8 * * 1-5", 10, None);
        // 2026-11-23 is a Monday.
        assert_eq!(s.floor_at(utc("2026-11-23T07:59:59Z")), None);
        assert_eq!(s.floor_at(utc("2026-11-23T08:00:00Z")), Some(5));
        assert_eq!(s.floor_at(utc("2026-11-23T17:59:59Z")), Some(5));
        assert_eq!(s.floor_at(utc("2026-11-23T18:00:00Z")), None);
        // Saturday: no start that day, and Friday's window ended at 18:00.
        assert_eq!(s.floor_at(utc("2026-11-28T09:00:00Z")), None);
    }

    #[test]
    fn reads_the_cron_in_its_time_zone() {
        // Lisbon is UTC+1 in summer: 08:00 local is 07:00 UTC.
        let s = schedule("0 8 * * *", 1, Some("Europe/Lisbon"));
        assert_eq!(s.floor_at(utc("2026-07-01T07:30:00Z")), Some(5));
        assert_eq!(s.floor_at(utc("2026-07-01T08:30:00Z")), None);
        // In winter Lisbon is on UTC.
        assert_eq!(s.floor_at(utc("2026-12-01T08:30:00Z")), Some(5));
    }

    #[test]
    fn a_window_crossing_midnight_stays_active() {
        let s = schedule("0 22 * * *", 4, None);
        assert_eq!(s.floor_at(utc("2026-11-24T01:00:00Z")), Some(5));
        assert_eq!(s.floor_at(utc("2026-11-24T02:00:00Z")), None);
    }

    #[test]
    fn problems_name_the_field() {
        let bad = Schedule {
            cron: "every day".into(),
            duration: Duration::ZERO,
            min_replicas: 1,
            timezone: Some("Mars/Olympus".into()),
        };
        let paths: Vec<String> = bad.problems().into_iter().map(|p| p.path).collect();
        assert_eq!(paths, ["cron", "timezone", "duration"]);
        assert!(bad.compile().is_none());
    }

    #[test]
    fn a_cron_that_can_never_fire_is_refused_and_a_leap_day_is_not() {
        let at = |cron: &str| Schedule {
            cron: cron.into(),
            duration: Duration::from_secs(60),
            min_replicas: 1,
            timezone: None,
        };
        let started = std::time::Instant::now();
        let never = at("0 0 30 2 *").problems();
        assert_eq!(never.len(), 1, "{never:?}");
        assert_eq!(never[0].path, "cron");
        assert!(never[0].message.contains("never fires"), "{}", never[0].message);
        println!("refusing `0 0 30 2 *` took {:?}", started.elapsed());
        assert!(at("0 0 31 4 *").problems()[0].message.contains("never fires"), "April has 30 days");
        assert!(at("0 0 29 2 *").problems().is_empty(), "every four years");
        assert!(at("0 0 30 2 1").problems().is_empty(), "day of month or day of week: every Monday in February");
    }
}
