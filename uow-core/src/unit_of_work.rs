//! [`UnitOfWork`]: the public API for registering, reading and changing entities. Nothing here
//! sends a statement: writing is the commit protocol's (`protocol.rs`, `scope.rs`), reading
//! rows the execution layer's (`exec/read.rs`).

use std::any::{Any, TypeId};
use std::fmt;

use crate::aggregates;
use crate::entity::{ChildTypeVisitor, Entity, FieldSet, Persist};
use crate::error::{Error, Result};
use crate::events::{DomainEvent, EventSource};
use crate::exec::{Changes, Driver, Session, TableIo};
use crate::handle::{EntitiesMut, Handle};
use crate::hooks::{HookError, Hooks};
use crate::report::CommitReport;
use crate::resource::Participant;
use crate::state::State;
use crate::store::{key_text, Store};
use crate::tracking::{EntityState, Lifecycle, Tracked};
use crate::transaction_mode::TransactionMode;

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
    pub fn len(&self) -> usize {
        self.state.stores.entities()
    }

    /// Whether no entity is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a transaction scope is open on this unit of work.
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

    pub(crate) fn tracked_mut<T: Entity>(&mut self, handle: &Handle<T>) -> Result<&mut Tracked<T>> {
        self.store_of_mut(handle)
            .and_then(|s| s.get_mut(handle.slot, handle.generation))
            .ok_or(Error::UnknownEntity {
                entity: T::ENTITY_NAME,
            })
    }
}

impl<C: Driver> UnitOfWork<C> {
    /// An empty unit of work.
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
    /// [`Error::DuplicateKey`] when an entity with the same key is held already; see
    /// [`attach`](Self::attach) to reuse the held instance instead.
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
    pub fn register_dirty<T: Persist<C::Backend>>(&mut self, entity: T) -> Result<Handle<T>> {
        self.register(Tracked::dirty(entity), true)
    }

    /// Makes the next commit check and advance the entity's `#[tracked(version)]` even if
    /// none of its columns changed (Hibernate's `OPTIMISTIC_FORCE_INCREMENT`): for a root
    /// whose version guards rows it does not hold itself, so two writers that change only
    /// those rows still conflict. The UPDATE sets only the version, and a concurrent change
    /// is [`Error::Conflict`]. A new or removed entity is written with its version anyway.
    ///
    /// Fails with [`Error::NoVersion`] when `T` has no version field.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # diesel::table! { carts (id) { id -> Integer, version -> Integer } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = carts)]
    /// # struct Cart { id: i32, #[tracked(version)] version: i32 }
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// let cart = uow.attach(Cart { id: 1, version: 3 });
    /// uow.force_version_increment(&cart)?;
    /// assert_eq!(uow.state(&cart)?, EntityState::Dirty);
    /// assert_eq!(uow.plan()?.statement_count(), 1); // UPDATE carts SET version = 4 ..
    /// # Ok::<(), uow::Error>(())
    /// ```
    pub fn force_version_increment<T: Persist<C::Backend>>(
        &mut self,
        handle: &Handle<T>,
    ) -> Result<()> {
        if T::version_field().is_none() {
            return Err(Error::NoVersion {
                entity: T::ENTITY_NAME,
            });
        }
        self.tracked_mut(handle)?.force_version();
        Ok(())
    }

    /// Registers a held entity for removal: the next commit DELETEs its row (the classic
    /// `registerRemoved`). A new entity that was never committed is simply dropped, and its
    /// handle goes stale.
    pub fn register_removed<T: Persist<C::Backend>>(&mut self, handle: &Handle<T>) -> Result<()> {
        let tracked = self.tracked_mut(handle)?;
        match tracked.lifecycle() {
            Lifecycle::Removed => Err(Error::AlreadyRemoved {
                entity: T::ENTITY_NAME,
                key: key_text(&tracked.value().key()),
            }),
            Lifecycle::Persisted => {
                tracked.mark_removed();
                Ok(())
            }
            Lifecycle::New => {
                if T::HAS_CHILDREN {
                    let (slot, generation) = handle.id();
                    let index = handle.store as usize;
                    aggregates::release_members::<T>(
                        &mut self.state.stores,
                        index,
                        slot,
                        generation,
                    );
                }
                if let Some(store) = self.store_of_mut(handle) {
                    store.release(handle.slot);
                }
                Ok(())
            }
        }
    }

