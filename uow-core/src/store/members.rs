//! What a store does for aggregates (`aggregates.rs`): members filed or found, a parent's
//! members list, the value a successful write copies stored columns into, and members changed
//! by their tree only (a handle's change refused).

use crate::entity::Entity;
use crate::error::Error;
use crate::tracking::{Member, Tracked};

use super::{key_text, unknown_entity, Store};

impl<T: Entity> Store<T> {
    /// The generation of the entity in `slot`, if it holds one.
    pub fn generation(&self, slot: u32) -> Option<u32> {
        let s = self.slots.get(slot as usize)?;
        s.tracked.as_ref().map(|_| s.generation)
    }

    /// A persisted member: the entity held under its key, made a member, or `tracked` added.
    pub fn find_or_insert_member(&mut self, tracked: Tracked<T>) -> (u32, u32) {
        if let Some((slot, generation)) = tracked.filed_key().and_then(|key| self.find(key)) {
            self.make_member(slot, generation);
            return (slot, generation);
        }
        self.find_or_insert(tracked)
    }

    /// Makes the entity in `slot`, held on its own until now, a member (saved by the innermost
    /// save point first).
    pub fn make_member(&mut self, slot: u32, generation: u32) {
        if self.get(slot, generation).is_none() {
            return;
        }
        self.save(slot);
        if let Some(held) = self.slots[slot as usize].tracked.as_mut() {
            held.make_member();
        }
    }

    /// Replaces the members list of the entity in `slot` (saved by the innermost save point
    /// first). An unchanged list, as most are when a write walks a tree, is left alone and
    /// saves nothing.
    pub fn set_members(&mut self, slot: u32, generation: u32, members: Vec<Member>) {
        if self.get(slot, generation).is_none() {
            return;
        }
        if self
            .tracked(slot)
            .is_some_and(|t| t.members() == members.as_slice())
        {
            return;
        }
        self.save(slot);
        if let Some(tracked) = self.slots[slot as usize].tracked.as_mut() {
            tracked.set_members(members);
        }
    }

    /// Adds `member` at the end of the members list of the entity in `slot` (saved by the
    /// innermost save point first).
    pub fn push_member(&mut self, slot: u32, generation: u32, member: Member) {
        if self.get(slot, generation).is_none() {
            return;
        }
        self.save(slot);
        if let Some(tracked) = self.slots[slot as usize].tracked.as_mut() {
            tracked.push_member(member);
        }
    }

    /// The tree of the entity in `slot`, taken out while other stores change (members brought
    /// in line with it, or what a write stored copied into it): the entity keeps its columns,
    /// its child collections are empty until [`put_tree`](Self::put_tree). Saved by the
    /// innermost save point first, so an undone scope puts the tree back as it was.
    pub fn take_tree(&mut self, slot: u32, generation: u32) -> Option<T> {
        self.get(slot, generation)?;
        self.save_and_take_tree(slot)
    }

    /// Puts back the tree [`take_tree`](Self::take_tree) took.
    pub fn put_tree(&mut self, slot: u32, generation: u32, tree: T) {
        if self.get(slot, generation).is_some() {
            if let Some(tracked) = self.slots[slot as usize].tracked.as_mut() {
                tracked.put_tree(tree);
            }
        }
    }

    /// Why a handle's change was refused: the entity in `slot` is a member of an aggregate
    /// (`MemberOfAggregate`), or `slot` does not hold `generation` (`UnknownEntity`).
    #[cold]
    pub fn refusal(&self, slot: u32, generation: u32) -> Error {
        match self.get(slot, generation) {
            Some(tracked) if tracked.is_member() => Error::MemberOfAggregate {
                entity: T::ENTITY_NAME,
                key: key_text(&tracked.value().key()),
            },
            _ => unknown_entity::<T>(),
        }
    }

    /// Whether `slot` holds `generation`, a member of an aggregate: its handle only reads it
    /// (the tree changes it), so a change through the handle is refused ([`refusal`]).
    ///
    /// [`refusal`]: Self::refusal
    #[inline]
    pub fn holds_member(&self, slot: u32, generation: u32) -> bool {
        self.get(slot, generation).is_some_and(Tracked::is_member)
    }
}
