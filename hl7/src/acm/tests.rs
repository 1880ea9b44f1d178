use super::*;
use crate::message::{parse_dtm, ErrorCode, Limits, Message};

fn at(s: &str) -> DateTime<FixedOffset> {
    parse_dtm(s).unwrap()
}

pub(crate) fn sample() -> AlertReport {
    AlertReport {
        control_id: "nc-000042".into(),
        sending_app: Designator {
            namespace: "NEPHROCARE".into(),
            universal_id: Some("1.3.6.1.4.1.99999.1".into()),
            universal_id_type: Some("ISO".into()),
        },
        sending_facility: Designator::named("DIALYSIS_UNIT"),
        receiving_app: Designator::named("AM"),
        receiving_facility: Designator::named("HOSPITAL"),
        sent_at: at("20240301101502+0100"),
        alert_id: "0190f5a2-7c1e-7d2b-9a55-3c1f7e2b9d10".into(),
        occurred_at: at("20240301101500+0100"),
        phase: Phase::Start,
        state: AlertState::Active,
        inactivation: vec![],
        priority: Priority::High,
        kind: AlertKind::Physiological,
        event: Code::local("systolic_bp_low", "Systolic blood pressure low"),
        source: SourceDevice {
            id: "DM-001".into(),
            assigner: Designator::named("NEPHROCARE"),
            kind: Code::local("dialysis_machine", "Dialysis machine"),
        },
        location: Some(AlertLocation {
            unit: "Dialysis".into(),
            room: Some("2".into()),
            bay: Some("Bay 3".into()),
            facility: None,
        }),
        patient: Some(AlertPatient {
            id: "P-77".into(),
            assigning_authority: "HOSP".into(),
            id_type: "MR".into(),
            family_name: Some("O'Brien-Smith".into()),
            given_name: Some("Ann".into()),
        }),
        measurement: Some(Measurement {
            code: Code::mdc(150_021, "MDC_PRESS_BLD_NONINV_SYS"),
            value: "82".into(),
            units: Some(Code::mdc(266_016, "MDC_DIM_MMHG")),
            limits: (Some("90".into()), Some("180".into())),
            abnormality: Some("L".into()),
        }),
        annotation: Some("BP 82 < 90 | bay 3 & co".into()),
        escalation: Some((2, "charge nurse".into())),
        wants_status: true,
    }
}

fn build(r: &AlertReport) -> Message {
    // Through the wire form, as the Alert Manager will see it.
    Message::parse(&report_alert(r).encode(), &Limits::default()).unwrap()
}

