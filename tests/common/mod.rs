//! Test harness shared by the integration tests: isolated databases on every enabled backend,
//! the test schema, and a statement log built on Diesel's `Instrumentation`.
//!
//! Each behaviour is written once inside `backend_tests!`, which expands it into one `#[test]`
//! per enabled backend (`sqlite::name`, `postgres::name`, `mysql::name`). Every test gets its
//! own database: a SQLite file in a fresh temporary directory, a fresh PostgreSQL schema, or a
//! fresh MySQL database, so tests run in parallel and in any order. A backend whose feature is on but whose
//! server cannot be reached fails the test with a message naming the variable to set.
#![allow(dead_code)]

#[cfg(feature = "async")]
pub mod on_async;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use diesel::connection::{Instrumentation, InstrumentationEvent, LoadConnection};
use diesel::prelude::*;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

diesel::table! {
    accounts (id) {
        id -> Integer,
        owner -> Text,
        balance -> BigInt,
        note -> Nullable<Text>,
    }
}

diesel::table! {
    tags (code) {
        code -> Text,
        label -> Text,
    }
}

diesel::table! {
    memberships (user_id, group_id) {
        user_id -> Integer,
        group_id -> Integer,
        role -> Text,
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

diesel::table! {
    nodes (id) {
        id -> Integer,
        parent_id -> Nullable<Integer>,
        name -> Text,
    }
}

diesel::table! {
    ledger (id) {
        id -> Integer,
        owner -> Text,
        balance -> BigInt,
        version -> Integer,
    }
}

diesel::table! {
    products (sku) {
        sku -> Text,
        available -> Integer,
        version -> Integer,
    }
}

diesel::table! {
    allocations (id) {
        id -> Integer,
        sku -> Text,
        qty -> Integer,
    }
}

diesel::table! {
    teams (id) {
        id -> Integer,
        name -> Text,
    }
}

diesel::table! {
    players (id) {
        id -> Integer,
        team_id -> Integer,
        name -> Text,
    }
}

diesel::table! {
    transfers (id) {
        id -> Integer,
        from_id -> Integer,
        to_id -> Integer,
        amount -> BigInt,
    }
}

diesel::table! {
    stamps (code) {
        code -> Text,
        seq -> Integer,
        note -> Text,
    }
}

diesel::joinable!(books -> authors (author_id));
diesel::allow_tables_to_appear_in_same_query!(authors, books);

/// A new database of one backend, dropped when the value is.
pub struct TestDb<C: Connection> {
    pub conn: C,
    /// Connects again to the same isolated database (for a second session).
    reconnect: Box<dyn Fn() -> C>,
    cleanup: Option<Box<dyn FnOnce()>>,
    pub log: StatementLog,
    /// Where the test's database is.
    pub target: Target,
}

impl<C: Connection> Drop for TestDb<C> {
    fn drop(&mut self) {
        if let Some(cleanup) = self.cleanup.take() {
            cleanup();
        }
    }
}

impl<C: Connection + LoadConnection + 'static> TestDb<C> {
    /// Another connection to this test's database.
    pub fn connect(&self) -> C {
        (self.reconnect)()
    }

    /// Runs DDL or other statements without values.
    pub fn exec(&mut self, sql: &str) {
        if let Err(e) = self.conn.batch_execute(sql) {
            panic!("test setup statement failed: {e}\n{sql}");
        }
    }

    /// A connection to this test's database on another node of the Galera cluster (`node`: a
    /// URL of `galera_urls`), with causal reads (`wsrep_sync_wait = 1`: a read waits until the
    /// node has applied every transaction the cluster committed before it). The database was
    /// made on the first node; another node may take a moment to apply it.
    #[cfg(feature = "galera")]
    pub fn connect_to_node(&self, node: &str) -> C
    where
        C: TestBackend,
    {
        let url = on_node(&self.target.url, node);
        let mut setup = self.target.setup.clone();
        setup.push("SET SESSION wsrep_sync_wait = 1".into());
        let target = Target { url, setup };
        for _ in 0..100 {
            if diesel::MysqlConnection::establish(&target.url).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        C::connect(&target)
    }

    /// Whether uow sends one INSERT per row with a generated key here: on a Galera node
    /// (AUTO_INCREMENT lock mode 2, whose keys MariaDB returns only to the async driver).
    pub fn inserts_row_by_row(&self) -> bool {
        #[cfg(feature = "galera")]
        {
            let on_galera = galera_urls()
                .iter()
                .any(|node| on_node(&self.target.url, node) == self.target.url);
            on_galera && !std::any::type_name::<C>().contains("Async")
        }
        #[cfg(not(feature = "galera"))]
        false
    }

    /// Starts recording the statements sent on `conn` from now on.
    pub fn record(&mut self) -> StatementLog {
        let log = StatementLog::default();
        self.conn.set_instrumentation(log.clone());
        self.log = log.clone();
        log
    }
}

/// Which backend a test runs on, for the few setup statements whose syntax differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
    Mysql,
}

/// A connection type the tests can run on.
pub trait TestBackend: Connection + LoadConnection + Sized + 'static {
    const KIND: Kind;

    /// Makes a new database (or schema) of this backend for one test.
    fn isolate() -> Isolated;

    /// Connects to `target`.
    fn connect(target: &Target) -> Self;

    /// A connection to a new isolated database, dropped with the returned value.
    fn open_isolated() -> TestDb<Self> {
        let Isolated { target, cleanup } = Self::isolate();
        let reached = target.clone();
        let connect = move || Self::connect(&reached);
        TestDb {
            conn: connect(),
            reconnect: Box::new(connect),
            cleanup: Some(cleanup),
            log: StatementLog::default(),
            target,
        }
    }
}

