//! Rerunning a unit of work after transient database failures.
//!
//! Databases abort transactions that lost a race (serialization failures, deadlocks, lock
//! timeouts, SQLite's "database is locked"); the cure is to run the whole unit of work again.
//! A [`Conflict`](crate::Error::Conflict) is different: the data the work was based on changed,
//! so a rerun is only right if the closure reads it again; `retry` reruns conflicts only when
//! the policy says so.

use std::time::Duration;

use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::error::Error;

/// How [`retry`] reruns a unit of work: how often, how long it waits, and whether conflicts
/// count as transient.
///
/// ```
/// use std::time::Duration;
/// let policy = uow::RetryPolicy::default()
///     .attempts(8)
///     .backoff(Duration::from_millis(2), Duration::from_millis(100))
///     .retry_conflicts(true);
/// assert_eq!(policy.max_attempts(), 8);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
    retry_conflicts: bool,
}

impl Default for RetryPolicy {
    /// Five attempts, waiting 5 ms, 10 ms, 20 ms... (at most 200 ms, with jitter); conflicts
    /// are not retried.
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(200),
            retry_conflicts: false,
        }
    }
}

impl RetryPolicy {
    /// At most `attempts` runs in all (at least one).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use diesel::result::{DatabaseErrorKind, Error as DieselError};
    /// # let busy = || uow::Error::Transaction(DieselError::DatabaseError(
    /// #     DatabaseErrorKind::SerializationFailure, Box::new("could not serialize access".to_string())));
    /// let policy = uow::RetryPolicy::default().attempts(3).backoff(Duration::ZERO, Duration::ZERO);
    /// let mut runs = 0;
    /// let outcome: Result<(), uow::Error> = uow::retry(&policy, |_attempt| {
    ///     runs += 1;
    ///     Err(busy()) // transient every time
    /// });
    /// assert!(outcome.unwrap_err().is_transient(), "the last error is returned");
    /// assert_eq!(runs, 3);
    /// assert_eq!(uow::RetryPolicy::default().attempts(0).max_attempts(), 1);
    /// ```
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// Exponential backoff starting at `base`, never above `max`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let ms = Duration::from_millis;
    /// let policy = uow::RetryPolicy::default().backoff(ms(10), ms(40));
    /// // About 10 ms, 20 ms, 40 ms, 40 ms ..., each cut by up to half at random (jitter).
    /// assert!(policy.delay(1) >= ms(5) && policy.delay(1) <= ms(10));
    /// assert!(policy.delay(2) >= ms(10) && policy.delay(2) <= ms(20));
    /// assert!(policy.delay(9) >= ms(20) && policy.delay(9) <= ms(40));
    /// ```
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.base_delay = base;
        self.max_delay = max.max(base);
        self
    }

    /// Also rerun after [`Error::Conflict`]. Only right when the closure reloads what it
    /// changes (a fresh unit of work, or `refresh`), so each run sees the current rows.
    ///
    /// ```
    /// let conflict = uow::Error::Conflict {
    ///     operation: uow::Operation::Update,
    ///     entity: "Account",
    ///     table: "accounts",
    ///     key: "1".into(),
    /// };
    /// assert!(!uow::RetryPolicy::default().should_retry(&conflict));
    /// assert!(uow::RetryPolicy::default().retry_conflicts(true).should_retry(&conflict));
    /// ```
    pub fn retry_conflicts(mut self, yes: bool) -> Self {
        self.retry_conflicts = yes;
        self
    }

    /// The most runs `retry` makes.
    ///
    /// ```
    /// let policy = uow::RetryPolicy::default();
    /// assert_eq!(policy.max_attempts(), 5);
    /// assert_eq!(policy.attempts(2).max_attempts(), 2);
    /// ```
    pub fn max_attempts(&self) -> u32 {
        self.attempts
    }

    /// Whether `error` is worth another run under this policy.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # use diesel::prelude::*;
    /// # use diesel::result::{DatabaseErrorKind, Error as DieselError};
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// # let mut conn = SqliteConnection::establish(":memory:")?;
    /// # diesel::sql_query("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL CHECK (body <> ''))").execute(&mut conn)?;
    /// let policy = uow::RetryPolicy::default();
    /// // A lost race is worth another run ...
    /// let lost_race = uow::Error::Transaction(DieselError::DatabaseError(
    ///     DatabaseErrorKind::SerializationFailure,
    ///     Box::new("could not serialize access".to_string()),
    /// ));
    /// assert!(policy.should_retry(&lost_race));
    /// // ... a row the database refuses is not: it would be refused again.
    /// let mut uow = UnitOfWork::new();
    /// uow.register_new(Note { id: 1, body: "".into() })?;
    /// let refused = uow.commit(&mut conn).unwrap_err();
    /// assert!(!policy.should_retry(&refused));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn should_retry(&self, error: &Error) -> bool {
        error.is_transient() || (self.retry_conflicts && error.is_conflict())
    }

    /// The wait before run `attempt + 1`: doubling from the base delay, capped, with up to
    /// half of it as jitter so that competing workers spread out.
    ///
    /// ```
    /// use std::time::Duration;
    /// let policy = uow::RetryPolicy::default(); // 5 ms doubling, at most 200 ms
    /// let ms = Duration::from_millis;
    /// assert!(policy.delay(1) >= ms(2) && policy.delay(1) <= ms(5));
    /// assert!(policy.delay(3) >= ms(10) && policy.delay(3) <= ms(20));
    /// assert!(policy.delay(30) <= ms(200));
    /// ```
    pub fn delay(&self, attempt: u32) -> Duration {
        let doubled = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = doubled.min(self.max_delay);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        // Divided before multiplied, so no policy (even `Duration::MAX`) can overflow.
        let jitter = (capped / 2000).saturating_mul(nanos % 1000);
        (capped / 2).saturating_add(jitter)
    }
}

