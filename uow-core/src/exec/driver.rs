//! [`Driver`]: how the execution layer reaches a connection. Everything above it (the steps,
//! the dialects, the commit protocol) is written once, as `async` code over a `Driver`; two
//! drivers run it:
//!
//! - a synchronous Diesel connection `C` (`impl Driver for C`): each call sends its statement
//!   at once and hands back a future that is already complete, so [`block`] finishes the whole
//!   commit in one poll, on the caller's thread, with no runtime;
//! - `Async<C>` over a diesel-async connection (`exec/nonblocking.rs`,
//!   feature `async`), whose futures wait on the network.
//!
//! So both send the same statements in the same order, and a change to a step or a dialect
//! reaches both.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use diesel::connection::{
    Connection, LoadConnection, TransactionManager, TransactionManagerStatus,
};
use diesel::deserialize::FromSqlRow;
use diesel::expression::QueryMetadata;
use diesel::query_builder::{Query, QueryFragment, QueryId};
use diesel::QueryResult;

use super::dialect::Dialect;
use crate::error::Error;

/// How the execution layer sends statements and drives transactions on a connection
/// (`Self::Conn`). Implemented for every synchronous Diesel connection, and for
/// `Async<C>` with the `async` feature; not meant to be implemented outside
/// uow.
#[diagnostic::on_unimplemented(
    message = "uow cannot write through `{Self}`",
    label = "not a Diesel connection uow can drive",
    note = "a synchronous Diesel connection (`SqliteConnection`, `PgConnection`, \
            `MysqlConnection`) is used as it is: `UnitOfWork<PgConnection>`",
    note = "a diesel-async connection goes through `uow::Async`: \
            `UnitOfWork<uow::Async<AsyncPgConnection>>` (feature `async`)"
)]
pub trait Driver: 'static {
    /// The Diesel backend.
    type Backend: Dialect;
    /// The connection the caller passes to `commit`, `flush`, `load` and `refresh`.
    type Conn: Send;

    /// Whether rows can be read from a statement whose columns the server describes only
    /// when it runs it, as MariaDB does for `INSERT .. RETURNING`. Diesel's synchronous
    /// MySQL connection asks for a prepared statement's columns before running it, so it
    /// cannot; diesel-async's can.
    #[doc(hidden)]
    const READS_COLUMNS_DESCRIBED_ON_EXECUTION: bool;

    /// Runs `query`, returning the number of rows it affected.
    #[doc(hidden)]
    fn execute<'q, Q>(
        conn: &'q mut Self::Conn,
        query: Q,
    ) -> impl Future<Output = QueryResult<usize>> + Send + 'q
    where
        Q: QueryFragment<Self::Backend> + QueryId + Send + 'q;

    /// Runs `query`, returning its rows.
    #[doc(hidden)]
    fn load<'q, Q, U>(
        conn: &'q mut Self::Conn,
        query: Q,
    ) -> impl Future<Output = QueryResult<Vec<U>>> + Send + 'q
    where
        Q: Query + QueryFragment<Self::Backend> + QueryId + Send + 'q,
        Self::Backend: QueryMetadata<Q::SqlType>,
        U: FromSqlRow<Q::SqlType, Self::Backend> + Send + 'static;

    /// Runs SQL without values (a constant: `SELECT 1`).
    #[doc(hidden)]
    fn batch_execute<'q>(
        conn: &'q mut Self::Conn,
        sql: &'static str,
    ) -> impl Future<Output = QueryResult<()>> + Send + 'q;

    /// The connection's transaction manager's status (how deep, or broken).
    #[doc(hidden)]
    fn status(conn: &mut Self::Conn) -> &mut TransactionManagerStatus;

    /// BEGIN, or SAVEPOINT inside a transaction.
    #[doc(hidden)]
    fn begin(conn: &mut Self::Conn) -> impl Future<Output = QueryResult<()>> + Send + '_;

    /// COMMIT, or RELEASE SAVEPOINT.
    #[doc(hidden)]
    fn commit(conn: &mut Self::Conn) -> impl Future<Output = QueryResult<()>> + Send + '_;

    /// ROLLBACK, or ROLLBACK TO SAVEPOINT.
    #[doc(hidden)]
    fn rollback(conn: &mut Self::Conn) -> impl Future<Output = QueryResult<()>> + Send + '_;
}

