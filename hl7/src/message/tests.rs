use super::*;

/// IHE PCD TF-2 (Rev 9 and Rev 10 draft) annex E.3.1, joined where the document wraps lines.
pub(crate) const TF2_E31: &str = "MSH|^~\\&|MINDRAY_EGATEWAY^00A037EB2175780F^EUI-64|MINDRAY|AM_PHILIPS_IEM^00095CFFFE741952^EUI-64|PHILIPS|20120111150457-0600||ORU^R40^ORU_R40|1|P|2.6|||AL|NE||UNICODE UTF-8|||IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.4.4.1^ISO\r\
PID|||HO2009001^^^Hospital^PI||Hon^Albert^^^^^L||18991230|M\r\
PV1||I|HO Surgery^OR^1\r\
OBR|1|1^MINDRAY_EGATEWAY^00A037EB2175780F^EUI64|1^MINDRAY_EGATEWAY^00A037EB2175780F^EUI64|196616^MDC_EVT_ALARM^MDC|||20120111150457-0600||||||||||||||||||||||^1&MINDRAY_EGATEWAY&00A037EB2175780F&EUI-64\r\
OBX|1|ST|196670^MDC_EVT_LO^MDC|1.3.1.150456.1|Low SpO2|||L~PM~SP|||F|||20120111150457-0600||||F1519EFX^SHENZHEN_DEVICE^mindray.com^DNS\r\
OBX|2|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.3.1.150456.2|88|262688^MDC_DIM_PERCENT^MDC|90-96||||F|||20120111150457-0600\r\
OBX|3|ST|68481^MDC_ATTR_EVENT_PHASE^MDC|1.3.1.150456.3|start||||||F\r\
OBX|4|ST|68482^MDC_ATTR_ALARM_STATE^MDC|1.3.1.150456.4|active||||||F\r\
OBX|5|ST|68483^MDC_ATTR_ALARM_INACTIVATION_STATE|1.3.1.150456.5|enabled|||||F\r";

fn parse(text: &str) -> Result<Message, ParseError> {
    Message::parse(text, &Limits::default())
}

#[test]
fn reads_the_tf2_example() {
    let m = parse(TF2_E31).unwrap();
    assert_eq!(m.segments().count(), 9);
    assert_eq!(m.get("MSH", 0, 1, 1), Some("|"));
    assert_eq!(m.get("MSH", 0, 2, 1), Some("^~\\&"));
    assert_eq!(m.get("MSH", 0, 3, 1), Some("MINDRAY_EGATEWAY"));
    assert_eq!(m.message_type(), (Some("ORU"), Some("R40"), Some("ORU_R40")));
    assert_eq!(m.control_id(), Some("1"));
    assert_eq!(m.get("OBR", 0, 29, 2), Some("1"));
    assert_eq!(m.segment("OBR", 0).unwrap().field(29).unwrap().0[0].0[1].sub(2), Some("MINDRAY_EGATEWAY"));
    assert_eq!(m.get("OBX", 0, 18, 1), Some("F1519EFX"));
    assert_eq!(m.get("OBX", 2, 5, 1), Some("start"));
    let flags: Vec<_> = m.get_field("OBX", 0, 8).unwrap().repetitions().iter().map(|r| r.component(1)).collect();
    assert_eq!(flags, [Some("L"), Some("PM"), Some("SP")]);
    assert_eq!(m.segments_named("OBX").count(), 5);
}

#[test]
fn encode_then_parse_is_the_identity() {
    let m = parse(TF2_E31).unwrap();
    assert_eq!(m.encode(), TF2_E31);
    assert_eq!(parse(&m.encode()).unwrap(), m);
}

#[test]
fn tolerates_lf_and_crlf_segment_separators_and_a_bom() {
    let lf = TF2_E31.replace('\r', "\n");
    let crlf = format!("\u{feff}{}", TF2_E31.replace('\r', "\r\n"));
    assert_eq!(parse(&lf).unwrap(), parse(TF2_E31).unwrap());
    assert_eq!(parse(&crlf).unwrap(), parse(TF2_E31).unwrap());
}

#[test]
fn text_with_delimiters_is_escaped_and_read_back() {
    let nasty = "Bay 3|A^B~C\\D&E\rF";
    let m = Message::new()
        .with(Segment::new("MSH").with_text(3, "APP").with(9, Field::components(["ORU", "R40", "ORU_R40"])))
        .with(Segment::new("NTE").with_text(3, nasty));
    let text = m.encode();
    assert_eq!(text.matches('\r').count(), 2, "{text:?}");
    let back = parse(&text).unwrap();
    assert_eq!(back.get("NTE", 0, 3, 1), Some(nasty));
    assert_eq!(back.get("MSH", 0, 3, 1), Some("APP"));
}

