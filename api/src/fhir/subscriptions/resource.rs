//! The `Subscription` resource as the R5 Backport IG profiles it on R4, both ways: parsed
//! from what a client POSTs (strictly: every field we read is checked, unknown top-level
//! elements refused, unknown extensions ignored as FHIR allows), rendered from what is
//! stored; and the `subscription-status` `Parameters` that head every notification and
//! answer `$status`.

use chrono::{DateTime, Utc};
use nc_domain::{DeviceId, PatientId};
use nc_records::subscriptions::{Content, Filter, Spec, Subscription, Topic};
use serde_json::{json, Map, Value};

use crate::fhir::observations::instant;
use crate::fhir::search::reference_id;
use crate::fhir::FhirError;

/// The Backport IG's structure definitions (extensions and profiles).
pub const BACKPORT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition";

/// The canonical URL of a topic (what a Subscription's `criteria` names).
pub fn topic_url(topic: Topic) -> String {
    format!("urn:nephrocare:fhir:SubscriptionTopic:{}", topic.as_str())
}

fn topic_of(url: &str) -> Option<Topic> {
    Topic::ALL.into_iter().find(|t| topic_url(*t) == url)
}

/// What a Subscription may carry. Read: `status`, `reason`, `criteria` (+ its filter
/// extension), `channel`, `end`; the rest is accepted and ignored (what a client read back,
/// `error` included, can be posted again).
const TOP_LEVEL: &[&str] = &[
    "resourceType",
    "id",
    "meta",
    "implicitRules",
    "language",
    "text",
    "contained",
    "extension",
    "status",
    "_status",
    "contact",
    "end",
    "_end",
    "reason",
    "_reason",
    "criteria",
    "_criteria",
    "error",
    "_error",
    "channel",
];
const CHANNEL: &[&str] = &["type", "endpoint", "payload", "_payload", "header", "extension", "id"];

fn invalid(field: &str, message: &str) -> FhirError {
    FhirError::Invalid(format!("{field}: {message}"))
}

fn string<'a>(v: &'a Map<String, Value>, field: &str, path: &str) -> Result<Option<&'a str>, FhirError> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(path, "must be a string")),
    }
}

/// The extensions of `element` (`{"extension": [...]}`) with `url`, as their `value*`.
fn extension<'a>(element: Option<&'a Value>, url: &str, path: &str) -> Result<Vec<&'a Value>, FhirError> {
    let Some(e) = element else { return Ok(Vec::new()) };
    let list = match e.get("extension") {
        None => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(invalid(path, "`extension` must be an array")),
    };
    let mut out = Vec::new();
    for x in list {
        let Some(obj) = x.as_object() else { return Err(invalid(path, "an extension must be an object")) };
        if obj.get("url").and_then(Value::as_str) == Some(url) {
            let value = obj.iter().find(|(k, _)| k.starts_with("value")).map(|(_, v)| v);
            out.push(value.ok_or_else(|| invalid(path, &format!("{url} has no value")))?);
        }
    }
    Ok(out)
}

fn one_uint(element: Option<&Value>, name: &str, path: &str) -> Result<Option<i64>, FhirError> {
    let url = format!("{BACKPORT}/{name}");
    match extension(element, &url, path)?.as_slice() {
        [] => Ok(None),
        [v] => v
            .as_i64()
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or_else(|| invalid(path, &format!("{name} must be an unsignedInt"))),
        _ => Err(invalid(path, &format!("{name} given more than once"))),
    }
}

