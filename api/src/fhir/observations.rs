//! Observations: one per measurement of one stored reading (blood pressure: one panel with
//! systolic and diastolic components), and the summaries of a treatment session (linked to
//! its Procedure by `partOf`). An Observation of a reading is the reading itself, never an
//! average: a machine reports each value once a second, FHIR's vital-signs profile wants a
//! measured value at an instant, and an integrator who wants summaries has the session's
//! ones (or the REST trends). See README, "Integrating with FHIR".
//!
//! Ids are derived, not stored: `{device}-{time}-{seq}-{key}` for readings (the device id
//! as 32 hex digits, the time in microseconds and the seq in base 36, the metric's key), so
//! a read finds the reading through the `(device_id, seq, time)` key in one chunk;
//! `{session}-{key}` for session summaries.

use chrono::{DateTime, SecondsFormat, Utc};
use nc_ingest::query::{Cursor, StoredReading};
use serde_json::{json, Value};
use uuid::Uuid;

use super::codes::{self, Category, Metric, BP_COMPONENTS, METRICS, NEPHROCARE_SYSTEM, SUMMARY_CODES};

pub const VITAL_SIGNS_PROFILE: &str = "http://hl7.org/fhir/StructureDefinition/vitalsigns";

pub fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The id of the Observation of `metric` in a reading.
pub fn reading_id(device: Uuid, time: DateTime<Utc>, seq: i64, metric: &Metric) -> String {
    format!("{}-{}-{}-{}", device.simple(), base36(time.timestamp_micros() as u64), base36(seq as u64), metric.key)
}

/// What a reading Observation's id names: (device, time, seq, metric).
pub fn parse_reading_id(id: &str) -> Option<(Uuid, DateTime<Utc>, i64, &'static Metric)> {
    let mut parts = id.split('-');
    let device = Uuid::try_parse(parts.next().filter(|d| d.len() == 32)?).ok()?;
    let micros = i64::try_from(u64::from_str_radix(parts.next()?, 36).ok()?).ok()?;
    let seq = i64::try_from(u64::from_str_radix(parts.next()?, 36).ok()?).ok()?;
    let key = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    let metric = METRICS.iter().find(|m| m.key == key)?;
    Some((device, DateTime::from_timestamp_micros(micros)?, seq, metric))
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII")
}

/// The Observations of a reading, for `metrics` (all when empty), in [`METRICS`] order.
/// A reading without a patient has none (a vital sign needs its subject).
pub fn from_reading(r: &StoredReading, metrics: &[&'static Metric]) -> Vec<Value> {
    let Some(patient) = r.patient_id else { return Vec::new() };
    METRICS
        .iter()
        .filter(|m| metrics.is_empty() || metrics.iter().any(|x| x.key == m.key))
        .filter_map(|m| observation(r, patient, m))
        .collect()
}

fn observation(r: &StoredReading, patient: Uuid, m: &Metric) -> Option<Value> {
    let mut o = json!({
        "resourceType": "Observation",
        "id": reading_id(r.device_id, r.time, r.seq, m),
        "status": "final",
        "category": m.category.json(),
        "code": codes::concept(m.codings, m.text),
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": instant(r.time),
        "device": {"reference": format!("Device/{}", r.device_id)},
    });
    if let Some(session) = r.session_id {
        o["partOf"] = json!([{"reference": format!("Procedure/{session}")}]);
    }
    if let Some(profile) = m.profile {
        o["meta"] = json!({"profile": [VITAL_SIGNS_PROFILE, profile]});
    }
    if m.key == "bp" {
        let components: Vec<Value> = BP_COMPONENTS
            .iter()
            .map(|(json, code, display)| {
                let mut c = json!({"code": codes::concept(&[(codes::LOINC, code, display)], display)});
                match r.values.get(*json) {
                    Some(v) => c["valueQuantity"] = codes::quantity(*v, m.ucum, m.unit),
                    None => c["dataAbsentReason"] = data_absent(),
                }
                c
            })
            .collect();
        if BP_COMPONENTS.iter().all(|(json, ..)| !r.values.contains_key(*json)) {
            return None;
        }
        o["component"] = Value::Array(components);
    } else {
        let v = r.values.get(m.json)?;
        o["valueQuantity"] = codes::quantity(codes::fhir_value(m, *v), m.ucum, m.unit);
    }
    Some(o)
}

fn data_absent() -> Value {
    json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "not-performed", "display": "Not Performed"}]})
}

