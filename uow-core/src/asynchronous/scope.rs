//! Async scopes: [`transaction_async`], and the `async` reads and writes of a [`Scope`] over
//! the asynchronous driver (`flush`, `load`, `refresh`, nested scopes on savepoints).

use super::*;

/// Runs `f` with a new unit of work in one transaction on `conn` (see
/// [`AsyncUnitOfWork::transaction`]): committed when its future
/// resolves to `Ok`, rolled back on `Err`, panic or cancellation.
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
/// let id = uow::transaction_async(&mut conn, |scope| {
///     async move {
///         let note = scope.register_new(Note { id: 0, body: "b".into() })?;
///         scope.flush().await?;
///         Ok::<_, uow::Error>(scope.get(&note)?.id)
///     }
///     .scope_boxed()
/// })
/// .await?;
/// assert_eq!(id, 2);
/// # Ok(())
/// # })
/// # }
/// # #[cfg(not(feature = "sqlite"))] fn main() {}
/// ```
pub fn transaction_async<'a, 'c, C, R, E, F>(
    conn: &'c mut C,
    f: F,
) -> impl Future<Output = std::result::Result<R, E>> + Send + 'c
where
    'a: 'c,
    C: AsyncConnection + 'static,
    C::Backend: Dialect,
    F: ScopeBody<'a, C, std::result::Result<R, E>>,
    R: Send + 'a,
    E: From<Error> + Send + 'a,
{
    async move { AsyncUnitOfWork::<C>::new().transaction(conn, f).await }
}

