//! `GET /Observation` (search) and `GET /Observation/{id}` (read): readings and session
//! summaries, decided by the policy as the REST history is (`Policy::patient` then
//! `read_scope`: a technician only what was recorded on its devices while responsible; a
//! device's readings through `clinical_view`: a patient only their own treatment), audited.
//!
//! A search page is one `ingest::query::readings_page` call (keyset cursor, time slices
//! planned with their bounds), so a page costs the same in the first hour of a year of 1 Hz
//! data as in its last.

use chrono::{Duration, Utc};
use nc_access::policy::ClinicalView;
use nc_access::PatientAction;
use nc_domain::{DeviceId, PatientId, SessionId};
use nc_ingest::query::{Order, ReadingsQuery, Windows};
use poem::{Request, Response};

use super::codes::{metrics_for_code, Metric, METRICS};
use super::observations::{self, PageToken};
use super::search::{self, Params};
use super::{ok, procedures, Ctx, FhirError, FhirResult};
use crate::telemetry::routes::windows;

/// The patient's readings the caller may read, and how: `Ok(windows)` (None: all).
pub async fn readable_patient(ctx: &Ctx, patient: PatientId, resource: &str) -> FhirResult<Option<Windows>> {
    let p = ctx.patient(patient, PatientAction::Read).await?;
    let scope = ctx.state.policy.read_scope(&ctx.subject).await?;
    ctx.audit(resource, Some(p.id), None).await?;
    Ok(windows(&scope))
}

/// A device's readings the caller may read: (only this patient's, windows).
async fn readable_device(ctx: &Ctx, device: DeviceId) -> FhirResult<(Option<PatientId>, Option<Windows>)> {
    let view = ctx.clinical_view(device).await?;
    let scope = ctx.state.policy.read_scope(&ctx.subject).await?;
    let only = match view {
        ClinicalView::Device => None,
        ClinicalView::OwnTreatment(p) => Some(p),
    };
    ctx.audit("fhir.Observation.search", only, Some(device)).await?;
    Ok((only, windows(&scope)))
}

/// `GET /Observation?patient=&device=&code=&date=&_count=&_sort=&_page=`.
pub async fn search(req: Request) -> FhirResult<Response> {
    let ctx = Ctx::of(&req).await?;
    let params = Params::parse(&req, &["patient", "subject", "device", "code", "date", "_count", "_sort", "_page"])?;
    let count = params.count()?;
    let patient_ref = match (params.one("patient")?, params.one("subject")?) {
        (Some(_), Some(_)) => return Err(FhirError::Invalid("give `patient` or `subject`, not both".into())),
        (p, s) => p.or(s),
    };
    let mut patient: Option<PatientId> =
        patient_ref.map(|r| search::reference_id(r, "Patient", "patient")).transpose()?;
    let device: Option<DeviceId> =
        params.one("device")?.map(|r| search::reference_id(r, "Device", "device")).transpose()?;
    let order = match params.one("_sort")? {
        None | Some("-date") => Order::NewestFirst,
        Some("date") => Order::OldestFirst,
        Some(other) => return Err(FhirError::NotSupported(format!("`_sort={other}`: only `date` and `-date`"))),
    };
    let mut metrics: Vec<&'static Metric> = Vec::new();
    for token in params.all("code").flat_map(|c| c.split(',')) {
        let found = metrics_for_code(token);
        if found.is_empty() {
            return Err(FhirError::Invalid(format!("`code` {token} is not one of the codes this server records (see CodeSystem/nephrocare-dialysis and the CapabilityStatement)")));
        }
        metrics.extend(found);
    }
    let w = match (patient, device) {
        (None, None) => {
            return Err(FhirError::Invalid("give `patient` (or `subject`) or `device`: searches are per patient or machine; a whole population is a Bulk Data export".into()));
        }
        (Some(p), d) => {
            if let Some(d) = d {
                readable_device(&ctx, d).await?;
            }
            readable_patient(&ctx, p, "fhir.Observation.search").await?
        }
        (None, Some(d)) => {
            let (only, w) = readable_device(&ctx, d).await?;
            patient = only;
            w
        }
    };
    let (mut from, to) = search::date_range(params.all("date"))?;
    // No reading lies more than 30 s ahead of the clock, nor before the patient's first
    // hour: the slices start where the data is, not in year 9999 or 1900.
    let to = to.min(Utc::now() + Duration::minutes(1));
    if let Some(p) = patient {
        from = match nc_ingest::query::first_hour(ctx.pool(), p.as_uuid()).await? {
            Some(first) => from.max(first),
            None => to,
        };
    }
    if from >= to {
        return Ok(ok(&search::bundle(
            &ctx.base,
            search::url(&ctx.base, "Observation", &params.without(&[])),
            Vec::new(),
            None,
        )));
    }
    let token = params
        .one("_page")?
        .map(|t| {
            PageToken::decode(t).ok_or_else(|| FhirError::Invalid("`_page` is not a token from a `next` link".into()))
        })
        .transpose()?;
    let newest_first = order == Order::NewestFirst;
    let measured: Vec<&'static str> = if metrics.is_empty() {
        Vec::new()
    } else {
        metrics
            .iter()
            .flat_map(|m| if m.key == "bp" { vec![m.column, "diastolic_bp"] } else { vec![m.column] })
            .collect()
    };
    let q = ReadingsQuery {
        patient: patient.map(|p| p.as_uuid()),
        device: device.map(|d| d.as_uuid()),
        order,
        measured,
        windows: w.as_ref(),
        ..ReadingsQuery::new(from, to, count as i64)
    };
    let (readings, more) =
        nc_ingest::query::readings_page(ctx.pool(), &q, token.map(|t| t.cursor(newest_first))).await?;
    let (entries, next) = observations::page(&readings, &metrics, token.map_or(0, |t| t.skip()), count, more);
    let self_url = search::url(&ctx.base, "Observation", &params.without(&[]));
    let next = next.map(|t| {
        let mut q = params.without(&["_page"]);
        q.push(("_page".into(), t.encode()));
        search::url(&ctx.base, "Observation", &q)
    });
    let entries = entries.into_iter().map(|o| (o, "match")).collect();
    Ok(ok(&search::bundle(&ctx.base, self_url, entries, next)))
}

