//! Authentication of people (access tokens) and machines (device id + secret), shared by the
//! REST API, the broker and the live streams.
//!
//! A valid signature is not enough: the account must still be active and its login session
//! (refresh-token family) must exist, belong to the account and not be revoked, so
//! deactivation and logout take effect at once, on every interface, without waiting for the
//! token to expire, and a token made with a leaked signing key names no session.

use nc_domain::{DeviceId, DeviceStatus, TokenFamilyId, UserId};
use nc_entities::{devices, refresh_tokens, users};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect};

use crate::policy::{Subject, UserSubject};
use crate::token::{TokenError, TokenKeys};

#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is invalid")]
    InvalidToken,
    #[error("the account is deactivated or not verified")]
    Inactive,
    #[error("this login session has ended; log in again")]
    SessionRevoked,
    #[error("unknown device or wrong secret")]
    BadDeviceCredentials,
    #[error("the device is retired (inactive)")]
    DeviceRetired,
    #[error("database error: {0}")]
    Db(#[from] DbErr),
}

#[derive(Clone)]
pub struct Authenticator {
    db: DatabaseConnection,
    tokens: TokenKeys,
}

impl Authenticator {
    pub fn new(db: DatabaseConnection, tokens: TokenKeys) -> Self {
        Self { db, tokens }
    }

    pub fn tokens(&self) -> &TokenKeys {
        &self.tokens
    }

    /// The person an access token stands for, if the token is valid and the account and
    /// session are still live.
    pub async fn user(&self, token: &str) -> Result<UserSubject, AuthnError> {
        self.user_until(token).await.map(|(user, _)| user)
    }

    /// As [`Authenticator::user`], with when the token expires (a live connection on it
    /// ends then).
    pub async fn user_until(&self, token: &str) -> Result<(UserSubject, chrono::DateTime<chrono::Utc>), AuthnError> {
        let claims = self.tokens.verify(token).map_err(|e| match e {
            TokenError::Expired => AuthnError::Expired,
            TokenError::Invalid => AuthnError::InvalidToken,
        })?;
        let user = users::Entity::find_by_id(claims.sub).one(&self.db).await?.ok_or(AuthnError::InvalidToken)?;
        if !is_live(&user) {
            return Err(AuthnError::Inactive);
        }
        if user.role != claims.role || user.hospital_id != claims.hid {
            // Role or hospital changed since the token was issued.
            return Err(AuthnError::SessionRevoked);
        }
        if !self.session_live(claims.sid, user.id).await? {
            return Err(AuthnError::SessionRevoked);
        }
        let expires = chrono::DateTime::from_timestamp(claims.exp, 0).unwrap_or_else(chrono::Utc::now);
        Ok((
            UserSubject { id: user.id, role: user.role, hospital: user.hospital_id, family: Some(claims.sid) },
            expires,
        ))
    }

    /// Whether `user`'s login session `family` exists and has not been revoked (logout,
    /// token reuse, password reset, deactivation). A correctly signed token naming a session
    /// that does not exist (deleted, another person's, or made up with a leaked signing
    /// key) is not accepted: the session is the server's record of a login.
    pub async fn session_live(&self, family: TokenFamilyId, user: UserId) -> Result<bool, DbErr> {
        let (tokens, revoked): (i64, i64) = refresh_tokens::Entity::find()
            .select_only()
            .column_as(Expr::col(refresh_tokens::Column::Id).count(), "tokens")
            .column_as(Expr::col(refresh_tokens::Column::RevokedAt).count(), "revoked")
            .filter(refresh_tokens::Column::FamilyId.eq(family))
            .filter(refresh_tokens::Column::UserId.eq(user))
            .into_tuple()
            .one(&self.db)
            .await?
            .unwrap_or((0, 0));
        Ok(tokens > 0 && revoked == 0)
    }

    /// Whether a person authenticated earlier still may be: account live, same role and
    /// hospital, login session not revoked. For long-lived connections (MQTT, WebSocket).
    pub async fn recheck_user(&self, subject: &UserSubject) -> Result<(), AuthnError> {
        let user = users::Entity::find_by_id(subject.id).one(&self.db).await?.ok_or(AuthnError::Inactive)?;
        if !is_live(&user) {
            return Err(AuthnError::Inactive);
        }
        if user.role != subject.role || user.hospital_id != subject.hospital {
            return Err(AuthnError::SessionRevoked);
        }
        if let Some(family) = subject.family {
            if !self.session_live(family, subject.id).await? {
                return Err(AuthnError::SessionRevoked);
            }
        }
        Ok(())
    }

    /// Whether a device authenticated at `since` still may be: not retired, and its secret
    /// not rotated since.
    pub async fn recheck_device(&self, id: DeviceId, since: chrono::DateTime<chrono::Utc>) -> Result<(), AuthnError> {
        let device = devices::Entity::find_by_id(id).one(&self.db).await?.ok_or(AuthnError::BadDeviceCredentials)?;
        if device.status == DeviceStatus::Inactive {
            return Err(AuthnError::DeviceRetired);
        }
        if device.secret_rotated_at > since {
            return Err(AuthnError::BadDeviceCredentials);
        }
        Ok(())
    }

    /// A machine, by its id and secret. Retired (inactive) devices are refused;
    /// devices in maintenance may still connect.
    pub async fn device(&self, id: DeviceId, secret: &str) -> Result<Subject, AuthnError> {
        let device = devices::Entity::find_by_id(id).one(&self.db).await?;
        // Current secrets are SHA-256 (cheap: fleets reconnect, machines post over HTTP);
        // argon2 hashes, still accepted, are checked on the blocking pool.
        let ok = match &device {
            Some(d) if d.secret_hash.starts_with("sha256:") => {
                crate::secret::verify_device_secret(secret, &d.secret_hash)
            }
            Some(d) => crate::password::verify(secret.to_owned(), d.secret_hash.clone()).await.unwrap_or(false),
            None => false,
        };
        match device {
            Some(d) if ok && d.status == DeviceStatus::Inactive => Err(AuthnError::DeviceRetired),
            Some(d) if ok => Ok(Subject::Device { id: d.id, hospital: d.hospital_id }),
            _ => Err(AuthnError::BadDeviceCredentials),
        }
    }
}

/// Active, verified and not deactivated.
pub fn is_live(user: &users::Model) -> bool {
    user.is_active && user.verified_at.is_some() && user.deactivated_at.is_none()
}
