//! Search requests and their answers: the query's parameters (each known by the handler,
//! anything else refused), `date` prefixes, `_count`, references, and the `Bundle`
//! (`searchset`, `link.self`/`link.next`).

use chrono::{DateTime, Duration, NaiveDate, Utc};
use poem::Request;
use sea_orm::{DatabaseConnection, EntityTrait, QuerySelect, Select};
use serde_json::{json, Value};

use super::outcome::FhirError;

/// Default and largest page (`_count`).
pub const DEFAULT_COUNT: usize = 50;
pub const MAX_COUNT: usize = 1000;

/// The query's parameters, in order (a name may repeat, e.g. two `date` bounds).
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// The parameters of `req`; any name not in `known` (nor `_format`) is refused, so a
    /// client never mistakes an ignored filter for an applied one.
    pub fn parse(req: &Request, known: &[&str]) -> Result<Params, FhirError> {
        let pairs: Vec<(String, String)> = match req.uri().query() {
            Some(q) => serde_urlencoded_pairs(q)?,
            None => Vec::new(),
        };
        for (name, value) in &pairs {
            if name == "_format" {
                if !["json", "application/json", "application/fhir+json"].contains(&value.as_str()) {
                    return Err(FhirError::NotSupported("only JSON is served (_format=json)".into()));
                }
                continue;
            }
            if !known.contains(&name.as_str()) {
                return Err(FhirError::NotSupported(format!(
                    "search parameter `{name}` is not supported here (supported: {})",
                    known.join(", ")
                )));
            }
            if value.len() > 1000 || value.contains('\0') {
                return Err(FhirError::Invalid(format!("`{name}` is too long or contains NUL")));
            }
        }
        Ok(Params { pairs })
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The one value of `name` (a second one is refused).
    pub fn one<'a>(&'a self, name: &'a str) -> Result<Option<&'a str>, FhirError> {
        let mut it = self.all(name);
        let first = it.next();
        if it.next().is_some() {
            return Err(FhirError::Invalid(format!("`{name}` may be given once")));
        }
        Ok(first)
    }

    /// `_count`: 1 to [`MAX_COUNT`], default [`DEFAULT_COUNT`].
    pub fn count(&self) -> Result<usize, FhirError> {
        match self.one("_count")? {
            None => Ok(DEFAULT_COUNT),
            Some(c) => match c.parse::<usize>() {
                Ok(n) if (1..=MAX_COUNT).contains(&n) => Ok(n),
                _ => Err(FhirError::Invalid(format!("`_count` must be a number from 1 to {MAX_COUNT}"))),
            },
        }
    }

    /// `_offset` (offset paging of small lists): 0 to 1,000,000,000, default 0.
    pub fn offset(&self) -> Result<u64, FhirError> {
        match self.one("_offset")? {
            None => Ok(0),
            Some(o) => o
                .parse()
                .ok()
                .filter(|o| *o <= 1_000_000_000)
                .ok_or_else(|| FhirError::Invalid("`_offset` must be a number from 0 to 1000000000".into())),
        }
    }

    /// The `next` link of an offset-paged list whose page was `count` long.
    pub fn next_offset(&self, base: &str, path: &str, count: usize) -> Result<String, FhirError> {
        let mut q = self.without(&["_offset"]);
        q.push(("_offset".into(), (self.offset()? + count as u64).to_string()));
        Ok(url(base, path, &q))
    }

    /// The `searchset` Bundle of one page of an offset-paged search of `path` (see
    /// [`bundle`]), with a `next` link when `more` follow the page, `count` long.
    pub fn offset_bundle(
        &self,
        base: &str,
        path: &str,
        entries: Vec<(Value, &str)>,
        count: usize,
        more: bool,
    ) -> Result<Value, FhirError> {
        let self_url = url(base, path, &self.without(&[]));
        let next = more.then(|| self.next_offset(base, path, count)).transpose()?;
        Ok(bundle(base, self_url, entries, next))
    }

    /// The query string again, without `names` (to build `next` links).
    pub fn without(&self, names: &[&str]) -> Vec<(String, String)> {
        self.pairs.iter().filter(|(n, _)| !names.contains(&n.as_str())).cloned().collect()
    }
}

fn serde_urlencoded_pairs(q: &str) -> Result<Vec<(String, String)>, FhirError> {
    let mut out = Vec::new();
    for part in q.split('&').filter(|p| !p.is_empty()) {
        let (n, v) = part.split_once('=').unwrap_or((part, ""));
        out.push((decode(n)?, decode(v)?));
    }
    Ok(out)
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space), strict: a `%` that does not
/// start two hex digits is refused rather than passed through as `percent-encoding` would.
fn decode(s: &str) -> Result<String, FhirError> {
    let broken =
        s.split('%').skip(1).any(|rest| !rest.get(..2).is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())));
    if broken {
        return Err(FhirError::Invalid("a malformed %-escape in the query".into()));
    }
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .map(|d| d.into_owned())
        .map_err(|_| FhirError::Invalid("the query is not UTF-8".into()))
}

/// An id of ours in a reference parameter: `Type/{uuid}`, or a bare uuid.
pub fn reference_id<T: From<uuid::Uuid>>(value: &str, resource: &str, param: &str) -> Result<T, FhirError> {
    let id = value.strip_prefix(resource).and_then(|r| r.strip_prefix('/')).unwrap_or(value);
    uuid::Uuid::parse_str(id)
        .ok()
        .filter(|_| id.len() == 36)
        .map(T::from)
        .ok_or_else(|| FhirError::Invalid(format!("`{param}` must be {resource}/{{id}} with one of our ids")))
}

