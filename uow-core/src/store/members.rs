//! What a store does for aggregates (`aggregates.rs`): members filed or found, a parent's
//! members list, and the value a successful write copies stored columns into.

use crate::entity::Entity;
use crate::tracking::{Member, Tracked};

use super::Store;

impl<T: Entity> Store<T> {
    /// The generation of the entity in `slot`, if it holds one.
    pub fn generation(&self, slot: u32) -> Option<u32> {
        let s = self.slots.get(slot as usize)?;
        s.tracked.as_ref().map(|_| s.generation)
    }

    /// A persisted member: the entity held under its key, made a member, or `tracked` added.
    pub fn find_or_insert_member(&mut self, tracked: Tracked<T>) -> (u32, u32) {
        if let Some((slot, generation)) = tracked.filed_key().and_then(|key| self.find(key)) {
            self.save(slot);
            if let Some(held) = self.slots[slot as usize].tracked.as_mut() {
                held.make_member();
            }
            return (slot, generation);
        }
        self.find_or_insert(tracked)
    }

    /// Replaces the members list of the entity in `slot` (saved by the innermost save point
    /// first).
    pub fn set_members(&mut self, slot: u32, generation: u32, members: Vec<Member>) {
        if self.get(slot, generation).is_none() {
            return;
        }
        if members.is_empty() && self.tracked(slot).is_some_and(|t| t.members().is_empty()) {
            return;
        }
        self.save(slot);
        if let Some(tracked) = self.slots[slot as usize].tracked.as_mut() {
            tracked.set_members(members);
        }
    }

    /// The value of the entity in `slot`, to copy what a successful write stored into its
    /// tree (saved by the innermost save point first, so an undone scope puts it back).
    pub fn write_back(&mut self, slot: u32, generation: u32) -> Option<&mut T> {
        self.get(slot, generation)?;
        self.save(slot);
        self.slots[slot as usize]
            .tracked
            .as_mut()
            .map(Tracked::value_for_write_back)
    }
}
