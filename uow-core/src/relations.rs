//! `belongs_to` relations between stores: a child pointed at a parent (`set_link`, behind
//! `set_parent` and aggregates' members), which changes wait for which (edges for the
//! planner), and the keys of new parents written into their children's foreign keys during a
//! write.
//!
//! Everything here is typed: a child store reaches its parent type's store through
//! [`StoreSet::get`], the one typed lookup of the unit of work, so a parent's key goes into the
//! child's foreign key as the parent's own key type.

use crate::entity::{Entity, Relation, RelationVisitor};
use crate::error::{Error, Result};
use crate::plan::{ChangeIndex, ChangeKind, Edge, Step};
use crate::store::Store;
use crate::stores::{EdgeContext, StoreSet};
use crate::tracking::{any_key_field, Lifecycle, Link};

/// `set_parent`: relation `link.relation` of the entity in `slot` of store `index` (of type
/// `T`) points at the parent in `link.parent_slot` of its type's store. The parent's key is
/// written into the foreign key now when it is known (chosen in Rust, or persisted); the link
/// is kept for a new parent, whose key the commit reads again when it writes the child.
pub(crate) fn set_link<T: Entity>(
    stores: &mut StoreSet,
    index: usize,
    (slot, generation): (u32, u32),
    link: Link,
    parent_is_new: bool,
) -> Result<()> {
    struct SetLink<'a, T> {
        stores: &'a mut StoreSet,
        index: usize,
        slot: (u32, u32),
        link: Link,
        parent_is_new: bool,
        result: Result<()>,
        _child: std::marker::PhantomData<fn() -> T>,
    }
    impl<T: Entity> RelationVisitor<T> for SetLink<'_, T> {
        fn visit<R: Relation<T>>(&mut self, relation: usize) {
            if relation != self.link.relation {
                return;
            }
            let parent = self
                .stores
                .get::<R::Parent>()
                .and_then(|p| p.get(self.link.parent_slot, self.link.parent_generation));
            let Some(parent) = parent else {
                self.result = Err(Error::UnknownEntity {
                    entity: <R::Parent as Entity>::ENTITY_NAME,
                });
                return;
            };
            // A generated key of a new parent does not exist yet: the link alone carries it.
            let key_now = (!(self.parent_is_new && <R::Parent as Entity>::KEY_GENERATED))
                .then(|| parent.value().key());
            let child = self
                .stores
                .at_mut::<T>(self.index)
                .and_then(|s| s.get_mut(self.slot.0, self.slot.1));
            let Some(child) = child else {
                self.result = Err(Error::UnknownEntity {
                    entity: T::ENTITY_NAME,
                });
                return;
            };
            let key_unknown = key_now.is_none();
            child.link(self.link, self.parent_is_new, |value| {
                if let Some(key) = key_now {
                    R::set_parent_key(value, key);
                }
            });
            if key_unknown && any_key_field::<T>(self.link.fields) {
                // The child's own key holds the parent's, unknown until the commit.
                if let Some(store) = self.stores.at_mut::<T>(self.index) {
                    store.unfile(self.slot.0);
                }
            }
        }
    }
    let mut visit = SetLink::<T> {
        stores,
        index,
        slot: (slot, generation),
        link,
        parent_is_new,
        result: Ok(()),
        _child: std::marker::PhantomData,
    };
    T::visit_relations(&mut visit);
    visit.result
}

impl<T: Entity> Store<T> {
    /// Adds the dependencies of this store's changes on other changes through its relations:
    /// a child's INSERT or UPDATE goes after the INSERT of the parent it will point at (by a
    /// pending link, or by the key in its foreign key found in the parent's identity map), and
    /// a child that is deleted or moves away goes before the DELETE of its old parent.
    pub fn edges(&self, cx: &EdgeContext<'_>, out: &mut Vec<Edge>) -> Result<()> {
        let mut finder = EdgeFinder {
            store: self,
            me: cx.me,
            changes: cx.changes,
            stores: cx.stores,
            out,
            error: None,
        };
        T::visit_relations(&mut finder);
        finder.error.map_or(Ok(()), Err)
    }
}

struct EdgeFinder<'a, T: Entity> {
    store: &'a Store<T>,
    me: usize,
    changes: &'a ChangeIndex,
    stores: &'a StoreSet,
    out: &'a mut Vec<Edge>,
    error: Option<Error>,
}