impl Error {
    /// Whether the database gave up on the transaction for a reason that a rerun can cure:
    /// a serialization failure (PostgreSQL 40001), a deadlock (PostgreSQL 40P01, MySQL 1213,
    /// which is also how Galera reports a lost certification), a lock wait timeout (MySQL
    /// 1205), a write conflict (TiDB 9007), or a busy SQLite database; or a connection lost
    /// before the COMMIT ([`Error::ConnectionLost`] with `during_commit: false`: nothing was
    /// written, and a rerun that opens a new connection, from a pool say, can succeed).
    /// Whoever sent the statement: one of uow's ([`Error::Statement`]), its COMMIT
    /// ([`Error::Transaction`]), or one of your own in a scope ([`Error::Query`]).
    ///
    /// ```
    /// use diesel::result::{DatabaseErrorKind, Error as DieselError};
    /// let lost_race = uow::Error::Transaction(DieselError::DatabaseError(
    ///     DatabaseErrorKind::SerializationFailure,
    ///     Box::new("could not serialize access".to_string()),
    /// ));
    /// assert!(lost_race.is_transient());
    /// // A deadlock met by a query of your own, turned into `uow::Error` by `?`.
    /// let own: uow::Error = DieselError::DatabaseError(
    ///     DatabaseErrorKind::Unknown,
    ///     Box::new("deadlock detected".to_string()),
    /// )
    /// .into();
    /// assert!(matches!(own, uow::Error::Query(_)) && own.is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        match self {
            // Nothing was written; a rerun on another connection is safe. A connection lost
            // while committing may have committed: rerunning could apply the changes twice.
            Error::ConnectionLost { during_commit, .. } => !during_commit,
            _ => self.database_error().is_some_and(is_transient),
        }
    }

    /// Whether this is an [`Error::Conflict`]: the row changed since it was read.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # use diesel::prelude::*;
    /// # diesel::table! { items (id) { id -> Integer, qty -> Integer, version -> Integer } }
    /// #[derive(Tracked, Clone, Debug, PartialEq)]
    /// #[tracked(table = items)]
    /// struct Item { id: i32, qty: i32, #[tracked(version)] version: i32 }
    ///
    /// # let mut conn = SqliteConnection::establish(":memory:")?;
    /// # diesel::sql_query("CREATE TABLE items (id INTEGER PRIMARY KEY, qty INTEGER NOT NULL, version INTEGER NOT NULL)").execute(&mut conn)?;
    /// # diesel::sql_query("INSERT INTO items VALUES (1, 5, 1)").execute(&mut conn)?;
    /// let (mut ours, mut theirs) = (UnitOfWork::new(), UnitOfWork::new());
    /// let mine = ours.load::<Item>(&mut conn, 1)?;
    /// let other = theirs.load::<Item>(&mut conn, 1)?;
    /// theirs.get_mut(&other)?.qty = 4;
    /// theirs.commit(&mut conn)?; // version 1 -> 2
    /// ours.get_mut(&mine)?.qty = 3;
    /// let error = ours.commit(&mut conn).unwrap_err(); // UPDATE .. WHERE version = 1: no row
    /// assert!(error.is_conflict());
    /// assert!(!error.is_transient(), "rerunning the same change would conflict again");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }
}

