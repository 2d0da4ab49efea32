//! Save points of a store: enough of every slot changed since a save point began to put it
//! back, so that undoing it costs what it touched, not what the unit of work holds.
//!
//! Every path that changes a slot (`insert`, `touch`, `release`, refiling, settling after a
//! write) calls `save(slot)` first. What a level keeps depends on what the slot was when the
//! level began:
//!
//! - a slot past the slab's end then (made inside the level, as every entity registered in a
//!   scope is, barring reused slots): nothing; undoing the level empties it;
//! - a slot that was empty: its index and its `listed` flag; undoing empties it again;
//! - a slot holding an entity: a copy of the slot, once; in a commit's or flush's level, a root
//!   whose tree a write takes out is copied without its tree (see [`Level`]'s `trees_kept`).
//!
//! So a scope that only registers new entities, however many, keeps no log at all, and a
//! flush settling them saves nothing either.

use crate::entity::Entity;

use crate::tracking::Tracked;

use super::{Slot, Store};

/// What one open save point must be able to undo in a store.
pub(super) struct Level<T: Entity> {
    /// The slab's length when the level began: slots from here on were made inside it.
    len: u32,
    /// The first saved state of every slot below `len` that held an entity.
    held: Vec<(u32, Slot<T>)>,
    /// Slots below `len` that were empty (and whether they were on the touched list).
    vacant: Vec<(u32, bool)>,
    /// Which slots below `len` are saved already: one bit per slot, grown on demand.
    saved: Vec<u64>,
    /// The touched list as it was when the level began.
    touched: Vec<u32>,
    /// A commit's or flush's level: while it is open a root's tree is only taken out and put
    /// back unchanged (what a write stores goes into the tree after the level closed), so a
    /// root is saved without its tree ([`Store::save_without_tree`]), a copy of its columns
    /// only, and undoing the level leaves the tree where it is.
    trees_kept: bool,
    /// The slots of `held` saved without their tree.
    treeless: Vec<u32>,
}

impl<T: Entity> Level<T> {
    /// A level beginning over a slab of `len` slots.
    pub(super) fn new(len: usize, touched: Vec<u32>, trees_kept: bool) -> Self {
        Level {
            len: u32::try_from(len).unwrap_or(u32::MAX),
            held: Vec::new(),
            vacant: Vec::new(),
            saved: Vec::new(),
            touched,
            trees_kept,
            treeless: Vec::new(),
        }
    }

    /// Whether `slot` must be saved before its first change: it existed when the level began
    /// and was not saved yet. Inlined: for the slots a scope makes, one comparison.
    #[inline]
    fn needs_save(&self, slot: u32) -> bool {
        slot < self.len
            && self
                .saved
                .get((slot / 64) as usize)
                .is_none_or(|word| word & (1u64 << (slot % 64)) == 0)
    }

    /// Whether `slot` needs saving now, marking it saved.
    fn first_change(&mut self, slot: u32) -> bool {
        if !self.needs_save(slot) {
            return false;
        }
        let word = (slot / 64) as usize;
        if word >= self.saved.len() {
            self.saved.resize(word + 1, 0);
        }
        self.saved[word] |= 1u64 << (slot % 64);
        true
    }
}

impl<T: Entity> Store<T> {
    /// Records the state of `slot` before the innermost open level changes it (once per
    /// level). Inlined test, out-of-line work: almost every change happens outside levels.
    #[inline]
    pub(super) fn save(&mut self, slot: u32) {
        if self
            .levels
            .last()
            .is_some_and(|level| level.needs_save(slot))
        {
            self.save_in_level(slot);
        }
    }

    #[inline(never)]
    fn save_in_level(&mut self, slot: u32) {
        let Some(level) = self.levels.last_mut() else {
            return;
        };
        if !level.first_change(slot) {
            return;
        }
        // Below the level's length, so the slot exists (the slab never shrinks).
        let Some(s) = self.slots.get(slot as usize) else {
            return;
        };
        if s.tracked.is_some() {
            level.held.push((slot, s.clone()));
        } else {
            level.vacant.push((slot, s.listed));
        }
    }

