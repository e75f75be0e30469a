//! Operators' passwords: argon2id PHC strings, salted with 16 random bytes.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};

/// The shortest password accepted.
pub const MIN_LENGTH: usize = 10;

/// Why a password is refused.
pub fn check(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_LENGTH {
        return Err(format!("the password must be at least {MIN_LENGTH} characters"));
    }
    if password.len() > 1024 {
        return Err("the password must be at most 1024 bytes".into());
    }
    Ok(())
}

/// The argon2id hash (PHC string) of `password`, with a fresh salt.
pub fn hash(password: &str) -> String {
    let salt = domain::random_bytes::<16>();
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .expect("a 16-byte salt and default parameters are valid")
        .to_string()
}

/// Whether `password` matches `hash` (in constant time; a malformed hash matches nothing).
pub fn verify(password: &str, hash: &str) -> bool {
    Argon2::default().verify_password(password.as_bytes(), hash).is_ok()
}

/// A hash no password matches, checked when the email is unknown so that a wrong email
/// takes as long to refuse as a wrong password.
pub(crate) fn decoy() -> &'static str {
    static DECOY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| hash(&domain::random_token(32)));
    &DECOY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse battery");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterY", &h));
        assert!(!verify("anything", "not a hash"));
        assert_ne!(hash("correct horse battery"), h, "salted");
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(check("short").unwrap_err().contains("at least 10"));
        assert!(check("long enough!").is_ok());
    }
}
