//! Availability, as pure functions over the settings and what is already booked.
//!
//! Start times are a wall-clock grid from each day's opening time (`slot_minutes` apart),
//! in the hospital's time zone: a start that does not exist (the hour skipped when clocks
//! go forward) is not offered; one that exists twice (when clocks go back) is offered
//! twice, as two different instants. A session lasts its duration in real time, so a 4 h
//! slot across a DST change is 4 real hours, and it must end by the day's closing time.
//! On a machine, a session and the changeover after it must not overlap another booking
//! (and its changeover) or a maintenance window; a patient cannot be in two sessions.

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::settings::Settings;

/// `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Interval {
    pub fn overlaps(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        self.start < end && start < self.end
    }
}

/// The instant(s) of a local date and time (minutes after midnight, 1440 = next midnight).
fn local_instants(tz: Tz, date: NaiveDate, minutes: u16) -> Vec<DateTime<Utc>> {
    let (date, minutes) =
        if minutes >= 1440 { (date.succ_opt().unwrap_or(date), minutes - 1440) } else { (date, minutes) };
    let time = NaiveTime::from_hms_opt(u32::from(minutes / 60), u32::from(minutes % 60), 0).expect("valid time");
    match tz.from_local_datetime(&NaiveDateTime::new(date, time)) {
        LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
        LocalResult::Ambiguous(a, b) => vec![a.with_timezone(&Utc), b.with_timezone(&Utc)],
        LocalResult::None => Vec::new(),
    }
}

/// A day boundary as one instant: the earliest if it exists twice, the end of the gap if
/// it falls in one.
fn boundary(tz: Tz, date: NaiveDate, minutes: u16) -> Option<DateTime<Utc>> {
    (0..=240u16).find_map(|shift| local_instants(tz, date, minutes + shift).first().copied())
}

/// A day's opening and closing instants, if open.
pub fn day_window(settings: &Settings, date: NaiveDate) -> Option<Interval> {
    use chrono::Datelike;
    let hours = settings.hours.day(date.weekday())?;
    let start = boundary(settings.time_zone, date, hours.open)?;
    let end = boundary(settings.time_zone, date, hours.close)?;
    (start < end).then_some(Interval { start, end })
}

/// Whether a session from `start` lasting `duration` lies within one day's opening hours.
pub fn fits_opening_hours(settings: &Settings, start: DateTime<Utc>, duration: Duration) -> bool {
    let date = start.with_timezone(&settings.time_zone).date_naive();
    day_window(settings, date).is_some_and(|w| w.start <= start && start + duration <= w.end)
}

/// Grid start times in `[from, to)` whose sessions of `duration` fit the opening hours.
pub fn grid_starts(
    settings: &Settings,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    duration: Duration,
) -> Vec<DateTime<Utc>> {
    let tz = settings.time_zone;
    let step = settings.slot_minutes.max(1) as u16;
    let mut out = Vec::new();
    let Some(mut date) = from.with_timezone(&tz).date_naive().pred_opt() else { return out };
    let last = to.with_timezone(&tz).date_naive();
    while date <= last {
        if let (Some(window), Some(hours)) =
            (day_window(settings, date), settings.hours.day(chrono::Datelike::weekday(&date)))
        {
            let mut m = hours.open;
            while m < hours.close {
                for s in local_instants(tz, date, m) {
                    if s >= window.start && s + duration <= window.end && s >= from && s < to {
                        out.push(s);
                    }
                }
                m += step;
            }
        }
        let Some(next) = date.succ_opt() else { break };
        date = next;
    }
    out.sort();
    out.dedup();
    out
}

/// Whether a device is free for a session `[start, start + duration)` followed by
/// `changeover`: `busy` holds its bookings (each up to the end of its own changeover) and
/// maintenance windows.
pub fn device_free(busy: &[Interval], start: DateTime<Utc>, duration: Duration, changeover: Duration) -> bool {
    !busy.iter().any(|b| b.overlaps(start, start + duration + changeover))
}

