//! The calling window: the hours, in the callee's time zone, when numbers
//! may be dialled.

use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// Days and hours in an IANA time zone (`America/New_York`), from
/// `start_hour` (included) to `end_hour` (excluded), 0 to 24; a window
/// whose end is before its start spans midnight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallingWindow {
    /// An IANA time zone name, or `UTC`.
    pub time_zone: String,
    /// The first hour calls may start.
    pub start_hour: u8,
    /// The hour calls stop.
    pub end_hour: u8,
    /// The days (`mon` … `sun`) the window opens, by the day it opens on;
    /// every day when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<Day>,
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    fn of(weekday: Weekday) -> Day {
        match weekday {
            Weekday::Monday => Day::Mon,
            Weekday::Tuesday => Day::Tue,
            Weekday::Wednesday => Day::Wed,
            Weekday::Thursday => Day::Thu,
            Weekday::Friday => Day::Fri,
            Weekday::Saturday => Day::Sat,
            Weekday::Sunday => Day::Sun,
        }
    }
}

/// Why a window cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// Not a time zone this machine knows.
    #[error("unknown time zone {0:?} (an IANA name such as America/New_York, or UTC)")]
    TimeZone(String),
    /// An hour above 24, or start equal to end.
    #[error("window hours must be 0 to 24, start_hour not equal to end_hour")]
    Hours,
}

impl CallingWindow {
    /// Checks the zone and hours.
    pub fn validate(&self) -> Result<(), WindowError> {
        self.zone()?;
        if self.start_hour > 24 || self.end_hour > 24 || self.start_hour == self.end_hour {
            return Err(WindowError::Hours);
        }
        Ok(())
    }

    fn zone(&self) -> Result<TimeZone, WindowError> {
        TimeZone::get(&self.time_zone).map_err(|_| WindowError::TimeZone(self.time_zone.clone()))
    }

    /// Whether a call may start at `now_ms` (Unix ms). A zone that cannot
    /// be read (validated at creation; the machine's zone files changed)
    /// keeps the window closed.
    pub fn is_open(&self, now_ms: u64) -> bool {
        let (Ok(zone), Ok(now)) = (
            self.zone(),
            jiff::Timestamp::from_millisecond(i64::try_from(now_ms).unwrap_or(i64::MAX)),
        ) else {
            return false;
        };
        let local = now.to_zoned_datetime(zone);
        let hour = local.hour().unsigned_abs();
        let (start, end) = (self.start_hour, self.end_hour);
        // The day the window opened: yesterday's, after midnight in a
        // window that spans it.
        let (open, opened_on) = if start < end {
            (hour >= start && hour < end, local.weekday())
        } else if hour >= start {
            (true, local.weekday())
        } else {
            (hour < end, local.weekday().previous())
        };
        open && (self.days.is_empty() || self.days.contains(&Day::of(opened_on)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(zone: &str, start: u8, end: u8, days: Vec<Day>) -> CallingWindow {
        CallingWindow {
            time_zone: zone.into(),
            start_hour: start,
            end_hour: end,
            days,
        }
    }

    /// 2026-01-05 (a Monday) at `hour`:00 UTC.
    fn monday_utc(hour: u64) -> u64 {
        1_767_571_200_000 + hour * 3_600_000
    }

    #[test]
    fn opens_by_the_zone_local_hour_and_day() {
        let new_york = window("America/New_York", 9, 17, vec![]);
        assert_eq!(new_york.validate(), Ok(()));
        // 14:00 UTC is 09:00 in New York in January (UTC-5).
        assert!(new_york.is_open(monday_utc(14)));
        assert!(!new_york.is_open(monday_utc(13)));
        assert!(!new_york.is_open(monday_utc(22)));
        let weekdays = window("UTC", 0, 24, vec![Day::Tue]);
        assert!(!weekdays.is_open(monday_utc(12)));
        assert!(weekdays.is_open(monday_utc(24 + 12)));
        let night = window("UTC", 22, 2, vec![Day::Mon]);
        assert!(night.is_open(monday_utc(23)));
        assert!(
            night.is_open(monday_utc(24 + 1)),
            "Monday's window runs into Tuesday"
        );
        assert!(!night.is_open(monday_utc(1)), "Sunday's window is not open");
        assert!(!night.is_open(monday_utc(12)));
    }

    #[test]
    fn rejects_unknown_zones_and_bad_hours() {
        assert!(matches!(
            window("Mars/Olympus", 9, 17, vec![]).validate(),
            Err(WindowError::TimeZone(_))
        ));
        assert_eq!(
            window("UTC", 9, 25, vec![]).validate(),
            Err(WindowError::Hours)
        );
        assert_eq!(
            window("UTC", 9, 9, vec![]).validate(),
            Err(WindowError::Hours)
        );
    }
}