/// Where a test's database is: its URL, and the statements each connection starts with.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    pub setup: Vec<String>,
}

/// A test's database, and how to remove it.
pub struct Isolated {
    pub target: Target,
    pub cleanup: Box<dyn FnOnce()>,
}

/// Runs `target`'s setup statements on a new connection.
fn set_up<C: Connection>(mut conn: C, target: &Target) -> C {
    for statement in &target.setup {
        if let Err(e) = conn.batch_execute(statement) {
            panic!("connection setup failed: {e}\n{statement}");
        }
    }
    conn
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique_name() -> String {
    format!(
        "uow_t_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(feature = "sqlite")]
impl TestBackend for diesel::SqliteConnection {
    const KIND: Kind = Kind::Sqlite;

    fn isolate() -> Isolated {
        // A file, not `:memory:`, so a second connection sees the same database.
        let dir = std::env::temp_dir().join(unique_name());
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create {}: {e}", dir.display());
        }
        Isolated {
            target: Target {
                url: dir.join("test.db").to_string_lossy().into_owned(),
                setup: vec![
                    "PRAGMA foreign_keys = ON".into(),
                    "PRAGMA busy_timeout = 5000".into(),
                ],
            },
            cleanup: Box::new(move || {
                let _ = std::fs::remove_dir_all(&dir);
            }),
        }
    }

    fn connect(target: &Target) -> Self {
        match diesel::SqliteConnection::establish(&target.url) {
            Ok(conn) => set_up(conn, target),
            Err(e) => panic!("cannot open SQLite database {}: {e}", target.url),
        }
    }
}

#[cfg(feature = "postgres")]
pub const POSTGRES_URL_VAR: &str = "UOW_TEST_POSTGRES_URL";
#[cfg(feature = "postgres")]
pub const POSTGRES_URL_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";

#[cfg(feature = "postgres")]
fn postgres(url: &str) -> diesel::PgConnection {
    match diesel::PgConnection::establish(url) {
        Ok(conn) => conn,
        Err(e) => panic!(
            "the `postgres` feature is on but PostgreSQL at {url} cannot be reached ({e}); \
             start the server or set {POSTGRES_URL_VAR} to its URL"
        ),
    }
}

#[cfg(feature = "postgres")]
impl TestBackend for diesel::PgConnection {
    const KIND: Kind = Kind::Postgres;

    fn isolate() -> Isolated {
        let url =
            std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| POSTGRES_URL_DEFAULT.to_string());
        let schema = unique_name();
        if let Err(e) =
            diesel::sql_query(format!("CREATE SCHEMA {schema}")).execute(&mut postgres(&url))
        {
            panic!("cannot create schema {schema}: {e}");
        }
        Isolated {
            target: Target {
                url: url.clone(),
                setup: vec![format!("SET search_path TO {schema}")],
            },
            cleanup: Box::new(move || {
                if let Ok(mut admin) = diesel::PgConnection::establish(&url) {
                    let _ = diesel::sql_query(format!("DROP SCHEMA {schema} CASCADE"))
                        .execute(&mut admin);
                }
            }),
        }
    }

    fn connect(target: &Target) -> Self {
        set_up(postgres(&target.url), target)
    }
}

#[cfg(feature = "mysql")]
pub const MYSQL_URL_VAR: &str = "UOW_TEST_MYSQL_URL";
#[cfg(feature = "mysql")]
pub const MYSQL_URL_DEFAULT: &str = "mysql://root@127.0.0.1:3306/test";

#[cfg(feature = "mysql")]
thread_local! {
    /// The MySQL server this thread's next isolated database is made on, when it is not the
    /// one `UOW_TEST_MYSQL_URL` names (a Galera node: [`open_on_galera`]).
    static MYSQL_SERVER: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// A test's database opened the usual way (`C::open_isolated`).
pub fn open_isolated<C: TestBackend>() -> TestDb<C> {
    C::open_isolated()
}

#[cfg(feature = "galera")]
pub const GALERA_URLS_VAR: &str = "UOW_TEST_GALERA_URLS";
#[cfg(feature = "galera")]
pub const GALERA_URLS_DEFAULT: &str = "mysql://root@127.0.0.1:3316/test \
    mysql://root@127.0.0.1:3326/test mysql://root@127.0.0.1:3336/test";

/// The URLs of the Galera cluster's nodes (`scripts/galera.sh urls`), from
/// `UOW_TEST_GALERA_URLS` (separated by spaces) or the script's defaults.
#[cfg(feature = "galera")]
pub fn galera_urls() -> Vec<String> {
    let urls = std::env::var(GALERA_URLS_VAR).unwrap_or_else(|_| GALERA_URLS_DEFAULT.to_string());
    urls.split_whitespace().map(str::to_string).collect()
}

/// A test's database made on the first node of the Galera cluster (it replicates to the
/// others): the MySQL tests' bodies, run against a cluster node.
#[cfg(feature = "galera")]
pub fn open_on_galera<C: TestBackend>() -> TestDb<C> {
    let Some(first) = galera_urls().into_iter().next() else {
        panic!("{GALERA_URLS_VAR} names no node");
    };
    MYSQL_SERVER.with(|server| *server.borrow_mut() = Some(first));
    let db = C::open_isolated();
    MYSQL_SERVER.with(|server| *server.borrow_mut() = None);
    db
}

/// `url` with the server part of `node` (`mysql://user@host:port`): the same database on
/// another node of the cluster.
#[cfg(feature = "galera")]
pub fn on_node(url: &str, node: &str) -> String {
    let server = |u: &str| -> usize {
        match u.rfind('/') {
            Some(i) if i > "mysql://".len() => i,
            _ => u.len(),
        }
    };
    format!("{}{}", &node[..server(node)], &url[server(url)..])
}

#[cfg(feature = "mysql")]
fn mysql(url: &str) -> diesel::MysqlConnection {
    match diesel::MysqlConnection::establish(url) {
        Ok(conn) => conn,
        Err(e) => panic!(
            "the `mysql` feature is on but MySQL/MariaDB at {url} cannot be reached ({e}); \
             start the server or set {MYSQL_URL_VAR} to its URL"
        ),
    }
}

#[cfg(feature = "mysql")]
impl TestBackend for diesel::MysqlConnection {
    const KIND: Kind = Kind::Mysql;

    fn isolate() -> Isolated {
        let url = MYSQL_SERVER
            .with(|server| server.borrow().clone())
            .unwrap_or_else(|| {
                std::env::var(MYSQL_URL_VAR).unwrap_or_else(|_| MYSQL_URL_DEFAULT.to_string())
            });
        let database = unique_name();
        if let Err(e) =
            diesel::sql_query(format!("CREATE DATABASE {database}")).execute(&mut mysql(&url))
        {
            panic!("cannot create database {database}: {e}");
        }
        // Same server, the new database: replace the path of the URL.
        let base = match url.rfind('/') {
            Some(i) if i > "mysql://".len() => &url[..i],
            _ => url.as_str(),
        };
        Isolated {
            target: Target {
                url: format!("{base}/{database}"),
                setup: Vec::new(),
            },
            cleanup: Box::new(move || {
                if let Ok(mut admin) = diesel::MysqlConnection::establish(&url) {
                    let _ =
                        diesel::sql_query(format!("DROP DATABASE {database}")).execute(&mut admin);
                }
            }),
        }
    }

    fn connect(target: &Target) -> Self {
        set_up(mysql(&target.url), target)
    }
}

/// The async driver's connections: the same databases, reached through diesel-async.
#[cfg(feature = "async")]
macro_rules! async_test_backend {
    ($feature:literal, $async_conn:ty, $sync_conn:ty) => {
        #[cfg(feature = $feature)]
        impl TestBackend for on_async::AsyncConnectionWrapper<$async_conn> {
            const KIND: Kind = <$sync_conn as TestBackend>::KIND;

            fn isolate() -> Isolated {
                <$sync_conn as TestBackend>::isolate()
            }

            fn connect(target: &Target) -> Self {
                set_up(on_async::connect::<$async_conn>(&target.url), target)
            }
        }
    };
}

#[cfg(feature = "async")]
async_test_backend!(
    "sqlite",
    diesel_async::sync_connection_wrapper::SyncConnectionWrapper<diesel::SqliteConnection>,
    diesel::SqliteConnection
);
#[cfg(feature = "async")]
async_test_backend!(
    "postgres",
    diesel_async::AsyncPgConnection,
    diesel::PgConnection
);
#[cfg(feature = "async")]
async_test_backend!(
    "mysql",
    diesel_async::AsyncMysqlConnection,
    diesel::MysqlConnection
);

/// Creates the test tables (and the trigger used for failure injection) in `db`.
///
/// `accounts.balance` has `CHECK (balance >= 0)`; deleting an account whose owner is
/// `'locked'` fails in a trigger.
pub fn create_schema<C: TestBackend>(db: &mut TestDb<C>) {
    let (serial, text_key) = match C::KIND {
        Kind::Sqlite => ("INTEGER PRIMARY KEY", "TEXT"),
        Kind::Postgres => ("SERIAL PRIMARY KEY", "TEXT"),
        Kind::Mysql => ("INTEGER AUTO_INCREMENT PRIMARY KEY", "VARCHAR(100)"),
    };
    let text = if C::KIND == Kind::Mysql {
        "VARCHAR(255)"
    } else {
        "TEXT"
    };
    db.exec(&format!(
        "CREATE TABLE accounts (id {serial}, owner {text} NOT NULL, \
         balance BIGINT NOT NULL CHECK (balance >= 0), note {text})"
    ));
    db.exec(&format!(
        "CREATE TABLE tags (code {text_key} PRIMARY KEY, label {text} NOT NULL UNIQUE)"
    ));
    db.exec(&format!(
        "CREATE TABLE memberships (user_id INTEGER NOT NULL, group_id INTEGER NOT NULL, \
         role {text} NOT NULL CHECK (role <> ''), PRIMARY KEY (user_id, group_id))"
    ));
    db.exec(&format!(
        "CREATE TABLE authors (id {serial}, name {text} NOT NULL)"
    ));
    db.exec(&format!(
        "CREATE TABLE books (id {serial}, author_id INTEGER NOT NULL REFERENCES authors (id), \
         title {text} NOT NULL)"
    ));
    db.exec(&format!(
        "CREATE TABLE nodes (id {serial}, parent_id INTEGER REFERENCES nodes (id), \
         name {text} NOT NULL)"
    ));
    db.exec(&format!(
        "CREATE TABLE ledger (id {serial}, owner {text} NOT NULL, balance BIGINT NOT NULL, \
         version INTEGER NOT NULL)"
    ));
    db.exec(&format!(
        "CREATE TABLE products (sku {text_key} PRIMARY KEY, available INTEGER NOT NULL, \
         version INTEGER NOT NULL)"
    ));
    db.exec(&format!(
        "CREATE TABLE allocations (id {serial}, sku {text_key} NOT NULL REFERENCES products (sku), \
         qty INTEGER NOT NULL)"
    ));
    db.exec(&format!(
        "CREATE TABLE teams (id {serial}, name {text} NOT NULL UNIQUE)"
    ));
    db.exec(&format!(
        "CREATE TABLE players (id {serial}, team_id INTEGER NOT NULL REFERENCES teams (id), \
         name {text} NOT NULL)"
    ));
    db.exec(&format!(
        "CREATE TABLE transfers (id {serial}, from_id INTEGER NOT NULL REFERENCES accounts (id), \
         to_id INTEGER NOT NULL REFERENCES accounts (id), amount BIGINT NOT NULL)"
    ));
    db.exec(&format!(
        "CREATE TABLE stamps (code {text_key} PRIMARY KEY, seq INTEGER NOT NULL DEFAULT 7, \
         note {text} NOT NULL)"
    ));
    match C::KIND {
        Kind::Sqlite => db.exec(
            "CREATE TRIGGER accounts_locked BEFORE DELETE ON accounts WHEN OLD.owner = 'locked' \
             BEGIN SELECT RAISE(ABORT, 'account is locked'); END",
        ),
        Kind::Postgres => {
            db.exec(
                "CREATE FUNCTION accounts_locked() RETURNS trigger AS $$ BEGIN \
                 IF OLD.owner = 'locked' THEN RAISE EXCEPTION 'account is locked'; END IF; \
                 RETURN OLD; END $$ LANGUAGE plpgsql",
            );
            db.exec(
                "CREATE TRIGGER accounts_locked BEFORE DELETE ON accounts \
                 FOR EACH ROW EXECUTE FUNCTION accounts_locked()",
            );
        }
        Kind::Mysql => db.exec(
            "CREATE TRIGGER accounts_locked BEFORE DELETE ON accounts FOR EACH ROW BEGIN \
             IF OLD.owner = 'locked' THEN SIGNAL SQLSTATE '45000' \
             SET MESSAGE_TEXT = 'account is locked'; END IF; END",
        ),
    }
}

/// Statements sent on a connection, as Diesel's instrumentation reports them.
#[derive(Clone, Default)]
pub struct StatementLog(Arc<Mutex<Vec<String>>>);

impl StatementLog {
    /// Every statement so far, transaction control included.
    pub fn all(&self) -> Vec<String> {
        match self.0.lock() {
            Ok(v) => v.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The INSERT/UPDATE/DELETE statements so far.
    ///
    /// uow writes some statements with a CTE of bound rows first: PostgreSQL's INSERT of rows
    /// with generated keys (`WITH "__uow_rows" AS (..), "__uow_inserted" AS (INSERT INTO ..)
    /// SELECT ..`), and the batched UPDATE on PostgreSQL and SQLite (`WITH "__uow_v" (..) AS
    /// (VALUES ..) UPDATE ..`). Such a statement is shown from its `INSERT` or `UPDATE`, so
    /// checks of a statement's kind and table read the same on every backend (`all()` keeps
    /// the whole text).
    pub fn writes(&self) -> Vec<String> {
        self.all()
            .into_iter()
            .map(|s| {
                if !(s.starts_with("WITH ") && s.contains("__uow_")) {
                    return s;
                }
                let at = ["INSERT INTO", "UPDATE "]
                    .iter()
                    .filter_map(|k| s.find(k))
                    .min();
                at.map_or(s.clone(), |at| s[at..].to_string())
            })
            .filter(|s| {
                let s = s.trim_start().to_ascii_uppercase();
                s.starts_with("INSERT") || s.starts_with("UPDATE") || s.starts_with("DELETE")
            })
            .collect()
    }

    /// Adds a line of one's own, to see it in order with the statements.
    pub fn push(&self, line: impl Into<String>) {
        match self.0.lock() {
            Ok(mut v) => v.push(line.into()),
            Err(p) => p.into_inner().push(line.into()),
        }
    }

    pub fn clear(&self) {
        match self.0.lock() {
            Ok(mut v) => v.clear(),
            Err(p) => p.into_inner().clear(),
        }
    }
}

impl Instrumentation for StatementLog {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            let sql = query.to_string();
            match self.0.lock() {
                Ok(mut v) => v.push(sql),
                Err(p) => p.into_inner().push(sql),
            }
        }
    }
}

/// One backend's module of tests: `$module::name` for each body, when `$feature` is on
/// (and the other features in `[..]`), with the `use` items in `{..}`.
#[macro_export]
macro_rules! backend_module {
    ($feature:literal, $module:ident, $conn:ty; $($tests:tt)*) => {
        $crate::backend_module!(@sync [$feature] open(open_isolated) $module, $conn; $($tests)*);
    };
    (@sync [$($features:literal),*] open($open:ident) $module:ident, $conn:ty; $($tests:tt)*) => {
        $crate::backend_module!(@in [$($features),*] open($open) {
            use uow::Driver as UowDef;
            use common::Unbounded as UowConn;
            /// The unit of work type behind a scope's `Deref` (the same on this driver).
            type CoreUow<C> = uow::UnitOfWork<C>;
        } $module, $conn; $($tests)*);
    };
    (@in [$($features:literal),*] open($open:ident) {$($uses:item)*} $module:ident, $conn:ty;
        $(fn $name:ident($db:ident) $body:block)*) => {
        #[cfg(all($(feature = $features),*))]
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[allow(unused_imports, dead_code)]
                $uses
            )*
            #[allow(dead_code)]
            type Conn = $conn;
            $(
                #[test]
                fn $name() -> common::TestResult {
                    #[allow(unused_mut)]
                    let mut $db = common::$open::<Conn>();
                    common::create_schema(&mut $db);
                    $body
                }
            )*
        }
    };
}