/// Diesel exposes no SQLSTATE, so besides the kinds it maps, the servers' own messages for
/// deadlocks, lock timeouts and busy databases are recognised (servers set to another message
/// language are only recognised through the kinds).
fn is_transient(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        DieselError::DatabaseError(_, info) => {
            let message = info.message();
            [
                "deadlock detected",
                "Deadlock found",
                "Lock wait timeout exceeded",
                "database is locked",
                "database table is locked",
                // TiDB's optimistic transactions (9007), speaking the MySQL protocol.
                "Write conflict, txnStartTS",
            ]
            .iter()
            .any(|needle| message.contains(needle))
        }
        _ => false,
    }
}

/// An error `retry` can look into: it may carry a unit of work [`Error`].
///
/// Implemented for [`Error`] itself and for boxed errors; implement it for your own error type
/// (returning the `uow::Error` it wraps, if any) to let `retry` rerun closures that also fail
/// with domain errors, which are never retried.
pub trait Retryable {
    /// The unit of work error inside, if any.
    fn uow_error(&self) -> Option<&Error>;
}

impl Retryable for Error {
    fn uow_error(&self) -> Option<&Error> {
        Some(self)
    }
}

impl Retryable for Box<dyn std::error::Error + Send + Sync> {
    fn uow_error(&self) -> Option<&Error> {
        self.downcast_ref()
    }
}

impl Retryable for Box<dyn std::error::Error> {
    fn uow_error(&self) -> Option<&Error> {
        self.downcast_ref()
    }
}