impl<C> Scope<'_, Async<C>>
where
    C: AsyncConnection + 'static,
    C::Backend: Dialect,
{
    /// Sends every pending change now, inside the scope's transaction (see the synchronous
    /// [`Scope::flush`]).
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
    /// use diesel::QueryDsl;
    /// let outcome: Result<(), Box<dyn std::error::Error + Send + Sync>> =
    ///     uow::transaction_async(&mut conn, |scope| {
    ///         async move {
    ///             let note = scope.register_new(Note { id: 0, body: "b".into() })?;
    ///             assert_eq!(scope.flush().await?.inserted("notes"), 1);
    ///             assert_eq!(scope.get(&note)?.id, 2); // the key is known now
    ///             Err("changed my mind".into()) // the flushed INSERT is rolled back too
    ///         }
    ///         .scope_boxed()
    ///     })
    ///     .await;
    /// assert!(outcome.is_err());
    /// let count: i64 = diesel_async::RunQueryDsl::get_result(notes::table.count(), &mut conn).await?;
    /// assert_eq!(count, 1);
    /// # Ok(())
    /// # })
    /// # }
    /// # #[cfg(not(feature = "sqlite"))] fn main() {}
    /// ```
    pub fn flush(&mut self) -> impl Future<Output = Result<CommitReport>> + Send + '_ {
        let (uow, conn) = self.parts();
        uow.flush_on(conn)
    }

    /// The held instance for `key`, or the row read and tracked.
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
    /// uow::transaction_async(&mut conn, |scope| {
    ///     async move {
    ///         let note = scope.load::<Note>(1).await?; // read inside the scope's transaction
    ///         scope.get_mut(&note)?.body = "b".into();
    ///         Ok::<_, uow::Error>(())
    ///     }
    ///     .scope_boxed()
    /// })
    /// .await?;
    /// let mut check = uow::AsyncUnitOfWork::<Conn>::new();
    /// let note = check.load::<Note>(&mut conn, 1).await?;
    /// assert_eq!(check.get(&note)?.body, "b");
    /// # Ok(())
    /// # })
    /// # }
    /// # #[cfg(not(feature = "sqlite"))] fn main() {}
    /// ```
    pub fn load<T: Load<C::Backend>>(
        &mut self,
        key: T::Key,
    ) -> impl Future<Output = Result<Handle<T>>> + Send + '_ {
        let (uow, conn) = self.parts();
        uow.find_or_read(conn, key)
    }

    /// Attaches roots read by a query of your own, each with its whole tree, the children read
    /// in the scope's transaction (see the synchronous [`Scope::attach_aggregates`]).
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")]
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use diesel_async::{sync_connection_wrapper::SyncConnectionWrapper, AsyncConnection, SimpleAsyncConnection};
    /// # use uow::prelude::*;
    /// # use uow::ScopedFutureExt;
    /// use diesel::{ExpressionMethods, QueryDsl};
    /// use diesel_async::RunQueryDsl; // for your own queries
    /// # diesel::table! { carts (id) { id -> Integer, owner -> Text } }
    /// # diesel::table! { items (id) { id -> Integer, cart_id -> Integer, sku -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = carts)]
    /// # struct Cart { id: i32, owner: String, #[tracked(children)] items: Vec<Item> }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = items, belongs_to(Cart, foreign_key = cart_id))]
    /// # struct Item { id: i32, cart_id: i32, sku: String }
    /// # type Conn = SyncConnectionWrapper<diesel::SqliteConnection>;
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// # let mut conn = Conn::establish(":memory:").await?;
    /// # conn.batch_execute(
    /// #     "CREATE TABLE carts (id INTEGER PRIMARY KEY, owner TEXT NOT NULL);
    /// #      CREATE TABLE items (id INTEGER PRIMARY KEY, cart_id INTEGER NOT NULL, sku TEXT NOT NULL);
    /// #      INSERT INTO carts VALUES (1, 'ann'), (2, 'bob');
    /// #      INSERT INTO items VALUES (10, 1, 'pen'), (11, 1, 'ink'), (12, 2, 'pad');",
    /// # ).await?;
    /// uow::transaction_async(&mut conn, |scope| {
    ///     async move {
    ///         let carts: Vec<Cart> = carts::table
    ///             .filter(carts::owner.eq("ann"))
    ///             .select((carts::id, carts::owner))
    ///             .load::<(i32, String)>(scope.connection())
    ///             .await?
    ///             .into_iter()
    ///             .map(|(id, owner)| Cart { id, owner, items: Vec::new() })
    ///             .collect();
    ///         let handles = scope.attach_aggregates(carts).await?; // one query for the items
    ///         scope.get_mut(&handles[0])?.items.retain(|item| item.sku != "ink");
    ///         Ok::<_, uow::Error>(()) // a query's own error converts by `?`
    ///     }
    ///     .scope_boxed()
    /// })
    /// .await?; // committed: the ink is deleted
    /// let skus: Vec<String> = items::table.select(items::sku).order(items::id).load(&mut conn).await?;
    /// assert_eq!(skus, ["pen", "pad"]);
    /// # Ok(())
    /// # })
    /// # }
    /// # #[cfg(not(feature = "sqlite"))] fn main() {}
    /// ```
    pub fn attach_aggregates<T: Load<C::Backend>>(
        &mut self,
        roots: Vec<T>,
    ) -> impl Future<Output = Result<Vec<Handle<T>>>> + Send + '_ {
        let (uow, conn) = self.parts();
        uow.attach_trees(conn, roots)
    }

    /// Discards local changes of one entity (an aggregate's root: of its whole tree) and reads
    /// it again (see [`UnitOfWork::refresh`](crate::UnitOfWork::refresh)).
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
    /// uow::transaction_async(&mut conn, |scope| {
    ///     async move {
    ///         let note = scope.load::<Note>(1).await?;
    ///         scope.get_mut(&note)?.body = "draft".into();
    ///         let sql = "UPDATE notes SET body = 'by SQL' WHERE id = 1";
    ///         scope.connection().batch_execute(sql).await?;
    ///         scope.refresh(&note).await?; // the draft is dropped, the row read again
    ///         assert_eq!(scope.get(&note)?.body, "by SQL");
    ///         Ok::<_, uow::Error>(())
    ///     }
    ///     .scope_boxed()
    /// })
    /// .await?;
    /// # Ok(())
    /// # })
    /// # }
    /// # #[cfg(not(feature = "sqlite"))] fn main() {}
    /// ```
    pub fn refresh<'c, T: Load<C::Backend>>(
        &'c mut self,
        handle: &'c Handle<T>,
    ) -> impl Future<Output = Result<()>> + Send + 'c {
        let (uow, conn) = self.parts();
        uow.reread(conn, handle)
    }

    /// Runs `f` in a nested scope on a savepoint (see the synchronous [`Scope::nested`]).
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
    /// uow.transaction(&mut conn, |scope| {
    ///     async move {
    ///         scope.register_new(Note { id: 0, body: "kept".into() })?;
    ///         let inner: Result<(), Box<dyn std::error::Error + Send + Sync>> = scope
    ///             .nested(|inner| {
    ///                 async move {
    ///                     inner.register_new(Note { id: 0, body: "undone".into() })?;
    ///                     inner.flush().await?;
    ///                     Err("the nested part fails".into()) // only its own changes are undone
    ///                 }
    ///                 .scope_boxed()
    ///             })
    ///             .await;
    ///         assert!(inner.is_err());
    ///         Ok::<_, uow::Error>(())
    ///     }
    ///     .scope_boxed()
    /// })
    /// .await?;
    /// assert_eq!(uow.len(), 1);
    /// assert_eq!(uow.get(&uow.find::<Note>(&2).ok_or("kept")?)?.body, "kept");
    /// # Ok(())
    /// # })
    /// # }
    /// # #[cfg(not(feature = "sqlite"))] fn main() {}
    /// ```
    pub fn nested<'a, 'c, R, E, F>(
        &'c mut self,
        f: F,
    ) -> impl Future<Output = std::result::Result<R, E>> + Send + 'c
    where
        'a: 'c,
        F: ScopeBody<'a, C, std::result::Result<R, E>>,
        R: Send + 'a,
        E: From<Error> + Send + 'a,
    {
        let (uow, conn) = self.parts();
        async move { run(uow, conn, f, false).await }
    }
}

pub(super) async fn run<'a, C, R, E, F>(
    uow: &mut UnitOfWork<Async<C>>,
    conn: &mut C,
    f: F,
    outermost: bool,
) -> std::result::Result<R, E>
where
    C: AsyncConnection + 'static,
    C::Backend: Dialect,
    F: ScopeBody<'a, C, std::result::Result<R, E>>,
    R: Send + 'a,
    E: From<Error> + Send + 'a,
{
    let mut run = ScopeRun::begin(uow, conn, outermost).await?;
    let body = async {
        let mut scope = run.scope();
        f(&mut scope).await
    };
    let outcome = catch_unwind(body).await;
    let outcome = run.check_depth(outcome).await;
    run.end(outcome).await
}
