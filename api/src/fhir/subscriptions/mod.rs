//! FHIR Subscriptions (R4, the Subscriptions R5 Backport IG), topic-based, `rest-hook`:
//! `POST /Subscription` (any person; a filter must name a patient or machine they may read),
//! `GET /Subscription` (their own; an admin the hospital's), `GET /Subscription/{id}`,
//! `DELETE /Subscription/{id}`, `GET /Subscription/{id}/$status`. The subscriptions are
//! `nc_records::subscriptions`' (storage, events, heartbeats); who may see and end one, and
//! what a notification may carry, the policy's (`access/src/policy/subscriptions.rs`);
//! [`notify::RestHookSender`] builds and posts the notifications.

pub mod notify;
pub mod resource;

use nc_access::policy::{decide_subscribe, decide_subscription, subscription_scope, SubscriptionAction};
use nc_access::{PatientAction, Subject};
use nc_records::subscriptions::{Filter, Subscription, SubscriptionError};
use poem::http::StatusCode;
use poem::{Request, Response};
use serde_json::Value;
use uuid::Uuid;

use super::outcome::fhir_response;
use super::search::{self, Params};
use super::{ok, Ctx, FhirError, FhirResult};

/// The largest `Subscription` a client may POST.
const MAX_BODY: usize = 64 * 1024;

impl From<SubscriptionError> for FhirError {
    fn from(e: SubscriptionError) -> Self {
        match e {
            SubscriptionError::Db(db) => db.into(),
            other => FhirError::Invalid(other.to_string()),
        }
    }
}

/// The subscription `id`, if the caller may do `action` to it.
async fn subscription(ctx: &Ctx, id: Uuid, action: SubscriptionAction) -> FhirResult<Subscription> {
    let not_found = || FhirError::NotFound(format!("Subscription/{id} not found"));
    let s = ctx.state.records.subscriptions().get(id).await?.ok_or_else(not_found)?;
    decide_subscription(&ctx.subject, s.hospital, s.owner, action).map_err(|_| not_found())?;
    Ok(s)
}

/// `POST /Subscription`: 201 with the stored subscription (`requested`; its handshake is
/// on its way) and its `Location`.
pub async fn create(mut req: Request) -> FhirResult<Response> {
    let ctx = Ctx::of(&req).await?;
    decide_subscribe(&ctx.subject).map_err(|d| FhirError::denied(d, "Subscription"))?;
    let Subject::User(owner) = ctx.subject else {
        return Err(FhirError::Forbidden("machines do not subscribe".into()));
    };
    let content_type = req.content_type().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if !["application/fhir+json", "application/json"].contains(&content_type.as_str()) {
        return Err(FhirError::Invalid("send the Subscription as application/fhir+json".into()));
    }
    let bytes = req
        .take_body()
        .into_bytes_limit(MAX_BODY)
        .await
        .map_err(|_| FhirError::Invalid(format!("the body must be at most {MAX_BODY} bytes")))?;
    let body: Value =
        serde_json::from_slice(&bytes).map_err(|e| FhirError::Invalid(format!("the body is not JSON: {e}")))?;
    let r = resource::parse(&body)?;
    match r.filter {
        Some(Filter::Patient(p)) => {
            ctx.patient(p, PatientAction::Read).await?;
        }
        Some(Filter::Device(d)) => {
            ctx.clinical_view(d).await?;
        }
        None => {}
    }
    let s = ctx.state.records.subscriptions().create(owner.hospital, owner.id, r).await?;
    let mut resp = fhir_response(StatusCode::CREATED, &resource::render(&s));
    let location = format!("{}/Subscription/{}", ctx.base, s.id);
    if let Ok(v) = poem::http::HeaderValue::from_str(&location) {
        resp.headers_mut().insert(poem::http::header::LOCATION, v);
    }
    Ok(resp)
}

/// `GET /Subscription?_count=&_offset=`: the caller's subscriptions (an admin's: the
/// hospital's), newest first.
pub async fn search(req: Request) -> FhirResult<Response> {
    let ctx = Ctx::of(&req).await?;
    let params = Params::parse(&req, &["_count", "_offset"])?;
    let count = params.count()?;
    let offset = params.offset()?;
    let scope = subscription_scope(&ctx.subject).map_err(|d| FhirError::denied(d, "Subscription"))?;
    let mut rows = ctx
        .state
        .records
        .subscriptions()
        .list(scope, count as i64 + 1, i64::try_from(offset).unwrap_or(i64::MAX))
        .await?;
    let more = rows.len() > count;
    rows.truncate(count);
    let entries = rows.iter().map(|s| (resource::render(s), "match")).collect();
    Ok(ok(&params.offset_bundle(&ctx.base, "Subscription", entries, count, more)?))
}

/// `GET /Subscription/{id}`.
pub async fn read(req: Request) -> FhirResult<Response> {
    let ctx = Ctx::of(&req).await?;
    let id: Uuid = search::path_id(&req, "Subscription")?;
    Ok(ok(&resource::render(&subscription(&ctx, id, SubscriptionAction::Read).await?)))
}

/// `DELETE /Subscription/{id}`: 204; nothing more is sent.
pub async fn delete(req: Request) -> FhirResult<Response> {
    let ctx = Ctx::of(&req).await?;
    let id: Uuid = search::path_id(&req, "Subscription")?;
    subscription(&ctx, id, SubscriptionAction::Delete).await?;
    ctx.state.records.subscriptions().delete(id).await?;
    Ok(Response::builder().status(StatusCode::NO_CONTENT).finish())
}

/// `GET /Subscription/{id}/$status`: a `searchset` Bundle of its `subscription-status`
/// (`query-status`: its state, the events numbered so far, the last error).
pub async fn status(req: Request) -> FhirResult<Response> {
    let ctx = Ctx::of(&req).await?;
    let id: Uuid = search::path_id(&req, "Subscription")?;
    let s = subscription(&ctx, id, SubscriptionAction::Read).await?;
    let parameters = resource::status(&s, &ctx.base, "query-status", s.events_since_start, None);
    let self_url = format!("{}/Subscription/{id}/$status", ctx.base);
    let mut bundle = search::bundle(&ctx.base, self_url, vec![(parameters, "match")], None);
    if let Some(e) = bundle["entry"].get_mut(0) {
        e["fullUrl"] = Value::String(format!("urn:uuid:{}", Uuid::new_v4()));
    }
    Ok(ok(&bundle))
}