#[test]
fn delimiters_come_from_msh() {
    let text = "MSH#!$?%#APP#FAC#####ORU!R40#42\rNTE#1##a?F?b!c$d%e\r";
    let m = parse(text).unwrap();
    assert_eq!(m.get("MSH", 0, 1, 1), Some("#"));
    assert_eq!(m.get("MSH", 0, 2, 1), Some("!$?%"));
    assert_eq!(m.get("MSH", 0, 9, 2), Some("R40"));
    assert_eq!(m.control_id(), Some("42"));
    assert_eq!(m.get("NTE", 0, 3, 1), Some("a#b"));
    assert_eq!(m.get("NTE", 0, 3, 2), Some("c"));
    assert_eq!(m.get_field("NTE", 0, 3).unwrap().repetitions().len(), 2);
    assert_eq!(m.encode(), text);
}

#[test]
fn errors_name_the_place_and_the_table_0357_code() {
    let e = parse("PID|1\r").unwrap_err();
    assert_eq!((e.code, e.location.segment.as_str()), (ErrorCode::SegmentSequence, "MSH"));
    assert_eq!(parse("").unwrap_err().code, ErrorCode::SegmentSequence);
    let e = parse("MSH|^~\r").unwrap_err();
    assert_eq!((e.code, e.location.field), (ErrorCode::DataType, Some(2)));
    let e = parse("MSH|^^\\&|\r").unwrap_err();
    assert_eq!(e.code, ErrorCode::DataType, "repeated delimiter");
    let e = parse("MSH|^~\\&|A||||||ORU^R01|77|P|2.6\rob x|1\r").unwrap_err();
    assert_eq!((e.code, e.control_id.as_deref()), (ErrorCode::SegmentSequence, Some("77")));
    let m = parse("MSH|^~\\&|A||||||ORU^R01|77|P|2.6\rOBX|1\rOBX|2\r").unwrap();
    let e = m.require("OBX", 1, 3, 1).unwrap_err();
    assert_eq!(e.code, ErrorCode::RequiredFieldMissing);
    assert_eq!(e.location, Location::component("OBX", 2, 3, 1));
    assert_eq!(e.control_id.as_deref(), Some("77"));
    assert_eq!(e.location.to_string(), "OBX[2]-3.1");
}

#[test]
fn limits_are_errors_not_allocations() {
    let small = Limits { max_message_bytes: 200, max_segments: 3, max_field_bytes: 10, max_elements: 40 };
    let long = format!("MSH|^~\\&|{}\r", "x".repeat(11));
    let e = Message::parse(&long, &small).unwrap_err();
    assert_eq!((e.code, e.location.field), (ErrorCode::ApplicationInternal, Some(3)));
    assert!(Message::parse(&"x".repeat(201), &small).is_err());
    let many = "MSH|^~\\&|A\rNTE|1\rNTE|2\rNTE|3\r";
    assert!(Message::parse(many, &small).is_err());
    let empties = format!("MSH|^~\\&|A\rNTE|{}\r", "~".repeat(50));
    assert!(Message::parse(&empties, &small).is_err());
    // A huge field under the default limits.
    let huge = format!("MSH|^~\\&|A\rNTE|1||{}\r", "y".repeat(100_000));
    assert_eq!(parse(&huge).unwrap_err().location, Location::field("NTE", 1, 3));
}

/// Random bytes, every prefix of a real message, and mutations of it: always a value or an error.
#[test]
fn never_panics_on_any_input() {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let limits = Limits::default();
    for _ in 0..2_000 {
        let len = (next() % 300) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let _ = Message::parse_bytes(&bytes, &limits);
        let mut framed = b"MSH|^~\\&|".to_vec();
        framed.extend(bytes.iter().map(|b| b"|^~\\&\r\nAZ09x"[(*b as usize) % 12]));
        if let Ok(m) = Message::parse_bytes(&framed, &limits) {
            // Trailing empty values are not written, so compare what is written.
            let again = Message::parse(&m.encode(), &limits).map(|a| a.encode());
            assert_eq!(again, Ok(m.encode()), "{:?}", String::from_utf8_lossy(&framed));
        }
    }
    for end in 0..=TF2_E31.len() {
        if let Some(prefix) = TF2_E31.get(..end) {
            if let Ok(m) = parse(prefix) {
                assert_eq!(parse(&m.encode()).map(|a| a.encode()), Ok(m.encode()));
            }
        }
    }
    let bytes = TF2_E31.as_bytes();
    for _ in 0..2_000 {
        let mut mutated = bytes.to_vec();
        for _ in 0..3 {
            let at = (next() as usize) % mutated.len();
            mutated[at] = next() as u8;
        }
        let _ = Message::parse_bytes(&mutated, &limits);
    }
}