/// Runs `run` until it succeeds, fails with an error the policy does not retry, or has run
/// `policy.max_attempts()` times; returns the last outcome. `run` gets the attempt number
/// (from 1) and must do the whole unit of work, from reading to commit, each time.
///
/// ```
/// # use uow::prelude::*;
/// # use diesel::{Connection, RunQueryDsl, SqliteConnection};
/// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
/// # #[derive(Tracked, Clone, Debug, PartialEq)]
/// # #[tracked(table = notes)]
/// # struct Note { #[tracked(generated)] id: i32, body: String }
/// let mut conn = SqliteConnection::establish(":memory:")?;
/// diesel::sql_query("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)").execute(&mut conn)?;
/// let policy = uow::RetryPolicy::default();
/// let id = uow::retry(&policy, |_attempt| -> Result<i32, uow::Error> {
///     uow::transaction(&mut conn, |uow| {
///         let note = uow.register_new(Note { id: 0, body: "hi".into() })?;
///         uow.flush()?;
///         Ok(uow.get(&note)?.id)
///     })
/// })?;
/// assert_eq!(id, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn retry<T, E: Retryable>(
    policy: &RetryPolicy,
    mut run: impl FnMut(u32) -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    let mut attempt = 1;
    loop {
        match run(attempt) {
            Err(error)
                if attempt < policy.attempts
                    && error.uow_error().is_some_and(|e| policy.should_retry(e)) =>
            {
                std::thread::sleep(policy.delay(attempt));
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// [`retry`] for async code: waits between runs with `sleep` (your runtime's timer, so that
/// the thread is not blocked: `tokio::time::sleep`), and runs `run`, an async closure that can
/// borrow what it captures (a connection, a pool) mutably, once per attempt. Inside a spawned
/// task, write `async move |attempt| ..` (moving the connection in): rustc cannot yet prove
/// `Send` for a task whose async closure borrows its captures (rust-lang/rust#100013).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// let policy = uow::RetryPolicy::default().backoff(Duration::ZERO, Duration::ZERO);
/// let mut runs = Vec::new();
/// let outcome = tokio::runtime::Runtime::new()?.block_on(uow::retry_async(
///     &policy,
///     tokio::time::sleep,
///     async |attempt| {
///         runs.push(attempt);
///         if attempt < 3 {
///             // A serialization failure of a statement of the closure's own: transient, so
///             // it is run again.
///             return Err(uow::Error::Query(diesel::result::Error::DatabaseError(
///                 diesel::result::DatabaseErrorKind::SerializationFailure,
///                 Box::new("could not serialize access".to_string()),
///             )));
///         }
///         Ok(attempt)
///     },
/// ));
/// assert_eq!(outcome?, 3);
/// assert_eq!(runs, [1, 2, 3]);
/// # Ok(())
/// # }
/// ```
pub async fn retry_async<T, E, S>(
    policy: &RetryPolicy,
    mut sleep: impl FnMut(Duration) -> S,
    mut run: impl AsyncFnMut(u32) -> std::result::Result<T, E>,
) -> std::result::Result<T, E>
where
    E: Retryable,
    S: std::future::Future<Output = ()>,
{
    let mut attempt = 1;
    loop {
        match run(attempt).await {
            Err(error)
                if attempt < policy.attempts
                    && error.uow_error().is_some_and(|e| policy.should_retry(e)) =>
            {
                sleep(policy.delay(attempt)).await;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Result;
    use std::cell::Cell;

    fn database(kind: DatabaseErrorKind, message: &str) -> Error {
        Error::Statement {
            operation: crate::Operation::Update,
            table: "t",
            source: DieselError::DatabaseError(kind, Box::new(message.to_string())),
        }
    }

    fn conflict() -> Error {
        Error::Conflict {
            operation: crate::Operation::Update,
            entity: "E",
            table: "t",
            key: "1".into(),
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy::default().backoff(Duration::ZERO, Duration::ZERO)
    }

    #[test]
    fn transient_errors_are_recognised() {
        use DatabaseErrorKind::*;
        assert!(database(SerializationFailure, "could not serialize access").is_transient());
        assert!(database(Unknown, "deadlock detected").is_transient());
        assert!(database(
            Unknown,
            "Lock wait timeout exceeded; try restarting transaction"
        )
        .is_transient());
        assert!(database(Unknown, "database is locked").is_transient());
        assert!(database(
            Unknown,
            "Write conflict, txnStartTS=451374375386087425, conflictStartTS=451374375386087426, \
             conflictCommitTS=451374375386087427, key={tableID=84, handle=1} primary=<nil>, \
             reason=Optimistic [try again later]"
        )
        .is_transient());
        assert!(!database(CheckViolation, "CHECK constraint failed").is_transient());
        assert!(!database(UniqueViolation, "duplicate key").is_transient());
        assert!(!conflict().is_transient());
        assert!(Error::Transaction(DieselError::DatabaseError(
            SerializationFailure,
            Box::new(String::new())
        ))
        .is_transient());
        // The caller's own statements, converted by `?`.
        let own = |kind, message: &str| {
            Error::from(DieselError::DatabaseError(
                kind,
                Box::new(message.to_string()),
            ))
        };
        assert!(matches!(own(Unknown, "x"), Error::Query(_)));
        assert!(own(SerializationFailure, "could not serialize access").is_transient());
        assert!(own(Unknown, "Deadlock found when trying to get lock").is_transient());
        assert!(!own(UniqueViolation, "duplicate key").is_transient());
    }

    #[test]
    fn transient_failures_are_rerun_up_to_the_bound() {
        let runs = Cell::new(0);
        let outcome: Result<()> = retry(&fast().attempts(3), |attempt| {
            runs.set(runs.get() + 1);
            assert_eq!(attempt, runs.get());
            Err(database(DatabaseErrorKind::SerializationFailure, "x"))
        });
        assert!(outcome.is_err());
        assert_eq!(runs.get(), 3);
    }

    #[test]
    fn success_after_transient_failures() {
        let outcome = retry(&fast(), |attempt| {
            if attempt < 3 {
                Err(database(DatabaseErrorKind::Unknown, "deadlock detected"))
            } else {
                Ok(attempt)
            }
        });
        assert_eq!(outcome.ok(), Some(3));
    }

    #[test]
    fn conflicts_and_other_errors_are_not_rerun_unless_asked() {
        let runs = Cell::new(0);
        let outcome: Result<()> = retry(&fast(), |_| {
            runs.set(runs.get() + 1);
            Err(conflict())
        });
        assert!(matches!(outcome, Err(Error::Conflict { .. })));
        assert_eq!(runs.get(), 1);

        runs.set(0);
        let _: Result<()> = retry(&fast(), |_| {
            runs.set(runs.get() + 1);
            Err(database(DatabaseErrorKind::CheckViolation, "CHECK"))
        });
        assert_eq!(runs.get(), 1);

        runs.set(0);
        let outcome = retry(&fast().retry_conflicts(true), |attempt| {
            runs.set(runs.get() + 1);
            if attempt == 1 {
                Err(conflict())
            } else {
                Ok(())
            }
        });
        assert!(outcome.is_ok());
        assert_eq!(runs.get(), 2);
    }

    #[test]
    fn domain_errors_pass_through_and_wrapped_uow_errors_are_retried() {
        #[derive(Debug)]
        enum AppError {
            Uow(Error),
            Refused,
        }
        impl Retryable for AppError {
            fn uow_error(&self) -> Option<&Error> {
                match self {
                    AppError::Uow(e) => Some(e),
                    AppError::Refused => None,
                }
            }
        }
        let runs = Cell::new(0);
        let outcome: std::result::Result<(), AppError> = retry(&fast(), |attempt| {
            runs.set(runs.get() + 1);
            if attempt == 1 {
                Err(AppError::Uow(database(
                    DatabaseErrorKind::SerializationFailure,
                    "x",
                )))
            } else {
                Err(AppError::Refused)
            }
        });
        assert!(matches!(outcome, Err(AppError::Refused)));
        assert_eq!(runs.get(), 2);
    }

    #[test]
    fn delays_grow_and_stay_capped() {
        let policy =
            RetryPolicy::default().backoff(Duration::from_millis(10), Duration::from_millis(40));
        for attempt in 1..10 {
            let delay = policy.delay(attempt);
            assert!(delay <= Duration::from_millis(40), "{delay:?}");
        }
        assert!(policy.delay(1) >= Duration::from_millis(5));
        assert!(policy.delay(5) >= Duration::from_millis(20));
        assert_eq!(RetryPolicy::default().attempts(0).max_attempts(), 1);
    }

    #[test]
    fn the_longest_backoff_does_not_overflow() {
        let policy = RetryPolicy::default().backoff(Duration::MAX, Duration::MAX);
        for attempt in [0, 1, 2, 17, u32::MAX] {
            assert!(policy.delay(attempt) >= Duration::MAX / 2);
        }
    }
}