    /// Takes back a [`register_removed`](Self::register_removed) that was not committed yet.
    pub fn unremove<T: Persist<C::Backend>>(&mut self, handle: &Handle<T>) -> Result<()> {
        self.tracked_mut(handle)?.unremove();
        Ok(())
    }

    /// The entity behind `handle`.
    pub fn get<T: Persist<C::Backend>>(&self, handle: &Handle<T>) -> Result<&T> {
        Ok(self.tracked(handle)?.value())
    }

    /// The entity behind `handle`, for plain Rust mutation (`uow.get_mut(&h)?.balance += 5`).
    ///
    /// The first mutable borrow after a commit keeps a copy of the persisted values; the next
    /// commit compares against it and writes only the fields that differ.
    ///
    /// For many changes to entities of one type in a row, [`entities_mut`](Self::entities_mut)
    /// finds the type's entities once instead of on every call.
    #[inline]
    pub fn get_mut<T: Persist<C::Backend>>(&mut self, handle: &Handle<T>) -> Result<&mut T> {
        // One store lookup, and no error value built on the way (this is the hot path of
        // plain mutation; see BENCHMARKS.md, W5).
        if let Some(store) = self.store_of_mut(handle) {
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

    /// The handle of the held entity with primary key `key`, if any.
    pub fn find<T: Persist<C::Backend>>(&self, key: &T::Key) -> Option<Handle<T>> {
        let (index, store) = self.state.stores.get_indexed::<T>()?;
        Some(Handle::new(self.state.id, index, store.find(key)?))
    }

    /// Where the entity stands: new, clean, dirty or removed.
    pub fn state<T: Persist<C::Backend>>(&self, handle: &Handle<T>) -> Result<EntityState> {
        Ok(self.tracked(handle)?.state())
    }

    /// The fields the next commit would UPDATE (empty for new and removed entities).
    pub fn changed_fields<T: Persist<C::Backend>>(&self, handle: &Handle<T>) -> Result<FieldSet> {
        let tracked = self.tracked(handle)?;
        Ok(match tracked.lifecycle() {
            Lifecycle::Persisted => tracked.changed_fields(),
            _ => FieldSet::EMPTY,
        })
    }

    /// The column names the next commit would UPDATE, in field order.
    pub fn changed_columns<T: Persist<C::Backend>>(
        &self,
        handle: &Handle<T>,
    ) -> Result<Vec<&'static str>> {
        Ok(self.changes(handle)?.columns())
    }

    /// The pending changes of one entity as a Diesel [`AsChangeset`](diesel::AsChangeset),
    /// usable in a hand-written `diesel::update(...).set(...)`.
    pub fn changes<T: Persist<C::Backend>>(&self, handle: &Handle<T>) -> Result<Changes<'_, T>> {
        let fields = self.changed_fields(handle)?;
        Ok(Changes::new(self.get(handle)?, fields))
    }

    /// The persisted values of an entity: what the database row holds as far as this unit of
    /// work knows (the current values for a clean entity). Of a changed aggregate root, the
    /// columns only: its child collections are empty.
    pub fn original<T: Persist<C::Backend>>(&self, handle: &Handle<T>) -> Result<&T> {
        Ok(self.tracked(handle)?.persisted_value())
    }