/// A treatment session, as the summary Observations need it.
pub struct SessionFacts {
    pub id: Uuid,
    pub patient: Uuid,
    pub device: Uuid,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub summary: Option<Value>,
    pub uf_rate_ml_kg_h: Option<f64>,
    pub nadir_systolic: Option<f64>,
    pub alarms: i64,
}

/// The summaries of an ended session: UF volume and rate, nadir systolic pressure, alarms.
/// Each covers the session (`effectivePeriod`) and is `partOf` its Procedure.
pub fn session_summaries(s: &SessionFacts) -> Vec<Value> {
    let Some(ended) = s.ended_at else { return Vec::new() };
    let uf_ml = s.summary.as_ref().and_then(|v| v["ultrafiltrationMl"].as_f64());
    SUMMARY_CODES
        .iter()
        .filter_map(|(key, code, display, ucum, unit)| {
            let value = match *key {
                "uf-volume" => codes::quantity(uf_ml?, ucum, unit),
                "uf-rate" => codes::quantity(s.uf_rate_ml_kg_h?, ucum, unit),
                "nadir-sbp" => codes::quantity(s.nadir_systolic?, ucum, unit),
                _ => json!(s.alarms),
            };
            let mut o = json!({
                "resourceType": "Observation",
                "id": format!("{}-{key}", s.id),
                "status": "final",
                "category": Category::Procedure.json(),
                "code": codes::concept(&[(NEPHROCARE_SYSTEM, code, display)], display),
                "subject": {"reference": format!("Patient/{}", s.patient)},
                "effectivePeriod": {"start": instant(s.started_at), "end": instant(ended)},
                "device": {"reference": format!("Device/{}", s.device)},
                "partOf": [{"reference": format!("Procedure/{}", s.id)}],
            });
            if *key == "alarms" {
                o["valueInteger"] = value;
            } else {
                o["valueQuantity"] = value;
            }
            Some(o)
        })
        .collect()
}

/// Where an Observation search page resumes: at a reading, after skipping its first `skip`
/// Observations (`None`: after the whole reading). Encoded `{micros}.{device}.{seq}.{skip}`,
/// `a` for `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageToken {
    pub time: DateTime<Utc>,
    pub device: Uuid,
    pub seq: i64,
    pub skip: Option<usize>,
}

impl PageToken {
    pub fn encode(&self) -> String {
        let skip = self.skip.map_or("a".to_owned(), |s| s.to_string());
        format!("{}.{}.{}.{skip}", self.time.timestamp_micros(), self.device.simple(), self.seq)
    }

    pub fn decode(s: &str) -> Option<PageToken> {
        let mut p = s.split('.');
        let time = DateTime::from_timestamp_micros(p.next()?.parse().ok()?)?;
        let device = Uuid::try_parse(p.next()?).ok()?;
        let seq = p.next()?.parse().ok()?;
        let skip = match p.next()? {
            "a" => None,
            n => Some(n.parse().ok()?),
        };
        p.next().is_none().then_some(PageToken { time, device, seq, skip })
    }

    /// The readings cursor the next page starts from (cursors are exclusive: a token inside
    /// a reading includes that reading).
    pub fn cursor(&self, newest_first: bool) -> Cursor {
        let seq = match (self.skip, newest_first) {
            (None, _) => self.seq,
            (Some(_), true) => self.seq.saturating_add(1),
            (Some(_), false) => self.seq.saturating_sub(1),
        };
        Cursor { time: self.time, device: self.device, seq }
    }

    /// Observations of the first reading to skip.
    pub fn skip(&self) -> usize {
        self.skip.unwrap_or(0)
    }
}

