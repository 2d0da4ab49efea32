//! Elements moved from one collection to another of the same aggregate (an allocation from one
//! batch to another): the persisted member follows its element, and the write updates its
//! foreign key instead of deleting the row and inserting it again under the same key.
//!
//! A collection that no longer holds a member's element releases the member here, instead of
//! removing it, when an element with its key is somewhere else in the root's tree; the
//! collection that holds that element claims it. The collections are brought in line in tree
//! order, so an element can come before the collection it left: such an element waits, and
//! the root's members are brought in line a second time, when every member to be released
//! has been. Only members of the root being written are claimed: an element whose key belongs
//! to another aggregate is refused as before (`DuplicateKey`).

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};

use crate::entity::{ChildOf, ChildrenVisitor, Entity};
use crate::fast_hash::KeyHash;
use crate::stores::StoreSet;
use crate::tracking::Member;

/// What one write of one root knows about moves.
pub(super) struct Moves<'t> {
    tree: &'t dyn TreeKeys,
    /// The keys of every element of the tree, per store; read the first time a member is
    /// left without its element.
    keys: Option<KeySets>,
    /// Members whose element is elsewhere in the tree, waiting for the collection that holds
    /// it.
    released: Vec<Member>,
    /// Whether an element came before the member it is to claim was released.
    waiting: bool,
    second_pass: bool,
}

/// What an element not matched in its own collection becomes.
pub(super) enum Claim {
    /// The member released for it, now in its collection.
    Moved(Member),
    /// Nothing yet: its member may be released by a collection brought in line later.
    Wait,
    /// A new member.
    New,
}

impl<'t> Moves<'t> {
    pub(super) fn new<T: Entity>(tree: &'t T) -> Self {
        Moves {
            tree,
            keys: None,
            released: Vec::new(),
            waiting: false,
            second_pass: false,
        }
    }

    /// Whether the member `member` (in store `store`, persisted under `key`) has its element
    /// elsewhere in the tree; if so it is released, to be claimed there.
    pub(super) fn release<C: Entity>(
        &mut self,
        stores: &StoreSet,
        store: usize,
        key: &C::Key,
        member: Member,
    ) -> bool {
        let tree = self.tree;
        let keys = self.keys.get_or_insert_with(|| {
            let mut keys = KeySets::default();
            tree.collect(stores, &mut keys);
            keys
        });
        if !keys.contains::<C>(store, key) {
            return false;
        }
        self.released.push(member);
        true
    }

    /// What the element with key `key` (of store `store`), matched by no member of its own
    /// collection, becomes.
    pub(super) fn claim<C: Entity>(
        &mut self,
        stores: &StoreSet,
        store: usize,
        key: &C::Key,
    ) -> Claim {
        let Some(held) = stores.at::<C>(store) else {
            return Claim::New;
        };
        let Some((slot, generation)) = held.find(key) else {
            return Claim::New;
        };
        let released = self.released.iter().position(|m| {
            m.store as usize == store && m.slot == slot && m.generation == generation
        });
        if let Some(index) = released {
            return Claim::Moved(self.released.swap_remove(index));
        }
        let is_member = held
            .get(slot, generation)
            .is_some_and(|t| t.is_member() && !t.is_new());
        if is_member && !self.second_pass {
            self.waiting = true;
            return Claim::Wait;
        }
        Claim::New
    }

    /// Whether an element waited: the root is to be brought in line again, now that every
    /// member to be released has been.
    pub(super) fn again(&mut self) -> bool {
        let again = self.waiting && !self.second_pass;
        self.second_pass |= again;
        self.waiting = false;
        again
    }
}

/// The keys of a tree's elements, by store.
#[derive(Default)]
struct KeySets(HashMap<usize, Box<dyn Any>>);

impl KeySets {
    fn insert<C: Entity>(&mut self, store: usize, key: C::Key) {
        let set = self
            .0
            .entry(store)
            .or_insert_with(|| Box::new(HashSet::<C::Key, KeyHash>::default()));
        if let Some(set) = set.downcast_mut::<HashSet<C::Key, KeyHash>>() {
            set.insert(key);
        }
    }

    fn contains<C: Entity>(&self, store: usize, key: &C::Key) -> bool {
        self.0
            .get(&store)
            .and_then(|set| set.downcast_ref::<HashSet<C::Key, KeyHash>>())
            .is_some_and(|set| set.contains(key))
    }
}

/// A root's tree, read for its elements' keys.
trait TreeKeys {
    fn collect(&self, stores: &StoreSet, keys: &mut KeySets);
}

impl<T: Entity> TreeKeys for T {
    fn collect(&self, stores: &StoreSet, keys: &mut KeySets) {
        struct Collect<'a> {
            stores: &'a StoreSet,
            keys: &'a mut KeySets,
        }
        impl<P: Entity> ChildrenVisitor<P> for Collect<'_> {
            fn visit<C: Entity + ChildOf<P>>(&mut self, _: usize, children: &[C]) {
                let Some(store) = self.stores.index_of(TypeId::of::<C>()) else {
                    return;
                };
                for child in children {
                    self.keys.insert::<C>(store, child.key());
                    if C::HAS_CHILDREN {
                        child.visit_children(self);
                    }
                }
            }
        }
        self.visit_children(&mut Collect { stores, keys });
    }
}
