//! FHIR Bulk Data export, the asynchronous pattern: `GET Patient/$export` (every patient the
//! caller may list) or `GET Group/{id}/$export` (a hospital or a ward, see [`groups`]), with
//! `_type` and `_since`, answers 202 with `Content-Location`, a status URL to poll (202 with
//! `Retry-After` while planning; 200 with the manifest when done; `DELETE` cancels). Admins
//! and doctors only; admins get the administrative types (Patient, Device, Practitioner:
//! admins read no clinical data), doctors every type.
//!
//! A job is planned in the background: the patients it covers (frozen in the job, and
//! intersected with the caller's scope again when a file is downloaded), and its files — one
//! per resource type, one per patient for Observations. Files are produced when downloaded,
//! streamed as NDJSON from keyset pages of the data (5,000 readings at a time, 64 KiB
//! chunks through a bounded channel, so memory stays flat whatever the size, and a client
//! that stops reading stops the reads), standing at the job's transaction time: nothing
//! recorded after the kick-off is included. Jobs expire after 24 hours.

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use nc_access::{PatientAction, Subject};
use nc_domain::{DeviceId, ExportJobId, PatientId, Role, SessionId};
use nc_entities::{device_sessions, devices, fhir_export_jobs as jobs, patients, users};
use nc_ingest::query::{Order, ReadingsQuery};
use poem::http::{header, HeaderValue, StatusCode};
use poem::{Body, Request, Response};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::groups::{self, Group};
use super::outcome::{fhir_response, operation_outcome};
use super::search::{self, Params};
use super::{issues, observations, procedures, resources, Ctx, FhirError, FhirResult};
use crate::state::ApiState;
use crate::telemetry::routes::windows;

/// Every type an export may hold, in manifest order.
pub const TYPES: [&str; 6] = ["Patient", "Device", "Practitioner", "Procedure", "DetectedIssue", "Observation"];
/// What admins may export.
const ADMIN_TYPES: [&str; 3] = ["Patient", "Device", "Practitioner"];
/// Readings per query while streaming Observations.
const READINGS_PER_PAGE: i64 = 5_000;
/// Rows per query for the other types.
const ROWS_PER_PAGE: u64 = 500;
/// Bytes per chunk of a file, and chunks in flight.
const CHUNK_BYTES: usize = 64 * 1024;
const CHUNKS_IN_FLIGHT: usize = 4;
const KEEP: Duration = Duration::hours(24);
const NDJSON: &str = "application/fhir+ndjson";

/// A planned job: its patients and files.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub patients: Vec<Uuid>,
    /// The ward of a ward group (its staff are the Practitioners).
    pub ward: Option<String>,
    pub files: Vec<FilePlan>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FilePlan {
    #[serde(rename = "type")]
    pub ty: String,
    /// The one patient of an Observation file.
    pub patient: Option<Uuid>,
}

pub async fn kick_off_patients(req: Request) -> FhirResult<Response> {
    kick_off(req, false).await
}

pub async fn kick_off_group(req: Request) -> FhirResult<Response> {
    kick_off(req, true).await
}

