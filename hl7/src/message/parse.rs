//! Reading a message: delimiters from MSH-1/MSH-2, segments split at `\r` (also `\n` and
//! `\r\n`, which file-based and some socket senders use), every value unescaped. Bounded by
//! [`Limits`]; any input gives a message or a [`ParseError`], never a panic.

use std::collections::HashMap;

use super::{unescape, Component, Delimiters, ErrorCode, Field, Location, Message, ParseError, Repetition, Segment};

/// Bounds on what is read, so a peer cannot make us allocate without limit. Going past one is
/// a [`ParseError`] with code 207 (application error: "beyond what we can safely handle"):
/// 104 "value too long" would say it better but only exists from HL7 v2.7, and PCD is v2.6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Bytes in the whole message.
    pub max_message_bytes: usize,
    /// Segments in the message.
    pub max_segments: usize,
    /// Bytes in one field (as received, escapes included).
    pub max_field_bytes: usize,
    /// Delimiters in the message (fields, repetitions, components, sub-components together):
    /// each one is an allocation, so this bounds memory for a message of empty values.
    pub max_elements: usize,
}

impl Default for Limits {
    /// 1 MiB, 2 000 segments, 64 KiB a field, 200 000 elements: well above an alarm report or a
    /// device gateway's observation batch, well below harm.
    fn default() -> Self {
        Self { max_message_bytes: 1 << 20, max_segments: 2_000, max_field_bytes: 64 << 10, max_elements: 200_000 }
    }
}

fn limit(location: Location, what: String) -> ParseError {
    ParseError::new(ErrorCode::ApplicationInternal, location, what)
}

pub(super) fn parse(text: &str, limits: &Limits) -> Result<Message, ParseError> {
    if text.len() > limits.max_message_bytes {
        return Err(limit(
            Location::default(),
            format!("message of {} bytes exceeds the limit of {}", text.len(), limits.max_message_bytes),
        ));
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split(['\r', '\n']).filter(|l| !l.trim().is_empty());
    let first = lines.next().ok_or_else(|| {
        ParseError::new(ErrorCode::SegmentSequence, Location::segment("MSH", 1), "empty message: MSH is required")
    })?;
    let delimiters = delimiters(first)?;
    let elements = text
        .chars()
        .filter(|c| {
            [delimiters.field, delimiters.component, delimiters.repetition, delimiters.subcomponent].contains(c)
        })
        .count();
    if elements > limits.max_elements {
        return Err(limit(
            Location::default(),
            format!("{elements} delimiters exceed the limit of {}", limits.max_elements),
        ));
    }

    let mut message = Message { delimiters, segments: Vec::new() };
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, line) in std::iter::once(first).chain(lines).enumerate() {
        let control_id = message.control_id().map(str::to_owned);
        let fail = |e: ParseError| e.with_control_id(control_id.as_deref());
        if index >= limits.max_segments {
            return Err(fail(limit(Location::default(), format!("more than {} segments", limits.max_segments))));
        }
        let segment = parse_segment(line, index, &delimiters, limits, &mut seen).map_err(fail)?;
        message.segments.push(segment);
    }
    Ok(message)
}

/// MSH-1 is the character after `MSH`; MSH-2 the (4, or 5 from v2.7 with the truncation
/// character, which we ignore) characters up to the next field separator.
fn delimiters(msh: &str) -> Result<Delimiters, ParseError> {
    if !msh.starts_with("MSH") {
        return Err(ParseError::new(
            ErrorCode::SegmentSequence,
            Location::segment("MSH", 1),
            "the first segment is not MSH",
        ));
    }
    let bad = |field: usize, why: &str| ParseError::new(ErrorCode::DataType, Location::field("MSH", 1, field), why);
    let mut chars = msh[3..].chars();
    let field = chars.next().ok_or_else(|| bad(1, "no field separator"))?;
    let encoding: Vec<char> = chars.take_while(|c| *c != field).collect();
    if !(4..=5).contains(&encoding.len()) {
        return Err(bad(2, "the encoding characters must be 4 (component, repetition, escape, sub-component)"));
    }
    let d = Delimiters {
        field,
        component: encoding[0],
        repetition: encoding[1],
        escape: encoding[2],
        subcomponent: encoding[3],
    };
    let all = [d.field, d.component, d.repetition, d.escape, d.subcomponent];
    if all.iter().any(|c| c.is_alphanumeric() || c.is_whitespace() || c.is_control()) {
        return Err(bad(2, "a delimiter is a letter, digit, space or control character"));
    }
    if (1..all.len()).any(|i| all[..i].contains(&all[i])) {
        return Err(bad(2, "the delimiters are not distinct"));
    }
    Ok(d)
}

fn parse_segment(
    line: &str,
    index: usize,
    d: &Delimiters,
    limits: &Limits,
    seen: &mut HashMap<String, usize>,
) -> Result<Segment, ParseError> {
    let (name, rest) = match line.find(d.field) {
        Some(at) => (&line[..at], Some(&line[at + d.field.len_utf8()..])),
        None => (line, None),
    };
    let valid = name.len() == 3
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if !valid {
        return Err(ParseError::new(
            ErrorCode::SegmentSequence,
            Location::default(),
            format!("segment {} has no valid segment id (three upper-case letters or digits)", index + 1),
        ));
    }
    if index > 0 && name == "MSH" {
        return Err(ParseError::new(ErrorCode::SegmentSequence, Location::segment("MSH", 2), "a second MSH"));
    }
    let sequence = {
        let n = seen.entry(name.to_owned()).or_insert(0);
        *n += 1;
        *n
    };
    let mut segment = Segment::new(name);
    let raw_fields: Vec<&str> = rest.map(|r| r.split(d.field).collect()).unwrap_or_default();
    let first_number = if name == "MSH" { 2 } else { 1 };
    if name == "MSH" {
        segment.fields.push(Field::text(d.field));
    }
    for (i, raw) in raw_fields.into_iter().enumerate() {
        let number = first_number + i;
        if raw.len() > limits.max_field_bytes {
            return Err(limit(
                Location::field(name, sequence, number),
                format!("field of {} bytes exceeds the limit of {}", raw.len(), limits.max_field_bytes),
            ));
        }
        let field = if name == "MSH" && number == 2 {
            // The encoding characters are not split or unescaped.
            Field::text(d.encoding_characters())
        } else {
            parse_field(raw, d)
        };
        segment.fields.push(field);
    }
    Ok(segment)
}

fn parse_field(raw: &str, d: &Delimiters) -> Field {
    if raw.is_empty() {
        return Field::default();
    }
    Field(
        raw.split(d.repetition)
            .map(|rep| {
                Repetition(
                    rep.split(d.component)
                        .map(|comp| Component(comp.split(d.subcomponent).map(|s| unescape(s, d)).collect()))
                        .collect(),
                )
            })
            .collect(),
    )
}