    /// Enlists a participant outside the database (an [`AtomicFile`](crate::AtomicFile), a
    /// provisioned server...) in the next commit: it is prepared before the database commits,
    /// committed after, and compensated if anything fails. After a failed commit it stays
    /// enlisted for the retry; after a successful one it is done.
    pub fn enlist(&mut self, participant: impl Participant + 'static) {
        self.state.participants.push(Box::new(participant));
    }

    /// Records a domain event for an entity. It is handed out by
    /// [`take_events`](Self::take_events) once the changes are committed; a scope that rolls
    /// back drops the events recorded inside it; a failed commit keeps them for the retry.
    pub fn record_event<T: Persist<C::Backend>>(
        &mut self,
        handle: &Handle<T>,
        event: impl Any + Send,
    ) -> Result<()> {
        let revision = self.tracked(handle)?.revision();
        self.state.events.record(DomainEvent::new(
            T::ENTITY_NAME,
            Box::new(event),
            EventSource {
                entity_type: TypeId::of::<T>(),
                slot: handle.slot,
                generation: handle.generation,
                revision,
            },
        ));
        Ok(())
    }

    /// The events of committed changes, in the order they were recorded; each is handed out
    /// once.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # use diesel::{Connection, RunQueryDsl, SqliteConnection};
    /// # diesel::table! { orders (id) { id -> Integer, total -> BigInt } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = orders)]
    /// # struct Order { #[tracked(generated)] id: i32, total: i64 }
    /// #[derive(Debug, PartialEq)]
    /// struct OrderPlaced(i64);
    ///
    /// let mut conn = SqliteConnection::establish(":memory:")?;
    /// diesel::sql_query("CREATE TABLE orders (id INTEGER PRIMARY KEY, total BIGINT NOT NULL)").execute(&mut conn)?;
    /// let mut uow = UnitOfWork::new();
    /// let order = uow.register_new(Order { id: 0, total: 42 })?;
    /// uow.record_event(&order, OrderPlaced(42))?;
    /// assert!(uow.take_events().is_empty(), "not committed yet");
    /// uow.commit(&mut conn)?;
    /// let events = uow.take_events();
    /// assert_eq!(events[0].downcast_ref::<OrderPlaced>(), Some(&OrderPlaced(42)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn take_events(&mut self) -> Vec<DomainEvent> {
        self.state.events.take()
    }
}

impl<C: Driver> UnitOfWork<C> {
    /// Runs `hook` before every commit (and at the end of every outermost scope), before
    /// anything is written; it may still register changes. An error stops the commit.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// uow.on_before_commit(|uow| {
    ///     if uow.len() > 100 {
    ///         return Err("too many entities in one commit".into());
    ///     }
    ///     Ok(())
    /// });
    /// ```
    pub fn on_before_commit(
        &mut self,
        hook: impl FnMut(&mut UnitOfWork<C>) -> Result<(), HookError> + Send + 'static,
    ) {
        self.hooks.push_before_commit(Box::new(hook));
    }

    /// Runs `hook` after every successful commit (and outermost scope), with what was written.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// uow.on_after_commit(|report| println!("committed: {report}"));
    /// ```
    pub fn on_after_commit(&mut self, hook: impl FnMut(&CommitReport) + Send + 'static) {
        self.hooks.push_after_commit(Box::new(hook));
    }

    /// Runs `hook` after every failed commit or rolled-back outermost scope: with the error for
    /// a failed `commit`, with `None` for a scope (its error, or panic, goes to the caller).
    ///
    /// ```
    /// # use uow::prelude::*;
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// uow.on_after_rollback(|error| eprintln!("rolled back: {error:?}"));
    /// ```
    pub fn on_after_rollback(&mut self, hook: impl FnMut(Option<&Error>) + Send + 'static) {
        self.hooks.push_after_rollback(Box::new(hook));
    }

    pub(crate) fn run_before_commit_hooks(&mut self) -> Result<()> {
        Hooks::run_before_commit(self, |uow| &mut uow.hooks)
    }
}
