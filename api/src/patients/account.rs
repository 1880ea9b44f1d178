//! `/api/patients/{patientId}/account`: linking a patient record to the patient's own
//! account (one they registered themselves), so that they see their data on every
//! interface, and unlinking it. The account the record had before loses access at once:
//! REST from the next request, MQTT and the live streams within a second (the link change
//! is an access event, migration `maintenance_and_reading_identity`).

use nc_access::policy::patient_view;
use nc_access::PatientAction;
use nc_care::patients::{check_account_link, record, Changes};
use nc_domain::*;
use nc_entities::patients;
use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use crate::dto::PatientOut;
use crate::error::NoContent;
use crate::error::{ApiError, ApiResult};
use crate::patients::changes::audit_patient;
use crate::security::BearerAuth;
use crate::state::ApiState;
use crate::Tag;

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinkAccountRequest {
    /// The patient's own account: role `patient`, your hospital, active (verified) and not
    /// linked to another record.
    pub user_id: UserId,
}

pub struct PatientAccountApi;

impl PatientAccountApi {
    /// The record, if the caller may link or unlink its account.
    async fn linkable(state: &ApiState, auth: &BearerAuth, patient: PatientId) -> ApiResult<patients::Model> {
        Ok(state.allowed_patient(&auth.subject(), patient, PatientAction::LinkAccount).await?)
    }

    async fn relink(
        state: &ApiState,
        req: &Request,
        auth: &BearerAuth,
        before: patients::Model,
        account: Option<UserId>,
    ) -> ApiResult<patients::Model> {
        let after =
            record(&state.db, auth.0.id, &before, Changes { user_id: Some(account), ..Default::default() }).await?;
        if after != before {
            audit_patient(state, req, auth, &after, AuditAction::Update, "patient.account").await?;
        }
        Ok(after)
    }
}

#[OpenApi(tag = "Tag::Patients")]
impl PatientAccountApi {
    /// Link a patient record to the patient's own account (admins; the patient's doctors).
    ///
    /// E.g. after the patient registered themselves: the account then reads the record and
    /// the patient's own treatment on every interface. A record already linked to another
    /// account is re-linked, and that account loses access. 404: no such patient, or the
    /// account is not one of your hospital's; 422: not a patient account; 409
    /// `account_inactive` (not verified yet, or deactivated) or `user_already_linked`
    /// (linked to another record). Linking the account the record already has changes
    /// nothing. The change is kept in the medical-updates trail (`userId`) and audited.
    #[oai(path = "/api/patients/:patientId/account", method = "put", operation_id = "linkPatientAccount")]
    async fn link(
        &self,
        state: poem::web::Data<&ApiState>,
        req: &Request,
        auth: BearerAuth,
        #[oai(name = "patientId")] patient_id: Path<PatientId>,
        body: Json<LinkAccountRequest>,
    ) -> ApiResult<Json<PatientOut>> {
        let before = Self::linkable(&state, &auth, patient_id.0).await?;
        let account = nc_care::accounts::find(&state.db, body.user_id).await?.ok_or(ApiError::NotFound("account"))?;
        nc_access::policy::decide_visible(&auth.subject(), account.hospital_id)
            .map_err(|e| ApiError::policy(e.into(), "account"))?;
        check_account_link(&state.db, &before, &account).await?;
        let after = Self::relink(&state, req, &auth, before, Some(account.id)).await?;
        Ok(Json(PatientOut::viewed(after, patient_view(&auth.subject()))))
    }

    /// Unlink the patient's account from the record (admins; the patient's doctors).
    ///
    /// The account loses access to the record at once. Kept in the medical-updates trail and
    /// audited; a record without an account is left as it is.
    #[oai(path = "/api/patients/:patientId/account", method = "delete", operation_id = "unlinkPatientAccount")]
    async fn unlink(
        &self,
        state: poem::web::Data<&ApiState>,
        req: &Request,
        auth: BearerAuth,
        #[oai(name = "patientId")] patient_id: Path<PatientId>,
    ) -> ApiResult<NoContent> {
        let before = Self::linkable(&state, &auth, patient_id.0).await?;
        Self::relink(&state, req, &auth, before, None).await?;
        Ok(NoContent::Done)
    }
}
