//! Reading entities: [`UnitOfWork::load`] through the identity map (an aggregate's root with
//! its tree, one query per level), [`UnitOfWork::attach_aggregates`], and
//! [`UnitOfWork::refresh`]; the rows themselves are read by the execution layer
//! (`exec/read.rs`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use diesel::connection::LoadConnection;
use diesel::Connection;

use crate::aggregates::{child_relation, parent_keys, refresh_tree, refuse_rows_held_as_new};
use crate::entity::{ChildLoadVisitor, Entity, Load};
use crate::error::{Error, Result};
use crate::exec::driver::block;
use crate::exec::read::select_children;
use crate::exec::{read::select, Dialect, Driver};
use crate::handle::Handle;
use crate::scope::Scope;
use crate::store::key_text;
use crate::unit_of_work::UnitOfWork;

impl<C> UnitOfWork<C>
where
    C: Connection + LoadConnection + Send + 'static,
    C::Backend: Dialect,
{
    /// The entity with primary key `key`: the instance already held (no query), or the row
    /// read from the database and tracked as clean (identity map: one row, one instance).
    ///
    /// Fails with [`Error::NotFound`] when no row has the key, and with
    /// [`Error::RowHeldAsNew`] (nothing attached) when the root's tree holds the row of an
    /// entity registered as new under the same key.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # use diesel::{Connection, RunQueryDsl, SqliteConnection};
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// let mut conn = SqliteConnection::establish(":memory:")?;
    /// diesel::sql_query("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)").execute(&mut conn)?;
    /// diesel::sql_query("INSERT INTO notes VALUES (1, 'hello')").execute(&mut conn)?;
    /// let mut uow = UnitOfWork::new();
    /// let note = uow.load::<Note>(&mut conn, 1)?;
    /// assert_eq!(uow.load::<Note>(&mut conn, 1)?, note, "one row, one instance");
    /// assert!(matches!(uow.load::<Note>(&mut conn, 2), Err(uow::Error::NotFound { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load<T: Load<C::Backend>>(&mut self, conn: &mut C, key: T::Key) -> Result<Handle<T>> {
        block(self.find_or_read(conn, key))
    }

    /// Attaches roots read with an ordinary Diesel query, each with its whole tree: their
    /// `#[tracked(children)]` collections are filled with one query per level for all of
    /// them (a root held already stays as held, with its tree). A tree holding the row of an
    /// entity registered as new under the same key is [`Error::RowHeldAsNew`], and then no
    /// root is attached.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # use diesel::prelude::*;
    /// # use diesel::connection::SimpleConnection;
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
    /// let mut conn = SqliteConnection::establish(":memory:")?;
    /// conn.batch_execute(
    ///     "CREATE TABLE carts (id INTEGER PRIMARY KEY, owner TEXT NOT NULL);
    ///      CREATE TABLE items (id INTEGER PRIMARY KEY, cart_id INTEGER NOT NULL, sku TEXT NOT NULL);
    ///      INSERT INTO carts VALUES (1, 'ann'), (2, 'bob');
    ///      INSERT INTO items VALUES (10, 1, 'pen'), (11, 1, 'ink'), (12, 2, 'pad');",
    /// )?;
    /// // Your own query picks the roots; one more query fills every cart's items.
    /// let carts: Vec<Cart> = carts::table
    ///     .select((carts::id, carts::owner))
    ///     .load::<(i32, String)>(&mut conn)?
    ///     .into_iter()
    ///     .map(|(id, owner)| Cart { id, owner, items: Vec::new() })
    ///     .collect();
    /// let mut uow = UnitOfWork::new();
    /// let handles = uow.attach_aggregates(&mut conn, carts)?;
    /// assert_eq!(uow.get(&handles[0])?.items.len(), 2);
    /// assert_eq!(uow.get(&handles[1])?.items[0].sku, "pad");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn attach_aggregates<T: Load<C::Backend>>(
        &mut self,
        conn: &mut C,
        roots: Vec<T>,
    ) -> Result<Vec<Handle<T>>> {
        block(self.attach_trees(conn, roots))
    }

    /// Discards the local changes of one entity and reads its row again; it is clean after.
    /// A removal registered for it is taken back, and the domain events recorded for it and not
    /// committed yet are dropped (they described the discarded changes). Fields marked `skip`
    /// keep their values. Participants are not tied to entities and stay enlisted.
    ///
    /// An aggregate's root is read again with its whole tree (one query per level, as `load`
    /// reads it): every change made in the tree is discarded, elements added are dropped,
    /// removed ones come back, and rows another writer added or deleted appear or go. So
    /// `refresh` then the same change again is the recovery from [`Error::Conflict`] on an
    /// aggregate too: the retry changes the tree as it is stored now. Handles to members the
    /// stored tree no longer has go stale.
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
    /// # diesel::sql_query("INSERT INTO notes VALUES (1, 'a')").execute(&mut conn)?;
    /// let mut uow = UnitOfWork::new();
    /// let note = uow.load::<Note>(&mut conn, 1)?;
    /// uow.get_mut(&note)?.body = "mine".into();
    /// diesel::sql_query("UPDATE notes SET body = 'theirs' WHERE id = 1").execute(&mut conn)?;
    /// uow.refresh(&mut conn, &note)?;
    /// assert_eq!(uow.get(&note)?.body, "theirs");
    /// assert_eq!(uow.state(&note)?, EntityState::Clean);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// An aggregate after a [`Error::Conflict`]:
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # use diesel::prelude::*;
    /// # diesel::table! { lists (id) { id -> Integer, version -> Integer } }
    /// # diesel::table! { items (id) { id -> Integer, list_id -> Integer, text -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = lists)]
    /// # struct List { id: i32, #[tracked(version)] version: i32, #[tracked(children)] items: Vec<Item> }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = items, belongs_to(List, foreign_key = list_id))]
    /// # struct Item { #[tracked(generated)] id: i32, list_id: i32, text: String }
    /// # let mut conn = SqliteConnection::establish(":memory:")?;
    /// # diesel::sql_query("CREATE TABLE lists (id INTEGER PRIMARY KEY, version INTEGER NOT NULL)").execute(&mut conn)?;
    /// # diesel::sql_query("CREATE TABLE items (id INTEGER PRIMARY KEY, list_id INTEGER NOT NULL, text TEXT NOT NULL)").execute(&mut conn)?;
    /// # diesel::sql_query("INSERT INTO lists VALUES (1, 1)").execute(&mut conn)?;
    /// # diesel::sql_query("INSERT INTO items VALUES (1, 1, 'milk')").execute(&mut conn)?;
    /// let item = |text: &str| Item { id: 0, list_id: 0, text: text.into() };
    /// let mut mine = UnitOfWork::new();
    /// let list = mine.load::<List>(&mut conn, 1)?; // the list with its items
    /// mine.get_mut(&list)?.items.push(item("eggs"));
    ///
    /// let mut theirs = UnitOfWork::<SqliteConnection>::new(); // another writer, first
    /// let same = theirs.load::<List>(&mut conn, 1)?;
    /// theirs.get_mut(&same)?.items[0].text = "oat milk".into();
    /// theirs.commit(&mut conn)?;
    ///
    /// assert!(matches!(mine.commit(&mut conn), Err(uow::Error::Conflict { .. })));
    /// mine.refresh(&mut conn, &list)?; // the list and its items as stored; "eggs" dropped
    /// assert_eq!(mine.get(&list)?.items.len(), 1);
    /// mine.get_mut(&list)?.items.push(item("eggs")); // the change, again
    /// mine.commit(&mut conn)?;
    /// let texts: Vec<String> = items::table.select(items::text).order(items::id).load(&mut conn)?;
    /// assert_eq!(texts, ["oat milk", "eggs"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn refresh<T: Load<C::Backend>>(&mut self, conn: &mut C, handle: &Handle<T>) -> Result<()> {
        block(self.reread(conn, handle))
    }
}

