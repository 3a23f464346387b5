//! Password hashing with argon2id at OWASP's recommended minimum (19 MiB, 2 passes, 1 lane).
//! Hashing is CPU-bound, so it runs on threads of its own, one per core.

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

/// The threads that hash: one per core, started at the first use, each taking the next
/// waiting hash. A hash takes 19 MiB and a core for its whole run, so twenty sign-ins at once
/// would take 380 MiB and starve every other request; beyond the cores they queue here.
/// Threads of their own rather than the blocking pool's: there each hash ran on whichever of
/// dozens of threads was free, and the allocator kept a freed 19 MiB block for each of the
/// threads' arenas (a `bench import --load 20` process grew to 840 MiB; 20 people signing in
/// and out over and over).
fn hashers() -> &'static std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>> {
    static QUEUE: OnceLock<std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        // as long as the requests waiting for a hash (each holds its connection meanwhile)
        let (tx, rx) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("password-hashing-{i}")).spawn(move || {
                loop {
                    // the lock is held only while waiting for the next hash, not while it runs
                    let next = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match next {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        tx
    })
}

/// Runs `f` on a hashing thread; its result.
async fn on_hasher<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Box<dyn FnOnce() + Send> = Box::new(move || {
        let _ = tx.send(f());
    });
    hashers().send(job).map_err(|_| anyhow::anyhow!("the password hashing threads have stopped"))?;
    rx.await.context("password hashing thread")
}

pub async fn hash(password: String) -> anyhow::Result<String> {
    on_hasher(move || hash_blocking(&password)).await?
}

pub async fn verify(password: String, phc: String) -> anyhow::Result<bool> {
    on_hasher(move || verify_blocking(&password, &phc)).await
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

    #[tokio::test]
    async fn sign_ins_at_once_hash_on_one_thread_per_core_and_each_gets_its_own_answer() {
        let h = hash("correct horse battery".into()).await.unwrap();
        let checks = (0..8).map(|i| {
            let (h, guess) = (h.clone(), if i % 2 == 0 { "correct horse battery" } else { "wrong" });
            tokio::spawn(async move {
                let ok = verify(guess.to_string(), h).await.unwrap();
                let thread = on_hasher(|| std::thread::current().name().map(str::to_string)).await.unwrap();
                (i, ok, thread)
            })
        });
        let mut threads = std::collections::HashSet::new();
        for c in futures_util::future::join_all(checks).await {
            let (i, ok, thread) = c.unwrap();
            assert_eq!(ok, i % 2 == 0, "check {i}");
            let thread = thread.unwrap_or_default();
            assert!(thread.starts_with("password-hashing-"), "ran on {thread:?}");
            threads.insert(thread);
        }
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        assert!(threads.len() <= cores, "{threads:?} for {cores} cores");
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
