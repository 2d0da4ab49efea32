//! The `async` API (feature `async`): [`AsyncUnitOfWork`], whose `commit`, `flush`, `load`,
//! `refresh` and scopes take a diesel-async connection. They run the
//! same protocol as the synchronous methods (`protocol.rs`, `scope.rs`, `loading.rs`) through
//! the asynchronous driver (`exec/nonblocking.rs`): the same statements, in the same order.
//!
//! Every future here is `Send` when the connection is (diesel-async's are), so a unit of work
//! can be held across `.await` in a handler on a multi-threaded runtime.
//!
//! **Cancellation.** A future dropped before it finishes (a timeout, a client that went away)
//! undoes the call in memory: every entity as before it, prepared participants compensated,
//! after-rollback hooks run. Its transaction is never committed by uow: the connection is
//! marked broken (Diesel refuses further transactions on it, diesel-async's pools discard it,
//! and closing it rolls the transaction back; uow reports [`Error::TransactionBroken`] if it
//! is used again), so drop it or let the pool replace it. One window is unavoidable: a future
//! dropped while its COMMIT is in flight leaves memory as before while the server may have
//! committed, as when a connection is lost during COMMIT.

use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};

use diesel_async::AsyncConnection;
use scoped_futures::ScopedBoxFuture;

use crate::entity::Load;
use crate::error::{Error, Result};
use crate::exec::{Async, Dialect};
use crate::handle::Handle;
use crate::protocol::catch_unwind;
use crate::report::CommitReport;
use crate::scope::{Scope, ScopeRun};
use crate::unit_of_work::UnitOfWork;

mod scope;

use scope::run;
pub use scope::transaction_async;

/// A unit of work over the diesel-async connection `C` (`AsyncPgConnection`,
/// `AsyncMysqlConnection`, `SyncConnectionWrapper<SqliteConnection>`, or one from a pool):
/// the [`UnitOfWork`] it dereferences to, whose reads and writes are `async`.
///
/// It is a type of its own, not `UnitOfWork<C>`, so that `UnitOfWork::new()` followed by
/// `commit(&mut conn)` keeps inferring its connection type whether or not this feature is on.
pub struct AsyncUnitOfWork<C>
where
    C: AsyncConnection + 'static,
    C::Backend: Dialect,
{
    uow: UnitOfWork<Async<C>>,
}

impl<C> AsyncUnitOfWork<C>
where
    C: AsyncConnection + 'static,
    C::Backend: Dialect,
{
    /// An empty unit of work.
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")]
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use diesel_async::{sync_connection_wrapper::SyncConnectionWrapper, AsyncConnection, SimpleAsyncConnection};
    /// # use uow::prelude::*;
    /// # use uow::ScopedFutureExt;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { #[tracked(generated)] id: i32, body: String }
    /// # type Conn = SyncConnectionWrapper<diesel::SqliteConnection>;
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// # let mut conn = Conn::establish(":memory:").await?;
    /// # conn.batch_execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
    /// #                     INSERT INTO notes VALUES (1, 'a')").await?;
    /// let mut uow = uow::AsyncUnitOfWork::<Conn>::new();
    /// assert!(uow.is_empty()); // it dereferences to a `UnitOfWork`: the same synchronous calls
    /// let note = uow.register_new(Note { id: 0, body: "b".into() })?;
    /// uow.commit(&mut conn).await?;
    /// assert_eq!(uow.get(&note)?.id, 2);
    /// # Ok(())
    /// # })
    /// # }
    /// # #[cfg(not(feature = "sqlite"))] fn main() {}
    /// ```
    pub fn new() -> Self {
        AsyncUnitOfWork {
            uow: UnitOfWork::new(),
        }
    }
}

impl<C> Default for AsyncUnitOfWork<C>
where
    C: AsyncConnection + 'static,
    C::Backend: Dialect,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<C> fmt::Debug for AsyncUnitOfWork<C>
where
    C: AsyncConnection + 'static,
    C::Backend: Dialect,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.uow.fmt(f)
    }
}

impl<C> Deref for AsyncUnitOfWork<C>
where
    C: AsyncConnection + 'static,
    C::Backend: Dialect,
{
    type Target = UnitOfWork<Async<C>>;
    fn deref(&self) -> &UnitOfWork<Async<C>> {
        &self.uow
    }
}

