//! `/api/users/*`: one's own profile, hospital-scoped lists, staff management by the
//! hospital's admin, enrollment codes, and device assignments.

use chrono::{Duration, Utc};
use nc_access::{secret, HospitalAction, Subject};
use nc_domain::*;
use nc_entities::{device_assignments, enrollment_codes, users};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sea_orm::sea_query::extension::postgres::PgExpr;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set, TransactionTrait};

use crate::accounts::auth::{check_name, check_password, check_phone, normalize_email, revoke_all_sessions, send_code};
use crate::dto::{fetch_page, page, AssignmentOut, UserOut, UserPage};
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
    let user = users::Entity::find_by_id(id).one(&state.db).await?.ok_or(ApiError::NotFound("user"))?;
    nc_access::policy::decide_visible(subject, user.hospital_id).map_err(|e| ApiError::policy(e.into(), "user"))?;
    Ok(user)
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
    let device = state
        .policy
        .device(&subject, device_id, nc_access::DeviceAction::Manage)
        .await
        .map_err(|e| ApiError::policy(e, "device"))?;
    let user = visible_user(state, &subject, user_id).await?;
    // Not an access rule: whom a device can be assigned to (a doctor or technician: 422).
    let role = match user.role {
        Role::Doctor if only.is_none_or(|r| r == Role::Doctor) => AssignmentRole::Doctor,
        Role::Technician if only.is_none_or(|r| r == Role::Technician) => AssignmentRole::Technician,
        _ => {
            let wanted = only.map_or("a doctor or technician".to_owned(), |r| format!("a {r}"));
            return Err(ApiError::field("userId", format!("must be {wanted}, not a {}", user.role)));
        }
    };
    if !nc_access::authn::is_live(&user) {
        return Err(ApiError::field("userId", "the account is not active"));
    }
    let row = device_assignments::ActiveModel {
        id: Set(AssignmentId::new()),
        hospital_id: Set(device.hospital_id),
        device_id: Set(device.id),
        user_id: Set(user.id),
        role: Set(role),
        assigned_by: Set(Some(caller.0.id)),
        assigned_at: Set(Utc::now()),
        ended_at: Set(None),
        ended_by: Set(None),
    }
    .insert(&state.db)
    .await?;
    Ok(row.into())
}

pub struct UsersApi;

