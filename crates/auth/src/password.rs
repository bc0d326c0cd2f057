//! Password hashing (argon2id, PHC strings) and generated passwords.
//!
//! Hashing is deliberately slow, so it runs on the blocking thread pool and
//! never stalls the async workers serving other requests.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};
use rand::distributions::{Alphanumeric, DistString};

use crate::AuthError;

/// Hashes `password` for `username` (the name only labels errors).
pub(crate) async fn hash(username: &str, password: &str) -> Result<String, AuthError> {
    let password = password.to_owned();
    let failed = |reason: String| AuthError::PasswordHash {
        username: username.to_owned(),
        reason,
    };
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| failed(e.to_string()))?
    .map_err(failed)
}

/// Whether `password` matches the PHC string `stored`. `None` (unknown user)
/// still spends the time of one hash, so that response times do not tell
/// which usernames exist.
pub(crate) async fn verify(stored: Option<String>, password: &str) -> bool {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || match stored {
        Some(stored) => match PasswordHash::new(&stored) {
            Ok(parsed) => Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        },
        None => {
            let salt = SaltString::generate(&mut OsRng);
            let _ = Argon2::default().hash_password(password.as_bytes(), &salt);
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// A new random password: 24 alphanumerics, about 142 bits.
pub(crate) fn generate() -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), 24)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_verifies_only_the_same_password() {
        let stored = hash("u", "s3cret").await.expect("hash");
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(verify(Some(stored.clone()), "s3cret").await);
        assert!(!verify(Some(stored), "s3cret ").await);
        assert!(!verify(None, "s3cret").await);
        assert!(!verify(Some("not a hash".into()), "s3cret").await);
    }

    #[test]
    fn generated_passwords_differ_and_are_long() {
        let (a, b) = (generate(), generate());
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
