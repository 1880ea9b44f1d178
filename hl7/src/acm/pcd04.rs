//! PCD-04 Report Alert, `ORU^R40^ORU_R40` (TF-2 §3.4.4.1.2, table 3.4.4.1.2-2):
//! MSH, [PID [PV1]], OBR, the alert's OBX facets, [NTE].

use super::{AlertKind, AlertReport, AlertState, Code, Designator, Inactivation, Priority, PCD04_PROFILE_OID};
use crate::message::{format_dtm, Component, Field, Message, Segment};

/// The alert as an HL7 message, ready for [`Message::encode`].
pub fn report_alert(r: &AlertReport) -> Message {
    let mut msg = Message::new().with(msh(r));
    // TF-2 §3.4.4.1.2: PV1 only within the PATIENT group, so a location without a patient
    // still needs a PID; PID-31 "Y" (identity unknown, TF-2 B.5.1) says none is given.
    if r.patient.is_some() || r.location.is_some() {
        msg.push(pid(r));
    }
    if let Some(l) = &r.location {
        // TF-2 B.6.1: PV1-3 the alert's location. PV1-2 (required by HL7) "U": class unknown.
        let pl = Field::components([
            l.unit.clone(),
            l.room.clone().unwrap_or_default(),
            l.bay.clone().unwrap_or_default(),
            l.facility.clone().unwrap_or_default(),
        ]);
        msg.push(Segment::new("PV1").with_text(2, "U").with(3, pl));
    }
    msg.push(obr(r));
    for obx in facets(r) {
        msg.push(obx);
    }
    if let Some((tier, note)) = &r.escalation {
        let text =
            if note.is_empty() { format!("Escalation tier {tier}") } else { format!("Escalation tier {tier}: {note}") };
        msg.push(Segment::new("NTE").with_text(1, "1").with_text(3, text));
    }
    msg
}

fn hd(d: &Designator) -> Field {
    Field::components([
        d.namespace.clone(),
        d.universal_id.clone().unwrap_or_default(),
        d.universal_id_type.clone().unwrap_or_default(),
    ])
}

fn cwe(c: &Code) -> Field {
    Field::components([c.code.clone(), c.text.clone(), c.system.clone()])
}

/// TF-2 B.1.
fn msh(r: &AlertReport) -> Segment {
    Segment::new("MSH")
        .with(3, hd(&r.sending_app))
        .with(4, hd(&r.sending_facility))
        .with(5, hd(&r.receiving_app))
        .with(6, hd(&r.receiving_facility))
        .with_text(7, format_dtm(&r.sent_at))
        .with(9, Field::components(["ORU", "R40", "ORU_R40"]))
        .with_text(10, r.control_id.clone())
        .with_text(11, "P")
        .with_text(12, "2.6")
        // MSH-15 AL for PCD-04; MSH-16 other than NE asks for PCD-05 (B.1, CP-150).
        .with_text(15, "AL")
        .with_text(16, if r.wants_status { "AL" } else { "NE" })
        .with_text(18, "UNICODE UTF-8")
        .with(21, Field::components(["IHE_PCD_ACM_001", "IHE PCD", PCD04_PROFILE_OID, "ISO"]))
}

/// TF-2 B.5.1: PID-3, PID-5 (all optional; sent only when the caller gives a patient).
fn pid(r: &AlertReport) -> Segment {
    let mut pid = Segment::new("PID");
    match &r.patient {
        Some(p) => {
            pid.set(3, Field::components([p.id.as_str(), "", "", p.assigning_authority.as_str(), p.id_type.as_str()]));
            if p.family_name.is_some() || p.given_name.is_some() {
                let family = p.family_name.clone().unwrap_or_default();
                let given = p.given_name.clone().unwrap_or_default();
                // XPN-7 name type L (legal), as the TF-2 examples.
                pid.set(
                    5,
                    Field::components([
                        family,
                        given,
                        String::new(),
                        String::new(),
                        String::new(),
                        String::new(),
                        "L".to_owned(),
                    ]),
                );
            }
        }
        None => {
            pid.set(31, Field::text("Y"));
        }
    }
    pid
}

/// The alert's EI: `id^app namespace^app universal id^type` (the form of the TF-2 E.3 examples).
fn alert_ei(id: &str, app: &Designator) -> Vec<String> {
    vec![
        id.to_owned(),
        app.namespace.clone(),
        app.universal_id.clone().unwrap_or_default(),
        app.universal_id_type.clone().unwrap_or_default(),
    ]
}

/// TF-2 B.7.1. OBR-2 (placer order number) names this report (its control id: unique per
/// message); OBR-3 (filler order number) and OBR-29 (parent, EIP component 2 = filler
/// assigned EI, as sub-components) name the alert and stay the same through its start,
/// updates and end: TF-2 annex E.3.2 keeps OBR-3 and OBR-29 and changes OBR-2 between the
/// start and end reports of one alarm. OBR-4 is 196616^MDC_EVT_ALARM^MDC; OBR-7 the time the
/// report was packaged.
fn obr(r: &AlertReport) -> Segment {
    let ei = alert_ei(&r.alert_id, &r.sending_app);
    Segment::new("OBR")
        .with_text(1, "1")
        .with(2, Field::components(alert_ei(&r.control_id, &r.sending_app)))
        .with(3, Field::components(ei.clone()))
        .with(4, cwe(&Code::mdc(196_616, "MDC_EVT_ALARM")))
        .with_text(7, format_dtm(&r.sent_at))
        .with(29, Field::composite(vec![Component::default(), Component::subs(ei)]))
}

