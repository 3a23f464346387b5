//! Turns to write to a SQLite database file, people first.
//!
//! SQLite has one writer per database and makes the others poll for the lock while they hold a
//! pooled connection: under a long import, sign-ins and session writes polled for seconds and
//! took every connection, so page reads queued behind them. Writers of this process instead
//! wait here, holding nothing. There are two kinds of writer:
//!
//! - **people** (a request: a sign-in, a session, a form) queue first come first served;
//! - **background work** (every write made on a background thread: an import's chunks, its
//!   validation's writes, an export's progress) takes its turn only when no person is waiting
//!   or writing, and not within [`GRACE`] of a person's last write, so a request that writes
//!   twice in a row (a sign-in's attempt, then its session) finds the database free the second
//!   time too. Background work never waits more than [`YIELD_AT_MOST`] for people: a stream of
//!   requests slows an import, it cannot stop it.
//!
//! A person therefore waits for at most the one background transaction in progress (an
//! import's chunk, ~50 ms), not for each of the import's transactions in turn. PostgreSQL
//! locks rows, not the database: no turn there.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::Db;

/// How long a writer waits for its turn before going ahead without it (SQLite's own
/// `busy_timeout` still applies then). Only a write made while the same task holds a turn
/// can wait this long; none should.
const TURN_WAIT: Duration = Duration::from_secs(10);

/// How long after a person's write background work still leaves the database to people.
pub const GRACE: Duration = Duration::from_millis(15);

/// The longest background work waits for people before it queues like them.
pub const YIELD_AT_MOST: Duration = Duration::from_secs(1);

