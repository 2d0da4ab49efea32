//! Shared by the benchmark binaries: the schema, the entities, the hand-written Diesel
//! insertables, one isolated database per benchmark on each enabled backend, a statement
//! counter for the sanity checks, and the raw SQLite C API baseline.
#![allow(dead_code)]

#[cfg(feature = "postgres")]
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use diesel::connection::{Instrumentation, InstrumentationEvent, LoadConnection};
use diesel::prelude::*;
use uow::prelude::*;

diesel::table! {
    items (id) {
        id -> Integer,
        name -> Text,
        qty -> BigInt,
    }
}

diesel::table! {
    authors (id) {
        id -> Integer,
        name -> Text,
    }
}

diesel::table! {
    books (id) {
        id -> Integer,
        author_id -> Integer,
        title -> Text,
    }
}

diesel::joinable!(books -> authors (author_id));
diesel::allow_tables_to_appear_in_same_query!(authors, books);

/// The entity of W1-W5: a generated key and two columns.
#[derive(Tracked, Queryable, Selectable, Clone, Debug, PartialEq)]
#[tracked(table = items)]
#[diesel(table_name = items)]
pub struct Item {
    #[tracked(generated)]
    pub id: i32,
    pub name: String,
    pub qty: i64,
}

/// The hand-written Diesel insertable. Diesel on SQLite sends a `Vec` of insertables as one
/// INSERT per row when a column may take its DEFAULT, and with the default
/// `treat_none_as_default_value = true` *every* derived column may (non-`Option` fields
/// included). Turning it off makes the batch one multi-row `INSERT ... VALUES (..), (..)`;
/// the sanity checks assert that.
#[derive(Insertable)]
#[diesel(table_name = items, treat_none_as_default_value = false)]
pub struct NewItem<'a> {
    pub name: &'a str,
    pub qty: i64,
}

impl<'a> From<&'a Item> for NewItem<'a> {
    fn from(item: &'a Item) -> Self {
        NewItem {
            name: &item.name,
            qty: item.qty,
        }
    }
}

/// The parent of W6.
#[derive(Tracked, Queryable, Selectable, Clone, Debug, PartialEq)]
#[tracked(table = authors)]
#[diesel(table_name = authors)]
pub struct Author {
    #[tracked(generated)]
    pub id: i32,
    pub name: String,
}

/// The child of W6 (`books.author_id REFERENCES authors (id)`).
#[derive(Tracked, Queryable, Selectable, Clone, Debug, PartialEq)]
#[tracked(table = books, belongs_to(Author, foreign_key = author_id))]
#[diesel(table_name = books)]
pub struct Book {
    #[tracked(generated)]
    pub id: i32,
    pub author_id: i32,
    pub title: String,
}

#[derive(Insertable)]
#[diesel(table_name = authors, treat_none_as_default_value = false)]
pub struct NewAuthor<'a> {
    pub name: &'a str,
}

#[derive(Insertable)]
#[diesel(table_name = books, treat_none_as_default_value = false)]
pub struct NewBook<'a> {
    pub author_id: i32,
    pub title: &'a str,
}

/// `count` new items, keys not assigned yet.
pub fn new_items(count: usize) -> Vec<Item> {
    (0..count)
        .map(|i| Item {
            id: 0,
            name: format!("item {i}"),
            qty: i as i64,
        })
        .collect()
}

/// A database of its own for one benchmark, with the schema created and its tables empty;
/// dropped (PostgreSQL schema) when the value is.
pub struct BenchDb<C> {
    pub conn: C,
    cleanup: Option<Box<dyn FnOnce() + Send>>,
}

impl<C> Drop for BenchDb<C> {
    fn drop(&mut self) {
        if let Some(cleanup) = self.cleanup.take() {
            cleanup();
        }
    }
}

/// A backend the benchmarks run on.
pub trait BenchBackend: Connection + LoadConnection + Sized + 'static {
    /// Short name, part of every benchmark group's name.
    const NAME: &'static str;
    /// A fresh isolated database with the schema.
    fn open() -> BenchDb<Self>;
    /// Empties every table and restarts the generated keys.
    const RESET: &'static str;
}

