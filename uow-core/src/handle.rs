//! Handles to held entities, and the typed view of one entity type for loops.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;

use crate::entity::Entity;
use crate::error::{Error, Result};
use crate::store::Store;

/// A reference to one entity held by a [`UnitOfWork`](crate::UnitOfWork).
///
/// Handles are small `Copy` values; the entity itself stays inside the unit of work, which is
/// how it sees every mutation. A handle is only valid with the unit of work that issued it, and
/// goes stale when its entity is removed and committed.
///
/// ```
/// # use uow::prelude::*;
/// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
/// # #[derive(Tracked, Clone, Debug, PartialEq)]
/// # #[tracked(table = notes)]
/// # struct Note { id: i32, body: String }
/// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
/// let note: Handle<Note> = uow.attach(Note { id: 1, body: "a".into() });
/// let copy = note; // `Copy`
/// assert_eq!(uow.get(&copy)?.body, "a");
/// let other = UnitOfWork::<diesel::SqliteConnection>::new();
/// assert!(other.get(&note).is_err(), "valid only with the unit of work that issued it");
/// # Ok::<(), uow::Error>(())
/// ```
pub struct Handle<T> {
    pub(crate) unit: u64,
    /// Where the unit of work keeps the entities of type `T`: found without a type lookup.
    pub(crate) store: u32,
    pub(crate) slot: u32,
    pub(crate) generation: u32,
    _entity: PhantomData<fn() -> T>,
}

impl<T> Handle<T> {
    pub(crate) fn new(unit: u64, store: usize, (slot, generation): (u32, u32)) -> Self {
        Handle {
            unit,
            store: u32::try_from(store).unwrap_or(u32::MAX),
            slot,
            generation,
            _entity: PhantomData,
        }
    }

    /// Slot and generation, as a store files them.
    pub(crate) fn id(&self) -> (u32, u32) {
        (self.slot, self.generation)
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

/// The entities of one type held by a [`UnitOfWork`](crate::UnitOfWork), borrowed for many
/// reads and changes in a row; see
/// [`UnitOfWork::entities_mut`](crate::UnitOfWork::entities_mut).
pub struct EntitiesMut<'u, T: Entity> {
    pub(crate) unit: u64,
    pub(crate) store: &'u mut Store<T>,
}

impl<T: Entity> EntitiesMut<'_, T> {
    /// The entity behind `handle` (as [`UnitOfWork::get`](crate::UnitOfWork::get)).
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// let a = uow.attach(Note { id: 1, body: "a".into() });
    /// let mut notes = uow.entities_mut::<Note>();
    /// notes.get_mut(&a)?.body.push('b');
    /// assert_eq!(notes.get(&a)?.body, "ab"); // reads see the change at once
    /// # Ok::<(), uow::Error>(())
    /// ```
    pub fn get(&self, handle: &Handle<T>) -> Result<&T> {
        let held = (handle.unit == self.unit)
            .then(|| self.store.get(handle.slot, handle.generation))
            .flatten();
        match held {
            Some(tracked) => Ok(tracked.value()),
            None => Err(Error::UnknownEntity {
                entity: T::ENTITY_NAME,
            }),
        }
    }

    /// The entity behind `handle`, for plain Rust mutation, tracked as by
    /// [`UnitOfWork::get_mut`](crate::UnitOfWork::get_mut).
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// let handles: Vec<_> = (1..=3).map(|id| uow.attach(Note { id, body: "x".into() })).collect();
    /// let mut notes = uow.entities_mut::<Note>();
    /// for h in &handles[..2] {
    ///     notes.get_mut(h)?.body.push('!'); // one type lookup for the whole loop
    /// }
    /// assert_eq!(uow.changed_columns(&handles[0])?, ["body"]);
    /// assert!(uow.changed_columns(&handles[2])?.is_empty());
    /// # Ok::<(), uow::Error>(())
    /// ```
    #[inline]
    pub fn get_mut(&mut self, handle: &Handle<T>) -> Result<&mut T> {
        if handle.unit == self.unit {
            if self.store.holds_member(handle.slot, handle.generation) {
                return Err(self.store.refusal(handle.slot, handle.generation));
            }
            if let Some(value) = self.store.mutate(handle.slot, handle.generation) {
                return Ok(value);
            }
        }
        Err(Error::UnknownEntity {
            entity: T::ENTITY_NAME,
        })
    }

    /// Every held entity of type `T`, in no particular order, for plain Rust mutation: the
    /// loop over all of them without a handle per entity, so without the checks a handle
    /// needs (its unit of work, its slot, its generation).
    ///
    /// Each entity yielded is tracked exactly as by [`get_mut`](Self::get_mut): the first
    /// mutable borrow after a commit keeps its persisted values, the next commit writes only
    /// the fields that differ, and a scope that fails puts it back. Entities registered
    /// removed are held until the commit deletes them, so they are yielded too (as `get_mut`
    /// hands them out); removed and committed ones are gone. Members of aggregates are not
    /// yielded: they change through their roots' trees (as `get_mut` refuses them). Stopping early leaves the rest
    /// untouched, except inside a scope, where every entity of the type is saved (not
    /// changed) when the iterator is made.
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
    /// for note in uow.entities_mut::<Note>().iter_mut() {
    ///     note.body.push_str(", reviewed");
    /// }
    /// assert_eq!(uow.get(&handles[1])?.body, "draft, reviewed");
    /// assert_eq!(uow.original(&handles[1])?.body, "draft");
    /// assert_eq!(uow.changed_columns(&handles[2])?, ["body"]);
    /// # Ok::<(), uow::Error>(())
    /// ```
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> + '_ {
        self.store.values_mut()
    }
}
