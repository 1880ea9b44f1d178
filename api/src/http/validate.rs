//! Rules for single request values that poem-openapi's own validators cannot state, used as
//! `#[oai(validator(custom = "crate::validate::…"))]` next to `max_length`, `minimum` and
//! `maximum` (which appear in the OpenAPI document). A value that breaks one is answered
//! with 422 `validation_failed` naming the field (see `error::catch_all`).
//!
//! - [`NoNul`]: PostgreSQL cannot store U+0000 in text, so no string may contain it.
//! - [`Time`] and [`Date`]: chrono parses years ±262143, which PostgreSQL and time
//!   arithmetic cannot all handle; requests are kept to years 1900 to 9999.
//! - [`SmallJson`]: free-form JSON (the dialysis schedule) of bounded size, without U+0000.
//! - [`Email`]: an e-mail address (declared `format: email` by `contract`), the rule
//!   `nc_care::fields::normalize_email` applies.
//!
//! The rules applied after parsing (trimming, normalising names, e-mails, phones,
//! passwords) are the care records' own: `nc_care::fields`.
//!
//! The message a validator gives is its `Display`, phrased to follow the field's name.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use poem_openapi::validation::Validator;

/// Earliest and latest instants a request may name.
pub const EARLIEST: &str = "1900-01-01T00:00:00Z";
pub const LATEST: &str = "9999-12-31T23:59:59Z";

fn earliest() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(EARLIEST).expect("static time").to_utc()
}

fn latest() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(LATEST).expect("static time").to_utc()
}

/// Largest serialized size of a free-form JSON field, in bytes.
pub const JSON_MAX_BYTES: usize = 4000;

/// No U+0000 character.
pub struct NoNul;

impl fmt::Display for NoNul {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("must not contain the NUL character (\\u0000)")
    }
}

impl<T: AsRef<str>> Validator<T> for NoNul {
    fn check(&self, value: &T) -> bool {
        !value.as_ref().contains('\0')
    }
}

/// An instant between [`EARLIEST`] and [`LATEST`].
pub struct Time;

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "must be between {EARLIEST} and {LATEST}")
    }
}

impl Validator<DateTime<Utc>> for Time {
    fn check(&self, value: &DateTime<Utc>) -> bool {
        in_range(value)
    }
}

/// Whether `t` lies between [`EARLIEST`] and [`LATEST`].
pub fn in_range(t: &DateTime<Utc>) -> bool {
    (earliest()..=latest()).contains(t)
}

/// A date between 1900-01-01 and 9999-12-31.
pub struct Date;

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("must be between 1900-01-01 and 9999-12-31")
    }
}

impl Validator<NaiveDate> for Date {
    fn check(&self, value: &NaiveDate) -> bool {
        (earliest().date_naive()..=latest().date_naive()).contains(value)
    }
}

/// A JSON value of at most [`JSON_MAX_BYTES`] bytes, with no U+0000 in any string or key.
pub struct SmallJson;

impl fmt::Display for SmallJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "must be JSON of at most {JSON_MAX_BYTES} bytes, without the NUL character (\\u0000)")
    }
}

impl Validator<serde_json::Value> for SmallJson {
    fn check(&self, value: &serde_json::Value) -> bool {
        !json_has_nul(value) && serde_json::to_vec(value).is_ok_and(|v| v.len() <= JSON_MAX_BYTES)
    }
}

/// Whether any string or key in `value` contains U+0000 (PostgreSQL's `jsonb` refuses it).
pub fn json_has_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(json_has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// An e-mail address (`nc_care::fields::is_email`, the rule `normalize_email` applies).
pub struct Email;

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(nc_care::fields::EMAIL_RULE)
    }
}

impl<T: AsRef<str>> Validator<T> for Email {
    fn check(&self, value: &T) -> bool {
        nc_care::fields::is_email(value.as_ref().trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_hold_at_their_bounds() {
        assert!(Validator::<String>::check(&NoNul, &"plain".to_owned()));
        assert!(!Validator::<String>::check(&NoNul, &"a\0b".to_owned()));
        assert!(Time.check(&earliest()) && Time.check(&latest()));
        assert!(!Time.check(&DateTime::<Utc>::MIN_UTC) && !Time.check(&DateTime::<Utc>::MAX_UTC));
        assert!(Date.check(&NaiveDate::from_ymd_opt(1900, 1, 1).unwrap()));
        assert!(!Date.check(&NaiveDate::MIN));
        assert!(SmallJson.check(&serde_json::json!({"days": ["mon"]})));
        assert!(!SmallJson.check(&serde_json::json!({"days": ["mo\u{0}n"]})));
        assert!(!SmallJson.check(&serde_json::json!({"x": "y".repeat(JSON_MAX_BYTES)})));
        assert!(Email.check(&"Name.Surname+x@example.org"));
        assert!(!Email.check(&"") && !Email.check(&"a@b") && !Email.check(&"a b@c.org") && !Email.check(&"a@@b.org"));
    }
}
