//! Which measurement of a reading an observation identifier (OBX-3) is, and its units (OBX-6)
//! converted to the reading's.
//!
//! The built-in table: the ISO/IEEE 11073-10101 (MDC) codes verified in IHE PCD TF-2's
//! examples and the Personal Health Device IG (NIBP systolic 150021 and diastolic 150022,
//! pulse rate 149546, SpO2 150456, body temperature 150364), matched by number or by
//! reference id with coding system `MDC`; and for everything else our own coding system
//! [`LOCAL_SYSTEM`] (`99NCD`, HL7 table 0396's local form), whose codes are the FHIR API's
//! `urn:nephrocare:fhir:CodeSystem:dialysis` codes. No MDC code for the extracorporeal
//! circuit (blood and dialysate flow, line pressures, ultrafiltration) could be verified, so
//! none is assumed: a gateway that sends vendor codes for them has them mapped by its admins
//! ([`Mapping`], per gateway, checked before the built-in table).
//!
//! Units: UCUM codes (case as UCUM writes them, plus the common `ml`, `mmHg`, `bpm`) or MDC
//! unit reference ids, in OBX-6.1 or OBX-6.2; each converted exactly (kPa → mmHg, °C ↔ °F,
//! L ↔ mL, S/m → mS/cm). A unit we do not know for that measurement is refused, never
//! guessed.

use serde::{Deserialize, Serialize};

/// Our coding system for observations (HL7 table 0396 `99zzz`).
pub const LOCAL_SYSTEM: &str = "99NCD";

/// The measurement that carries the machine's own status (`normal`, `warning`, `danger`).
pub const SYSTEM_STATUS: &str = "systemStatus";

/// One admin-set mapping of a gateway's code to a measurement (a reading's JSON name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mapping {
    /// OBX-3.3, the coding system (e.g. `99VENDOR`, `MDC`).
    pub system: String,
    /// OBX-3.1.
    pub code: String,
    /// `heartRate`, `venousPressure`, …, or `systemStatus`.
    pub measurement: String,
}

/// The measurements a code may map to: the reading's (JSON names) and the status.
pub fn measurements() -> impl Iterator<Item = &'static str> {
    nc_ingest::reading::RANGES.iter().map(|(name, ..)| *name).chain([SYSTEM_STATUS])
}

/// (MDC number, MDC reference id, measurement).
const MDC: &[(&str, &str, &str)] = &[
    ("150021", "MDC_PRESS_BLD_NONINV_SYS", "bloodPressure"),
    ("150022", "MDC_PRESS_BLD_NONINV_DIA", "diastolicPressure"),
    ("149546", "MDC_PULS_RATE_NONINV", "heartRate"),
    ("150456", "MDC_PULS_OXIM_SAT_O2", "oxygenSaturation"),
    ("150364", "MDC_TEMP_BODY", "temperature"),
];

/// The status's code in our coding system (the measurements' are
/// `nc_ingest::reading::LOCAL_CODES`).
pub const STATUS_CODE: &str = "system-status";

/// The measurement `code` is, by the gateway's own mappings first, then the built-in table.
pub fn measurement_of<'a>(code: &nc_hl7::acm::Code, mappings: &'a [Mapping]) -> Option<&'a str>
where
    'static: 'a,
{
    if let Some(m) = mappings.iter().find(|m| m.code == code.code && m.system.eq_ignore_ascii_case(&code.system)) {
        return Some(m.measurement.as_str());
    }
    let system = code.system.to_ascii_uppercase();
    match system.as_str() {
        "MDC" => MDC.iter().find(|(n, refid, _)| *n == code.code || *refid == code.code || *refid == code.text),
        _ => None,
    }
    .map(|(_, _, m)| *m)
    .or_else(|| {
        if system != LOCAL_SYSTEM {
            return None;
        }
        if code.code == STATUS_CODE {
            return Some(SYSTEM_STATUS);
        }
        nc_ingest::reading::LOCAL_CODES.iter().find(|(_, c, _)| *c == code.code).map(|(m, ..)| *m)
    })
}