#[cfg(feature = "postgres")]
static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn exec<C: Connection>(conn: &mut C, sql: &str) {
    if let Err(e) = conn.batch_execute(sql) {
        panic!("benchmark setup statement failed: {e}\n{sql}");
    }
}

impl<C: BenchBackend> BenchDb<C> {
    /// Runs statements without values (DDL, reset).
    pub fn exec(&mut self, sql: &str) {
        exec(&mut self.conn, sql);
    }

    /// Empties every table.
    pub fn reset(&mut self) {
        exec(&mut self.conn, C::RESET);
    }
}

const SQLITE_SCHEMA: &str = "
    PRAGMA foreign_keys = ON;
    CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty BIGINT NOT NULL);
    CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
    CREATE TABLE books (id INTEGER PRIMARY KEY,
        author_id INTEGER NOT NULL REFERENCES authors (id), title TEXT NOT NULL);
    CREATE INDEX books_author ON books (author_id);
";

impl BenchBackend for diesel::SqliteConnection {
    const NAME: &'static str = "sqlite";
    const RESET: &'static str = "DELETE FROM books; DELETE FROM authors; DELETE FROM items;";

    fn open() -> BenchDb<Self> {
        let mut conn = match diesel::SqliteConnection::establish(":memory:") {
            Ok(conn) => conn,
            Err(e) => panic!("cannot open an in-memory SQLite database: {e}"),
        };
        exec(&mut conn, SQLITE_SCHEMA);
        BenchDb {
            conn,
            cleanup: None,
        }
    }
}

#[cfg(feature = "postgres")]
pub const POSTGRES_URL_VAR: &str = "UOW_TEST_POSTGRES_URL";
#[cfg(feature = "postgres")]
pub const POSTGRES_URL_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";

#[cfg(feature = "postgres")]
impl BenchBackend for diesel::PgConnection {
    const NAME: &'static str = "postgres";
    const RESET: &'static str = "TRUNCATE books, authors, items RESTART IDENTITY";

    fn open() -> BenchDb<Self> {
        let url =
            std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| POSTGRES_URL_DEFAULT.to_string());
        let connect = |url: &str| match diesel::PgConnection::establish(url) {
            Ok(conn) => conn,
            Err(e) => panic!(
                "the `postgres` feature is on but PostgreSQL at {url} cannot be reached ({e}); \
                 start the server or set {POSTGRES_URL_VAR} to its URL"
            ),
        };
        let schema = format!(
            "uow_bench_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = connect(&url);
        exec(
            &mut conn,
            &format!(
                "CREATE SCHEMA {schema}; SET search_path TO {schema};
                 CREATE TABLE items (id SERIAL PRIMARY KEY, name TEXT NOT NULL,
                     qty BIGINT NOT NULL);
                 CREATE TABLE authors (id SERIAL PRIMARY KEY, name TEXT NOT NULL);
                 CREATE TABLE books (id SERIAL PRIMARY KEY,
                     author_id INTEGER NOT NULL REFERENCES authors (id), title TEXT NOT NULL);
                 CREATE INDEX books_author ON books (author_id);"
            ),
        );
        BenchDb {
            conn,
            cleanup: Some(Box::new(move || {
                let mut admin = connect(&url);
                let _ = diesel::connection::SimpleConnection::batch_execute(
                    &mut admin,
                    &format!("DROP SCHEMA {schema} CASCADE"),
                );
            })),
        }
    }
}

/// W2's commit by hand as one statement on PostgreSQL, the fastest found: every row's key and
/// new `qty` bound as two arrays (`items.id` is `int4`, `qty` `int8`) and joined to the table,
/// so the whole commit is one round trip whatever the number of rows and the statement's text
/// never changes. The query alone, for Diesel (`diesel::query_dsl::methods::ExecuteDsl`) and
/// diesel-async (`diesel_async::RunQueryDsl`) alike.
#[cfg(feature = "postgres")]
pub fn update_qty_from_unnest_query(
    rows: &[Item],
) -> impl diesel::query_builder::QueryFragment<diesel::pg::Pg>
       + diesel::query_builder::QueryId
       + Send
       + 'static {
    use diesel::sql_types::{Array, BigInt, Integer};
    let ids: Vec<i32> = rows.iter().map(|r| r.id).collect();
    let qtys: Vec<i64> = rows.iter().map(|r| r.qty).collect();
    diesel::sql_query(
        "UPDATE items SET qty = v.qty \
         FROM unnest($1::int4[], $2::int8[]) AS v (id, qty) WHERE items.id = v.id",
    )
    .bind::<Array<Integer>, _>(ids)
    .bind::<Array<BigInt>, _>(qtys)
}

