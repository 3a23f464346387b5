//! The processing phase's chunk transaction for merge and overwrite imports: a chunk's
//! pending rows become records (created or updated by key), every change journaled, the
//! counts and the import's cursor moved in the same transaction (exactly once).

use anyhow::Context;

use crate::domain::ids::OrgId;
use crate::domain::imports::Stage;
use crate::domain::jobs::Fence;
use crate::on_pool;
use crate::store::Db;

/// The last row of the next chunk of at most `size` pending rows after `cursor`; None
/// when no pending row is left.
pub async fn chunk_end(db: &Db, id: i64, cursor: i64, size: i64) -> anyhow::Result<Option<i64>> {
    let full = on_pool!(db, p => sqlx::query_scalar::<_, i64>(
        "SELECT row_number FROM import_rows WHERE import_id = $1 AND row_number > $2 AND state = 'pending'
         ORDER BY row_number LIMIT 1 OFFSET $3",
    )
    .bind(id)
    .bind(cursor)
    .bind(size.max(1) - 1)
    .fetch_optional(p)
    .await)
    .context("finding the next chunk")?;
    if full.is_some() {
        return Ok(full);
    }
    on_pool!(db, p => sqlx::query_scalar::<_, Option<i64>>(
        "SELECT MAX(row_number) FROM import_rows WHERE import_id = $1 AND row_number > $2 AND state = 'pending'",
    )
    .bind(id)
    .bind(cursor)
    .fetch_one(p)
    .await)
    .context("finding the last chunk")
}

/// In a chunk's transaction: checks the job's lease (`$fence`), moves the import's cursor
/// from `$from` to `$to` (None when the lease is lost, the cursor was not at `$from`, or the
/// import is paused or no longer running), then counts the chunk's pending rows.
macro_rules! open_chunk {
    ($db:expr, $fence:expr, $tx:ident, $id:expr, $from:expr, $to:expr, $now:expr) => {{
        let moved = if !$crate::fence_holds!($db, $tx, $fence) {
            0
        } else {
            sqlx::query(
                "UPDATE imports SET next_row = $3, updated_at = $4
             WHERE id = $1 AND next_row = $2 AND stage = $5 AND paused = FALSE",
            )
            .bind($id)
            .bind($from)
            .bind($to)
            .bind($now)
            .bind(Stage::Importing.as_str())
            .execute(&mut *$tx)
            .await
            .context("moving the import cursor")?
            .rows_affected()
        };
        if moved == 0 {
            None
        } else {
            Some(
                sqlx::query_scalar::<_, i64>(
                    "SELECT COUNT(*) FROM import_rows
                     WHERE import_id = $1 AND row_number > $2 AND row_number <= $3 AND state = 'pending'",
                )
                .bind($id)
                .bind($from)
                .bind($to)
                .fetch_one(&mut *$tx)
                .await
                .context("counting the chunk")?,
            )
        }
    }};
}
pub(super) use open_chunk;

/// In a chunk's transaction: runs `$sql` with the chunk's parameters bound (`$1` the
/// import, `$2` and `$3` the row range `(from, to]`, `$4` the org, `$5` the entity, given as
/// that tuple); the number of rows it changed.
macro_rules! chunk_exec {
    ($tx:ident, $sql:expr, $c:expr, $what:expr) => {{
        let (id, from_row, to_row, org, entity) = $c;
        sqlx::query($sql)
            .bind(id)
            .bind(from_row)
            .bind(to_row)
            .bind(org)
            .bind(entity)
            .execute(&mut *$tx)
            .await
            .context($what)?
            .rows_affected() as i64
    }};
}
pub(super) use chunk_exec;