#[OpenApi(tag = "Tag::Users")]
impl UsersApi {
    /// Your own account.
    #[oai(path = "/api/users/profile", method = "get", operation_id = "getProfile")]
    async fn profile(&self, state: poem::web::Data<&ApiState>, auth: BearerAuth) -> ApiResult<Json<UserOut>> {
        let user = users::Entity::find_by_id(auth.0.id).one(&state.db).await?.ok_or(ApiError::NotFound("user"))?;
        let mut out: UserOut = user.into();
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
        let user = users::Entity::find_by_id(auth.0.id).one(&state.db).await?.ok_or(ApiError::NotFound("user"))?;
        let mut active: users::ActiveModel = user.into();
        if let Some(name) = &body.name {
            active.name = Set(check_name("name", name)?);
        }
        if body.phone.is_some() {
            active.phone = Set(check_phone(body.phone.clone())?);
        }
        active.updated_at = Set(Utc::now());
        Ok(Json(active.update(&state.db).await?.into()))
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
        let before = user.ward.clone();
        let mut active: users::ActiveModel = user.into();
        active.ward = Set(ward.clone());
        active.updated_at = Set(Utc::now());
        // The change and its audit row commit together.
        let tx = state.db.begin().await?;
        let user = active.update(&tx).await?;
        nc_access::audit::record_with(
            &tx,
            nc_access::audit::Access {
                subject: &subject,
                action: AuditAction::Update,
                resource: "user_ward",
                patient: None,
                device: None,
                interface: Interface::Rest,
                client_addr: None,
            },
            Some(serde_json::json!({"userId": user.id, "before": before, "after": ward})),
        )
        .await?;
        tx.commit().await?;
        Ok(Json(user.into()))
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
        let mut query =
            users::Entity::find().filter(users::Column::HospitalId.eq(hospital)).filter(users::Column::Role.eq(role.0));
        if let Some(ids) = listable {
            query = query.filter(users::Column::Id.is_in(ids));
        }
        if let Some(pattern) = q.0.as_deref().and_then(crate::validate::like_pattern) {
            query = query.filter(
                sea_orm::Condition::any()
                    .add(Expr::col(users::Column::Name).ilike(pattern.clone()))
                    .add(Expr::col(users::Column::Email).ilike(pattern)),
            );
        }
        if let Some(a) = active.0 {
            query = if a {
                query.filter(users::Column::IsActive.eq(true)).filter(users::Column::DeactivatedAt.is_null())
            } else {
                query.filter(
                    sea_orm::Condition::any()
                        .add(users::Column::IsActive.eq(false))
                        .add(users::Column::DeactivatedAt.is_not_null()),
                )
            };
        }
        let ordered = query.order_by_asc(users::Column::Name).order_by_asc(users::Column::Id);
        let (items, total) = fetch_page(&state.db, ordered, limit, offset).await?;
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
        let password = match &b.initial_password {
            Some(p) => {
                check_password(p, &email, "initialPassword")?;
                p.clone()
            }
            None => secret::random_token(),
        };
        let hash = nc_access::password::hash(password).await?;
        let now = Utc::now();
        let user = users::ActiveModel {
            id: Set(UserId::new()),
            hospital_id: Set(hospital),
            email: Set(email),
            phone: Set(phone),
            password_hash: Set(hash),
            role: Set(b.role),
            name: Set(name),
            ward: Set(b.ward),
            is_active: Set(true),
            verified_at: Set(Some(now)),
            deactivated_at: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&state.db)
        .await?;
        if b.initial_password.is_none() {
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
        let subject = auth.subject();
        state.policy.hospital(&subject, auth.0.hospital, HospitalAction::ManageStaff)?;
        if user_id.0 == auth.0.id {
            return Err(ApiError::field("userId", "you cannot deactivate yourself").into());
        }
        let user = visible_user(&state, &subject, user_id.0).await?;
        let now = Utc::now();
        let mut active: users::ActiveModel = user.into();
        active.is_active = Set(false);
        active.deactivated_at = Set(Some(now));
        active.updated_at = Set(now);
        let user = active.update(&state.db).await?;
        revoke_all_sessions(&state.db, user.id).await?;
        Ok(Json(user.into()))
    }

    /// Reactivate a deactivated account of your hospital (admins).
    #[oai(path = "/api/users/:userId/activate", method = "post", operation_id = "activateUser")]
    async fn activate(
        &self,
        state: poem::web::Data<&ApiState>,
        auth: BearerAuth,
        #[oai(name = "userId")] user_id: Path<UserId>,
    ) -> ApiResult<Json<UserOut>> {
        let subject = auth.subject();
        state.policy.hospital(&subject, auth.0.hospital, HospitalAction::ManageStaff)?;
        let user = visible_user(&state, &subject, user_id.0).await?;
        let mut active: users::ActiveModel = user.into();
        active.is_active = Set(true);
        active.deactivated_at = Set(None);
        active.updated_at = Set(Utc::now());
        Ok(Json(active.update(&state.db).await?.into()))
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
        let hours = body.valid_hours.unwrap_or(72);
        if !(1..=336).contains(&hours) {
            return Err(ApiError::field("validHours", "must be between 1 and 336").into());
        }
        let code = secret::random_token();
        let now = Utc::now();
        let row = enrollment_codes::ActiveModel {
            id: Set(CodeId::new()),
            hospital_id: Set(auth.0.hospital),
            role: Set(body.role),
            code_hash: Set(secret::digest(&code)),
            created_by: Set(auth.0.id),
            created_at: Set(now),
            expires_at: Set(now + Duration::hours(hours)),
            used_at: Set(None),
            used_by: Set(None),
        }
        .insert(&state.db)
        .await?;
        Ok(EnrollmentCreated::Created(Json(EnrollmentOut { code, role: row.role, expires_at: row.expires_at })))
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
        state
            .policy
            .device(&subject, body.device_id, nc_access::DeviceAction::Manage)
            .await
            .map_err(|e| ApiError::policy(e, "device"))?;
        let ended = device_assignments::Entity::update_many()
            .col_expr(device_assignments::Column::EndedAt, Expr::value(Utc::now()))
            .col_expr(device_assignments::Column::EndedBy, Expr::value(auth.0.id))
            .filter(device_assignments::Column::DeviceId.eq(body.device_id))
            .filter(device_assignments::Column::UserId.eq(body.user_id))
            .filter(device_assignments::Column::EndedAt.is_null())
            .exec(&state.db)
            .await?;
        if ended.rows_affected == 0 {
            return Err(ApiError::NotFound("assignment").into());
        }
        Ok(NoContent::Done)
    }
}
