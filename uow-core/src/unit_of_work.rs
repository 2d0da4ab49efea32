//! [`UnitOfWork`]: the public API for registering, reading and changing entities (what it can
//! tell about a held entity is in `inspect.rs`, removal and forced versions in `states.rs`,
//! events in `events.rs`, participants and hooks in `hooks.rs`). Nothing here sends a statement: writing is the commit protocol's
//! (`protocol.rs`, `scope.rs`), reading rows the execution layer's (`exec/read.rs`).

use std::fmt;

use crate::aggregates;
use crate::entity::{ChildTypeVisitor, Entity, Persist};
use crate::error::{Error, Result};
use crate::exec::{Driver, Session, TableIo};
use crate::handle::{EntitiesMut, Handle};
use crate::hooks::Hooks;
use crate::state::State;
use crate::store::Store;
use crate::tracking::Tracked;
use crate::transaction_mode::TransactionMode;

mod events;
mod hooks;
mod inspect;
mod states;

/// The Unit of Work: gathers new, changed and removed entities and writes them in one
/// transaction on [`commit`](UnitOfWork::commit).
///
/// `C` is the Diesel connection type the unit of work commits to. Registering, loading and
/// mutating never send a statement; `commit` is the only way in. A failed commit rolls the
/// transaction back and leaves every entity exactly as it was before the call.
///
/// A unit of work is `Send` (entities, hooks, participants and event payloads must be), so one
/// built in a request handler can move into `spawn_blocking` or a pool's `interact`.
///
/// ```
/// use uow::prelude::*;
/// use diesel::{Connection, RunQueryDsl, SqliteConnection};
///
/// diesel::table! { accounts (id) { id -> Integer, owner -> Text, balance -> BigInt } }
///
/// #[derive(Tracked, Clone, Debug, PartialEq, diesel::Queryable)]
/// #[tracked(table = accounts)]
/// struct Account { #[tracked(generated)] id: i32, owner: String, balance: i64 }
///
/// let mut conn = SqliteConnection::establish(":memory:")?;
/// diesel::sql_query("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, balance BIGINT NOT NULL)")
///     .execute(&mut conn)?;
///
/// let mut uow = UnitOfWork::new();
/// let ann = uow.register_new(Account { id: 0, owner: "ann".into(), balance: 10 })?;
/// uow.commit(&mut conn)?;
/// assert_ne!(uow.get(&ann)?.id, 0); // the generated key was written back
///
/// uow.get_mut(&ann)?.balance += 5; // plain mutation is tracked
/// assert_eq!(uow.changed_columns(&ann)?, ["balance"]);
/// let report = uow.commit(&mut conn)?;
/// assert_eq!(report.updated("accounts"), 1);
///
/// let rows: Vec<Account> = accounts::table.load(&mut conn)?;
/// assert_eq!(rows[0].balance, 15);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct UnitOfWork<C: Driver> {
    pub(crate) state: State,
    /// Per store (same index): the typed functions the execution layer writes it with.
    pub(crate) io: Vec<TableIo<C>>,
    /// What the execution layer learnt about the server (MySQL's auto-increment settings).
    pub(crate) session: Session,
    pub(crate) hooks: Hooks<UnitOfWork<C>>,
    /// How the transactions this unit of work opens begin.
    pub(crate) transaction_mode: TransactionMode,
}

impl<C: Driver> fmt::Debug for UnitOfWork<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnitOfWork")
            .field("id", &self.state.id)
            .field("entities", &self.state.stores.entities())
            .finish()
    }
}