async fn kick_off(req: Request, group: bool) -> FhirResult<Response> {
    let ctx = Ctx::of(&req).await?;
    let params = Params::parse(&req, &["_type", "_since", "_outputFormat"])?;
    groups::may_export(&ctx)?;
    let Subject::User(user) = ctx.subject else { unreachable!("may_export admits people only") };
    let group = if group {
        let id: Uuid = search::path_id(&req, "Group")?;
        Some(
            groups::find(&ctx.state.db, user.hospital, id)
                .await?
                .ok_or_else(|| FhirError::NotFound(format!("Group/{id} not found")))?,
        )
    } else {
        None
    };
    if let Some(f) = params.one("_outputFormat")? {
        if !["application/fhir+ndjson", "application/ndjson", "ndjson"].contains(&f) {
            return Err(FhirError::NotSupported(format!("`_outputFormat={f}`: only application/fhir+ndjson")));
        }
    }
    let allowed: &[&str] = match nc_access::policy::export_view(&ctx.subject) {
        nc_access::policy::ExportView::Administrative => &ADMIN_TYPES,
        nc_access::policy::ExportView::Clinical => &TYPES,
    };
    let mut types: Vec<String> = Vec::new();
    for t in params.all("_type").flat_map(|t| t.split(',')).map(str::trim).filter(|t| !t.is_empty()) {
        if !TYPES.contains(&t) {
            return Err(FhirError::Invalid(format!("`_type` {t} is not exported (types: {})", TYPES.join(", "))));
        }
        if !allowed.contains(&t) {
            return Err(FhirError::Forbidden(format!("admins do not read clinical data: {t} is not exported to them")));
        }
        if !types.iter().any(|x| x == t) {
            types.push(t.to_owned());
        }
    }
    if types.is_empty() {
        types = allowed.iter().map(|t| t.to_string()).collect();
    }
    let since =
        params
            .one("_since")?
            .map(|s| {
                DateTime::parse_from_rfc3339(s).map(|t| t.to_utc()).ok().filter(crate::validate::in_range).ok_or_else(
                    || FhirError::Invalid("`_since` must be an RFC 3339 instant between 1900 and 9999".into()),
                )
            })
            .transpose()?;
    let now = Utc::now();
    let request = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("").chars().take(1800).collect::<String>();
    // Expired jobs go when a new one comes.
    jobs::Entity::delete_many().filter(jobs::Column::ExpiresAt.lt(now)).exec(&ctx.state.db).await?;
    let job = jobs::ActiveModel {
        id: Set(ExportJobId::new()),
        hospital_id: Set(user.hospital),
        requested_by: Set(user.id),
        request: Set(format!("{}{request}", ctx.base)),
        group_id: Set(group.as_ref().map(Group::id)),
        types: Set(types),
        since: Set(since),
        transaction_time: Set(now),
        status: Set("in-progress".into()),
        files: Set(None),
        error: Set(None),
        created_at: Set(now),
        completed_at: Set(None),
        expires_at: Set(now + KEEP),
    }
    .insert(&ctx.state.db)
    .await?;
    let state = ctx.state.clone();
    let subject = ctx.subject;
    let id = job.id;
    tokio::spawn(async move {
        let outcome = plan(&state, &subject, &job, group.as_ref()).await;
        let (status, files, error) = match outcome {
            Ok(p) => ("completed", Some(serde_json::to_value(p).expect("serializable")), None),
            Err(e) => {
                tracing::error!(job = %id, error = %e, "FHIR export: planning failed");
                ("failed", None, Some(e.to_string()))
            }
        };
        // A cancelled job is gone: nothing to update.
        let update = jobs::Entity::update_many()
            .col_expr(jobs::Column::Status, status.into())
            .col_expr(jobs::Column::Files, files.into())
            .col_expr(jobs::Column::Error, error.into())
            .col_expr(jobs::Column::CompletedAt, Some(Utc::now()).into())
            .filter(jobs::Column::Id.eq(id))
            .exec(&state.db)
            .await;
        if let Err(e) = update {
            tracing::error!(job = %id, error = %e, "FHIR export: recording the plan failed");
        }
    });
    let mut resp = fhir_response(
        StatusCode::ACCEPTED,
        &operation_outcome("information", "informational", "export accepted; poll the Content-Location URL"),
    );
    let status_url = format!("{}/bulk-status/{id}", ctx.base);
    resp.headers_mut()
        .insert(header::CONTENT_LOCATION, HeaderValue::from_str(&status_url).map_err(FhirError::internal)?);
    Ok(resp)
}

/// The patients the subject may list now, of `among` (all of the hospital's: None).
async fn in_scope(state: &ApiState, subject: &Subject, among: Option<&[Uuid]>) -> FhirResult<Vec<Uuid>> {
    let scope = state.policy.patient_scope(subject).await?;
    let mut q = patients::Entity::find()
        .select_only()
        .column(patients::Column::Id)
        .filter(patients::Column::HospitalId.eq(subject.hospital()))
        .filter(scope.condition());
    if let Some(ids) = among {
        q = q.filter(patients::Column::Id.is_in(ids.iter().map(|u| PatientId(*u))));
    }
    let ids: Vec<PatientId> = q.order_by_asc(patients::Column::Id).into_tuple().all(&state.db).await?;
    Ok(ids.into_iter().map(|p| p.as_uuid()).collect())
}

