//! The key every instance signs sessions, CSRF tokens and download links with must be the
//! same on all of them: the database records its fingerprint (a one-way hash, not the key)
//! and an instance whose key has another refuses to start.

use sha2::{Digest, Sha256};

/// The key's fingerprint: 32 hex characters of a labelled SHA-256 of it.
pub fn fingerprint(session_key: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"stevedore instance key fingerprint\n");
    h.update(session_key);
    hex::encode(&h.finalize()[..16])
}

/// Why an instance whose key fingerprint is `mine` may not start on a database that
/// records `recorded`; None when they agree.
pub fn mismatch(mine: &str, recorded: &str) -> Option<String> {
    (mine != recorded).then(|| {
        format!(
            "this instance's session key (fingerprint {}…) is not the one the other instances on this database \
             sign with (fingerprint {}…): sessions, CSRF tokens and download links of one would be refused by \
             the other. Give every instance the same STEVEDORE_SESSION_KEY; to change the key for all of them, \
             stop them all and start one with STEVEDORE_REPLACE_SESSION_KEY=true (every session ends)",
            &mine[..8.min(mine.len())],
            &recorded[..8.min(recorded.len())]
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_is_stable_and_tells_keys_apart() {
        let (a, b) = ([7u8; 64], [8u8; 64]);
        assert_eq!(fingerprint(&a), fingerprint(&a));
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a).len(), 32);
        // it is not the key, nor the download links' key
        assert!(!fingerprint(&a).contains(&hex::encode(&a[..8])));
        assert_ne!(fingerprint(&a), hex::encode(&crate::domain::exports::link_key(&a)[..16]));
    }

    #[test]
    fn another_key_is_refused_with_the_way_out() {
        let (a, b) = (fingerprint(&[1u8; 64]), fingerprint(&[2u8; 64]));
        assert_eq!(mismatch(&a, &a), None);
        let why = mismatch(&a, &b).unwrap();
        assert!(why.contains(&a[..8]) && why.contains(&b[..8]), "{why}");
        assert!(why.contains("STEVEDORE_SESSION_KEY") && why.contains("STEVEDORE_REPLACE_SESSION_KEY"), "{why}");
    }
}
