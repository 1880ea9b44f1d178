//! Rules for the values people type into a record (names, e-mails, phones, passwords), and
//! the text filter of the lists. Each breach names its field as the request names it.

use crate::{CareError, CareResult};

/// What an e-mail address must be, in words.
pub const EMAIL_RULE: &str = "must be an e-mail address such as name@example.org";

/// An e-mail address: one `@`, something before it, a domain with a dot after it, no
/// whitespace inside, at most 254 characters.
pub fn is_email(e: &str) -> bool {
    e.len() <= 254
        && e.split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.') && !domain.starts_with('.'))
        && !e.chars().any(char::is_whitespace)
        && e.matches('@').count() == 1
}

/// The e-mail, trimmed and lowercased (the login's spelling).
pub fn normalize_email(email: &str) -> CareResult<String> {
    let e = email.trim().to_lowercase();
    if is_email(&e) {
        Ok(e)
    } else {
        Err(CareError::invalid("email", EMAIL_RULE))
    }
}

/// A name: trimmed, 1 to 200 characters.
pub fn check_name(field: &'static str, name: &str) -> CareResult<String> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 200 {
        return Err(CareError::invalid(field, "must be 1 to 200 characters"));
    }
    Ok(n.to_owned())
}

/// A case-insensitive "contains" pattern for `ILIKE` (`\\`, `%` and `_` taken literally);
/// `None` for blank text (no filter).
pub fn like_pattern(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| format!("%{}%", t.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")))
}

/// A phone number: digits, spaces, `( ) -` and a leading `+`, 6 to 20 characters.
pub fn check_phone(phone: Option<String>) -> CareResult<Option<String>> {
    match phone {
        None => Ok(None),
        Some(p) => {
            let p = p.trim().to_owned();
            let digits = p.chars().filter(char::is_ascii_digit).count();
            let ok = (6..=20).contains(&p.len())
                && digits >= 6
                && p.chars().enumerate().all(|(i, c)| c.is_ascii_digit() || " ()-".contains(c) || (c == '+' && i == 0));
            if ok {
                Ok(Some(p))
            } else {
                Err(CareError::invalid("phone", "must be a phone number: digits, spaces, ( ) - and a leading +"))
            }
        }
    }
}

/// A password strong enough for the account of `email`.
pub fn check_password(pw: &str, email: &str, field: &'static str) -> CareResult<()> {
    match nc_access::password::strength_problem(pw, email) {
        Some(problem) => Err(CareError::invalid(field, format!("password {problem}"))),
        None => Ok(()),
    }
}

/// A ward name: trimmed, not blank, or none.
pub fn ward(field: &'static str, w: Option<String>) -> CareResult<Option<String>> {
    match w.map(|w| w.trim().to_owned()) {
        Some(w) if w.is_empty() => Err(CareError::invalid(field, "must not be blank (send null for none)")),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_hold_at_their_bounds() {
        assert_eq!(like_pattern(" 50%_a\\b "), Some("%50\\%\\_a\\\\b%".to_owned()));
        assert_eq!(like_pattern("  "), None);
        assert!(is_email("name.surname+x@example.org"));
        assert!(!is_email("") && !is_email("a@b") && !is_email("a b@c.org") && !is_email("a@@b.org"));
        assert_eq!(normalize_email(" A@Example.org ").unwrap(), "a@example.org");
        assert!(check_name("name", "  ").is_err());
        assert_eq!(check_phone(Some(" +44 (0) 20-7946 ".into())).unwrap().as_deref(), Some("+44 (0) 20-7946"));
        assert!(check_phone(Some("12345".into())).is_err());
        assert!(ward("ward", Some(" ".into())).is_err());
    }
}