impl<C> DerefMut for AsyncUnitOfWork<C>
where
    C: AsyncConnection + 'static,
    C::Backend: Dialect,
{
    fn deref_mut(&mut self) -> &mut UnitOfWork<Async<C>> {
        &mut self.uow
    }
}

/// The body of an async scope: a closure that gets the scope and returns its work as a boxed
/// future borrowing it (`|scope| async move { .. }.scope_boxed()`), and may itself borrow
/// anything that lives for `'a`.
pub trait ScopeBody<'a, C, T>:
    for<'r> FnOnce(&'r mut Scope<'_, Async<C>>) -> ScopedBoxFuture<'a, 'r, T> + Send + 'a
where
    C: AsyncConnection + 'static,
    C::Backend: Dialect,
{
}

impl<'a, C, T, F> ScopeBody<'a, C, T> for F
where
    C: AsyncConnection + 'static,
    C::Backend: Dialect,
    F: for<'r> FnOnce(&'r mut Scope<'_, Async<C>>) -> ScopedBoxFuture<'a, 'r, T> + Send + 'a,
{
}

impl<C> AsyncUnitOfWork<C>
where
    C: AsyncConnection + 'static,
    C::Backend: Dialect,
{
    /// Writes every pending change in one transaction (see the synchronous
    /// [`UnitOfWork::commit`]: the same statements, the same all-or-nothing in the database
    /// and in memory).
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")]
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use diesel_async::{sync_connection_wrapper::SyncConnectionWrapper, AsyncConnection, SimpleAsyncConnection};
    /// use uow::prelude::*;
    /// diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// #[derive(Tracked, Clone, Debug, PartialEq)]
    /// #[tracked(table = notes)]
    /// struct Note { #[tracked(generated)] id: i32, body: String }
    ///
    /// let runtime = tokio::runtime::Runtime::new()?;
    /// runtime.block_on(async {
    ///     let mut conn = SyncConnectionWrapper::<diesel::SqliteConnection>::establish(":memory:").await?;
    ///     conn.batch_execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)").await?;
    ///
    ///     let mut uow = uow::AsyncUnitOfWork::<SyncConnectionWrapper<diesel::SqliteConnection>>::new();
    ///     let note = uow.register_new(Note { id: 0, body: "hello".into() })?;
    ///     let report = uow.commit(&mut conn).await?;
    ///     assert_eq!(report.inserted("notes"), 1);
    ///     assert_eq!(uow.get(&note)?.id, 1);
    ///     Ok(())
    /// })
    /// # }
    /// # #[cfg(not(feature = "sqlite"))] fn main() {}
    /// ```
    pub fn commit<'c>(
        &'c mut self,
        conn: &'c mut C,
    ) -> impl Future<Output = Result<CommitReport>> + Send + 'c {
        self.uow.commit_on(conn)
    }

    /// Sends every pending change inside the transaction already open on `conn` (see the
    /// synchronous [`UnitOfWork::flush`]).
    // Not `async fn`: the future is declared `Send`, so that callers inside other futures need
    // not prove it (rustc cannot always, rust-lang/rust#100013).
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")]
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use diesel_async::{sync_connection_wrapper::SyncConnectionWrapper, AsyncConnection, SimpleAsyncConnection};
    /// # use uow::prelude::*;
    /// # use uow::ScopedFutureExt;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { #[tracked(generated)] id: i32, body: String }
    /// # type Conn = SyncConnectionWrapper<diesel::SqliteConnection>;
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// # let mut conn = Conn::establish(":memory:").await?;
    /// # conn.batch_execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
    /// #                     INSERT INTO notes VALUES (1, 'a')").await?;
    /// let mut uow = uow::AsyncUnitOfWork::<Conn>::new();
    /// let note = uow.register_new(Note { id: 0, body: "b".into() })?;
    /// assert!(matches!(uow.flush(&mut conn).await, Err(uow::Error::NoTransaction)));
    /// conn.transaction::<_, uow::Error, _>(async |conn| {
    ///     uow.flush(conn).await?; // the key is assigned now, inside your transaction
    ///     assert_eq!(uow.get(&note)?.id, 2);
    ///     Ok(())
    /// })
    /// .await?;
    /// # Ok(())
    /// # })
    /// # }
    /// # #[cfg(not(feature = "sqlite"))] fn main() {}
    /// ```
    #[allow(clippy::manual_async_fn)]
    pub fn flush<'c>(
        &'c mut self,
        conn: &'c mut C,
    ) -> impl Future<Output = Result<CommitReport>> + Send + 'c {
        async move {
            if self.in_scope() {
                return Err(Error::FlushInScope);
            }
            self.uow.flush_on(conn).await
        }
    }

    /// The entity with primary key `key`: the instance already held, or the row read and
    /// tracked as clean (see the synchronous [`UnitOfWork::load`]).
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")]
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use diesel_async::{sync_connection_wrapper::SyncConnectionWrapper, AsyncConnection, SimpleAsyncConnection};
    /// # use uow::prelude::*;
    /// # use uow::ScopedFutureExt;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { #[tracked(generated)] id: i32, body: String }
    /// # type Conn = SyncConnectionWrapper<diesel::SqliteConnection>;
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// # let mut conn = Conn::establish(":memory:").await?;
    /// # conn.batch_execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
    /// #                     INSERT INTO notes VALUES (1, 'a')").await?;
    /// let mut uow = uow::AsyncUnitOfWork::<Conn>::new();
    /// let note = uow.load::<Note>(&mut conn, 1).await?;
    /// assert_eq!(uow.get(&note)?.body, "a");
    /// assert_eq!(uow.load::<Note>(&mut conn, 1).await?, note, "one row, one instance");
    /// assert!(matches!(uow.load::<Note>(&mut conn, 9).await, Err(uow::Error::NotFound { .. })));
    /// # Ok(())
    /// # })
    /// # }
    /// # #[cfg(not(feature = "sqlite"))] fn main() {}
    /// ```
    pub fn load<'c, T: Load<C::Backend>>(
        &'c mut self,
        conn: &'c mut C,
        key: T::Key,
    ) -> impl Future<Output = Result<Handle<T>>> + Send + 'c {
        self.uow.find_or_read(conn, key)
    }

    /// Attaches roots read with an ordinary Diesel query with their trees, one query per
    /// level for all of them (see the synchronous [`UnitOfWork::attach_aggregates`]).
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")]
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use diesel_async::{sync_connection_wrapper::SyncConnectionWrapper, AsyncConnection, SimpleAsyncConnection};
    /// # use uow::prelude::*;
    /// use diesel::{ExpressionMethods, QueryDsl};
    /// use diesel_async::RunQueryDsl; // for your own queries (its `load` hides the unit of work's)
    ///
    /// diesel::table! { carts (id) { id -> Integer, owner -> Text } }
    /// diesel::table! { items (id) { id -> Integer, cart_id -> Integer, sku -> Text } }
    ///
    /// #[derive(Tracked, Clone, Debug, PartialEq)]
    /// #[tracked(table = carts)]
    /// struct Cart { id: i32, owner: String, #[tracked(children)] items: Vec<Item> }
    ///
    /// #[derive(Tracked, Clone, Debug, PartialEq)]
    /// #[tracked(table = items, belongs_to(Cart, foreign_key = cart_id))]
    /// struct Item { id: i32, cart_id: i32, sku: String }
    ///
    /// # type Conn = SyncConnectionWrapper<diesel::SqliteConnection>;
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// # let mut conn = Conn::establish(":memory:").await?;
    /// # conn.batch_execute(
    /// #     "CREATE TABLE carts (id INTEGER PRIMARY KEY, owner TEXT NOT NULL);
    /// #      CREATE TABLE items (id INTEGER PRIMARY KEY, cart_id INTEGER NOT NULL, sku TEXT NOT NULL);
    /// #      INSERT INTO carts VALUES (1, 'ann'), (2, 'bob');
    /// #      INSERT INTO items VALUES (10, 1, 'pen'), (11, 1, 'ink'), (12, 2, 'pad');",
    /// # ).await?;
    /// let carts: Vec<Cart> = carts::table
    ///     .filter(carts::owner.eq("ann"))
    ///     .select((carts::id, carts::owner))
    ///     .load::<(i32, String)>(&mut conn)
    ///     .await?
    ///     .into_iter()
    ///     .map(|(id, owner)| Cart { id, owner, items: Vec::new() })
    ///     .collect();
    /// let mut uow = uow::AsyncUnitOfWork::<Conn>::new();
    /// let handles = uow.attach_aggregates(&mut conn, carts).await?; // one query for the items
    /// assert_eq!(uow.get(&handles[0])?.items.len(), 2);
    /// # Ok(())
    /// # })
    /// # }
    /// # #[cfg(not(feature = "sqlite"))] fn main() {}
    /// ```
    pub fn attach_aggregates<'c, T: Load<C::Backend>>(
        &'c mut self,
        conn: &'c mut C,
        roots: Vec<T>,
    ) -> impl Future<Output = Result<Vec<Handle<T>>>> + Send + 'c {
        self.uow.attach_trees(conn, roots)
    }

    /// Discards the local changes of one entity and reads its row again, an aggregate's root
    /// with its whole tree (see the synchronous [`UnitOfWork::refresh`]).
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")]
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use diesel_async::{sync_connection_wrapper::SyncConnectionWrapper, AsyncConnection, SimpleAsyncConnection};
    /// # use uow::prelude::*;
    /// # use uow::ScopedFutureExt;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { #[tracked(generated)] id: i32, body: String }
    /// # type Conn = SyncConnectionWrapper<diesel::SqliteConnection>;
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// # let mut conn = Conn::establish(":memory:").await?;
    /// # conn.batch_execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
    /// #                     INSERT INTO notes VALUES (1, 'a')").await?;
    /// let mut uow = uow::AsyncUnitOfWork::<Conn>::new();
    /// let note = uow.load::<Note>(&mut conn, 1).await?;
    /// uow.get_mut(&note)?.body = "mine".into();
    /// conn.batch_execute("UPDATE notes SET body = 'theirs' WHERE id = 1").await?;
    /// uow.refresh(&mut conn, &note).await?;
    /// assert_eq!(uow.get(&note)?.body, "theirs");
    /// assert_eq!(uow.state(&note)?, EntityState::Clean);
    /// # Ok(())
    /// # })
    /// # }
    /// # #[cfg(not(feature = "sqlite"))] fn main() {}
    /// ```
    pub fn refresh<'c, T: Load<C::Backend>>(
        &'c mut self,
        conn: &'c mut C,
        handle: &'c Handle<T>,
    ) -> impl Future<Output = Result<()>> + Send + 'c {
        self.uow.reread(conn, handle)
    }

    /// Runs `f` on this unit of work in one transaction on `conn`: commits when the future it
    /// returns (`async move { .. }.scope_boxed()`, with [`ScopedFutureExt`](crate::ScopedFutureExt),
    /// which the prelude brings in) resolves to `Ok`, rolls back (database and memory) on `Err`, on a panic (which
    /// then continues) and when this future is dropped half way (see the module
    /// documentation on cancellation).
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")]
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use diesel_async::{sync_connection_wrapper::SyncConnectionWrapper, AsyncConnection, SimpleAsyncConnection};
    /// use uow::prelude::*;
    /// use uow::ScopedFutureExt;
    /// diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// #[derive(Tracked, Clone, Debug, PartialEq)]
    /// #[tracked(table = notes)]
    /// struct Note { #[tracked(generated)] id: i32, body: String }
    ///
    /// tokio::runtime::Runtime::new()?.block_on(async {
    ///     let mut conn = SyncConnectionWrapper::<diesel::SqliteConnection>::establish(":memory:").await?;
    ///     conn.batch_execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)").await?;
    ///
    ///     let mut uow = uow::AsyncUnitOfWork::new();
    ///     let id = uow
    ///         .transaction(&mut conn, |scope| {
    ///             async move {
    ///                 let note = scope.register_new(Note { id: 0, body: "hello".into() })?;
    ///                 scope.flush().await?; // the key is known now, and still undoable
    ///                 Ok::<_, uow::Error>(scope.get(&note)?.id)
    ///             }
    ///             .scope_boxed()
    ///         })
    ///         .await?;
    ///     assert_eq!(id, 1);
    ///     Ok(())
    /// })
    /// # }
    /// # #[cfg(not(feature = "sqlite"))] fn main() {}
    /// ```
    pub fn transaction<'a, 'c, R, E, F>(
        &'c mut self,
        conn: &'c mut C,
        f: F,
    ) -> impl Future<Output = std::result::Result<R, E>> + Send + 'c
    where
        'a: 'c,
        F: ScopeBody<'a, C, std::result::Result<R, E>>,
        R: Send + 'a,
        E: From<Error> + Send + 'a,
    {
        async move {
            if self.in_scope() {
                return Err(Error::ScopeOnOtherConnection.into());
            }
            run(&mut self.uow, conn, f, true).await
        }
    }
}
