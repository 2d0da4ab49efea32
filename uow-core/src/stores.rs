//! The stores of a unit of work, one per entity type, and the one typed lookup into them.
//!
//! The unit of work keeps its stores type-erased (`dyn AnyStore`) in the order their types
//! were first used; typed code finds a store by its type (`get`) or by the index a handle
//! carries (`at`), and both check the type, so a store is never reached as another type.

use std::any::{Any, TypeId};
use std::collections::HashMap;

use crate::entity::Entity;
use crate::error::Result;
use crate::fast_hash::FastHash;
use crate::plan::{Change, ChangeIndex, Edge, Step};
use crate::preview::PreviewStep;
use crate::store::Store;

/// Links the rows of a step to their new parents' keys (`relations::link_rows` for the
/// store's type): a function of the whole set, since it reads parents and writes children.
pub(crate) type LinkRows = fn(&mut StoreSet, usize, &Step) -> Result<()>;

/// Brings the members of every touched root of a store in line with its tree
/// (`aggregates::sync_roots` for the store's type), noting each root it did.
pub(crate) type SyncRoots = fn(&mut StoreSet, usize, &mut Vec<SyncedRoot>) -> Result<()>;

/// A root whose members a write brought in line, to copy what the write stored into its tree
/// once the write succeeded (`aggregates::write_back` for its type).
#[derive(Clone, Copy)]
pub(crate) struct SyncedRoot {
    pub store: usize,
    pub slot: u32,
    pub generation: u32,
    pub write_back: fn(&mut StoreSet, usize, u32, u32),
}

impl SyncedRoot {
    /// Copies what the database holds now into the root's tree.
    pub fn write_back(self, stores: &mut StoreSet) {
        (self.write_back)(stores, self.store, self.slot, self.generation);
    }
}

/// Where each member of an aggregate sits in its root's tree, by (store, slot): `Product with
/// key 1.batches[0].allocations[2]`. Worked out only to print a preview or an error.
pub(crate) type MemberPaths = HashMap<(usize, u32), String, FastHash>;

/// A store of some entity type. `Send`: a unit of work moves between threads with its
/// entities.
pub(crate) trait AnyStore: Any + Send {
    /// Entities held.
    fn len(&self) -> usize;
    /// Lists what the touched entities need written (store `me`), checked before any I/O.
    fn changes(&self, me: usize, out: &mut Vec<Change>) -> Result<()>;
    /// Adds the foreign-key dependencies of this store's changes (see `Store::edges`).
    fn edges(&self, cx: &EdgeContext<'_>, out: &mut Vec<Edge>) -> Result<()>;
    /// Whether the type has `belongs_to` relations (can depend on other rows at all).
    fn has_relations(&self) -> bool;
    /// Files new entities whose key was changed in Rust under their current key.
    fn refile_new_keys(&mut self) -> Result<()>;
    /// The function linking a step's rows to their parents' keys.
    fn link_rows(&self) -> LinkRows;
    /// The function bringing aggregates in line, for a type with child collections of which
    /// an entity was touched since the last write (none otherwise: nothing to bring in line).
    fn sync_roots(&self) -> Option<SyncRoots>;
    /// One line naming the entity in `slot`, for cycle errors.
    fn describe(&self, slot: u32) -> String;
    /// The entity type's table (its `Table` type, and its name) and the type's name.
    fn table(&self) -> (TypeId, &'static str, &'static str);
    /// The key of the row the entity in `slot` writes, printed; `None` while the database has
    /// still to assign it.
    fn row_key(&self, slot: u32) -> Option<String>;
    /// The rows of `step`, printed for [`PlanPreview`](crate::PlanPreview); a member's row
    /// ends with its path in its aggregate.
    fn preview(&self, step: &Step, paths: &MemberPaths) -> PreviewStep;
    /// The paths of the members of this store's touched roots.
    fn root_paths(&self, stores: &StoreSet, out: &mut MemberPaths);
    /// The paths of the members of the entity in `slot`, under its own path `prefix`.
    fn member_paths(&self, slot: u32, prefix: &str, stores: &StoreSet, out: &mut MemberPaths);
    /// Whether the entity in `slot` with `generation` is being removed; `None` if not held.
    fn removing(&self, slot: u32, generation: u32) -> Option<bool>;
    /// The write under way committed (`true`: apply what it produced and settle) or failed.
    fn end_write(&mut self, committed: bool);
    /// A save point begins (`trees_kept`: a commit's or flush's, see `store/levels.rs`).
    fn begin_level(&mut self, trees_kept: bool);
    /// The innermost save point ends: kept, or undone.
    fn end_level(&mut self, keep: bool);
    /// The revision of the entity in `slot` (see `Tracked::revision`), if it is still held.
    fn revision(&self, slot: u32, generation: u32) -> Option<u32>;
}

/// What edge finding sees of the unit of work: the store's own index, every change of the
/// plan, and the stores (to reach parent types' stores).
pub(crate) struct EdgeContext<'a> {
    pub me: usize,
    pub changes: &'a ChangeIndex,
    pub stores: &'a StoreSet,
}

