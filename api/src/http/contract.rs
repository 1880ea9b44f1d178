//! What poem-openapi's generated document cannot say by itself, added in one place so that
//! the document describes exactly what the server does (checked by Schemathesis in CI and
//! by the generated clients):
//!
//! - an optional property may be `null` (poem-openapi writes `None` as `null` and accepts
//!   `null` for it): it is declared `nullable`;
//! - request bodies refuse unknown fields (`deny_unknown_fields` everywhere): their schemas
//!   say `additionalProperties: false`;
//! - unsigned integers are at least 0;
//! - every operation with a body may answer 415 (no or another content type), every
//!   operation may answer 405 with `Allow` for other methods (see [`AllowHeader`]);
//! - links from what creates an object to what reads and changes it, for stateful clients
//!   and tests;
//! - the WebSockets, with their frames (`x-websockets`, see [`crate::websockets_doc`]);
//! - a `$ref` with a description is `allOf: [{$ref}]` with the description beside it, not
//!   poem-openapi's `allOf: [{$ref}, {description}]`, which openapi-python-client cannot read
//!   (it dropped every operation whose body had such a property);
//! - every `email` property is `format: email` (the server's rule, [`crate::validate::Email`]).

use std::collections::{BTreeMap, BTreeSet};

use poem::http::{header, Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};
use serde_json::{json, Map, Value};

use crate::http::Layered;

/// `(operationId, status, target operationId, parameter, runtime expression)`.
const LINKS: &[Link] = &[
    ("createBooking", "201", "getBooking", "bookingId", "$response.body#/id"),
    ("createBooking", "201", "updateBooking", "bookingId", "$response.body#/id"),
    ("createBooking", "201", "cancelBooking", "bookingId", "$response.body#/id"),
    ("createBookingSeries", "201", "cancelBookingSeries", "seriesId", "$response.body#/seriesId"),
    ("createMaintenanceWindow", "201", "cancelMaintenanceWindow", "windowId", "$response.body#/id"),
    ("openChatRoom", "201", "getChatRoom", "roomId", "$response.body#/id"),
    ("openChatRoom", "201", "listChatMessages", "roomId", "$response.body#/id"),
    ("openChatRoom", "201", "postChatMessage", "roomId", "$response.body#/id"),
    ("openChatRoom", "200", "getChatRoom", "roomId", "$response.body#/id"),
    ("openChatRoom", "200", "postChatMessage", "roomId", "$response.body#/id"),
    ("postChatMessage", "201", "markChatMessageRead", "messageId", "$response.body#/id"),
    ("createPatient", "201", "getPatient", "patientId", "$response.body#/id"),
    ("createPatient", "201", "updatePatient", "patientId", "$response.body#/id"),
    ("createPatient", "201", "listMedicalUpdates", "patientId", "$response.body#/id"),
    ("registerDevice", "201", "getDevice", "deviceId", "$response.body#/device/id"),
    ("registerDevice", "201", "rotateDeviceSecret", "deviceId", "$response.body#/device/id"),
    ("grantTemporaryAccess", "201", "revokeTemporaryAccess", "grantId", "$response.body#/id"),
    ("createUser", "201", "deactivateUser", "userId", "$response.body#/id"),
];

