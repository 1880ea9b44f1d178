//! FHIR R4 over the platform's data, read-only but for subscriptions, under `/fhir/r4`: a transport like REST and
//! MQTT, over data the other capabilities own, authorized by the same tokens and the one
//! policy module, every read of patient data audited (`access_audit_log`, resources
//! `fhir.*`).
//!
//! - [`capability`]: `GET /fhir/r4/metadata`, exactly what is implemented;
//! - [`resources`]: Patient, Device, Practitioner (doctors and technicians);
//! - [`observations`] and [`observation_api`]: readings as Observations (vital-signs
//!   profiles, LOINC and UCUM; dialysis parameters in the Nephrocare code system, [`codes`]),
//!   searched in pages over `ingest::query`'s keyset cursors;
//! - [`procedures`]: treatment sessions as Procedures, with their summary Observations;
//! - [`issues`]: open alarms as DetectedIssues (the one query of `alerts`);
//! - [`bulk`]: Bulk Data export (`$export`, asynchronous), files streamed as NDJSON;
//! - [`groups`]: the groups an export may name (the hospital, its wards);
//! - [`subscriptions`]: topic-based Subscriptions (R5 Backport IG, `rest-hook`) and the
//!   notifications' sender;
//! - [`outcome`]: errors as `OperationOutcome`; [`search`]: parameters and Bundles.
//!
//! The OpenAPI document links here rather than describing these endpoints: FHIR's resources
//! and errors are FHIR's, described by the CapabilityStatement (see `contract`).

pub mod bulk;
pub mod capability;
pub mod codes;
pub mod groups;
pub mod issues;
pub mod observation_api;
pub mod observations;
pub mod outcome;
pub mod procedures;
pub mod resources;
pub mod search;
pub mod subscriptions;

use std::future::Future;

use nc_access::{audit, DeviceAction, PatientAction, Subject};
use nc_domain::{AuditAction, DeviceId, Interface, PatientId};
use poem::endpoint::make;
use poem::http::StatusCode;
use poem::{EndpointExt, IntoResponse, Request, Response, Route};
use serde_json::Value;

pub use outcome::FhirError;

use crate::security::client_ip;
use crate::state::ApiState;

pub type FhirResult<T> = Result<T, FhirError>;

/// Routes and methods under `/fhir/r4`, for `Allow` on 405 (see `contract::AllowHeader`).
pub const METHODS: &[(&str, &str)] = &[
    ("/fhir/r4/metadata", "GET"),
    ("/fhir/r4/Patient", "GET"),
    ("/fhir/r4/Patient/{id}", "GET"),
    ("/fhir/r4/Patient/$export", "GET"),
    ("/fhir/r4/Device", "GET"),
    ("/fhir/r4/Device/{id}", "GET"),
    ("/fhir/r4/Practitioner/{id}", "GET"),
    ("/fhir/r4/Observation", "GET"),
    ("/fhir/r4/Observation/{id}", "GET"),
    ("/fhir/r4/Procedure", "GET"),
    ("/fhir/r4/Procedure/{id}", "GET"),
    ("/fhir/r4/DetectedIssue", "GET"),
    ("/fhir/r4/DetectedIssue/{id}", "GET"),
    ("/fhir/r4/Group", "GET"),
    ("/fhir/r4/Group/{id}/$export", "GET"),
    ("/fhir/r4/CodeSystem/{id}", "GET"),
    ("/fhir/r4/Subscription", "GET"),
    ("/fhir/r4/Subscription", "POST"),
    ("/fhir/r4/Subscription/{id}", "GET"),
    ("/fhir/r4/Subscription/{id}", "DELETE"),
    ("/fhir/r4/Subscription/{id}/$status", "GET"),
    ("/fhir/r4/bulk-status/{id}", "GET"),
    ("/fhir/r4/bulk-status/{id}", "DELETE"),
    ("/fhir/r4/bulk-files/{id}/{file}", "GET"),
];

/// Who asks, from where: what every handler starts from.
pub struct Ctx {
    pub state: ApiState,
    pub subject: Subject,
    pub base: String,
    client_addr: Option<String>,
}

