//! The stores of a unit of work, one per entity type, and the one typed lookup into them.
//!
//! The unit of work keeps its stores type-erased (`dyn AnyStore`) in the order their types
//! were first used; typed code finds a store by its type (`get`) or by the index a handle
//! carries (`at`), and both check the type, so a store is never reached as another type.

use std::any::{Any, TypeId};
use std::collections::HashMap;

use crate::any_store::AnyStore;
use crate::entity::Entity;
use crate::fast_hash::FastHash;
use crate::store::Store;

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

    /// How many entities are held, in all stores.
    pub fn entities(&self) -> usize {
        self.stores.iter().map(|s| s.len()).sum()
    }
}
