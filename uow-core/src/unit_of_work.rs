//! The unit of work: registration, the identity map, mutation tracking and `commit`.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};

use diesel::connection::LoadConnection;
use diesel::Connection;

use crate::entity::{Entity, FieldSet, Load, Persist};
use crate::error::{Error, Operation, Result};
use crate::execute::{Changes, Dialect, Session};
use crate::fast_hash::FastHash;
use crate::plan::{self, PlanPreview};
use crate::registry::{
    key_text, relations_of, set_parent_key, Dependencies, ErasedStore, ResolvedLink, Store,
};
use crate::report::CommitReport;
use crate::resource::{Participant, Participants};
use crate::tracking::{EntityState, Lifecycle, Link, Tracked};

static NEXT_UNIT_ID: AtomicU64 = AtomicU64::new(1);

/// A reference to one entity held by a [`UnitOfWork`].
///
/// Handles are small `Copy` values; the entity itself stays inside the unit of work, which is
/// how it sees every mutation. A handle is only valid with the unit of work that issued it, and
/// goes stale when its entity is removed and committed.
pub struct Handle<T> {
    unit: u64,
    /// Where the unit of work keeps the entities of type `T`: found without a type lookup.
    store: u32,
    slot: u32,
    generation: u32,
    _entity: PhantomData<fn() -> T>,
}

impl<T> Handle<T> {
    fn new(unit: u64, store: u32, (slot, generation): (u32, u32)) -> Self {
        Handle {
            unit,
            store,
            slot,
            generation,
            _entity: PhantomData,
        }
    }
}

impl<T> Clone for Handle<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Handle<T> {}
impl<T> PartialEq for Handle<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.unit, self.slot, self.generation) == (other.unit, other.slot, other.generation)
    }
}
impl<T> Eq for Handle<T> {}
impl<T> Hash for Handle<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.unit, self.slot, self.generation).hash(state)
    }
}
impl<T> fmt::Debug for Handle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Handle<{}>({}:{}@{})",
            std::any::type_name::<T>(),
            self.unit,
            self.slot,
            self.generation
        )
    }
}

/// The entities of one type held by a [`UnitOfWork`], borrowed for many reads and changes in
/// a row; see [`UnitOfWork::entities_mut`].
pub struct EntitiesMut<'u, T: Entity, C> {
    unit: u64,
    store: &'u mut Store<T, C>,
}

impl<T: Entity, C> EntitiesMut<'_, T, C> {
    /// The entity behind `handle` (as [`UnitOfWork::get`]).
    pub fn get(&self, handle: &Handle<T>) -> Result<&T> {
        let held = (handle.unit == self.unit)
            .then(|| self.store.get(handle.slot, handle.generation))
            .flatten();
        match held {
            Some(tracked) => Ok(&tracked.value),
            None => Err(Error::UnknownEntity {
                entity: T::ENTITY_NAME,
            }),
        }
    }

    /// The entity behind `handle`, for plain Rust mutation, tracked as by
    /// [`UnitOfWork::get_mut`].
    #[inline]
    pub fn get_mut(&mut self, handle: &Handle<T>) -> Result<&mut T> {
        if handle.unit == self.unit {
            if let Some(value) = self.store.mutate(handle.slot, handle.generation) {
                return Ok(value);
            }
        }
        Err(Error::UnknownEntity {
            entity: T::ENTITY_NAME,
        })
    }
}

/// The Unit of Work: gathers new, changed and removed entities and writes them in one
/// transaction on [`commit`](UnitOfWork::commit).
///
/// `C` is the Diesel connection type the unit of work commits to. Registering, loading and
/// mutating never send a statement; `commit` is the only way in. A failed commit rolls the
/// transaction back and leaves every entity exactly as it was before the call.
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
pub struct UnitOfWork<C> {
    id: u64,
    stores: Vec<Box<dyn ErasedStore<C>>>,
    by_type: HashMap<TypeId, usize, FastHash>,
    /// Transaction scopes open on this unit of work (nested ones on savepoints).
    scope_depth: usize,
    /// Per open scope: participants and pending events when it began.
    scope_marks: Vec<(usize, usize)>,
    /// Per open scope: the rows its flushes wrote (a nested scope's fold into its parent's
    /// when it succeeds).
    scope_reports: Vec<CommitReport>,
    participants: Participants,
    /// Events recorded for changes not committed yet, in order.
    pending_events: Vec<DomainEvent>,
    /// Events of committed changes, waiting for `take_events`.
    committed_events: Vec<DomainEvent>,
    hooks: Hooks<C>,
}

