//! The telemetry payload a machine sends (MQTT `…/telemetry` or `POST /api/health-metrics`),
//! and its validation. Field names and units follow the product spec; the dialysis
//! parameters are optional. A reading that fails validation is never stored: the device is
//! told which field and why.

use chrono::{DateTime, Duration, Utc};
use nc_domain::{PatientId, SystemStatus};
use nc_messaging::payload::{millis, V1};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How far ahead of the server clock a reading's timestamp may be.
pub const MAX_CLOCK_AHEAD_SECS: i64 = 30;
/// How old a reading may be (older ones would land in dropped chunks).
pub const MAX_AGE_DAYS: i64 = 30;

/// Parses a payload into `T`, naming the field at fault: its path for a wrong type or value,
/// the field itself when it is unknown, missing or given twice. This is the one parser of
/// what machines send, over MQTT and HTTP alike: a payload is exactly one JSON object (not
/// an array of the fields, nothing after it) with each field at most once.
pub fn parse_json<T: serde::de::DeserializeOwned>(payload: &[u8], what: &str) -> Result<T, Invalid> {
    // serde's derived structs also accept a JSON array of the fields in order: refuse it.
    if payload.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Invalid::new("payload", format!("invalid {what}: must be a JSON object")));
    }
    let mut de = serde_json::Deserializer::from_slice(payload);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let text = inner.to_string();
        // serde says e.g. "unknown field `foo`, expected ...", "missing field `seq`" or
        // "duplicate field `seq`".
        let named = text
            .split('`')
            .nth(1)
            .filter(|_| ["unknown field", "missing field", "duplicate field"].iter().any(|p| text.starts_with(p)));
        let field = match named {
            Some(f) => f.to_owned(),
            // serde_path_to_error says `?` where the JSON is broken before any field.
            None if path.is_empty() || path == "." || path.contains('?') => "payload".to_owned(),
            None => path,
        };
        Invalid::new(&field, format!("invalid {what}: {text}"))
    })?;
    de.end().map_err(|e| Invalid::new("payload", format!("invalid {what}: {e}")))?;
    Ok(value)
}

/// One reading, as the machine sends it. At least one measurement is required, each within
/// its plausible range (`RANGES`); unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = with_ranges)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
#[cfg_attr(feature = "openapi", oai(rename = "Reading", rename_all = "camelCase", deny_unknown_fields))]
pub struct ReadingIn {
    /// Payload version: 1.
    #[schemars(extend("const" = 1))]
    pub v: u32,
    /// The device's sequence number for this reading (idempotent redelivery).
    #[schemars(range(min = 0))]
    pub seq: i64,
    /// When the machine measured it (RFC 3339): not more than 30 s ahead of the server's
    /// clock, not older than 30 days.
    pub ts: DateTime<Utc>,
    /// The patient being treated, when the machine knows.
    pub patient_id: Option<PatientId>,
    /// beats/min
    pub heart_rate: Option<f64>,
    /// °F
    pub temperature: Option<f64>,
    /// Systolic blood pressure, mmHg.
    pub blood_pressure: Option<f64>,
    /// Diastolic blood pressure, mmHg.
    pub diastolic_pressure: Option<f64>,
    /// SpO2, %.
    pub oxygen_saturation: Option<f64>,
    /// Blood flow rate Qb, mL/min.
    pub flow_rate: Option<f64>,
    /// Blood volume processed, L.
    pub total_volume: Option<f64>,
    pub system_status: SystemStatus,
    /// Dialysate flow rate Qd, mL/min.
    pub dialysate_flow_rate: Option<f64>,
    /// mmHg (negative before the pump).
    pub arterial_pressure: Option<f64>,
    /// mmHg.
    pub venous_pressure: Option<f64>,
    /// Transmembrane pressure, mmHg.
    pub transmembrane_pressure: Option<f64>,
    /// Dialysate conductivity, mS/cm.
    pub conductivity: Option<f64>,
    /// Dialysate temperature, °C.
    pub dialysate_temperature: Option<f64>,
    /// Ultrafiltration rate, mL/h.
    pub uf_rate: Option<f64>,
    /// Ultrafiltration volume removed so far, mL.
    pub uf_volume: Option<f64>,
    /// Ultrafiltration goal, mL.
    pub uf_goal: Option<f64>,
}