impl Ctx {
    /// Authenticates the request's bearer token, as the REST API does.
    pub async fn of(req: &Request) -> FhirResult<Ctx> {
        let state = req.data::<ApiState>().expect("ApiState is attached to every route").clone();
        let token = req
            .headers()
            .get(poem::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .ok_or_else(|| FhirError::Unauthorized("an access token is required (Authorization: Bearer …)".into()))?;
        let user = state.authn.user(token.trim()).await.map_err(|e| match e {
            nc_access::authn::AuthnError::Db(db) => FhirError::Unavailable(db.to_string()),
            other => FhirError::Unauthorized(other.to_string()),
        })?;
        let base = format!("{}/fhir/r4", state.origin.base(req));
        Ok(Ctx { state, subject: Subject::User(user), base, client_addr: client_ip(req).map(|ip| ip.to_string()) })
    }

    /// Records a read of a patient's (or a device's clinical) data.
    pub async fn audit(&self, resource: &str, patient: Option<PatientId>, device: Option<DeviceId>) -> FhirResult<()> {
        audit::record(&self.state.db, self.access(resource, patient, device)).await?;
        Ok(())
    }

    /// Records the read of every (patient, device) of a list.
    pub async fn audit_each(
        &self,
        resource: &str,
        items: impl IntoIterator<Item = (Option<PatientId>, Option<DeviceId>)>,
    ) -> FhirResult<()> {
        audit::record_each(&self.state.db, self.access(resource, None, None), items).await?;
        Ok(())
    }

    fn access<'a>(
        &'a self,
        resource: &'a str,
        patient: Option<PatientId>,
        device: Option<DeviceId>,
    ) -> audit::Access<'a> {
        audit::Access {
            subject: &self.subject,
            action: AuditAction::Read,
            resource,
            patient,
            device,
            interface: Interface::Rest,
            client_addr: self.client_addr.clone(),
        }
    }

    /// The patient record, if the caller may do `action` to it (the policy's decision).
    pub async fn patient(&self, id: PatientId, action: PatientAction) -> FhirResult<nc_entities::patients::Model> {
        self.state.policy.patient(&self.subject, id, action).await.map_err(|e| FhirError::policy(e, "Patient"))
    }

    /// The device, if the caller may do `action` to it (the policy's decision).
    pub async fn device(&self, id: DeviceId, action: DeviceAction) -> FhirResult<nc_entities::devices::Model> {
        self.state.policy.device(&self.subject, id, action).await.map_err(|e| FhirError::policy(e, "Device"))
    }

    /// How much of a device's clinical data the caller may read (the policy's decision).
    pub async fn clinical_view(&self, id: DeviceId) -> FhirResult<nc_access::policy::ClinicalView> {
        self.state.policy.clinical_view(&self.subject, id).await.map_err(|e| FhirError::policy(e, "Device"))
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        self.state.ingest.pool()
    }
}

/// A resource (or Bundle) answered 200.
pub fn ok(body: &Value) -> Response {
    outcome::fhir_response(StatusCode::OK, body)
}

/// An endpoint from a handler: its error becomes an `OperationOutcome`.
fn ep<F, Fut>(f: F) -> impl poem::Endpoint<Output = Response>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = FhirResult<Response>> + Send + 'static,
{
    make(move |req| {
        let fut = f(req);
        async move {
            match fut.await {
                Ok(r) => r,
                Err(e) => e.into_response(),
            }
        }
    })
}

/// Everything under `/fhir/r4`.
pub fn routes() -> impl poem::Endpoint<Output = Response> {
    Route::new()
        .at("/metadata", poem::get(ep(capability::metadata)))
        .at("/CodeSystem/:id", poem::get(ep(capability::code_system)))
        .at("/Patient", poem::get(ep(resources::search_patients)))
        .at("/Patient/$export", poem::get(ep(bulk::kick_off_patients)))
        .at("/Patient/:id", poem::get(ep(resources::read_patient)))
        .at("/Device", poem::get(ep(resources::search_devices)))
        .at("/Device/:id", poem::get(ep(resources::read_device)))
        .at("/Practitioner/:id", poem::get(ep(resources::read_practitioner)))
        .at("/Observation", poem::get(ep(observation_api::search)))
        .at("/Observation/:id", poem::get(ep(observation_api::read)))
        .at("/Procedure", poem::get(ep(procedures::search)))
        .at("/Procedure/:id", poem::get(ep(procedures::read)))
        .at("/DetectedIssue", poem::get(ep(issues::search)))
        .at("/DetectedIssue/:id", poem::get(ep(issues::read)))
        .at("/Group", poem::get(ep(groups::search)))
        .at("/Group/:id/$export", poem::get(ep(bulk::kick_off_group)))
        .at("/Subscription", poem::get(ep(subscriptions::search)).post(ep(subscriptions::create)))
        .at("/Subscription/:id", poem::get(ep(subscriptions::read)).delete(ep(subscriptions::delete)))
        .at("/Subscription/:id/$status", poem::get(ep(subscriptions::status)))
        .at("/bulk-status/:id", poem::get(ep(bulk::status)).delete(ep(bulk::cancel)))
        .at("/bulk-files/:id/:file", poem::get(ep(bulk::file)))
        .catch_all_error(outcome::catch_all)
}