/// `GET /Observation/{id}`: one measurement of one reading, or one summary of a session.
pub async fn read(req: Request) -> FhirResult<Response> {
    let ctx = Ctx::of(&req).await?;
    let id = req.raw_path_param("id").unwrap_or_default().to_owned();
    let not_found = || FhirError::NotFound(format!("Observation/{id} not found"));
    if let Some((session, key)) = id.get(..36).zip(id.get(37..)).filter(|_| id.as_bytes().get(36) == Some(&b'-')) {
        let session = uuid::Uuid::parse_str(session).map_err(|_| not_found())?;
        let (_, summaries) = procedures::readable_session(&ctx, SessionId(session)).await?;
        return summaries
            .into_iter()
            .find(|o| o["id"].as_str().is_some_and(|i| i.ends_with(&format!("-{key}"))))
            .map(|o| ok(&o))
            .ok_or_else(not_found);
    }
    let (device, time, seq, metric) = observations::parse_reading_id(&id).ok_or_else(not_found)?;
    // The reading, through its key; then the same decision as a search of its patient.
    let q = ReadingsQuery {
        device: Some(device),
        order: Order::OldestFirst,
        ..ReadingsQuery::new(time, time + Duration::microseconds(1), 1)
    };
    let after = PageToken { time, device, seq, skip: Some(0) }.cursor(false);
    let (readings, _) = nc_ingest::query::readings_page(ctx.pool(), &q, Some(after)).await?;
    let r = readings.into_iter().find(|r| r.seq == seq).ok_or_else(not_found)?;
    let patient = r.patient_id.map(PatientId).ok_or_else(not_found)?;
    let w = readable_patient(&ctx, patient, "fhir.Observation").await?;
    if let Some(w) = w {
        if !w.contains(r.device_id, r.time) {
            return Err(FhirError::Forbidden("recorded outside the windows you are responsible for".into()));
        }
    }
    let metric = METRICS.iter().find(|m| m.key == metric.key).expect("parsed from METRICS");
    observations::from_reading(&r, &[metric]).into_iter().next().map(|o| ok(&o)).ok_or_else(not_found)
}