/// One backend's module of tests on the async driver (see `on_async.rs`): the bodies of
/// `backend_module!`, with the unit of work's reads and writes going through uow's
/// `AsyncUnitOfWork` on a diesel-async connection.
#[macro_export]
macro_rules! async_backend_module {
    ($feature:literal, $module:ident, $conn:ty; $($tests:tt)*) => {
        $crate::async_backend_module!(@async ["async", $feature] open(open_isolated) $module, $conn; $($tests)*);
    };
    (@async [$($features:literal),*] open($open:ident) $module:ident, $conn:ty; $($tests:tt)*) => {
        $crate::backend_module!(@in [$($features),*] open($open) {
            use common::on_async as uow;
            use common::on_async::{Scope, UnitOfWork, Wrapped as UowConn, Wrapped as UowDef};
            /// The unit of work type behind a scope's `Deref`.
            type CoreUow<W> = ::uow::UnitOfWork<::uow::Async<<W as common::on_async::Wrapped>::Inner>>;
        } $module, common::on_async::AsyncConnectionWrapper<$conn>; $($tests)*);
    };
}

/// The bodies against the first node of the Galera cluster too (feature `galera`, the cluster
/// of `scripts/galera.sh`), on both drivers: `galera::name`, `galera_async::name`.
#[macro_export]
macro_rules! galera_tests {
    ($($tests:tt)*) => {
        $crate::backend_module!(@sync ["galera"] open(open_on_galera)
            galera, diesel::MysqlConnection; $($tests)*);
        $crate::async_backend_module!(@async ["async", "galera"] open(open_on_galera)
            galera_async, diesel_async::AsyncMysqlConnection; $($tests)*);
    };
}

