//! Copies into a root's tree: after a successful write, the stored columns (generated keys,
//! foreign keys, versions) from the members back into the elements; for `refresh`, the child
//! collections of a tree just read moved into the held root.

use std::any::Any;

use crate::entity::{ChildrenVisitorMut, Entity};
use crate::stores::StoreSet;
use crate::tracking::Member;

/// After a successful write: the columns every member holds now (generated keys, foreign
/// keys, versions) are copied into the elements of the tree of the root in `slot` of store
/// `index`, whose child collections stay as they are.
pub(super) fn write_back<T: Entity>(
    stores: &mut StoreSet,
    index: usize,
    slot: u32,
    generation: u32,
) {
    let Some(root) = stores.at::<T>(index).and_then(|s| s.get(slot, generation)) else {
        return; // removed by the write
    };
    let members = root.members().to_vec();
    let Some(mut tree) = stores
        .at_mut::<T>(index)
        .and_then(|s| s.take_tree(slot, generation))
    else {
        return;
    };
    copy_members(stores, &mut tree, &members);
    if let Some(store) = stores.at_mut::<T>(index) {
        store.put_tree(slot, generation, tree);
    }
}

/// Copies the members' columns into the elements of `value`'s child collections, depth first.
fn copy_members<P: Entity>(stores: &StoreSet, value: &mut P, members: &[Member]) {
    struct Copy<'a> {
        stores: &'a StoreSet,
        members: &'a [Member],
    }
    impl<P: Entity> ChildrenVisitorMut<P> for Copy<'_> {
        fn visit<C: Entity>(&mut self, field: usize, children: &mut Vec<C>) {
            let field = u16::try_from(field).unwrap_or(u16::MAX);
            // Members removed by the write are gone; the rest are in element order.
            let held = self
                .members
                .iter()
                .filter(|m| m.field == field)
                .filter_map(|m| {
                    self.stores
                        .at::<C>(m.store as usize)
                        .and_then(|s| s.get(m.slot, m.generation))
                });
            for (element, member) in children.iter_mut().zip(held) {
                let stored = member.value();
                // Most members were not written: nothing to copy.
                if !element.changed_fields(stored).is_empty() || element.version_differs(stored) {
                    element.assign_persisted(stored.clone_columns());
                }
                copy_members(self.stores, element, member.members());
            }
        }
    }
    if P::HAS_CHILDREN {
        value.visit_children_mut(&mut Copy { stores, members });
    }
}

/// A tree's child collections, each taken out of `value` (left empty) and boxed, in the order
/// the derive visits them.
pub(super) fn take_children<P: Entity>(value: &mut P) -> Vec<Box<dyn Any + Send>> {
    struct Take(Vec<Box<dyn Any + Send>>);
    impl<P: Entity> ChildrenVisitorMut<P> for Take {
        fn visit<C: Entity>(&mut self, _: usize, children: &mut Vec<C>) {
            self.0.push(Box::new(std::mem::take(children)));
        }
    }
    let mut take = Take(Vec::new());
    value.visit_children_mut(&mut take);
    take.0
}

/// Puts the collections [`take_children`] took from a value of `P` into `value`, in place of
/// its own.
pub(super) fn put_children<P: Entity>(value: &mut P, taken: Vec<Box<dyn Any + Send>>) {
    struct Put(std::vec::IntoIter<Box<dyn Any + Send>>);
    impl<P: Entity> ChildrenVisitorMut<P> for Put {
        fn visit<C: Entity>(&mut self, _: usize, children: &mut Vec<C>) {
            // The same type visits the same fields in the same order: each box holds this
            // field's `Vec<C>`.
            if let Some(Ok(taken)) = self.0.next().map(|b| b.downcast::<Vec<C>>()) {
                *children = *taken;
            }
        }
    }
    value.visit_children_mut(&mut Put(taken.into_iter()));
}
