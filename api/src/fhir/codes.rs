//! The terminology of readings: which FHIR code, unit and profile each measurement of a
//! reading (`ingest::reading::COLUMNS`) becomes. Vital signs follow the FHIR vital-signs
//! profiles (category `vital-signs`, LOINC, UCUM); the dialysis machine's parameters have
//! category `procedure` and codes of the Nephrocare code system ([`NEPHROCARE_SYSTEM`],
//! served as `CodeSystem/nephrocare-dialysis`), with a SNOMED CT code beside it where one is
//! established. No ISO/IEEE 11073-10101 (MDC) code is used: none could be verified for
//! these extracorporeal-circuit parameters (see README, "Integrating with FHIR").

use serde_json::{json, Value};

pub const LOINC: &str = "http://loinc.org";
pub const SNOMED: &str = "http://snomed.info/sct";
pub const UCUM: &str = "http://unitsofmeasure.org";
pub const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
/// The Nephrocare code system of dialysis parameters, session summaries and alarms.
pub const NEPHROCARE_SYSTEM: &str = "urn:nephrocare:fhir:CodeSystem:dialysis";

/// Where an Observation belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    VitalSigns,
    Procedure,
}

impl Category {
    pub fn json(self) -> Value {
        let (code, display) = match self {
            Category::VitalSigns => ("vital-signs", "Vital Signs"),
            Category::Procedure => ("procedure", "Procedure"),
        };
        json!([{"coding": [{"system": OBSERVATION_CATEGORY, "code": code, "display": display}], "text": display}])
    }
}

/// One kind of Observation made from a reading.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// Short key, part of the Observation's id.
    pub key: &'static str,
    /// The reading's JSON name of the value (for blood pressure: the systolic one).
    pub json: &'static str,
    /// Its `health_metrics` column.
    pub column: &'static str,
    pub category: Category,
    /// The codings, the first one the primary: (system, code, display).
    pub codings: &'static [(&'static str, &'static str, &'static str)],
    pub text: &'static str,
    /// UCUM code and human unit.
    pub ucum: &'static str,
    pub unit: &'static str,
    /// The vital-signs profile it follows, if any.
    pub profile: Option<&'static str>,
}

const NC: &str = NEPHROCARE_SYSTEM;

