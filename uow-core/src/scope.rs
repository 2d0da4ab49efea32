//! Transaction scopes: a unit of work bound to one connection and one transaction, committed
//! when the closure returns `Ok`, rolled back (database and memory) on `Err` or panic.
//!
//! Memory rollback works per scope level: every store saves the first state of each slot a
//! scope changes (see `registry.rs`), so undoing a scope costs what the scope touched, not what
//! the unit of work holds. Nested scopes run on savepoints.

use std::ops::{Deref, DerefMut};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use diesel::connection::{LoadConnection, TransactionManager};
use diesel::Connection;

use crate::entity::Load;
use crate::error::{Error, Result};
use crate::execute::Dialect;
use crate::report::CommitReport;
use crate::unit_of_work::{Handle, UnitOfWork};

/// A unit of work inside an open transaction, handed to the closure of
/// [`transaction`](crate::transaction) or [`UnitOfWork::transaction`].
///
/// It dereferences to the [`UnitOfWork`], and adds what needs the scope's connection:
/// [`flush`](Scope::flush), [`load`](Scope::load), [`refresh`](Scope::refresh),
/// [`nested`](Scope::nested), and [`connection`](Scope::connection) for your own queries.
pub struct Scope<'s, C> {
    uow: &'s mut UnitOfWork<C>,
    conn: &'s mut C,
}

impl<C> Deref for Scope<'_, C> {
    type Target = UnitOfWork<C>;
    fn deref(&self) -> &UnitOfWork<C> {
        self.uow
    }
}

impl<C> DerefMut for Scope<'_, C> {
    fn deref_mut(&mut self) -> &mut UnitOfWork<C> {
        self.uow
    }
}

