//! The rows a step writes, and what a write produced, kept aside until it succeeded.
//!
//! A write never changes an entity before its transaction committed: the values it binds
//! with foreign keys filled in from new parents and with the next version, the values the
//! database generated, and the keys of inserted rows all wait here; `finish_write` applies
//! them, `abandon_write` drops them. So a failed commit leaves memory as it was by
//! construction.

use std::collections::HashMap;

use crate::entity::{Entity, FieldSet};
use crate::fast_hash::FastHash;
use crate::plan::Step;
use crate::tracking::Lifecycle;

use super::Store;

/// What the write under way produced for one store.
pub(crate) struct Written<T: Entity> {
    /// The values the statements bind for rows that differ from the entity: foreign keys
    /// filled in from new parents, the version advanced. They replace the entities.
    copies: HashMap<u32, T, FastHash>,
    /// Values the database generated for inserted rows.
    generated: HashMap<u32, T::Generated, FastHash>,
    /// Keys chosen in Rust of inserted rows, to file them under.
    inserted_keys: Vec<(u32, T::Key)>,
}

impl<T: Entity> Default for Written<T> {
    fn default() -> Self {
        Written {
            copies: HashMap::default(),
            generated: HashMap::default(),
            inserted_keys: Vec::new(),
        }
    }
}

impl<T: Entity> Written<T> {
    pub fn generated(&self, slot: u32) -> Option<&T::Generated> {
        self.generated.get(&slot)
    }

    /// The value the write binds for `slot`, if it differs from the entity.
    pub fn copy(&self, slot: u32) -> Option<&T> {
        self.copies.get(&slot)
    }

    fn clear(&mut self) {
        self.copies.clear();
        self.generated.clear();
        self.inserted_keys.clear();
    }
}

/// What one step writes, for the execution layer.
pub(crate) enum StepRows<'a, T> {
    /// The values to insert, in the step's order.
    Insert(Vec<&'a T>),
    /// Per row, the values to write and the persisted values (for the WHERE clause).
    Update(Vec<(&'a T, &'a T)>, FieldSet),
    /// The persisted values of the rows to delete.
    Delete(Vec<&'a T>),
}

impl<T: Entity> Store<T> {
    /// The value a statement binds for `slot`, copied aside on first use, to fill in a foreign
    /// key or advance the version. `None` for an empty slot.
    pub fn written_copy(&mut self, slot: u32) -> Option<&mut T> {
        if !self.written.copies.contains_key(&slot) {
            let value = self.tracked(slot)?.value().clone_columns();
            self.written.copies.insert(slot, value);
        }
        self.written.copies.get_mut(&slot)
    }

    /// The rows of `step`, as its statements bind them. An UPDATE of a versioned entity
    /// writes the next version (kept aside with the copy, applied only on success).
    pub fn step_rows(&mut self, step: &Step) -> StepRows<'_, T> {
        if matches!(step.kind, crate::plan::ChangeKind::Update(_)) && T::version_field().is_some() {
            for &slot in &step.slots {
                if let Some(copy) = self.written_copy(slot) {
                    copy.bump_version();
                }
            }
        }
        let value = |slot: &u32| {
            let tracked = self.tracked(*slot)?;
            Some((
                self.written.copies.get(slot).unwrap_or(tracked.value()),
                tracked.persisted_value(),
            ))
        };
        match step.kind {
            crate::plan::ChangeKind::Insert => {
                StepRows::Insert(step.slots.iter().filter_map(value).map(|v| v.0).collect())
            }
            crate::plan::ChangeKind::Update(fields) => {
                StepRows::Update(step.slots.iter().filter_map(value).collect(), fields)
            }
            crate::plan::ChangeKind::Delete => {
                StepRows::Delete(step.slots.iter().filter_map(value).map(|v| v.1).collect())
            }
        }
    }

    /// Keeps the values the database generated for the rows of an INSERT step, in order.
    pub fn keep_generated(&mut self, slots: &[u32], generated: Vec<T::Generated>) {
        self.written
            .generated
            .extend(slots.iter().copied().zip(generated));
    }

    /// Keeps the keys (chosen in Rust) of the rows of an INSERT step, to file them under.
    pub fn keep_inserted_keys(&mut self, slots: &[u32]) {
        for &slot in slots {
            let key = match self.written.copies.get(&slot) {
                Some(copy) => copy.key(),
                None => match self.tracked(slot) {
                    Some(tracked) => tracked.value().key(),
                    None => continue,
                },
            };
            self.written.inserted_keys.push((slot, key));
        }
    }

    /// The write committed: what it produced replaces the entities, generated keys are filed
    /// in the identity map, every touched entity is settled (its current values are what the
    /// database holds) and removed ones are released (their handles go stale). Inside a save
    /// point every touched slot is saved first, so that what a flush settled can be undone
    /// (a slot made inside the save point, or saved already, costs one comparison).
    pub fn finish_write(&mut self) {
        if !self.levels.is_empty() {
            for i in 0..self.touched.len() {
                self.save(self.touched[i]);
            }
        }
        let mut written = std::mem::take(&mut self.written);
        // Room for every generated key filed below at once, not by repeated doubling.
        self.by_key.reserve(written.generated.len());
        for slot in std::mem::take(&mut self.touched) {
            self.slots[slot as usize].listed = false;
            let Some(tracked) = self.slots[slot as usize].tracked.as_mut() else {
                continue;
            };
            if tracked.lifecycle() == Lifecycle::Removed {
                self.release(slot);
                continue;
            }
            let generated = written.generated.remove(&slot);
            let key_generated = generated.is_some() && T::KEY_GENERATED;
            tracked.settle(written.copies.remove(&slot), generated);
            if key_generated {
                let key = tracked.value().key();
                self.file(slot, key);
            }
        }
        for (slot, key) in written.inserted_keys.drain(..) {
            self.file(slot, key);
        }
        written.clear();
        self.written = written;
    }

    /// The write failed: forget what it produced.
    pub fn abandon_write(&mut self) {
        self.written.clear();
    }
}
