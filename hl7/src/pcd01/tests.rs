use super::*;
use crate::message::Limits;

/// A gateway's PCD-01 in the shape of TF-2's examples: the MDS row carries OBX-18, the
/// metrics under it (OBX-4 `1.x.x.x`) do not; the second machine puts OBX-18 on its metric.
pub(crate) const PCD01: &str = concat!(
    "MSH|^~\\&|GW_DIALYSIS^0012345678ABCDEF^EUI-64|WARD3|NEPHROCARE|UNIT|20261207120000+0000|s3cret|ORU^R01^ORU_R01|MSG00001|P|2.6|||NE|AL|||||IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO\r",
    "PID|||99999^^^HOSP^PI~12345^^^HOSP^MR||Doe^John^^^^^L\r",
    "PV1||I|WARD3^^BAY4\r",
    "OBR|1|MSG00001^GW^0012345678ABCDEF^EUI-64|MSG00001^GW^0012345678ABCDEF^EUI-64|182777000^monitoring of patient^SCT|||20261207115950+0000\r",
    "OBX|1||DIALYZER^Dialysis machine^99VENDOR|1.0.0.0|||||||X|||||||SN-4711^^0012345678ABCDEF^EUI-64\r",
    "OBX|2|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.1.1.1|120|266016^MDC_DIM_MMHG^MDC|||||R|||20261207115955+0000\r",
    "OBX|3|NM|blood-flow-rate^Blood flow rate^99NCD|1.2.1.1|300|mL/min^mL/min^UCUM|||||R\r",
    "NTE|1||a note\r",
    "OBX|4|CWE|system-status^Machine status^99NCD|1.2.1.2|warning^Warning^99NCD||||||R\r",
    "PID|||777^^^HOSP^MR\r",
    "OBR|1|MSG00001-2|MSG00001-2|182777000^monitoring of patient^SCT|||20261207115951\r",
    "OBX|5|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|97|262688^MDC_DIM_PERCENT^MDC|||||F|||||||SN-4712\r",
);

fn parse(text: &str) -> Message {
    Message::parse(text, &Limits::default()).unwrap()
}

#[test]
fn reads_patients_observations_equipment_and_times() {
    let m = read_pcd01(&parse(PCD01)).unwrap();
    assert_eq!((m.sending_application.as_str(), m.sending_facility.as_str()), ("GW_DIALYSIS", "WARD3"));
    assert_eq!((m.security.as_deref(), m.control_id.as_str()), (Some("s3cret"), "MSG00001"));
    assert_eq!(m.groups.len(), 2);
    let first = &m.groups[0];
    assert_eq!(first.patient, Some(("12345".into(), 1)), "the MR repetition of PID-3");
    let obs = &first.observations;
    assert_eq!(obs.len(), 3, "the MDS row has no value: not an observation");
    assert_eq!((obs[0].obx, obs[0].code.code.as_str(), obs[0].code.system.as_str()), (2, "150021", "MDC"));
    assert_eq!(obs[0].value, Value::Numeric(120.0));
    assert_eq!(obs[0].units.as_ref().map(|u| u.text.as_str()), Some("MDC_DIM_MMHG"));
    assert_eq!(obs[0].equipment, "SN-4711", "inherited from its MDS");
    assert_eq!(obs[0].at, parse_dtm("20261207115955+0000").unwrap(), "OBX-14");
    assert_eq!(obs[1].at, parse_dtm("20261207115950+0000").unwrap(), "OBR-7 when OBX-14 is empty");
    assert_eq!(obs[1].equipment, "SN-4711");
    assert!(matches!(&obs[2].value, Value::Coded(c) if c.code == "warning"));
    assert_eq!(obs[2].obx, 4, "the NTE between does not count");
    let second = &m.groups[1];
    assert_eq!(second.patient, Some(("777".into(), 2)));
    assert_eq!((second.observations[0].equipment.as_str(), second.observations[0].status.as_str()), ("SN-4712", "F"));
}

#[test]
fn a_machine_without_a_patient_sends_no_pid() {
    let text = PCD01.replace("PID|||99999^^^HOSP^PI~12345^^^HOSP^MR||Doe^John^^^^^L\r", "");
    let m = read_pcd01(&parse(&text)).unwrap();
    assert_eq!(m.groups[0].patient, None);
    assert_eq!(m.groups[0].observations.len(), 3);
}

#[test]
fn each_fault_is_named_with_its_place_and_code() {
    let fault = |from: &str, to: &str| {
        let e = read_pcd01(&parse(&PCD01.replacen(from, to, 1))).unwrap_err();
        assert_eq!(e.control_id.as_deref(), Some("MSG00001"), "{e}");
        (e.code.code(), e.location.to_string())
    };
    assert_eq!(fault("ORU^R01^ORU_R01", "ADT^A01^ADT_A01"), (200, "MSH-9".into()));
    assert_eq!(fault("ORU^R01^ORU_R01", "ORU^R40^ORU_R40"), (201, "MSH-9.2".into()));
    assert_eq!(fault("|MSG00001|P|", "|MSG00001|D|"), (202, "MSH-11".into()));
    assert_eq!(fault("|P|2.6|", "|P|3.0|"), (203, "MSH-12".into()));
    assert_eq!(fault("|120|266016", "|12O|266016"), (102, "OBX[2]-5".into()));
    assert_eq!(fault("OBX|3|NM|blood-flow-rate", "OBX|3||blood-flow-rate"), (101, "OBX[3]-2".into()));
    assert_eq!(fault("|R|||20261207115955+0000", "|R|||2026-12-07"), (102, "OBX[2]-14".into()));
    assert_eq!(fault("SN-4711^^0012345678ABCDEF^EUI-64", ""), (101, "OBX[2]-18".into()));
    assert_eq!(fault("PID|||777^^^HOSP^MR", "PID|||^^^HOSP^MR"), (101, "PID[2]-3.1".into()));
    assert_eq!(
        fault("OBX|5|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC", "OBX|5|NM|^MDC_PULS_OXIM_SAT_O2^MDC"),
        (101, "OBX[5]-3".into())
    );
    let no_obr = PCD01.replace(
        "OBR|1|MSG00001^GW^0012345678ABCDEF^EUI-64|MSG00001^GW^0012345678ABCDEF^EUI-64|182777000^monitoring of patient^SCT|||20261207115950+0000\r",
        "",
    );
    let e = read_pcd01(&parse(&no_obr)).unwrap_err();
    assert_eq!((e.code.code(), e.location.to_string()), (100, "OBX".into()));
    let e = read_pcd01(&parse("MSH|^~\\&|GW|W|||20261207120000||ORU^R01|c1|P|2.6\rPID|||1^^^H^MR\r")).unwrap_err();
    assert_eq!(e.code.code(), 100, "nothing observed");
}

#[test]
fn anything_parsed_reads_or_fails_without_panicking() {
    // Every prefix and a few mutations of the example: an answer, never a panic.
    for cut in 0..PCD01.len() {
        if let Ok(m) = Message::parse(&PCD01[..cut], &Limits::default()) {
            let _ = read_pcd01(&m);
        }
    }
    for (i, _) in PCD01.char_indices().step_by(7) {
        for with in ["|", "^", "~", "\\", "&", "\r", "X", ""] {
            let mut t = PCD01.to_owned();
            t.replace_range(i..i + 1, with);
            if let Ok(m) = Message::parse(&t, &Limits::default()) {
                let _ = read_pcd01(&m);
            }
        }
    }
}