async fn plan(state: &ApiState, subject: &Subject, job: &jobs::Model, group: Option<&Group>) -> FhirResult<Plan> {
    let members = match group {
        Some(g) => Some(groups::members(&state.db, g).await?.into_iter().map(|p| p.as_uuid()).collect::<Vec<_>>()),
        None => None,
    };
    let patients = in_scope(state, subject, members.as_deref()).await?;
    let mut files = Vec::new();
    for ty in TYPES.iter().filter(|t| job.types.iter().any(|x| x == *t)) {
        if *ty == "Observation" {
            for p in &patients {
                let readings = nc_ingest::query::first_hour(state.ingest.pool(), *p).await?.is_some();
                let sessions = device_sessions::Entity::find()
                    .filter(device_sessions::Column::PatientId.eq(PatientId(*p)))
                    .filter(device_sessions::Column::EndedAt.is_not_null())
                    .limit(1)
                    .one(&state.db)
                    .await?
                    .is_some();
                if readings || sessions {
                    files.push(FilePlan { ty: ty.to_string(), patient: Some(*p) });
                }
            }
        } else if *ty == "Practitioner" || !patients.is_empty() {
            files.push(FilePlan { ty: ty.to_string(), patient: None });
        }
    }
    let ward = match group {
        Some(Group::Ward { ward, .. }) => Some(ward.clone()),
        _ => None,
    };
    Ok(Plan { patients, ward, files })
}

/// The job, if it is the caller's and has not expired.
async fn own_job(ctx: &Ctx, req: &Request) -> FhirResult<jobs::Model> {
    let id: ExportJobId = search::path_id(req, "export job")?;
    let Subject::User(user) = ctx.subject else { return Err(FhirError::NotFound("export job not found".into())) };
    jobs::Entity::find_by_id(id)
        .one(&ctx.state.db)
        .await?
        .filter(|j| j.requested_by == user.id && j.expires_at > Utc::now())
        .ok_or_else(|| FhirError::NotFound(format!("export job {id} not found (or expired, or cancelled)")))
}

/// `GET /bulk-status/{id}`.
pub async fn status(req: Request) -> FhirResult<Response> {
    let ctx = Ctx::of(&req).await?;
    let job = own_job(&ctx, &req).await?;
    match job.status.as_str() {
        "in-progress" => {
            let mut resp = Response::builder().status(StatusCode::ACCEPTED).finish();
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            resp.headers_mut().insert("x-progress", HeaderValue::from_static("planning the files"));
            Ok(resp)
        }
        "failed" => Err(FhirError::Internal(job.error.unwrap_or_default())),
        _ => {
            let plan: Plan =
                serde_json::from_value(job.files.clone().unwrap_or_default()).map_err(FhirError::internal)?;
            let output: Vec<Value> = plan
                .files
                .iter()
                .enumerate()
                .map(|(n, f)| json!({"type": f.ty, "url": format!("{}/bulk-files/{}/{n}", ctx.base, job.id)}))
                .collect();
            let manifest = json!({
                "transactionTime": observations::instant(job.transaction_time),
                "request": job.request,
                "requiresAccessToken": true,
                "output": output,
                "error": [],
            });
            let mut resp =
                Response::builder().status(StatusCode::OK).content_type("application/json").body(manifest.to_string());
            resp.headers_mut().insert(
                header::EXPIRES,
                HeaderValue::from_str(&job.expires_at.to_rfc2822()).map_err(FhirError::internal)?,
            );
            Ok(resp)
        }
    }
}

/// `DELETE /bulk-status/{id}`: cancels the export (its files are gone).
pub async fn cancel(req: Request) -> FhirResult<Response> {
    let ctx = Ctx::of(&req).await?;
    let job = own_job(&ctx, &req).await?;
    jobs::Entity::delete_by_id(job.id).exec(&ctx.state.db).await?;
    Ok(fhir_response(StatusCode::ACCEPTED, &operation_outcome("information", "informational", "export cancelled")))
}