/// A link from a response to an operation: `(operationId, status, target operationId,
/// parameter, runtime expression)`; the link is named after its target.
type Link = (&'static str, &'static str, &'static str, &'static str, &'static str);

/// The finished document.
pub fn finish(spec: &str) -> String {
    finish_with(spec, LINKS)
}

fn finish_with(spec: &str, links: &[Link]) -> String {
    let mut doc: Value = serde_json::from_str(spec).expect("poem-openapi writes valid JSON");
    described_refs(&mut doc);
    let request_schemas = request_schemas(&doc);
    if let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) {
        for (name, schema) in schemas.iter_mut() {
            object_rules(schema, request_schemas.contains(name));
        }
    }
    // Blood groups are `A+`, `A-`, …: as an enumeration, generators that turn values into
    // identifiers (progenitor, openapi-generator) cannot tell `A+` from `A-`. A pattern
    // states the same set.
    if let Some(bg) = doc.pointer_mut("/components/schemas/BloodGroup").and_then(Value::as_object_mut) {
        bg.remove("enum");
        bg.insert("pattern".into(), json!("^(A|B|AB|O)[+-]$"));
        bg.insert("description".into(), json!("ABO group and Rh factor: A+, A-, B+, B-, AB+, AB-, O+ or O-."));
    }
    let operations = operation_index(&doc);
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            let Some(item) = item.as_object_mut() else { continue };
            for op in item.values_mut() {
                operation_rules(op);
            }
        }
    }
    add_links(&mut doc, &operations, links);
    doc["x-websockets"] = crate::websockets_doc::extension();
    // The FHIR R4 API is described by FHIR's own machine-readable document, its
    // CapabilityStatement: its resources, search parameters and errors (OperationOutcome)
    // are FHIR's, not this document's `ErrorBody` contract.
    doc["x-fhir"] = json!({
        "fhirVersion": "4.0.1",
        "base": "/fhir/r4",
        "capabilityStatement": "/fhir/r4/metadata",
        "bulkDataExport": ["/fhir/r4/Patient/$export", "/fhir/r4/Group/{id}/$export"],
    });
    serde_json::to_string(&doc).expect("serializable")
}

/// Schemas reachable from a request body.
fn request_schemas(doc: &Value) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut todo = Vec::new();
    for item in doc["paths"].as_object().into_iter().flat_map(|p| p.values()) {
        for op in item.as_object().into_iter().flat_map(|o| o.values()) {
            collect_refs(&op["requestBody"], &mut todo);
        }
    }
    while let Some(name) = todo.pop() {
        if found.insert(name.clone()) {
            collect_refs(&doc["components"]["schemas"][&name], &mut todo);
        }
    }
    found
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                if let Some(name) = r.strip_prefix("#/components/schemas/") {
                    out.push(name.to_owned());
                }
            }
            m.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// No text may contain U+0000; times lie between 1900 and 9999 (`validate::Time`).
const NO_NUL: &str = "^[^\\u0000]*$";
const DATE_TIME: &str = "^(19[0-9]{2}|[2-9][0-9]{3})-[0-9]{2}-[0-9]{2}T";
const DATE: &str = "^(19[0-9]{2}|[2-9][0-9]{3})-[0-9]{2}-[0-9]{2}$";

/// What the validators enforce on every string a client sends, declared as patterns.
fn string_rules(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.get("type").and_then(Value::as_str) == Some("string")
                && !m.contains_key("enum")
                && !m.contains_key("pattern")
            {
                let pattern = match m.get("format").and_then(Value::as_str) {
                    None => Some(NO_NUL),
                    Some("date-time") => Some(DATE_TIME),
                    Some("date") => Some(DATE),
                    Some(_) => None,
                };
                if let Some(p) = pattern {
                    m.insert("pattern".into(), json!(p));
                }
            }
            m.values_mut().for_each(string_rules);
        }
        Value::Array(a) => a.iter_mut().for_each(string_rules),
        _ => {}
    }
}

/// poem-openapi writes a property whose type is a `$ref` and which has a description as
/// `allOf: [{$ref}, {description}]` (and the description again beside it): the parts that
/// only annotate move beside `allOf`, leaving `allOf: [{$ref}]`, which every generator reads.
fn described_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(parts)) = m.get_mut("allOf") {
                let annotations: Vec<Map<String, Value>> = parts
                    .iter()
                    .filter_map(Value::as_object)
                    .filter(|p| p.keys().all(|k| k == "description" || k == "title"))
                    .cloned()
                    .collect();
                if !annotations.is_empty() && annotations.len() < parts.len() {
                    parts.retain(|p| {
                        !p.as_object().is_some_and(|p| p.keys().all(|k| k == "description" || k == "title"))
                    });
                    for a in annotations {
                        for (k, x) in a {
                            m.entry(k).or_insert(x);
                        }
                    }
                }
            }
            m.values_mut().for_each(described_refs);
        }
        Value::Array(a) => a.iter_mut().for_each(described_refs),
        _ => {}
    }
}

