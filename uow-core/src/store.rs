//! One store per entity type: a slab of tracked entities, the identity map (key -> slot), and
//! the list of slots touched since the last commit. No I/O: what a commit writes is read from
//! here and what it produced is kept aside here (`store/written.rs`) until it succeeded.
//!
//! - `store/changes.rs`: what the touched entities need written, checked before any I/O;
//! - `store/written.rs`: the rows a step writes, and what the write produced, kept aside;
//! - `store/levels.rs`: save points (scopes, a commit's hooks) and undoing them;
//! - `store/bulk.rs`: every entity for mutation in one pass, without per-handle checks;
//! - `store/members.rs`: what aggregates need: members filed or found, members lists.

use std::any::TypeId;
use std::collections::hash_map::Entry;
use std::collections::HashMap;

use crate::entity::{Entity, Relation, RelationVisitor};
use crate::error::{Error, Result};
use crate::fast_hash::{FastHash, KeyHash};
use crate::tracking::Tracked;

mod bulk;
mod changes;
mod levels;
mod members;
mod written;

pub(crate) use changes::FieldValue;
pub(crate) use written::{StepRows, Written};

/// The parent type and foreign key field of one relation of an entity type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RelationMeta {
    pub parent: TypeId,
    pub parent_name: &'static str,
    /// The foreign key fields, in the order of the parent's key.
    pub fields: &'static [usize],
}

impl RelationMeta {
    /// The relations of `T`, in declaration order.
    pub fn of<T: Entity>() -> Vec<RelationMeta> {
        struct Collect(Vec<RelationMeta>);
        impl<T: Entity> RelationVisitor<T> for Collect {
            fn visit<R: Relation<T>>(&mut self, _index: usize) {
                self.0.push(RelationMeta {
                    parent: TypeId::of::<R::Parent>(),
                    parent_name: <R::Parent as Entity>::ENTITY_NAME,
                    fields: R::FIELDS,
                });
            }
        }
        let mut collect = Collect(Vec::new());
        T::visit_relations(&mut collect);
        collect.0
    }
}

#[derive(Clone)]
struct Slot<T: Entity> {
    /// The generation of the entity in the slot; handles carry it. Taken from the store's
    /// counter, so it is never reused while the counter does not wrap.
    generation: u32,
    tracked: Option<Tracked<T>>,
    /// On the store's touched list (an emptied slot stays listed until the next commit).
    listed: bool,
}

/// All entities of one type held by a unit of work.
pub(crate) struct Store<T: Entity> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    by_key: HashMap<T::Key, u32, KeyHash>,
    /// Slots that may have something to write: new, removed, mutably borrowed, register_dirty.
    touched: Vec<u32>,
    /// What the write under way produced, applied once it succeeded.
    written: Written<T>,
    /// One log per open save point, outermost first.
    levels: Vec<levels::Level<T>>,
    /// The type's `belongs_to` relations, read once.
    relations: Vec<RelationMeta>,
    /// The generation the next entity added gets. One counter for the whole store (not one
    /// per slot, which would cost every slot four bytes), and it only grows: an undone save
    /// point does not lower it, so no handle ever reaches an entity it was not issued for.
    next_generation: u32,
}

/// A handle that does not point at an entity held here.
fn unknown_entity<T: Entity>() -> Error {
    Error::UnknownEntity {
        entity: T::ENTITY_NAME,
    }
}

pub(crate) fn key_text<K: std::fmt::Debug>(key: &K) -> String {
    format!("{key:?}")
}

impl<T: Entity> Store<T> {
    /// An empty store inside `open_levels` save points (it did not exist when they began).
    pub fn new(open_levels: usize) -> Self {
        Store {
            slots: Vec::new(),
            free: Vec::new(),
            by_key: HashMap::default(),
            touched: Vec::new(),
            written: Written::default(),
            levels: (0..open_levels)
                .map(|_| levels::Level::new(0, Vec::new(), false))
                .collect(),
            relations: RelationMeta::of::<T>(),
            next_generation: 0,
        }
    }

