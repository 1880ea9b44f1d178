//! JSON request bodies must have the types the OpenAPI document declares. poem-openapi
//! reads a number or a boolean where a string is declared as its text (`false` becomes
//! `"false"`), which a generated client would never send and a contract must not accept:
//! this middleware checks every JSON body against the (finished) document's request
//! schema, types only, before the operation parses it, and answers 400 naming the field.

use poem::http::{header, Method, StatusCode};
use poem::{Body, Endpoint, IntoResponse, Request, Response};
use serde_json::Value;

use crate::http::Layered;

/// Operations whose body is parsed by a capability's own parser, which answers type errors
/// itself: machine readings go through ingest's one parser for HTTP and MQTT, so both
/// transports refuse the same payloads with the same 422 naming the field.
const OWN_PARSER: &[&str] = &["postHealthMetric"];

/// Request schemas per operation, from the finished document.
#[derive(Clone, Default)]
pub struct RequestSchemas {
    ops: Vec<(Method, Vec<String>, Value)>,
    components: Value,
}

impl RequestSchemas {
    pub fn from_spec(spec: &str) -> RequestSchemas {
        let doc: Value = serde_json::from_str(spec).unwrap_or_default();
        let mut ops = Vec::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                if op["operationId"].as_str().is_some_and(|id| OWN_PARSER.contains(&id)) {
                    continue;
                }
                let content = &op["requestBody"]["content"];
                let Some(schema) = content.as_object().and_then(|c| {
                    c.iter().find(|(k, _)| k.starts_with("application/json")).map(|(_, v)| v["schema"].clone())
                }) else {
                    continue;
                };
                let Ok(method) = method.to_uppercase().parse::<Method>() else { continue };
                ops.push((method, path.split('/').map(str::to_owned).collect(), schema));
            }
        }
        RequestSchemas { ops, components: doc["components"]["schemas"].clone() }
    }

    fn schema(&self, method: &Method, path: &str) -> Option<&Value> {
        self.ops
            .iter()
            .filter(|(m, ..)| m == method)
            .filter_map(|(_, t, s)| crate::contract::template_specificity(t, path).map(|n| (n, s)))
            .min_by_key(|(n, _)| *n)
            .map(|(_, s)| s)
    }

    fn resolve<'a>(&'a self, mut schema: &'a Value) -> &'a Value {
        for _ in 0..8 {
            if let Some(r) = schema["$ref"].as_str() {
                schema = &self.components[r.trim_start_matches("#/components/schemas/")];
            } else if let Some(inner) = schema["allOf"].as_array().and_then(|a| a.first()) {
                schema = inner;
            } else {
                break;
            }
        }
        schema
    }

    /// The first value whose JSON type is not the declared one: (field, expected type).
    pub fn mismatch(&self, value: &Value, schema: &Value, at: &str) -> Option<(String, &'static str)> {
        let schema = self.resolve(schema);
        if value.is_null() {
            return None;
        }
        let expected = match schema["type"].as_str()? {
            "string" => ("a string", value.is_string()),
            "integer" => ("an integer", value.is_i64() || value.is_u64()),
            "number" => ("a number", value.is_number()),
            "boolean" => ("true or false", value.is_boolean()),
            "array" => ("an array", value.is_array()),
            "object" => ("an object", value.is_object()),
            _ => return None,
        };
        if !expected.1 {
            return Some((if at.is_empty() { "body".to_owned() } else { at.to_owned() }, expected.0));
        }
        match value {
            Value::Array(items) => {
                items.iter().enumerate().find_map(|(i, v)| self.mismatch(v, &schema["items"], &format!("{at}[{i}]")))
            }
            Value::Object(fields) => fields.iter().find_map(|(k, v)| {
                let prop = &schema["properties"][k];
                let name = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                if prop.is_null() {
                    None
                } else {
                    self.mismatch(v, prop, &name)
                }
            }),
            _ => None,
        }
    }
}

/// Checks JSON request bodies' types (see the module's documentation).
#[derive(Clone)]
pub struct StrictJson(pub RequestSchemas);

crate::http::layered_middleware!(StrictJson);

impl<E: Endpoint> Endpoint for Layered<StrictJson, E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.trim_start().to_ascii_lowercase().starts_with("application/json"));
        if json {
            if let Some(schema) = self.settings.0.schema(req.method(), req.uri().path()).cloned() {
                // The body is already bounded by the body limit around this middleware.
                let bytes = req.take_body().into_bytes().await?;
                if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
                    if let Some((field, expected)) = self.settings.0.mismatch(&value, &schema, "") {
                        let message = format!("`{field}` must be {expected}");
                        let body = serde_json::json!({"code": "bad_request", "message": message,
                            "fields": [{"field": field, "message": message}]});
                        return Ok(poem::web::Json(body).with_status(StatusCode::BAD_REQUEST).into_response());
                    }
                }
                req.set_body(Body::from(bytes));
            }
        }
        self.inner.call(req).await.map(IntoResponse::into_response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_of_another_type_are_named() {
        let spec = json!({"paths": {"/a/{id}": {"post": {"requestBody": {"content": {"application/json; charset=utf-8":
            {"schema": {"$ref": "#/components/schemas/In"}}}}}}},
            "components": {"schemas": {
                "In": {"type": "object", "properties": {"text": {"type": "string"}, "n": {"type": "integer"},
                       "tags": {"type": "array", "items": {"type": "string"}}, "inner": {"allOf": [{"$ref": "#/components/schemas/Inner"}], "nullable": true}}},
                "Inner": {"type": "object", "properties": {"ok": {"type": "boolean"}}}}}});
        let s = RequestSchemas::from_spec(&spec.to_string());
        let schema = s.schema(&Method::POST, "/a/123").unwrap().clone();
        let check = |v: Value| s.mismatch(&v, &schema, "").map(|(f, _)| f);
        assert_eq!(check(json!({"text": "x", "n": 1, "tags": ["a"], "inner": {"ok": true}})), None);
        assert_eq!(check(json!({"text": null, "inner": null})), None);
        assert_eq!(check(json!({"text": false})), Some("text".into()));
        assert_eq!(check(json!({"n": 1.5})), Some("n".into()));
        assert_eq!(check(json!({"tags": ["a", 3]})), Some("tags[1]".into()));
        assert_eq!(check(json!({"inner": {"ok": "yes"}})), Some("inner.ok".into()));
        assert_eq!(check(json!([1])), Some("body".into()));
        assert!(s.schema(&Method::PUT, "/a/123").is_none());
    }
}