/// One page of Observations from readings in the page's order: at most `count`, and where
/// the next page resumes (None at the end). `more` is the readings' own next cursor.
pub fn page(
    readings: &[StoredReading],
    metrics: &[&'static Metric],
    first_skip: usize,
    count: usize,
    more: Option<Cursor>,
) -> (Vec<Value>, Option<PageToken>) {
    let mut out = Vec::new();
    for (i, r) in readings.iter().enumerate() {
        let skip = if i == 0 { first_skip } else { 0 };
        let all = from_reading(r, metrics);
        let rest = all.len().saturating_sub(skip);
        let room = count - out.len();
        if rest > room {
            out.extend(all.into_iter().skip(skip).take(room));
            return (out, Some(PageToken { time: r.time, device: r.device_id, seq: r.seq, skip: Some(skip + room) }));
        }
        out.extend(all.into_iter().skip(skip));
        if out.len() == count && (i + 1 < readings.len() || more.is_some()) {
            let next = PageToken { time: r.time, device: r.device_id, seq: r.seq, skip: None };
            return (out, Some(next));
        }
    }
    (out, more.map(after))
}

/// A token just past the reading `c` names.
fn after(c: Cursor) -> PageToken {
    PageToken { time: c.time, device: c.device, seq: c.seq, skip: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn reading(seq: i64, values: &[(&str, f64)]) -> StoredReading {
        StoredReading {
            time: DateTime::from_timestamp(1_764_000_000 + seq, 0).unwrap(),
            device_id: Uuid::from_u128(7),
            seq,
            patient_id: Some(Uuid::from_u128(9)),
            session_id: None,
            system_status: "normal".into(),
            values: values.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn ids_round_trip() {
        let r = reading(123456789, &[]);
        let id = reading_id(r.device_id, r.time, r.seq, &METRICS[2]);
        assert!(id.len() <= 64, "{id}");
        let (d, t, s, m) = parse_reading_id(&id).unwrap();
        assert_eq!((d, t, s, m.key), (r.device_id, r.time, r.seq, "bp"));
        assert!(parse_reading_id("x-1-2-hr").is_none());
        let latest = DateTime::parse_from_rfc3339(crate::validate::LATEST).unwrap().to_utc();
        let longest =
            METRICS.iter().map(|m| reading_id(Uuid::max(), latest, i64::MAX, m)).max_by_key(String::len).unwrap();
        assert!(longest.len() <= 64, "{longest}");
    }

    #[test]
    fn a_reading_becomes_profiled_observations() {
        let r = reading(1, &[("heartRate", 72.0), ("temperature", 98.6), ("bloodPressure", 120.0)]);
        let obs = from_reading(&r, &[]);
        assert_eq!(obs.len(), 3);
        assert_eq!(obs[1]["valueQuantity"]["code"], "Cel");
        assert_eq!(obs[1]["valueQuantity"]["value"], 37.0);
        assert_eq!(obs[2]["component"][0]["valueQuantity"]["value"], 120.0);
        assert_eq!(obs[2]["component"][1]["dataAbsentReason"]["coding"][0]["code"], "not-performed");
        assert!(obs[2].get("valueQuantity").is_none());
    }

    #[test]
    fn pages_split_readings_and_resume_inside_one() {
        let rs: Vec<_> =
            (1..=3).map(|s| reading(s, &[("heartRate", 70.0), ("spo2", 97.0), ("oxygenSaturation", 97.0)])).collect();
        let (obs, next) = page(&rs, &[], 0, 3, None);
        assert_eq!(obs.len(), 3);
        let next = next.unwrap();
        assert_eq!((next.seq, next.skip), (2, Some(1)));
        let (obs, next) = page(&rs[1..], &[], next.skip(), 10, None);
        assert_eq!(obs.len(), 3);
        assert!(next.is_none());
        let (_, next) = page(&rs[..2], &[], 0, 4, Some(Cursor { time: rs[1].time, device: rs[1].device_id, seq: 2 }));
        assert_eq!((next.unwrap().seq, next.unwrap().skip), (2, None), "resumes after the last reading");
        assert_eq!(PageToken::decode(&next.unwrap().encode()), next);
    }
}
