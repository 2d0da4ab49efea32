//! The bank service's schema, state, router and handlers; `main.rs` serves them, and
//! `tests/web_service.rs` includes this file (`#[path = ...] mod app;`) to drive them over HTTP.
//!
//! Every request takes a connection from a deadpool of SQLite connections and works on a fresh
//! [`uow::AsyncUnitOfWork`]. Accounts carry a `#[tracked(version)]`: a write based on a stale
//! read fails with `Error::Conflict` instead of overwriting a concurrent change. Transfers are
//! rerun on conflicts and transient errors (each run reloads both accounts); a PATCH is not
//! (the client decides what to do with a stale version): both answer 409 when they lose.

#![allow(dead_code)] // the tests and main.rs each use a part of it

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::{ConnectionResult, QueryDsl, SelectableHelper};
use diesel_async::pooled_connection::deadpool::{BuildError, Object, Pool, PoolError};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, SimpleAsyncConnection, TransactionManager};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use uow::prelude::*;
use uow::{RetryPolicy, ScopedFutureExt};

/// The async connection: Diesel's SQLite connection, its blocking calls run on tokio's
/// blocking threads.
pub type Conn = SyncConnectionWrapper<diesel::SqliteConnection>;
/// The connection pool.
pub type DbPool = Pool<Conn>;

diesel::table! {
    accounts (id) { id -> Integer, owner -> Text, balance -> BigInt, version -> Integer }
}

/// The schema, created at startup if missing. The CHECK is the last line of defence against
/// overdrafts (a transfer checks the balance first, and maps a refused commit to 422 too).
pub const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    CREATE TABLE IF NOT EXISTS accounts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        owner TEXT NOT NULL,
        balance BIGINT NOT NULL CHECK (balance >= 0),
        version INTEGER NOT NULL
    );";

/// Per connection: wait for a busy database (another connection's write transaction) for up
/// to 5 s instead of failing at once; a wait that still fails is a transient error, rerun.
const CONNECTION_SETUP: &str = "PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;";

/// An account; the JSON the API returns. Balances are integers (cents, say).
#[derive(
    Tracked,
    diesel::Queryable,
    diesel::Selectable,
    Serialize,
    Deserialize,
    Clone,
    Debug,
    PartialEq,
    Eq,
)]
#[tracked(table = accounts)]
#[diesel(table_name = accounts)]
pub struct Account {
    #[tracked(generated)]
    pub id: i32,
    pub owner: String,
    pub balance: i64,
    /// Checked and advanced by every UPDATE: a lost update is `Error::Conflict`.
    #[tracked(version)]
    pub version: i32,
}

/// `POST /accounts`.
#[derive(Debug, Serialize, Deserialize)]
pub struct NewAccount {
    pub owner: String,
    pub balance: i64,
}

/// `PATCH /accounts/{id}`: the new owner, and the version the client read.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChangeOwner {
    pub owner: String,
    pub version: i32,
}

/// `POST /transfers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Transfer {
    pub from: i32,
    pub to: i32,
    pub amount: i64,
}

/// The answer to a transfer: both accounts as committed.
#[derive(Debug, Serialize, Deserialize)]
pub struct Transferred {
    pub from: Account,
    pub to: Account,
}

/// A point inside every transfer's transaction, after its UPDATEs were sent and before its
/// COMMIT, where a test can hold the request (to cancel it there) and see whether it went on
/// or was dropped. Not set in production.
#[derive(Debug, Default)]
pub struct CommitGate {
    entered: Notify,
    release: Notify,
    abandoned: Notify,
}

impl CommitGate {
    /// Waits until a transfer has reached the gate (its writes sent, its transaction open).
    pub async fn entered(&self) {
        self.entered.notified().await
    }

    /// Lets the transfer at the gate (or the next one to reach it) go on to its COMMIT.
    pub fn release(&self) {
        self.release.notify_one()
    }

    /// Waits until a transfer's future was dropped while it waited at the gate.
    pub async fn abandoned(&self) {
        self.abandoned.notified().await
    }

    async fn pass(&self) {
        /// Tells `abandoned` when the request's future is dropped at the gate.
        struct Armed<'a>(&'a Notify, bool);
        impl Drop for Armed<'_> {
            fn drop(&mut self) {
                if self.1 {
                    self.0.notify_one();
                }
            }
        }
        let mut armed = Armed(&self.abandoned, true);
        self.entered.notify_one();
        self.release.notified().await;
        armed.1 = false;
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub pool: DbPool,
    /// For transfers: transient errors and conflicts (each run reloads).
    pub retry: RetryPolicy,
    /// See [`CommitGate`]; `None` in production.
    pub gate: Option<Arc<CommitGate>>,
    /// Transfer runs that failed and were rerun (or answered, after the last attempt).
    pub failed_runs: Arc<FailedRuns>,
}

/// Transfer runs that failed, by kind.
#[derive(Debug, Default)]
pub struct FailedRuns {
    /// Lost a race: a version check found the row changed (`Error::Conflict`).
    pub conflicts: AtomicUsize,
    /// The database was busy, or another transient error.
    pub transient: AtomicUsize,
}

