//! `/api/users/*`: one's own profile, hospital-scoped lists, staff management by the
//! hospital's admin, enrollment codes, and device assignments.

use chrono::Utc;
use nc_access::{HospitalAction, Subject};
use nc_care::accounts::{self, codes};
use nc_care::devices::assignments;
use nc_care::fields::{check_name, check_password, check_phone, normalize_email};
use nc_domain::*;
use nc_entities::users;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::accounts::auth::send_code;
use crate::dto::{page, AssignmentOut, UserOut, UserPage};
use crate::error::{ApiError, ApiResult, NoContent};
use crate::security::BearerAuth;
use crate::state::ApiState;
use crate::Tag;

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileUpdate {
    #[oai(validator(max_length = 200, custom = "crate::validate::NoNul"))]
    pub name: Option<String>,
    #[oai(validator(max_length = 20, custom = "crate::validate::NoNul"))]
    pub phone: Option<String>,
}

/// A person's ward: an administrative assignment (escalation tier 2 of a ward's machines is
/// its doctors), set by the hospital's admins only.
#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct WardUpdate {
    /// The ward; `null` (or absent) takes the person out of any ward.
    #[oai(validator(max_length = 200, custom = "crate::validate::NoNul"))]
    pub ward: Option<String>,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUserRequest {
    #[oai(validator(max_length = 254, custom = "crate::validate::NoNul", custom = "crate::validate::Email"))]
    pub email: String,
    #[oai(validator(max_length = 200, custom = "crate::validate::NoNul"))]
    pub name: String,
    /// `doctor`, `technician`, `admin` or `patient`.
    pub role: Role,
    #[oai(validator(max_length = 20, custom = "crate::validate::NoNul"))]
    pub phone: Option<String>,
    #[oai(validator(max_length = 200, custom = "crate::validate::NoNul"))]
    pub ward: Option<String>,
    /// Optional initial password. Without it, a code to set one is sent to the e-mail.
    #[oai(validator(min_length = 10, max_length = 1024, custom = "crate::validate::NoNul"))]
    pub initial_password: Option<String>,
}

