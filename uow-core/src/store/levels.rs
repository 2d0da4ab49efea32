//! Save points of a store: the first state of every slot changed since a save point began, so
//! that undoing it costs what it touched, not what the unit of work holds.
//!
//! Every path that changes a slot (`insert`, `touch`, `release`, refiling, settling after a
//! write) calls `save(slot)` first, which clones the slot into the innermost level unless it
//! is there already.

use std::collections::HashMap;

use crate::entity::Entity;
use crate::fast_hash::FastHash;

use super::{Slot, Store};

/// What one open save point must be able to undo in a store.
pub(super) struct Level<T: Entity> {
    /// The first saved state of every slot changed since the level began.
    saved: HashMap<u32, Slot<T>, FastHash>,
    /// The touched list as it was when the level began.
    touched: Vec<u32>,
}

impl<T: Entity> Default for Level<T> {
    fn default() -> Self {
        Level {
            saved: HashMap::default(),
            touched: Vec::new(),
        }
    }
}

impl<T: Entity> Store<T> {
    /// Records the state of `slot` before the innermost open level changes it (once per
    /// level). Inlined test, out-of-line work: almost every change happens outside levels.
    #[inline]
    pub(super) fn save(&mut self, slot: u32) {
        if !self.levels.is_empty() {
            self.save_in_level(slot);
        }
    }

    #[inline(never)]
    fn save_in_level(&mut self, slot: u32) {
        let Some(level) = self.levels.last_mut() else {
            return;
        };
        if level.saved.contains_key(&slot) {
            return;
        }
        let state = match self.slots.get(slot as usize) {
            Some(s) => s.clone(),
            None => Slot {
                generation: 0,
                next_generation: 0,
                tracked: None,
                listed: false,
            },
        };
        level.saved.insert(slot, state);
    }

    /// A save point begins: from now on, first changes of each slot are saved.
    pub fn begin_level(&mut self) {
        self.levels.push(Level {
            saved: HashMap::default(),
            touched: self.touched.clone(),
        });
    }

    /// The innermost save point failed: every slot it changed is put back as it was (with
    /// its filing in the identity map and its place in the free list), and the touched list.
    /// A restored slot keeps its current `next_generation`, so a handle issued inside the
    /// undone level stays stale.
    pub fn undo_level(&mut self) {
        let Some(level) = self.levels.pop() else {
            return;
        };
        self.written = Default::default();
        for (slot, saved) in level.saved {
            let index = slot as usize;
            if index >= self.slots.len() {
                continue;
            }
            if let Some(key) = self.slots[index]
                .tracked
                .as_ref()
                .and_then(|t| t.filed_key())
            {
                if self.by_key.get(key) == Some(&slot) {
                    self.by_key.remove(key);
                }
            }
            if let Some(key) = saved.tracked.as_ref().and_then(|t| t.filed_key()) {
                self.by_key.insert(key.clone(), slot);
            }
            let occupied = saved.tracked.is_some();
            let next_generation = self.slots[index].next_generation;
            self.slots[index] = saved;
            self.slots[index].next_generation = next_generation;
            if occupied {
                self.free.retain(|f| *f != slot);
            } else if !self.free.contains(&slot) {
                self.free.push(slot);
            }
        }
        self.touched = level.touched;
    }

    /// The innermost save point succeeded: its saved states now belong to the level around
    /// it (whose own earlier saves win), so an outer failure still undoes an inner success.
    pub fn keep_level(&mut self) {
        let Some(level) = self.levels.pop() else {
            return;
        };
        if let Some(outer) = self.levels.last_mut() {
            for (slot, saved) in level.saved {
                outer.saved.entry(slot).or_insert(saved);
            }
        }
    }
}