type BeforeCommitHook<C> = Box<
    dyn FnMut(
        &mut UnitOfWork<C>,
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>,
>;

type AfterCommitHook = Box<dyn FnMut(&CommitReport)>;
type AfterRollbackHook = Box<dyn FnMut(Option<&Error>)>;

struct Hooks<C> {
    before_commit: Vec<BeforeCommitHook<C>>,
    after_commit: Vec<AfterCommitHook>,
    after_rollback: Vec<AfterRollbackHook>,
}

impl<C> Default for Hooks<C> {
    fn default() -> Self {
        Hooks {
            before_commit: Vec::new(),
            after_commit: Vec::new(),
            after_rollback: Vec::new(),
        }
    }
}

/// An event an entity recorded (see [`UnitOfWork::record_event`]), handed out by
/// [`UnitOfWork::take_events`] once the changes it describes are committed.
pub struct DomainEvent {
    entity: &'static str,
    payload: Box<dyn Any + Send>,
    source: EventSource,
}

/// The entity an event was recorded for, and its revision then (see `Tracked::revision`).
#[derive(Clone, Copy, PartialEq, Eq)]
struct EventSource {
    entity_type: TypeId,
    slot: u32,
    generation: u32,
    revision: u32,
}

impl DomainEvent {
    /// The type of the entity that recorded it.
    pub fn entity(&self) -> &'static str {
        self.entity
    }

    /// The event, if it is an `E`.
    pub fn downcast_ref<E: Any>(&self) -> Option<&E> {
        self.payload.downcast_ref()
    }

    /// The event by value, if it is an `E`.
    pub fn downcast<E: Any>(self) -> std::result::Result<E, DomainEvent> {
        match self.payload.downcast::<E>() {
            Ok(event) => Ok(*event),
            Err(payload) => Err(DomainEvent {
                entity: self.entity,
                payload,
                source: self.source,
            }),
        }
    }
}

impl fmt::Debug for DomainEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainEvent")
            .field("entity", &self.entity)
            .finish_non_exhaustive()
    }
}

impl<C: 'static> fmt::Debug for UnitOfWork<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnitOfWork")
            .field("id", &self.id)
            .field(
                "entities",
                &self.stores.iter().map(|s| s.len()).sum::<usize>(),
            )
            .finish()
    }
}

impl<C> Default for UnitOfWork<C>
where
    C: Connection + LoadConnection + 'static,
    C::Backend: Dialect,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<C> UnitOfWork<C>
