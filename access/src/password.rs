//! Password and device-secret hashing with argon2id (OWASP: m = 19 MiB, t = 2, p = 1).
//!
//! Hashing is deliberately slow and memory-hungry, so it never runs on the async executor:
//! each hash runs on tokio's blocking pool, and a semaphore caps how many run at once, so a
//! burst of logins cannot starve the broker or take all memory (each takes 19 MiB).

use std::sync::{Arc, OnceLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// Memory cost in KiB (19 MiB).
pub const M_COST_KIB: u32 = 19 * 1024;
/// Iterations.
pub const T_COST: u32 = 2;
/// Parallelism.
pub const P_COST: u32 = 1;
/// Hashes computed at once, at most.
pub const MAX_CONCURRENT: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("hashing task failed: {0}")]
    Task(String),
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None).expect("static argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn permits() -> Arc<Semaphore> {
    static PERMITS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    PERMITS.get_or_init(|| Arc::new(Semaphore::new(MAX_CONCURRENT))).clone()
}

/// Hashes synchronously. For command-line tools; servers use [`hash`].
pub fn hash_blocking(secret: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Verifies synchronously. A malformed stored hash verifies as `false`.
pub fn verify_blocking(secret: &str, stored_hash: &str) -> bool {
    match PasswordHash::new(stored_hash) {
        Ok(parsed) => argon2().verify_password(secret.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Hashes `secret` on the blocking pool, at most [`MAX_CONCURRENT`] at once.
pub async fn hash(secret: String) -> Result<String, PasswordError> {
    let _permit = permits().acquire_owned().await.map_err(|e| PasswordError::Task(e.to_string()))?;
    tokio::task::spawn_blocking(move || hash_blocking(&secret)).await.map_err(|e| PasswordError::Task(e.to_string()))?
}

/// Verifies `secret` against `stored_hash` on the blocking pool, at most
/// [`MAX_CONCURRENT`] at once.
pub async fn verify(secret: String, stored_hash: String) -> Result<bool, PasswordError> {
    let _permit = permits().acquire_owned().await.map_err(|e| PasswordError::Task(e.to_string()))?;
    tokio::task::spawn_blocking(move || verify_blocking(&secret, &stored_hash))
        .await
        .map_err(|e| PasswordError::Task(e.to_string()))
}

/// A hash of a random value, verified against when the account or device does not exist,
/// so a missing account takes as long to refuse as a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_blocking(&crate::secret::random_token()).expect("hashing a random value"))
}

/// Why a new password is refused, in words for the person choosing it.
pub fn strength_problem(password: &str, email: &str) -> Option<String> {
    let len = password.chars().count();
    if len < 10 {
        return Some("must be at least 10 characters long".into());
    }
    if len > 128 {
        return Some("must be at most 128 characters long".into());
    }
    let classes = [
        password.chars().any(|c| c.is_lowercase()),
        password.chars().any(|c| c.is_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_alphanumeric()),
    ];
    if classes.iter().filter(|&&b| b).count() < 3 {
        return Some("must mix at least three of: lowercase, uppercase, digits, symbols".into());
    }
    let local = email.split('@').next().unwrap_or("").to_lowercase();
    if local.len() >= 3 && password.to_lowercase().contains(&local) {
        return Some("must not contain your e-mail name".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_owasp_parameters() {
        let h = hash_blocking("Correct-horse-9").unwrap();
        let parsed = PasswordHash::new(&h).unwrap();
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        let p = Params::try_from(&parsed).unwrap();
        assert!(p.m_cost() >= 19 * 1024 && p.t_cost() >= 2 && p.p_cost() >= 1);
        assert!(verify_blocking("Correct-horse-9", &h));
        assert!(!verify_blocking("correct-horse-9", &h));
        assert!(!verify_blocking("x", "not a hash"));
    }

    #[test]
    fn weak_passwords_are_explained() {
        assert!(strength_problem("short", "a@b.c").unwrap().contains("10 characters"));
        assert!(strength_problem("alllowercaseletters", "a@b.c").unwrap().contains("three"));
        assert!(strength_problem("Janedoe-2026!", "janedoe@x.org").unwrap().contains("e-mail"));
        assert_eq!(strength_problem("Str0ng-enough", "a@b.c"), None);
    }
}
