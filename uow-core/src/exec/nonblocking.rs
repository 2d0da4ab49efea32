//! The asynchronous driver (feature `async`): [`Async<C>`] over a diesel-async connection `C`
//! (`AsyncPgConnection`, `AsyncMysqlConnection`, `SyncConnectionWrapper<SqliteConnection>`,
//! or a pooled one). It sends the statements the steps build, unchanged, through
//! diesel-async, and drives transactions with the connection's own transaction manager.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::pin;

use diesel::connection::TransactionManagerStatus;
use diesel::deserialize::FromSqlRow;
use diesel::expression::QueryMetadata;
use diesel::query_builder::{Query, QueryFragment, QueryId};
use diesel::QueryResult;
use diesel_async::{AsyncConnection, TransactionManager};
use futures_core::Stream;

use super::dialect::Dialect;
use super::driver::Driver;

/// The driver of a unit of work over a diesel-async connection `C`: an
/// [`AsyncUnitOfWork<C>`](crate::AsyncUnitOfWork) is a `UnitOfWork<Async<C>>` whose reads and
/// writes are `async`, and its scopes are `Scope<'_, Async<C>>`. Never constructed; it only
/// names the driver.
pub struct Async<C>(PhantomData<fn() -> C>);

impl<C> Driver for Async<C>
where
    C: AsyncConnection + 'static,
    C::Backend: Dialect,
{
    type Backend = C::Backend;
    type Conn = C;
    const READS_COLUMNS_DESCRIBED_ON_EXECUTION: bool = true;

    fn execute<'q, Q>(
        conn: &'q mut C,
        query: Q,
    ) -> impl Future<Output = QueryResult<usize>> + Send + 'q
    where
        Q: QueryFragment<C::Backend> + QueryId + Send + 'q,
    {
        conn.execute_returning_count(query)
    }

    async fn load<'q, Q, U>(conn: &'q mut C, query: Q) -> QueryResult<Vec<U>>
    where
        Q: Query + QueryFragment<C::Backend> + QueryId + Send + 'q,
        C::Backend: QueryMetadata<Q::SqlType>,
        U: FromSqlRow<Q::SqlType, C::Backend> + Send + 'static,
    {
        let rows = conn.load(query).await?;
        let mut rows = pin!(rows);
        let mut built = Vec::new();
        while let Some(row) = std::future::poll_fn(|cx| rows.as_mut().poll_next(cx)).await {
            let row =
                U::build_from_row(&row?).map_err(diesel::result::Error::DeserializationError)?;
            built.push(row);
        }
        Ok(built)
    }

    fn batch_execute<'q>(
        conn: &'q mut C,
        sql: &'static str,
    ) -> impl Future<Output = QueryResult<()>> + Send + 'q {
        conn.batch_execute(sql)
    }

    fn status(conn: &mut C) -> &mut TransactionManagerStatus {
        C::TransactionManager::transaction_manager_status_mut(conn)
    }

    fn begin(conn: &mut C) -> impl Future<Output = QueryResult<()>> + Send + '_ {
        C::TransactionManager::begin_transaction(conn)
    }

    fn commit(conn: &mut C) -> impl Future<Output = QueryResult<()>> + Send + '_ {
        C::TransactionManager::commit_transaction(conn)
    }

    fn rollback(conn: &mut C) -> impl Future<Output = QueryResult<()>> + Send + '_ {
        C::TransactionManager::rollback_transaction(conn)
    }
}
