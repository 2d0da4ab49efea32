//! Transaction scopes: a unit of work bound to one connection and one transaction, committed
//! when the closure returns `Ok` (through the commit protocol, `protocol.rs`), rolled back,
//! database and memory, on `Err` or panic. Nested scopes run on savepoints.
//!
//! Memory rollback works per scope level: every store saves the first state of each slot a
//! scope changes (`store/levels.rs`), so undoing a scope costs what the scope touched, not
//! what the unit of work holds.

use std::ops::{Deref, DerefMut};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use diesel::connection::LoadConnection;
use diesel::Connection;

use crate::error::{Error, Result};
use crate::exec::driver::block;
use crate::exec::{transaction, Dialect, Driver};
use crate::protocol::{Finish, PrepareAt};
use crate::report::CommitReport;
use crate::unit_of_work::UnitOfWork;

/// A unit of work inside an open transaction, handed to the closure of
/// [`transaction`](crate::transaction) or [`UnitOfWork::transaction`].
///
/// It dereferences to the [`UnitOfWork`], and adds what needs the scope's connection:
/// [`flush`](Scope::flush), [`load`](Scope::load), [`refresh`](Scope::refresh),
/// [`attach_aggregates`](Scope::attach_aggregates),
/// [`nested`](Scope::nested), and [`connection`](Scope::connection) for your own queries. It
/// is `Send` when the connection is.
pub struct Scope<'s, C: Driver> {
    uow: &'s mut UnitOfWork<C>,
    conn: &'s mut C::Conn,
}

impl<C: Driver> Deref for Scope<'_, C> {
    type Target = UnitOfWork<C>;
    fn deref(&self) -> &UnitOfWork<C> {
        self.uow
    }
}

impl<C: Driver> DerefMut for Scope<'_, C> {
    fn deref_mut(&mut self) -> &mut UnitOfWork<C> {
        self.uow
    }
}

impl<C: Driver> Scope<'_, C> {
    /// The unit of work and the scope's connection, both at once.
    pub(crate) fn parts(&mut self) -> (&mut UnitOfWork<C>, &mut C::Conn) {
        (self.uow, self.conn)
    }

    /// The scope's connection, for queries of your own inside the same transaction.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # use diesel::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { #[tracked(generated)] id: i32, body: String }
    /// # let mut conn = SqliteConnection::establish(":memory:")?;
    /// # diesel::sql_query("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)").execute(&mut conn)?;
    /// uow::transaction(&mut conn, |scope| {
    ///     let note = scope.register_new(Note { id: 0, body: "a".into() })?;
    ///     scope.flush()?;
    ///     let id = scope.get(&note)?.id;
    ///     // Your own query, in the scope's transaction, sees the flushed row.
    ///     let body: String = notes::table.find(id).select(notes::body).first(scope.connection())?;
    ///     assert_eq!(body, "a");
    ///     Ok::<_, Box<dyn std::error::Error>>(())
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connection(&mut self) -> &mut C::Conn {
        self.conn
    }
}

impl<C> Scope<'_, C>
where
    C: Connection + LoadConnection + Send + 'static,
    C::Backend: Dialect,
{
    /// Sends every pending change now, inside the scope's transaction: generated keys are
    /// readable right after, and a later failure in the scope still rolls everything back,
    /// database and memory.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # use diesel::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { #[tracked(generated)] id: i32, body: String }
    /// # let mut conn = SqliteConnection::establish(":memory:")?;
    /// # diesel::sql_query("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)").execute(&mut conn)?;
    /// let outcome: Result<(), Box<dyn std::error::Error>> = uow::transaction(&mut conn, |scope| {
    ///     let note = scope.register_new(Note { id: 0, body: "a".into() })?;
    ///     assert_eq!(scope.flush()?.inserted("notes"), 1);
    ///     assert_eq!(scope.get(&note)?.id, 1); // the key is known now
    ///     Err("changed my mind".into()) // the flushed INSERT is rolled back with the scope
    /// });
    /// assert!(outcome.is_err());
    /// let count: i64 = notes::table.count().get_result(&mut conn)?;
    /// assert_eq!(count, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn flush(&mut self) -> Result<CommitReport> {
        block(self.uow.flush_on(self.conn))
    }

    /// Runs `f` in a nested scope on a savepoint of this scope's connection. If `f` fails or
    /// panics, only its changes are undone (database and memory) and this scope goes on; if it
    /// succeeds, its changes become part of this scope. Pending changes are not flushed when
    /// the nested scope ends.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # use diesel::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { #[tracked(generated)] id: i32, body: String }
    /// # let mut conn = SqliteConnection::establish(":memory:")?;
    /// # diesel::sql_query("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)").execute(&mut conn)?;
    /// let mut uow = UnitOfWork::new();
    /// uow.transaction(&mut conn, |scope| {
    ///     scope.register_new(Note { id: 0, body: "kept".into() })?;
    ///     let inner: Result<(), Box<dyn std::error::Error>> = scope.nested(|inner| {
    ///         inner.register_new(Note { id: 0, body: "undone".into() })?;
    ///         inner.flush()?;
    ///         Err("the nested part fails".into()) // only its own changes are undone
    ///     });
    ///     assert!(inner.is_err());
    ///     Ok::<_, uow::Error>(())
    /// })?;
    /// assert_eq!(uow.len(), 1);
    /// let bodies: Vec<String> = notes::table.select(notes::body).load(&mut conn)?;
    /// assert_eq!(bodies, ["kept"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn nested<R, E, F>(&mut self, f: F) -> std::result::Result<R, E>
    where
        F: FnOnce(&mut Scope<'_, C>) -> std::result::Result<R, E>,
        E: From<Error>,
    {
        run(self.uow, self.conn, f, false)
    }
}