/// In a chunk's transaction: the pending rows of `(from, to]` that now have a `failed`
/// issue become `failed`; how many.
macro_rules! fail_left_out {
    ($tx:ident, $id:expr, $from:expr, $to:expr) => {
        sqlx::query(
            "UPDATE import_rows SET state = 'failed'
             WHERE import_id = $1 AND row_number > $2 AND row_number <= $3 AND state = 'pending'
               AND row_number IN (SELECT row_number FROM import_issues WHERE import_id = $1 AND kind = 'failed'
                                    AND row_number > $2 AND row_number <= $3)",
        )
        .bind($id)
        .bind($from)
        .bind($to)
        .execute(&mut *$tx)
        .await
        .context("failing rows")?
        .rows_affected() as i64
    };
}

/// In a chunk's transaction: the pending rows of `(from, to]` whose record, read again from
/// the file into `chunk_rows`, no longer hashes as validated are left out as failed, saying
/// so; how many.
macro_rules! leave_out_unread {
    ($tx:ident, $id:expr, $from:expr, $to:expr) => {{
        let changed = sqlx::query(
            "INSERT INTO import_issues (import_id, row_number, kind, message, cells)
             SELECT $1, s.row_number, 'failed', 'row ' || CAST(s.row_number AS TEXT)
                    || ': the file no longer reads as it did when it was validated; this row was not written', ''
             FROM import_rows s
             WHERE s.import_id = $1 AND s.row_number > $2 AND s.row_number <= $3 AND s.state = 'pending'
               AND NOT EXISTS (SELECT 1 FROM chunk_rows c WHERE c.row_number = s.row_number AND c.row_hash = s.row_hash)",
        )
        .bind($id)
        .bind($from)
        .bind($to)
        .execute(&mut *$tx)
        .await
        .context("checking the chunk's records")?
        .rows_affected();
        if changed > 0 { fail_left_out!($tx, $id, $from, $to) } else { 0 }
    }};
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChunkResult {
    pub rows: i64,
    pub created: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub failed: i64,
}

/// A row's record as the processing phase read it again from the file: validation staged
/// its hash, and the chunk writes only rows whose record still hashes the same.
#[derive(Debug, Clone)]
pub struct ChunkRow {
    pub row_number: i64,
    pub data: String,
    pub row_hash: String,
    pub search_text: String,
}

/// Rows per statement when a chunk's records are put in `chunk_rows` on SQLite (four
/// parameters each, well under SQLite's limit).
const CHUNK_ROWS_PER_INSERT: usize = 500;

/// Rows per statement when a chunk's records read again from the file are written straight
/// into `records` (four parameters each).
const READ_ROWS_PER_INSERT: usize = 1000;

/// In a chunk's transaction, what each backend does its own way with the chunk's records as
/// read from the file: the temporary table `chunk_rows` made ready (one per connection:
/// PostgreSQL empties it at every commit, SQLite here) and the records put in it
/// (PostgreSQL streams them with `COPY`); and, on SQLite, new records created from them
/// straight away.
trait ChunkTable {
    async fn empty_chunk_table(&mut self) -> anyhow::Result<()>;
    async fn put_chunk_rows(&mut self, rows: &[ChunkRow]) -> anyhow::Result<()>;
    /// Creates the records of the chunk's pending rows whose key no record has, straight
    /// from `read`, each only when it still hashes as validated; how many. Nothing goes
    /// through a temporary table: SQLite binds the rows to the statement and joins them
    /// with their staged state by row number (the caller journals them); PostgreSQL copies
    /// them and journals them ([`super::direct`]), or says None when a key was taken
    /// meanwhile. `c` is (import, from, to, org, entity, now).
    async fn create_from_read(
        &mut self,
        c: (i64, i64, i64, i64, &str, i64),
        read: &[ChunkRow],
    ) -> anyhow::Result<Option<i64>>;
}

impl ChunkTable for sqlx::SqliteConnection {
    async fn empty_chunk_table(&mut self) -> anyhow::Result<()> {
        sqlx::query(
            "CREATE TEMP TABLE IF NOT EXISTS chunk_rows
               (row_number INTEGER PRIMARY KEY, data TEXT NOT NULL, row_hash TEXT NOT NULL, search_text TEXT NOT NULL)",
        )
        .execute(&mut *self)
        .await
        .context("making the chunk's table")?;
        sqlx::query("DELETE FROM chunk_rows").execute(&mut *self).await.context("emptying the chunk's table")?;
        Ok(())
    }

    async fn put_chunk_rows(&mut self, rows: &[ChunkRow]) -> anyhow::Result<()> {
        for part in rows.chunks(CHUNK_ROWS_PER_INSERT) {
            let mut sql = String::from("INSERT INTO chunk_rows (row_number, data, row_hash, search_text) VALUES ");
            // anonymous parameters: SQLite looks a numbered one up by a walk over all of
            // them, which made binding a statement's 2,000 values quadratic
            sql.push_str(&vec!["(?, ?, ?, ?)"; part.len()].join(","));
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for r in part {
                q = q.bind(r.row_number).bind(r.data.as_str()).bind(r.row_hash.as_str()).bind(r.search_text.as_str());
            }
            q.execute(&mut *self).await.context("putting the chunk's records in place")?;
        }
        Ok(())
    }
    async fn create_from_read(
        &mut self,
        (id, _, _, org, entity, now): (i64, i64, i64, i64, &str, i64),
        read: &[ChunkRow],
    ) -> anyhow::Result<Option<i64>> {
        let conn = self;
        let mut created = 0;
        for part in read.chunks(READ_ROWS_PER_INSERT) {
            // anonymous parameters (see `put_chunk_rows`), bound in the order they appear
            let sql = crate::store::records::insert_into_records(
                false,
                &format!(
                    "SELECT ?, ?, s.record_key, v.column2, v.column3, v.column4, s.import_id, s.row_number, ?, ?
                 FROM (VALUES {}) AS v
                 JOIN import_rows s ON s.import_id = ? AND s.row_number = v.column1
                 WHERE s.state = 'pending' AND s.row_hash = v.column3
                 ON CONFLICT (org_id, entity, record_key) DO NOTHING",
                    vec!["(?, ?, ?, ?)"; part.len()].join(",")
                ),
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(org).bind(entity).bind(now).bind(now);
            for r in part {
                q = q.bind(r.row_number).bind(r.data.as_str()).bind(r.row_hash.as_str()).bind(r.search_text.as_str());
            }
            created += q.bind(id).execute(&mut *conn).await.context("creating records")?.rows_affected();
        }
        Ok(Some(created as i64))
    }
}

impl ChunkTable for sqlx::PgConnection {
    /// Made once per connection, emptied by every commit: creating and dropping a table per
    /// chunk wrote the catalog each time, which made small chunks several times slower.
    async fn empty_chunk_table(&mut self) -> anyhow::Result<()> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('pg_temp.chunk_rows') IS NOT NULL")
            .fetch_one(&mut *self)
            .await
            .context("looking for the chunk's table")?;
        if !exists {
            sqlx::query(
                "CREATE TEMP TABLE chunk_rows
                   (row_number BIGINT PRIMARY KEY, data TEXT NOT NULL, row_hash TEXT NOT NULL, search_text TEXT NOT NULL)
                 ON COMMIT DELETE ROWS",
            )
            .execute(&mut *self)
            .await
            .context("making the chunk's table")?;
        }
        Ok(())
    }

    async fn put_chunk_rows(&mut self, rows: &[ChunkRow]) -> anyhow::Result<()> {
        let mut out = Vec::with_capacity(rows.len() * 256);
        for r in rows {
            let n = r.row_number.to_string();
            super::copy_line(&mut out, &[Some(&n), Some(&r.data), Some(&r.row_hash), Some(&r.search_text)]);
        }
        let mut copy = self
            .copy_in_raw("COPY chunk_rows (row_number, data, row_hash, search_text) FROM STDIN")
            .await
            .context("starting COPY of the chunk's records")?;
        if let Err(e) = copy.send(out).await {
            let _ = copy.abort("chunk failed").await;
            return Err(e).context("sending the chunk's records");
        }
        copy.finish().await.context("finishing COPY of the chunk's records")?;
        Ok(())
    }
    async fn create_from_read(
        &mut self,
        c: (i64, i64, i64, i64, &str, i64),
        read: &[ChunkRow],
    ) -> anyhow::Result<Option<i64>> {
        super::direct::copy_created(self, c, read).await
    }
}

/// In a chunk's SQLite transaction: journals the records created after id `$last` (SQLite's
/// writer is alone in its transaction, so they are the ids after the largest one before).
macro_rules! journal_created {
    ($tx:ident, $id:expr, $last:expr) => {
        sqlx::query(
            "INSERT INTO import_journal (import_id, op, record_id, record_key, after_hash)
             SELECT $1, 'created', id, record_key, row_hash FROM records WHERE id > $2",
        )
        .bind($id)
        .bind($last)
        .execute(&mut *$tx)
        .await
        .context("journaling created records")?
    };
}

/// In a chunk's transaction: creates the records of the chunk's pending rows whose key no
/// record has, from `$source` (the staged rows, or joined with the rows read again), and
/// journals them; how many. `ON CONFLICT DO NOTHING` looks for the key as the row is
/// inserted, so the rows are not probed twice (a `NOT EXISTS` first also made SQLite set the
/// rows aside before inserting them, as the statement then read the table it writes).
macro_rules! create_pending {
    ($tx:ident, $sqlite:expr, $source:expr, $rec:expr, ($id:expr, $from:expr, $to:expr, $org:expr, $entity:expr, $now:expr), $last:expr) => {{
        let (source, rec) = ($source, $rec);
        let pending = format!(
            "SELECT $4, $5, s.record_key, {rec}.data, s.row_hash, {rec}.search_text, $1, s.row_number, $6, $6
             FROM {source}
             WHERE s.import_id = $1 AND s.row_number > $2 AND s.row_number <= $3 AND s.state = 'pending'"
        );
        let insert = if $sqlite {
            format!(
                "{} ON CONFLICT (org_id, entity, record_key) DO NOTHING",
                crate::store::records::insert_into_records(false, &pending)
            )
        } else {
            // a key another transaction committed while this one waited is skipped here and
            // reported below as written meanwhile (SQLite has one writer: nothing to wait
            // for); the records created are journaled by the same statement, without coming
            // back. The key's index is named as the one to find conflicts in: unnamed,
            // PostgreSQL looked in each unique index (the id's, the key's, the hash's) before
            // inserting, ~12% of the statement. A record with this row's hash has its key
            // too (the key is among the values hashed), so the key's index finds it first.
            format!(
                "WITH created AS ({} ON CONFLICT (org_id, entity, record_key) DO NOTHING RETURNING id, record_key, row_hash)
                 INSERT INTO import_journal (import_id, op, record_id, record_key, after_hash)
                 SELECT $1, 'created', id, record_key, row_hash FROM created",
                crate::store::records::insert_into_records(false, &pending)
            )
        };
        let created = sqlx::query(sqlx::AssertSqlSafe(insert))
            .bind($id)
            .bind($from)
            .bind($to)
            .bind($org)
            .bind($entity)
            .bind($now)
            .execute(&mut *$tx)
            .await
            .context("creating records")?
            .rows_affected() as i64;
        if $sqlite {
            journal_created!($tx, $id, $last);
        }
        created
    }};
}

/// What a chunk writes into.
pub struct ChunkTarget<'a> {
    pub org: OrgId,
    pub import_id: i64,
    pub entity: &'a str,
    /// Whether the entity has unique fields besides its key (their values are kept too).
    pub has_uniques: bool,
    /// Whether validation found records to update: when it found none, a chunk's rows are
    /// first written as new records straight from the file (SQLite).
    pub updates: bool,
    /// The lease the chunk is written under (None: no job, as in tests and tools).
    pub fence: Option<&'a Fence>,
}

