//! Passwords of Fjord's own users: the strength rule and the argon2id hash stored for them.

use crate::error::{ActionError, ActionResult};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Rejects passwords too short to resist guessing, or absurdly long (argon2 work is per byte too).
pub fn check_password(password: &str) -> ActionResult<()> {
    if password.chars().count() < 10 {
        return Err(ActionError::invalid("password", "the password must have at least 10 characters"));
    }
    if password.len() > 1024 {
        return Err(ActionError::invalid("password", "the password must be at most 1024 bytes"));
    }
    Ok(())
}

/// An argon2id PHC string with a random salt.
pub fn hash_password(password: &str) -> ActionResult<String> {
    check_password(password)?;
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ActionError::Internal(format!("hashing a password: {e}")))
}

pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}