/// Whether a patient is free for `[start, start + duration)`.
pub fn patient_free(busy: &[Interval], start: DateTime<Utc>, duration: Duration) -> bool {
    !busy.iter().any(|b| b.overlaps(start, start + duration))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{DayHours, OpeningHours};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn settings(tz: Tz, open: u16, close: u16, slot: u32) -> Settings {
        let day = Some(DayHours { open, close });
        Settings { hours: OpeningHours([day; 7]), slot_minutes: slot, ..Settings::defaults(tz) }
    }

    #[test]
    fn a_normal_day_in_berlin() {
        // Winter (CET, +01:00): 06:00-22:00 local is 05:00Z-21:00Z; 4 h sessions start by 18:00 local.
        let s = settings(chrono_tz::Europe::Berlin, 360, 1320, 30);
        let starts =
            grid_starts(&s, at("2026-12-07T00:00:00+01:00"), at("2026-12-08T00:00:00+01:00"), Duration::hours(4));
        assert_eq!(starts.first(), Some(&at("2026-12-07T05:00:00Z")));
        assert_eq!(starts.last(), Some(&at("2026-12-07T17:00:00Z")));
        assert_eq!(starts.len(), 25, "06:00 to 18:00 every 30 min");
        assert!(fits_opening_hours(&s, at("2026-12-07T18:00:00+01:00"), Duration::hours(4)));
        assert!(!fits_opening_hours(&s, at("2026-12-07T18:30:00+01:00"), Duration::hours(4)));
        assert!(!fits_opening_hours(&s, at("2026-12-07T05:30:00+01:00"), Duration::hours(4)));
    }

    #[test]
    fn clocks_going_forward_skip_an_hour_and_sessions_stay_real_hours() {
        // 2027-03-28, Europe/Berlin: 02:00 CET becomes 03:00 CEST; the day has 23 hours.
        let s = settings(chrono_tz::Europe::Berlin, 0, 1440, 60);
        let from = at("2027-03-28T00:00:00+01:00");
        let starts = grid_starts(&s, from, at("2027-03-29T00:00:00+02:00"), Duration::hours(4));
        // Local 00:00, 01:00, then 03:00 (02:00 does not exist) ... 20:00: the last
        // session ends at 24:00 local = 22:00Z after 4 real hours.
        let local: Vec<String> =
            starts.iter().map(|t| t.with_timezone(&s.time_zone).format("%H:%M%:z").to_string()).collect();
        assert_eq!(local.len(), 20, "{local:?}");
        assert_eq!(&local[..3], ["00:00+01:00", "01:00+01:00", "03:00+02:00"]);
        assert_eq!(local.last().unwrap(), "20:00+02:00");
        // The 01:00 session runs 4 real hours, to 06:00 local (5 wall-clock hours).
        let one = at("2027-03-28T01:00:00+01:00");
        assert_eq!((one + Duration::hours(4)).with_timezone(&s.time_zone).format("%H:%M").to_string(), "06:00");
        assert!(!fits_opening_hours(&s, at("2027-03-28T20:30:00+02:00"), Duration::hours(4)));
    }

    #[test]
    fn clocks_going_back_offer_the_repeated_hour_twice() {
        // 2026-10-25, Europe/Berlin: 03:00 CEST becomes 02:00 CET; the day has 25 hours.
        let s = settings(chrono_tz::Europe::Berlin, 0, 1440, 60);
        let starts =
            grid_starts(&s, at("2026-10-25T00:00:00+02:00"), at("2026-10-26T00:00:00+01:00"), Duration::hours(4));
        let local: Vec<String> =
            starts.iter().map(|t| t.with_timezone(&s.time_zone).format("%H:%M%:z").to_string()).collect();
        assert_eq!(&local[..5], ["00:00+02:00", "01:00+02:00", "02:00+02:00", "02:00+01:00", "03:00+01:00"]);
        assert_eq!(local.last().unwrap(), "20:00+01:00");
        assert_eq!(local.len(), 22, "{local:?}");
    }

    #[test]
    fn the_changeover_keeps_sessions_on_a_machine_apart() {
        let booked = [Interval { start: at("2026-12-07T08:00:00Z"), end: at("2026-12-07T12:30:00Z") }];
        let (four, half) = (Duration::hours(4), Duration::minutes(30));
        assert!(device_free(&booked, at("2026-12-07T12:30:00Z"), four, half), "right after the changeover");
        assert!(!device_free(&booked, at("2026-12-07T12:00:00Z"), four, half), "during the changeover");
        assert!(device_free(&booked, at("2026-12-07T03:30:00Z"), four, half), "ends with its changeover at 08:00");
        assert!(!device_free(&booked, at("2026-12-07T04:00:00Z"), four, half), "its changeover runs into 08:00");
        assert!(patient_free(&booked, at("2026-12-07T12:30:00Z"), four));
        assert!(!patient_free(&booked, at("2026-12-07T12:00:00Z"), four));
    }

    #[test]
    fn closed_days_and_a_slot_grid() {
        let mut s = settings(chrono_tz::America::New_York, 420, 1140, 45);
        s.hours.0[6] = None; // Sunday
        let sunday =
            grid_starts(&s, at("2026-12-06T00:00:00-05:00"), at("2026-12-07T00:00:00-05:00"), Duration::hours(1));
        assert!(sunday.is_empty());
        let monday =
            grid_starts(&s, at("2026-12-07T00:00:00-05:00"), at("2026-12-08T00:00:00-05:00"), Duration::hours(3));
        // 07:00, 07:45, ... while the session ends by 19:00: the last start is 16:00.
        assert_eq!(monday.first(), Some(&at("2026-12-07T07:00:00-05:00")));
        assert_eq!(monday.last(), Some(&at("2026-12-07T16:00:00-05:00")));
        assert_eq!(monday.len(), 13);
    }
}