/// Imports the pending rows in `(from_row, to_row]` (merge: create or update by key) in one
/// transaction that first moves the import's cursor from `from_row` to `to_row`; None when
/// the cursor was not at `from_row` or the import is no longer running (another worker did
/// this chunk, or it was paused), leaving everything as it was.
///
/// `rows_read` are the chunk's records read again from the file (None: validation staged them).
/// A pending row without its record here, or whose record no longer hashes as validated
/// (the file or the entity's schema changed since), is left out as failed, saying so.
#[tracing::instrument(skip(db, t, rows_read), fields(org_id = t.org.get(), import_id = t.import_id))]
pub async fn write_chunk(
    db: &Db,
    t: &ChunkTarget<'_>,
    from_row: i64,
    to_row: i64,
    rows_read: Option<&[ChunkRow]>,
) -> anyhow::Result<Option<ChunkResult>> {
    let now = crate::now();
    let (org, id, entity) = (t.org.get(), t.import_id, t.entity);
    let sqlite = matches!(db, Db::Sqlite(_));
    // the records that the chunk's rows name by key: on PostgreSQL one index probe per row
    // whatever the statistics say (`OFFSET 0` keeps the planner from making it a join that
    // reads every record of the entity: it did once `records` grew, 90 ms a chunk at
    // 165,000 records and more at every chunk, and 8.9 s for a first chunk planned against
    // an empty `records`); SQLite probes the index by itself
    let by_key = if sqlite {
        "JOIN records r ON r.org_id = $4 AND r.entity = $5 AND r.record_key = s.record_key"
    } else {
        "CROSS JOIN LATERAL (SELECT * FROM records r
                             WHERE r.org_id = $4 AND r.entity = $5 AND r.record_key = s.record_key OFFSET 0) r"
    };
    // where the chunk's records come from: read again from the file into `chunk_rows`, or
    // staged by validation
    let (source, rec) = if rows_read.is_some() {
        ("import_rows s JOIN chunk_rows c ON c.row_number = s.row_number AND c.row_hash = s.row_hash", "c")
    } else {
        ("import_rows s", "s")
    };
    on_pool!(db, p => {
        let (mut tx, cache) = crate::begin_bulk_write!(db, p).context("starting chunk transaction")?;
        let Some(rows) = open_chunk!(db, t.fence, tx, id, from_row, to_row, now) else { return Ok(None) };
        let mut res = ChunkResult { rows, ..ChunkResult::default() };
        // SQLite's writer is alone in its transaction, so the rows this chunk creates are the
        // ids after the largest one before; PostgreSQL says which ids it created.
        let last_id: i64 = if sqlite {
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM records").fetch_one(&mut *tx).await.context("finding the last id")?
        } else {
            0
        };
        // no unique values, nothing to update: the new records first, straight from the rows
        // read again (PostgreSQL copies them, and when a key was taken meanwhile undoes that
        // and goes the way below); the rows they do not account for (a key written since, a row
        // that no longer reads as validated) go through `chunk_rows` and the statements below,
        // as every row does when validation found records to update (binding a chunk's rows
        // twice made a merge of 1,000,000 rows, half of them updates, 1 s slower)
        let create_first = !t.has_uniques && !t.updates;
        let direct = match rows_read.filter(|_| create_first) {
            Some(read) => {
                let created = (*tx).create_from_read((id, from_row, to_row, org, entity, now), read).await?;
                if sqlite {
                    journal_created!(tx, id, last_id);
                }
                if let Some(n) = created {
                    res.created = n;
                    if n < res.rows {
                        (*tx).empty_chunk_table().await?;
                        (*tx).put_chunk_rows(read).await?;
                    }
                }
                created.is_some()
            }
            None => false,
        };
        // the same from staged rows (entities with files): the records are
        // created first, and the statements that journal and update look for the rows they
        // did not account for only when there are any
        let created_first = direct || (create_first && rows_read.is_none());
        if created_first && !direct {
            res.created = create_pending!(tx, sqlite, source, rec, (id, from_row, to_row, org, entity, now), last_id);
        }
        // rows are left to update, or to account for otherwise
        let rest = !created_first || res.created < res.rows;
        if let Some(read) = rows_read.filter(|_| !direct) {
            (*tx).empty_chunk_table().await?;
            (*tx).put_chunk_rows(read).await?;
            // the rows whose record no longer hashes as validated are written by nothing
            // below (`source` joins on the hash); they are named once the chunk has written
            // fewer rows than it has, or first when unique values are journaled by the row
            if t.has_uniques {
                res.failed += leave_out_unread!(tx, id, from_row, to_row);
            }
        }
        if t.has_uniques {
            // a unique value another record took since validation fails just that row
            chunk_exec!(tx, "INSERT INTO import_issues (import_id, row_number, kind, message, cells)
                 SELECT $1, s.row_number, 'failed', MIN(v.field || ': \"' || v.value || '\" is already used by ' || r.record_key), ''
                 FROM import_rows s
                 JOIN import_row_values v ON v.import_id = s.import_id AND v.row_number = s.row_number AND v.kind = 'unique'
                 JOIN record_unique_values u ON u.org_id = $4 AND u.entity = $5 AND u.field = v.field AND u.value = v.value
                 JOIN records r ON r.id = u.record_id
                 WHERE s.import_id = $1 AND s.row_number > $2 AND s.row_number <= $3 AND s.state = 'pending'
                   AND r.record_key <> s.record_key
                 GROUP BY s.row_number", (id, from_row, to_row, org, entity), "checking unique values");
            res.failed += fail_left_out!(tx, id, from_row, to_row);
        }
        // the journal first: before-images of the records about to change; only records
        // journaled here are updated below (on PostgreSQL another import may commit a record
        // in between, which this chunk then leaves alone and reports)
        let journaled_after: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM import_journal WHERE import_id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .context("finding the journal's end")?;
        let journaled = if !rest { 0 } else { chunk_exec!(tx, sqlx::AssertSqlSafe(format!("INSERT INTO import_journal (import_id, op, record_id, record_key, after_hash, before_data, before_hash,
                                         before_search, before_import_id, before_import_row, before_created_at,
                                         before_updated_at)
             SELECT $1, 'updated', r.id, r.record_key, s.row_hash, r.data, r.row_hash, r.search_text, r.import_id,
                    r.import_row, r.created_at, r.updated_at
             FROM {source} {by_key}
             WHERE s.import_id = $1 AND s.row_number > $2 AND s.row_number <= $3 AND s.state = 'pending'
               AND r.row_hash <> s.row_hash")), (id, from_row, to_row, org, entity), "journaling updates") };
        if t.has_uniques {
            chunk_exec!(tx, sqlx::AssertSqlSafe(format!("INSERT INTO import_journal_uniques (import_id, record_id, field, value)
                 SELECT $1, u.record_id, u.field, u.value
                 FROM import_rows s
                 {by_key}
                 JOIN record_unique_values u ON u.record_id = r.id
                 WHERE s.import_id = $1 AND s.row_number > $2 AND s.row_number <= $3 AND s.state = 'pending'
                   AND r.row_hash <> s.row_hash")), (id, from_row, to_row, org, entity), "journaling unique values");
        }
        if !created_first {
            res.created = create_pending!(tx, sqlite, source, rec, (id, from_row, to_row, org, entity, now), last_id);
        }
        // nothing journaled, nothing to update (an import of new records skips the statement).
        // The changes are found from the chunk's rows, as the journal found them (by key, one
        // probe a row), and the records then updated by id. `+r.id` keeps the journal's ids a
        // filter: as the index SQLite drove the join from, each journaled record looked for
        // its row by key among all of the chunk's staged rows, which have no index on the key
        // (2.6 s a chunk of 5,000; a merge of 1,000,000 rows, half of them updates, took 11
        // minutes)
        res.updated = if journaled == 0 { 0 } else { sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH changes AS MATERIALIZED (
                 SELECT r.id AS record_id, {rec}.data AS data, s.row_hash AS row_hash,
                        {rec}.search_text AS search_text, s.row_number AS row_number
                 FROM {source} {by_key}
                 WHERE s.import_id = $1 AND s.row_number > $2 AND s.row_number <= $3 AND s.state = 'pending'
                   AND r.row_hash <> s.row_hash
                   AND +r.id IN (SELECT j.record_id FROM import_journal j
                                 WHERE j.import_id = $1 AND j.seq > $7 AND j.op = 'updated'))
             UPDATE records SET data = changes.data, row_hash = changes.row_hash, search_text = changes.search_text,
                    import_id = $1, import_row = changes.row_number, updated_at = $6
             FROM changes
             WHERE records.id = changes.record_id",
        )))
        .bind(id)
        .bind(from_row)
        .bind(to_row)
        .bind(org)
        .bind(entity)
        .bind(now)
        .bind(journaled_after)
        .execute(&mut *tx)
        .await
        .context("updating records")?
        .rows_affected() as i64 };
        // every pending row of the chunk is now a record this chunk wrote; any other was
        // written since validation by someone else (another import of the same file, say):
        // it is left out saying who wrote it, so created + updated + left out = rows
        // (when every pending row was created or updated here, there is no other to look for)
        if rows_read.is_some() && !t.has_uniques && res.created + res.updated < res.rows - res.failed {
            res.failed += leave_out_unread!(tx, id, from_row, to_row);
        }
        if res.created + res.updated < res.rows - res.failed {
            chunk_exec!(tx, sqlx::AssertSqlSafe(format!("INSERT INTO import_issues (import_id, row_number, kind, message, cells)
                 SELECT $1, s.row_number, 'failed', 'row ' || CAST(s.row_number AS TEXT) || ': \"' || s.record_key
                        || '\" was written meanwhile '
                        || CASE WHEN r.import_id IS NULL THEN '' ELSE 'by import #' || CAST(r.import_id AS TEXT) || ' ' END
                        || CASE WHEN r.row_hash = s.row_hash THEN 'with these same values; nothing was left to write'
                                ELSE 'with other values; this row was not written' END, ''
                 FROM import_rows s {by_key}
                 WHERE s.import_id = $1 AND s.row_number > $2 AND s.row_number <= $3 AND s.state = 'pending'
                   AND NOT (r.import_id IS NOT NULL AND r.import_id = $1 AND r.import_row = s.row_number)")),
                (id, from_row, to_row, org, entity), "finding rows written meanwhile");
            res.failed += fail_left_out!(tx, id, from_row, to_row);
        }
        res.unchanged = res.rows - res.failed - res.created - res.updated;
        if t.has_uniques {
            chunk_exec!(tx, sqlx::AssertSqlSafe(format!("DELETE FROM record_unique_values WHERE record_id IN (
                   SELECT r.id FROM import_rows s
                   {by_key}
                   WHERE s.import_id = $1 AND s.row_number > $2 AND s.row_number <= $3 AND s.state = 'pending'
                     AND r.import_id = $1 AND r.import_row = s.row_number)")), (id, from_row, to_row, org, entity), "replacing unique values");
            chunk_exec!(tx, sqlx::AssertSqlSafe(format!("INSERT INTO record_unique_values (org_id, entity, field, value, record_id)
                 SELECT $4, $5, v.field, v.value, r.id
                 FROM import_row_values v
                 JOIN import_rows s ON s.import_id = v.import_id AND s.row_number = v.row_number
                 {by_key}
                 WHERE v.import_id = $1 AND v.kind = 'unique' AND v.row_number > $2 AND v.row_number <= $3
                   AND s.state = 'pending' AND r.import_id = $1 AND r.import_row = s.row_number")), (id, from_row, to_row, org, entity), "storing unique values");
        }
        sqlx::query(
            "UPDATE imports SET processed_rows = processed_rows + $2, created_rows = created_rows + $3,
                    updated_rows = updated_rows + $4, failed_rows = failed_rows + $5 WHERE id = $1",
        )
        .bind(id)
        .bind(res.rows)
        .bind(res.created)
        .bind(res.updated)
        .bind(res.failed)
        .execute(&mut *tx)
        .await
        .context("counting progress")?;
        crate::commit_bulk!(tx, cache).context("committing chunk")?;
        Ok(Some(res))
    })
}
