//! `simulate --history DAYS`: before going live, each machine sends the treatments of the
//! past days (every other day but Sundays, 4 h from 07:00 or 13:00 UTC, a reading a minute)
//! through the same MQTT path as live readings, so trends, session summaries and machine
//! performance have something to show. Only for machines with no treatment before
//! yesterday (a restarted demo does not send them twice). Readings may be at most 30 days
//! old (ingest refuses older ones), so at most 29 days are sent.

use chrono::{DateTime, Datelike, Duration, DurationRound, Utc, Weekday};
use rumqttc::ClientError;

use super::physiology::{Body, Episode, Noise};
use super::{Link, SimDevice};

/// The most days sent.
pub(crate) const MAX_DAYS: u32 = 29;

/// The starts of the past treatments of the machine at `index`, oldest first.
pub(crate) fn treatments(index: usize, days: u32, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let today = now.duration_trunc(Duration::days(1)).unwrap_or(now);
    let hour = if index < 2 { 7 } else { 13 };
    (1..=days.min(MAX_DAYS))
        .rev()
        .map(|back| today - Duration::days(i64::from(back)) + Duration::hours(hour))
        .filter(|start| start.weekday() != Weekday::Sun && (start.ordinal() as usize + index) % 2 == 0)
        .collect()
}

/// Sends the past treatments; returns how many readings were sent.
pub(crate) async fn send(
    link: &Link,
    d: &SimDevice,
    index: usize,
    days: u32,
    noise: &mut Noise,
) -> Result<u64, ClientError> {
    let topic = |channel: &str| format!("nc/v1/h/{}/d/{}/{channel}", d.hospital, d.id);
    let (telemetry, session) = (topic("telemetry"), topic("session"));
    let mut sent = 0;
    for start in treatments(index, days, Utc::now()) {
        let begin = serde_json::json!({"v": 1, "event": "start", "ts": start, "patientId": d.patient, "expectedIntervalMs": 60_000});
        link.publish(&session, begin.to_string()).await?;
        let body = Body::new(noise);
        for minute in 0..240 {
            let ts = start + Duration::minutes(minute);
            // Counting up by one within a treatment, from a base below the live readings'
            // (which start at the current time in milliseconds × 10).
            let seq = start.timestamp_millis() * 10 + minute;
            let reading = body.reading(noise, minute as f64 / 240.0, Episode::None, seq, ts, d.patient);
            link.publish(&telemetry, reading.to_string()).await?;
            sent += 1;
        }
        let end = serde_json::json!({"v": 1, "event": "end", "ts": start + Duration::minutes(240)});
        link.publish(&session, end.to_string()).await?;
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_other_day_but_sundays_within_the_last_29_days() {
        let now: DateTime<Utc> = "2026-12-03T10:00:00Z".parse().unwrap();
        let starts = treatments(0, 14, now);
        assert!(starts.windows(2).all(|w| w[0] < w[1]), "oldest first");
        assert!(starts.iter().all(|s| s.weekday() != Weekday::Sun && s.format("%H:%M").to_string() == "07:00"));
        assert!(starts.iter().all(|s| *s < now - Duration::hours(24) && *s >= now - Duration::days(15)));
        assert!((5..=8).contains(&starts.len()), "{starts:?}");
        let other = treatments(1, 14, now);
        assert!(starts.iter().all(|s| !other.contains(s)), "neighbouring machines alternate");
        assert_eq!(treatments(2, 14, now)[0].format("%H:%M").to_string(), "13:00");
        assert!(treatments(0, 400, now).iter().all(|s| *s > now - Duration::days(30)));
    }
}
