//! `refresh` of an aggregate's root: the root's row and tree as just read replace the held ones,
//! and the members follow the new tree ([`Mode::Refresh`]): a member still in it takes its
//! row, one gone from it is forgotten with its own members ([`Mode::Forget`]), a row new to it
//! becomes a persisted member. Every local change in the tree is discarded, as `refresh`
//! discards an entity's; nothing is written.

use crate::entity::Entity;
use crate::error::Result;
use crate::stores::StoreSet;
use crate::tracking::{Lifecycle, Member};

use super::copy_back::{put_children, take_children};
use super::{sync_node, sync_tree, Mode, Node, SyncChildren};

/// `refresh` of the root in `slot` of store `index`: `fresh`, its row and tree as just read,
/// replaces its persisted fields and its tree (its skipped fields stay), and the members are
/// brought in line with that tree: those still there take their rows and are clean, the rest
/// are forgotten with their own members, and the rows new to the tree become persisted
/// members. The root's local changes, its tree's and its pending removal are discarded.
pub(crate) fn refresh_tree<T: Entity>(
    stores: &mut StoreSet,
    index: usize,
    (slot, generation): (u32, u32),
    fresh: T,
) -> Result<()> {
    let Some(store) = stores.at_mut::<T>(index) else {
        return Ok(());
    };
    let mut fresh = fresh;
    let fresh_tree = take_children(&mut fresh);
    let Some(root) = store.get_mut(slot, generation) else {
        return Ok(());
    };
    root.refresh(fresh);
    if let Some(mut value) = store.take_tree(slot, generation) {
        put_children(&mut value, fresh_tree);
        store.put_tree(slot, generation, value);
    }
    let node = Node {
        store: index,
        slot,
        generation,
        lifecycle: Lifecycle::Persisted,
    };
    sync_tree::<T>(stores, node, Mode::Refresh).map(|_| ())
}

impl<P: Entity> SyncChildren<'_, P> {
    /// `refresh`: the member takes the row its element was just read from, and is clean.
    pub(super) fn refresh_member<C: Entity>(&mut self, member: Member, element: &C) {
        if let Some(tracked) = self.member_mut::<C>(member) {
            tracked.refresh(element.clone_columns());
        }
    }

    /// Drops a member and, first, its own members, whatever their state.
    pub(super) fn forget<C: Entity>(&mut self, member: Member) -> Result<()> {
        let store = member.store as usize;
        let Some(tracked) = self.member::<C>(member) else {
            return Ok(());
        };
        if C::HAS_CHILDREN {
            let value = tracked.value().clone();
            let node = Node::of_member(member, tracked.lifecycle());
            sync_node(self.stores, node, &value, Mode::Forget, None)?;
        }
        if let Some(store) = self.stores.at_mut::<C>(store) {
            store.release(member.slot);
        }
        Ok(())
    }
}
