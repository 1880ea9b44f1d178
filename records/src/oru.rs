//! A treatment record as HL7 v2.6 `ORU^R01^ORU_R01`:
//!
//! - MSH: `NEPHROCARE` and the hospital's code as sender, the EMR as receiver; MSH-10 the
//!   session's id (32 hex digits: the same record sent again has the same control id).
//! - PID: PID-3 the hospital's patient number (`number^^^hospital^MR`), PID-5 the name (as
//!   one family-name component: Nephrocare keeps one name field), PID-7 the birth date, PID-8
//!   the sex (table 0001: M, F, O, U).
//! - PV1: PV1-2 `O` (outpatient), PV1-3 the ward (point of care) and the machine (bed).
//! - OBR: OBR-3 the session (filler order number), OBR-4 `treatment-record^…^99NCD`, OBR-7
//!   and OBR-8 the treatment's start and end, OBR-25 `F`.
//! - OBX (`99NCD` codes, UCUM units, OBX-11 `F`, OBX-14 the end, OBX-18 the machine's serial):
//!   `treatment-status` (CWE `completed` or `interrupted`), `treatment-duration` (min),
//!   `readings-received`, `readings-expected`, `completeness` (%), `uf-rate-per-kg`
//!   (mL/kg/h), `nadir-systolic-pressure` (mm[Hg]), and for each measurement taken its
//!   minimum, mean and maximum as `{code}-min`, `{code}-mean`, `{code}-max` (codes and units
//!   of `nc_ingest::reading::LOCAL_CODES`).

use chrono::{DateTime, FixedOffset};
use nc_hl7::message::{format_dtm, Component, Field, Message, Segment};

use crate::{EmrEndpoint, TreatmentRecord};

/// Our coding system (HL7 table 0396's local form), as device gateways use it.
pub const LOCAL_SYSTEM: &str = "99NCD";

fn cwe(code: &str, text: &str) -> Field {
    Field::components([code, text, LOCAL_SYSTEM])
}

/// The record as an `ORU^R01`, sent `at`.
pub fn treatment_record(r: &TreatmentRecord, to: &EmrEndpoint, at: &DateTime<FixedOffset>) -> Message {
    let ended = format_dtm(&r.ended_at.fixed_offset());
    let control = r.session.simple().to_string();
    let msh = Segment::new("MSH")
        .with_text(3, "NEPHROCARE")
        .with_text(4, r.hospital_code.clone())
        .with_text(5, to.receiving_application.clone())
        .with_text(6, to.receiving_facility.clone())
        .with_text(7, format_dtm(at))
        .with(9, Field::components(["ORU", "R01", "ORU_R01"]))
        .with_text(10, control.clone())
        .with_text(11, "P")
        .with_text(12, "2.6")
        .with_text(15, "AL")
        .with_text(16, "NE");
    let sex = match r.gender.as_str() {
        "male" => "M",
        "female" => "F",
        "other" => "O",
        _ => "U",
    };
    let mut pid = Segment::new("PID")
        .with_text(1, "1")
        .with(3, Field::components([r.patient_number.as_str(), "", "", r.hospital_code.as_str(), "MR"]))
        .with(5, Field::components([r.patient_name.as_str()]))
        .with_text(8, sex);
    if let Some(dob) = r.date_of_birth {
        pid.set(7, Field::text(dob.format("%Y%m%d").to_string()));
    }
    let pv1 = Segment::new("PV1").with_text(1, "1").with_text(2, "O").with(
        3,
        Field::composite(vec![
            Component::text(r.ward.clone().unwrap_or_default()),
            Component::text(""),
            Component::text(r.machine_serial.clone()),
        ]),
    );
    let obr = Segment::new("OBR")
        .with_text(1, "1")
        .with(3, Field::components([control.as_str(), "NEPHROCARE"]))
        .with(4, cwe("treatment-record", "Dialysis treatment record"))
        .with_text(7, format_dtm(&r.started_at.fixed_offset()))
        .with_text(8, ended.clone())
        .with_text(22, format_dtm(at))
        .with_text(25, "F");
    let mut msg = Message::new().with(msh).with(pid).with(pv1).with(obr);

    let mut n = 0;
    let mut obx = |value_type: &str, code: &str, text: &str, value: Field, units: Option<&str>| {
        n += 1;
        let mut seg = Segment::new("OBX")
            .with_text(1, n.to_string())
            .with_text(2, value_type)
            .with(3, cwe(code, text))
            .with(5, value)
            .with_text(11, "F")
            .with_text(14, ended.clone())
            .with(18, Field::components([r.machine_serial.as_str()]));
        if let Some(u) = units {
            seg.set(6, Field::components([u, u, "UCUM"]));
        }
        msg.push(seg);
    };
    let status_text = if r.status == "completed" { "Completed" } else { "Interrupted" };
    obx("CWE", "treatment-status", "Treatment status", cwe(&r.status, status_text), None);
    let minutes = (r.ended_at - r.started_at).num_seconds() as f64 / 60.0;
    obx("NM", "treatment-duration", "Treatment duration", number(minutes), Some("min"));
    obx("NM", "readings-received", "Readings received", number(r.readings_received as f64), Some("{readings}"));
    if let Some(e) = r.readings_expected {
        obx("NM", "readings-expected", "Readings expected", number(e as f64), Some("{readings}"));
    }
    if let Some(c) = r.completeness_pct {
        obx("NM", "completeness", "Readings received of expected", number(c), Some("%"));
    }
    if let Some(u) = r.uf_rate_ml_kg_h {
        obx("NM", "uf-rate-per-kg", "Ultrafiltration rate per kg of dry weight", number(u), Some("mL/kg/h"));
    }
    if let Some(s) = r.nadir_systolic {
        obx("NM", "nadir-systolic-pressure", "Lowest systolic pressure", number(s), Some("mm[Hg]"));
    }
    for (json, code, ucum) in nc_ingest::reading::LOCAL_CODES {
        let Some((_, [min, mean, max])) = r.summary.iter().find(|(m, _)| m == json) else { continue };
        for (suffix, label, v) in [("min", "minimum", min), ("mean", "mean", mean), ("max", "maximum", max)] {
            obx("NM", &format!("{code}-{suffix}"), &format!("{code} {label}"), number(*v), Some(ucum));
        }
    }
    msg
}