/// A `Subscription` a client POSTed.
pub fn parse(body: &Value) -> Result<Spec, FhirError> {
    let r = body.as_object().ok_or_else(|| invalid("body", "must be a Subscription resource (a JSON object)"))?;
    if r.get("resourceType").and_then(Value::as_str) != Some("Subscription") {
        return Err(invalid("resourceType", "must be `Subscription`"));
    }
    if let Some(k) = r.keys().find(|k| !TOP_LEVEL.contains(&k.as_str())) {
        return Err(invalid(k, "is not supported on a Subscription here"));
    }
    match string(r, "status", "status")? {
        None | Some("requested") | Some("active") => {}
        Some(_) => return Err(invalid("status", "a new subscription is `requested`")),
    }
    let criteria = string(r, "criteria", "criteria")?
        .ok_or_else(|| invalid("criteria", "the topic's canonical URL is required"))?;
    let topic = topic_of(criteria).ok_or_else(|| {
        invalid("criteria", "not a topic of this server; see the CapabilityStatement (Subscription's topics)")
    })?;
    let filters = extension(r.get("_criteria"), &format!("{BACKPORT}/backport-filter-criteria"), "_criteria")?;
    let filter = match filters.as_slice() {
        [] => None,
        [v] => Some(parse_filter(topic, v.as_str().ok_or_else(|| invalid("_criteria", "a filter is a valueString"))?)?),
        _ => return Err(invalid("_criteria", "at most one filter")),
    };
    let channel = r.get("channel").and_then(Value::as_object).ok_or_else(|| invalid("channel", "is required"))?;
    if let Some(k) = channel.keys().find(|k| !CHANNEL.contains(&k.as_str())) {
        return Err(invalid(&format!("channel.{k}"), "is not supported"));
    }
    let kind = channel.get("type").and_then(Value::as_str);
    if kind != Some("rest-hook") {
        return Err(invalid("channel.type", "only `rest-hook` is offered"));
    }
    let endpoint =
        string(channel, "endpoint", "channel.endpoint")?.ok_or_else(|| invalid("channel.endpoint", "is required"))?;
    match string(channel, "payload", "channel.payload")? {
        None | Some("application/fhir+json") => {}
        Some(_) => return Err(invalid("channel.payload", "only `application/fhir+json`")),
    }
    let contents =
        extension(channel.get("_payload"), &format!("{BACKPORT}/backport-payload-content"), "channel._payload")?;
    let content = match contents.as_slice() {
        [] => Content::IdOnly,
        [v] => v
            .as_str()
            .and_then(Content::parse)
            .ok_or_else(|| invalid("channel._payload", "payload content is `empty`, `id-only` or `full-resource`"))?,
        _ => return Err(invalid("channel._payload", "payload content given more than once")),
    };
    let headers = match channel.get("header") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|h| h.as_str().map(str::to_owned).ok_or_else(|| invalid("channel.header", "each must be a string")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("channel.header", "must be an array of strings")),
    };
    let heartbeat = one_uint(r.get("channel"), "backport-heartbeat-period", "channel.extension")?;
    let timeout = one_uint(r.get("channel"), "backport-timeout", "channel.extension")?;
    let end = string(r, "end", "end")?
        .map(|e| DateTime::parse_from_rfc3339(e).map(|t| t.to_utc()).map_err(|_| invalid("end", "must be an instant")))
        .transpose()?;
    Ok(Spec {
        topic,
        filter,
        endpoint: endpoint.to_owned(),
        headers,
        content,
        heartbeat_secs: heartbeat.map(|h| h.min(i32::MAX as i64) as i32),
        timeout_secs: timeout.map_or(10, |t| t.min(i32::MAX as i64) as i32),
        reason: string(r, "reason", "reason")?.unwrap_or("").to_owned(),
        end,
    })
}

/// `Procedure?patient=Patient/{id}`, `DetectedIssue?patient=Patient/{id}` or
/// `DetectedIssue?author=Device/{id}`.
fn parse_filter(topic: Topic, s: &str) -> Result<Filter, FhirError> {
    let bad = || {
        invalid(
            "_criteria",
            &format!(
                "the filter is `{0}?patient=Patient/{{id}}`{1}",
                topic.focus_type(),
                match topic {
                    Topic::Alarm => " or `DetectedIssue?author=Device/{id}`",
                    Topic::TreatmentEnded => "",
                }
            ),
        )
    };
    let query = s.strip_prefix(topic.focus_type()).and_then(|q| q.strip_prefix('?')).ok_or_else(bad)?;
    let (name, value) = query.split_once('=').ok_or_else(bad)?;
    if value.contains('&') {
        return Err(bad());
    }
    match (name, topic) {
        ("patient", _) => Ok(Filter::Patient(reference_id::<PatientId>(value, "Patient", "patient")?)),
        ("author", Topic::Alarm) => Ok(Filter::Device(reference_id::<DeviceId>(value, "Device", "author")?)),
        _ => Err(bad()),
    }
}

fn filter_string(topic: Topic, f: Filter) -> String {
    match f {
        Filter::Patient(p) => format!("{}?patient=Patient/{p}", topic.focus_type()),
        Filter::Device(d) => format!("{}?author=Device/{d}", topic.focus_type()),
    }
}

/// A stored subscription as a resource. Header values are not shown (they may be secrets).
pub fn render(s: &Subscription) -> Value {
    let spec = &s.spec;
    let mut channel_ext =
        vec![json!({"url": format!("{BACKPORT}/backport-timeout"), "valueUnsignedInt": spec.timeout_secs})];
    if let Some(h) = spec.heartbeat_secs {
        channel_ext.insert(0, json!({"url": format!("{BACKPORT}/backport-heartbeat-period"), "valueUnsignedInt": h}));
    }
    let mut channel = json!({
        "extension": channel_ext,
        "type": "rest-hook",
        "endpoint": spec.endpoint,
        "payload": "application/fhir+json",
        "_payload": {"extension": [{"url": format!("{BACKPORT}/backport-payload-content"), "valueCode": spec.content.as_str()}]},
    });
    if !spec.headers.is_empty() {
        let shown: Vec<String> = spec
            .headers
            .iter()
            .map(|h| format!("{}: (set, not shown)", h.split_once(':').map_or(h.as_str(), |(n, _)| n)))
            .collect();
        channel["header"] = json!(shown);
    }
    let reason =
        if spec.reason.is_empty() { format!("Notifications of {}", spec.topic.as_str()) } else { spec.reason.clone() };
    let mut r = json!({
        "resourceType": "Subscription",
        "id": s.id.to_string(),
        "meta": {"profile": [format!("{BACKPORT}/backport-subscription")]},
        "status": s.status.as_str(),
        "reason": reason,
        "criteria": topic_url(spec.topic),
        "channel": channel,
    });
    if let Some(f) = spec.filter {
        r["_criteria"] = json!({"extension": [{"url": format!("{BACKPORT}/backport-filter-criteria"), "valueString": filter_string(spec.topic, f)}]});
    }
    if let Some(end) = spec.end {
        r["end"] = json!(instant(end));
    }
    if let Some(e) = &s.last_error {
        r["error"] = json!(e);
    }
    r
}