impl<C: Driver> UnitOfWork<C> {
    /// `load`, on either driver.
    pub(crate) async fn find_or_read<T: Load<C::Backend>>(
        &mut self,
        conn: &mut C::Conn,
        key: T::Key,
    ) -> Result<Handle<T>> {
        if let Some(handle) = self.find::<T>(&key) {
            return Ok(handle);
        }
        let entity = select::<T, C>(conn, &key).await?;
        let mut roots = [entity];
        fill_children::<T, C>(conn, &mut roots).await?;
        let [root] = roots;
        refuse_rows_held_as_new(&self.state.stores, &root)?;
        Ok(self.attach(root))
    }

    /// `attach_aggregates`, on either driver.
    pub(crate) async fn attach_trees<T: Load<C::Backend>>(
        &mut self,
        conn: &mut C::Conn,
        mut roots: Vec<T>,
    ) -> Result<Vec<Handle<T>>> {
        // A held root keeps its tree: only the others are read.
        let (fresh, held): (Numbered<T>, Numbered<T>) = roots
            .drain(..)
            .enumerate()
            .partition(|(_, root)| self.find::<T>(&root.key()).is_none());
        let (positions, mut trees): (Vec<usize>, Vec<T>) = fresh.into_iter().unzip();
        fill_children::<T, C>(conn, &mut trees).await?;
        for tree in &trees {
            refuse_rows_held_as_new(&self.state.stores, tree)?;
        }
        let mut all: Numbered<T> = positions.into_iter().zip(trees).chain(held).collect();
        all.sort_by_key(|(i, _)| *i);
        Ok(all.into_iter().map(|(_, root)| self.attach(root)).collect())
    }