/// An id of ours in a path.
pub fn path_id<T: From<uuid::Uuid>>(req: &Request, resource: &str) -> Result<T, FhirError> {
    let raw = req.raw_path_param("id").unwrap_or_default();
    uuid::Uuid::parse_str(raw)
        .ok()
        .filter(|_| raw.len() == 36)
        .map(T::from)
        .ok_or_else(|| FhirError::NotFound(format!("{resource}/{raw} not found")))
}

/// `[from, to)` from `date` parameters (`ge`, `gt`, `le`, `lt`, `eq` or no prefix), each a
/// date (`2026-12-01`: the whole day, UTC) or an instant (RFC 3339); repeated bounds
/// narrow the range.
pub fn date_range(values: impl Iterator<Item = impl AsRef<str>>) -> Result<(DateTime<Utc>, DateTime<Utc>), FhirError> {
    let earliest = DateTime::parse_from_rfc3339(crate::validate::EARLIEST).expect("static").to_utc();
    let latest = DateTime::parse_from_rfc3339(crate::validate::LATEST).expect("static").to_utc();
    let (mut from, mut to) = (earliest, latest);
    for v in values {
        let v = v.as_ref();
        let (prefix, rest) = match v.get(..2) {
            Some(p @ ("ge" | "gt" | "le" | "lt" | "eq")) => (p, &v[2..]),
            _ => ("eq", v),
        };
        let (start, end) = instant_or_day(rest)
            .filter(|(s, e)| *s >= earliest && *e <= latest)
            .ok_or_else(|| FhirError::Invalid(format!("`date` must be a date or an RFC 3339 instant between 1900 and 9999, with an optional ge, gt, le, lt or eq prefix: {v}")))?;
        match prefix {
            "ge" => from = from.max(start),
            "gt" => from = from.max(end),
            "le" => to = to.min(end),
            "lt" => to = to.min(start),
            _ => {
                from = from.max(start);
                to = to.min(end);
            }
        }
    }
    Ok((from, to))
}

/// The interval a value denotes: a day, or an instant (one microsecond).
fn instant_or_day(s: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let start = d.and_hms_opt(0, 0, 0)?.and_utc();
        return Some((start, start + Duration::days(1)));
    }
    let t = DateTime::parse_from_rfc3339(s).ok()?.to_utc();
    Some((t, t + Duration::microseconds(1)))
}

/// A URL of `path` under the base with `query`.
pub fn url(base: &str, path: &str, query: &[(String, String)]) -> String {
    if query.is_empty() {
        return format!("{base}/{path}");
    }
    let q: Vec<String> = query.iter().map(|(n, v)| format!("{}={}", encode(n), encode(v))).collect();
    format!("{base}/{path}?{}", q.join("&"))
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One page of an offset-paged search: at most `count` rows of `query` (ordered by the
/// caller) from `offset`, and whether more follow.
pub async fn offset_page<E: EntityTrait>(
    db: &DatabaseConnection,
    query: Select<E>,
    offset: u64,
    count: usize,
) -> Result<(Vec<E::Model>, bool), FhirError> {
    let mut rows = query.offset(offset).limit(count as u64 + 1).all(db).await?;
    let more = rows.len() > count;
    rows.truncate(count);
    Ok((rows, more))
}

/// A `searchset` Bundle: `(resource, mode)` entries (`match` or `include`), the self link
/// and, when there is more, the next link.
pub fn bundle(base: &str, self_url: String, entries: Vec<(Value, &str)>, next: Option<String>) -> Value {
    let mut links = vec![json!({"relation": "self", "url": self_url})];
    if let Some(n) = next {
        links.push(json!({"relation": "next", "url": n}));
    }
    let entries: Vec<Value> = entries
        .into_iter()
        .map(|(r, mode)| {
            let full =
                format!("{base}/{}/{}", r["resourceType"].as_str().unwrap_or(""), r["id"].as_str().unwrap_or(""));
            json!({"fullUrl": full, "resource": r, "search": {"mode": mode}})
        })
        .collect();
    json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "link": links,
        "entry": entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn date_prefixes_bound_the_range() {
        let (f, to) = date_range(["ge2026-12-01", "lt2026-12-02T06:00:00Z"].iter()).unwrap();
        assert_eq!((f, to), (t("2026-12-01T00:00:00Z"), t("2026-12-02T06:00:00Z")));
        let (f, to) = date_range(["2026-12-01"].iter()).unwrap();
        assert_eq!((f, to), (t("2026-12-01T00:00:00Z"), t("2026-12-02T00:00:00Z")));
        let (f, _) = date_range(["gt2026-12-01"].iter()).unwrap();
        assert_eq!(f, t("2026-12-02T00:00:00Z"));
        assert!(date_range(["ge0001-01-01"].iter()).is_err());
        assert!(date_range(["yesterday"].iter()).is_err());
    }

    #[test]
    fn queries_decode_and_encode() {
        assert_eq!(decode("a%7Cb+c").unwrap(), "a|b c");
        assert!(decode("%zz").is_err());
        assert_eq!(
            url("http://h/fhir/r4", "Observation", &[("code".into(), "http://loinc.org|8867-4".into())]),
            "http://h/fhir/r4/Observation?code=http:%2F%2Floinc.org%7C8867-4"
        );
    }
}