/// Blood pressure is one Observation (the panel) whose components are systolic and
/// diastolic; every other measurement is an Observation of its own.
pub const METRICS: [Metric; 15] = [
    Metric {
        key: "hr",
        json: "heartRate",
        column: "heart_rate",
        category: Category::VitalSigns,
        codings: &[(LOINC, "8867-4", "Heart rate")],
        text: "Heart rate",
        ucum: "/min",
        unit: "beats/minute",
        profile: Some("http://hl7.org/fhir/StructureDefinition/heartrate"),
    },
    Metric {
        key: "temp",
        json: "temperature",
        column: "temperature_f",
        category: Category::VitalSigns,
        codings: &[(LOINC, "8310-5", "Body temperature")],
        text: "Body temperature",
        ucum: "Cel",
        unit: "°C",
        profile: Some("http://hl7.org/fhir/StructureDefinition/bodytemp"),
    },
    Metric {
        key: "bp",
        json: "bloodPressure",
        column: "systolic_bp",
        category: Category::VitalSigns,
        codings: &[(LOINC, "85354-9", "Blood pressure panel with all children optional")],
        text: "Blood pressure",
        ucum: "mm[Hg]",
        unit: "mmHg",
        profile: Some("http://hl7.org/fhir/StructureDefinition/bp"),
    },
    Metric {
        key: "spo2",
        json: "oxygenSaturation",
        column: "spo2",
        category: Category::VitalSigns,
        codings: &[
            (LOINC, "2708-6", "Oxygen saturation in Arterial blood"),
            (LOINC, "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
        ],
        text: "Oxygen saturation",
        ucum: "%",
        unit: "%",
        profile: Some("http://hl7.org/fhir/StructureDefinition/oxygensat"),
    },
    Metric {
        key: "qb",
        json: "flowRate",
        column: "blood_flow_rate",
        category: Category::Procedure,
        codings: &[
            (NC, "blood-flow-rate", "Blood flow rate (Qb)"),
            (SNOMED, "401000124105", "Hemodialysis blood flow"),
        ],
        text: "Blood flow rate",
        ucum: "mL/min",
        unit: "mL/min",
        profile: None,
    },
    Metric {
        key: "bvol",
        json: "totalVolume",
        column: "total_volume_l",
        category: Category::Procedure,
        codings: &[(NC, "blood-volume-processed", "Blood volume processed")],
        text: "Blood volume processed",
        ucum: "L",
        unit: "L",
        profile: None,
    },
    Metric {
        key: "qd",
        json: "dialysateFlowRate",
        column: "dialysate_flow_rate",
        category: Category::Procedure,
        codings: &[(NC, "dialysate-flow-rate", "Dialysate flow rate (Qd)")],
        text: "Dialysate flow rate",
        ucum: "mL/min",
        unit: "mL/min",
        profile: None,
    },
    Metric {
        key: "pa",
        json: "arterialPressure",
        column: "arterial_pressure",
        category: Category::Procedure,
        codings: &[(NC, "arterial-pressure", "Arterial (pre-pump) line pressure")],
        text: "Arterial line pressure",
        ucum: "mm[Hg]",
        unit: "mmHg",
        profile: None,
    },
    Metric {
        key: "pv",
        json: "venousPressure",
        column: "venous_pressure",
        category: Category::Procedure,
        codings: &[(NC, "venous-pressure", "Venous line pressure")],
        text: "Venous line pressure",
        ucum: "mm[Hg]",
        unit: "mmHg",
        profile: None,
    },
    Metric {
        key: "tmp",
        json: "transmembranePressure",
        column: "transmembrane_pressure",
        category: Category::Procedure,
        codings: &[(NC, "transmembrane-pressure", "Transmembrane pressure (TMP)")],
        text: "Transmembrane pressure",
        ucum: "mm[Hg]",
        unit: "mmHg",
        profile: None,
    },
    Metric {
        key: "cond",
        json: "conductivity",
        column: "dialysate_conductivity",
        category: Category::Procedure,
        codings: &[(NC, "dialysate-conductivity", "Dialysate conductivity")],
        text: "Dialysate conductivity",
        ucum: "mS/cm",
        unit: "mS/cm",
        profile: None,
    },
    Metric {
        key: "dt",
        json: "dialysateTemperature",
        column: "dialysate_temperature_c",
        category: Category::Procedure,
        codings: &[(NC, "dialysate-temperature", "Dialysate temperature")],
        text: "Dialysate temperature",
        ucum: "Cel",
        unit: "°C",
        profile: None,
    },
    Metric {
        key: "ufr",
        json: "ufRate",
        column: "uf_rate_ml_h",
        category: Category::Procedure,
        codings: &[(NC, "uf-rate", "Ultrafiltration rate")],
        text: "Ultrafiltration rate",
        ucum: "mL/h",
        unit: "mL/h",
        profile: None,
    },
    Metric {
        key: "ufv",
        json: "ufVolume",
        column: "uf_volume_ml",
        category: Category::Procedure,
        codings: &[(NC, "uf-volume", "Ultrafiltration volume removed")],
        text: "Ultrafiltration volume",
        ucum: "mL",
        unit: "mL",
        profile: None,
    },
    Metric {
        key: "ufg",
        json: "ufGoal",
        column: "uf_goal_ml",
        category: Category::Procedure,
        codings: &[(NC, "uf-goal", "Ultrafiltration goal")],
        text: "Ultrafiltration goal",
        ucum: "mL",
        unit: "mL",
        profile: None,
    },
];

/// The panel's components: (reading JSON name, LOINC code, display).
pub const BP_COMPONENTS: [(&str, &str, &str); 2] = [
    ("bloodPressure", "8480-6", "Systolic blood pressure"),
    ("diastolicPressure", "8462-4", "Diastolic blood pressure"),
];

/// The codes of session summaries (Observations `partOf` their Procedure): (key, code,
/// display, UCUM, unit; an empty unit for a count).
pub const SUMMARY_CODES: [(&str, &str, &str, &str, &str); 4] = [
    ("uf-volume", "session-uf-volume", "Ultrafiltration volume removed in the session", "mL", "mL"),
    ("uf-rate", "session-uf-rate", "Ultrafiltration rate over the session per kg dry weight", "mL/kg/h", "mL/kg/h"),
    ("nadir-sbp", "session-nadir-systolic", "Lowest systolic blood pressure in the session", "mm[Hg]", "mmHg"),
    ("alarms", "session-alarm-count", "Alarms raised during the session", "", ""),
];

/// The metrics a `code` search value names (`system|code`, or a bare code): every metric
/// one of whose codings matches.
pub fn metrics_for_code(token: &str) -> Vec<&'static Metric> {
    let (system, code) = match token.split_once('|') {
        Some((s, c)) => (Some(s), c),
        None => (None, token),
    };
    METRICS
        .iter()
        .filter(|m| m.codings.iter().any(|(s, c, _)| *c == code && system.is_none_or(|x| x.is_empty() || x == *s)))
        .collect()
}