#[derive(ApiResponse)]
pub enum UserCreated {
    /// Created, active and verified (vouched for by the admin).
    #[oai(status = 201)]
    Created(Json<UserOut>),
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnrollmentRequest {
    /// `doctor` or `technician`.
    pub role: AssignmentRole,
    /// Hours the code stays valid (1 to 336; default 72).
    #[oai(validator(minimum(value = "1"), maximum(value = "336")))]
    pub valid_hours: Option<i64>,
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct EnrollmentOut {
    /// Shown once: give it to the person enrolling (single use).
    pub code: String,
    pub role: AssignmentRole,
    pub expires_at: chrono::DateTime<Utc>,
}

#[derive(ApiResponse)]
pub enum EnrollmentCreated {
    #[oai(status = 201)]
    Created(Json<EnrollmentOut>),
}

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct AssignDeviceRequest {
    /// A doctor or technician of the hospital.
    pub user_id: UserId,
    pub device_id: DeviceId,
}

#[derive(ApiResponse)]
pub enum AssignmentCreated {
    #[oai(status = 201)]
    Created(Json<AssignmentOut>),
}

/// An account `subject` can see (of its hospital: 404 otherwise).
pub(crate) async fn visible_user(
    state: &ApiState,
    subject: &nc_access::Subject,
    id: UserId,
) -> std::result::Result<users::Model, ApiError> {
    let user = accounts::get(&state.db, id).await?;
    nc_access::policy::decide_visible(subject, user.hospital_id).map_err(|e| ApiError::policy(e.into(), "user"))?;
    Ok(user)
}

/// An account of the caller's hospital, if the caller manages its staff (admins; 404 for
/// an account of another hospital).
async fn managed_user(state: &ApiState, auth: &BearerAuth, id: UserId) -> std::result::Result<users::Model, ApiError> {
    let subject = auth.subject();
    state.policy.hospital(&subject, auth.0.hospital, HospitalAction::ManageStaff)?;
    visible_user(state, &subject, id).await
}

/// Creates an assignment of `user` to `device` after the caller's `Manage` right was checked.
pub(crate) async fn assign(
    state: &ApiState,
    caller: &BearerAuth,
    user_id: UserId,
    device_id: DeviceId,
    only: Option<Role>,
) -> std::result::Result<AssignmentOut, ApiError> {
    let subject = caller.subject();
    let device = state.allowed_device(&subject, device_id, nc_access::DeviceAction::Manage).await?;
    let user = visible_user(state, &subject, user_id).await?;
    Ok(assignments::assign(&state.db, &device, &user, caller.0.id, only).await?.into())
}

pub struct UsersApi;

#[OpenApi(tag = "Tag::Users")]
impl UsersApi {
    /// Your own account.
    #[oai(path = "/api/users/profile", method = "get", operation_id = "getProfile")]
    async fn profile(&self, state: poem::web::Data<&ApiState>, auth: BearerAuth) -> ApiResult<Json<UserOut>> {
        let mut out: UserOut = accounts::get(&state.db, auth.0.id).await?.into();
        // A patient's own record (staff accounts have none).
        out.patient_id = state.policy.patient_of_user(auth.0.id).await?;
        Ok(Json(out))
    }

    /// Change your name or phone. E-mail, role, hospital and ward are administrative
    /// (`setUserWard` for the ward) and cannot be changed here.
    #[oai(path = "/api/users/profile", method = "put", operation_id = "updateProfile")]
    async fn update_profile(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        body: Json<ProfileUpdate>,
    ) -> ApiResult<Json<UserOut>> {
        let b = body.0;
        let phone = b.phone.map(Some);
        Ok(Json(accounts::update_profile(&state.db, auth.0.id, b.name.as_deref(), phone).await?.into()))
    }

    /// Put a person of your hospital in a ward, or take them out of it (admins; audited with
    /// the old and the new ward). Tier 2 of a ward's alarms is its doctors, so this is an
    /// access change: it takes effect at once on every interface (kept decisions end, live
    /// subscriptions are decided again).
    #[oai(path = "/api/users/:userId/ward", method = "put", operation_id = "setUserWard")]
    async fn set_ward(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "userId")] user_id: Path<UserId>,
        body: Json<WardUpdate>,
    ) -> ApiResult<Json<UserOut>> {
        let subject = auth.subject();
        state.policy.hospital(&subject, auth.0.hospital, HospitalAction::ManageStaff)?;
        let ward = body.0.ward.as_deref().map(|w| check_name("ward", w)).transpose()?;
        let user = visible_user(&state, &subject, user_id.0).await?;
        Ok(Json(accounts::set_ward(&state.db, &subject, user, ward).await?.into()))
    }