/// A number as HL7 NM: no exponent, at most 4 decimals, no trailing zeros.
fn number(v: f64) -> Field {
    let text = format!("{v:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    Field::text(if text == "-0" { "0" } else { text })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use nc_hl7::message::Limits;

    fn record() -> TreatmentRecord {
        let start = chrono::Utc.with_ymd_and_hms(2026, 12, 7, 8, 0, 0).unwrap();
        TreatmentRecord {
            session: uuid::Uuid::nil(),
            status: "completed".into(),
            started_at: start,
            ended_at: start + chrono::Duration::minutes(240),
            patient_number: "P-1|2".into(),
            patient_name: "Doe^Jane".into(),
            date_of_birth: chrono::NaiveDate::from_ymd_opt(1960, 5, 1),
            gender: "female".into(),
            hospital_code: "HOSP".into(),
            machine_serial: "SN-1".into(),
            ward: Some("North".into()),
            readings_received: 1440,
            readings_expected: Some(1441),
            completeness_pct: Some(99.93),
            uf_rate_ml_kg_h: Some(8.5),
            nadir_systolic: Some(92.0),
            summary: vec![("bloodPressure".into(), [92.0, 118.25, 141.0]), ("flowRate".into(), [300.0, 300.0, 300.0])],
        }
    }

    #[test]
    fn a_record_reads_back_with_its_patient_treatment_and_figures() {
        let to = EmrEndpoint {
            address: "emr:2575".into(),
            receiving_application: "EMR".into(),
            receiving_facility: "MAIN".into(),
            tls: false,
            enabled: true,
        };
        let at = chrono::Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 1).unwrap().fixed_offset();
        let text = treatment_record(&record(), &to, &at).encode();
        let m = Message::parse(&text, &Limits::default()).unwrap();
        assert_eq!(m.message_type(), (Some("ORU"), Some("R01"), Some("ORU_R01")));
        assert_eq!(m.control_id(), Some("00000000000000000000000000000000"));
        assert_eq!(m.get("PID", 0, 3, 1), Some("P-1|2"), "escaped on the way out, read back");
        assert_eq!(m.get("PID", 0, 5, 1), Some("Doe^Jane"));
        assert_eq!((m.get("PID", 0, 7, 1), m.get("PID", 0, 8, 1)), (Some("19600501"), Some("F")));
        assert_eq!(m.get("OBR", 0, 8, 1), Some("20261207120000.000+0000"));
        let obx: Vec<(String, String)> = m
            .segments_named("OBX")
            .map(|s| (s.get(3, 1).unwrap_or_default().to_owned(), s.get(5, 1).unwrap_or_default().to_owned()))
            .collect();
        assert_eq!(obx[0], ("treatment-status".into(), "completed".into()));
        assert_eq!(obx[1], ("treatment-duration".into(), "240".into()));
        assert!(obx.contains(&("systolic-pressure-mean".into(), "118.25".into())), "{obx:?}");
        assert!(obx.contains(&("blood-flow-rate-max".into(), "300".into())), "{obx:?}");
        assert_eq!(obx.len(), 7 + 6);
    }
}