impl<C: Driver> Default for UnitOfWork<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Driver> UnitOfWork<C> {
    /// Number of entities held (new, clean, dirty and removed).
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// assert_eq!(uow.len(), 0);
    /// uow.attach(Note { id: 1, body: "a".into() });
    /// uow.attach(Note { id: 1, body: "a".into() }); // the same row: the instance held already
    /// uow.attach(Note { id: 2, body: "b".into() });
    /// assert_eq!(uow.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.state.stores.entities()
    }

    /// Whether no entity is held.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// assert!(uow.is_empty());
    /// let note = uow.register_new(Note { id: 1, body: "a".into() })?;
    /// assert!(!uow.is_empty());
    /// uow.register_removed(&note)?; // a new entity removed before any commit is simply dropped
    /// assert!(uow.is_empty());
    /// # Ok::<(), uow::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a transaction scope is open on this unit of work.
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
    /// let mut uow = UnitOfWork::new();
    /// assert!(!uow.in_scope());
    /// uow.transaction(&mut conn, |scope| {
    ///     assert!(scope.in_scope());
    ///     Ok::<_, uow::Error>(())
    /// })?;
    /// assert!(!uow.in_scope());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn in_scope(&self) -> bool {
        self.state.in_scope()
    }

    /// The store a handle of this unit of work points into.
    pub(crate) fn store_of<T: Entity>(&self, handle: &Handle<T>) -> Option<&Store<T>> {
        if handle.unit != self.state.id {
            return None;
        }
        self.state.stores.at(handle.store as usize)
    }

    fn store_of_mut<T: Entity>(&mut self, handle: &Handle<T>) -> Option<&mut Store<T>> {
        if handle.unit != self.state.id {
            return None;
        }
        self.state.stores.at_mut(handle.store as usize)
    }

    pub(crate) fn tracked<T: Entity>(&self, handle: &Handle<T>) -> Result<&Tracked<T>> {
        self.store_of(handle)
            .and_then(|s| s.get(handle.slot, handle.generation))
            .ok_or(Error::UnknownEntity {
                entity: T::ENTITY_NAME,
            })
    }

    /// The held entity behind `handle` for a change of state through the handle: refused for
    /// a member of an aggregate, which changes through its root's tree only.
    pub(crate) fn tracked_mut<T: Entity>(&mut self, handle: &Handle<T>) -> Result<&mut Tracked<T>> {
        let store = self.store_of_mut(handle).ok_or(Error::UnknownEntity {
            entity: T::ENTITY_NAME,
        })?;
        match store.get(handle.slot, handle.generation) {
            Some(tracked) if !tracked.is_member() => {}
            _ => return Err(store.refusal(handle.slot, handle.generation)),
        }
        store
            .get_mut(handle.slot, handle.generation)
            .ok_or(Error::UnknownEntity {
                entity: T::ENTITY_NAME,
            })
    }
}

