//! When runs are due: five-field cron schedules in an IANA time zone, with CronJob's names and
//! meanings, but only the most recent missed time is ever considered (no ">100 missed" lock-out).

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed `spec.schedule` with its `spec.timeZone`.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: Tz,
}

/// Why a spec cannot be scheduled; becomes the Degraded condition's reason and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("spec.schedule {schedule:?} is not a valid cron expression: {reason}")]
    InvalidSchedule { schedule: String, reason: String },
    #[error("spec.timeZone {0:?} is not a known IANA time zone")]
    InvalidTimeZone(String),
}

impl ScheduleError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidSchedule { .. } => "InvalidSchedule",
            Self::InvalidTimeZone(_) => "InvalidTimeZone",
        }
    }
}

impl Schedule {
    /// `None` when there is no schedule (the ScanJob runs once).
    pub fn parse(
        schedule: Option<&str>,
        time_zone: Option<&str>,
    ) -> Result<Option<Self>, ScheduleError> {
        let Some(schedule) = schedule else {
            return Ok(None);
        };
        let zone = match time_zone {
            None => Tz::UTC,
            Some(name) => {
                Tz::from_str(name).map_err(|_| ScheduleError::InvalidTimeZone(name.to_owned()))?
            }
        };
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(schedule)
            .map_err(|e| ScheduleError::InvalidSchedule {
                schedule: schedule.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Some(Self { cron, zone }))
    }

    /// The latest scheduled time at or before `now`.
    pub fn latest_due(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = self.zone.from_utc_datetime(&now.naive_utc());
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The first scheduled time after `now`.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = self.zone.from_utc_datetime(&now.naive_utc());
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// What to do about the latest scheduled time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Nothing is due: every time up to now was handled.
    Nothing,
    /// Start the run scheduled for this time.
    Run(DateTime<Utc>),
    /// The run of this time is too late to start (startingDeadlineSeconds).
    Missed(DateTime<Utc>),
}

/// The decision for the latest scheduled time at or before `now` that is later than `handled`
/// (the newest time already started or skipped, or the ScanJob's creation).
pub fn due(
    schedule: &Schedule,
    now: DateTime<Utc>,
    handled: DateTime<Utc>,
    starting_deadline_seconds: Option<i64>,
) -> Due {
    match schedule.latest_due(now) {
        Some(t) if t > handled => match starting_deadline_seconds {
            Some(deadline) if (now - t).num_seconds() > deadline => Due::Missed(t),
            _ => Due::Run(t),
        },
        _ => Due::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn daily_in_a_time_zone_is_due_at_local_one_oclock() {
        let s = Schedule::parse(Some("0 1 * * *"), Some("Europe/Berlin"))
            .unwrap()
            .unwrap();
        // 01:00 in Berlin in November is 00:00 UTC.
        assert_eq!(
            s.latest_due(utc("2026-11-23T12:00:00Z")),
            Some(utc("2026-11-23T00:00:00Z"))
        );
        assert_eq!(
            s.next_after(utc("2026-11-23T12:00:00Z")),
            Some(utc("2026-11-24T00:00:00Z"))
        );
    }

    #[test]
    fn only_the_latest_missed_time_counts_and_the_deadline_skips_it() {
        let s = Schedule::parse(Some("*/5 * * * *"), None).unwrap().unwrap();
        let created = utc("2026-11-20T00:00:00Z");
        let now = utc("2026-11-23T12:03:10Z");
        // Three days of missed times: only 12:00 is considered, never a lock-out.
        assert_eq!(
            due(&s, now, created, None),
            Due::Run(utc("2026-11-23T12:00:00Z"))
        );
        assert_eq!(
            due(&s, now, created, Some(60)),
            Due::Missed(utc("2026-11-23T12:00:00Z"))
        );
        assert_eq!(
            due(&s, now, created, Some(190)),
            Due::Run(utc("2026-11-23T12:00:00Z"))
        );
        assert_eq!(
            due(&s, now, utc("2026-11-23T12:00:00Z"), None),
            Due::Nothing
        );
    }

    #[test]
    fn bad_zones_and_expressions_are_named() {
        let e = Schedule::parse(Some("0 1 * * *"), Some("Mars/Olympus")).unwrap_err();
        assert_eq!(e.reason(), "InvalidTimeZone");
        assert!(e.to_string().contains("Mars/Olympus"));
        let e = Schedule::parse(Some("61 * * * *"), None).unwrap_err();
        assert_eq!(e.reason(), "InvalidSchedule");
        assert!(Schedule::parse(Some("0 1 * * * *"), None).is_err());
        assert!(Schedule::parse(Some("@daily"), None).unwrap().is_some());
        assert!(Schedule::parse(None, Some("UTC")).unwrap().is_none());
    }
}
