//! The inbox: a consumer handles each message once, recording its id in `uow_inbox` in the
//! same transaction as the handler's changes: [`handle_once`], or `Scope::first_delivery` in a
//! scope of one's own (synchronous and async).

use diesel::connection::LoadConnection;
use diesel::Connection;

use crate::error::{Error, Result};
use crate::exec::driver::block;
#[cfg(feature = "async")]
use crate::exec::Async;
use crate::exec::{outbox, Dialect};
use crate::scope::Scope;
use crate::unit_of_work::UnitOfWork;

use super::now_micros;

/// Handles the message `message_id` once: in one scope of `uow` on `conn`, records the id in
/// `uow_inbox` and runs `handler`, so the handler's changes and the record commit together
/// (or neither does). A message handled before (a broker's redelivery, a relay's second
/// publication) is skipped: `Ok(None)`, and `handler` does not run. Two consumers handling the
/// same message at once: the second waits for the first's transaction and then skips it.
///
/// ```
/// # use uow::prelude::*;
/// # use diesel::prelude::*;
/// diesel::table! { balances (id) { id -> Integer, total -> BigInt } }
/// #[derive(Tracked, Clone, Debug, PartialEq)]
/// #[tracked(table = balances)]
/// struct Balance { id: i32, total: i64 }
///
/// let mut conn = SqliteConnection::establish(":memory:")?;
/// diesel::sql_query("CREATE TABLE balances (id INTEGER PRIMARY KEY, total BIGINT NOT NULL)").execute(&mut conn)?;
/// for sql in uow::outbox::SQLITE_SCHEMA { diesel::sql_query(*sql).execute(&mut conn)?; }
///
/// let mut uow = UnitOfWork::new();
/// let handle = |uow: &mut UnitOfWork<SqliteConnection>, conn: &mut SqliteConnection| {
///     uow::outbox::handle_once(uow, conn, "message-1", |scope| {
///         scope.register_new(Balance { id: 1, total: 100 })?;
///         Ok::<_, uow::Error>("handled")
///     })
/// };
/// assert_eq!(handle(&mut uow, &mut conn)?, Some("handled"));
/// assert_eq!(handle(&mut uow, &mut conn)?, None, "delivered twice, handled once");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn handle_once<C, R, E, F>(
    uow: &mut UnitOfWork<C>,
    conn: &mut C,
    message_id: &str,
    handler: F,
) -> std::result::Result<Option<R>, E>
where
    C: Connection + LoadConnection + Send + 'static,
    C::Backend: Dialect,
    F: FnOnce(&mut Scope<'_, C>) -> std::result::Result<R, E>,
    E: From<Error>,
{
    uow.transaction(conn, |scope| {
        if !scope.first_delivery(message_id)? {
            return Ok(None);
        }
        handler(scope).map(Some)
    })
}

impl<C> Scope<'_, C>
where
    C: Connection + LoadConnection + Send + 'static,
    C::Backend: Dialect,
{
    /// Records the message `message_id` as handled in this scope's transaction, and says
    /// whether this is its first delivery: `false` if it was handled before (by a committed
    /// scope), and the caller skips it. The record commits or rolls back with the scope, so a
    /// handler that fails can handle the message again. [`handle_once`] wraps it.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # use diesel::prelude::*;
    /// # let mut conn = SqliteConnection::establish(":memory:")?;
    /// # for sql in uow::outbox::SQLITE_SCHEMA { diesel::sql_query(*sql).execute(&mut conn)?; }
    /// let first = uow::transaction(&mut conn, |scope| scope.first_delivery("message-7"))?;
    /// let again = uow::transaction(&mut conn, |scope| scope.first_delivery("message-7"))?;
    /// assert!(first && !again);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn first_delivery(&mut self, message_id: &str) -> Result<bool> {
        block(outbox::record_in_inbox::<C>(
            self.connection(),
            message_id,
            now_micros(),
        ))
    }
}

#[cfg(feature = "async")]
impl<C> Scope<'_, Async<C>>
where
    C: diesel_async::AsyncConnection + 'static,
    C::Backend: Dialect,
{
    /// [`first_delivery`](Scope::first_delivery) in an async scope: records `message_id` as
    /// handled in the scope's transaction; `false` if it was handled before.
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")] fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use diesel_async::{sync_connection_wrapper::SyncConnectionWrapper, AsyncConnection, SimpleAsyncConnection};
    /// use uow::ScopedFutureExt;
    ///
    /// tokio::runtime::Runtime::new()?.block_on(async {
    ///     let mut conn = SyncConnectionWrapper::<diesel::SqliteConnection>::establish(":memory:").await?;
    ///     for sql in uow::outbox::SQLITE_SCHEMA { conn.batch_execute(sql).await?; }
    ///     let mut uow = uow::AsyncUnitOfWork::new();
    ///     for expected in [true, false] {
    ///         let first = uow
    ///             .transaction(&mut conn, |scope| async move { scope.first_delivery("m-1").await }.scope_boxed())
    ///             .await?;
    ///         assert_eq!(first, expected);
    ///     }
    ///     Ok(())
    /// })
    /// # }
    /// # #[cfg(not(feature = "sqlite"))] fn main() {}
    /// ```
    pub async fn first_delivery(&mut self, message_id: &str) -> Result<bool> {
        outbox::record_in_inbox::<Async<C>>(self.connection(), message_id, now_micros()).await
    }
}
