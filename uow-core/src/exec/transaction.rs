//! Transactions on a Diesel connection: how deep the open ones go, BEGIN (or SAVEPOINT),
//! COMMIT (or RELEASE), and rolling back every level above a depth, through Diesel's
//! transaction manager so that Diesel's own bookkeeping stays right.

use diesel::connection::TransactionManager;
use diesel::Connection;

use crate::error::{is_connection_lost, Error, Result};

/// Whether `conn`'s transaction manager can still be used; if so, how many transaction
/// levels are open on it (`None`: no transaction).
///
/// A broken manager (a COMMIT or ROLLBACK failed) is most often a connection the server has
/// closed: one cheap statement tells the two apart, so the error says which it is.
pub(crate) fn depth<C: Connection>(conn: &mut C) -> Result<Option<u32>> {
    match C::TransactionManager::transaction_manager_status_mut(conn).transaction_depth() {
        Ok(depth) => Ok(depth.map(|d| d.get())),
        Err(_) => match conn.batch_execute("SELECT 1") {
            Err(source) if is_connection_lost(&source) => Err(Error::ConnectionLost {
                during_commit: false,
                source,
            }),
            _ => Err(Error::TransactionBroken),
        },
    }
}

/// BEGIN, or SAVEPOINT when `conn` is already in a transaction.
pub(crate) fn begin<C: Connection>(conn: &mut C) -> Result<()> {
    C::TransactionManager::begin_transaction(conn)
        .map_err(|e| Error::Transaction(e).or_connection_lost(false))
}

/// COMMIT, or RELEASE SAVEPOINT inside an outer transaction (`outermost: false`). A
/// connection lost at the real COMMIT leaves its outcome unknown, and the error says so.
pub(crate) fn commit<C: Connection>(conn: &mut C, outermost: bool) -> Result<()> {
    C::TransactionManager::commit_transaction(conn)
        .map_err(|e| Error::Transaction(e).or_connection_lost(outermost))
}

/// Rolls back every transaction level opened on `conn` above `depth` (a savepoint or
/// transaction somebody left open, for example by panicking inside Diesel's `transaction`,
/// which does not roll back on unwind). Stops when a ROLLBACK fails: the manager is broken
/// then, and the next use reports it (`TransactionBroken`, or `ConnectionLost`).
pub(crate) fn roll_back_to<C: Connection>(conn: &mut C, depth: Option<u32>) {
    let target = depth.unwrap_or(0);
    while let Ok(Some(current)) =
        C::TransactionManager::transaction_manager_status_mut(conn).transaction_depth()
    {
        if current.get() <= target || C::TransactionManager::rollback_transaction(conn).is_err() {
            break;
        }
    }
}