impl AppState {
    /// A pool of `max_size` connections to the SQLite file at `database_url`, with the schema
    /// created.
    pub async fn open(
        database_url: &str,
        max_size: usize,
    ) -> Result<AppState, Box<dyn std::error::Error + Send + Sync>> {
        let pool = pool(database_url, max_size)?;
        pool.get().await?.batch_execute(SCHEMA).await?;
        Ok(AppState {
            pool,
            // SQLite refuses a second writer at once ("database is locked") when a read
            // transaction would become a write one; under load a request may lose many times.
            retry: RetryPolicy::default()
                .attempts(40)
                .backoff(Duration::from_millis(2), Duration::from_millis(100))
                .retry_conflicts(true),
            gate: None,
            failed_runs: Arc::default(),
        })
    }
}

/// A deadpool of SQLite connections, each set up with [`CONNECTION_SETUP`] when it is made.
pub fn pool(database_url: &str, max_size: usize) -> Result<DbPool, BuildError> {
    let mut config = ManagerConfig::<Conn>::default();
    config.custom_setup = Box::new(connect);
    let manager = AsyncDieselConnectionManager::<Conn>::new_with_config(database_url, config);
    Pool::builder(manager).max_size(max_size).build()
}

/// A new pooled connection, set up.
fn connect(url: &str) -> Pin<Box<dyn Future<Output = ConnectionResult<Conn>> + Send + '_>> {
    Box::pin(async move {
        let mut conn = Conn::establish(url).await?;
        conn.batch_execute(CONNECTION_SETUP)
            .await
            .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
        Ok(conn)
    })
}

/// A connection checked out of the pool. If a request's future was dropped while a transaction
/// was open on it (uow marks such a connection broken), it leaves the pool when this is
/// dropped, closing the SQLite connection and so rolling the transaction back at once: the pool
/// would only discard it when it is next checked out, and until then it would hold the
/// database's write lock.
pub struct PooledConn(Option<Object<Conn>>);

impl PooledConn {
    pub async fn get(pool: &DbPool) -> Result<PooledConn, PoolError> {
        Ok(PooledConn(Some(pool.get().await?)))
    }
}

impl Deref for PooledConn {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.0.as_ref().expect("present until dropped")
    }
}

impl DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut Conn {
        self.0.as_mut().expect("present until dropped")
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        if let Some(mut conn) = self.0.take() {
            if <Conn as AsyncConnection>::TransactionManager::is_broken_transaction_manager(
                &mut conn,
            ) {
                drop(Object::take(conn));
            }
        }
    }
}

/// Every error answer: a status and `{"error": "..."}`.
#[derive(Debug)]
pub enum ApiError {
    /// From the unit of work; the status depends on the kind.
    Uow(uow::Error),
    /// Anything else, with its status.
    Status(StatusCode, String),
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError::Status(status, message.into())
    }

    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Status(status, _) => *status,
            ApiError::Uow(uow::Error::NotFound { .. }) => StatusCode::NOT_FOUND,
            ApiError::Uow(e) if e.is_conflict() => StatusCode::CONFLICT,
            ApiError::Uow(e) if is_check_violation(e) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Uow(e) if e.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Uow(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A commit the CHECK (balance >= 0) refused.
fn is_check_violation(error: &uow::Error) -> bool {
    matches!(
        error.database_error(),
        Some(DieselError::DatabaseError(
            DatabaseErrorKind::CheckViolation,
            _
        ))
    )
}

impl From<uow::Error> for ApiError {
    fn from(error: uow::Error) -> Self {
        ApiError::Uow(error)
    }
}

impl From<PoolError> for ApiError {
    fn from(error: PoolError) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no database connection: {error}"),
        )
    }
}

impl From<DieselError> for ApiError {
    fn from(error: DieselError) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError::new(rejection.status(), rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::new(rejection.status(), rejection.body_text())
    }
}

/// `uow::retry_async` looks inside for the unit of work's error.
impl uow::Retryable for ApiError {
    fn uow_error(&self) -> Option<&uow::Error> {
        match self {
            ApiError::Uow(e) => Some(e),
            ApiError::Status(..) => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match self {
            ApiError::Status(_, message) => message,
            ApiError::Uow(e) if is_check_violation(&e) => {
                format!("insufficient funds (the balance cannot go below 0): {e}")
            }
            // The library's messages speak to the programmer; these to the API's client.
            ApiError::Uow(uow::Error::NotFound { key, .. }) => format!("no account with id {key}"),
            ApiError::Uow(e) if e.is_conflict() => {
                format!("the account changed while this request ran; read it again and retry ({e})")
            }
            ApiError::Uow(e) => e.to_string(),
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

/// The routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/accounts", post(create_account).get(list_accounts))
        .route("/accounts/{id}", get(get_account).patch(change_owner))
        .route("/transfers", post(transfer))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here")
        })
        .with_state(state)
}

type ApiResult<T> = Result<T, ApiError>;

async fn create_account(
    State(state): State<AppState>,
    body: Result<Json<NewAccount>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Account>)> {
    let Json(new) = body?;
    if new.balance < 0 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the balance cannot be negative",
        ));
    }
    let mut conn = PooledConn::get(&state.pool).await?;
    let mut uow = AsyncUnitOfWork::<Conn>::new();
    let account = uow.register_new(Account {
        id: 0,
        owner: new.owner,
        balance: new.balance,
        version: 1,
    })?;
    uow.commit(&mut conn).await?;
    Ok((StatusCode::CREATED, Json(uow.get(&account)?.clone())))
}