impl<C: Driver> UnitOfWork<C> {
    /// An empty unit of work.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # use diesel::{Connection, SqliteConnection};
    /// let mut conn = SqliteConnection::establish(":memory:")?;
    /// let mut uow = UnitOfWork::new(); // the connection type is inferred from `commit`
    /// assert!(uow.is_empty());
    /// let report = uow.commit(&mut conn)?;
    /// assert!(report.is_empty(), "nothing pending: nothing sent, not even BEGIN");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Self {
        UnitOfWork {
            state: State::new(),
            io: Vec::new(),
            session: Session::default(),
            hooks: Hooks::default(),
            transaction_mode: TransactionMode::new(),
        }
    }

    /// Sets the isolation level and access mode of the transactions this unit of work opens
    /// from now on: each `commit`'s and each outermost scope's (see [`TransactionMode`] for
    /// what each backend does with it).
    ///
    /// ```
    /// use uow::{Isolation, TransactionMode, UnitOfWork};
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// uow.set_transaction_mode(TransactionMode::new().isolation(Isolation::Serializable));
    /// assert_eq!(uow.transaction_mode().level(), Some(Isolation::Serializable));
    /// ```
    pub fn set_transaction_mode(&mut self, mode: TransactionMode) {
        self.transaction_mode = mode;
    }

    /// The mode set with [`set_transaction_mode`](Self::set_transaction_mode).
    ///
    /// ```
    /// use uow::{Isolation, TransactionMode, UnitOfWork};
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// assert!(uow.transaction_mode().is_default());
    /// uow.set_transaction_mode(TransactionMode::new().isolation(Isolation::ReadCommitted));
    /// assert_eq!(uow.transaction_mode().to_string(), "READ COMMITTED");
    /// ```
    pub fn transaction_mode(&self) -> TransactionMode {
        self.transaction_mode
    }

    /// The index of the store of `T`, created on first use together with its execution
    /// functions.
    fn store_index<T: Persist<C::Backend>>(&mut self) -> usize {
        let levels = self.state.open_levels();
        let (index, created) = self.state.stores.entry::<T>(levels);
        if created {
            self.io.push(TableIo::of::<T>());
            if T::HAS_CHILDREN {
                // The members of its aggregates live in their types' stores.
                struct MemberStores<'u, C: Driver>(&'u mut UnitOfWork<C>);
                impl<C: Driver> ChildTypeVisitor<C::Backend> for MemberStores<'_, C> {
                    fn visit<M: Persist<C::Backend>>(&mut self) {
                        self.0.store_index::<M>();
                    }
                }
                T::visit_child_types(&mut MemberStores(self));
            }
        }
        index
    }

    /// The store of `T`, created on first use.
    fn store_mut<T: Persist<C::Backend>>(&mut self) -> (usize, &mut Store<T>) {
        let index = self.store_index::<T>();
        match self.state.stores.at_mut(index) {
            Some(store) => (index, store),
            None => unreachable!("store {index} is filed under another type"),
        }
    }

    fn register<T: Persist<C::Backend>>(
        &mut self,
        tracked: Tracked<T>,
        touch: bool,
    ) -> Result<Handle<T>> {
        let unit = self.state.id;
        let persisted = !tracked.is_new();
        if T::HAS_CHILDREN && persisted {
            aggregates::refuse_rows_held_as_new(&self.state.stores, tracked.value())?;
        }
        let (index, store) = self.store_mut::<T>();
        let id = store.insert(tracked, touch)?;
        if T::HAS_CHILDREN && persisted {
            aggregates::adopt::<T>(&mut self.state.stores, index, id.0, id.1);
        }
        Ok(Handle::new(unit, index, id))
    }

    /// Registers a new entity, INSERTed by the next commit (the classic `registerNew`).
    ///
    /// Fields marked `#[tracked(generated)]` are left out of the INSERT and written back after
    /// the commit succeeds. An entity whose key is not generated is filed in the identity map at
    /// once, so registering a second entity with the same key is [`Error::DuplicateKey`].
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # diesel::table! { tags (code) { code -> Text, label -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = tags)]
    /// # struct Tag { #[tracked(primary_key)] code: String, label: String }
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// let tag = uow.register_new(Tag { code: "rs".into(), label: "Rust".into() })?;
    /// assert_eq!(uow.state(&tag)?, uow::EntityState::New);
    /// let again = uow.register_new(Tag { code: "rs".into(), label: "again".into() });
    /// assert!(matches!(again, Err(uow::Error::DuplicateKey { .. })));
    /// # Ok::<(), uow::Error>(())
    /// ```
    pub fn register_new<T: Persist<C::Backend>>(&mut self, entity: T) -> Result<Handle<T>> {
        self.register(Tracked::new_entity(entity), true)
    }

    /// Tracks an entity just read from the database, as clean (the classic `registerClean`).
    ///
    /// Later changes through [`get_mut`](Self::get_mut) are detected field by field. Fails with
    /// [`Error::DuplicateKey`] when an entity with the same key is held already (see
    /// [`attach`](Self::attach) to reuse the held instance instead), and with
    /// [`Error::RowHeldAsNew`] when an aggregate's tree holds the row of an entity registered
    /// as new under the same key.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # use diesel::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq, Queryable)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// # let mut conn = SqliteConnection::establish(":memory:")?;
    /// # diesel::sql_query("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)").execute(&mut conn)?;
    /// # diesel::sql_query("INSERT INTO notes VALUES (1, 'hello')").execute(&mut conn)?;
    /// let row: Note = notes::table.find(1).first(&mut conn)?; // your own Diesel query
    /// let mut uow = UnitOfWork::new();
    /// let note = uow.register_clean(row.clone())?;
    /// assert_eq!(uow.state(&note)?, EntityState::Clean);
    /// uow.get_mut(&note)?.body = "changed".into();
    /// assert_eq!(uow.commit(&mut conn)?.updated("notes"), 1); // UPDATE notes SET body = ? ..
    /// assert!(matches!(uow.register_clean(row), Err(uow::Error::DuplicateKey { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn register_clean<T: Persist<C::Backend>>(&mut self, entity: T) -> Result<Handle<T>> {
        self.register(Tracked::persisted(entity), false)
    }

    /// Tracks an entity read from the database, or returns the instance already held for its
    /// key (identity map: one row, one instance). A held instance is never overwritten by the
    /// row, so in-memory changes survive re-reading.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// let first = uow.attach(Note { id: 1, body: "a".into() });
    /// uow.get_mut(&first)?.body = "changed".into();
    /// let again = uow.attach(Note { id: 1, body: "a".into() });
    /// assert_eq!(first, again);
    /// assert_eq!(uow.get(&again)?.body, "changed");
    /// # Ok::<(), uow::Error>(())
    /// ```
    pub fn attach<T: Persist<C::Backend>>(&mut self, entity: T) -> Handle<T> {
        let unit = self.state.id;
        let (index, store) = self.store_mut::<T>();
        let held = store.len();
        let id = store.find_or_insert(Tracked::persisted(entity));
        if T::HAS_CHILDREN && store.len() > held {
            aggregates::adopt::<T>(&mut self.state.stores, index, id.0, id.1);
        }
        Handle::new(unit, index, id)
    }

    /// [`attach`](Self::attach) for every row of a query result, in order.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # use diesel::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq, Queryable)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// # let mut conn = SqliteConnection::establish(":memory:")?;
    /// # diesel::sql_query("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)").execute(&mut conn)?;
    /// # diesel::sql_query("INSERT INTO notes VALUES (1, 'a'), (2, 'b')").execute(&mut conn)?;
    /// let mut uow = UnitOfWork::new();
    /// let first = uow.load::<Note>(&mut conn, 1)?;
    /// uow.get_mut(&first)?.body = "changed".into();
    /// let rows: Vec<Note> = notes::table.order(notes::id).load(&mut conn)?;
    /// let handles = uow.attach_all(rows);
    /// assert_eq!(handles[0], first, "the held instance, not a second one");
    /// assert_eq!(uow.get(&handles[0])?.body, "changed", "its change survives the re-read");
    /// assert_eq!(uow.get(&handles[1])?.body, "b");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn attach_all<T, I>(&mut self, entities: I) -> Vec<Handle<T>>
    where
        T: Persist<C::Backend>,
        I: IntoIterator<Item = T>,
    {
        let entities = entities.into_iter();
        // Room for the rows at once (a loaded Vec knows its length), not by repeated doubling.
        self.store_mut::<T>().1.reserve(entities.size_hint().0);
        entities.map(|e| self.attach(e)).collect()
    }

    /// Tracks an entity that exists in the database but whose row may differ from `entity` in
    /// ways nobody recorded (for example one rebuilt from a form): the next commit UPDATEs
    /// every non-key column (the classic `registerDirty`).
    ///
    /// For entities already held, mutate through [`get_mut`](Self::get_mut) instead: only the
    /// changed columns are written then.
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
    /// # diesel::sql_query("INSERT INTO notes VALUES (1, 'old')").execute(&mut conn)?;
    /// let mut uow = UnitOfWork::new();
    /// // Rebuilt from a form: what the row holds is unknown, so every column is written.
    /// let note = uow.register_dirty(Note { id: 1, body: "from the form".into() })?;
    /// assert_eq!(uow.state(&note)?, EntityState::Dirty);
    /// assert_eq!(uow.commit(&mut conn)?.updated("notes"), 1);
    /// let body: String = notes::table.select(notes::body).first(&mut conn)?;
    /// assert_eq!(body, "from the form");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn register_dirty<T: Persist<C::Backend>>(&mut self, entity: T) -> Result<Handle<T>> {
        self.register(Tracked::dirty(entity), true)
    }

    /// The entity behind `handle`.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// let note = uow.register_new(Note { id: 1, body: "hello".into() })?;
    /// assert_eq!(uow.get(&note)?.body, "hello");
    /// let other = UnitOfWork::<diesel::SqliteConnection>::new();
    /// assert!(matches!(other.get(&note), Err(uow::Error::UnknownEntity { .. })));
    /// # Ok::<(), uow::Error>(())
    /// ```
    pub fn get<T: Entity>(&self, handle: &Handle<T>) -> Result<&T> {
        Ok(self.tracked(handle)?.value())
    }

    /// The entity behind `handle`, for plain Rust mutation (`uow.get_mut(&h)?.balance += 5`).
    ///
    /// The first mutable borrow after a commit keeps a copy of the persisted values; the next
    /// commit compares against it and writes only the fields that differ.
    ///
    /// For many changes to entities of one type in a row, [`entities_mut`](Self::entities_mut)
    /// finds the type's entities once instead of on every call.
    ///
    /// A member of an aggregate (an element of a root's `#[tracked(children)]` collection,
    /// whose handle `find` or `load` gives by its key) is refused with
    /// [`Error::MemberOfAggregate`]: it changes in its root's tree, so that the commit writes
    /// it with the root's version. So are `register_removed`, `unremove`, `refresh` and
    /// `set_parent` through its handle.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// let note = uow.attach(Note { id: 1, body: "a".into() });
    /// uow.get_mut(&note)?.body.push('b');
    /// assert_eq!(uow.state(&note)?, EntityState::Dirty);
    /// uow.get_mut(&note)?.body = "a".into(); // back to the persisted value: nothing to write
    /// assert_eq!(uow.state(&note)?, EntityState::Clean);
    /// # Ok::<(), uow::Error>(())
    /// ```
    #[inline]
    pub fn get_mut<T: Entity>(&mut self, handle: &Handle<T>) -> Result<&mut T> {
        // One store lookup, and no error value built on the way (this is the hot path of
        // plain mutation; see BENCHMARKS.md, W5).
        if let Some(store) = self.store_of_mut(handle) {
            if store.holds_member(handle.slot, handle.generation) {
                return Err(store.refusal(handle.slot, handle.generation));
            }
            if let Some(value) = store.mutate(handle.slot, handle.generation) {
                return Ok(value);
            }
        }
        Err(Error::UnknownEntity {
            entity: T::ENTITY_NAME,
        })
    }

    /// The entities of type `T`, found once, for many reads and changes in a row: the
    /// loop-friendly form of [`get`](Self::get) and [`get_mut`](Self::get_mut), tracked
    /// exactly the same way; [`EntitiesMut::iter_mut`] changes every one without handles.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// let handles: Vec<_> = (1..=3)
    ///     .map(|id| uow.attach(Note { id, body: "draft".into() }))
    ///     .collect();
    /// let mut notes = uow.entities_mut::<Note>();
    /// for h in &handles {
    ///     notes.get_mut(h)?.body.push_str(", reviewed");
    /// }
    /// assert_eq!(notes.get(&handles[0])?.body, "draft, reviewed");
    /// assert_eq!(uow.changed_columns(&handles[2])?, ["body"]);
    /// # Ok::<(), uow::Error>(())
    /// ```
    pub fn entities_mut<T: Persist<C::Backend>>(&mut self) -> EntitiesMut<'_, T> {
        let unit = self.state.id;
        EntitiesMut {
            unit,
            store: self.store_mut::<T>().1,
        }
    }
}