    pub fn relations(&self) -> &[RelationMeta] {
        &self.relations
    }

    /// Room for `additional` more entities without growing the slab or the identity map.
    pub fn reserve(&mut self, additional: usize) {
        self.slots
            .reserve(additional.saturating_sub(self.free.len()));
        self.by_key.reserve(additional);
    }

    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// The slot and generation of the entity filed under `key`.
    pub fn find(&self, key: &T::Key) -> Option<(u32, u32)> {
        let slot = *self.by_key.get(key)?;
        Some((slot, self.slots[slot as usize].generation))
    }

    /// The slot filed under `key`, if it holds an entity.
    pub fn slot_of(&self, key: &T::Key) -> Option<u32> {
        self.by_key.get(key).copied()
    }

    /// Adds an entity, filed under its key when it has one; `DuplicateKey` (and nothing
    /// added) when another entity is filed under it.
    pub fn insert(&mut self, tracked: Tracked<T>, touch: bool) -> Result<(u32, u32)> {
        let slot = self.free.last().copied().unwrap_or(self.slots.len() as u32);
        // One lookup files the key and finds a duplicate.
        if let Some(key) = tracked.filed_key() {
            match self.by_key.entry(key.clone()) {
                Entry::Occupied(_) => return Err(duplicate_key::<T>(key, tracked.is_new())),
                Entry::Vacant(vacant) => {
                    vacant.insert(slot);
                }
            }
        }
        self.save(slot);
        let generation = self.next_generation;
        self.next_generation = generation.wrapping_add(1);
        if self.free.pop().is_some() {
            let s = &mut self.slots[slot as usize];
            s.generation = generation;
            s.tracked = Some(tracked);
        } else {
            self.slots.push(Slot {
                generation,
                tracked: Some(tracked),
                listed: false,
            });
        }
        if touch {
            self.touch(slot);
        }
        Ok((slot, self.slots[slot as usize].generation))
    }

    /// The entity filed under the key of `tracked`, or `tracked` added (identity map: one row,
    /// one instance).
    pub fn find_or_insert(&mut self, tracked: Tracked<T>) -> (u32, u32) {
        if let Some(found) = tracked.filed_key().and_then(|key| self.find(key)) {
            return found;
        }
        // Not filed under its key, so adding it cannot collide.
        self.insert(tracked, false).unwrap_or((u32::MAX, 0))
    }

    pub fn get(&self, slot: u32, generation: u32) -> Option<&Tracked<T>> {
        let s = self.slots.get(slot as usize)?;
        if s.generation != generation {
            return None;
        }
        s.tracked.as_ref()
    }

    /// The entity for a change of state: saved by the innermost save point first, and put on
    /// the touched list.
    pub fn get_mut(&mut self, slot: u32, generation: u32) -> Option<&mut Tracked<T>> {
        self.get(slot, generation)?;
        self.touch(slot);
        self.slots.get_mut(slot as usize)?.tracked.as_mut()
    }

    /// The entity for plain Rust mutation: on the touched list, its persisted values kept,
    /// saved by the innermost save point. `None` when `slot` does not hold `generation`.
    /// Handles of members of aggregates are refused before (`holds_member`): the sync of a
    /// tree is what changes its members through here.
    ///
    /// This is the hot path of `uow.get_mut(&h)?.field = ...`: an entity already mutated since
    /// the last commit, outside scopes, costs a few comparisons; the rest is out of line.
    #[inline]
    pub fn mutate(&mut self, slot: u32, generation: u32) -> Option<&mut T> {
        let ready = {
            let s = self.slots.get(slot as usize)?;
            let tracked = s.tracked.as_ref()?;
            if s.generation != generation {
                return None;
            }
            s.listed && self.levels.is_empty() && tracked.ready_for_change()
        };
        // Two returns rather than one after an `if`: the fast path then reuses the checks
        // above instead of repeating them after a call that may have changed the slot.
        if ready {
            return self
                .slots
                .get_mut(slot as usize)?
                .tracked
                .as_mut()
                .map(Tracked::change);
        }
        self.mutate_first(slot)
    }