thread_local! {
    static BACKGROUND: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as background work: its writes give way to people's.
pub fn mark_background_thread() {
    BACKGROUND.with(|b| b.set(true));
}

/// Whether the calling thread is background work (see [`mark_background_thread`]).
pub fn on_background_thread() -> bool {
    BACKGROUND.with(Cell::get)
}

/// One SQLite file's writers.
#[derive(Default)]
struct Gate {
    /// Held by the writer whose turn it is; FIFO among those queued on it.
    lock: Arc<tokio::sync::Mutex<()>>,
    /// People waiting for or holding the turn.
    people: AtomicUsize,
    /// When a person last let go of the turn.
    last_person: Mutex<Option<Instant>>,
    /// Rung whenever a person lets go.
    released: tokio::sync::Notify,
}

impl Gate {
    /// How long background work should still leave the database alone (zero: go ahead).
    fn people_first_for(&self) -> Option<Duration> {
        if self.people.load(Ordering::SeqCst) > 0 {
            return Some(GRACE);
        }
        self.last_person_at().and_then(|at| GRACE.checked_sub(at.elapsed())).filter(|d| !d.is_zero())
    }

    /// When a person last let go of the turn (None: never).
    fn last_person_at(&self) -> Option<Instant> {
        *self.last_person.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until no person wants the database (or [`YIELD_AT_MOST`] has passed).
    async fn leave_to_people(&self) {
        let started = Instant::now();
        loop {
            let rung = self.released.notified();
            tokio::pin!(rung);
            rung.as_mut().enable();
            let Some(wait) = self.people_first_for() else { return };
            let Some(left) = YIELD_AT_MOST.checked_sub(started.elapsed()) else { return };
            tokio::select! {
                _ = rung => {}
                _ = tokio::time::sleep(wait.min(left)) => {}
            }
        }
    }
}

/// This process's turn to write to a SQLite database: held while a statement or a
/// transaction writes (see `begin_write!` and `on_writer!`); holds nothing on PostgreSQL.
pub struct WriteTurn {
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// A person's turn: counted in the gate's people until dropped.
    person: Option<Arc<Gate>>,
}

impl WriteTurn {
    /// Whether this turn holds the database's gate (false on PostgreSQL, or when the wait
    /// ran out).
    pub fn holds(&self) -> bool {
        self.guard.is_some()
    }
}

impl Drop for WriteTurn {
    fn drop(&mut self) {
        // the database first, then the people count, so a waiting import sees both at once
        drop(self.guard.take());
        if let Some(gate) = self.person.take() {
            *gate.last_person.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            gate.people.fetch_sub(1, Ordering::SeqCst);
            gate.released.notify_waiters();
        }
    }
}

/// Waits for this process's turn to write to `db` (see the module's text); a person's unless
/// called on a background thread.
pub async fn write_turn(db: &Db) -> WriteTurn {
    let Db::Sqlite(p) = db else { return WriteTurn { guard: None, person: None } };
    let gate = gate_of(p.connect_options().get_filename());
    let person = if on_background_thread() {
        gate.leave_to_people().await;
        None
    } else {
        gate.people.fetch_add(1, Ordering::SeqCst);
        Some(gate.clone())
    };
    // from here the turn's drop undoes the people count, whether or not the lock is taken
    let mut turn = WriteTurn { guard: None, person };
    match tokio::time::timeout(TURN_WAIT, gate.lock.clone().lock_owned()).await {
        Ok(guard) => turn.guard = Some(guard),
        Err(_) => tracing::warn!("waited {TURN_WAIT:?} for a turn to write; going ahead without it"),
    }
    turn
}

/// Whether people are writing to `db`'s SQLite file, or did within `within` and not before
/// `after` (always false on PostgreSQL, where nobody waits for a single writer). `after`
/// leaves out what led up to the caller's work: the person who clicked Import wrote just
/// before the import began, and waits for nothing of it.
pub fn people_writing(db: &Db, within: Duration, after: Instant) -> bool {
    let Db::Sqlite(p) = db else { return false };
    let gate = gate_of(p.connect_options().get_filename());
    gate.people.load(Ordering::SeqCst) > 0
        || gate.last_person_at().is_some_and(|at| at >= after && at.elapsed() < within)
}

/// The writers' gate of one SQLite database file (one per file, shared by every pool of this
/// process on it).
fn gate_of(file: &Path) -> Arc<Gate> {
    static GATES: OnceLock<Mutex<HashMap<PathBuf, Arc<Gate>>>> = OnceLock::new();
    let gates = GATES.get_or_init(Default::default);
    let mut map = gates.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    map.entry(file.to_path_buf()).or_default().clone()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    async fn sqlite(dir: &std::path::Path, name: &str) -> Db {
        Db::connect(&format!("sqlite://{}", dir.join(name).display()), 2).await.unwrap()
    }

    #[tokio::test]
    async fn writers_of_one_sqlite_file_take_turns_first_come_first_served() {
        let dir = tempfile::tempdir().unwrap();
        // two pools on one file, as the app and its worker: one queue
        let (a, b) = (sqlite(dir.path(), "turns.db").await, sqlite(dir.path(), "turns.db").await);
        let held = write_turn(&a).await;
        assert!(held.holds());
        let order = Arc::new(Mutex::new(vec![]));
        let mut waiting = vec![];
        for (n, db) in [(1, b.clone()), (2, a.clone()), (3, b.clone())] {
            let order = order.clone();
            waiting.push(tokio::spawn(async move {
                let _turn = write_turn(&db).await;
                order.lock().unwrap().push(n);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(order.lock().unwrap().is_empty(), "nobody writes while the turn is held");
        drop(held);
        for w in waiting {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [1, 2, 3]);
        // another file has its own queue
        let other = sqlite(dir.path(), "other.db").await;
        let _a = write_turn(&a).await;
        let o = tokio::time::timeout(Duration::from_secs(1), write_turn(&other)).await;
        assert!(o.is_ok_and(|t| t.holds()), "a writer of another database does not wait");
    }

    #[actix_web::test]
    async fn people_write_before_background_work_that_queued_first_and_it_still_gets_its_turn() {
        let dir = tempfile::tempdir().unwrap();
        let db = sqlite(dir.path(), "people.db").await;
        let order = Arc::new(Mutex::new(vec![]));
        let held = write_turn(&db).await;
        // an import's next chunk queues first, on a background thread...
        let import = {
            let (db, order) = (db.clone(), order.clone());
            crate::jobs::background::run("turn-test", move || async move {
                let _turn = write_turn(&db).await;
                order.lock().unwrap().push("import");
            })
        };
        let import = actix_web::rt::spawn(import);
        tokio::time::sleep(Duration::from_millis(30)).await;
        // ...then a person, who writes twice in a row
        let person = {
            let (db, order) = (db.clone(), order.clone());
            actix_web::rt::spawn(async move {
                for n in ["person", "person again"] {
                    let _turn = write_turn(&db).await;
                    order.lock().unwrap().push(n);
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        drop(held);
        person.await.unwrap();
        import.await.unwrap().unwrap();
        assert_eq!(*order.lock().unwrap(), ["person", "person again", "import"]);
    }

    #[tokio::test]
    async fn people_count_as_writing_while_they_write_and_for_a_while_after() {
        let dir = tempfile::tempdir().unwrap();
        let db = sqlite(dir.path(), "recent.db").await;
        let within = Duration::from_millis(200);
        let start = Instant::now();
        assert!(!people_writing(&db, within, start), "nobody wrote yet");
        let turn = write_turn(&db).await;
        assert!(people_writing(&db, within, start));
        drop(turn);
        assert!(people_writing(&db, within, start), "just now");
        assert!(!people_writing(&db, within, Instant::now()), "but before the work began");
        tokio::time::sleep(within).await;
        assert!(!people_writing(&db, within, start));
    }

    #[actix_web::test]
    async fn background_work_waits_for_people_at_most_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let db = sqlite(dir.path(), "stream.db").await;
        // a person who keeps waiting (a stream of requests, as far as the gate can tell)
        let gate = gate_of(&dir.path().join("stream.db"));
        gate.people.fetch_add(1, Ordering::SeqCst);
        let started = Instant::now();
        let got = crate::jobs::background::run("turn-test", move || async move { write_turn(&db).await.holds() })
            .await
            .unwrap();
        let waited = started.elapsed();
        gate.people.fetch_sub(1, Ordering::SeqCst);
        assert!(got);
        assert!(waited >= YIELD_AT_MOST && waited < YIELD_AT_MOST * 3, "{waited:?}");
    }
}