/// The synchronous driver: a Diesel connection is its own driver, and every future it returns
/// is complete when returned.
impl<C> Driver for C
where
    C: Connection + LoadConnection + Send + 'static,
    C::Backend: Dialect,
{
    type Backend = C::Backend;
    type Conn = C;
    const READS_COLUMNS_DESCRIBED_ON_EXECUTION: bool = false;

    fn execute<'q, Q>(
        conn: &'q mut C,
        query: Q,
    ) -> impl Future<Output = QueryResult<usize>> + Send + 'q
    where
        Q: QueryFragment<C::Backend> + QueryId + Send + 'q,
    {
        std::future::ready(conn.execute_returning_count(&query))
    }

    fn load<'q, Q, U>(
        conn: &'q mut C,
        query: Q,
    ) -> impl Future<Output = QueryResult<Vec<U>>> + Send + 'q
    where
        Q: Query + QueryFragment<C::Backend> + QueryId + Send + 'q,
        C::Backend: QueryMetadata<Q::SqlType>,
        U: FromSqlRow<Q::SqlType, C::Backend> + Send + 'static,
    {
        std::future::ready(load_rows(conn, query))
    }

    fn batch_execute<'q>(
        conn: &'q mut C,
        sql: &'static str,
    ) -> impl Future<Output = QueryResult<()>> + Send + 'q {
        std::future::ready(conn.batch_execute(sql))
    }

    fn status(conn: &mut C) -> &mut TransactionManagerStatus {
        C::TransactionManager::transaction_manager_status_mut(conn)
    }

    fn begin(conn: &mut C) -> impl Future<Output = QueryResult<()>> + Send + '_ {
        std::future::ready(C::TransactionManager::begin_transaction(conn))
    }

    fn commit(conn: &mut C) -> impl Future<Output = QueryResult<()>> + Send + '_ {
        std::future::ready(C::TransactionManager::commit_transaction(conn))
    }

    fn rollback(conn: &mut C) -> impl Future<Output = QueryResult<()>> + Send + '_ {
        std::future::ready(C::TransactionManager::rollback_transaction(conn))
    }
}

/// The rows of `query`, each built the way Diesel's `load` builds them.
fn load_rows<C, Q, U>(conn: &mut C, query: Q) -> QueryResult<Vec<U>>
where
    C: LoadConnection,
    Q: Query + QueryFragment<C::Backend> + QueryId,
    C::Backend: QueryMetadata<Q::SqlType>,
    U: FromSqlRow<Q::SqlType, C::Backend> + 'static,
{
    let cursor = conn.load(query)?;
    cursor
        .map(|row| U::build_from_row(&row?).map_err(diesel::result::Error::DeserializationError))
        .collect()
}

/// Runs a future of the synchronous driver to its end. Such a future never waits (each
/// statement was sent when its future was made), so one poll finishes it.
pub(crate) fn block<T, E: From<Error>>(future: impl Future<Output = Result<T, E>>) -> Result<T, E> {
    let future = pin!(future);
    match future.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => Err(E::from(Error::Transaction(
            diesel::result::Error::QueryBuilderError(
                "uow's synchronous driver was left waiting, which it never should: this is a \
                 bug in uow, please report it"
                    .into(),
            ),
        ))),
    }
}

/// The first row of `query` (Diesel's `get_result`: `NotFound` when there is none).
pub(super) async fn one_row<D, Q, U>(conn: &mut D::Conn, query: Q) -> QueryResult<U>
where
    D: Driver,
    Q: Query + QueryFragment<D::Backend> + QueryId + Send,
    D::Backend: QueryMetadata<Q::SqlType>,
    U: FromSqlRow<Q::SqlType, D::Backend> + Send + 'static,
{
    let rows: Vec<U> = D::load(conn, query).await?;
    rows.into_iter()
        .next()
        .ok_or(diesel::result::Error::NotFound)
}