    /// `mutate` for the first mutable borrow since the last commit, or inside a save point:
    /// out of line with its copy of the entity, so the fast path is small enough to inline.
    #[inline(never)]
    fn mutate_first(&mut self, slot: u32) -> Option<&mut T> {
        self.touch(slot);
        self.slots
            .get_mut(slot as usize)?
            .tracked
            .as_mut()
            .map(Tracked::change)
    }

    /// Puts `slot` on the touched list (once), saved by the innermost save point first.
    #[inline(never)]
    pub fn touch(&mut self, slot: u32) {
        self.save(slot);
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        if s.tracked.is_some() && !s.listed {
            s.listed = true;
            self.touched.push(slot);
        }
    }

    /// Drops the entity in `slot`; its handles go stale.
    pub fn release(&mut self, slot: u32) {
        self.save(slot);
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        if let Some(tracked) = s.tracked.take() {
            if let Some(key) = tracked.filed_key() {
                if self.by_key.get(key) == Some(&slot) {
                    self.by_key.remove(key);
                }
            }
            // The slot stays on the touched list (skipped while empty): no O(n) removal.
            self.free.push(slot);
        }
    }

    /// The entity in a slot from the touched list or a plan step; an emptied slot is skipped,
    /// never a panic.
    fn tracked(&self, slot: u32) -> Option<&Tracked<T>> {
        self.slots.get(slot as usize)?.tracked.as_ref()
    }

    /// Whether any slot is on the touched list.
    pub fn has_touched(&self) -> bool {
        !self.touched.is_empty()
    }