/// Runs `f` with a new unit of work in one transaction on `conn`: commits (after sending every
/// pending change) when `f` returns `Ok`, rolls back when it returns `Err` or panics, and then
/// lets the panic continue.
///
/// The unit of work lives only as long as the call; to keep it (its entities, the domain
/// events of the commit for [`take_events`](UnitOfWork::take_events)), use
/// [`UnitOfWork::transaction`].
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
///
/// let id = uow::transaction(&mut conn, |uow| {
///     let note = uow.register_new(Note { id: 0, body: "hello".into() })?;
///     uow.flush()?; // INSERT now: the key is known, and still undoable
///     Ok::<_, uow::Error>(uow.get(&note)?.id)
/// })?;
/// assert_eq!(id, 1);
///
/// let failed: Result<(), uow::Error> = uow::transaction(&mut conn, |uow| {
///     uow.register_new(Note { id: 0, body: "lost".into() })?;
///     uow.flush()?;
///     Err(uow::Error::NoTransaction) // any error: everything is rolled back
/// });
/// assert!(failed.is_err());
/// let count: i64 = diesel::dsl::select(diesel::dsl::sql::<diesel::sql_types::BigInt>("(SELECT COUNT(*) FROM notes)"))
///     .get_result(&mut conn)?;
/// assert_eq!(count, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn transaction<C, R, E, F>(conn: &mut C, f: F) -> std::result::Result<R, E>
where
    C: Connection + LoadConnection + Send + 'static,
    C::Backend: Dialect,
    F: FnOnce(&mut Scope<'_, C>) -> std::result::Result<R, E>,
    E: From<Error>,
{
    UnitOfWork::<C>::new().transaction(conn, f)
}

impl<C> UnitOfWork<C>
where
    C: Connection + LoadConnection + Send + 'static,
    C::Backend: Dialect,
{
    /// Runs `f` on this unit of work in one transaction on `conn`: commits (after sending every
    /// pending change, including changes made before the scope) when `f` returns `Ok`; on `Err`
    /// or panic rolls the transaction back and puts every entity back as it was when the scope
    /// began, then returns the error or lets the panic continue.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # use diesel::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// # let mut conn = SqliteConnection::establish(":memory:")?;
    /// # diesel::sql_query("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)").execute(&mut conn)?;
    /// let mut uow = UnitOfWork::new();
    /// let note = uow.register_new(Note { id: 1, body: "a".into() })?; // before the scope
    /// let failed: Result<(), Box<dyn std::error::Error>> = uow.transaction(&mut conn, |scope| {
    ///     scope.get_mut(&note)?.body = "b".into();
    ///     scope.flush()?;
    ///     Err("refused".into())
    /// });
    /// assert!(failed.is_err());
    /// assert_eq!(uow.get(&note)?.body, "a", "memory as when the scope began");
    /// assert_eq!(uow.state(&note)?, EntityState::New);
    /// uow.transaction(&mut conn, |_| Ok::<_, uow::Error>(()))?; // commits what is pending
    /// assert_eq!(uow.state(&note)?, EntityState::Clean);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn transaction<R, E, F>(&mut self, conn: &mut C, f: F) -> std::result::Result<R, E>
    where
        F: FnOnce(&mut Scope<'_, C>) -> std::result::Result<R, E>,
        E: From<Error>,
    {
        if self.in_scope() {
            return Err(Error::ScopeOnOtherConnection.into());
        }
        run(self, conn, f, true)
    }
}

fn run<C, R, E, F>(
    uow: &mut UnitOfWork<C>,
    conn: &mut C,
    f: F,
    outermost: bool,
) -> std::result::Result<R, E>
where
    C: Connection + LoadConnection + Send + 'static,
    C::Backend: Dialect,
    F: FnOnce(&mut Scope<'_, C>) -> std::result::Result<R, E>,
    E: From<Error>,
{
    block(async {
        let mut run = ScopeRun::begin(uow, conn, outermost).await?;
        let outcome = catch_unwind(AssertUnwindSafe(|| f(&mut run.scope())));
        let outcome = run.check_depth(outcome).await;
        run.end(outcome).await
    })
}

/// A scope in progress, from its BEGIN (or SAVEPOINT) to its end, on either driver. Until
/// it ends, dropping it means the scope was cancelled (its future dropped), and `Drop`
/// undoes it: memory as when the scope began, prepared participants compensated,
/// after-rollback hooks run (outermost scope), and the connection marked broken, since the
/// scope's transaction is open on it.
pub(crate) struct ScopeRun<'s, C: Driver> {
    uow: &'s mut UnitOfWork<C>,
    conn: &'s mut C::Conn,
    depth_before: Option<u32>,
    outermost: bool,
    armed: bool,
}

impl<C: Driver> Drop for ScopeRun<'_, C> {
    fn drop(&mut self) {
        if self.armed {
            transaction::mark_broken::<C>(self.conn);
            self.uow.state.participants.compensate_after_panic();
            self.uow.state.end_scope(false);
            if self.outermost {
                self.uow.hooks.after_rollback(None);
            }
        }
    }
}

impl<'s, C: Driver> ScopeRun<'s, C> {
    /// BEGIN (or SAVEPOINT), and a save point for memory.
    pub(crate) async fn begin(
        uow: &'s mut UnitOfWork<C>,
        conn: &'s mut C::Conn,
        outermost: bool,
    ) -> Result<Self> {
        let depth_before = transaction::depth::<C>(conn).await?;
        if outermost {
            transaction::check_mode(uow.transaction_mode, depth_before)?;
        }
        let mode = (outermost && depth_before.is_none()).then_some(uow.transaction_mode);
        uow.state.begin_scope();
        // Armed before BEGIN is sent: a BEGIN cut short leaves the connection in doubt.
        let mut run = ScopeRun {
            uow,
            conn,
            depth_before,
            outermost,
            armed: true,
        };
        if let Err(error) = transaction::begin::<C>(run.conn, mode).await {
            run.armed = false;
            run.uow.state.end_scope(false);
            return Err(error);
        }
        Ok(run)
    }

    /// The scope handed to the caller's closure.
    pub(crate) fn scope(&mut self) -> Scope<'_, C> {
        Scope {
            uow: &mut *self.uow,
            conn: &mut *self.conn,
        }
    }

    /// A closure that returned `Ok` must leave the transaction levels as it found them: a
    /// level it opened and did not close would take our COMMIT for its own.
    pub(crate) async fn check_depth<R, E: From<Error>>(
        &mut self,
        outcome: std::thread::Result<std::result::Result<R, E>>,
    ) -> std::thread::Result<std::result::Result<R, E>> {
        let Ok(Ok(value)) = outcome else {
            return outcome;
        };
        let own_depth = Some(self.depth_before.unwrap_or(0) + 1);
        Ok(match transaction::depth::<C>(self.conn).await {
            Ok(depth) if depth == own_depth => Ok(value),
            Ok(_) => Err(Error::TransactionLeftOpen.into()),
            Err(error) => Err(error.into()),
        })
    }

    /// Ends the scope with the closure's outcome: committed through the commit protocol
    /// (outermost), released (nested), or rolled back, database and memory; a panic continues
    /// once everything is undone.
    pub(crate) async fn end<R, E: From<Error>>(
        mut self,
        outcome: std::thread::Result<std::result::Result<R, E>>,
    ) -> std::result::Result<R, E> {
        let depth_before = self.depth_before;
        match outcome {
            Ok(Ok(value)) if self.outermost => {
                let how = Finish {
                    prepare: PrepareAt::BeforeCommit,
                    begin: false,
                    depth_before,
                    scope: true,
                    save_point: false,
                };
                // The protocol takes over undoing, cancellation included.
                self.armed = false;
                self.uow.finish(self.conn, how).await?;
                Ok(value)
            }
            Ok(Ok(value)) => match transaction::commit::<C>(self.conn, false).await {
                Ok(()) => {
                    self.armed = false;
                    self.uow.state.end_scope(true);
                    Ok(value)
                }
                Err(error) => {
                    transaction::roll_back_to::<C>(self.conn, depth_before).await;
                    self.armed = false;
                    self.uow.state.end_scope(false);
                    Err(error.into())
                }
            },
            Ok(Err(error)) => {
                // The closure's error is what the caller needs; a failing ROLLBACK leaves the
                // transaction manager broken, which the next use reports.
                transaction::roll_back_to::<C>(self.conn, depth_before).await;
                self.armed = false;
                self.uow.state.end_scope(false);
                if self.outermost {
                    self.uow.hooks.after_rollback(None);
                }
                Err(error)
            }
            Err(panic) => {
                transaction::roll_back_to::<C>(self.conn, depth_before).await;
                self.armed = false;
                self.uow.state.participants.compensate_after_panic();
                self.uow.state.end_scope(false);
                if self.outermost {
                    self.uow.hooks.after_rollback(None);
                }
                resume_unwind(panic)
            }
        }
    }
}
