//! A tree just read whose rows are held already, on their own: the held instance wins, as
//! `load` returns a held entity rather than its row (identity map: one row, one instance).
//!
//! Before the root's members are made (`Mode::Adopt`), each element whose row is held on its
//! own takes the held values, changed or not, so the tree shows what the held handle showed
//! and the next write sends those changes with the root's version. A row held as the root
//! of a tree of its own (loaded on its own first) brings that tree, with its members and
//! every change in it, and the adoption leaves its members alone. A row held for removal
//! becomes a member, then leaves the tree: the next write deletes it with the root's version,
//! as an element removed from the tree. Without this, the tree held the row as read and the
//! next write of the tree undid the held changes, or wrote them (the removal too) without the
//! root's version while the tree disagreed with the database.
//!
//! A row held as a *new* entity (registered under a key chosen in Rust) cannot be adopted
//! as read: reading a tree refuses it first ([`refuse_rows_held_as_new`]), and `attach`,
//! which cannot fail, shows the new entity, whose INSERT then meets the row.

use std::any::TypeId;

use crate::entity::{ChildOf, ChildrenVisitor, ChildrenVisitorMut, Entity};
use crate::error::{Error, Result};
use crate::store::key_text;
use crate::stores::StoreSet;
use crate::tracking::Lifecycle;

use super::copy_back::{put_children, take_children};

/// Shows in the tree of the root in `slot` of store `index` the held instances of its rows
/// (see the module's text); whether a row in it is held for removal ([`drop_removed`] is
/// then due once the root's members are made).
pub(super) fn show_held<T: Entity>(
    stores: &mut StoreSet,
    index: usize,
    slot: u32,
    generation: u32,
) -> bool {
    // Mostly nothing is held on its own: looked for first, so the tree is taken out (and its
    // root's columns copied) only when something is.
    let held_alone = stores
        .at::<T>(index)
        .and_then(|s| s.get(slot, generation))
        .is_some_and(|root| holds_any_alone(stores, root.value()));
    if !held_alone {
        return false;
    }
    let Some(mut tree) = stores
        .at_mut::<T>(index)
        .and_then(|s| s.take_tree(slot, generation))
    else {
        return false;
    };
    let found = show_held_below(stores, &mut tree);
    if let Some(store) = stores.at_mut::<T>(index) {
        store.put_tree(slot, generation, tree);
        if found.shown {
            // Held changes now in the tree are written with it: the next write syncs it.
            store.touch(slot);
        }
    }
    found.removed
}

/// Takes out of the tree of the root in `slot` of store `index` the elements whose rows were
/// held for removal, now members: the next write deletes them as elements gone from the tree,
/// with the root's version, as if removed from it (a removal registered on its own would
/// bypass the version that guards the aggregate).
pub(super) fn drop_removed<T: Entity>(
    stores: &mut StoreSet,
    index: usize,
    slot: u32,
    generation: u32,
) {
    fn below<P: Entity>(stores: &StoreSet, value: &mut P) {
        struct TakeOut<'a> {
            stores: &'a StoreSet,
        }
        impl<P: Entity> ChildrenVisitorMut<P> for TakeOut<'_> {
            fn visit<C: Entity>(&mut self, _: usize, children: &mut Vec<C>) {
                children.retain(|element| !is_removed_member(self.stores, element));
                for element in children.iter_mut() {
                    below(self.stores, element);
                }
            }
        }
        if P::HAS_CHILDREN {
            value.visit_children_mut(&mut TakeOut { stores });
        }
    }
    let Some(mut tree) = stores
        .at_mut::<T>(index)
        .and_then(|s| s.take_tree(slot, generation))
    else {
        return;
    };
    below(stores, &mut tree);
    if let Some(store) = stores.at_mut::<T>(index) {
        store.put_tree(slot, generation, tree);
        store.touch(slot);
    }
}

/// Whether the row of `element` is held as a member marked removed.
fn is_removed_member<C: Entity>(stores: &StoreSet, element: &C) -> bool {
    let Some(store) = stores
        .index_of(TypeId::of::<C>())
        .and_then(|index| stores.at::<C>(index))
    else {
        return false;
    };
    store
        .find(&element.key())
        .and_then(|(slot, generation)| store.get(slot, generation))
        .is_some_and(|t| t.is_member() && t.lifecycle() == Lifecycle::Removed)
}

/// What [`show_held`] found below an element.
#[derive(Default, Clone, Copy)]
struct Found {
    /// An element took a held instance.
    shown: bool,
    /// A row is held for removal.
    removed: bool,
}

impl std::ops::BitOrAssign for Found {
    fn bitor_assign(&mut self, other: Found) {
        self.shown |= other.shown;
        self.removed |= other.removed;
    }
}

/// [`show_held`] for the child collections of `value`, depth first.
fn show_held_below<P: Entity>(stores: &mut StoreSet, value: &mut P) -> Found {
    struct Show<'a> {
        stores: &'a mut StoreSet,
        found: Found,
    }
    impl<P: Entity> ChildrenVisitorMut<P> for Show<'_> {
        fn visit<C: Entity>(&mut self, _: usize, children: &mut Vec<C>) {
            for element in children.iter_mut() {
                self.found |= show_held_element(self.stores, element);
            }
        }
    }
    let mut show = Show {
        stores,
        found: Found::default(),
    };
    if P::HAS_CHILDREN {
        value.visit_children_mut(&mut show);
    }
    show.found
}