    /// The touched entities, with their slots.
    pub fn touched(&self) -> impl Iterator<Item = (u32, &Tracked<T>)> + '_ {
        self.touched
            .iter()
            .filter_map(|&slot| self.tracked(slot).map(|t| (slot, t)))
    }

    /// The key the entity in `slot` has, or will have once the write under way succeeds.
    pub fn current_key(&self, slot: u32, generation: u32) -> Option<T::Key> {
        let tracked = self.get(slot, generation)?;
        // A row this write inserted with a foreign key filled from its own new parent (a key
        // holding the parent's) has that key in its copy, not yet in the entity.
        let value = self.written.copy(slot).unwrap_or(tracked.value());
        Some(match self.written.generated(slot) {
            Some(generated) => value.key_with_generated(generated),
            None => value.key(),
        })
    }

    /// New entities whose key is chosen in Rust and differs from the key they are filed under
    /// (changed through `get_mut`): slot and current key. Empty in the usual case, at the cost
    /// of one pass over the touched list. An entity waiting for a new parent's generated key
    /// in its own key ([`unfile`](Self::unfile)) has no key yet, and is filed by the commit
    /// that inserts it.
    pub fn moved_new_keys(&self) -> Vec<(u32, T::Key)> {
        if T::KEY_GENERATED {
            return Vec::new(); // filed by the commit that inserts them, under the generated key
        }
        self.touched()
            .filter(|(_, t)| t.is_new() && !t.awaits_key())
            .filter_map(|(slot, t)| {
                let key = t.value().key();
                (t.filed_key() != Some(&key)).then_some((slot, key))
            })
            .collect()
    }

    /// `DuplicateKey` if filing `moves` would put two entities under one key, checked against
    /// the identity map as it will be once every moved entity has left its old key (so two
    /// new entities may swap keys).
    fn check_moves(&self, moves: &[(u32, T::Key)]) -> Result<()> {
        let moving: HashMap<u32, (), FastHash> = moves.iter().map(|(s, _)| (*s, ())).collect();
        let mut taken: HashMap<&T::Key, u32, FastHash> = HashMap::default();
        for (slot, key) in moves {
            let held = self
                .by_key
                .get(key)
                .filter(|other| *other != slot && !moving.contains_key(other));
            if held.is_some() || taken.insert(key, *slot).is_some() {
                return Err(duplicate_key::<T>(key, false));
            }
        }
        Ok(())
    }

    /// Files every new entity whose key is chosen in Rust under its current key, in case it
    /// was changed through `get_mut` after registration (edges and the identity map find
    /// parents by the key they are filed under); `DuplicateKey`, and nothing refiled, if
    /// another held entity has that key.
    pub fn refile_new_keys(&mut self) -> Result<()> {
        let moves = self.moved_new_keys();
        if moves.is_empty() {
            return Ok(());
        }
        self.check_moves(&moves)?;
        for (slot, _) in &moves {
            // A save point rolling back puts the old filing back with the saved slot.
            self.save(*slot);
            let old = self.slots[*slot as usize]
                .tracked
                .as_mut()
                .and_then(|t| t.refile(None));
            if let Some(old) = old {
                if self.by_key.get(&old) == Some(slot) {
                    self.by_key.remove(&old);
                }
            }
        }
        for (slot, key) in moves {
            if let Some(tracked) = self.slots[slot as usize].tracked.as_mut() {
                tracked.refile(Some(key.clone()));
                self.by_key.insert(key, slot);
            }
        }
        Ok(())
    }

    /// Takes the new entity in `slot` out of the identity map: part of its key is the foreign
    /// key of a new parent whose key the database generates, so its own key is not known
    /// until the commit that inserts both (which files it then). Two such children may hold
    /// the same placeholder meanwhile.
    pub fn unfile(&mut self, slot: u32) {
        // A save point rolling back puts the old filing back with the saved slot.
        self.save(slot);
        let old = self
            .slots
            .get_mut(slot as usize)
            .and_then(|s| s.tracked.as_mut())
            .and_then(|t| t.refile(None));
        if let Some(old) = old {
            if self.by_key.get(&old) == Some(&slot) {
                self.by_key.remove(&old);
            }
        }
    }

    /// Files the entity in `slot` under `key` (its key after a commit), unfiling the old one.
    fn file(&mut self, slot: u32, key: T::Key) {
        let Some(tracked) = self.slots[slot as usize].tracked.as_mut() else {
            return;
        };
        if tracked.filed_key() == Some(&key) {
            return;
        }
        if let Some(old) = tracked.refile(Some(key.clone())) {
            if self.by_key.get(&old) == Some(&slot) {
                self.by_key.remove(&old);
            }
        }
        self.by_key.insert(key, slot);
    }

    /// How often the entity in `slot` had its local changes discarded (`refresh`).
    pub fn revision(&self, slot: u32, generation: u32) -> Option<u32> {
        self.get(slot, generation).map(Tracked::revision)
    }

    /// The pending links of the entity in `slot`.
    pub fn links_of(&self, slot: u32) -> Option<&[crate::tracking::Link]> {
        self.tracked(slot).map(Tracked::links)
    }

    /// The entity in `slot`, whatever its generation (slots of a plan step, of a cycle).
    pub fn at_slot(&self, slot: u32) -> Option<&Tracked<T>> {
        self.tracked(slot)
    }
}

/// `DuplicateKey` for `key`; a second new entity of a type whose key the database does not
/// assign most often has a database-assigned key left at its default, so the error says so.
fn duplicate_key<T: Entity>(key: &T::Key, new: bool) -> Error {
    let key_fields = T::FIELDS.iter().filter(|f| f.key).count();
    let hint = if new && !T::KEY_GENERATED && key_fields == 1 {
        "; if the database assigns this key (an auto-increment id left at its default), mark \
         the field `#[tracked(generated)]`: new entities then wait for the key it assigns"
    } else {
        ""
    };
    Error::DuplicateKey {
        entity: T::ENTITY_NAME,
        key: key_text(key),
        hint,
    }
}
