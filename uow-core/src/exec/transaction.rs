//! Transactions on a connection: how deep the open ones go, BEGIN (or SAVEPOINT), COMMIT (or
//! RELEASE), and rolling back every level above a depth, through the connection's own
//! transaction manager (the [`Driver`]'s) so that Diesel's bookkeeping stays right.

use super::driver::Driver;
use crate::error::{is_connection_lost, Error, Result};

/// Whether `conn`'s transaction manager can still be used; if so, how many transaction
/// levels are open on it (`None`: no transaction).
///
/// A broken manager (a COMMIT or ROLLBACK failed, or a write was cancelled half way) is most
/// often a connection the server has closed: one cheap statement tells the two apart, so the
/// error says which it is.
pub(crate) async fn depth<D: Driver>(conn: &mut D::Conn) -> Result<Option<u32>> {
    match D::status(conn).transaction_depth() {
        Ok(depth) => Ok(depth.map(|d| d.get())),
        Err(_) => match D::batch_execute(conn, "SELECT 1").await {
            Err(source) if is_connection_lost(&source) => Err(Error::ConnectionLost {
                during_commit: false,
                source,
            }),
            _ => Err(Error::TransactionBroken),
        },
    }
}

/// BEGIN, or SAVEPOINT when `conn` is already in a transaction.
pub(crate) async fn begin<D: Driver>(conn: &mut D::Conn) -> Result<()> {
    D::begin(conn)
        .await
        .map_err(|e| Error::Transaction(e).or_connection_lost(false))
}

/// COMMIT, or RELEASE SAVEPOINT inside an outer transaction (`outermost: false`). A
/// connection lost at the real COMMIT leaves its outcome unknown, and the error says so.
pub(crate) async fn commit<D: Driver>(conn: &mut D::Conn, outermost: bool) -> Result<()> {
    D::commit(conn)
        .await
        .map_err(|e| Error::Transaction(e).or_connection_lost(outermost))
}

/// Rolls back every transaction level opened on `conn` above `depth` (a savepoint or
/// transaction somebody left open, for example by panicking inside Diesel's `transaction`,
/// which does not roll back on unwind). Stops when a ROLLBACK fails: the manager is broken
/// then, and the next use reports it (`TransactionBroken`, or `ConnectionLost`).
pub(crate) async fn roll_back_to<D: Driver>(conn: &mut D::Conn, depth: Option<u32>) {
    let target = depth.unwrap_or(0);
    while let Ok(Some(current)) = D::status(conn).transaction_depth() {
        if current.get() <= target || D::rollback(conn).await.is_err() {
            break;
        }
    }
}

/// Marks `conn`'s transaction manager broken: a write on it stopped half way (its future was
/// dropped), so a transaction of uow's may be open with some of its statements sent, or a
/// statement may still be in flight. Nothing may commit on it any more: Diesel refuses
/// transactions on a broken manager, pools discard such connections (closing one rolls its
/// transaction back), and uow reports `TransactionBroken` on its next use.
pub(crate) fn mark_broken<D: Driver>(conn: &mut D::Conn) {
    D::status(conn).set_in_error();
}