/// `backend_tests!` and `galera_tests!`: the suites whose bodies also run on a cluster node.
#[macro_export]
macro_rules! backend_and_galera_tests {
    ($($tests:tt)*) => {
        $crate::backend_tests!($($tests)*);
        $crate::galera_tests!($($tests)*);
    };
}

/// Expands each test body into one `#[test]` per enabled backend, on the synchronous driver
/// and (feature `async`) on the asynchronous one. Inside a body, `Conn` is the connection type
/// and `$db` a fresh [`TestDb`] with the test schema created.
#[macro_export]
macro_rules! backend_tests {
    ($($tests:tt)*) => {
        $crate::backend_module!("sqlite", sqlite, diesel::SqliteConnection; $($tests)*);
        $crate::backend_module!("postgres", postgres, diesel::PgConnection; $($tests)*);
        $crate::backend_module!("mysql", mysql, diesel::MysqlConnection; $($tests)*);
        $crate::async_backend_tests!($($tests)*);
    };
}

/// The bodies on the async driver, on every backend: `Conn` wraps the async connection
/// (`on_async::Wrapped::inner` reaches it). `backend_tests!` uses it; alone, it is for
/// behaviours of the async driver only (cancellation).
#[macro_export]
macro_rules! async_backend_tests {
    ($($tests:tt)*) => {
        $crate::async_backend_module!("sqlite", sqlite_async,
            diesel_async::sync_connection_wrapper::SyncConnectionWrapper<diesel::SqliteConnection>;
            $($tests)*);
        $crate::async_backend_module!("postgres", postgres_async, diesel_async::AsyncPgConnection; $($tests)*);
        $crate::async_backend_module!("mysql", mysql_async, diesel_async::AsyncMysqlConnection; $($tests)*);
    };
}

