//! Transactions on a connection: how deep the open ones go, BEGIN (or SAVEPOINT), COMMIT (or
//! RELEASE), and rolling back every level above a depth, through the connection's own
//! transaction manager (the [`Driver`]'s) so that Diesel's bookkeeping stays right.

use diesel::connection::{TransactionDepthChange, TransactionManagerStatus};
use diesel::result::Error as DieselError;

use super::dialect::Dialect;
use super::driver::Driver;
use crate::error::{is_connection_lost, Error, Result};
use crate::transaction_mode::TransactionMode;

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

/// BEGIN, or SAVEPOINT when `conn` is already in a transaction. `mode` is the outermost
/// transaction's (the caller passes `None` for a savepoint, whose mode is its transaction's):
/// the backend's statement for it, sent as it is (one round trip, MySQL's two statements
/// included), with the transaction manager told of the new level, as Diesel's own custom
/// BEGINs do (`AnsiTransactionManager::begin_transaction_sql`, which needs the connection's
/// manager to be that type, while a pooled or wrapped connection has its own).
pub(crate) async fn begin<D: Driver>(
    conn: &mut D::Conn,
    mode: Option<TransactionMode>,
) -> Result<()> {
    let sql = match mode {
        Some(mode) => <D::Backend as Dialect>::begin_sql(mode)?,
        None => None,
    };
    let began = match sql {
        None => D::begin(conn).await,
        Some(sql) => match D::batch_execute(conn, sql).await {
            Ok(()) => match D::status(conn) {
                TransactionManagerStatus::Valid(valid) => {
                    valid.change_transaction_depth(TransactionDepthChange::IncreaseDepth)
                }
                TransactionManagerStatus::InError => Err(DieselError::BrokenTransactionManager),
            },
            Err(error) => Err(error),
        },
    };
    began.map_err(|e| Error::Transaction(e).or_connection_lost(false))
}

/// Refuses a transaction mode for a transaction opened outside the unit of work
/// (`depth_before` is `Some`): it began in a mode of its own, which uow cannot change.
pub(crate) fn check_mode(mode: TransactionMode, depth_before: Option<u32>) -> Result<()> {
    if depth_before.is_some() && !mode.is_default() {
        return Err(Error::TransactionModeInOuterTransaction { mode });
    }
    Ok(())
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
/// which does not roll back on unwind).
///
/// A failed ROLLBACK TO SAVEPOINT leaves Diesel's manager valid one level lower (MySQL drops
/// a whole transaction on a deadlock, its savepoints with it), so the outer levels are rolled
/// back next. A failed top-level ROLLBACK leaves the manager broken; if the connection is
/// alive, [`repair`] may mend it. Otherwise the next use reports it (`TransactionBroken`, or
/// `ConnectionLost`).
pub(crate) async fn roll_back_to<D: Driver>(conn: &mut D::Conn, depth: Option<u32>) {
    let target = depth.unwrap_or(0);
    loop {
        let current = match D::status(conn).transaction_depth() {
            Ok(Some(current)) if current.get() > target => current,
            Ok(_) => return,
            Err(_) => break,
        };
        if D::rollback(conn).await.is_err() {
            match D::status(conn).transaction_depth() {
                Ok(Some(after)) if after < current => {}
                Ok(None) => return,
                _ => break,
            }
        }
    }
    if target == 0 {
        repair::<D>(conn).await;
    }
}

/// Mends a manager a failed top-level ROLLBACK (or a COMMIT and its ROLLBACK) left broken on a
/// live connection. A Galera node reports a transaction it aborted (a conflicting write set
/// committed on another node first) with a deadlock error on the client's next statement,
/// ROLLBACK included, although the transaction is gone: a second ROLLBACK then succeeds, and
/// a successful ROLLBACK proves that no transaction is open, so the manager is told that.
async fn repair<D: Driver>(conn: &mut D::Conn) {
    if D::status(conn).transaction_depth().is_ok() {
        return;
    }
    if D::batch_execute(conn, "ROLLBACK").await.is_ok() {
        *D::status(conn) = TransactionManagerStatus::default();
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
