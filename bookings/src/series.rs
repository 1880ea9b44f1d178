//! Recurring bookings: a weekly rule expanded into dated occurrences, in the hospital's
//! time zone (07:00 stays 07:00 local across a DST change).

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use nc_domain::Weekday;

use crate::settings::{format_hhmm, WEEKDAYS};

/// The most weeks one series books.
pub const MAX_WEEKS: u32 = 52;

/// A weekly rule: these weekdays at this local time, for `weeks` weeks from `first_date`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub weekdays: Vec<Weekday>,
    /// Minutes after local midnight.
    pub start_minutes: u16,
    pub first_date: NaiveDate,
    pub weeks: u32,
    pub duration_minutes: u32,
}

/// One occurrence: its local date and its start (`None`: that local time does not exist
/// that day, the hour skipped when clocks go forward).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrence {
    pub date: NaiveDate,
    pub start: Option<DateTime<Utc>>,
}

fn index(day: Weekday) -> usize {
    WEEKDAYS.iter().position(|w| *w == day.as_str()).expect("every weekday is named")
}

impl Rule {
    pub fn occurrences(&self, tz: Tz) -> Vec<Occurrence> {
        let days = i64::from(self.weeks.min(MAX_WEEKS)) * 7;
        let wanted: Vec<usize> = self.weekdays.iter().map(|d| index(*d)).collect();
        (0..days)
            .filter_map(|i| self.first_date.checked_add_signed(Duration::days(i)))
            .filter(|d| wanted.contains(&(d.weekday().num_days_from_monday() as usize)))
            .map(|date| {
                let time = date.and_hms_opt(u32::from(self.start_minutes / 60), u32::from(self.start_minutes % 60), 0);
                let start = time.and_then(|t| t.and_local_timezone(tz).earliest()).map(|t| t.with_timezone(&Utc));
                Occurrence { date, start }
            })
            .collect()
    }

    /// The rule as stored with the series.
    pub fn to_json(&self, tz: Tz) -> serde_json::Value {
        serde_json::json!({
            "weekdays": self.weekdays.iter().map(|d| d.as_str()).collect::<Vec<_>>(),
            "startTime": format_hhmm(self.start_minutes),
            "timeZone": tz.name(),
            "firstDate": self.first_date,
            "weeks": self.weeks,
            "durationMinutes": self.duration_minutes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mon_wed_fri_at_seven_local_across_a_dst_change() {
        let rule = Rule {
            weekdays: vec![Weekday::Mon, Weekday::Wed, Weekday::Fri],
            start_minutes: 7 * 60,
            first_date: NaiveDate::from_ymd_opt(2027, 3, 22).unwrap(), // a Monday
            weeks: 2,
            duration_minutes: 240,
        };
        let occ = rule.occurrences(chrono_tz::Europe::Berlin);
        let starts: Vec<String> = occ.iter().map(|o| o.start.unwrap().to_rfc3339()).collect();
        assert_eq!(
            starts,
            [
                "2027-03-22T06:00:00+00:00",
                "2027-03-24T06:00:00+00:00",
                "2027-03-26T06:00:00+00:00",
                // Clocks went forward on Sunday 28th: 07:00 local is now 05:00Z.
                "2027-03-29T05:00:00+00:00",
                "2027-03-31T05:00:00+00:00",
                "2027-04-02T05:00:00+00:00",
            ]
        );
    }

    #[test]
    fn a_start_inside_the_skipped_hour_does_not_exist() {
        let rule = Rule {
            weekdays: vec![Weekday::Sun],
            start_minutes: 2 * 60 + 30,
            first_date: NaiveDate::from_ymd_opt(2027, 3, 28).unwrap(),
            weeks: 2,
            duration_minutes: 60,
        };
        let occ = rule.occurrences(chrono_tz::Europe::Berlin);
        assert_eq!(occ.len(), 2);
        assert_eq!(occ[0].start, None);
        assert!(occ[1].start.is_some());
    }
}