/// The bodies on one backend only, on both drivers: `backend_tests_on!(mysql: sync_module,
/// async_module; fn .. )`.
#[macro_export]
macro_rules! backend_tests_on {
    (sqlite: $sync:ident, $async:ident; $($tests:tt)*) => {
        $crate::backend_module!("sqlite", $sync, diesel::SqliteConnection; $($tests)*);
        $crate::async_backend_module!("sqlite", $async,
            diesel_async::sync_connection_wrapper::SyncConnectionWrapper<diesel::SqliteConnection>;
            $($tests)*);
    };
    (postgres: $sync:ident, $async:ident; $($tests:tt)*) => {
        $crate::backend_module!("postgres", $sync, diesel::PgConnection; $($tests)*);
        $crate::async_backend_module!("postgres", $async, diesel_async::AsyncPgConnection; $($tests)*);
    };
    (mysql: $sync:ident, $async:ident; $($tests:tt)*) => {
        $crate::backend_module!("mysql", $sync, diesel::MysqlConnection; $($tests)*);
        $crate::async_backend_module!("mysql", $async, diesel_async::AsyncMysqlConnection; $($tests)*);
    };
}

/// Like `backend_tests!` on the synchronous driver only: for the few calls that exist only
/// there (each use says why).
#[macro_export]
macro_rules! sync_backend_tests {
    ($($tests:tt)*) => {
        $crate::backend_module!("sqlite", sqlite_sync_only, diesel::SqliteConnection; $($tests)*);
        $crate::backend_module!("postgres", postgres_sync_only, diesel::PgConnection; $($tests)*);
        $crate::backend_module!("mysql", mysql_sync_only, diesel::MysqlConnection; $($tests)*);
    };
}

