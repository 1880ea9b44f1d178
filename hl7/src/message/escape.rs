//! HL7 v2 escape sequences (HL7 v2.6 chapter 2, 2.7 "Use of escape sequences in text fields").
//!
//! Every text value goes through [`escape`] on the way out, so a `|`, `^`, `~`, `\` or `&` typed
//! by a person can never split a field, and through [`unescape`] on the way in. Control
//! characters (a CR would end the segment, 0x0B / 0x1C would break MLLP framing) are written
//! as `\Xhh\` hexadecimal escapes.

use super::Delimiters;

/// `value` with every delimiter and control character replaced by its escape sequence.
pub fn escape(value: &str, d: &Delimiters) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        let code = if c == d.field {
            Some('F')
        } else if c == d.component {
            Some('S')
        } else if c == d.repetition {
            Some('R')
        } else if c == d.escape {
            Some('E')
        } else if c == d.subcomponent {
            Some('T')
        } else {
            None
        };
        match code {
            Some(code) => {
                out.push(d.escape);
                out.push(code);
                out.push(d.escape);
            }
            None if c.is_ascii_control() => {
                out.push(d.escape);
                out.push_str(&format!("X{:02X}", c as u32));
                out.push(d.escape);
            }
            None => out.push(c),
        }
    }
    out
}

/// `raw` with the delimiter escapes (`\F\ \S\ \T\ \R\ \E\`) and hexadecimal escapes (`\Xhh..\`,
/// when they decode to UTF-8) replaced by their characters. Formatting sequences (`\H\`,
/// `\.br\`, …) and anything malformed (an escape never closed) are kept verbatim: they are
/// text a receiver may want to see, and guessing would lose it.
pub fn unescape(raw: &str, d: &Delimiters) -> String {
    if !raw.contains(d.escape) {
        return raw.to_owned();
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(start) = rest.find(d.escape) {
        out.push_str(&rest[..start]);
        let after = &rest[start + d.escape.len_utf8()..];
        let Some(end) = after.find(d.escape) else {
            // Unterminated: the rest is literal text.
            out.push_str(&rest[start..]);
            return out;
        };
        let body = &after[..end];
        match decode_sequence(body, d) {
            Some(text) => out.push_str(&text),
            None => {
                out.push(d.escape);
                out.push_str(body);
                out.push(d.escape);
            }
        }
        rest = &after[end + d.escape.len_utf8()..];
    }
    out.push_str(rest);
    out
}

fn decode_sequence(body: &str, d: &Delimiters) -> Option<String> {
    match body {
        "F" => Some(d.field.to_string()),
        "S" => Some(d.component.to_string()),
        "R" => Some(d.repetition.to_string()),
        "E" => Some(d.escape.to_string()),
        "T" => Some(d.subcomponent.to_string()),
        _ => {
            let hex = body.strip_prefix('X')?;
            if hex.is_empty() || hex.len() % 2 != 0 {
                return None;
            }
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| hex.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
                .collect::<Option<Vec<u8>>>()?;
            String::from_utf8(bytes).ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Delimiters {
        Delimiters::default()
    }

    #[test]
    fn every_delimiter_is_escaped_and_comes_back() {
        let text = r"a|b^c~d\e&f";
        let escaped = escape(text, &d());
        assert_eq!(escaped, r"a\F\b\S\c\R\d\E\e\T\f");
        assert_eq!(unescape(&escaped, &d()), text);
    }

    #[test]
    fn control_characters_become_hex_escapes() {
        let text = "line1\rline2\n\u{0b}\u{1c}";
        let escaped = escape(text, &d());
        assert!(!escaped.chars().any(|c| c.is_ascii_control()), "{escaped:?}");
        assert_eq!(unescape(&escaped, &d()), text);
    }

    #[test]
    fn unicode_survives() {
        let text = "Bettplatz 3 – Müller ^ 山田";
        assert_eq!(unescape(&escape(text, &d()), &d()), text);
    }

    #[test]
    fn custom_delimiters_are_honoured() {
        let custom = Delimiters { field: '#', component: '!', repetition: '$', escape: '?', subcomponent: '%' };
        let text = "a#b!c$d?e%f|^~\\&";
        let escaped = escape(text, &custom);
        assert_eq!(escaped, "a?F?b?S?c?R?d?E?e?T?f|^~\\&");
        assert_eq!(unescape(&escaped, &custom), text);
    }

    #[test]
    fn unknown_and_malformed_sequences_are_kept() {
        assert_eq!(unescape(r"\H\bold\N\", &d()), r"\H\bold\N\");
        assert_eq!(unescape(r"tail \F", &d()), r"tail \F");
        assert_eq!(unescape(r"\XZZ\ \X4\", &d()), r"\XZZ\ \X4\");
        assert_eq!(unescape(r"\X41C3A9\", &d()), "Aé");
        assert_eq!(unescape(r"\\", &d()), r"\\");
    }
}