/// PostgreSQL through diesel-async (`benches/async_workloads.rs`): a schema of its own made
/// and dropped by a [`BenchDb<PgConnection>`](BenchDb), and an `AsyncPgConnection` set to it.
#[cfg(all(feature = "async", feature = "postgres"))]
pub mod on_async {
    use diesel::prelude::*;
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

    use super::{BenchBackend, BenchDb, StatementLog, POSTGRES_URL_DEFAULT, POSTGRES_URL_VAR};

    /// An async connection on a schema of its own with the benchmark tables, empty; the schema
    /// is dropped when the value is (after the async connection is closed).
    pub struct AsyncBenchDb {
        pub conn: AsyncPgConnection,
        /// The synchronous connection that made the schema; dropping it drops the schema.
        _schema: BenchDb<PgConnection>,
    }

    impl AsyncBenchDb {
        /// Must run inside a tokio runtime (the connection's task is spawned on it).
        pub async fn open() -> Self {
            let mut schema_db = <PgConnection as BenchBackend>::open();
            let schema: String = match diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(
                "current_schema()",
            ))
            .get_result(&mut schema_db.conn)
            {
                Ok(schema) => schema,
                Err(e) => panic!("current_schema(): {e}"),
            };
            let url = std::env::var(POSTGRES_URL_VAR)
                .unwrap_or_else(|_| POSTGRES_URL_DEFAULT.to_string());
            let mut conn = match AsyncPgConnection::establish(&url).await {
                Ok(conn) => conn,
                Err(e) => panic!("diesel-async cannot reach PostgreSQL at {url}: {e}"),
            };
            let mut db = AsyncBenchDb {
                conn: match conn
                    .batch_execute(&format!("SET search_path TO {schema}"))
                    .await
                {
                    Ok(()) => conn,
                    Err(e) => panic!("SET search_path: {e}"),
                },
                _schema: schema_db,
            };
            db.exec(<PgConnection as BenchBackend>::RESET).await;
            db
        }

        /// Runs statements without values (DDL, reset).
        pub async fn exec(&mut self, sql: &str) {
            if let Err(e) = self.conn.batch_execute(sql).await {
                panic!("benchmark setup statement failed: {e}\n{sql}");
            }
        }

        /// Empties every table and restarts the generated keys.
        pub async fn reset(&mut self) {
            self.exec(<PgConnection as BenchBackend>::RESET).await;
        }
    }

    impl StatementLog {
        /// [`StatementLog::attach`] for a diesel-async connection (same instrumentation).
        pub fn attach_async<C: AsyncConnection>(conn: &mut C) -> Self {
            let log = StatementLog::default();
            conn.set_instrumentation(log.clone());
            log
        }
    }
}

/// Counts the statements Diesel sends (transaction control included), for the sanity checks
/// that run before each benchmark, on a connection of their own.
#[derive(Clone, Default)]
pub struct StatementLog(Arc<Mutex<Vec<String>>>);

impl StatementLog {
    pub fn attach<C: Connection>(conn: &mut C) -> Self {
        let log = StatementLog::default();
        conn.set_instrumentation(log.clone());
        log
    }

    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The INSERT, UPDATE and DELETE statements sent since the last `take`.
    pub fn take_writes(&self) -> Vec<String> {
        self.take()
            .into_iter()
            .filter(|s| {
                let s = s.trim_start().to_ascii_uppercase();
                // uow's PostgreSQL INSERT of rows with generated keys is a CTE that numbers
                // them, and its batched UPDATE reads its rows from a CTE; values are bound, so
                // the keywords are the statement's own.
                s.starts_with("INSERT")
                    || s.starts_with("UPDATE")
                    || s.starts_with("DELETE")
                    || (s.starts_with("WITH")
                        && (s.contains("INSERT INTO") || s.contains(" UPDATE ")))
            })
            .collect()
    }
}