/// A unit: the names it is written as, and how a value in it becomes the measurement's unit.
struct Unit {
    names: &'static [&'static str],
    convert: fn(f64) -> f64,
}

fn same(v: f64) -> f64 {
    v
}

const MMHG: Unit = Unit { names: &["mm[Hg]", "mmHg", "MDC_DIM_MMHG"], convert: same };
/// 1 kPa = 7.500 616 827 mmHg.
const KPA: Unit = Unit { names: &["kPa", "MDC_DIM_KILO_PASCAL"], convert: |v| v * 7.500_616_827 };
const PERCENT: Unit = Unit { names: &["%", "MDC_DIM_PERCENT"], convert: same };
const PER_MIN: Unit =
    Unit { names: &["/min", "{beats}/min", "{beat}/min", "bpm", "MDC_DIM_BEAT_PER_MIN"], convert: same };
const ML_MIN: Unit = Unit { names: &["mL/min", "ml/min", "MDC_DIM_MILLI_L_PER_MIN"], convert: same };
const L_MIN_AS_ML: Unit = Unit { names: &["L/min", "l/min", "MDC_DIM_L_PER_MIN"], convert: |v| v * 1000.0 };
const LITRE: Unit = Unit { names: &["L", "l", "MDC_DIM_L"], convert: same };
const ML_AS_L: Unit = Unit { names: &["mL", "ml", "MDC_DIM_MILLI_L"], convert: |v| v / 1000.0 };
const ML: Unit = Unit { names: &["mL", "ml", "MDC_DIM_MILLI_L"], convert: same };
const L_AS_ML: Unit = Unit { names: &["L", "l", "MDC_DIM_L"], convert: |v| v * 1000.0 };
const ML_H: Unit = Unit { names: &["mL/h", "ml/h", "MDC_DIM_MILLI_L_PER_HR"], convert: same };
const L_H_AS_ML: Unit = Unit { names: &["L/h", "l/h", "MDC_DIM_L_PER_HR"], convert: |v| v * 1000.0 };
const MS_CM: Unit = Unit { names: &["mS/cm"], convert: same };
/// 1 S/m = 10 mS/cm.
const S_M_AS_MS_CM: Unit = Unit { names: &["S/m"], convert: |v| v * 10.0 };
const CEL: Unit = Unit { names: &["Cel", "MDC_DIM_DEGC"], convert: same };
const FAHR_AS_CEL: Unit = Unit { names: &["[degF]", "MDC_DIM_FAHR"], convert: |v| (v - 32.0) * 5.0 / 9.0 };
const FAHR: Unit = Unit { names: &["[degF]", "MDC_DIM_FAHR"], convert: same };
const CEL_AS_FAHR: Unit = Unit { names: &["Cel", "MDC_DIM_DEGC"], convert: |v| v * 9.0 / 5.0 + 32.0 };

/// The units each measurement may come in (its own first).
fn units_of(measurement: &str) -> &'static [Unit] {
    match measurement {
        "heartRate" => &[PER_MIN],
        "temperature" => &[FAHR, CEL_AS_FAHR],
        "bloodPressure" | "diastolicPressure" | "arterialPressure" | "venousPressure" | "transmembranePressure" => {
            &[MMHG, KPA]
        }
        "oxygenSaturation" => &[PERCENT],
        "flowRate" | "dialysateFlowRate" => &[ML_MIN, L_MIN_AS_ML],
        "totalVolume" => &[LITRE, ML_AS_L],
        "conductivity" => &[MS_CM, S_M_AS_MS_CM],
        "dialysateTemperature" => &[CEL, FAHR_AS_CEL],
        "ufRate" => &[ML_H, L_H_AS_ML],
        "ufVolume" | "ufGoal" => &[ML, L_AS_ML],
        _ => &[],
    }
}