    /// `refresh`, on either driver.
    pub(crate) async fn reread<T: Load<C::Backend>>(
        &mut self,
        conn: &mut C::Conn,
        handle: &Handle<T>,
    ) -> Result<()> {
        let tracked = self.tracked(handle)?;
        if tracked.is_member() {
            // Its row is read again with its root's tree (`refresh(&root)`).
            return Err(Error::MemberOfAggregate {
                entity: T::ENTITY_NAME,
                key: key_text(&tracked.value().key()),
            });
        }
        if tracked.is_new() {
            return Err(Error::NotFound {
                entity: T::ENTITY_NAME,
                table: T::TABLE_NAME,
                key: format!(
                    "{} (a new entity, not in the database yet)",
                    key_text(&tracked.value().key())
                ),
            });
        }
        let key = tracked.persisted_value().key();
        let fresh = select::<T, C>(conn, &key).await?;
        if !T::HAS_CHILDREN {
            self.tracked_mut(handle)?.refresh(fresh);
            return Ok(());
        }
        // An aggregate's root: its tree is read again too (one query per level), and replaces
        // the held one with every local change in it.
        let mut roots = [fresh];
        fill_children::<T, C>(conn, &mut roots).await?;
        let [fresh] = roots;
        self.tracked(handle)?;
        let at = (handle.slot, handle.generation);
        refresh_tree::<T>(&mut self.state.stores, handle.store as usize, at, fresh)
    }
}

impl<C> Scope<'_, C>
where
    C: Connection + LoadConnection + Send + 'static,
    C::Backend: Dialect,
{
    /// The held instance for `key`, or the row read and tracked (see [`UnitOfWork::load`]).
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
    /// # diesel::sql_query("INSERT INTO notes VALUES (1, 'a')").execute(&mut conn)?;
    /// uow::transaction(&mut conn, |scope| {
    ///     let note = scope.load::<Note>(1)?; // read inside the scope's transaction
    ///     scope.get_mut(&note)?.body = "b".into();
    ///     Ok::<_, uow::Error>(())
    /// })?; // committed: UPDATE notes SET body = 'b' ..
    /// let body: String = notes::table.select(notes::body).first(&mut conn)?;
    /// assert_eq!(body, "b");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load<T: Load<C::Backend>>(&mut self, key: T::Key) -> Result<Handle<T>> {
        let (uow, conn) = self.parts();
        block(uow.find_or_read(conn, key))
    }

    /// Attaches roots read by a query of your own, each with its whole tree, the children read
    /// in the scope's transaction (see [`UnitOfWork::attach_aggregates`]). A scope that fails
    /// afterwards forgets them again.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # use diesel::prelude::*;
    /// # use diesel::connection::SimpleConnection;
    /// # diesel::table! { carts (id) { id -> Integer, owner -> Text } }
    /// # diesel::table! { items (id) { id -> Integer, cart_id -> Integer, sku -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = carts)]
    /// # struct Cart { id: i32, owner: String, #[tracked(children)] items: Vec<Item> }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = items, belongs_to(Cart, foreign_key = cart_id))]
    /// # struct Item { id: i32, cart_id: i32, sku: String }
    /// # let mut conn = SqliteConnection::establish(":memory:")?;
    /// # conn.batch_execute(
    /// #     "CREATE TABLE carts (id INTEGER PRIMARY KEY, owner TEXT NOT NULL);
    /// #      CREATE TABLE items (id INTEGER PRIMARY KEY, cart_id INTEGER NOT NULL, sku TEXT NOT NULL);
    /// #      INSERT INTO carts VALUES (1, 'ann'), (2, 'bob');
    /// #      INSERT INTO items VALUES (10, 1, 'pen'), (11, 1, 'ink'), (12, 2, 'pad');",
    /// # )?;
    /// uow::transaction(&mut conn, |scope| {
    ///     let carts: Vec<Cart> = carts::table
    ///         .filter(carts::owner.eq("ann"))
    ///         .select((carts::id, carts::owner))
    ///         .load::<(i32, String)>(scope.connection())?
    ///         .into_iter()
    ///         .map(|(id, owner)| Cart { id, owner, items: Vec::new() })
    ///         .collect();
    ///     let handles = scope.attach_aggregates(carts)?; // one query for the items
    ///     scope.get_mut(&handles[0])?.items.retain(|item| item.sku != "ink");
    ///     Ok::<_, Box<dyn std::error::Error>>(())
    /// })?; // committed: DELETE FROM items .. (the ink), the cart's version if it has one
    /// let skus: Vec<String> = items::table.select(items::sku).order(items::id).load(&mut conn)?;
    /// assert_eq!(skus, ["pen", "pad"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn attach_aggregates<T: Load<C::Backend>>(
        &mut self,
        roots: Vec<T>,
    ) -> Result<Vec<Handle<T>>> {
        let (uow, conn) = self.parts();
        block(uow.attach_trees(conn, roots))
    }

    /// Discards local changes of one entity (an aggregate's root: of its whole tree) and reads
    /// it again (see [`UnitOfWork::refresh`]).
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
    /// # diesel::sql_query("INSERT INTO notes VALUES (1, 'a')").execute(&mut conn)?;
    /// uow::transaction(&mut conn, |scope| {
    ///     let note = scope.load::<Note>(1)?;
    ///     scope.get_mut(&note)?.body = "draft".into();
    ///     diesel::sql_query("UPDATE notes SET body = 'by SQL' WHERE id = 1").execute(scope.connection())?;
    ///     scope.refresh(&note)?; // the draft is dropped, the row read again
    ///     assert_eq!(scope.get(&note)?.body, "by SQL");
    ///     assert_eq!(scope.state(&note)?, EntityState::Clean);
    ///     Ok::<_, Box<dyn std::error::Error>>(())
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn refresh<T: Load<C::Backend>>(&mut self, handle: &Handle<T>) -> Result<()> {
        let (uow, conn) = self.parts();
        block(uow.reread(conn, handle))
    }
}