async fn list_accounts(State(state): State<AppState>) -> ApiResult<Json<Vec<Account>>> {
    // Only here: diesel-async's `RunQueryDsl` is implemented for every type, and its `load`
    // (taking `self`) would be picked over `AsyncUnitOfWork::load` (taking `&mut self`).
    use diesel_async::RunQueryDsl;
    let mut conn = PooledConn::get(&state.pool).await?;
    let all = accounts::table
        .order(accounts::id)
        .select(Account::as_select())
        .load(&mut *conn)
        .await?;
    Ok(Json(all))
}

async fn get_account(
    State(state): State<AppState>,
    id: Result<Path<i32>, PathRejection>,
) -> ApiResult<Json<Account>> {
    let Path(id) = id?;
    let mut conn = PooledConn::get(&state.pool).await?;
    let mut uow = AsyncUnitOfWork::<Conn>::new();
    let account = uow.load::<Account>(&mut conn, id).await?;
    Ok(Json(uow.get(&account)?.clone()))
}

/// Changes the owner if the account is still at the version the client read: 409 if it is not,
/// or if it changes between this request's read and its commit (the version check).
async fn change_owner(
    State(state): State<AppState>,
    id: Result<Path<i32>, PathRejection>,
    body: Result<Json<ChangeOwner>, JsonRejection>,
) -> ApiResult<Json<Account>> {
    let Path(id) = id?;
    let Json(change) = body?;
    let mut conn = PooledConn::get(&state.pool).await?;
    let mut uow = AsyncUnitOfWork::<Conn>::new();
    let account = uow.load::<Account>(&mut conn, id).await?;
    let current = uow.get(&account)?.version;
    if current != change.version {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "account {id} is at version {current}, the change was based on version {}: \
                 read it again",
                change.version
            ),
        ));
    }
    uow.get_mut(&account)?.owner = change.owner;
    uow.commit(&mut conn).await?;
    Ok(Json(uow.get(&account)?.clone()))
}

/// Moves money in one unit of work, rerun (reloading both accounts) while it loses a race or
/// finds the database busy.
async fn transfer(
    State(state): State<AppState>,
    body: Result<Json<Transfer>, JsonRejection>,
) -> ApiResult<Json<Transferred>> {
    let Json(transfer) = body?;
    if transfer.amount <= 0 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the amount must be positive",
        ));
    }
    if transfer.from == transfer.to {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "from and to are the same account",
        ));
    }
    let policy = state.retry.clone();
    // `async move`: the handler's future must be `Send` (see `uow::retry_async`).
    let done = uow::retry_async(&policy, tokio::time::sleep, async move |_attempt| {
        let outcome = transfer_once(&state, &transfer).await;
        if let Err(ApiError::Uow(e)) = &outcome {
            let failed = &state.failed_runs;
            match () {
                _ if e.is_conflict() => failed.conflicts.fetch_add(1, Ordering::Relaxed),
                _ if e.is_transient() => failed.transient.fetch_add(1, Ordering::Relaxed),
                _ => 0,
            };
        }
        outcome
    })
    .await?;
    Ok(Json(done))
}

async fn transfer_once(state: &AppState, transfer: &Transfer) -> ApiResult<Transferred> {
    let mut conn = PooledConn::get(&state.pool).await?;
    let mut uow = AsyncUnitOfWork::<Conn>::new();
    let from = uow.load::<Account>(&mut conn, transfer.from).await?;
    let to = uow.load::<Account>(&mut conn, transfer.to).await?;
    let available = uow.get(&from)?.balance;
    if available < transfer.amount {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "insufficient funds: account {} has {available}, the transfer needs {}",
                transfer.from, transfer.amount
            ),
        ));
    }
    uow.get_mut(&from)?.balance -= transfer.amount;
    uow.get_mut(&to)?.balance += transfer.amount;
    // The commit: BEGIN, both UPDATEs (each checking the version loaded), COMMIT. Written as a
    // scope that flushes and then ends, not as `uow.commit(&mut conn)`, so that the test's gate
    // can sit between the UPDATEs and the COMMIT; the statements are meant to be the same (not
    // compared against a statement log here).
    let gate = state.gate.clone();
    uow.transaction(&mut conn, |scope| {
        async move {
            scope.flush().await?;
            if let Some(gate) = &gate {
                gate.pass().await;
            }
            Ok::<_, ApiError>(())
        }
        .scope_boxed()
    })
    .await?;
    Ok(Transferred {
        from: uow.get(&from)?.clone(),
        to: uow.get(&to)?.clone(),
    })
}