/// `value` in `units` (OBX-6: code, text) as the measurement's own unit, or `None` when the
/// unit is not one we know for it.
pub fn convert(measurement: &str, value: f64, units: &nc_hl7::acm::Code) -> Option<f64> {
    let written = [units.code.trim(), units.text.trim()];
    units_of(measurement).iter().find(|u| written.iter().any(|w| u.names.contains(w))).map(|u| (u.convert)(value))
}

/// The names a measurement's units may be written as, for an error message.
pub fn units_named(measurement: &str) -> String {
    units_of(measurement).iter().flat_map(|u| u.names.iter().copied()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use nc_hl7::acm::Code;

    fn code(code: &str, text: &str, system: &str) -> Code {
        Code { code: code.into(), text: text.into(), system: system.into() }
    }

    #[test]
    fn codes_map_by_gateway_then_mdc_then_ours() {
        let none: Vec<Mapping> = vec![];
        assert_eq!(measurement_of(&code("150021", "", "MDC"), &none), Some("bloodPressure"));
        assert_eq!(measurement_of(&code("x", "MDC_PULS_OXIM_SAT_O2", "mdc"), &none), Some("oxygenSaturation"));
        assert_eq!(measurement_of(&code("venous-pressure", "", LOCAL_SYSTEM), &none), Some("venousPressure"));
        assert_eq!(measurement_of(&code("venous-pressure", "", "99OTHER"), &none), None);
        assert_eq!(measurement_of(&code("4711", "VEN", "99VENDOR"), &none), None);
        let vendor =
            vec![Mapping { system: "99VENDOR".into(), code: "4711".into(), measurement: "venousPressure".into() }];
        assert_eq!(measurement_of(&code("4711", "VEN", "99vendor"), &vendor), Some("venousPressure"));
        // Every local and MDC target is a measurement a reading has.
        let known: Vec<&str> = measurements().collect();
        assert!(MDC.iter().map(|(_, _, m)| *m).all(|m| known.contains(&m)));
        assert_eq!(measurement_of(&code("system-status", "", LOCAL_SYSTEM), &none), Some(SYSTEM_STATUS));
        for (json, local, ucum) in nc_ingest::reading::LOCAL_CODES {
            assert_eq!(measurement_of(&code(local, "", LOCAL_SYSTEM), &none), Some(json));
            assert_eq!(convert(json, 1.0, &code(ucum, "", "UCUM")), Some(1.0), "{json}'s own unit is {ucum}");
        }
        assert!(
            known.iter().filter(|m| **m != SYSTEM_STATUS).all(|m| !units_named(m).is_empty()),
            "every measurement has units"
        );
    }

    #[test]
    fn units_convert_exactly_or_not_at_all() {
        let u = |c: &str| code(c, "", "UCUM");
        assert_eq!(convert("venousPressure", 20.0, &u("kPa")).map(|v| (v * 1000.0).round() / 1000.0), Some(150.012));
        assert_eq!(convert("temperature", 37.0, &u("Cel")).map(|v| (v * 10.0).round() / 10.0), Some(98.6));
        assert_eq!(convert("dialysateTemperature", 98.6, &u("[degF]")).map(|v| (v * 10.0).round() / 10.0), Some(37.0));
        assert_eq!(convert("ufVolume", 1.5, &code("MDC_DIM_L", "", "MDC")), Some(1500.0));
        assert_eq!(convert("totalVolume", 1500.0, &u("mL")), Some(1.5));
        assert_eq!(convert("conductivity", 1.4, &u("S/m")), Some(14.0));
        assert_eq!(convert("bloodPressure", 120.0, &code("266016", "MDC_DIM_MMHG", "MDC")), Some(120.0));
        assert_eq!(convert("bloodPressure", 120.0, &u("cm[H2O]")), None);
        assert_eq!(convert("heartRate", 70.0, &u("Hz")), None);
    }
}
