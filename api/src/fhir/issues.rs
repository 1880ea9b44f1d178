//! Open alarms as `DetectedIssue`s (not `Flag`: an alarm is raised by a machine, may have no
//! patient — a machine offline, maintenance due — and has a priority; DetectedIssue has an
//! optional patient, a `Device` author, a `severity` that is the IEC 60601-1-8 priority, and
//! `mitigation` for the acknowledgement, where Flag needs a subject and has no severity).
//!
//! The alarms come from the alarm system's own reads (`nc_alarms::Alarms::open_alarms`):
//! the FHIR API never reads its tables.

use nc_access::policy::ClinicalView;
use nc_access::DeviceAction;
use nc_domain::{AlertPriority, AlertState, DeviceId, HospitalId, PatientId};
use nc_ingest::query::Windows;
use poem::{Request, Response};
use serde_json::{json, Value};
use uuid::Uuid;

use super::observation_api::readable_patient;
use super::observations::instant;
use super::search::{self, Params};
use super::{ok, Ctx, FhirError, FhirResult};
use crate::telemetry::routes::windows;

/// The system of alarm conditions (`systolic_bp_low`, `device_offline`, …; see topics.md).
pub const ALARM_SYSTEM: &str = "urn:nephrocare:fhir:CodeSystem:alarm";

pub fn detected_issue(a: &nc_alarms::Alert) -> Value {
    let severity = match a.priority {
        AlertPriority::High => "high",
        AlertPriority::Medium => "moderate",
        AlertPriority::Low => "low",
    };
    let mut r = json!({
        "resourceType": "DetectedIssue",
        "id": a.id.to_string(),
        "status": if a.state == AlertState::Acknowledged { "final" } else { "preliminary" },
        "code": {"coding": [{"system": ALARM_SYSTEM, "code": a.code}], "text": a.code},
        "severity": severity,
        "identifiedDateTime": instant(a.raised_at),
        "author": {"reference": format!("Device/{}", a.device_id)},
        "implicated": [{"reference": format!("Device/{}", a.device_id)}],
        "detail": a.message,
    });
    if let Some(p) = a.patient_id {
        r["patient"] = json!({"reference": format!("Patient/{p}")});
    }
    if let Some(at) = a.acknowledged_at {
        let mut m = json!({"action": {"text": "acknowledged"}, "date": instant(at)});
        if let Some(by) = a.acknowledged_by {
            m["author"] = json!({"reference": format!("Practitioner/{by}")});
        }
        r["mitigation"] = json!([m]);
    }
    r
}

fn visible(a: &nc_alarms::Alert, w: &Option<Windows>) -> bool {
    w.as_ref().is_none_or(|w| w.contains(a.device_id, a.raised_at))
}

/// `GET /DetectedIssue?patient=&author=&_count=&_offset=`: open alarms of a patient (as the
/// patient's readings are decided) or of a machine (as its clinical data: a patient only
/// their own treatment's).
pub async fn search(req: Request) -> FhirResult<Response> {
    let ctx = Ctx::of(&req).await?;
    let params = Params::parse(&req, &["patient", "author", "_count", "_offset"])?;
    let count = params.count()?;
    let offset = params.offset()? as i64;
    let mut patient: Option<PatientId> =
        params.one("patient")?.map(|r| search::reference_id(r, "Patient", "patient")).transpose()?;
    let device: Option<DeviceId> =
        params.one("author")?.map(|r| search::reference_id(r, "Device", "author")).transpose()?;
    let w = match (patient, device) {
        (None, None) => return Err(FhirError::Invalid("give `patient` or `author` (a Device)".into())),
        (Some(p), _) => readable_patient(&ctx, p, "fhir.DetectedIssue.search").await?,
        (None, Some(d)) => {
            let view = ctx.clinical_view(d).await?;
            if let ClinicalView::OwnTreatment(p) = view {
                patient = Some(p);
            }
            ctx.audit("fhir.DetectedIssue.search", patient, Some(d)).await?;
            windows(&ctx.state.policy.read_scope(&ctx.subject).await?)
        }
    };
    if let (Some(_), Some(d)) = (patient, device) {
        ctx.clinical_view(d).await?;
    }
    let rows = ctx.state.alarms.open_alarms(ctx.subject.hospital(), patient, device, count as i64 + 1, offset).await?;
    let more = rows.len() > count;
    let entries = rows.iter().take(count).filter(|a| visible(a, &w)).map(|a| (detected_issue(a), "match")).collect();
    Ok(ok(&params.offset_bundle(&ctx.base, "DetectedIssue", entries, count, more)?))
}

/// `GET /DetectedIssue/{id}`: an open alarm, decided by its patient (or, without one, by its
/// machine's clinical data).
pub async fn read(req: Request) -> FhirResult<Response> {
    let ctx = Ctx::of(&req).await?;
    let id: Uuid = search::path_id(&req, "DetectedIssue")?;
    let not_found = || FhirError::NotFound(format!("DetectedIssue/{id} not found"));
    let a = ctx.state.alarms.open_alarm(id).await?.ok_or_else(not_found)?;
    nc_access::policy::decide_visible(&ctx.subject, HospitalId(a.hospital_id)).map_err(|_| not_found())?;
    match a.patient_id {
        Some(p) => {
            let w = readable_patient(&ctx, PatientId(p), "fhir.DetectedIssue").await?;
            if !visible(&a, &w) {
                return Err(FhirError::Forbidden("raised outside the windows you are responsible for".into()));
            }
        }
        None => {
            let d = DeviceId(a.device_id);
            ctx.device(d, DeviceAction::ReadClinical).await?;
            ctx.audit("fhir.DetectedIssue", None, Some(d)).await?;
        }
    }
    Ok(ok(&detected_issue(&a)))
}