#[test]
fn pcd04_has_every_segment_and_field_tf2_requires() {
    let m = build(&sample());
    let names: Vec<&str> = m.segments().map(|s| s.name()).collect();
    assert_eq!(names, ["MSH", "PID", "PV1", "OBR", "OBX", "OBX", "OBX", "OBX", "OBX", "OBX", "OBX", "OBX", "NTE"]);
    // B.1
    assert_eq!(m.message_type(), (Some("ORU"), Some("R40"), Some("ORU_R40")));
    for (field, value) in [(3, "NEPHROCARE"), (10, "nc-000042"), (11, "P"), (12, "2.6"), (15, "AL"), (16, "AL")] {
        assert_eq!(m.get("MSH", 0, field, 1), Some(value), "MSH-{field}");
    }
    assert_eq!(m.get("MSH", 0, 7, 1), Some("20240301101502.000+0100"));
    assert_eq!(m.get("MSH", 0, 21, 3), Some(PCD04_PROFILE_OID));
    // B.5.1, B.6.1
    assert_eq!(
        (m.get("PID", 0, 3, 1), m.get("PID", 0, 3, 4), m.get("PID", 0, 3, 5)),
        (Some("P-77"), Some("HOSP"), Some("MR"))
    );
    assert_eq!(m.get("PID", 0, 5, 1), Some("O'Brien-Smith"));
    assert_eq!((m.get("PV1", 0, 3, 1), m.get("PV1", 0, 3, 3)), (Some("Dialysis"), Some("Bay 3")));
    // B.7.1
    let id = "0190f5a2-7c1e-7d2b-9a55-3c1f7e2b9d10";
    assert_eq!(m.get("OBR", 0, 3, 1), Some(id));
    assert_eq!(m.get("OBR", 0, 2, 1), Some("nc-000042"));
    assert_eq!(m.get("OBR", 0, 4, 1), Some("196616"));
    assert_eq!(m.get_field("OBR", 0, 29).unwrap().0[0].0[1].sub(1), Some(id));
    assert_eq!(m.get_field("OBR", 0, 29).unwrap().0[0].0[1].sub(2), Some("NEPHROCARE"));
    assert!(m.get("OBR", 0, 7, 1).is_some());
    // B.8, B.8.5: facets in order, OBX-1 sequential, OBX-4 distinct, OBX-11 F.
    let obx: Vec<_> = m.segments_named("OBX").collect();
    let ids: Vec<_> = obx.iter().map(|s| s.get(3, 1).unwrap()).collect();
    assert_eq!(ids, ["systolic_bp_low", "0", "150021", "68481", "68482", "68483", "68484", "68485"]);
    let subs: Vec<_> = obx.iter().map(|s| s.get(4, 1).unwrap()).collect();
    assert_eq!(
        subs,
        ["1.0.0.1.1", "1.0.0.1.1.1", "1.0.0.1.2", "1.0.0.1.3", "1.0.0.1.4", "1.0.0.1.5", "1.0.0.1.6", "1.0.0.1.7"]
    );
    for (i, s) in obx.iter().enumerate() {
        assert_eq!(s.get(1, 1), Some((i + 1).to_string().as_str()));
        assert_eq!(s.get(11, 1), Some("F"));
        assert!(s.get(2, 1).is_some());
    }
    assert_eq!(obx[0].get(3, 3), Some(LOCAL_CODING_SYSTEM));
    assert_eq!((obx[0].get(8, 1), obx[0].get(18, 1)), (Some("L"), Some("DM-001")));
    assert_eq!(obx[0].get(14, 1), Some("20240301101500.000+0100"));
    assert_eq!(obx[1].get(5, 1), Some("BP 82 < 90 | bay 3 & co"));
    assert_eq!((obx[2].get(5, 1), obx[2].get(6, 1), obx[2].get(7, 1)), (Some("82"), Some("266016"), Some("90-180")));
    let values: Vec<_> = obx[3..].iter().map(|s| s.get(5, 1).unwrap()).collect();
    assert_eq!(values, ["start", "active", "enabled", "PH", "SP"]);
    assert_eq!(m.get("NTE", 0, 3, 1), Some("Escalation tier 2: charge nurse"));
}

#[test]
fn a_technical_alarm_without_patient_data() {
    let mut r = sample();
    r.kind = AlertKind::Technical;
    r.priority = Priority::Low;
    r.event = Code::local("device_offline", "Machine offline");
    r.patient = None;
    r.location = None;
    r.measurement = None;
    r.annotation = None;
    r.escalation = None;
    r.phase = Phase::End;
    r.state = AlertState::Inactive;
    r.inactivation = vec![Inactivation::AudioPaused, Inactivation::Acknowledged];
    r.wants_status = false;
    let m = build(&r);
    assert!(!m.has("PID") && !m.has("PV1") && !m.has("NTE"));
    assert_eq!(m.get("MSH", 0, 16, 1), Some("NE"));
    assert_eq!((m.get("OBX", 0, 3, 1), m.get("OBX", 0, 5, 1)), (Some("196616"), Some("device_offline")));
    assert_eq!(m.get("OBX", 0, 4, 1), Some("1.0.0.0.1"));
    assert_eq!((m.get("OBX", 1, 3, 1), m.get("OBX", 1, 5, 1)), (Some("68480"), Some("dialysis_machine")));
    let inact: Vec<_> = m.get_field("OBX", 4, 5).unwrap().repetitions().iter().map(|r| r.component(1)).collect();
    assert_eq!(inact, [Some("audio-paused"), Some("acknowledged")]);
    assert_eq!((m.get("OBX", 2, 5, 1), m.get("OBX", 3, 5, 1)), (Some("end"), Some("inactive")));
    assert_eq!((m.get("OBX", 5, 5, 1), m.get("OBX", 6, 5, 1)), (Some("PL"), Some("ST")));
}

#[test]
fn a_location_without_a_patient_says_the_identity_is_not_given() {
    let mut r = sample();
    r.patient = None;
    let m = build(&r);
    assert_eq!(m.get("PID", 0, 31, 1), Some("Y"));
    assert_eq!(m.get("PID", 0, 3, 1), None);
    assert_eq!(m.get("PV1", 0, 3, 3), Some("Bay 3"));
}