impl<C> Scope<'_, C>
where
    C: Connection + LoadConnection + 'static,
    C::Backend: Dialect,
{
    /// Sends every pending change now, inside the scope's transaction: generated keys are
    /// readable right after, and a later failure in the scope still rolls everything back,
    /// database and memory.
    pub fn flush(&mut self) -> Result<CommitReport> {
        self.uow.flush_in_transaction(self.conn)
    }

    /// The held instance for `key`, or the row read and tracked (see [`UnitOfWork::load`]).
    pub fn load<T: Load<C::Backend>>(&mut self, key: T::Key) -> Result<Handle<T>> {
        self.uow.load(self.conn, key)
    }

    /// Discards local changes of one entity and reads it again (see [`UnitOfWork::refresh`]).
    pub fn refresh<T: Load<C::Backend>>(&mut self, handle: &Handle<T>) -> Result<()> {
        self.uow.refresh(self.conn, handle)
    }

    /// The scope's connection, for queries of your own inside the same transaction.
    pub fn connection(&mut self) -> &mut C {
        self.conn
    }

    /// Runs `f` in a nested scope on a savepoint of this scope's connection. If `f` fails or
    /// panics, only its changes are undone (database and memory) and this scope goes on; if it
    /// succeeds, its changes become part of this scope. Pending changes are not flushed when
    /// the nested scope ends.
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
    C: Connection + LoadConnection + 'static,
    C::Backend: Dialect,
    F: FnOnce(&mut Scope<'_, C>) -> std::result::Result<R, E>,
    E: From<Error>,
{
    UnitOfWork::new().transaction(conn, f)
}

impl<C> UnitOfWork<C>
where
    C: Connection + LoadConnection + 'static,
    C::Backend: Dialect,
{
    /// Runs `f` on this unit of work in one transaction on `conn`: commits (after sending every
    /// pending change, including changes made before the scope) when `f` returns `Ok`; on `Err`
    /// or panic rolls the transaction back and puts every entity back as it was when the scope
    /// began, then returns the error or lets the panic continue.
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

/// Whether `conn`'s transaction manager can still be used; if so, how many transaction
/// levels are open on it (`None`: no transaction).
///
/// A broken manager (a COMMIT or ROLLBACK failed) is most often a connection the server has
/// closed: one cheap statement tells the two apart, so the error says which it is.
pub(crate) fn check_not_broken<C: Connection>(conn: &mut C) -> Result<Option<u32>> {
    match C::TransactionManager::transaction_manager_status_mut(conn).transaction_depth() {
        Ok(depth) => Ok(depth.map(|d| d.get())),
        Err(_) => match conn.batch_execute("SELECT 1") {
            Err(source) if crate::error::is_connection_lost(&source) => {
                Err(Error::ConnectionLost {
                    during_commit: false,
                    source,
                })
            }
            _ => Err(Error::TransactionBroken),
        },
    }
}

/// Rolls back every transaction level opened on `conn` above `depth` (a savepoint or
/// transaction somebody left open, for example by panicking inside Diesel's `transaction`,
/// which does not roll back on unwind). Stops when a ROLLBACK fails: the manager is broken
/// then, and the next use reports `TransactionBroken`.
pub(crate) fn roll_back_to<C: Connection>(conn: &mut C, depth: Option<u32>) {
    let target = depth.unwrap_or(0);
    while let Ok(Some(current)) = check_not_broken(conn) {
        if current <= target || C::TransactionManager::rollback_transaction(conn).is_err() {
            break;
        }
    }
}

fn run<C, R, E, F>(
    uow: &mut UnitOfWork<C>,
    conn: &mut C,
    f: F,
    outermost: bool,
) -> std::result::Result<R, E>
where
    C: Connection + LoadConnection + 'static,
    C::Backend: Dialect,
    F: FnOnce(&mut Scope<'_, C>) -> std::result::Result<R, E>,
    E: From<Error>,
{
    let depth_before = check_not_broken(conn)?;
    // BEGIN, or SAVEPOINT when `conn` is already in a transaction.
    C::TransactionManager::begin_transaction(conn)
        .map_err(|e| Error::Transaction(e).or_connection_lost(false))?;
    let own_depth = Some(depth_before.unwrap_or(0) + 1);
    uow.begin_scope();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut scope = Scope {
            uow: &mut *uow,
            conn: &mut *conn,
        };
        let value = f(&mut scope)?;
        // A level the closure opened and did not close would take our COMMIT for its own.
        if check_not_broken(scope.conn)? != own_depth {
            return Err(Error::TransactionLeftOpen.into());
        }
        if outermost {
            scope.uow.run_before_commit_hooks()?;
            scope.uow.flush_without_savepoint(scope.conn)?;
            if scope.uow.has_participants() {
                // Participants become final when our COMMIT returns, which must then be the
                // real one, not a savepoint's release inside somebody else's transaction.
                if depth_before.is_some() {
                    return Err(Error::ParticipantsInOuterTransaction.into());
                }
                // Prepared last, right before COMMIT; a failing prepare has compensated the
                // ones before it.
                scope.uow.prepare_participants()?;
            }
        }
        Ok(value)
    }));
    match outcome {
        Ok(Ok(value)) => match C::TransactionManager::commit_transaction(conn) {
            Ok(()) => {
                let report = uow.end_scope(true);
                if outermost {
                    let finalized = uow.committed();
                    uow.run_after_commit_hooks(&report);
                    finalized?;
                }
                Ok(value)
            }
            Err(error) => {
                // Diesel has already tried to roll back after the failed COMMIT. A connection
                // lost at the real COMMIT (not a savepoint's release) leaves its outcome unknown.
                let at_commit = depth_before.is_none();
                let error = Error::Transaction(error).or_connection_lost(at_commit);
                let error = uow.compensate_participants(error);
                uow.end_scope(false);
                if outermost {
                    uow.run_after_rollback_hooks(None);
                }
                Err(error.into())
            }
        },
        Ok(Err(error)) => {
            // The closure's error is what the caller needs; a failing ROLLBACK leaves the
            // transaction manager broken, which the next use reports as `TransactionBroken`.
            // (A participant's failed prepare has compensated the prepared ones already.)
            roll_back_to(conn, depth_before);
            uow.end_scope(false);
            if outermost {
                uow.run_after_rollback_hooks(None);
            }
            Err(error)
        }
        Err(panic) => {
            roll_back_to(conn, depth_before);
            uow.compensate_participants_after_panic();
            uow.end_scope(false);
            if outermost {
                uow.run_after_rollback_hooks(None);
            }
            resume_unwind(panic)
        }
    }
}