/// `GET /bulk-files/{id}/{n}`: one file of a completed export, streamed.
pub async fn file(req: Request) -> FhirResult<Response> {
    let ctx = Ctx::of(&req).await?;
    let job = own_job(&ctx, &req).await?;
    groups::may_export(&ctx)?;
    let plan: Plan = match (&job.status[..], &job.files) {
        ("completed", Some(f)) => serde_json::from_value(f.clone()).map_err(FhirError::internal)?,
        _ => return Err(FhirError::NotFound("the export is not complete".into())),
    };
    let n: usize = req.raw_path_param("file").and_then(|n| n.parse().ok()).unwrap_or(usize::MAX);
    let file = plan.files.get(n).cloned().ok_or_else(|| FhirError::NotFound("no such file in this export".into()))?;
    // Decided again now: only the patients the caller may still list.
    let among: Vec<Uuid> = match file.patient {
        Some(p) => vec![p],
        None => plan.patients.clone(),
    };
    let mut patients = in_scope(&ctx.state, &ctx.subject, Some(&among)).await?;
    if file.ty == "Observation" {
        if let Some(p) = patients.first() {
            if ctx.state.policy.patient(&ctx.subject, PatientId(*p), PatientAction::Read).await.is_err() {
                patients.clear();
            }
        }
    }
    if file.ty != "Practitioner" {
        ctx.audit_each(&format!("fhir.export.{}", file.ty), patients.iter().map(|p| (Some(PatientId(*p)), None)))
            .await?;
    }
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(CHUNKS_IN_FLIGHT);
    let state = ctx.state.clone();
    let subject = ctx.subject;
    tokio::spawn(async move {
        let mut out = Out { tx, buf: Vec::with_capacity(CHUNK_BYTES + 4096) };
        let written = produce(&state, &subject, &job, &plan, &file, &patients, &mut out).await;
        // The client going away (a closed channel) ends the reads; nothing else to do.
        match written {
            Ok(()) => {
                let _ = out.flush().await;
            }
            Err(Stop::Closed) => {}
            Err(Stop::Failed(e)) => {
                tracing::error!(job = %job.id, error = %e, "FHIR export: a file failed mid-stream");
                // The body ends in an error: the client sees a broken transfer, not a short file.
                let _ = out.tx.send(Err(std::io::Error::other(e))).await;
            }
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Ok(Response::builder().status(StatusCode::OK).content_type(NDJSON).body(Body::from_bytes_stream(stream)))
}

/// Why producing a file stopped early.
enum Stop {
    /// The client went away.
    Closed,
    Failed(String),
}

impl<E: std::fmt::Display> From<E> for Stop
where
    E: Into<FhirError>,
{
    fn from(e: E) -> Self {
        Stop::Failed(e.to_string())
    }
}

/// Lines of NDJSON, sent in chunks.
struct Out {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl Out {
    async fn line(&mut self, v: &Value) -> Result<(), Stop> {
        serde_json::to_writer(&mut self.buf, v).map_err(|e| Stop::Failed(e.to_string()))?;
        self.buf.push(b'\n');
        if self.buf.len() >= CHUNK_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Stop> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES + 4096)));
        self.tx.send(Ok(chunk)).await.map_err(|_| Stop::Closed)
    }
}

async fn produce(
    state: &ApiState,
    subject: &Subject,
    job: &jobs::Model,
    plan: &Plan,
    file: &FilePlan,
    patients: &[Uuid],
    out: &mut Out,
) -> Result<(), Stop> {
    let since = job.since;
    let ids: Vec<PatientId> = patients.iter().map(|p| PatientId(*p)).collect();
    match file.ty.as_str() {
        "Patient" => {
            for chunk in ids.chunks(ROWS_PER_PAGE as usize) {
                let mut q = patients::Entity::find().filter(patients::Column::Id.is_in(chunk.iter().copied()));
                if let Some(s) = since {
                    q = q.filter(patients::Column::UpdatedAt.gt(s));
                }
                for p in q.order_by_asc(patients::Column::Id).all(&state.db).await? {
                    out.line(&resources::patient(&p)).await?;
                }
            }
        }
        "Device" => {
            let mut on: Vec<DeviceId> = Vec::new();
            for chunk in ids.chunks(ROWS_PER_PAGE as usize) {
                let used: Vec<DeviceId> = device_sessions::Entity::find()
                    .select_only()
                    .column(device_sessions::Column::DeviceId)
                    .distinct()
                    .filter(device_sessions::Column::PatientId.is_in(chunk.iter().copied()))
                    .into_tuple()
                    .all(&state.db)
                    .await?;
                let assigned: Vec<Option<DeviceId>> = patients::Entity::find()
                    .select_only()
                    .column(patients::Column::AssignedDeviceId)
                    .filter(patients::Column::Id.is_in(chunk.iter().copied()))
                    .into_tuple()
                    .all(&state.db)
                    .await?;
                on.extend(used);
                on.extend(assigned.into_iter().flatten());
            }
            on.sort();
            on.dedup();
            for chunk in on.chunks(ROWS_PER_PAGE as usize) {
                let mut q = devices::Entity::find()
                    .filter(devices::Column::Id.is_in(chunk.iter().copied()))
                    .filter(devices::Column::HospitalId.eq(job.hospital_id));
                if let Some(s) = since {
                    q = q.filter(devices::Column::UpdatedAt.gt(s));
                }
                for d in q.order_by_asc(devices::Column::Id).all(&state.db).await? {
                    out.line(&resources::device(&d)).await?;
                }
            }
        }
        "Practitioner" => {
            let mut q = users::Entity::find()
                .filter(users::Column::HospitalId.eq(job.hospital_id))
                .filter(users::Column::Role.is_in([Role::Doctor, Role::Technician]));
            if let Some(w) = &plan.ward {
                q = q.filter(users::Column::Ward.eq(w.as_str()));
            }
            if let Some(s) = since {
                q = q.filter(users::Column::UpdatedAt.gt(s));
            }
            for u in q.order_by_asc(users::Column::Id).all(&state.db).await? {
                out.line(&resources::practitioner(&u)).await?;
            }
        }
        "Procedure" => {
            let mut after: Option<SessionId> = None;
            loop {
                let page =
                    procedures::sessions_of(&state.db, &ids, since, job.transaction_time, after, ROWS_PER_PAGE).await?;
                for s in &page {
                    if let Some(p) = s.patient_id {
                        out.line(&procedures::procedure(s, p)).await?;
                    }
                }
                match page.last() {
                    Some(s) if page.len() as u64 == ROWS_PER_PAGE => after = Some(s.id),
                    _ => break,
                }
            }
        }
        "DetectedIssue" => {
            for p in &ids {
                for a in state.alarms.open_alarms(job.hospital_id, Some(*p), None, 10_000, 0).await? {
                    let changed = [Some(a.raised_at), a.acknowledged_at].into_iter().flatten().max();
                    if since.is_none_or(|s| changed.is_some_and(|c| c > s)) && a.raised_at <= job.transaction_time {
                        out.line(&issues::detected_issue(&a)).await?;
                    }
                }
            }
        }
        "Observation" => {
            let Some(p) = ids.first().copied() else { return Ok(()) };
            observations_of(state, subject, job, p, out).await?;
        }
        _ => {}
    }
    Ok(())
}

/// A patient's Observations: every reading up to the transaction time (after `_since`),
/// oldest first, then the summaries of the patient's ended sessions.
async fn observations_of(
    state: &ApiState,
    subject: &Subject,
    job: &jobs::Model,
    patient: PatientId,
    out: &mut Out,
) -> Result<(), Stop> {
    let pool = state.ingest.pool();
    let w = windows(&state.policy.read_scope(subject).await?);
    if let Some(first) = nc_ingest::query::first_hour(pool, patient.as_uuid()).await? {
        let from = match job.since {
            Some(s) => first.max(s + Duration::microseconds(1)),
            None => first,
        };
        if from < job.transaction_time {
            let q = ReadingsQuery {
                patient: Some(patient.as_uuid()),
                order: Order::OldestFirst,
                windows: w.as_ref(),
                ..ReadingsQuery::new(from, job.transaction_time, READINGS_PER_PAGE)
            };
            let mut after = None;
            loop {
                let (readings, next) = nc_ingest::query::readings_page(pool, &q, after).await?;
                for r in &readings {
                    for o in observations::from_reading(r, &[]) {
                        out.line(&o).await?;
                    }
                }
                match next {
                    Some(c) => after = Some(c),
                    None => break,
                }
            }
        }
    }
    let ctx_ids = [patient];
    let mut after: Option<SessionId> = None;
    loop {
        let page =
            procedures::sessions_of(&state.db, &ctx_ids, job.since, job.transaction_time, after, ROWS_PER_PAGE).await?;
        for s in page.iter().filter(|s| s.ended_at.is_some()) {
            if let Some(w) = &w {
                if !w.contains(s.device_id.as_uuid(), s.started_at) {
                    continue;
                }
            }
            let facts = procedures::facts(&state.alarms, s, patient).await?;
            for o in observations::session_summaries(&facts) {
                out.line(&o).await?;
            }
        }
        match page.last() {
            Some(s) if page.len() as u64 == ROWS_PER_PAGE => after = Some(s.id),
            _ => break,
        }
    }
    Ok(())
}