    /// Accounts of one role in your hospital, by name. Staff see staff lists; admins also
    /// see patient accounts, doctors only those of the patients they may read; patients
    /// see none.
    #[oai(path = "/api/users/:role", method = "get", operation_id = "listUsersByRole")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        role: Path<Role>,
        /// Page size, 1 to 200 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
        /// Items to skip (at most 1000000000).
        #[oai(validator(maximum(value = "1000000000")))]
        offset: Query<Option<u64>>,
        /// Only names or e-mails containing this text (case-insensitive).
        #[oai(validator(max_length = 200, custom = "crate::validate::NoNul"))]
        q: Query<Option<String>>,
        /// Only active (true) or inactive (false) accounts.
        active: Query<Option<bool>>,
    ) -> ApiResult<Json<UserPage>> {
        let hospital = auth.0.hospital;
        let listable =
            state.policy.listable_accounts(&auth.subject(), role.0).await.map_err(|e| ApiError::policy(e, "user"))?;
        let (limit, offset) = page(limit.0, offset.0)?;
        let filter = accounts::ListFilter { only: listable, text: q.0, active: active.0 };
        let (items, total) = accounts::list(&state.db, hospital, role.0, filter, limit, offset).await?;
        Ok(Json(UserPage { items: items.into_iter().map(Into::into).collect(), total, limit, offset }))
    }

    /// Create an account in your hospital (admins). Staff roles are only ever given here
    /// or through enrollment codes.
    #[oai(path = "/api/users", method = "post", operation_id = "createUser")]
    async fn create(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        body: Json<CreateUserRequest>,
    ) -> ApiResult<UserCreated> {
        let hospital = auth.0.hospital;
        state.policy.hospital(&auth.subject(), hospital, HospitalAction::ManageStaff)?;
        let b = body.0;
        let email = normalize_email(&b.email)?;
        let name = check_name("name", &b.name)?;
        let phone = check_phone(b.phone)?;
        if let Some(p) = &b.initial_password {
            check_password(p, &email, "initialPassword")?;
        }
        let reset = b.initial_password.is_none();
        let account = accounts::NewAccount { email, name, role: b.role, phone, ward: b.ward };
        let user = accounts::create(&state.db, hospital, account, b.initial_password).await?;
        if reset {
            send_code(&state, &user, CodePurpose::ResetPassword).await?;
        }
        Ok(UserCreated::Created(Json(user.into())))
    }

    /// Deactivate an account of your hospital (admins): it can no longer log in, and its
    /// sessions end at once.
    #[oai(path = "/api/users/:userId/deactivate", method = "post", operation_id = "deactivateUser")]
    async fn deactivate(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "userId")] user_id: Path<UserId>,
    ) -> ApiResult<Json<UserOut>> {
        let user = managed_user(&state, &auth, user_id.0).await?;
        Ok(Json(accounts::deactivate(&state.db, auth.0.id, user).await?.into()))
    }

    /// Reactivate a deactivated account of your hospital (admins).
    #[oai(path = "/api/users/:userId/activate", method = "post", operation_id = "activateUser")]
    async fn activate(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "userId")] user_id: Path<UserId>,
    ) -> ApiResult<Json<UserOut>> {
        Ok(Json(accounts::activate(&state.db, managed_user(&state, &auth, user_id.0).await?).await?.into()))
    }

    /// Issue a single-use enrollment code with which a doctor or technician registers
    /// (admins). The code is shown once.
    #[oai(path = "/api/users/enrollment-codes", method = "post", operation_id = "createEnrollmentCode")]
    async fn enrollment(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        body: Json<EnrollmentRequest>,
    ) -> ApiResult<EnrollmentCreated> {
        state.policy.hospital(&auth.subject(), auth.0.hospital, HospitalAction::ManageStaff)?;
        let issued =
            codes::issue_enrollment(&state.db, auth.0.hospital, body.role, body.valid_hours, auth.0.id).await?;
        Ok(EnrollmentCreated::Created(Json(EnrollmentOut {
            code: issued.code,
            role: issued.role,
            expires_at: issued.expires_at,
        })))
    }

    /// Assign a doctor or technician of your hospital to a device (admins).
    #[oai(path = "/api/users/assign-device", method = "post", operation_id = "assignDevice")]
    async fn assign_device(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        body: Json<AssignDeviceRequest>,
    ) -> ApiResult<AssignmentCreated> {
        Ok(AssignmentCreated::Created(Json(assign(&state, &auth, body.user_id, body.device_id, None).await?)))
    }

    /// End a doctor's or technician's assignment to a device (admins). Their access to the
    /// device ends at once.
    #[oai(path = "/api/users/assign-device", method = "delete", operation_id = "unassignDevice")]
    async fn unassign_device(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        body: Json<AssignDeviceRequest>,
    ) -> ApiResult<NoContent> {
        let subject: Subject = auth.subject();
        state.allowed_device(&subject, body.device_id, nc_access::DeviceAction::Manage).await?;
        assignments::unassign(&state.db, body.device_id, body.user_id, auth.0.id).await?;
        Ok(NoContent::Done)
    }
}