/// Roots with their positions in the caller's list.
type Numbered<T> = Vec<(usize, T)>;

/// Fills the `#[tracked(children)]` collections of `parents`, depth first: one query per
/// children field and level for all of them (the children of every parent at once), each
/// child pushed into its parent's collection in key order.
fn fill_children<'a, T, D>(
    conn: &'a mut D::Conn,
    parents: &'a mut [T],
) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>
where
    T: Load<D::Backend>,
    D: Driver,
{
    Box::pin(async move {
        if !T::HAS_CHILDREN || parents.is_empty() {
            return Ok(());
        }
        let mut fields = Fields::<T, D>(Vec::new());
        T::visit_child_loads(&mut fields);
        for field in fields.0 {
            field.fill(conn, parents).await?;
        }
        Ok(())
    })
}

/// One children field of `T`, with its element type erased.
trait FillField<T, D: Driver>: Send {
    fn fill<'a>(
        self: Box<Self>,
        conn: &'a mut D::Conn,
        parents: &'a mut [T],
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;
}

struct Fields<T, D: Driver>(Vec<Box<dyn FillField<T, D>>>);

impl<T: Load<D::Backend>, D: Driver> ChildLoadVisitor<T, D::Backend> for Fields<T, D> {
    fn visit<M: Load<D::Backend>>(&mut self, field: usize, children: fn(&mut T) -> &mut Vec<M>) {
        self.0.push(Box::new(ChildField { field, children }));
    }
}

struct ChildField<T, M> {
    field: usize,
    children: fn(&mut T) -> &mut Vec<M>,
}

impl<T, M, D> FillField<T, D> for ChildField<T, M>
where
    D: Driver,
    T: Load<D::Backend>,
    M: Load<D::Backend>,
{
    fn fill<'a>(
        self: Box<Self>,
        conn: &'a mut D::Conn,
        parents: &'a mut [T],
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
        Box::pin(async move {
            let (relation, foreign_key) = child_relation::<T, M>(self.field)?;
            let keys: Vec<T::Key> = parents.iter().map(Entity::key).collect();
            let mut members = select_children::<M, T, D>(conn, foreign_key, &keys).await?;
            fill_children::<M, D>(conn, &mut members).await?;
            let position: HashMap<T::Key, usize, crate::fast_hash::KeyHash> =
                keys.into_iter().enumerate().map(|(i, k)| (k, i)).collect();
            let owners = parent_keys::<T, M>(&members, relation);
            for (member, owner) in members.into_iter().zip(owners) {
                let parent = owner.and_then(|key| position.get(&key).copied());
                if let Some(parent) = parent.and_then(|i| parents.get_mut(i)) {
                    (self.children)(parent).push(member);
                }
            }
            Ok(())
        })
    }
}