/// A numbered event a notification carries.
pub struct Event {
    pub number: i64,
    pub at: DateTime<Utc>,
    /// The focus's absolute URL (none for `empty` content).
    pub focus: Option<String>,
    /// The other resources the notification carries (`full-resource`: a treatment's
    /// summary Observations).
    pub additional: Vec<String>,
}

/// The `subscription-status` Parameters (R4 profile of the Backport IG): `kind` is
/// `handshake`, `heartbeat`, `event-notification` or `query-status`.
pub fn status(s: &Subscription, base: &str, kind: &str, events_since_start: i64, event: Option<&Event>) -> Value {
    let mut parameters = vec![
        json!({"name": "subscription", "valueReference": {"reference": format!("{base}/Subscription/{}", s.id)}}),
        json!({"name": "topic", "valueCanonical": topic_url(s.spec.topic)}),
        json!({"name": "status", "valueCode": s.status.as_str()}),
        json!({"name": "type", "valueCode": kind}),
        json!({"name": "events-since-subscription-start", "valueString": events_since_start.to_string()}),
    ];
    if let Some(e) = event {
        let mut part = vec![
            json!({"name": "event-number", "valueString": e.number.to_string()}),
            json!({"name": "timestamp", "valueInstant": instant(e.at)}),
        ];
        if let Some(f) = &e.focus {
            part.push(json!({"name": "focus", "valueReference": {"reference": f}}));
        }
        for a in &e.additional {
            part.push(json!({"name": "additional-context", "valueReference": {"reference": a}}));
        }
        parameters.push(json!({"name": "notification-event", "part": part}));
    }
    if kind == "query-status" {
        if let Some(err) = &s.last_error {
            parameters.push(json!({"name": "error", "valueCodeableConcept": {"text": err}}));
        }
    }
    json!({
        "resourceType": "Parameters",
        "id": uuid::Uuid::new_v4().to_string(),
        "meta": {"profile": [format!("{BACKPORT}/backport-subscription-status-r4")]},
        "parameter": parameters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(extra: Value) -> Value {
        let mut b = json!({
            "resourceType": "Subscription", "status": "requested", "reason": "chart",
            "criteria": topic_url(Topic::TreatmentEnded),
            "channel": {"type": "rest-hook", "endpoint": "https://emr.example/hook", "payload": "application/fhir+json",
                        "_payload": {"extension": [{"url": format!("{BACKPORT}/backport-payload-content"), "valueCode": "full-resource"}]},
                        "extension": [{"url": format!("{BACKPORT}/backport-heartbeat-period"), "valueUnsignedInt": 60}],
                        "header": ["Authorization: Bearer x"]},
        });
        if let (Some(b), Some(e)) = (b.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        b
    }

    #[test]
    fn a_backport_subscription_is_read() {
        let r = parse(&body(json!({}))).unwrap();
        assert_eq!(
            (r.topic, r.content, r.heartbeat_secs, r.timeout_secs),
            (Topic::TreatmentEnded, Content::FullResource, Some(60), 10)
        );
        assert_eq!(r.headers, vec!["Authorization: Bearer x".to_owned()]);
        let p = uuid::Uuid::new_v4();
        let f = json!({"_criteria": {"extension": [{"url": format!("{BACKPORT}/backport-filter-criteria"), "valueString": format!("Procedure?patient=Patient/{p}")}]}});
        assert_eq!(parse(&body(f)).unwrap().filter, Some(Filter::Patient(PatientId(p))));
    }

    #[test]
    fn what_is_not_offered_is_refused_by_name() {
        let field = |b: Value| match parse(&b) {
            Err(FhirError::Invalid(m)) => m.split(':').next().unwrap_or("").to_owned(),
            other => panic!("{other:?}"),
        };
        assert_eq!(field(body(json!({"criteria": "Patient?name=x"}))), "criteria");
        assert_eq!(field(body(json!({"channel": {"type": "websocket", "endpoint": "x"}}))), "channel.type");
        assert_eq!(field(body(json!({"status": "off"}))), "status");
        assert_eq!(field(body(json!({"bogus": 1}))), "bogus");
        assert_eq!(field(body(json!({"end": "tomorrow"}))), "end");
        let d = uuid::Uuid::new_v4();
        let f = json!({"_criteria": {"extension": [{"url": format!("{BACKPORT}/backport-filter-criteria"), "valueString": format!("Procedure?author=Device/{d}")}]}});
        assert_eq!(field(body(f)), "_criteria");
        assert_eq!(field(json!([])), "body");
    }
}
