//! `GET /metadata`: the CapabilityStatement, listing exactly what this server implements
//! (and nothing it does not), and `GET /CodeSystem/nephrocare-dialysis`.

use chrono::Utc;
use poem::{Request, Response};
use serde_json::{json, Value};

use nc_records::subscriptions::Topic;

use super::subscriptions::resource::{topic_url, BACKPORT};
use super::{codes, ok, FhirError, FhirResult};

const SUBSCRIPTION_DOC: &str = "Topic-based subscriptions (Subscriptions R5 Backport IG on R4), channel `rest-hook` only, payload `application/fhir+json` with content `empty`, `id-only` (default) or `full-resource`. Topics: `urn:nephrocare:fhir:SubscriptionTopic:treatment-ended` (a treatment session ended: the Procedure and its summary Observations; filter `Procedure?patient=Patient/{id}`) and `urn:nephrocare:fhir:SubscriptionTopic:alarm` (an alarm raised, acknowledged, cleared or escalated: the DetectedIssue; filter `DetectedIssue?patient=Patient/{id}` or `DetectedIssue?author=Device/{id}`). A handshake is sent on creation; heartbeats with `backport-heartbeat-period` (10 to 86400 s); `backport-timeout` 1 to 30 s (default 10). Notifications are delivered at least once, in order, numbered without gaps; each carries only what the subscription's owner may read when it is sent. At most 20 live subscriptions per person; `https://` endpoints at public addresses (plain `http://` and internal addresses only where the server allows them).";

/// (type, read, search parameters: (name, type, documentation), revinclude).
type ResourceCaps =
    (&'static str, bool, &'static [(&'static str, &'static str, &'static str)], &'static [&'static str]);

const RESOURCES: &[ResourceCaps] = &[
    (
        "Patient",
        true,
        &[
            ("_id", "token", "The patient's id"),
            ("identifier", "token", "The patient number (system urn:nephrocare:hospital:{hospital}:patient-number)"),
            ("_count", "number", "Page size, 1 to 1000 (default 50)"),
        ],
        &[],
    ),
    ("Device", true, &[("patient", "reference", "Machines the patient is assigned to or was treated on")], &[]),
    ("Practitioner", true, &[], &[]),
    (
        "Observation",
        true,
        &[
            ("patient", "reference", "The patient (or `subject`); this or `device` is required"),
            ("subject", "reference", "The patient"),
            ("device", "reference", "The machine that measured"),
            ("code", "token", "LOINC or Nephrocare codes, comma-separated"),
            ("date", "date", "effective time: ge, gt, le, lt or eq prefixes; repeat for a range"),
            ("_count", "number", "Page size, 1 to 1000 (default 50)"),
            ("_sort", "string", "`-date` (newest first, the default) or `date`"),
        ],
        &[],
    ),
    (
        "Procedure",
        true,
        &[
            ("patient", "reference", "The patient (required)"),
            ("date", "date", "Session start: ge, gt, le, lt or eq prefixes"),
            ("_count", "number", "Page size, 1 to 1000 (default 50)"),
        ],
        &["Observation:part-of"],
    ),
    (
        "DetectedIssue",
        true,
        &[
            ("patient", "reference", "Open alarms of the patient"),
            ("author", "reference", "Open alarms of the machine (Device)"),
            ("_count", "number", "Page size, 1 to 1000 (default 50)"),
        ],
        &[],
    ),
    ("Group", false, &[], &[]),
    (
        "Subscription",
        true,
        &[("_count", "number", "Page size, 1 to 1000 (default 50): your own subscriptions (an admin: the hospital's)")],
        &[],
    ),
    ("CodeSystem", true, &[], &[]),
];

pub fn capability_statement() -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .map(|(ty, read, params, revinclude)| {
            let mut interactions = Vec::new();
            if *read {
                interactions.push(json!({"code": "read"}));
            }
            if !params.is_empty() || *ty == "Group" {
                interactions.push(json!({"code": "search-type"}));
            }
            let mut r = json!({
                "type": ty,
                "interaction": interactions,
                "searchParam": params.iter().map(|(n, t, d)| json!({"name": n, "type": t, "documentation": d})).collect::<Vec<_>>(),
            });
            if !revinclude.is_empty() {
                r["searchRevInclude"] = json!(revinclude);
            }
            match *ty {
                "Patient" => {
                    r["operation"] = json!([{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"}])
                }
                "Group" => {
                    r["operation"] = json!([{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"}])
                }
                "Subscription" => {
                    if let Some(i) = r["interaction"].as_array_mut() {
                        i.extend([json!({"code": "create"}), json!({"code": "delete"})]);
                    }
                    r["supportedProfile"] = json!([format!("{BACKPORT}/backport-subscription")]);
                    r["operation"] = json!([{"name": "status", "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status"}]);
                    r["extension"] = Topic::ALL
                        .iter()
                        .map(|t| json!({"url": format!("{BACKPORT}/capabilitystatement-subscriptiontopic-canonical"), "valueCanonical": topic_url(*t)}))
                        .collect();
                    r["documentation"] = json!(SUBSCRIPTION_DOC);
                }
                "Observation" => {
                    r["supportedProfile"] = json!([
                        "http://hl7.org/fhir/StructureDefinition/vitalsigns",
                        "http://hl7.org/fhir/StructureDefinition/heartrate",
                        "http://hl7.org/fhir/StructureDefinition/bodytemp",
                        "http://hl7.org/fhir/StructureDefinition/bp",
                        "http://hl7.org/fhir/StructureDefinition/oxygensat"
                    ])
                }
                _ => {}
            }
            r
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": Utc::now().format("%Y-%m-%d").to_string(),
        "publisher": "Nephrocare",
        "kind": "instance",
        "software": {"name": "Nephrocare", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Nephrocare FHIR R4 API: patients, machines, readings, treatment sessions and open alarms (read-only), Bulk Data export, and topic-based Subscriptions (rest-hook)"},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [{
            "mode": "server",
            "documentation": "Read-only, but for Subscriptions. Authorize with `Authorization: Bearer <accessToken>` from POST /api/auth/login: the same identities and access rules as the REST API. Unknown search parameters are refused (400). Errors are OperationOutcomes. Bulk Data export (asynchronous, NDJSON) for admins (Patient, Device, Practitioner) and doctors (all types).",
            "security": {
                "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "OAuth", "display": "OAuth"}], "text": "Bearer JWT"}],
                "description": "Bearer access tokens (JWT) from POST /api/auth/login"
            },
            "resource": resources,
            "operation": [{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"}]
        }]
    })
}

/// `GET /metadata` (no token needed, as FHIR expects).
pub async fn metadata(_req: Request) -> FhirResult<Response> {
    Ok(ok(&capability_statement()))
}

/// `GET /CodeSystem/nephrocare-dialysis`.
pub async fn code_system(req: Request) -> FhirResult<Response> {
    match req.raw_path_param("id") {
        Some("nephrocare-dialysis") => Ok(ok(&codes::code_system())),
        other => Err(FhirError::NotFound(format!("CodeSystem/{} not found", other.unwrap_or_default()))),
    }
}
