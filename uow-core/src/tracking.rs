//! The tracking layer: the state of one entity inside a unit of work.
//!
//! Clean entities cost one value each. The first mutable borrow copies the value into a
//! baseline (copy-on-write), so a commit only has to diff entities that were touched, and a
//! field set back to its persisted value is clean again because the diff says so.

use crate::entity::{Entity, FieldSet};

/// Where an entity stands relative to the database, as the public API reports it.
///
/// ```
/// # use uow::prelude::*;
/// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
/// # #[derive(Tracked, Clone, Debug, PartialEq)]
/// # #[tracked(table = notes)]
/// # struct Note { id: i32, body: String }
/// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
/// let note = uow.register_clean(Note { id: 1, body: "a".into() })?;
/// assert_eq!(uow.state(&note)?, EntityState::Clean);
/// uow.get_mut(&note)?.body = "b".into();
/// assert_eq!(uow.state(&note)?, EntityState::Dirty);
/// uow.get_mut(&note)?.body = "a".into();
/// assert_eq!(uow.state(&note)?, EntityState::Clean);
/// # Ok::<(), uow::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntityState {
    /// Registered with `register_new`; INSERTed by the next commit.
    New,
    /// Same values as the database row (as far as this unit of work knows).
    Clean,
    /// Some persisted field differs from the database row; UPDATEd by the next commit.
    Dirty,
    /// Registered with `register_removed`; DELETEd by the next commit.
    Removed,
}

/// Lifecycle of a tracked entity; `Dirty` is not a lifecycle but a diff against the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    New,
    Persisted,
    Removed,
}

/// One entity held by a unit of work.
#[derive(Debug, Clone)]
pub(crate) struct Tracked<T: Entity> {
    pub value: T,
    pub lifecycle: Lifecycle,
    /// The persisted values, copied on the first mutable borrow after a commit; `None` means
    /// "identical to `value`".
    pub baseline: Option<T>,
    /// Set by `register_dirty`: the database row is unknown, so every column is written.
    pub write_all: bool,
    /// The key this entity is filed under in the identity map, if any.
    pub key: Option<T::Key>,
    /// Parents given by handle whose keys are not known yet (`set_parent`); resolved when the
    /// commit has inserted them.
    pub links: Vec<Link>,
    /// Advanced each time `refresh` discards local changes: domain events recorded before
    /// that described changes that are gone, so they are never handed out.
    pub revision: u32,
}

/// A pending `set_parent`: relation `relation` of the entity points at the entity in
/// `parent_slot` of the parent type's store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Link {
    pub relation: usize,
    pub parent_slot: u32,
    pub parent_generation: u32,
}

impl<T: Entity> Tracked<T> {
    pub fn new(value: T, lifecycle: Lifecycle, key: Option<T::Key>) -> Self {
        Tracked {
            value,
            lifecycle,
            baseline: None,
            write_all: false,
            key,
            links: Vec::new(),
            revision: 0,
        }
    }

    /// The fields an UPDATE would write now.
    pub fn changed_fields(&self) -> FieldSet {
        if self.write_all {
            return FieldSet::all_updatable(T::FIELDS);
        }
        match &self.baseline {
            Some(baseline) => self.value.changed_fields(baseline),
            None => FieldSet::EMPTY,
        }
    }

    pub fn state(&self) -> EntityState {
        match self.lifecycle {
            Lifecycle::New => EntityState::New,
            Lifecycle::Removed => EntityState::Removed,
            Lifecycle::Persisted if self.changed_fields().is_empty() => EntityState::Clean,
            Lifecycle::Persisted => EntityState::Dirty,
        }
    }

    /// Prepares for a mutable borrow: keeps the persisted values if not kept yet.
    pub fn before_mutation(&mut self) {
        if self.lifecycle != Lifecycle::New && self.baseline.is_none() {
            self.baseline = Some(self.value.clone());
        }
    }

    /// The values the database holds for this entity (the baseline if it was changed).
    pub fn persisted(&self) -> &T {
        self.baseline.as_ref().unwrap_or(&self.value)
    }

    /// After a successful commit: the current values are what the database holds.
    pub fn settle(&mut self) {
        self.lifecycle = Lifecycle::Persisted;
        self.baseline = None;
        self.write_all = false;
        self.links.clear();
    }
}