/// No bound at all: in a synchronous test module, generic test code bounds a connection `C`
/// by what its calls need, and `UnitOfWork<C>`'s own bound follows from those; an explicit
/// `C: uow::Driver` there would hide that its backend is the connection's.
pub trait Unbounded {}

impl<T: ?Sized> Unbounded for T {}

/// A scope's connection for the body's own Diesel calls: `&mut C` on the synchronous driver,
/// a wrapper around the borrowed async connection on the async one.
pub trait ScopeConnection {
    type Conn: Connection;
    fn with<R>(self, f: impl FnOnce(&mut Self::Conn) -> R) -> R;
}

impl<C: Connection> ScopeConnection for &mut C {
    type Conn = C;
    fn with<R>(self, f: impl FnOnce(&mut C) -> R) -> R {
        f(self)
    }
}

#[cfg(feature = "async")]
impl<I> ScopeConnection for on_async::AsyncConnectionWrapper<&mut I>
where
    I: diesel_async::AsyncConnection + 'static,
    Self: Connection,
{
    type Conn = Self;
    fn with<R>(mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        f(&mut self)
    }
}

/// Opens a transaction level on a scope's connection behind uow's back.
pub fn begin_level(conn: impl ScopeConnection) -> diesel::QueryResult<()> {
    use diesel::connection::TransactionManager;
    fn begin<C: Connection>(conn: &mut C) -> diesel::QueryResult<()> {
        C::TransactionManager::begin_transaction(conn)
    }
    conn.with(begin)
}