/// The value as FHIR states it: body temperature is stored in °F and given in °C.
pub fn fhir_value(metric: &Metric, stored: f64) -> f64 {
    let v = if metric.key == "temp" { (stored - 32.0) * 5.0 / 9.0 } else { stored };
    (v * 100.0).round() / 100.0
}

/// A UCUM quantity.
pub fn quantity(value: f64, ucum: &str, unit: &str) -> Value {
    json!({"value": value, "unit": unit, "system": UCUM, "code": ucum})
}

/// A CodeableConcept of the codings.
pub fn concept(codings: &[(&str, &str, &str)], text: &str) -> Value {
    let codings: Vec<Value> = codings.iter().map(|(s, c, d)| json!({"system": s, "code": c, "display": d})).collect();
    json!({"coding": codings, "text": text})
}

/// The Nephrocare code system, as a `CodeSystem` resource.
pub fn code_system() -> Value {
    let mut concepts: Vec<Value> = METRICS
        .iter()
        .flat_map(|m| m.codings.iter().filter(|(s, ..)| *s == NC))
        .map(|(_, c, d)| json!({"code": c, "display": d}))
        .collect();
    concepts.extend(SUMMARY_CODES.iter().map(|(_, c, d, ..)| json!({"code": c, "display": d})));
    concepts.push(
        json!({"code": "alarm", "display": "A Nephrocare alarm (the alarm's own code is in `text` and an extension)"}),
    );
    json!({
        "resourceType": "CodeSystem",
        "id": "nephrocare-dialysis",
        "url": NC,
        "name": "NephrocareDialysis",
        "title": "Nephrocare dialysis parameters, session summaries and alarms",
        "status": "active",
        "content": "complete",
        "caseSensitive": true,
        "description": "Codes for haemodialysis machine parameters and session summaries for which no \
                        verified ISO/IEEE 11073-10101 or LOINC code is used. Units are UCUM.",
        "concept": concepts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reading_column_has_one_observation_or_component() {
        for (json, column) in nc_ingest::reading::COLUMNS {
            let own = METRICS.iter().filter(|m| m.json == json && m.column == column).count();
            let component = BP_COMPONENTS.iter().filter(|(j, ..)| *j == json).count();
            assert!(own == 1 || (json == "diastolicPressure" && component == 1), "{json}");
        }
    }

    #[test]
    fn codes_find_their_metrics() {
        assert_eq!(metrics_for_code("http://loinc.org|8867-4")[0].key, "hr");
        assert_eq!(metrics_for_code("59408-5")[0].key, "spo2");
        assert!(metrics_for_code("http://snomed.info/sct|8867-4").is_empty());
        assert_eq!(fhir_value(&METRICS[1], 98.6), 37.0);
    }
}
