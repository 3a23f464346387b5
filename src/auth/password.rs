//! Password hashing with argon2id at OWASP's recommended minimum (19 MiB, 2 passes, 1 lane).
//! Hashing is CPU-bound, so it runs on the blocking pool.

use std::sync::OnceLock;

use anyhow::Context;
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};

fn hasher() -> anyhow::Result<Argon2<'static>> {
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password into a PHC string (argon2 makes its own random salt).
pub fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let h = hasher()?.hash_password(password.as_bytes()).map_err(|e| anyhow::anyhow!("hashing password: {e}"))?;
    Ok(h.to_string())
}

/// True when the password matches the PHC string; false for a mismatch or a malformed hash.
pub fn verify_blocking(password: &str, phc: &str) -> bool {
    match hasher() {
        Ok(h) => h.verify_password(password.as_bytes(), phc).is_ok(),
        Err(_) => false,
    }
}

/// Hashes running at once: one per core. Each takes 19 MiB and a core for its whole run, so
/// twenty sign-ins at once would take 380 MiB and starve every other request; beyond the
/// cores they queue here instead.
fn hashing_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    SLOTS
        .get_or_init(|| tokio::sync::Semaphore::new(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)))
}

pub async fn hash(password: String) -> anyhow::Result<String> {
    let _slot = hashing_slots().acquire().await.context("password hashing slots")?;
    actix_web::web::block(move || hash_blocking(&password)).await.context("password hashing task")?
}

pub async fn verify(password: String, phc: String) -> anyhow::Result<bool> {
    let _slot = hashing_slots().acquire().await.context("password hashing slots")?;
    actix_web::web::block(move || verify_blocking(&password, &phc)).await.context("password verification task")
}

/// A hash of a random password, verified against when the email is unknown so that an
/// unknown email and a wrong password take the same time.
pub async fn dummy_hash() -> anyhow::Result<String> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h.clone());
    }
    let h = hash(crate::random_token(16)?).await?;
    Ok(DUMMY.get_or_init(|| h).clone())
}

/// A one-time password: 16 characters from an alphabet without look-alikes, in groups of four.
pub fn one_time_password() -> anyhow::Result<String> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("operating system random source: {e}"))?;
    let mut out = String::with_capacity(19);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        // 256 is not a multiple of 31; the bias (under 1%) is harmless at 16 characters.
        out.push(ALPHABET[*b as usize % ALPHABET.len()] as char);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let h = hash_blocking("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_blocking("correct horse battery", &h));
        assert!(!verify_blocking("correct horse batterY", &h));
        assert!(!verify_blocking("x", "not a phc string"));
        // a fresh salt each time
        assert_ne!(h, hash_blocking("correct horse battery").unwrap());
    }

    #[test]
    fn one_time_passwords_are_grouped_and_meet_the_policy() {
        let p = one_time_password().unwrap();
        assert_eq!(p.len(), 19);
        assert_eq!(p.matches('-').count(), 3);
        assert!(crate::domain::account::check_new_password(&p).is_ok());
        assert_ne!(p, one_time_password().unwrap());
    }
}