    /// Takes the tree out of the entity in `slot` (see `Store::take_tree`), and saves the
    /// slot for the innermost level first: without its tree in a level that keeps trees, so a
    /// write does not copy the whole aggregate to undo the members it brings in line.
    pub(super) fn save_and_take_tree(&mut self, slot: u32) -> Option<T> {
        let trees_kept = self
            .levels
            .last()
            .is_some_and(|l| l.trees_kept && l.needs_save(slot));
        if !trees_kept {
            self.save(slot);
            return self
                .slots
                .get_mut(slot as usize)?
                .tracked
                .as_mut()
                .map(Tracked::take_tree);
        }
        let tree = self
            .slots
            .get_mut(slot as usize)?
            .tracked
            .as_mut()
            .map(Tracked::take_tree);
        self.save_in_level(slot);
        if let Some(level) = self.levels.last_mut() {
            level.treeless.push(slot);
        }
        tree
    }

    /// A save point begins: from now on, first changes of each slot are saved. `trees_kept`:
    /// a commit's or flush's level, in which trees are put back unchanged (see [`Level`]).
    pub fn begin_level(&mut self, trees_kept: bool) {
        let level = Level::new(self.slots.len(), self.touched.clone(), trees_kept);
        self.levels.push(level);
    }

    /// The innermost save point failed: every slot it changed is put back as it was (with
    /// its filing in the identity map and its place in the free list), slots made inside it
    /// are emptied, and the touched list is restored. Generations are not restored (they come
    /// from the store's counter, which only grows), so a handle issued inside the undone level
    /// stays stale.
    pub fn undo_level(&mut self) {
        let Some(level) = self.levels.pop() else {
            return;
        };
        self.written = Default::default();
        let len = (level.len as usize).min(self.slots.len());
        let changed = (len..self.slots.len())
            .map(|s| s as u32)
            .chain(level.held.iter().map(|(s, _)| *s))
            .chain(level.vacant.iter().map(|(s, _)| *s));
        // Every changed slot leaves the identity map and, if it holds an entity now, is noted
        // for the free list (an empty slot is on it already); then the saved states come back.
        let mut refill = Vec::new();
        for slot in changed {
            let Some(tracked) = self.slots[slot as usize].tracked.as_ref() else {
                continue;
            };
            if let Some(key) = tracked.filed_key() {
                if self.by_key.get(key) == Some(&slot) {
                    self.by_key.remove(key);
                }
            }
            refill.push(slot);
        }
        for s in &mut self.slots[len..] {
            s.tracked = None;
            s.listed = false;
        }
        for (slot, listed) in level.vacant {
            let s = &mut self.slots[slot as usize];
            s.tracked = None;
            s.listed = listed;
        }
        for (slot, mut saved) in level.held {
            if level.treeless.contains(&slot) {
                // Saved without its tree, which is as it was: the tree stays.
                let now = self.slots[slot as usize].tracked.as_mut();
                if let (Some(now), Some(then)) = (now, saved.tracked.as_mut()) {
                    then.put_tree(now.take_tree());
                }
            }
            if let Some(key) = saved.tracked.as_ref().and_then(|t| t.filed_key()) {
                self.by_key.insert(key.clone(), slot);
            }
            self.slots[slot as usize] = saved;
        }
        // The free list holds exactly the empty slots again.
        let slots = &self.slots;
        self.free
            .retain(|&f| slots.get(f as usize).is_some_and(|s| s.tracked.is_none()));
        refill.retain(|&f| self.slots[f as usize].tracked.is_none());
        self.free.extend(refill.into_iter().rev());
        self.touched = level.touched;
    }

    /// The innermost save point succeeded: its saved states now belong to the level around
    /// it (whose own earlier saves win, and which saves nothing for slots made inside it), so
    /// an outer failure still undoes an inner success.
    pub fn keep_level(&mut self) {
        let Some(level) = self.levels.pop() else {
            return;
        };
        let Some(outer) = self.levels.last_mut() else {
            return;
        };
        for (slot, mut saved) in level.held {
            if !outer.first_change(slot) {
                continue;
            }
            if level.treeless.contains(&slot) {
                if outer.trees_kept {
                    outer.treeless.push(slot);
                } else if let (Some(then), Some(now)) = (
                    saved.tracked.as_mut(),
                    self.slots[slot as usize].tracked.as_ref(),
                ) {
                    // The enclosing level (a scope's) may see the tree change: it needs the
                    // tree as it is now, unchanged since the inner level began.
                    then.put_tree(now.value().clone());
                }
            }
            outer.held.push((slot, saved));
        }
        for (slot, listed) in level.vacant {
            if outer.first_change(slot) {
                outer.vacant.push((slot, listed));
            }
        }
    }
}
