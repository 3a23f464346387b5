//! Prevalidation's note of the digests and keys that may occur more than once in the file,
//! so the phases that look for repeated rows and shared keys search only the rows with one
//! of them instead of grouping every staged row.
//!
//! Each is a filter of bits (a Bloom filter whose four bits for a value lie in one 64-bit
//! word) that answers "certainly new" or "maybe seen before". The answer and the marking are
//! one atomic step on that word, so of two threads staging equal rows at the same moment
//! exactly one is told "maybe seen": every value that occurs twice is noted at least once.
//! A value wrongly taken for seen costs only a row looked at for nothing. The memory is
//! fixed by the file's size (2 MiB for a 100 MB file), whatever is in it; past
//! [`MAX_SUSPECTS`] noted values, or keys of [`MAX_KEY_BYTES`], the phases search every row
//! as before.

use std::collections::HashSet;
use std::hash::Hasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Values noted per kind before the phases fall back to searching every row.
const MAX_SUSPECTS: usize = 200_000;

/// Bytes of noted keys before the key search falls back to every row.
const MAX_KEY_BYTES: usize = 8 << 20;

/// A filter of `u64` hashes: certainly new, or maybe seen.
struct Filter {
    words: Vec<AtomicU64>,
    mask: u64,
}

impl Filter {
    /// A filter of `bits` bits (rounded up to a power of two, at least 64).
    fn new(bits: u64) -> Filter {
        let words = (bits / 64).max(1).next_power_of_two();
        Filter { words: (0..words).map(|_| AtomicU64::new(0)).collect(), mask: words - 1 }
    }

    /// Marks `h`; true when it may have been marked before.
    fn insert(&self, h: u64) -> bool {
        // the low bits pick the word, the top 24 bits the four bits in it
        let word = &self.words[(h & self.mask) as usize];
        let top = h >> 40;
        let bits = (0..4).fold(0u64, |m, i| m | 1 << ((top >> (6 * i)) & 63));
        word.fetch_or(bits, Ordering::Relaxed) & bits == bits
    }
}

/// What the filters noted: the low halves of digests, and keys, that may repeat; None when
/// there were too many to list.
#[derive(Debug, Default)]
pub(super) struct Noted {
    pub digests: Option<Vec<i64>>,
    pub keys: Option<Vec<String>>,
}

#[derive(Default)]
struct Lists {
    digests: HashSet<i64>,
    keys: HashSet<String>,
    key_bytes: usize,
    too_many_digests: bool,
    too_many_keys: bool,
}

/// The staging threads' shared note of values that may repeat.
pub(super) struct Suspects {
    digests: Filter,
    keys: Filter,
    lists: Mutex<Lists>,
}

impl Suspects {
    /// Filters sized for a file of `bytes` bytes: a bit for every 8 bytes of it, between
    /// 128 KiB and 32 MiB a filter (16 bits a row for 128-byte rows).
    pub fn for_file(bytes: u64) -> Suspects {
        let bits = (bytes / 8).clamp(1 << 20, 1 << 28);
        Suspects { digests: Filter::new(bits), keys: Filter::new(bits), lists: Mutex::default() }
    }

    /// A pending row: the low half of its digest, and its key (none when empty).
    pub fn row(&self, digest_lo: i64, key: &str) {
        let digest_seen = self.digests.insert(digest_lo as u64);
        let key_seen = !key.is_empty() && self.keys.insert(hash(key));
        if !digest_seen && !key_seen {
            return;
        }
        let Ok(mut l) = self.lists.lock() else { return };
        if digest_seen && !l.too_many_digests && l.digests.insert(digest_lo) {
            l.too_many_digests = l.digests.len() > MAX_SUSPECTS;
        }
        if key_seen && !l.too_many_keys && l.keys.insert(key.to_string()) {
            l.key_bytes += key.len();
            l.too_many_keys = l.keys.len() > MAX_SUSPECTS || l.key_bytes > MAX_KEY_BYTES;
        }
    }

    /// What was noted, each list sorted; a poisoned lock notes nothing usable, so both
    /// searches look at every row.
    pub fn noted(&self) -> Noted {
        let Ok(mut l) = self.lists.lock() else { return Noted::default() };
        let l = std::mem::take(&mut *l);
        let digests = (!l.too_many_digests).then(|| {
            let mut d: Vec<i64> = l.digests.into_iter().collect();
            d.sort_unstable();
            d
        });
        let keys = (!l.too_many_keys).then(|| {
            let mut k: Vec<String> = l.keys.into_iter().collect();
            k.sort_unstable();
            k
        });
        Noted { digests, keys }
    }
}

/// A key's hash for its filter.
fn hash(key: &str) -> u64 {
    let mut h = Fnv::default();
    h.write(key.as_bytes());
    h.finish()
}

/// FNV-1a: a few cycles for the short strings hashed once or twice a row (keys, field
/// names); SipHash, the standard one, was ~4% of staging's CPU with them. Not for
/// maps whose keys come from outside: nothing here defends against chosen collisions.
#[derive(Clone, Copy)]
pub(super) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Maps keyed by FNV-1a ([`Fnv`]).
pub(super) type FnvBuild = std::hash::BuildHasherDefault<Fnv>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Distinct values spread over all 64 bits, as digests are.
    fn spread(i: i64) -> i64 {
        (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) as i64
    }

    #[test]
    fn every_value_met_twice_is_noted_and_one_met_once_rarely_is() {
        let s = Suspects::for_file(10_000_000);
        // 100,000 distinct rows, and every 100th met again
        for i in 0..100_000i64 {
            s.row(spread(i), &format!("K{i}"));
        }
        for i in (0..100_000i64).step_by(100) {
            s.row(spread(i), &format!("K{i}"));
        }
        let n = s.noted();
        let (digests, keys) = (n.digests.unwrap(), n.keys.unwrap());
        for i in (0..100_000i64).step_by(100) {
            assert!(digests.binary_search(&spread(i)).is_ok(), "digest {i} repeats");
            assert!(keys.binary_search(&format!("K{i}")).is_ok(), "key {i} repeats");
        }
        // a few values met once are taken for seen (a filter of 2,097,152 bits for 100,000)
        assert!(digests.len() < 1_000 + 1_000, "{} digests noted", digests.len());
        assert!(keys.len() < 1_000 + 1_000, "{} keys noted", keys.len());
    }

    #[test]
    fn two_threads_meeting_the_same_values_note_each_at_least_once() {
        let s = std::sync::Arc::new(Suspects::for_file(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || (0..50_000i64).for_each(|i| s.row(i * 7919 + 1, "")))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let digests = s.noted().digests.unwrap();
        assert!((0..50_000i64).all(|i| digests.binary_search(&(i * 7919 + 1)).is_ok()));
        assert_eq!(s.noted().keys, Some(vec![]), "empty keys are not noted, and a second look finds nothing new");
    }

    #[test]
    fn too_many_suspects_mean_searching_every_row() {
        let s = Suspects::for_file(0);
        for _ in 0..2 {
            for i in 0..(MAX_SUSPECTS as i64 + 10) {
                s.row(i, "same");
            }
        }
        let n = s.noted();
        assert!(n.digests.is_none(), "more than the limit: no list");
        assert_eq!(n.keys, Some(vec!["same".to_string()]), "one key noted many times is one entry");
    }
}