/// Why a reading was refused: what kind of refusal (`code`), the field (JSON name) and a
/// sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    /// `validation_failed`, or [`SEQ_CONFLICT`].
    pub code: &'static str,
    pub field: String,
    pub message: String,
}

/// The code of a reading whose `seq` the device already used for another reading (another
/// `ts`, or other values): a reading is identified by (device, seq).
pub const SEQ_CONFLICT: &str = "seq_conflict";

impl Invalid {
    /// A reading that breaks a rule.
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self { code: "validation_failed", field: field.to_owned(), message: message.into() }
    }

    /// A reading whose seq is already taken by another reading of the device.
    pub fn seq_conflict(message: impl Into<String>) -> Self {
        Self { code: SEQ_CONFLICT, field: "seq".to_owned(), message: message.into() }
    }

    /// The body published on the device's `errors` topic (or answered with HTTP 422).
    pub fn to_json(&self, seq: Option<i64>) -> Value {
        let error = DeviceError {
            v: V1,
            code: if self.code == SEQ_CONFLICT {
                DeviceErrorCode::SeqConflict
            } else {
                DeviceErrorCode::ValidationFailed
            },
            seq,
            field: self.field.clone(),
            message: self.message.clone(),
            at: Utc::now(),
        };
        nc_messaging::payload::to_json(&error)
    }
}

/// Why a device's message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceErrorCode {
    /// It breaks a rule of the payload: never stored; resending it cannot help.
    ValidationFailed,
    /// Its `seq` is taken by another reading of the device (another time or other values).
    SeqConflict,
}

/// Why a reading or session message was refused (`…/d/{device}/errors`).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct DeviceError {
    pub v: V1,
    pub code: DeviceErrorCode,
    /// The refused reading's `seq`, when it could be read.
    pub seq: Option<i64>,
    /// The field at fault (its JSON name), or `payload`.
    pub field: String,
    pub message: String,
    #[serde(serialize_with = "millis::serialize")]
    #[schemars(with = "DateTime<Utc>")]
    pub at: DateTime<Utc>,
}

/// States [`RANGES`] in the schema of [`ReadingIn`]: each measurement's minimum and maximum
/// (its unit is in its description), and that at least one is present.
fn with_ranges(schema: &mut schemars::Schema) {
    if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        for (name, _, low, high) in RANGES {
            if let Some(p) = properties.get_mut(*name).and_then(Value::as_object_mut) {
                p.insert("minimum".into(), (*low).into());
                p.insert("maximum".into(), (*high).into());
            }
        }
    }
    let any: Vec<Value> = RANGES.iter().map(|(name, ..)| serde_json::json!({"required": [name]})).collect();
    schema.insert("anyOf".into(), any.into());
}

/// (JSON name, unit, plausible range). Beyond these, a sensor is broken or the payload wrong.
pub const RANGES: &[(&str, &str, f64, f64)] = &[
    ("heartRate", "beats/min", 20.0, 300.0),
    ("temperature", "°F", 80.0, 110.0),
    ("bloodPressure", "mmHg", 40.0, 300.0),
    ("diastolicPressure", "mmHg", 20.0, 200.0),
    ("oxygenSaturation", "%", 50.0, 100.0),
    ("flowRate", "mL/min", 0.0, 1000.0),
    ("totalVolume", "L", 0.0, 200.0),
    ("dialysateFlowRate", "mL/min", 0.0, 1200.0),
    ("arterialPressure", "mmHg", -500.0, 300.0),
    ("venousPressure", "mmHg", -100.0, 600.0),
    ("transmembranePressure", "mmHg", -500.0, 600.0),
    ("conductivity", "mS/cm", 5.0, 25.0),
    ("dialysateTemperature", "°C", 25.0, 45.0),
    ("ufRate", "mL/h", 0.0, 4000.0),
    ("ufVolume", "mL", 0.0, 8000.0),
    ("ufGoal", "mL", 0.0, 8000.0),
];

