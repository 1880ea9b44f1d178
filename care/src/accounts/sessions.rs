//! Login sessions. A session is a family of refresh tokens: opaque, stored as SHA-256
//! hashes and rotated on every refresh. Presenting a refresh token that was already
//! rotated revokes its whole family (RFC 9700): a stolen token is useless once either
//! party uses it again. Logout revokes the family. (The short-lived access tokens that name
//! the family are `nc_access::token`'s.)

use chrono::{DateTime, Duration, Utc};
use nc_access::authn::is_live;
use nc_access::{password, secret};
use nc_domain::*;
use nc_entities::{refresh_tokens, users};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, Set, TransactionTrait,
};

use crate::accounts::find_by_email;
use crate::{CareError, CareResult};

/// Where a session was opened from (kept with its refresh tokens).
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub addr: Option<String>,
    pub user_agent: Option<String>,
}

/// A new refresh token: shown once, stored only as its hash.
#[derive(Debug)]
pub struct Refresh {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// The account of `email` if `password` is its password and it may log in: a wrong e-mail
/// or password is the same answer (and costs the same hash), a deactivated or unverified
/// account is refused.
pub async fn login(db: &impl ConnectionTrait, email: &str, given: String) -> CareResult<users::Model> {
    let user = find_by_email(db, email).await?;
    let stored = user.as_ref().map_or_else(|| password::dummy_hash().to_owned(), |u| u.password_hash.clone());
    let ok = password::verify(given, stored).await?;
    let Some(user) = user.filter(|_| ok) else {
        return Err(CareError::Unauthenticated("wrong e-mail or password".into()));
    };
    if user.deactivated_at.is_some() {
        return Err(CareError::AccountRefused("this account has been deactivated".into()));
    }
    if user.verified_at.is_none() || !user.is_active {
        return Err(CareError::AccountRefused(
            "this account is not verified yet: confirm the code sent to your e-mail".into(),
        ));
    }
    Ok(user)
}

/// Issues a new refresh token in `family`, valid `ttl`.
pub async fn issue(
    db: &impl ConnectionTrait,
    user: UserId,
    family: TokenFamilyId,
    ttl: Duration,
    client: &Client,
) -> CareResult<Refresh> {
    let token = secret::random_token();
    let now = Utc::now();
    let expires_at = now + ttl;
    refresh_tokens::ActiveModel {
        id: Set(RefreshTokenId::new()),
        user_id: Set(user),
        family_id: Set(family),
        token_hash: Set(secret::digest(&token)),
        issued_at: Set(now),
        expires_at: Set(expires_at),
        rotated_at: Set(None),
        revoked_at: Set(None),
        replaced_by: Set(None),
        client_addr: Set(client.addr.clone()),
        user_agent: Set(client.user_agent.as_deref().map(|s| s.chars().take(200).collect())),
    }
    .insert(db)
    .await?;
    Ok(Refresh { token, expires_at })
}

/// Exchanges a refresh token for the next one of its session: the account, the session and
/// the new token. Each token works once; presenting one that was already used ends the
/// session.
pub async fn refresh(
    db: &DatabaseConnection,
    token: &str,
    ttl: Duration,
    client: &Client,
) -> CareResult<(users::Model, TokenFamilyId, Refresh)> {
    let hash = secret::digest(token.trim());
    let invalid = || CareError::Unauthenticated("invalid or expired refresh token; log in again".into());
    let txn = db.begin().await?;
    let row = refresh_tokens::Entity::find()
        .filter(refresh_tokens::Column::TokenHash.eq(hash))
        .one(&txn)
        .await?
        .ok_or_else(invalid)?;
    let now = Utc::now();
    if row.revoked_at.is_some() || row.expires_at <= now {
        return Err(invalid());
    }
    if row.rotated_at.is_some() {
        // Reuse of a rotated token: someone else has (or had) it. End the session.
        revoke_family(&txn, row.family_id).await?;
        txn.commit().await?;
        tracing::warn!(user = %row.user_id, family = %row.family_id, "refresh token reuse: session revoked");
        return Err(CareError::Unauthenticated(
            "this refresh token was already used; the session has been ended for safety".into(),
        ));
    }
    let user = users::Entity::find_by_id(row.user_id).one(&txn).await?.ok_or_else(invalid)?;
    if !is_live(&user) {
        return Err(CareError::AccountRefused("this account is deactivated or not verified".into()));
    }
    // Rotate: only one concurrent refresh of the same token can win.
    let rotated = refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::RotatedAt, Expr::value(now))
        .filter(refresh_tokens::Column::Id.eq(row.id))
        .filter(refresh_tokens::Column::RotatedAt.is_null())
        .exec(&txn)
        .await?;
    if rotated.rows_affected != 1 {
        return Err(invalid());
    }
    let next = issue(&txn, user.id, row.family_id, ttl, client).await?;
    txn.commit().await?;
    Ok((user, row.family_id, next))
}

/// Ends the session `token` belongs to (nothing if it is unknown).
pub async fn logout(db: &impl ConnectionTrait, token: &str) -> CareResult<()> {
    let hash = secret::digest(token.trim());
    if let Some(row) = refresh_tokens::Entity::find().filter(refresh_tokens::Column::TokenHash.eq(hash)).one(db).await?
    {
        revoke_family(db, row.family_id).await?;
    }
    Ok(())
}

/// Revokes every login session of a user (password reset, deactivation).
pub async fn revoke_all(db: &impl ConnectionTrait, user: UserId) -> CareResult<()> {
    refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(refresh_tokens::Column::UserId.eq(user))
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

async fn revoke_family(db: &impl ConnectionTrait, family: TokenFamilyId) -> CareResult<()> {
    refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(refresh_tokens::Column::FamilyId.eq(family))
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}