where
    C: Connection + LoadConnection + 'static,
    C::Backend: Dialect,
{
    /// An empty unit of work.
    pub fn new() -> Self {
        UnitOfWork {
            id: NEXT_UNIT_ID.fetch_add(1, Ordering::Relaxed),
            stores: Vec::new(),
            by_type: HashMap::default(),
            scope_depth: 0,
            scope_marks: Vec::new(),
            scope_reports: Vec::new(),
            participants: Participants::default(),
            pending_events: Vec::new(),
            committed_events: Vec::new(),
            hooks: Hooks::default(),
        }
    }

    /// Whether a transaction scope is open on this unit of work.
    pub fn in_scope(&self) -> bool {
        self.scope_depth > 0
    }

    pub(crate) fn begin_scope(&mut self) {
        self.scope_depth += 1;
        self.scope_reports.push(CommitReport::default());
        self.save_point();
    }

    /// From here on, changes to entities, participants and events can be undone (one level).
    fn save_point(&mut self) {
        self.scope_marks
            .push((self.participants.len(), self.pending_events.len()));
        for store in &mut self.stores {
            store.begin_scope();
        }
    }

    /// Keeps or undoes everything since the matching `save_point`.
    fn restore_point(&mut self, keep: bool) {
        if let Some((participants, events)) = self.scope_marks.pop() {
            if !keep {
                self.participants.truncate(participants);
                self.pending_events.truncate(events);
            }
        }
        for store in &mut self.stores {
            if keep {
                store.commit_scope();
            } else {
                store.rollback_scope();
            }
        }
    }

    /// Closes the innermost scope: keeps its changes, or puts every entity back as it was
    /// when the scope began. Returns the rows its flushes wrote (kept, or rolled back).
    pub(crate) fn end_scope(&mut self, keep: bool) -> CommitReport {
        self.scope_depth = self.scope_depth.saturating_sub(1);
        self.restore_point(keep);
        let report = self.scope_reports.pop().unwrap_or_default();
        if keep {
            if let Some(outer) = self.scope_reports.last_mut() {
                outer.absorb(&report);
            }
        }
        crate::trace::scope_end(keep, &report);
        report
    }

    /// Number of entities held (new, clean, dirty and removed).
    pub fn len(&self) -> usize {
        self.stores.iter().map(|s| s.len()).sum()
    }

    /// Whether no entity is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn store<T: Persist<C::Backend>>(&self) -> Option<&Store<T, C>> {
        let index = *self.by_type.get(&TypeId::of::<T>())?;
        self.stores[index].as_any().downcast_ref()
    }

    fn store_mut<T: Persist<C::Backend>>(&mut self) -> &mut Store<T, C> {
        self.store_entry::<T>().1
    }

    /// The store of `T` (created on first use) and its index, for handles into it.
    fn store_entry<T: Persist<C::Backend>>(&mut self) -> (u32, &mut Store<T, C>) {
        let index = match self.by_type.get(&TypeId::of::<T>()) {
            Some(index) => *index,
            None => {
                self.stores
                    .push(Box::new(Store::<T, C>::new(self.scope_marks.len())));
                self.by_type
                    .insert(TypeId::of::<T>(), self.stores.len() - 1);
                self.stores.len() - 1
            }
        };
        match self.stores[index].as_any_mut().downcast_mut() {
            Some(store) => (index as u32, store),
            None => unreachable!("store {index} is filed under another type"),
        }
    }

    /// A handle to `slot` of the store of `T`, which exists: the entity was just filed there.
    fn handle<T: 'static>(&self, slot: (u32, u32)) -> Handle<T> {
        let store = match self.by_type.get(&TypeId::of::<T>()) {
            Some(&index) => index as u32,
            None => u32::MAX, // never issued: such a handle would find nothing, not panic
        };
        Handle::new(self.id, store, slot)
    }

    /// The store a handle of this unit of work points into.
    fn store_of<T: Persist<C::Backend>>(&self, handle: &Handle<T>) -> Option<&Store<T, C>> {
        if handle.unit != self.id {
            return None;
        }
        self.stores
            .get(handle.store as usize)?
            .as_any()
            .downcast_ref()
    }

    fn store_of_mut<T: Persist<C::Backend>>(
        &mut self,
        handle: &Handle<T>,
    ) -> Option<&mut Store<T, C>> {
        if handle.unit != self.id {
            return None;
        }
        self.stores
            .get_mut(handle.store as usize)?
            .as_any_mut()
            .downcast_mut()
    }

    fn tracked<T: Persist<C::Backend>>(&self, handle: &Handle<T>) -> Result<&Tracked<T>> {
        self.store_of(handle)
            .and_then(|s| s.get(handle.slot, handle.generation))
            .ok_or(Error::UnknownEntity {
                entity: T::ENTITY_NAME,
            })
    }

    fn tracked_mut<T: Persist<C::Backend>>(
        &mut self,
        handle: &Handle<T>,
    ) -> Result<&mut Tracked<T>> {
        self.store_of_mut(handle)
            .and_then(|s| s.get_mut(handle.slot, handle.generation))
            .ok_or(Error::UnknownEntity {
                entity: T::ENTITY_NAME,
            })
    }

    fn register<T: Persist<C::Backend>>(
        &mut self,
        entity: T,
        lifecycle: Lifecycle,
        key: Option<T::Key>,
        touch: bool,
    ) -> Result<Handle<T>> {
        let unit = self.id;
        let (index, store) = self.store_entry::<T>();
        if let Some(key) = &key {
            if store.find(key).is_some() {
                return Err(Error::DuplicateKey {
                    entity: T::ENTITY_NAME,
                    key: key_text(key),
                });
            }
        }
        let id = store.insert(Tracked::new(entity, lifecycle, key));
        if touch {
            store.touch(id.0);
        }
        Ok(Handle::new(unit, index, id))
    }

    /// Registers a new entity, INSERTed by the next commit (the classic `registerNew`).
    ///
    /// Fields marked `#[tracked(generated)]` are left out of the INSERT and written back after
    /// the commit succeeds. An entity whose key is not generated is filed in the identity map at
    /// once, so registering a second entity with the same key is [`Error::DuplicateKey`].
    pub fn register_new<T: Persist<C::Backend>>(&mut self, entity: T) -> Result<Handle<T>> {
        let key_is_generated = T::FIELDS.iter().any(|f| f.key && f.generated);
        let key = (!key_is_generated).then(|| entity.key());
        self.register(entity, Lifecycle::New, key, true)
    }

    /// Tracks an entity just read from the database, as clean (the classic `registerClean`).
    ///
    /// Later changes through [`get_mut`](Self::get_mut) are detected field by field. Fails with
    /// [`Error::DuplicateKey`] when an entity with the same key is held already; see
    /// [`attach`](Self::attach) to reuse the held instance instead.
    pub fn register_clean<T: Persist<C::Backend>>(&mut self, entity: T) -> Result<Handle<T>> {
        let key = entity.key();
        self.register(entity, Lifecycle::Persisted, Some(key), false)
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
        let key = entity.key();
        let unit = self.id;
        let (index, store) = self.store_entry::<T>();
        let id = match store.find(&key) {
            Some(id) => id,
            None => store.insert(Tracked::new(entity, Lifecycle::Persisted, Some(key))),
        };
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
        self.store_mut::<T>().reserve(entities.size_hint().0);
        entities.map(|e| self.attach(e)).collect()
    }

    /// Tracks an entity that exists in the database but whose row may differ from `entity` in
    /// ways nobody recorded (for example one rebuilt from a form): the next commit UPDATEs
    /// every non-key column (the classic `registerDirty`).
    ///
    /// For entities already held, mutate through [`get_mut`](Self::get_mut) instead: only the
    /// changed columns are written then.
    pub fn register_dirty<T: Persist<C::Backend>>(&mut self, entity: T) -> Result<Handle<T>> {
        let handle = self.register_clean(entity)?;
        let store = self.store_mut::<T>();
        if let Some(tracked) = store.get_mut(handle.slot, handle.generation) {
            tracked.write_all = true;
        }
        store.touch(handle.slot);
        Ok(handle)
    }

    /// Registers a held entity for removal: the next commit DELETEs its row (the classic
    /// `registerRemoved`). A new entity that was never committed is simply dropped, and its
    /// handle goes stale.
    pub fn register_removed<T: Persist<C::Backend>>(&mut self, handle: &Handle<T>) -> Result<()> {
        let tracked = self.tracked_mut(handle)?;
        match tracked.lifecycle {
            Lifecycle::Removed => {
                return Err(Error::AlreadyRemoved {
                    entity: T::ENTITY_NAME,
                    key: key_text(&tracked.value.key()),
                })
            }
            Lifecycle::New => self.store_mut::<T>().release(handle.slot),
            Lifecycle::Persisted => {
                tracked.lifecycle = Lifecycle::Removed;
                self.store_mut::<T>().touch(handle.slot);
            }
        }
        Ok(())
    }

    /// Takes back a [`register_removed`](Self::register_removed) that was not committed yet.
    pub fn unremove<T: Persist<C::Backend>>(&mut self, handle: &Handle<T>) -> Result<()> {
        let tracked = self.tracked_mut(handle)?;
        if tracked.lifecycle == Lifecycle::Removed {
            tracked.lifecycle = Lifecycle::Persisted;
        }
        Ok(())
    }

    /// Points `child` at `parent` through the child's `belongs_to` relation with `P`, even
    /// when the parent is new and its key will only be generated by the commit: the commit
    /// inserts the parent first and writes its key into the child's foreign key before the
    /// child is written. If the parent's key is already known the foreign key is set at once.
    ///
    /// Fails with [`Error::NoRelation`] when there is no relation to `P`, and with
    /// [`Error::AmbiguousRelation`] when there are several (see
    /// [`set_parent_via`](Self::set_parent_via)).
    pub fn set_parent<T, P>(&mut self, child: &Handle<T>, parent: &Handle<P>) -> Result<()>
    where
        T: Persist<C::Backend>,
        P: Persist<C::Backend>,
    {
        self.link(child, None, parent)
    }

    /// [`set_parent`](Self::set_parent) through the relation whose foreign key is the field
    /// named `foreign_key` (for several relations to the same parent type).
    pub fn set_parent_via<T, P>(
        &mut self,
        child: &Handle<T>,
        foreign_key: &str,
        parent: &Handle<P>,
    ) -> Result<()>
    where
        T: Persist<C::Backend>,
        P: Persist<C::Backend>,
    {
        self.link(child, Some(foreign_key), parent)
    }

    fn link<T, P>(
        &mut self,
        child: &Handle<T>,
        field: Option<&str>,
        parent: &Handle<P>,
    ) -> Result<()>
    where
        T: Persist<C::Backend>,
        P: Persist<C::Backend>,
    {
        let candidates: Vec<(usize, usize, &'static str)> = relations_of::<T>()
            .iter()
            .enumerate()
            .filter(|(_, r)| r.parent == TypeId::of::<P>())
            .map(|(i, r)| (i, r.field, T::FIELDS[r.field].name))
            .filter(|(_, _, name)| field.is_none_or(|f| f == *name))
            .collect();
        let (relation, foreign_key) = match candidates.as_slice() {
            [] => {
                return Err(Error::NoRelation {
                    child: T::ENTITY_NAME,
                    parent: P::ENTITY_NAME,
                })
            }
            [(relation, foreign_key, _)] => (*relation, *foreign_key),
            several => {
                return Err(Error::AmbiguousRelation {
                    child: T::ENTITY_NAME,
                    parent: P::ENTITY_NAME,
                    fields: several.iter().map(|(_, _, name)| *name).collect(),
                })
            }
        };
        self.tracked(child)?;
        let parent_tracked = self.tracked(parent)?;
        if parent_tracked.lifecycle == Lifecycle::Removed {
            return Err(Error::AlreadyRemoved {
                entity: P::ENTITY_NAME,
                key: key_text(&parent_tracked.value.key()),
            });
        }
        // A new parent's key is read when the commit writes the child: a generated one does
        // not exist yet, and one chosen in Rust may still change before the commit.
        let parent_is_new = parent_tracked.lifecycle == Lifecycle::New;
        let key_generated = P::FIELDS.iter().any(|f| f.key && f.generated);
        let same_entity = TypeId::of::<T>() == TypeId::of::<P>()
            && (child.slot, child.generation) == (parent.slot, parent.generation);
        if parent_is_new && key_generated && same_entity {
            // Its foreign key would need its own generated key before its INSERT.
            let entity = match self.by_type.get(&TypeId::of::<T>()) {
                Some(&store) => self.stores[store].describe(child.slot),
                None => T::ENTITY_NAME.to_string(),
            };
            return Err(Error::Cycle {
                entities: vec![entity],
            });
        }
        // Shown at once when it is known (the commit writes the key the parent has then).
        let key_now = (!key_generated || !parent_is_new).then(|| parent_tracked.value.key());
        let link = Link {
            relation,
            field: foreign_key,
            parent_slot: parent.slot,
            parent_generation: parent.generation,
        };
        let store = self.store_mut::<T>();
        store.touch(child.slot);
        let Some(tracked) = store.get_mut(child.slot, child.generation) else {
            return Err(Error::UnknownEntity {
                entity: T::ENTITY_NAME,
            });
        };
        tracked.before_mutation();
        tracked.links.retain(|l| l.relation != relation);
        if let Some(key) = key_now {
            set_parent_key(&mut tracked.value, relation, Box::new(key));
        }
        if parent_is_new {
            tracked.links.push(link);
        }
        Ok(())
    }

    /// The entity behind `handle`.
    pub fn get<T: Persist<C::Backend>>(&self, handle: &Handle<T>) -> Result<&T> {
        Ok(&self.tracked(handle)?.value)
    }

    /// The entity behind `handle`, for plain Rust mutation (`uow.get_mut(&h)?.balance += 5`).
    ///
    /// The first mutable borrow after a commit keeps a copy of the persisted values; the next
    /// commit compares against it and writes only the fields that differ.
    ///
    /// For many changes to entities of one type in a row, [`entities_mut`](Self::entities_mut)
    /// finds the type's entities once instead of on every call.
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
    /// exactly the same way.
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
    pub fn entities_mut<T: Persist<C::Backend>>(&mut self) -> EntitiesMut<'_, T, C> {
        EntitiesMut {
            unit: self.id,
            store: self.store_mut::<T>(),
        }
    }

    /// The handle of the held entity with primary key `key`, if any.
    pub fn find<T: Persist<C::Backend>>(&self, key: &T::Key) -> Option<Handle<T>> {
        let id = self.store::<T>()?.find(key)?;
        Some(self.handle(id))
    }

    /// Where the entity stands: new, clean, dirty or removed.
    pub fn state<T: Persist<C::Backend>>(&self, handle: &Handle<T>) -> Result<EntityState> {
        Ok(self.tracked(handle)?.state())
    }

    /// The fields the next commit would UPDATE (empty for new and removed entities).
    pub fn changed_fields<T: Persist<C::Backend>>(&self, handle: &Handle<T>) -> Result<FieldSet> {
        let tracked = self.tracked(handle)?;
        Ok(match tracked.lifecycle {
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
    /// work knows (the current values for a clean entity).
    pub fn original<T: Persist<C::Backend>>(&self, handle: &Handle<T>) -> Result<&T> {
        Ok(self.tracked(handle)?.persisted())
    }

    fn pending(&self) -> Result<Vec<plan::Change>> {
        let mut changes = Vec::new();
        for (index, store) in self.stores.iter().enumerate() {
            store.pending(index, &mut changes)?;
        }
        Ok(changes)
    }

    fn plan_pending(&self) -> Result<plan::Plan> {
        let changes = self.pending()?;
        let tables: Vec<_> = self.stores.iter().map(|s| s.table_info()).collect();
        let mut edges = Vec::new();
        // Only entity types with relations can depend on other rows: without them there is no
        // edge to find, and no index of every change to build.
        if !changes.is_empty() && self.stores.iter().any(|s| s.has_relations()) {
            let index: HashMap<(usize, u32), usize, FastHash> = changes
                .iter()
                .enumerate()
                .map(|(i, c)| ((c.store, c.slot), i))
                .collect();
            for (store_index, store) in self.stores.iter().enumerate() {
                if !store.has_relations() {
                    continue;
                }
                let deps = Dependencies {
                    store: store_index,
                    changes: &changes,
                    index: &index,
                    stores: &self.stores,
                    by_type: &self.by_type,
                };
                store.edges(&deps, &mut edges)?;
            }
        }
        plan::plan(&changes, &edges, &tables).map_err(|cycle| Error::Cycle {
            entities: cycle
                .changes
                .iter()
                .map(|&i| self.stores[changes[i].store].describe(changes[i].slot))
                .collect(),
        })
    }

    /// Whether the next commit would write anything.
    pub fn has_changes(&self) -> bool {
        !matches!(self.plan_pending(), Ok(plan) if plan.is_empty())
    }

    /// What the next commit would send, without sending anything; printable.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// let note = uow.register_clean(Note { id: 7, body: "a".into() })?;
    /// uow.get_mut(&note)?.body = "b".into();
    /// let preview = uow.plan()?;
    /// assert_eq!(preview.statement_count(), 1);
    /// assert!(preview.to_string().contains("UPDATE notes (Note): 1 row(s)"));
    /// # Ok::<(), uow::Error>(())
    /// ```
    pub fn plan(&self) -> Result<PlanPreview> {
        let plan = self.plan_pending()?;
        Ok(PlanPreview {
            lines: plan
                .steps
                .iter()
                .map(|step| self.stores[step.store].preview(step))
                .collect(),
        })
    }

    /// Writes every pending change in one transaction: INSERTs for new entities (generated
    /// values written back), UPDATEs of exactly the changed columns, DELETEs of removed ones.
    ///
    /// On success new and dirty entities become clean with their current values as the new
    /// baseline, and removed ones leave the unit of work. On failure the transaction is rolled
    /// back and every entity is exactly as before the call (values, states, changed fields, no
    /// generated key kept), so fixing the cause and calling `commit` again sends each change
    /// once. With nothing pending no statement is sent, not even `BEGIN`.
    pub fn commit(&mut self, conn: &mut C) -> Result<CommitReport> {
        if self.in_scope() {
            return Err(Error::CommitInScope);
        }
        let outer_transaction = crate::scope::check_not_broken(conn)?.is_some();
        // Changes made by before-commit hooks are part of this call: a failed commit undoes
        // them too. Without hooks nothing but the commit itself changes memory.
        let hooks = !self.hooks.before_commit.is_empty();
        if hooks {
            self.save_point();
        }
        // A panic (in a hook, a participant, a user's `ToSql`) must not leave participants
        // prepared or the hooks' save point open: it is caught, everything undone, and resumed.
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            self.run_before_commit_hooks()?;
            if outer_transaction && !self.participants.is_empty() {
                return Err(Error::ParticipantsInOuterTransaction);
            }
            self.participants.prepare()?;
            self.write(conn, true, "commit")
                .map_err(|error| self.participants.compensate(error))
        }));
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(panic) => {
                self.participants.compensate_after_panic();
                if hooks {
                    self.restore_point(false);
                }
                self.run_after_rollback_hooks(None);
                resume_unwind(panic)
            }
        };
        if hooks {
            self.restore_point(outcome.is_ok());
        }
        match outcome {
            Ok(report) => {
                let finalized = self.committed();
                self.run_after_commit_hooks(&report);
                finalized.map(|()| report)
            }
            Err(error) => {
                self.run_after_rollback_hooks(Some(&error));
                Err(error)
            }
        }
    }

    /// After the database committed: events become available, participants finish.
    pub(crate) fn committed(&mut self) -> Result<()> {
        let events = std::mem::take(&mut self.pending_events);
        let (stores, by_type) = (&self.stores, &self.by_type);
        // An event whose entity was refreshed since describes a change that was discarded.
        // (An entity no longer held, removed by this commit, keeps its events.)
        let discarded = |e: &DomainEvent| {
            let s = e.source;
            by_type
                .get(&s.entity_type)
                .and_then(|&i| stores[i].revision(s.slot, s.generation))
                .is_some_and(|revision| revision != s.revision)
        };
        self.committed_events
            .extend(events.into_iter().filter(|e| !discarded(e)));
        self.participants.commit()
    }

    pub(crate) fn prepare_participants(&mut self) -> Result<()> {
        self.participants.prepare()
    }

    pub(crate) fn compensate_participants(&mut self, cause: Error) -> Error {
        self.participants.compensate(cause)
    }

    pub(crate) fn compensate_participants_after_panic(&mut self) {
        self.participants.compensate_after_panic();
    }

    pub(crate) fn has_participants(&self) -> bool {
        !self.participants.is_empty()
    }

    pub(crate) fn run_before_commit_hooks(&mut self) -> Result<()> {
        if self.hooks.before_commit.is_empty() {
            return Ok(());
        }
        // Taken out while they run (a hook gets `&mut self`), and put back even if one panics.
        let mut hooks = std::mem::take(&mut self.hooks.before_commit);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            for hook in &mut hooks {
                hook(self).map_err(Error::Hook)?;
            }
            Ok(())
        }));
        hooks.append(&mut self.hooks.before_commit);
        self.hooks.before_commit = hooks;
        outcome.unwrap_or_else(|panic| resume_unwind(panic))
    }

    pub(crate) fn run_after_commit_hooks(&mut self, report: &CommitReport) {
        for hook in &mut self.hooks.after_commit {
            hook(report);
        }
    }

    pub(crate) fn run_after_rollback_hooks(&mut self, error: Option<&Error>) {
        for hook in &mut self.hooks.after_rollback {
            hook(error);
        }
    }

    /// Enlists a participant outside the database (an [`AtomicFile`](crate::AtomicFile), a
    /// provisioned server...) in the next commit: it is prepared before the database commits,
    /// committed after, and compensated if anything fails. After a failed commit it stays
    /// enlisted for the retry; after a successful one it is done.
    pub fn enlist(&mut self, participant: impl Participant + 'static) {
        self.participants.push(Box::new(participant));
    }

    /// Records a domain event for an entity. It is handed out by
    /// [`take_events`](Self::take_events) once the changes are committed; a scope that rolls
    /// back drops the events recorded inside it; a failed commit keeps them for the retry.
    pub fn record_event<T: Persist<C::Backend>>(
        &mut self,
        handle: &Handle<T>,
        event: impl Any + Send,
    ) -> Result<()> {
        let revision = self.tracked(handle)?.revision;
        self.pending_events.push(DomainEvent {
            entity: T::ENTITY_NAME,
            payload: Box::new(event),
            source: EventSource {
                entity_type: TypeId::of::<T>(),
                slot: handle.slot,
                generation: handle.generation,
                revision,
            },
        });
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
        std::mem::take(&mut self.committed_events)
    }

    /// Runs `hook` before every commit (and at the end of every outermost scope), before
    /// anything is written; it may still register changes. An error stops the commit.
    pub fn on_before_commit(
        &mut self,
        hook: impl FnMut(
                &mut UnitOfWork<C>,
            ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>
            + 'static,
    ) {
        self.hooks.before_commit.push(Box::new(hook));
    }

    /// Runs `hook` after every successful commit (and outermost scope), with what was written.
    pub fn on_after_commit(&mut self, hook: impl FnMut(&CommitReport) + 'static) {
        self.hooks.after_commit.push(Box::new(hook));
    }

    /// Runs `hook` after every failed commit or rolled-back outermost scope: with the error for
    /// a failed `commit`, with `None` for a scope (its error, or panic, goes to the caller).
    pub fn on_after_rollback(&mut self, hook: impl FnMut(Option<&Error>) + 'static) {
        self.hooks.after_rollback.push(Box::new(hook));
    }

    /// Sends every pending change inside the transaction already open on `conn`, so the
    /// database assigns keys now while a later failure can still roll everything back.
    ///
    /// This is the flush for a transaction you opened yourself (`conn.transaction(...)`):
    /// memory cannot follow a later rollback of it, so prefer the scoped form, whose
    /// [`Scope::flush`](crate::Scope::flush) is undone with the scope, database and memory.
    ///
    /// Fails with [`Error::NoTransaction`] when `conn` has no open transaction, and with
    /// [`Error::FlushInScope`] inside a scope (use the scope's own `flush`). The flush itself
    /// runs on a savepoint: if it fails, the database and the entities are as before the flush.
    pub fn flush(&mut self, conn: &mut C) -> Result<CommitReport> {
        if self.in_scope() {
            return Err(Error::FlushInScope);
        }
        self.flush_in_transaction(conn)
    }

    /// `flush` on a connection the caller vouches for (the scope's own).
    pub(crate) fn flush_in_transaction(&mut self, conn: &mut C) -> Result<CommitReport> {
        match crate::scope::check_not_broken(conn)? {
            Some(_) => self.write(conn, true, "flush"),
            None => Err(Error::NoTransaction),
        }
    }

    /// Sends pending changes in the current transaction without a savepoint of their own (the
    /// end of a scope, where a failure rolls the whole transaction back anyway).
    pub(crate) fn flush_without_savepoint(&mut self, conn: &mut C) -> Result<CommitReport> {
        self.write(conn, false, "flush")
    }

    fn write(
        &mut self,
        conn: &mut C,
        transaction: bool,
        what: &'static str,
    ) -> Result<CommitReport> {
        // Edges and the identity map look new entities up by the key they were filed under,
        // which `get_mut` may have changed since.
        for store in &mut self.stores {
            store.refile_keys()?;
        }
        let plan = self.plan_pending()?;
        if plan.is_empty() {
            self.finish();
            return Ok(CommitReport::default());
        }
        let span = crate::trace::write_span(what);
        let depth_before = crate::scope::check_not_broken(conn)?;
        let stores = &mut self.stores;
        let by_type = &self.by_type;
        // What the statements wrote so far: the report on success, what was rolled back on
        // failure.
        let mut sent = CommitReport::default();
        // Set once every statement went through: a failure after it is the COMMIT's.
        let mut statements_done = false;
        let mut run = |conn: &mut C| -> Result<()> {
            let mut session = Session::default();
            let mut requests = Vec::new();
            for step in &plan.steps {
                // Parents inserted by earlier steps now have keys: hand them to the children.
                requests.clear();
                stores[step.store].link_requests(step, &mut requests);
                let mut links = Vec::with_capacity(requests.len());
                for request in &requests {
                    let key = by_type
                        .get(&request.parent)
                        .and_then(|&p| {
                            stores[p]
                                .current_key_any(request.parent_slot, request.parent_generation)
                        })
                        .ok_or(Error::UnknownEntity {
                            entity: request.parent_name,
                        })?;
                    links.push(ResolvedLink {
                        slot: request.slot,
                        relation: request.relation,
                        key,
                    });
                }
                stores[step.store].execute(conn, &mut session, step, links, &mut sent)?;
            }
            statements_done = true;
            Ok(())
        };
        // Diesel's `transaction` does not roll back when its closure panics (a user's `ToSql`,
        // say): the panic is caught here, the database rolled back to where this write
        // started and what the statements produced dropped, then the panic goes on.
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let _entered = crate::trace::enter(&span);
            if transaction {
                conn.transaction::<_, Error, _>(|conn| run(conn))
            } else {
                run(conn)
            }
        }));
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(panic) => {
                crate::scope::roll_back_to(conn, depth_before);
                for store in &mut self.stores {
                    store.abandon_commit();
                }
                resume_unwind(panic)
            }
        };
        match outcome {
            Ok(()) => {
                self.finish();
                crate::trace::write_done(&span, &sent);
                if let Some(level) = self.scope_reports.last_mut() {
                    level.absorb(&sent);
                }
                Ok(sent)
            }
            Err(error) => {
                for store in &mut self.stores {
                    store.abandon_commit();
                }
                // Lost at the real COMMIT (not a savepoint's release): the outcome is unknown.
                let at_commit = statements_done && transaction && depth_before.is_none();
                let error = error.or_connection_lost(at_commit);
                crate::trace::write_failed(&span, what, &sent, &error);
                Err(error)
            }
        }
    }

    /// The entity with primary key `key`: the instance already held (no query), or the row
    /// read from the database and tracked as clean (identity map: one row, one instance).
    ///
    /// Fails with [`Error::NotFound`] when no row has the key.
    pub fn load<T: Load<C::Backend>>(&mut self, conn: &mut C, key: T::Key) -> Result<Handle<T>> {
        if let Some(handle) = self.find::<T>(&key) {
            return Ok(handle);
        }
        match crate::execute::select_by_key::<T, C>(conn, &key) {
            Ok(Some(entity)) => Ok(self.attach(entity)),
            Ok(None) => Err(Error::NotFound {
                entity: T::ENTITY_NAME,
                table: T::TABLE_NAME,
                key: key_text(&key),
            }),
            Err(source) => Err(Error::Statement {
                operation: Operation::Select,
                table: T::TABLE_NAME,
                source,
            }
            .or_connection_lost(false)),
        }
    }

    /// Discards the local changes of one entity and reads its row again; it is clean after.
    /// A removal registered for it is taken back, and the domain events recorded for it and not
    /// committed yet are dropped (they described the discarded changes). Fields marked `skip`
    /// keep their values. Participants are not tied to entities and stay enlisted.
    pub fn refresh<T: Load<C::Backend>>(&mut self, conn: &mut C, handle: &Handle<T>) -> Result<()> {
        let tracked = self.tracked(handle)?;
        if tracked.lifecycle == Lifecycle::New {
            return Err(Error::NotFound {
                entity: T::ENTITY_NAME,
                table: T::TABLE_NAME,
                key: format!(
                    "{} (a new entity, not in the database yet)",
                    key_text(&tracked.value.key())
                ),
            });
        }
        let key = tracked.persisted().key();
        let fresh = match crate::execute::select_by_key::<T, C>(conn, &key) {
            Ok(Some(fresh)) => fresh,
            Ok(None) => {
                return Err(Error::NotFound {
                    entity: T::ENTITY_NAME,
                    table: T::TABLE_NAME,
                    key: key_text(&key),
                })
            }
            Err(source) => {
                return Err(Error::Statement {
                    operation: Operation::Select,
                    table: T::TABLE_NAME,
                    source,
                }
                .or_connection_lost(false))
            }
        };
        let tracked = self.tracked_mut(handle)?;
        tracked.value.assign_persisted(fresh);
        tracked.baseline = None;
        tracked.write_all = false;
        tracked.links.clear();
        tracked.lifecycle = Lifecycle::Persisted;
        tracked.revision = tracked.revision.wrapping_add(1);
        Ok(())
    }

    fn finish(&mut self) {
        for store in &mut self.stores {
            store.finish_commit();
        }
    }
}

impl From<diesel::result::Error> for Error {
    fn from(error: diesel::result::Error) -> Self {
        Error::Transaction(error)
    }
}