/// Each measurement's code in Nephrocare's own coding system (HL7 v2 `99NCD`; the same codes
/// as the FHIR API's `urn:nephrocare:fhir:CodeSystem:dialysis` where it has one) and its UCUM
/// unit, by JSON name, in [`RANGES`] order: what device gateways may send and treatment
/// records carry.
pub const LOCAL_CODES: [(&str, &str, &str); 16] = [
    ("heartRate", "heart-rate", "/min"),
    ("temperature", "body-temperature", "[degF]"),
    ("bloodPressure", "systolic-pressure", "mm[Hg]"),
    ("diastolicPressure", "diastolic-pressure", "mm[Hg]"),
    ("oxygenSaturation", "oxygen-saturation", "%"),
    ("flowRate", "blood-flow-rate", "mL/min"),
    ("totalVolume", "blood-volume-processed", "L"),
    ("dialysateFlowRate", "dialysate-flow-rate", "mL/min"),
    ("arterialPressure", "arterial-pressure", "mm[Hg]"),
    ("venousPressure", "venous-pressure", "mm[Hg]"),
    ("transmembranePressure", "transmembrane-pressure", "mm[Hg]"),
    ("conductivity", "dialysate-conductivity", "mS/cm"),
    ("dialysateTemperature", "dialysate-temperature", "Cel"),
    ("ufRate", "uf-rate", "mL/h"),
    ("ufVolume", "uf-volume", "mL"),
    ("ufGoal", "uf-goal", "mL"),
];

/// Where each measurement is stored: (JSON name, `health_metrics` column).
pub const COLUMNS: [(&str, &str); 16] = [
    ("heartRate", "heart_rate"),
    ("temperature", "temperature_f"),
    ("bloodPressure", "systolic_bp"),
    ("diastolicPressure", "diastolic_bp"),
    ("oxygenSaturation", "spo2"),
    ("flowRate", "blood_flow_rate"),
    ("totalVolume", "total_volume_l"),
    ("dialysateFlowRate", "dialysate_flow_rate"),
    ("arterialPressure", "arterial_pressure"),
    ("venousPressure", "venous_pressure"),
    ("transmembranePressure", "transmembrane_pressure"),
    ("conductivity", "dialysate_conductivity"),
    ("dialysateTemperature", "dialysate_temperature_c"),
    ("ufRate", "uf_rate_ml_h"),
    ("ufVolume", "uf_volume_ml"),
    ("ufGoal", "uf_goal_ml"),
];

impl ReadingIn {
    /// Parses JSON, naming the offending field when it can.
    pub fn parse(payload: &[u8]) -> Result<ReadingIn, Invalid> {
        parse_json(payload, "reading")
    }