#[derive(Default)]
pub(crate) struct StoreSet {
    stores: Vec<Box<dyn AnyStore>>,
    by_type: HashMap<TypeId, usize, FastHash>,
}

impl StoreSet {
    /// The store of `T` and its index, if any entity of `T` was ever held.
    pub fn get_indexed<T: Entity>(&self) -> Option<(usize, &Store<T>)> {
        let index = *self.by_type.get(&TypeId::of::<T>())?;
        Some((index, self.at(index)?))
    }

    /// The index of the store of the entity type `type_id`.
    pub fn index_of(&self, type_id: TypeId) -> Option<usize> {
        self.by_type.get(&type_id).copied()
    }

    /// The store of `T`, if any entity of `T` was ever held.
    pub fn get<T: Entity>(&self) -> Option<&Store<T>> {
        self.get_indexed::<T>().map(|(_, store)| store)
    }

    /// The store at `index`, if it is the store of `T`.
    pub fn at<T: Entity>(&self, index: usize) -> Option<&Store<T>> {
        let store: &dyn Any = self.stores.get(index)?.as_ref();
        store.downcast_ref()
    }

    /// The store at `index` for changing it, if it is the store of `T`.
    pub fn at_mut<T: Entity>(&mut self, index: usize) -> Option<&mut Store<T>> {
        let store: &mut dyn Any = self.stores.get_mut(index)?.as_mut();
        store.downcast_mut()
    }

    /// The index of the store of `T`, created (inside `open_levels` save points) on first use;
    /// `true` when it was created now.
    pub fn entry<T: Entity>(&mut self, open_levels: usize) -> (usize, bool) {
        if let Some(&index) = self.by_type.get(&TypeId::of::<T>()) {
            return (index, false);
        }
        self.stores.push(Box::new(Store::<T>::new(open_levels)));
        let index = self.stores.len() - 1;
        self.by_type.insert(TypeId::of::<T>(), index);
        (index, true)
    }

    /// The store at `index`, whatever its type.
    pub fn dyn_at(&self, index: usize) -> Option<&dyn AnyStore> {
        self.stores.get(index).map(|s| s.as_ref())
    }

    /// The store at `index` for changing it, whatever its type.
    pub fn dyn_at_mut(&mut self, index: usize) -> Option<&mut dyn AnyStore> {
        match self.stores.get_mut(index) {
            Some(store) => Some(store.as_mut()),
            None => None,
        }
    }

    /// Every store, in index order.
    pub fn iter(&self) -> impl Iterator<Item = &dyn AnyStore> + '_ {
        self.stores.iter().map(|s| s.as_ref())
    }

    /// Every store for changing it, in index order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut (dyn AnyStore + 'static)> + '_ {
        self.stores.iter_mut().map(|s| s.as_mut())
    }

    /// How many stores there are (entity types ever held).
    pub fn len(&self) -> usize {
        self.stores.len()
    }

    /// How many entities are held, in all stores.
    pub fn entities(&self) -> usize {
        self.stores.iter().map(|s| s.len()).sum()
    }
}