/// `format: email` on every string property named `email`: requests are checked by
/// [`crate::validate::Email`], responses carry what passed it.
fn email_format(schema: &mut Value) {
    if let Some(Value::Object(email)) = schema.pointer_mut("/properties/email") {
        if email.get("type").and_then(Value::as_str) == Some("string") {
            email.insert("format".into(), json!("email"));
        }
    }
}

/// Nullable optional properties, closed request objects, unsigned minimums, e-mail formats.
fn object_rules(schema: &mut Value, request: bool) {
    unsigned(schema);
    email_format(schema);
    if request {
        string_rules(schema);
    }
    let Some(obj) = schema.as_object_mut() else { return };
    if obj.get("type").and_then(Value::as_str) != Some("object") || !obj.contains_key("properties") {
        return;
    }
    if request {
        obj.insert("additionalProperties".into(), Value::Bool(false));
    }
    let required: BTreeSet<String> = obj
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    if let Some(props) = obj.get_mut("properties").and_then(Value::as_object_mut) {
        for (name, prop) in props.iter_mut() {
            if !required.contains(name) {
                nullable(prop);
            }
        }
    }
}

fn nullable(prop: &mut Value) {
    let Some(p) = prop.as_object_mut() else { return };
    if let Some(r) = p.remove("$ref") {
        // OpenAPI 3.0 ignores siblings of `$ref`: wrap it.
        p.insert("allOf".into(), json!([{"$ref": r}]));
    }
    p.insert("nullable".into(), Value::Bool(true));
}

/// `minimum: 0` on unsigned integers, and OpenAPI's `date` for poem-openapi's
/// `naive-date`, wherever they are.
fn unsigned(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.get("format").and_then(Value::as_str) == Some("naive-date") {
                m.insert("format".into(), json!("date"));
            }
            let is_unsigned = m.get("type").and_then(Value::as_str) == Some("integer")
                && m.get("format").and_then(Value::as_str).is_some_and(|f| f.starts_with("uint"));
            if is_unsigned && !m.contains_key("minimum") {
                m.insert("minimum".into(), json!(0));
            }
            m.values_mut().for_each(unsigned);
        }
        Value::Array(a) => a.iter_mut().for_each(unsigned),
        _ => {}
    }
}

fn operation_rules(op: &mut Value) {
    unsigned(op);
    if let Some(params) = op.get_mut("parameters") {
        string_rules(params);
    }
    let error = |description: &str| {
        json!({"description": description,
               "content": {"application/json; charset=utf-8": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
    };
    let has_body = op.get("requestBody").is_some();
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else { return };
    if has_body {
        responses
            .entry("415")
            .or_insert_with(|| error("The body is not `application/json` (or has no `Content-Type`)."));
    }
}

/// operationId → (path, method).
fn operation_index(doc: &Value) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            if let Some(id) = op["operationId"].as_str() {
                out.insert(id.to_owned(), (path.clone(), method.clone()));
            }
        }
    }
    out
}

fn add_links(doc: &mut Value, operations: &BTreeMap<String, (String, String)>, links: &[Link]) {
    for (from, status, to, param, expression) in links {
        let (Some((path, method)), true) = (operations.get(*from), operations.contains_key(*to)) else {
            panic!("link {from} -> {to}: unknown operation");
        };
        let pointer = format!("/paths/{}/{method}/responses/{status}", path.replace('~', "~0").replace('/', "~1"));
        let Some(response) = doc.pointer_mut(&pointer).and_then(Value::as_object_mut) else {
            panic!("link {from} -> {to}: no {status} response");
        };
        let links = response.entry("links").or_insert_with(|| Value::Object(Map::new()));
        links[*to] = json!({"operationId": to, "parameters": {*param: expression}});
    }
}

/// Methods served per path template (`{x}` matches one segment), for `Allow` on 405, and
/// which of them authenticate with HTTP Basic (machines) rather than a bearer token.
#[derive(Clone, Default)]
pub struct Methods(Vec<(Vec<String>, Vec<String>)>, Vec<(String, Vec<String>)>);

