//! Random opaque values (refresh tokens, device secrets, one-time codes) and the SHA-256
//! digests under which they are stored. These values are long and random, so a fast hash is
//! enough for them (unlike passwords); six-digit codes are protected by their short expiry
//! and attempt limit, not by the hash.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// 32 random bytes, base64url without padding (43 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A uniformly random six-digit code, e.g. `042917`.
pub fn six_digit_code() -> String {
    // Rejection sampling: u32 values above the largest multiple of 10^6 would bias the result.
    const RANGE: u32 = 1_000_000;
    let zone = u32::MAX - (u32::MAX % RANGE);
    loop {
        let v = OsRng.next_u32();
        if v < zone {
            return format!("{:06}", v % RANGE);
        }
    }
}

/// The stored form of a device secret: `sha256:<hex>`.
///
/// Device secrets are 256-bit random values (see [`random_token`]), so a single SHA-256 is
/// as hard to reverse as any password hash, and checking it is cheap enough for a fleet of
/// machines reconnecting at once or posting readings over HTTP. (Passwords, which people
/// choose, use argon2id: see `password`.)
pub fn hash_device_secret(secret: &str) -> String {
    let hex: String = digest(secret).iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Whether `secret` matches a stored device secret: `sha256:` (current) or an argon2 PHC
/// string (accepted for secrets stored that way).
pub fn verify_device_secret(secret: &str, stored: &str) -> bool {
    match stored.strip_prefix("sha256:") {
        Some(_) => constant_time_eq(hash_device_secret(secret).as_bytes(), stored.as_bytes()),
        None => crate::password::verify_blocking(secret, stored),
    }
}

/// Compares without stopping at the first difference, so timing reveals nothing. (Two
/// lines; not worth a dependency.)
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// SHA-256 of `value`, for storing tokens and codes.
pub fn digest(value: &str) -> Vec<u8> {
    Sha256::digest(value.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_codes_have_their_shape() {
        let t = random_token();
        assert_eq!(t.len(), 43);
        assert_ne!(t, random_token());
        for _ in 0..100 {
            let c = six_digit_code();
            assert!(c.len() == 6 && c.chars().all(|ch| ch.is_ascii_digit()));
        }
        assert_eq!(digest("a").len(), 32);
        let stored = hash_device_secret("s3cret");
        assert!(verify_device_secret("s3cret", &stored));
        assert!(!verify_device_secret("s3cret!", &stored));
        let argon = crate::password::hash_blocking("legacy").unwrap();
        assert!(verify_device_secret("legacy", &argon));
    }
}