impl<T: Entity> RelationVisitor<T> for EdgeFinder<'_, T> {
    fn visit<R: Relation<T>>(&mut self, relation: usize) {
        let Some((parent_store, parents)) = self.stores.get_indexed::<R::Parent>() else {
            return; // no entity of the parent type is held: nothing to order against
        };
        // New parents whose chosen key was changed since they were filed: a write refiles them
        // first, but `plan()` cannot, so they are found here by the key they have now, and not
        // by the one they left, for the preview to order rows as the commit will.
        let moved = parents.moved_new_keys();
        let parent_slot = |key: <R::Parent as Entity>::Key| -> Option<u32> {
            if let Some((slot, _)) = moved.iter().find(|(_, k)| *k == key) {
                return Some(*slot);
            }
            parents
                .slot_of(&key)
                .filter(|slot| !moved.iter().any(|(m, _)| m == slot))
        };
        for (slot, tracked) in self.store.touched() {
            let Some(me) = self.changes.position(self.me, slot) else {
                continue;
            };
            let deleting = tracked.lifecycle() == Lifecycle::Removed;
            // The parent pointed at after the commit: a linked handle, or the key in the field.
            // A row being deleted keeps no foreign key, so a link it still has (even to a new
            // parent removed since) means nothing.
            let link = tracked
                .links()
                .iter()
                .find(|l| l.relation == relation && !deleting);
            let new_parent = match link {
                Some(link) => {
                    if parents
                        .get(link.parent_slot, link.parent_generation)
                        .is_none()
                    {
                        self.error = Some(Error::ParentRemoved {
                            child: T::ENTITY_NAME,
                            parent: <R::Parent as Entity>::ENTITY_NAME,
                        });
                        return;
                    }
                    // A row waiting for its own generated key can never be written (the
                    // planner drops self-edges, which are harmless for keys known in advance).
                    if <R::Parent as Entity>::KEY_GENERATED
                        && parent_store == self.me
                        && link.parent_slot == slot
                    {
                        self.error = Some(Error::Cycle {
                            entities: vec![self.store.describe(slot)],
                        });
                        return;
                    }
                    Some(link.parent_slot)
                }
                None => R::parent_key(tracked.value()).and_then(parent_slot),
            };
            // The parent pointed at in the database now.
            let old_parent = match tracked.lifecycle() {
                Lifecycle::New => None,
                _ => R::parent_key(tracked.persisted_value()).and_then(|k| parents.slot_of(&k)),
            };
            // The change of the parent in `slot`, if it is of `kind`.
            let parent_change = |slot: Option<u32>, kind: ChangeKind| {
                slot.and_then(|s| self.changes.position(parent_store, s))
                    .filter(|&c| self.changes.kind(c) == kind)
            };
            if let Some(insert) = parent_change(new_parent, ChangeKind::Insert) {
                if !deleting {
                    self.out.push(Edge {
                        before: insert,
                        after: me,
                    });
                }
            }
            if let Some(delete) = parent_change(old_parent, ChangeKind::Delete) {
                if deleting || new_parent != old_parent {
                    self.out.push(Edge {
                        before: me,
                        after: delete,
                    });
                }
            }
        }
    }
}

/// Before the rows of `step` (store `index`, of type `T`) are written: the foreign key of
/// every pending link gets the key its parent has now (generated by an earlier step of this
/// write, or chosen in Rust), in the value the statement binds, kept aside until the write
/// succeeds. `ParentRemoved` if a linked parent is no longer held.
pub(crate) fn link_rows<T: Entity>(stores: &mut StoreSet, index: usize, step: &Step) -> Result<()> {
    if matches!(step.kind, crate::plan::ChangeKind::Delete) {
        return Ok(());
    }
    let linked = match stores.at::<T>(index) {
        Some(store) => step
            .slots
            .iter()
            .any(|&slot| store.links_of(slot).is_some_and(|l| !l.is_empty())),
        None => false,
    };
    if !linked {
        return Ok(());
    }
    let mut visit = LinkRows::<T> {
        stores,
        index,
        step,
        error: None,
        _child: std::marker::PhantomData,
    };
    T::visit_relations(&mut visit);
    visit.error.map_or(Ok(()), Err)
}

struct LinkRows<'a, T> {
    stores: &'a mut StoreSet,
    index: usize,
    step: &'a Step,
    error: Option<Error>,
    _child: std::marker::PhantomData<fn() -> T>,
}

impl<T: Entity> RelationVisitor<T> for LinkRows<'_, T> {
    fn visit<R: Relation<T>>(&mut self, relation: usize) {
        if self.error.is_some() {
            return;
        }
        // First read every parent key (the parent's store may be this one), then write them.
        let mut keys: Vec<(u32, <R::Parent as Entity>::Key)> = Vec::new();
        let Some(child) = self.stores.at::<T>(self.index) else {
            return;
        };
        let parents = self.stores.get::<R::Parent>();
        for &slot in &self.step.slots {
            for link in child.links_of(slot).unwrap_or_default() {
                if link.relation != relation {
                    continue;
                }
                let key =
                    parents.and_then(|p| p.current_key(link.parent_slot, link.parent_generation));
                match key {
                    Some(key) => keys.push((slot, key)),
                    None => {
                        self.error = Some(Error::ParentRemoved {
                            child: T::ENTITY_NAME,
                            parent: <R::Parent as Entity>::ENTITY_NAME,
                        });
                        return;
                    }
                }
            }
        }
        let Some(child) = self.stores.at_mut::<T>(self.index) else {
            return;
        };
        for (slot, key) in keys {
            if let Some(copy) = child.written_copy(slot) {
                R::set_parent_key(copy, key);
            }
        }
    }
}