impl Methods {
    /// From the document, plus routes outside it.
    pub fn from_spec(spec: &str, extra: &[(&str, &str)]) -> Methods {
        let doc: Value = serde_json::from_str(spec).unwrap_or_default();
        let mut by_path: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut basic = Vec::new();
        let basic_schemes: BTreeSet<&str> = doc["components"]["securitySchemes"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, s)| s["scheme"] == "basic")
            .map(|(name, _)| name.as_str())
            .collect();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                by_path.entry(path.clone()).or_default().insert(method.to_uppercase());
                let schemes = op["security"].as_array().into_iter().flatten().filter_map(Value::as_object);
                if schemes.flat_map(|s| s.keys()).any(|k| basic_schemes.contains(k.as_str())) {
                    basic.push((method.to_uppercase(), path.split('/').map(str::to_owned).collect()));
                }
            }
        }
        for (path, method) in extra {
            by_path.entry((*path).to_owned()).or_default().insert((*method).to_owned());
        }
        Methods(
            by_path
                .into_iter()
                .map(|(p, m)| (p.split('/').map(str::to_owned).collect(), m.into_iter().collect()))
                .collect(),
            basic,
        )
    }

    /// The `WWW-Authenticate` challenge of an operation (RFC 9110 §11.6.1).
    pub fn challenge(&self, method: &str, path: &str) -> &'static str {
        if self.1.iter().any(|(m, t)| m == method && template_specificity(t, path).is_some()) {
            "Basic realm=\"nephrocare devices\""
        } else {
            "Bearer"
        }
    }

    /// The name of the `index`-th parameter of the most specific template matching `path`
    /// (poem-openapi names path parameters `param0`, `param1`, … in its errors).
    pub fn path_param(&self, path: &str, index: usize) -> Option<&str> {
        let (template, _) = self
            .0
            .iter()
            .filter_map(|(t, m)| template_specificity(t, path).map(|n| (t, n, m)))
            .min_by_key(|x| x.1)
            .map(|(t, _, m)| (t, m))?;
        template.iter().filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')).nth(index)
    }

    /// The most specific template matching `path` (`/api/alerts/{alertId}`), for metrics.
    pub fn route(&self, path: &str) -> Option<String> {
        self.0
            .iter()
            .filter_map(|(t, _)| template_specificity(t, path).map(|n| (t, n)))
            .min_by_key(|x| x.1)
            .map(|(t, _)| t.join("/"))
    }

    /// The methods of the most specific template matching `path`.
    pub fn allowed(&self, path: &str) -> Option<String> {
        self.0.iter().filter_map(|(t, m)| template_specificity(t, path).map(|n| (n, m))).min_by_key(|(n, _)| *n).map(
            |(_, m)| {
                let mut m = m.clone();
                if m.iter().any(|x| x == "GET") {
                    m.push("HEAD".into());
                }
                m.join(", ")
            },
        )
    }
}

/// Whether `path` matches a template's segments (`{x}` matches any one), and if so how many
/// parameters it took (fewer: more specific, as the router prefers static segments).
pub fn template_specificity(template: &[String], path: &str) -> Option<usize> {
    let segments: Vec<&str> = path.split('/').collect();
    let matches =
        template.len() == segments.len() && template.iter().zip(&segments).all(|(t, s)| t.starts_with('{') || t == s);
    matches.then(|| template.iter().filter(|s| s.starts_with('{')).count())
}

/// Adds `Allow` to every 405 (RFC 9110 §15.5.6) and the operation's challenge to every 401.
#[derive(Clone)]
pub struct AllowHeader(pub Methods);

crate::http::layered_middleware!(AllowHeader);

impl<E: Endpoint> Endpoint for Layered<AllowHeader, E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let path = req.uri().path().to_owned();
        let method = req.method().as_str().to_owned();
        let head = req.method() == Method::HEAD;
        let mut resp = match self.inner.call(req).await {
            Ok(r) => r.into_response(),
            Err(e) => e.into_response(),
        };
        if resp.status() == StatusCode::UNAUTHORIZED {
            let challenge = self.settings.0.challenge(&method, &path);
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, poem::http::HeaderValue::from_static(challenge));
        }
        if resp.status() == StatusCode::METHOD_NOT_ALLOWED && !head {
            if let Some(allow) = self.settings.0.allowed(&path).and_then(|a| a.parse().ok()) {
                resp.headers_mut().insert(header::ALLOW, allow);
            }
        }
        Ok(resp)
    }
}