/// Like `backend_tests!`, for behaviours that need a server's concurrent sessions
/// (PostgreSQL and MySQL/MariaDB only).
#[macro_export]
macro_rules! server_backend_tests {
    ($($tests:tt)*) => {
        $crate::backend_module!("postgres", postgres, diesel::PgConnection; $($tests)*);
        $crate::backend_module!("mysql", mysql, diesel::MysqlConnection; $($tests)*);
        $crate::async_backend_module!("postgres", postgres_async, diesel_async::AsyncPgConnection; $($tests)*);
        $crate::async_backend_module!("mysql", mysql_async, diesel_async::AsyncMysqlConnection; $($tests)*);
    };
}

use uow::prelude::*;

/// The main test entity: a generated key, a CHECKed balance, a nullable note.
#[derive(Tracked, Queryable, Selectable, Clone, Debug, PartialEq)]
#[tracked(table = accounts)]
#[diesel(table_name = accounts)]
pub struct Account {
    #[tracked(generated)]
    pub id: i32,
    pub owner: String,
    pub balance: i64,
    pub note: Option<String>,
}

pub fn account(owner: &str, balance: i64) -> Account {
    Account {
        id: 0,
        owner: owner.into(),
        balance,
        note: None,
    }
}

/// A key chosen in Rust (text), and a UNIQUE label.
#[derive(Tracked, Queryable, Selectable, Clone, Debug, PartialEq)]
#[tracked(table = tags)]
#[diesel(table_name = tags)]
pub struct Tag {
    #[tracked(primary_key)]
    pub code: String,
    pub label: String,
}

/// A composite key.
#[derive(Tracked, Queryable, Selectable, Clone, Debug, PartialEq)]
#[tracked(table = memberships)]
#[diesel(table_name = memberships)]
pub struct Membership {
    #[tracked(primary_key)]
    pub user_id: i32,
    #[tracked(primary_key)]
    pub group_id: i32,
    pub role: String,
}

/// A parent with a generated key.
#[derive(Tracked, Queryable, Selectable, Clone, Debug, PartialEq)]
#[tracked(table = authors)]
#[diesel(table_name = authors)]
pub struct Author {
    #[tracked(generated)]
    pub id: i32,
    pub name: String,
}

/// A child of `Author` (foreign key declared in the schema).
#[derive(Tracked, Queryable, Selectable, Clone, Debug, PartialEq)]
#[tracked(table = books, belongs_to(Author, foreign_key = author_id))]
#[diesel(table_name = books)]
pub struct Book {
    #[tracked(generated)]
    pub id: i32,
    pub author_id: i32,
    pub title: String,
}

/// A self-reference with a nullable foreign key.
#[derive(Tracked, Queryable, Selectable, Clone, Debug, PartialEq)]
#[tracked(table = nodes, belongs_to(Node, foreign_key = parent_id))]
#[diesel(table_name = nodes)]
pub struct Node {
    #[tracked(generated)]
    pub id: i32,
    pub parent_id: Option<i32>,
    pub name: String,
}

/// A version-checked account.
#[derive(Tracked, Queryable, Selectable, Clone, Debug, PartialEq)]
#[tracked(table = ledger)]
#[diesel(table_name = ledger)]
pub struct LedgerAccount {
    #[tracked(generated)]
    pub id: i32,
    pub owner: String,
    pub balance: i64,
    #[tracked(version)]
    pub version: i32,
}

/// A new ledger account (its key generated, version 1).
pub fn ledger(owner: &str, balance: i64) -> LedgerAccount {
    LedgerAccount {
        id: 0,
        owner: owner.into(),
        balance,
        version: 1,
    }
}

