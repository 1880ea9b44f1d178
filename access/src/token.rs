//! Access tokens: short-lived JWTs (HS256, algorithm pinned) carrying the user id, role,
//! hospital, the refresh-token family they were issued with (`sid`, so logout and
//! deactivation end them at once) and a token id.

use chrono::Utc;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use nc_domain::{HospitalId, Role, TokenFamilyId, UserId};
use serde::{Deserialize, Serialize};

const ISSUER: &str = "nephrocare";
const AUDIENCE: &str = "nephrocare";

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: UserId,
    pub role: Role,
    /// Hospital.
    pub hid: HospitalId,
    /// The refresh-token family (login session) this token belongs to.
    pub sid: TokenFamilyId,
    /// Token id.
    pub jti: uuid::Uuid,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is invalid")]
    Invalid,
}

/// Issues and verifies access tokens with one HMAC key.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: i64,
}

impl TokenKeys {
    pub fn new(secret: &[u8], ttl_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Pinned: a token signed with any other algorithm (or `none`) is refused.
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = 5;
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl_secs: ttl_secs as i64,
        }
    }

    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// A signed token for this user and login session.
    pub fn issue(&self, user: UserId, role: Role, hospital: HospitalId, family: TokenFamilyId) -> String {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user,
            role,
            hid: hospital,
            sid: family,
            jti: uuid::Uuid::new_v4(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            exp: now + self.ttl_secs,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).expect("HS256 signing cannot fail")
    }

    /// The claims of a valid token: signature, algorithm, issuer, audience and expiry checked.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        decode::<Claims>(token, &self.decoding, &self.validation).map(|d| d.claims).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid,
        })
    }

    /// A token with arbitrary claims and algorithm, signed with this key: for tests only.
    #[doc(hidden)]
    pub fn sign_raw(&self, header: &Header, claims: &serde_json::Value) -> String {
        encode(header, claims, &self.encoding).expect("signing")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(b"0123456789abcdef0123456789abcdef", 900)
    }

    #[test]
    fn round_trip_and_rejections() {
        let k = keys();
        let (u, h, f) = (UserId::new(), HospitalId::new(), TokenFamilyId::new());
        let t = k.issue(u, Role::Doctor, h, f);
        let c = k.verify(&t).unwrap();
        assert_eq!((c.sub, c.role, c.hid, c.sid), (u, Role::Doctor, h, f));

        // Tampered payload.
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        parts[1] = parts[1].chars().rev().collect();
        assert_eq!(k.verify(&parts.join(".")), Err(TokenError::Invalid));
        // Another key.
        let other = TokenKeys::new(b"another-key-another-key-another-key!", 900);
        assert_eq!(other.verify(&t), Err(TokenError::Invalid));
        // Expired.
        let mut claims = serde_json::to_value(&c).unwrap();
        claims["exp"] = serde_json::json!(Utc::now().timestamp() - 60);
        assert_eq!(k.verify(&k.sign_raw(&Header::new(Algorithm::HS256), &claims)), Err(TokenError::Expired));
        // Wrong algorithm, same key.
        let claims = serde_json::to_value(&c).unwrap();
        assert_eq!(k.verify(&k.sign_raw(&Header::new(Algorithm::HS512), &claims)), Err(TokenError::Invalid));
        // Unsigned (alg none).
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let unsigned = format!("{}.{}.", b64.encode(r#"{"alg":"none","typ":"JWT"}"#), b64.encode(claims.to_string()));
        assert_eq!(k.verify(&unsigned), Err(TokenError::Invalid));
    }
}
