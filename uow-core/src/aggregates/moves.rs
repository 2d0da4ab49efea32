//! Elements moved from one collection to another of the same aggregate (an allocation from one
//! batch to another): the persisted member follows its element, and the write updates its
//! foreign key instead of deleting the row and inserting it again.
//!
//! During a write, a persisted member that no element of its own collection matches is not
//! removed at once but released here; an element that no member of its own collection matches
//! claims the released member with its key. The collections are brought in line in tree order,
//! so an element can come before the collection it left: such an element waits, and the root's
//! members are brought in line a second time, when every member to be released has been. What
//! no element claimed is removed at the end, listed last among its parent's members, as a
//! removal always was. Only members of the root being written are claimed: an element whose
//! key belongs to another aggregate is refused as before (`DuplicateKey`).

use crate::entity::Entity;
use crate::error::Result;
use crate::stores::StoreSet;
use crate::tracking::{Lifecycle, Member};

use super::{sync_node, Mode, Node};

/// Removes a released member no element claimed (with its own members), and lists it among
/// its parent's: the removal the parent's collection put off.
pub(super) type Remove = fn(&mut StoreSet, Node, Member) -> Result<()>;

/// A member released by its collection.
struct Released {
    member: Member,
    parent: Node,
    remove: Remove,
}

/// What one write of one root knows about moves.
#[derive(Default)]
pub(super) struct Moves {
    /// Members no element of their own collection matched, waiting for an element elsewhere
    /// in the tree to claim them.
    released: Vec<Released>,
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

impl Moves {
    /// Puts off the removal of `member`, which no element of `parent`'s collection matched:
    /// an element elsewhere in the tree may claim it.
    pub(super) fn release(&mut self, parent: Node, member: Member, remove: Remove) {
        self.released.push(Released {
            member,
            parent,
            remove,
        });
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
        let released = self.released.iter().position(|r| {
            let m = r.member;
            m.store as usize == store && m.slot == slot && m.generation == generation
        });
        if let Some(index) = released {
            return Claim::Moved(self.released.swap_remove(index).member);
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

    /// Removes what no element claimed; whether anything was.
    pub(super) fn finish(self, stores: &mut StoreSet) -> Result<bool> {
        let removed = !self.released.is_empty();
        for released in self.released {
            (released.remove)(stores, released.parent, released.member)?;
        }
        Ok(removed)
    }
}

/// A member released by `parent`'s collection that no element claimed ([`Moves`]): marked
/// removed with its own members, and listed last among its parent's.
pub(super) fn remove_released<P: Entity, C: Entity>(
    stores: &mut StoreSet,
    parent: Node,
    member: Member,
) -> Result<()> {
    let store = member.store as usize;
    let Some(tracked) = stores
        .at_mut::<C>(store)
        .and_then(|s| s.get_mut(member.slot, member.generation))
    else {
        return Ok(());
    };
    tracked.mark_removed();
    if C::HAS_CHILDREN {
        let value = tracked.value().clone();
        let node = Node::of_member(member, Lifecycle::Removed);
        sync_node(stores, node, &value, Mode::Remove, None)?;
    }
    if let Some(parents) = stores.at_mut::<P>(parent.store) {
        parents.push_member(parent.slot, parent.generation, member);
    }
    Ok(())
}