/// Cosmic Python's aggregate: a product whose version guards its allocations.
#[derive(Tracked, Queryable, Selectable, Clone, Debug, PartialEq)]
#[tracked(table = products)]
#[diesel(table_name = products)]
pub struct Product {
    #[tracked(primary_key)]
    pub sku: String,
    pub available: i32,
    #[tracked(version)]
    pub version: i32,
}

#[derive(Tracked, Queryable, Selectable, Clone, Debug, PartialEq)]
#[tracked(table = allocations, belongs_to(Product, foreign_key = sku))]
#[diesel(table_name = allocations)]
pub struct Allocation {
    #[tracked(generated)]
    pub id: i32,
    pub sku: String,
    pub qty: i32,
}

/// A parent with a generated key and a UNIQUE name (a value a commit may free and reuse).
#[derive(Tracked, Queryable, Selectable, Clone, Debug, PartialEq)]
#[tracked(table = teams)]
#[diesel(table_name = teams)]
pub struct Team {
    #[tracked(generated)]
    pub id: i32,
    pub name: String,
}

/// A child of `Team`.
#[derive(Tracked, Queryable, Selectable, Clone, Debug, PartialEq)]
#[tracked(table = players, belongs_to(Team, foreign_key = team_id))]
#[diesel(table_name = players)]
pub struct Player {
    #[tracked(generated)]
    pub id: i32,
    pub team_id: i32,
    pub name: String,
}

/// Two relations to the same parent type: `set_parent` is ambiguous, `set_parent_via` names one.
#[derive(Tracked, Queryable, Selectable, Clone, Debug, PartialEq)]
#[tracked(
    table = transfers,
    belongs_to(Account, foreign_key = from_id),
    belongs_to(Account, foreign_key = to_id)
)]
#[diesel(table_name = transfers)]
pub struct Transfer {
    #[tracked(generated)]
    pub id: i32,
    pub from_id: i32,
    pub to_id: i32,
    pub amount: i64,
}

/// A key chosen in Rust next to a column the database fills (`DEFAULT 7`). MySQL cannot read
/// such a column back, so inserting a `Stamp` fails there by design.
#[derive(Tracked, Queryable, Selectable, Clone, Debug, PartialEq)]
#[tracked(table = stamps)]
#[diesel(table_name = stamps)]
pub struct Stamp {
    #[tracked(primary_key)]
    pub code: String,
    #[tracked(generated)]
    pub seq: i32,
    pub note: String,
}

/// Every account row, by key.
pub fn account_rows<C: AccountRows>(conn: &mut C) -> Vec<Account> {
    conn.account_rows()
}

/// Reading the accounts table back with plain Diesel, for each backend.
pub trait AccountRows {
    fn account_rows(&mut self) -> Vec<Account>;
}

macro_rules! account_rows_for {
    ($($feature:literal => $conn:ty),*) => {$(
        #[cfg(feature = $feature)]
        impl AccountRows for $conn {
            fn account_rows(&mut self) -> Vec<Account> {
                match accounts::table.order(accounts::id).load(self) {
                    Ok(rows) => rows,
                    Err(e) => panic!("reading accounts failed: {e}"),
                }
            }
        }
    )*};
}
account_rows_for!("sqlite" => diesel::SqliteConnection, "postgres" => diesel::PgConnection, "mysql" => diesel::MysqlConnection);
#[cfg(feature = "async")]
account_rows_for!(
    "sqlite" => on_async::AsyncConnectionWrapper<
        diesel_async::sync_connection_wrapper::SyncConnectionWrapper<diesel::SqliteConnection>,
    >,
    "postgres" => on_async::AsyncConnectionWrapper<diesel_async::AsyncPgConnection>,
    "mysql" => on_async::AsyncConnectionWrapper<diesel_async::AsyncMysqlConnection>
);

/// Everything observable about one held entity: value, state, changed columns.
pub fn observe<C, T>(uow: &UnitOfWork<C>, handle: &Handle<T>) -> (T, EntityState, Vec<&'static str>)
where
    C: uow::Driver,
    T: Persist<C::Backend>,
{
    match (
        uow.get(handle),
        uow.state(handle),
        uow.changed_columns(handle),
    ) {
        (Ok(v), Ok(s), Ok(c)) => (v.clone(), s, c),
        _ => panic!("handle not held"),
    }
}

/// How many transaction levels are open on `conn` (`None`: no transaction), as Diesel's
/// transaction manager counts them.
pub fn transaction_depth<C: Connection>(conn: &mut C) -> Option<u32> {
    use diesel::connection::TransactionManager;
    match C::TransactionManager::transaction_manager_status_mut(conn).transaction_depth() {
        Ok(depth) => depth.map(|d| d.get()),
        Err(e) => panic!("the connection's transaction manager is broken: {e}"),
    }
}