/// Names path parameters in errors: poem-openapi reports a path parameter that does not
/// parse as `param0`, `param1`, …; this gives the error the name the document declares
/// ([`crate::error::PathParamError`]).
#[derive(Clone)]
pub struct PathParamNames(pub Methods);

crate::http::layered_middleware!(PathParamNames);

impl<E: Endpoint> Endpoint for Layered<PathParamNames, E> {
    type Output = E::Output;

    async fn call(&self, req: Request) -> poem::Result<Self::Output> {
        let path = req.uri().path().to_owned();
        self.inner.call(req).await.map_err(|err| {
            let Some(p) = err.downcast_ref::<poem_openapi::error::ParsePathError>() else { return err };
            let index = p.name.strip_prefix("param").and_then(|n| n.parse().ok());
            match index.and_then(|i| self.settings.0.path_param(&path, i)) {
                Some(name) => crate::error::PathParamError { name: name.to_owned(), reason: p.reason.clone() }.into(),
                None => err,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_document_gets_its_links() {
        let doc: Value = serde_json::from_str(&crate::openapi_json()).unwrap();
        let created = &doc["paths"]["/api/bookings"]["post"]["responses"]["201"];
        assert_eq!(created["links"]["getBooking"]["parameters"]["bookingId"], "$response.body#/id");
        assert!(doc["paths"]["/api/bookings"]["post"]["responses"]["415"].is_object());
    }

    #[test]
    fn allow_lists_the_methods_of_the_most_specific_route() {
        let spec = r#"{"paths": {"/api/bookings/{bookingId}": {"get": {}, "put": {}, "delete": {}},
                                 "/api/bookings/settings": {"get": {}, "put": {}},
                                 "/api/bookings": {"post": {}}}}"#;
        let m = Methods::from_spec(spec, &[("/healthz", "GET")]);
        assert_eq!(m.allowed("/api/bookings/settings").as_deref(), Some("GET, PUT, HEAD"));
        assert_eq!(m.allowed("/api/bookings/0190").as_deref(), Some("DELETE, GET, PUT, HEAD"));
        assert_eq!(m.allowed("/api/bookings").as_deref(), Some("POST"));
        assert_eq!(m.allowed("/healthz").as_deref(), Some("GET, HEAD"));
        assert_eq!(m.allowed("/nowhere"), None);
        assert_eq!(m.path_param("/api/bookings/0190", 0), Some("bookingId"));
        assert_eq!(m.path_param("/api/bookings/0190", 1), None);
        let machines = r#"{"paths": {"/api/health-metrics": {"post": {"security": [{"DeviceAuth": []}]}, "get": {}}},
                          "components": {"securitySchemes": {"DeviceAuth": {"type": "http", "scheme": "basic"}}}}"#;
        let m = Methods::from_spec(machines, &[]);
        assert_eq!(m.challenge("POST", "/api/health-metrics"), "Basic realm=\"nephrocare devices\"");
        assert_eq!(m.challenge("GET", "/api/health-metrics"), "Bearer");
    }

    #[test]
    fn optional_properties_are_nullable_and_request_objects_closed() {
        let spec = r##"{"paths": {"/x": {"post": {"operationId": "x", "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/In"}}}},
                          "responses": {"200": {"description": "ok"}}}}},
                        "components": {"schemas": {
                          "In": {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer", "format": "uint32"}, "b": {"$ref": "#/components/schemas/Out"}}},
                          "Out": {"type": "object", "properties": {"c": {"type": "string"}}}}}}"##;
        let doc: Value = serde_json::from_str(&finish_with(spec, &[])).unwrap();
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["In"]["additionalProperties"], false);
        assert_eq!(schemas["Out"]["additionalProperties"], false, "reachable from a request");
        assert_eq!(schemas["In"]["properties"]["a"]["minimum"], 0);
        assert!(schemas["In"]["properties"]["a"].get("nullable").is_none());
        assert_eq!(
            schemas["In"]["properties"]["b"],
            json!({"allOf": [{"$ref": "#/components/schemas/Out"}], "nullable": true})
        );
        assert_eq!(schemas["Out"]["properties"]["c"]["nullable"], true);
        assert!(doc["paths"]["/x"]["post"]["responses"]["415"].is_object());
    }
}