/// Whether any element below `value` has its row held on its own.
fn holds_any_alone<P: Entity>(stores: &StoreSet, value: &P) -> bool {
    struct Look<'a> {
        stores: &'a StoreSet,
        found: bool,
    }
    impl<P: Entity> ChildrenVisitor<P> for Look<'_> {
        fn visit<C: Entity + ChildOf<P>>(&mut self, _: usize, children: &[C]) {
            // A store holding nothing (a tree read into a fresh unit of work) is not searched
            // element by element.
            let holds_some = self
                .stores
                .index_of(TypeId::of::<C>())
                .and_then(|index| self.stores.at::<C>(index))
                .is_some_and(|store| store.len() > 0);
            for element in children {
                if self.found {
                    return;
                }
                self.found = (holds_some && held_alone(self.stores, element).is_some())
                    || (C::HAS_CHILDREN && holds_any_alone(self.stores, element));
            }
        }
    }
    let mut look = Look {
        stores,
        found: false,
    };
    if P::HAS_CHILDREN {
        value.visit_children(&mut look);
    }
    look.found
}

/// `RowHeldAsNew` if an element of the tree of `root`, just read, has its row held as a new
/// entity on its own: reading a tree refuses it before anything is attached (`attach`, which
/// cannot fail, shows the new entity in the tree instead, as it returns it for its row).
pub(crate) fn refuse_rows_held_as_new<T: Entity>(stores: &StoreSet, root: &T) -> Result<()> {
    fn below<P: Entity>(stores: &StoreSet, value: &P) -> Option<(&'static str, String)> {
        struct Look<'a> {
            stores: &'a StoreSet,
            found: Option<(&'static str, String)>,
        }
        impl<P: Entity> ChildrenVisitor<P> for Look<'_> {
            fn visit<C: Entity + ChildOf<P>>(&mut self, _: usize, children: &[C]) {
                let store = self
                    .stores
                    .index_of(TypeId::of::<C>())
                    .and_then(|index| self.stores.at::<C>(index))
                    .filter(|store| store.len() > 0);
                for element in children {
                    if self.found.is_some() {
                        return;
                    }
                    // A store holding nothing (a tree read into a fresh unit of work) is not
                    // searched.
                    let held_as_new = store.is_some_and(|s| {
                        s.find(&element.key())
                            .and_then(|(slot, generation)| s.get(slot, generation))
                            .is_some_and(|t| !t.is_member() && t.lifecycle() == Lifecycle::New)
                    });
                    if held_as_new {
                        self.found = Some((C::ENTITY_NAME, key_text(&element.key())));
                    } else if C::HAS_CHILDREN {
                        self.found = below(self.stores, element);
                    }
                }
            }
        }
        let mut look = Look {
            stores,
            found: None,
        };
        value.visit_children(&mut look);
        look.found
    }
    // Mostly a tree is read into a unit of work that holds nothing yet: no walk then.
    if !T::HAS_CHILDREN || stores.iter().all(|store| store.len() == 0) {
        return Ok(());
    }
    match below(stores, root) {
        Some((entity, key)) => Err(Error::RowHeldAsNew {
            entity,
            key,
            root: format!("{} with key {}", T::ENTITY_NAME, key_text(&root.key())),
        }),
        None => Ok(()),
    }
}

/// Where the row of `element` is held on its own (not as a member), if it is.
fn held_alone<C: Entity>(stores: &StoreSet, element: &C) -> Option<(usize, u32, u32)> {
    let index = stores.index_of(TypeId::of::<C>())?;
    let store = stores.at::<C>(index)?;
    let (slot, generation) = store.find(&element.key())?;
    let tracked = store.get(slot, generation)?;
    // A member belongs to another tree (its row moved there since). A new entity registered
    // under the key of a row read here is the held instance too, as `attach` of that row
    // returns it: the tree shows it, and its INSERT meets the row.
    (!tracked.is_member()).then_some((index, slot, generation))
}

/// Gives `element` the held instance of its row, if one is held on its own (a row held for
/// removal is left as read: [`drop_removed`] takes it out once it is a member).
fn show_held_element<C: Entity>(stores: &mut StoreSet, element: &mut C) -> Found {
    let Some((index, slot, generation)) = held_alone(stores, element) else {
        return show_held_below(stores, element);
    };
    let Some(store) = stores.at_mut::<C>(index) else {
        return Found::default();
    };
    let Some(tracked) = store.get(slot, generation) else {
        return Found::default();
    };
    if tracked.lifecycle() == Lifecycle::Removed {
        return Found {
            shown: false,
            removed: true,
        };
    }
    let has_own_tree =
        C::HAS_CHILDREN && (!tracked.members().is_empty() || has_elements(tracked.value()));
    if has_own_tree {
        // Its tree is the one its members were made for: it replaces the rows just read, and
        // as a member already it keeps its members when the root adopts its tree.
        if let Some(tree) = store.take_tree(slot, generation) {
            *element = tree;
        }
        store.make_member(slot, generation);
        return Found {
            shown: true,
            removed: false,
        };
    }
    let children = take_children(element);
    *element = tracked.value().clone_columns();
    put_children(element, children);
    let below = show_held_below(stores, element);
    Found {
        shown: true,
        ..below
    }
}

/// Whether any child collection of `value` has an element.
fn has_elements<P: Entity>(value: &P) -> bool {
    struct Any(bool);
    impl<P: Entity> ChildrenVisitor<P> for Any {
        fn visit<C: Entity + ChildOf<P>>(&mut self, _: usize, children: &[C]) {
            self.0 |= !children.is_empty();
        }
    }
    let mut any = Any(false);
    value.visit_children(&mut any);
    any.0
}