/// One OBX: set id, value type, identifier, sub-id, value; result status F (TF-2 B.8.6: the
/// only value in PCD-04).
fn obx(set_id: usize, value_type: &str, id: &Code, sub_id: &str, value: Field) -> Segment {
    Segment::new("OBX")
        .with_text(1, set_id.to_string())
        .with_text(2, value_type)
        .with(3, cwe(id))
        .with_text(4, sub_id)
        .with(5, value)
        .with_text(11, "F")
}

/// TF-2 B.8.5, tables B.8.5-1 and B.8.5-2: every facet is required for every alert type, in
/// ascending facet order, OBX-4 `<MDS>.<VMD>.<CHAN>.<METRIC>.<FACET>`. The device is flattened
/// (B.8.1): MDS 1, no VMD or channel; metric 1 when a measurement is the source, 0 otherwise
/// (as annex E.3.2). Priority and type are separate OBX (facets 6 and 7), not OBX-8
/// repetitions: B.8.5 deprecates the OBX-8 form for new implementations.
fn facets(r: &AlertReport) -> Vec<Segment> {
    let prefix = if r.measurement.is_some() { "1.0.0.1" } else { "1.0.0.0" };
    let sub = |facet: &str| format!("{prefix}.{facet}");
    let st = |text: &str| Field::text(text);
    let mut out = Vec::new();

    // Facet 1, event identification: for a physiological alarm OBX-3 is the event itself and
    // OBX-5 its text (E.3.1); otherwise OBX-3 is MDC_EVT_ALARM and OBX-5 the event (E.3.2).
    let mut event = match r.kind {
        AlertKind::Physiological => obx(1, "ST", &r.event, &sub("1"), st(&r.event.text)),
        AlertKind::Technical | AlertKind::Advisory => {
            obx(1, "CWE", &Code::mdc(196_616, "MDC_EVT_ALARM"), &sub("1"), cwe(&r.event))
        }
    };
    if let Some(flag) = r.measurement.as_ref().and_then(|m| m.abnormality.clone()) {
        event.set(8, Field::text(flag));
    }
    event.set(14, Field::text(format_dtm(&r.occurred_at)));
    let dev = &r.source;
    event.set(
        18,
        Field::components([
            dev.id.clone(),
            dev.assigner.namespace.clone(),
            dev.assigner.universal_id.clone().unwrap_or_default(),
            dev.assigner.universal_id_type.clone().unwrap_or_default(),
        ]),
    );
    out.push(event);

    // The optional annotation right after facet 1 (B.8.5 "can be followed by"), as its
    // sub-facet; MDC 0 / MDCX_ATTR_ALERT_ANNOTATION is the preliminary code TF-2 gives.
    if let Some(text) = &r.annotation {
        out.push(obx(0, "ST", &Code::mdc(0, "MDCX_ATTR_ALERT_ANNOTATION"), &sub("1.1"), st(text)));
    }

    // Facet 2, source identification: the measurement (value, units, alarm limits in OBX-7),
    // or for a technical alarm MDC_ATTR_ALERT_SOURCE with the device kind in OBX-5.
    out.push(match &r.measurement {
        Some(m) => {
            let mut s = obx(0, "NM", &m.code, &sub("2"), st(&m.value));
            if let Some(u) = &m.units {
                s.set(6, cwe(u));
            }
            if let (Some(lo), Some(hi)) = (&m.limits.0, &m.limits.1) {
                s.set(7, Field::text(format!("{lo}-{hi}")));
            } else if let Some(lo) = &m.limits.0 {
                s.set(7, Field::text(format!(">{lo}")));
            } else if let Some(hi) = &m.limits.1 {
                s.set(7, Field::text(format!("<{hi}")));
            }
            s
        }
        None => obx(0, "CWE", &Code::mdc(68_480, "MDC_ATTR_ALERT_SOURCE"), &sub("2"), cwe(&dev.kind)),
    });

    let state = match r.state {
        AlertState::Inactive => "inactive",
        AlertState::Active => "active",
        AlertState::Latched => "latched",
    };
    let inactivation: Vec<&str> = if r.inactivation.is_empty() {
        vec!["enabled"]
    } else {
        r.inactivation
            .iter()
            .map(|i| match i {
                Inactivation::Enabled => "enabled",
                Inactivation::AudioPaused => "audio-paused",
                Inactivation::AudioOff => "audio-off",
                Inactivation::AlarmPaused => "alarm-paused",
                Inactivation::AlarmOff => "alarm-off",
                Inactivation::Acknowledged => "acknowledged",
            })
            .collect()
    };
    let priority = match r.priority {
        Priority::High => "PH",
        Priority::Medium => "PM",
        Priority::Low => "PL",
        Priority::NotIndicated => "PN",
    };
    let kind = match r.kind {
        AlertKind::Physiological => "SP",
        AlertKind::Technical => "ST",
        AlertKind::Advisory => "SA",
    };
    out.push(obx(0, "ST", &Code::mdc(68_481, "MDC_ATTR_EVENT_PHASE"), &sub("3"), st(r.phase.as_str())));
    out.push(obx(0, "ST", &Code::mdc(68_482, "MDC_ATTR_ALARM_STATE"), &sub("4"), st(state)));
    out.push(obx(
        0,
        "ST",
        &Code::mdc(68_483, "MDC_ATTR_ALARM_INACTIVATION_STATE"),
        &sub("5"),
        Field::repeated(inactivation),
    ));
    out.push(obx(0, "ST", &Code::mdc(68_484, "MDC_ATTR_ALARM_PRIORITY"), &sub("6"), st(priority)));
    out.push(obx(0, "ST", &Code::mdc(68_485, "MDC_ATTR_ALERT_TYPE"), &sub("7"), st(kind)));

    // OBX-1: 1, 2, 3, … in message order (B.8 OBX-1).
    for (i, s) in out.iter_mut().enumerate() {
        s.set(1, Field::text((i + 1).to_string()));
    }
    out
}