/// A Rev 9 style status (TF-2 Rev 9 B.10.2: PRT-4 RO with alternate AAP, PRT-3.2 "Delivered",
/// no MSA), as an Alert Manager following the final text would send it.
const REV9_STATUS: &str = "MSH|^~\\&|AM_VENDOR||NEPHROCARE||20240301101610+0100||ORU^R41^ORU_R41|am-9|P|2.6|||AL|NE\r\
PID|||P-77^^^HOSP^MR\r\
OBR|1||0190f5a2^NEPHROCARE|196616^MDC_EVT_ALARM^MDC|||20240301101610+0100||||||||||||||||||||||^0190f5a2&NEPHROCARE\r\
PRT|disp-1|AD|RESPONSE^Delivered^IHE_PCD_ACM|RO^Responsible Observer^HL70912^AAP^Alert Acknowledging Provider^HL70912|N123^Nurse^Nina|||||pager-17|20240301101609+0100||||^^^^^^5551234\r";

#[test]
fn reads_a_tf2_style_pcd05() {
    let m = Message::parse(REV9_STATUS, &Limits::default()).unwrap();
    let AlertManagerMessage::Status(s) = read_alert_manager_message(&m).unwrap() else { panic!("a status") };
    assert_eq!(s.control_id, "am-9");
    assert_eq!(s.report_control_id, None);
    assert_eq!(s.alert_id, "0190f5a2");
    assert_eq!(s.status, DeliveryStatus::Delivered);
    assert_eq!(s.dissemination_id.as_deref(), Some("disp-1"));
    assert_eq!(
        s.recipient,
        Recipient {
            id: Some("N123".into()),
            name: Some("Nina Nurse".into()),
            device: Some("pager-17".into()),
            telecom: Some("5551234".into())
        }
    );
    assert_eq!(s.at, Some(at("20240301101609+0100")));
}

#[test]
fn our_pcd05_reads_back_and_accepted_is_accepted() {
    let report = StatusReport {
        control_id: "am-10".into(),
        sending_app: Designator::named("AM"),
        receiving_app: Designator::named("NEPHROCARE"),
        at: at("20240301101700+0100"),
        report_control_id: "nc-000042".into(),
        alert_id: "a|b^c".into(),
        dissemination_id: "disp-1".into(),
        recipient: Recipient { id: Some("N123".into()), name: Some("Nina Nurse".into()), device: None, telecom: None },
        status: DeliveryStatus::Accepted,
        oru: false,
    };
    let wire = report_status(&report).encode();
    let m = Message::parse(&wire, &Limits::default()).unwrap();
    let AlertManagerMessage::Status(s) = read_alert_manager_message(&m).unwrap() else { panic!("a status") };
    assert!(s.status.is_accepted());
    assert_eq!((s.alert_id.as_str(), s.report_control_id.as_deref()), ("a|b^c", Some("nc-000042")));
    assert_eq!(s.recipient.name.as_deref(), Some("Nina Nurse"));
    let oru = report_status(&StatusReport { oru: true, ..report });
    assert!(matches!(read_alert_manager_message(&oru), Ok(AlertManagerMessage::Status(_))));
}

#[test]
fn a_bare_ora_is_an_acknowledgement_and_the_rest_errors() {
    let parse = |t: &str| Message::parse(t, &Limits::default()).unwrap();
    let ora = parse("MSH|^~\\&|AM||NC||20240301||ORA^R41^ORA_R41|x|P|2.6\rMSA|AA|nc-000042\r");
    assert!(matches!(read_alert_manager_message(&ora), Ok(AlertManagerMessage::Ack(a)) if a.is_accepted()));
    let unknown = REV9_STATUS.replace("^Delivered^", "^Teleported^");
    let e = read_alert_manager_message(&parse(&unknown)).unwrap_err();
    assert_eq!(
        (e.code, e.location.to_string(), e.control_id.as_deref()),
        (ErrorCode::TableValueNotFound, "PRT-3.2".into(), Some("am-9"))
    );
    let no_prt = parse("MSH|^~\\&|AM||NC||20240301||ORA^R41^ORA_R41|y|P|2.6\rMSA|AA|1\rOBR|1||a\r");
    assert_eq!(read_alert_manager_message(&no_prt).unwrap_err().code, ErrorCode::SegmentSequence);
    let r01 = parse("MSH|^~\\&|GW||NC||20240301||ORU^R01^ORU_R01|z|P|2.6\r");
    assert_eq!(read_alert_manager_message(&r01).unwrap_err().code, ErrorCode::UnsupportedMessageType);
    assert_eq!(DeliveryStatus::parse("acceptedPositive"), Some(DeliveryStatus::AcceptedPositive));
}