impl Instrumentation for StatementLog {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            let sql = query.to_string();
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(sql);
        }
    }
}

/// The physical limit: SQLite's C API (the same bundled library Diesel links), one prepared
/// statement stepped once per row inside one transaction.
pub mod raw {
    use std::ffi::{c_int, CStr};
    use std::ptr;

    use libsqlite3_sys as ffi;

    use super::Item;

    /// An in-memory database opened with `sqlite3_open_v2`.
    pub struct RawSqlite(*mut ffi::sqlite3);

    impl Drop for RawSqlite {
        fn drop(&mut self) {
            // SAFETY: the handle came from sqlite3_open_v2 and every statement was finalized.
            unsafe {
                ffi::sqlite3_close(self.0);
            }
        }
    }

    fn check(db: *mut ffi::sqlite3, rc: c_int, what: &str) {
        if rc != ffi::SQLITE_OK && rc != ffi::SQLITE_DONE && rc != ffi::SQLITE_ROW {
            // SAFETY: sqlite3_errmsg returns a NUL-terminated string owned by the handle.
            let message = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db)) };
            panic!("raw SQLite {what} failed ({rc}): {message:?}");
        }
    }

    impl RawSqlite {
        pub fn open() -> Self {
            let mut db = ptr::null_mut();
            let flags = ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE;
            // SAFETY: a valid NUL-terminated file name and out pointer.
            let rc =
                unsafe { ffi::sqlite3_open_v2(c":memory:".as_ptr(), &mut db, flags, ptr::null()) };
            check(db, rc, "open");
            let raw = RawSqlite(db);
            raw.exec(c"CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty BIGINT NOT NULL)");
            raw
        }

        pub fn exec(&self, sql: &CStr) {
            // SAFETY: valid handle and NUL-terminated SQL; no callback.
            let rc = unsafe {
                ffi::sqlite3_exec(self.0, sql.as_ptr(), None, ptr::null_mut(), ptr::null_mut())
            };
            check(self.0, rc, "exec");
        }

        /// Inserts `rows` with one prepared statement in one transaction, reading each
        /// generated key back into `ids` (as the unit of work does).
        pub fn insert(&self, rows: &[Item], ids: &mut Vec<i64>) {
            let sql = c"INSERT INTO items (name, qty) VALUES (?1, ?2)";
            self.exec(c"BEGIN");
            let mut stmt = ptr::null_mut();
            // SAFETY: valid handle, NUL-terminated SQL, out pointer; the statement is
            // finalized below; bound text outlives each step (SQLITE_STATIC is sound because
            // the value is only read until the next sqlite3_reset/bind).
            unsafe {
                let rc =
                    ffi::sqlite3_prepare_v2(self.0, sql.as_ptr(), -1, &mut stmt, ptr::null_mut());
                check(self.0, rc, "prepare");
                for row in rows {
                    let name = row.name.as_bytes();
                    let rc = ffi::sqlite3_bind_text(
                        stmt,
                        1,
                        name.as_ptr().cast(),
                        name.len() as c_int,
                        ffi::SQLITE_STATIC(),
                    );
                    check(self.0, rc, "bind");
                    check(self.0, ffi::sqlite3_bind_int64(stmt, 2, row.qty), "bind");
                    check(self.0, ffi::sqlite3_step(stmt), "step");
                    ids.push(ffi::sqlite3_last_insert_rowid(self.0));
                    check(self.0, ffi::sqlite3_reset(stmt), "reset");
                }
                ffi::sqlite3_finalize(stmt);
            }
            self.exec(c"COMMIT");
        }

        /// What the unit of work sends, through the C API: multi-row `INSERT .. RETURNING id`
        /// in batches of at most `batch` rows in one transaction, each batch size prepared
        /// once, the returned keys read into `ids`.
        pub fn insert_returning(&self, rows: &[Item], batch: usize, ids: &mut Vec<i64>) {
            self.exec(c"BEGIN");
            let mut prepared: Option<(usize, *mut ffi::sqlite3_stmt)> = None;
            for chunk in rows.chunks(batch.max(1)) {
                let stmt = match prepared {
                    Some((len, stmt)) if len == chunk.len() => stmt,
                    _ => {
                        if let Some((_, old)) = prepared.take() {
                            // SAFETY: a statement prepared below and not used after this.
                            unsafe { ffi::sqlite3_finalize(old) };
                        }
                        let values = vec!["(?, ?)"; chunk.len()].join(", ");
                        let sql = std::ffi::CString::new(format!(
                            "INSERT INTO items (name, qty) VALUES {values} RETURNING id"
                        ))
                        .unwrap_or_default();
                        let mut stmt = ptr::null_mut();
                        // SAFETY: valid handle, NUL-terminated SQL, out pointer.
                        let rc = unsafe {
                            ffi::sqlite3_prepare_v2(
                                self.0,
                                sql.as_ptr(),
                                -1,
                                &mut stmt,
                                ptr::null_mut(),
                            )
                        };
                        check(self.0, rc, "prepare");
                        prepared = Some((chunk.len(), stmt));
                        stmt
                    }
                };
                // SAFETY: as in `insert`: the bound text outlives the steps of this batch.
                unsafe {
                    for (i, row) in chunk.iter().enumerate() {
                        let name = row.name.as_bytes();
                        let at = 2 * i as c_int;
                        let rc = ffi::sqlite3_bind_text(
                            stmt,
                            at + 1,
                            name.as_ptr().cast(),
                            name.len() as c_int,
                            ffi::SQLITE_STATIC(),
                        );
                        check(self.0, rc, "bind");
                        check(
                            self.0,
                            ffi::sqlite3_bind_int64(stmt, at + 2, row.qty),
                            "bind",
                        );
                    }
                    loop {
                        let rc = ffi::sqlite3_step(stmt);
                        check(self.0, rc, "step");
                        if rc != ffi::SQLITE_ROW {
                            break;
                        }
                        ids.push(ffi::sqlite3_column_int64(stmt, 0));
                    }
                    check(self.0, ffi::sqlite3_reset(stmt), "reset");
                }
            }
            if let Some((_, stmt)) = prepared {
                // SAFETY: finalized once, not used after.
                unsafe { ffi::sqlite3_finalize(stmt) };
            }
            self.exec(c"COMMIT");
        }

        /// `UPDATE items SET qty = ?1 WHERE id = ?2` for each row, one prepared statement in
        /// one transaction; returns the number of rows changed.
        pub fn update_qty(&self, rows: &[Item]) -> usize {
            let sql = c"UPDATE items SET qty = ?1 WHERE id = ?2";
            let mut changed = 0;
            self.exec(c"BEGIN");
            let mut stmt = ptr::null_mut();
            // SAFETY: as in `insert`; only integers are bound.
            unsafe {
                let rc =
                    ffi::sqlite3_prepare_v2(self.0, sql.as_ptr(), -1, &mut stmt, ptr::null_mut());
                check(self.0, rc, "prepare");
                for row in rows {
                    check(self.0, ffi::sqlite3_bind_int64(stmt, 1, row.qty), "bind");
                    check(self.0, ffi::sqlite3_bind_int(stmt, 2, row.id), "bind");
                    check(self.0, ffi::sqlite3_step(stmt), "step");
                    changed += ffi::sqlite3_changes(self.0) as usize;
                    check(self.0, ffi::sqlite3_reset(stmt), "reset");
                }
                ffi::sqlite3_finalize(stmt);
            }
            self.exec(c"COMMIT");
            changed
        }

        /// Number of rows in `items`.
        pub fn count(&self) -> i64 {
            let mut stmt = ptr::null_mut();
            // SAFETY: as in `insert`.
            unsafe {
                let rc = ffi::sqlite3_prepare_v2(
                    self.0,
                    c"SELECT count(*) FROM items".as_ptr(),
                    -1,
                    &mut stmt,
                    ptr::null_mut(),
                );
                check(self.0, rc, "prepare");
                check(self.0, ffi::sqlite3_step(stmt), "step");
                let count = ffi::sqlite3_column_int64(stmt, 0);
                ffi::sqlite3_finalize(stmt);
                count
            }
        }
    }
}
