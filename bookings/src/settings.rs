//! A hospital's booking rules: its time zone, opening hours per weekday (local wall-clock
//! times), slot granularity, the changeover (disinfection) buffer between sessions on a
//! machine, the notice before which patients may change or cancel, whether patients may
//! book any machine, and how far ahead bookings are taken.

use chrono::Weekday;
use chrono_tz::Tz;
use serde_json::{json, Map, Value};

/// One day's opening hours, in minutes after local midnight: `open < close <= 1440`
/// (`24:00`, the next midnight, closes at the end of the day).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayHours {
    pub open: u16,
    pub close: u16,
}

/// Opening hours per weekday, Monday first; `None`: closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpeningHours(pub [Option<DayHours>; 7]);

impl OpeningHours {
    pub fn day(&self, day: Weekday) -> Option<DayHours> {
        self.0[day.num_days_from_monday() as usize]
    }
}

pub const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A hospital's booking settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub time_zone: Tz,
    pub hours: OpeningHours,
    pub slot_minutes: u32,
    pub changeover_minutes: u32,
    pub cancel_notice_minutes: u32,
    pub patients_book_any_device: bool,
    pub max_days_ahead: u32,
}

impl Settings {
    /// A unit's usual week: 06:00-22:00 Monday to Saturday, 30-minute slots, 30 minutes of
    /// changeover, changes by patients up to 24 h before the start, on their own machine,
    /// up to 90 days ahead.
    pub fn defaults(time_zone: Tz) -> Settings {
        let day = Some(DayHours { open: 6 * 60, close: 22 * 60 });
        Settings {
            time_zone,
            hours: OpeningHours([day, day, day, day, day, day, None]),
            slot_minutes: 30,
            changeover_minutes: 30,
            cancel_notice_minutes: 24 * 60,
            patients_book_any_device: false,
            max_days_ahead: 90,
        }
    }
}

/// `HH:MM` as minutes after midnight; `24:00` only when `allow_midnight_end`.
pub fn parse_hhmm(s: &str, allow_midnight_end: bool) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) if allow_midnight_end => Some(1440),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

pub fn format_hhmm(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// The hours as stored: `{"mon": {"open": "06:00", "close": "22:00"}, ..., "sun": null}`.
pub fn hours_to_json(hours: &OpeningHours) -> Value {
    let mut map = Map::new();
    for (name, day) in WEEKDAYS.iter().zip(hours.0) {
        let v = day.map_or(Value::Null, |d| json!({"open": format_hhmm(d.open), "close": format_hhmm(d.close)}));
        map.insert((*name).to_owned(), v);
    }
    Value::Object(map)
}

/// The stored form back; days missing or unreadable are closed.
pub fn hours_from_json(v: &Value) -> OpeningHours {
    let mut days = [None; 7];
    for (i, name) in WEEKDAYS.iter().enumerate() {
        let day = &v[*name];
        let open = day["open"].as_str().and_then(|s| parse_hhmm(s, false));
        let close = day["close"].as_str().and_then(|s| parse_hhmm(s, true));
        if let (Some(open), Some(close)) = (open, close) {
            if open < close {
                days[i] = Some(DayHours { open, close });
            }
        }
    }
    OpeningHours(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_of_day_parse_strictly() {
        assert_eq!(parse_hhmm("06:30", false), Some(390));
        assert_eq!(parse_hhmm("24:00", true), Some(1440));
        assert_eq!(parse_hhmm("24:00", false), None);
        for bad in ["6:30", "06:60", "25:00", "06-30", "0630", "+6:30", "06:3a", ""] {
            assert_eq!(parse_hhmm(bad, true), None, "{bad}");
        }
        let hours = Settings::defaults(Tz::UTC).hours;
        assert_eq!(hours_from_json(&hours_to_json(&hours)), hours);
    }
}