    /// The measurements, by JSON name, in [`RANGES`] order.
    pub fn measurements(&self) -> [(&'static str, Option<f64>); 16] {
        [
            ("heartRate", self.heart_rate),
            ("temperature", self.temperature),
            ("bloodPressure", self.blood_pressure),
            ("diastolicPressure", self.diastolic_pressure),
            ("oxygenSaturation", self.oxygen_saturation),
            ("flowRate", self.flow_rate),
            ("totalVolume", self.total_volume),
            ("dialysateFlowRate", self.dialysate_flow_rate),
            ("arterialPressure", self.arterial_pressure),
            ("venousPressure", self.venous_pressure),
            ("transmembranePressure", self.transmembrane_pressure),
            ("conductivity", self.conductivity),
            ("dialysateTemperature", self.dialysate_temperature),
            ("ufRate", self.uf_rate),
            ("ufVolume", self.uf_volume),
            ("ufGoal", self.uf_goal),
        ]
    }

    /// A reading of these measurements (in [`COLUMNS`] order), e.g. for tests and benchmarks.
    pub fn from_values(seq: i64, ts: DateTime<Utc>, system_status: SystemStatus, v: [Option<f64>; 16]) -> ReadingIn {
        ReadingIn {
            v: 1,
            seq,
            ts,
            patient_id: None,
            heart_rate: v[0],
            temperature: v[1],
            blood_pressure: v[2],
            diastolic_pressure: v[3],
            oxygen_saturation: v[4],
            flow_rate: v[5],
            total_volume: v[6],
            system_status,
            dialysate_flow_rate: v[7],
            arterial_pressure: v[8],
            venous_pressure: v[9],
            transmembrane_pressure: v[10],
            conductivity: v[11],
            dialysate_temperature: v[12],
            uf_rate: v[13],
            uf_volume: v[14],
            uf_goal: v[15],
        }
    }

    /// Checks version, sequence, timestamp and ranges against `now`.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), Invalid> {
        if self.v != 1 {
            return Err(Invalid::new("v", format!("payload version {} is not supported; use 1", self.v)));
        }
        if self.seq < 0 {
            return Err(Invalid::new("seq", "must be 0 or more"));
        }
        if self.ts > now + Duration::seconds(MAX_CLOCK_AHEAD_SECS) {
            return Err(Invalid::new(
                "ts",
                format!("is more than {MAX_CLOCK_AHEAD_SECS} s in the future; check the machine's clock"),
            ));
        }
        if self.ts < now - Duration::days(MAX_AGE_DAYS) {
            return Err(Invalid::new("ts", format!("is more than {MAX_AGE_DAYS} days old")));
        }
        let mut any = false;
        for ((name, value), (_, unit, low, high)) in self.measurements().iter().zip(RANGES) {
            if let Some(v) = value {
                any = true;
                if !v.is_finite() || *v < *low || *v > *high {
                    return Err(Invalid::new(name, format!("{v} is outside the plausible range {low}..{high} {unit}")));
                }
            }
        }
        if !any {
            return Err(Invalid::new("payload", "a reading needs at least one measurement"));
        }
        Ok(())
    }
}

/// Shortest and longest `expectedIntervalMs` of a session message.
pub const EXPECTED_INTERVAL_MS: (i32, i32) = (10, 3_600_000);

/// A session message (`…/session`): the machine starts or ends treating a patient.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = start_needs_patient)]
pub struct SessionIn {
    /// Payload version: 1.
    #[schemars(extend("const" = 1))]
    pub v: u32,
    /// `start` or `end`.
    pub event: SessionEvent,
    /// When it happened (RFC 3339), not more than 30 s ahead of the server's clock.
    pub ts: DateTime<Utc>,
    /// Required for `start`.
    pub patient_id: Option<PatientId>,
    /// The interval at which the machine will send readings, for completeness %.
    #[schemars(range(min = EXPECTED_INTERVAL_MS.0, max = EXPECTED_INTERVAL_MS.1))]
    pub expected_interval_ms: Option<i32>,
}

