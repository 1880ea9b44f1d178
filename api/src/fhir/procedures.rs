//! Treatment sessions as `Procedure`s (SNOMED CT 302497006 haemodialysis): performed period,
//! status, the machine; and each ended session's summary (UF volume and rate, nadir
//! systolic pressure, alarms) as Observations `partOf` it, given by `_revinclude` or read
//! by id. Decided as the REST session lists are: the patient through the policy, a
//! technician only the sessions overlapping its windows. Audited.

use nc_access::policy::{sessions_in, ReadScope};
use nc_access::PatientAction;
use nc_domain::{PatientId, SessionId, SessionStatus};
use nc_entities::device_sessions;
use poem::{Request, Response};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde_json::{json, Value};

use super::codes::SNOMED;
use super::observations::{self, instant, SessionFacts};
use super::search::{self, Params};
use super::{ok, Ctx, FhirError, FhirResult};

pub fn procedure(s: &device_sessions::Model, patient: PatientId) -> Value {
    let status = match s.status {
        SessionStatus::Active => "in-progress",
        SessionStatus::Completed => "completed",
        SessionStatus::Interrupted => "stopped",
    };
    let mut period = json!({"start": instant(s.started_at)});
    if let Some(e) = s.ended_at {
        period["end"] = json!(instant(e));
    }
    let mut r = json!({
        "resourceType": "Procedure",
        "id": s.id.to_string(),
        "status": status,
        "code": {"coding": [{"system": SNOMED, "code": "302497006", "display": "Hemodialysis"}], "text": "Haemodialysis"},
        "subject": {"reference": format!("Patient/{patient}")},
        "performedPeriod": period,
        "focalDevice": [{"manipulated": {"reference": format!("Device/{}", s.device_id)}}],
        "usedReference": [{"reference": format!("Device/{}", s.device_id)}],
    });
    if s.status == SessionStatus::Interrupted {
        r["statusReason"] = json!({"text": "no readings for 5 minutes: the session was ended by the server"});
    }
    r
}

/// The facts the summaries need (the alarm count from `issues`).
pub async fn facts(
    alarms: &nc_alarms::Alarms,
    s: &device_sessions::Model,
    patient: PatientId,
) -> Result<SessionFacts, sqlx::Error> {
    Ok(SessionFacts {
        id: s.id.as_uuid(),
        patient: patient.as_uuid(),
        device: s.device_id.as_uuid(),
        started_at: s.started_at,
        ended_at: s.ended_at,
        summary: s.summary.clone(),
        uf_rate_ml_kg_h: s.uf_rate_ml_kg_h,
        nadir_systolic: s.nadir_systolic,
        alarms: alarms.raised_in_session(s.id).await?,
    })
}

/// A session the caller may read (as its patient's sessions), with its summaries. Audited.
pub async fn readable_session(ctx: &Ctx, id: SessionId) -> FhirResult<(Value, Vec<Value>)> {
    let (s, patient) = match ctx.state.policy.session(&ctx.subject, id).await {
        Err(nc_access::PolicyError::Denied(nc_access::Denied::NotFound)) => {
            return Err(FhirError::NotFound(format!("Procedure/{id} not found")))
        }
        other => other.map_err(|e| FhirError::policy(e, "Procedure"))?,
    };
    ctx.audit("fhir.Procedure", Some(patient), Some(s.device_id)).await?;
    let summaries = observations::session_summaries(&facts(&ctx.state.alarms, &s, patient).await?);
    Ok((procedure(&s, patient), summaries))
}

/// `GET /Procedure/{id}`.
pub async fn read(req: Request) -> FhirResult<Response> {
    let ctx = Ctx::of(&req).await?;
    let id: SessionId = search::path_id(&req, "Procedure")?;
    Ok(ok(&readable_session(&ctx, id).await?.0))
}

/// `GET /Procedure?patient=&date=&_count=&_offset=&_revinclude=Observation:part-of`: the
/// patient's sessions, newest first.
pub async fn search(req: Request) -> FhirResult<Response> {
    let ctx = Ctx::of(&req).await?;
    let params = Params::parse(&req, &["patient", "subject", "date", "_count", "_offset", "_revinclude"])?;
    let count = params.count()?;
    let offset = params.offset()?;
    let include = match params.one("_revinclude")? {
        None => false,
        Some("Observation:part-of") => true,
        Some(other) => return Err(FhirError::NotSupported(format!("`_revinclude={other}`: only Observation:part-of"))),
    };
    let patient_ref = params
        .one("patient")?
        .or(params.one("subject")?)
        .ok_or_else(|| FhirError::Invalid("`patient` is required".into()))?;
    let patient: PatientId = search::reference_id(patient_ref, "Patient", "patient")?;
    ctx.patient(patient, PatientAction::Read).await?;
    let (from, to) = search::date_range(params.all("date"))?;
    let mut query = device_sessions::Entity::find()
        .filter(device_sessions::Column::PatientId.eq(patient))
        .filter(device_sessions::Column::StartedAt.gte(from))
        .filter(device_sessions::Column::StartedAt.lt(to));
    if let ReadScope::Windows(w) = ctx.state.policy.read_scope(&ctx.subject).await? {
        query = query.filter(sessions_in(&w));
    }
    let query = query.order_by_desc(device_sessions::Column::StartedAt).order_by_desc(device_sessions::Column::Id);
    let (rows, more) = search::offset_page(&ctx.state.db, query, offset, count).await?;
    ctx.audit("fhir.Procedure.search", Some(patient), None).await?;
    let mut entries = Vec::new();
    for s in &rows {
        entries.push((procedure(s, patient), "match"));
        if include {
            let summaries = observations::session_summaries(&facts(&ctx.state.alarms, s, patient).await?);
            entries.extend(summaries.into_iter().map(|o| (o, "include")));
        }
    }
    Ok(ok(&params.offset_bundle(&ctx.base, "Procedure", entries, count, more)?))
}

/// Sessions of some patients, for the bulk export: `(session, patient)` in pages by id.
pub async fn sessions_of(
    db: &sea_orm::DatabaseConnection,
    patients: &[PatientId],
    since: Option<chrono::DateTime<chrono::Utc>>,
    until: chrono::DateTime<chrono::Utc>,
    after: Option<SessionId>,
    limit: u64,
) -> Result<Vec<device_sessions::Model>, sea_orm::DbErr> {
    let mut q = device_sessions::Entity::find()
        .filter(device_sessions::Column::PatientId.is_in(patients.iter().copied()))
        .filter(device_sessions::Column::CreatedAt.lte(until));
    if let Some(s) = since {
        q = q.filter(
            sea_orm::Condition::any()
                .add(device_sessions::Column::StartedAt.gt(s))
                .add(device_sessions::Column::EndedAt.gt(s))
                .add(device_sessions::Column::EndedAt.is_null()),
        );
    }
    if let Some(a) = after {
        q = q.filter(device_sessions::Column::Id.gt(a));
    }
    q.order_by_asc(device_sessions::Column::Id).limit(limit).all(db).await
}