/// States in the schema of [`SessionIn`] that `start` names its patient.
fn start_needs_patient(schema: &mut schemars::Schema) {
    schema.insert("if".into(), serde_json::json!({"properties": {"event": {"const": "start"}}}));
    schema.insert(
        "then".into(),
        serde_json::json!({"required": ["patientId"], "properties": {"patientId": {"type": "string"}}}),
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionEvent {
    Start,
    End,
}

impl SessionIn {
    pub fn parse(payload: &[u8], now: DateTime<Utc>) -> Result<SessionIn, Invalid> {
        let s: SessionIn = parse_json(payload, "session message")?;
        if s.v != 1 {
            return Err(Invalid::new("v", "payload version must be 1"));
        }
        if s.ts > now + Duration::seconds(MAX_CLOCK_AHEAD_SECS) {
            return Err(Invalid::new("ts", "is in the future; check the machine's clock"));
        }
        if s.event == SessionEvent::Start && s.patient_id.is_none() {
            return Err(Invalid::new("patientId", "is required to start a session"));
        }
        if let Some(i) = s.expected_interval_ms {
            let (low, high) = EXPECTED_INTERVAL_MS;
            if !(low..=high).contains(&i) {
                return Err(Invalid::new("expectedIntervalMs", format!("must be between {low} and {high}")));
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(extra: &str) -> Result<ReadingIn, Invalid> {
        let now = Utc::now().to_rfc3339();
        let json = format!(r#"{{"v":1,"seq":1,"ts":"{now}","systemStatus":"normal","heartRate":72{extra}}}"#);
        let r = ReadingIn::parse(json.as_bytes())?;
        r.validate(Utc::now()).map(|_| r)
    }

    #[test]
    fn each_rule_names_its_field() {
        assert!(reading("").is_ok());
        assert_eq!(reading(r#","oxygenSaturation":140"#).unwrap_err().field, "oxygenSaturation");
        assert_eq!(reading(r#","bogus":1"#).unwrap_err().field, "bogus");
        assert_eq!(reading(r#","flowRate":"fast""#).unwrap_err().field, "flowRate");
        let late = (Utc::now() + Duration::minutes(5)).to_rfc3339();
        let r = ReadingIn::parse(
            format!(r#"{{"v":1,"seq":1,"ts":"{late}","systemStatus":"normal","heartRate":70}}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(r.validate(Utc::now()).unwrap_err().field, "ts");
        let e = ReadingIn::parse(br#"{"v":1,"ts":"2026-01-01T00:00:00Z","systemStatus":"normal"}"#).unwrap_err();
        assert_eq!(e.field, "seq");
        let e = ReadingIn::parse(br#"{"v":1,"seq":1,"ts":"2026-01-01T00:00:00Z","systemStatus":"ok"}"#).unwrap_err();
        assert_eq!(e.field, "systemStatus", "{e}");
    }

    /// One object, each field once, nothing after it: whatever the transport.
    #[test]
    fn only_one_plain_object_is_a_reading() {
        let ok = br#"{"v":1,"seq":1,"ts":"2026-01-01T00:00:00Z","systemStatus":"normal","heartRate":70}"#;
        assert!(ReadingIn::parse(ok).is_ok());
        assert!(ReadingIn::parse(format!(" \n{}\n", std::str::from_utf8(ok).unwrap()).as_bytes()).is_ok());
        let twice = br#"{"v":1,"seq":1,"seq":2,"ts":"2026-01-01T00:00:00Z","systemStatus":"normal","heartRate":70}"#;
        let e = ReadingIn::parse(twice).unwrap_err();
        assert_eq!((e.code, e.field.as_str()), ("validation_failed", "seq"), "{e}");
        // The 21 fields in order, as an array: serde's derived struct would take it.
        let array = br#"[1, 1, "2026-01-01T00:00:00Z", null, 70, null, null, null, null, null, null, "normal",
                         null, null, null, null, null, null, null, null, null]"#;
        let e = ReadingIn::parse(array).unwrap_err();
        assert_eq!(e.field, "payload", "{e}");
        let e = ReadingIn::parse(&[ok.as_slice(), b" {}"].concat()).unwrap_err();
        assert_eq!(e.field, "payload", "trailing data: {e}");
        assert_eq!(SessionIn::parse(b"[1]", Utc::now()).unwrap_err().field, "payload");
        assert_eq!(ReadingIn::parse(b"{not json").unwrap_err().field, "payload");
        assert_eq!(Invalid::seq_conflict("taken").to_json(Some(1))["code"], SEQ_CONFLICT);
    }
}
