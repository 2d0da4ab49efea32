//! The registry: one store per entity type (a slab of tracked entities plus the identity map),
//! and the type-erased interface a unit of work drives them through.
//!
//! A store never changes an entity while a commit is running: generated values are kept aside
//! and applied by [`ErasedStore::finish_commit`] only after the database committed, so a
//! failed commit leaves memory untouched by construction.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::marker::PhantomData;

use diesel::connection::LoadConnection;
use diesel::RunQueryDsl;

use crate::entity::{Entity, FieldInfo, Persist, Relation, RelationVisitor};
use crate::error::{Error, Operation, Result};
use crate::execute::{self, DeleteRows, Dialect, Session, UpdateRow};
use crate::fast_hash::FastHash;
use crate::plan::{Change, ChangeKind, Edge, PreviewStep, Step, TableInfo};
use crate::report::CommitReport;
use crate::tracking::{Lifecycle, Tracked};

#[derive(Clone)]
struct Slot<T: Entity> {
    /// The generation of the entity in the slot; handles carry it.
    generation: u32,
    /// The generation the next entity put in this slot gets. It only grows (a rolled-back
    /// scope does not lower it), so no handle ever reaches an entity it was not issued for.
    next_generation: u32,
    tracked: Option<Tracked<T>>,
    /// On the store's touched list (an emptied slot stays listed until the next commit).
    listed: bool,
}

/// What one open scope must be able to undo in a store: the first saved state of every slot
/// it changed (copy-on-write, so a scope costs nothing for entities it does not touch), and
/// the touched list as it was when the scope began.
struct ScopeLog<T: Entity> {
    saved: HashMap<u32, Slot<T>, FastHash>,
    touched: Vec<u32>,
}

/// All entities of one type held by a unit of work.
pub(crate) struct Store<T: Entity, C> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    by_key: HashMap<T::Key, u32>,
    /// Slots that may have something to write: new, removed, mutably borrowed, register_dirty.
    touched: Vec<u32>,
    /// Generated values of rows inserted by the commit under way, applied once it succeeds.
    pending_generated: HashMap<u32, T::Generated, FastHash>,
    /// Copies of linked rows with their foreign keys filled in from parents inserted by the
    /// commit under way; they replace the entities once it succeeds.
    pending_linked: HashMap<u32, T, FastHash>,
    /// Keys that entities will be filed under after the commit under way succeeds.
    pending_keys: Vec<(u32, T::Key)>,
    /// One log per open scope, outermost first.
    scopes: Vec<ScopeLog<T>>,
    _connection: PhantomData<fn(&mut C)>,
}

pub(crate) fn key_text<K: std::fmt::Debug>(key: &K) -> String {
    format!("{key:?}")
}

impl<T: Entity, C> Store<T, C> {
    /// An empty store inside `open_scopes` scopes (it did not exist when they began).
    pub fn new(open_scopes: usize) -> Self {
        Store {
            slots: Vec::new(),
            free: Vec::new(),
            by_key: HashMap::new(),
            touched: Vec::new(),
            pending_generated: HashMap::default(),
            pending_linked: HashMap::default(),
            pending_keys: Vec::new(),
            scopes: (0..open_scopes)
                .map(|_| ScopeLog {
                    saved: HashMap::default(),
                    touched: Vec::new(),
                })
                .collect(),
            _connection: PhantomData,
        }
    }

    /// Records the state of `slot` before the innermost open scope changes it (once per scope).
    /// Inlined test, out-of-line work: every `get_mut` calls it, almost always outside scopes.
    #[inline]
    fn save(&mut self, slot: u32) {
        if !self.scopes.is_empty() {
            self.save_in_scope(slot);
        }
    }

    #[inline(never)]
    fn save_in_scope(&mut self, slot: u32) {
        let Some(log) = self.scopes.last_mut() else {
            return;
        };
        if log.saved.contains_key(&slot) {
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
        log.saved.insert(slot, state);
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

    pub fn find(&self, key: &T::Key) -> Option<(u32, u32)> {
        let slot = *self.by_key.get(key)?;
        Some((slot, self.slots[slot as usize].generation))
    }

    /// Adds an entity; `key` is filed in the identity map (it must not be there yet).
    pub fn insert(&mut self, tracked: Tracked<T>) -> (u32, u32) {
        let key = tracked.key.clone();
        let slot = match self.free.pop() {
            Some(slot) => {
                self.save(slot);
                let s = &mut self.slots[slot as usize];
                s.generation = s.next_generation;
                s.next_generation = s.next_generation.wrapping_add(1);
                s.tracked = Some(tracked);
                slot
            }
            None => {
                let slot = self.slots.len() as u32;
                self.save(slot);
                self.slots.push(Slot {
                    generation: 0,
                    next_generation: 1,
                    tracked: Some(tracked),
                    listed: false,
                });
                slot
            }
        };
        if let Some(key) = key {
            self.by_key.insert(key, slot);
        }
        (slot, self.slots[slot as usize].generation)
    }

    pub fn get(&self, slot: u32, generation: u32) -> Option<&Tracked<T>> {
        let s = self.slots.get(slot as usize)?;
        if s.generation != generation {
            return None;
        }
        s.tracked.as_ref()
    }

    /// The entity for changing it; the innermost open scope saves it first.
    pub fn get_mut(&mut self, slot: u32, generation: u32) -> Option<&mut Tracked<T>> {
        self.get(slot, generation)?;
        self.save(slot);
        self.slots.get_mut(slot as usize)?.tracked.as_mut()
    }

    /// The entity for plain Rust mutation: on the touched list, its persisted values kept,
    /// saved by the innermost open scope. `None` when `slot` does not hold generation
    /// `generation`.
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
            s.listed
                && self.scopes.is_empty()
                && (tracked.baseline.is_some() || tracked.lifecycle == Lifecycle::New)
        };
        // Two returns rather than one after an `if`: the fast path then reuses the checks
        // above instead of repeating them after a call that may have changed the slot.
        if ready {
            return self
                .slots
                .get_mut(slot as usize)?
                .tracked
                .as_mut()
                .map(|t| &mut t.value);
        }
        self.prepare_mutation(slot);
        self.slots
            .get_mut(slot as usize)?
            .tracked
            .as_mut()
            .map(|t| &mut t.value)
    }

    #[inline(never)]
    fn prepare_mutation(&mut self, slot: u32) {
        self.touch(slot);
        if let Some(tracked) = self.slots[slot as usize].tracked.as_mut() {
            tracked.before_mutation();
        }
    }

    /// Puts `slot` on the touched list (once).
    pub fn touch(&mut self, slot: u32) {
        self.save(slot);
        let s = &mut self.slots[slot as usize];
        if s.tracked.is_some() && !s.listed {
            s.listed = true;
            self.touched.push(slot);
        }
    }

    /// Drops the entity in `slot`; its handles go stale.
    pub fn release(&mut self, slot: u32) {
        self.save(slot);
        let s = &mut self.slots[slot as usize];
        if let Some(tracked) = s.tracked.take() {
            if let Some(key) = &tracked.key {
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

    /// The values a statement binds for `slots`: the linked copy if the commit made one.
    fn entities(&self, slots: &[u32]) -> Vec<&T> {
        slots
            .iter()
            .filter_map(|s| {
                self.pending_linked
                    .get(s)
                    .or_else(|| self.tracked(*s).map(|t| &t.value))
            })
            .collect()
    }

    /// The key the entity in `slot` has, or will have once the commit under way succeeds.
    pub fn current_key(&self, slot: u32, generation: u32) -> Option<T::Key> {
        let tracked = self.get(slot, generation)?;
        Some(match self.pending_generated.get(&slot) {
            Some(generated) => tracked.value.key_with_generated(generated),
            None => tracked.value.key(),
        })
    }

    /// New entities whose key is chosen in Rust and differs from the key they are filed under
    /// (changed through `get_mut`), by their current key. Empty in the usual case, at the cost
    /// of one pass over the touched list.
    pub fn moved_new_keys(&self) -> HashMap<T::Key, u32> {
        let mut moved = HashMap::new();
        if T::FIELDS.iter().any(|f| f.key && f.generated) {
            return moved;
        }
        for &slot in &self.touched {
            if let Some(tracked) = self.tracked(slot) {
                if tracked.lifecycle == Lifecycle::New {
                    let key = tracked.value.key();
                    if tracked.key.as_ref() != Some(&key) {
                        moved.insert(key, slot);
                    }
                }
            }
        }
        moved
    }

    /// The slot filed under `key`, if it holds an entity.
    pub fn slot_of(&self, key: &T::Key) -> Option<u32> {
        self.by_key.get(key).copied()
    }
}

/// One field of an entity, printed with its `Debug` form (through the backend's `Persist`).
struct FieldValue<'a, T, DB>(&'a T, usize, PhantomData<DB>);

impl<T, DB> std::fmt::Debug for FieldValue<'_, T, DB>
where
    DB: diesel::backend::Backend,
    T: Persist<DB>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt_field(self.1, f)
    }
}

/// The parent type whose key a pending `set_parent` link writes into field `field`, if any.
fn linked_parent<T: Entity>(
    tracked: &Tracked<T>,
    relations: &[RelationMeta],
    field: usize,
) -> Option<&'static str> {
    tracked
        .links
        .iter()
        .find_map(|l| relations.get(l.relation).filter(|r| r.field == field))
        .map(|r| r.parent_name)
}

/// What the INSERT of a new entity writes, field by field, printed: each value's `Debug` form,
/// or `key of new Parent` for a foreign key that a parent inserted earlier in the same commit
/// fills in (it holds a placeholder until then).
fn inserted_values<T, DB>(tracked: &Tracked<T>) -> Vec<(&'static FieldInfo, String)>
where
    DB: diesel::backend::Backend,
    T: Persist<DB>,
{
    let relations = if tracked.links.is_empty() {
        Vec::new()
    } else {
        relations_of::<T>()
    };
    T::FIELDS
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.generated)
        .map(|(i, f)| {
            let value = match linked_parent(tracked, &relations, i) {
                Some(parent) => format!("key of new {parent}"),
                None => format!("{:?}", FieldValue::<T, DB>(&tracked.value, i, PhantomData)),
            };
            (f, value)
        })
        .collect()
}

/// Cuts a value printed into an error message to a readable length (a field may hold a
/// document or a blob).
fn clip(mut text: String) -> String {
    const MAX_CHARS: usize = 60;
    if let Some((end, _)) = text.char_indices().nth(MAX_CHARS) {
        text.truncate(end);
        text.push_str("...");
    }
    text
}

/// What `edges` needs to see of the whole unit of work.
pub(crate) struct Dependencies<'a, C> {
    /// This store's index.
    pub store: usize,
    pub changes: &'a [Change],
    /// (store, slot) -> index into `changes`.
    pub index: &'a HashMap<(usize, u32), usize, FastHash>,
    pub stores: &'a [Box<dyn ErasedStore<C>>],
    pub by_type: &'a HashMap<TypeId, usize, FastHash>,
}

/// A row that needs its parent's key: relation `relation` of `slot` points at `parent_slot`
/// of the store of type `parent`.
pub(crate) struct LinkRequest {
    pub slot: u32,
    pub relation: usize,
    pub parent: TypeId,
    pub parent_name: &'static str,
    pub parent_slot: u32,
    pub parent_generation: u32,
}

/// The answer to a [`LinkRequest`]: the parent's key (of the parent's key type).
pub(crate) struct ResolvedLink {
    pub slot: u32,
    pub relation: usize,
    pub key: Box<dyn Any>,
}

/// The parent type and foreign key field of each relation of `T`, in relation order.
pub(crate) struct RelationMeta {
    pub parent: TypeId,
    pub parent_name: &'static str,
    pub field: usize,
}

pub(crate) fn relations_of<T: Entity>() -> Vec<RelationMeta> {
    struct Collect(Vec<RelationMeta>);
    impl<T: Entity> RelationVisitor<T> for Collect {
        fn visit<R: Relation<T>>(&mut self, _index: usize) {
            self.0.push(RelationMeta {
                parent: TypeId::of::<R::Parent>(),
                parent_name: <R::Parent as Entity>::ENTITY_NAME,
                field: R::FIELD,
            });
        }
    }
    let mut collect = Collect(Vec::new());
    T::visit_relations(&mut collect);
    collect.0
}

/// Points relation `index` of `child` at `key` (which must be the parent's key type).
pub(crate) fn set_parent_key<T: Entity>(child: &mut T, index: usize, key: Box<dyn Any>) -> bool {
    struct Set<'a, T> {
        index: usize,
        key: Option<Box<dyn Any>>,
        child: &'a mut T,
        done: bool,
    }
    impl<T: Entity> RelationVisitor<T> for Set<'_, T> {
        fn visit<R: Relation<T>>(&mut self, index: usize) {
            if index != self.index {
                return;
            }
            if let Some(key) = self.key.take() {
                if let Ok(key) = key.downcast::<<R::Parent as Entity>::Key>() {
                    R::set_parent_key(self.child, *key);
                    self.done = true;
                }
            }
        }
    }
    let mut set = Set {
        index,
        key: Some(key),
        child,
        done: false,
    };
    T::visit_relations(&mut set);
    set.done
}

/// Finds, for every change of a child store, the changes of parent rows it depends on.
struct EdgeFinder<'a, 'd, T: Entity, C> {
    store: &'a Store<T, C>,
    deps: &'a Dependencies<'d, C>,
    out: &'a mut Vec<Edge>,
    error: Option<Error>,
}

impl<T: Entity, C: 'static> RelationVisitor<T> for EdgeFinder<'_, '_, T, C> {
    fn visit<R: Relation<T>>(&mut self, relation: usize) {
        let Some(&parent_store) = self.deps.by_type.get(&TypeId::of::<R::Parent>()) else {
            return; // no entity of the parent type is held: nothing to order against
        };
        let Some(parents) = self.deps.stores[parent_store]
            .as_any()
            .downcast_ref::<Store<R::Parent, C>>()
        else {
            return;
        };
        let change_of = |slot: u32| self.deps.index.get(&(parent_store, slot)).copied();
        // New parents whose chosen key was changed since they were filed: a write refiles them
        // first, but `plan()` cannot, so they are found here by the key they have now, and not
        // by the one they left, for the preview to order rows as the commit will.
        let moved = parents.moved_new_keys();
        let parent_slot = |key: <R::Parent as Entity>::Key| -> Option<u32> {
            if moved.is_empty() {
                return parents.slot_of(&key);
            }
            match moved.get(&key) {
                Some(&slot) => Some(slot),
                None => parents
                    .slot_of(&key)
                    .filter(|slot| !moved.values().any(|m| m == slot)),
            }
        };
        for &slot in &self.store.touched {
            let Some(tracked) = self.store.tracked(slot) else {
                continue;
            };
            let Some(&me) = self.deps.index.get(&(self.deps.store, slot)) else {
                continue;
            };
            // The parent pointed at after the commit: a linked handle, or the key in the field.
            let link = tracked.links.iter().find(|l| l.relation == relation);
            let new_parent = match link {
                Some(link) => {
                    if parents
                        .get(link.parent_slot, link.parent_generation)
                        .is_none()
                    {
                        self.error = Some(Error::UnknownEntity {
                            entity: <R::Parent as Entity>::ENTITY_NAME,
                        });
                        return;
                    }
                    // A row waiting for its own generated key can never be written (the
                    // planner drops self-edges, which are harmless for keys known in advance).
                    let key_generated = <R::Parent as Entity>::FIELDS
                        .iter()
                        .any(|f| f.key && f.generated);
                    if key_generated && parent_store == self.deps.store && link.parent_slot == slot
                    {
                        self.error = Some(Error::Cycle {
                            entities: vec![self.deps.stores[self.deps.store].describe(slot)],
                        });
                        return;
                    }
                    Some(link.parent_slot)
                }
                None => R::parent_key(&tracked.value).and_then(parent_slot),
            };
            // The parent pointed at in the database now.
            let old_parent = match tracked.lifecycle {
                Lifecycle::New => None,
                _ => R::parent_key(tracked.persisted()).and_then(|k| parents.slot_of(&k)),
            };
            let deleting = tracked.lifecycle == Lifecycle::Removed;
            if !deleting {
                if let Some(parent) = new_parent.and_then(change_of) {
                    if self.deps.changes[parent].kind == ChangeKind::Insert {
                        self.out.push(Edge {
                            before: parent,
                            after: me,
                        });
                    }
                }
            }
            let moving_away = deleting || new_parent != old_parent;
            if moving_away {
                if let Some(parent) = old_parent.and_then(change_of) {
                    if self.deps.changes[parent].kind == ChangeKind::Delete {
                        self.out.push(Edge {
                            before: me,
                            after: parent,
                        });
                    }
                }
            }
        }
    }
}

/// A store seen without its entity type, as the unit of work drives it.
pub(crate) trait ErasedStore<C>: Any {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn len(&self) -> usize;
    /// Checks the touched entities and lists what they need written.
    fn pending(&self, store: usize, out: &mut Vec<Change>) -> Result<()>;
    fn table_info(&self) -> TableInfo;
    fn preview(&self, step: &Step) -> PreviewStep;
    /// One line naming the entity in `slot`, for cycle errors.
    fn describe(&self, slot: u32) -> String;
    /// Whether the entity type has `belongs_to` relations (and so can depend on other rows).
    fn has_relations(&self) -> bool;
    /// Adds the dependencies of this store's changes on other changes (foreign keys).
    fn edges(&self, deps: &Dependencies<'_, C>, out: &mut Vec<Edge>) -> Result<()>;
    /// The parents whose keys the rows of `step` need before they can be written.
    fn link_requests(&self, step: &Step, out: &mut Vec<LinkRequest>);
    /// Files every new entity whose key is chosen in Rust under its current key, in case it
    /// was changed through `get_mut` after registration; `DuplicateKey` if another held
    /// entity has that key (then nothing is refiled).
    fn refile_keys(&mut self) -> Result<()>;
    /// The (possibly just generated) key of the entity in `slot`, type-erased.
    fn current_key_any(&self, slot: u32, generation: u32) -> Option<Box<dyn Any>>;
    /// Sends one step. Entities are not changed; generated values and linked copies are kept
    /// aside. `links` holds the parent keys asked for by `link_requests`.
    fn execute(
        &mut self,
        conn: &mut C,
        session: &mut Session,
        step: &Step,
        links: Vec<ResolvedLink>,
        report: &mut CommitReport,
    ) -> Result<()>;
    /// The commit failed: forget what was kept aside.
    fn abandon_commit(&mut self);
    /// The commit succeeded: apply generated values and settle every touched entity.
    fn finish_commit(&mut self);
    /// A scope begins: from now on, first changes of each slot are saved.
    fn begin_scope(&mut self);
    /// The innermost scope failed: put every slot it changed back as it was.
    fn rollback_scope(&mut self);
    /// The innermost scope succeeded: its saved states now belong to the scope around it.
    fn commit_scope(&mut self);
    /// How often the entity in `slot` had its local changes discarded (`refresh`), if the
    /// slot still holds the entity of `generation`.
    fn revision(&self, slot: u32, generation: u32) -> Option<u32>;
}

impl<T, C> ErasedStore<C> for Store<T, C>
where
    C: LoadConnection + 'static,
    C::Backend: Dialect,
    T: Persist<C::Backend>,
{
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn len(&self) -> usize {
        Store::len(self)
    }

    fn pending(&self, store: usize, out: &mut Vec<Change>) -> Result<()> {
        for &slot in &self.touched {
            let Some(tracked) = self.tracked(slot) else {
                continue;
            };
            let kind = match tracked.lifecycle {
                Lifecycle::New => {
                    if !T::FIELDS.iter().any(|f| f.key && f.generated) {
                        let key = tracked.value.key();
                        if tracked.key.as_ref() != Some(&key) {
                            if let Some(&other) = self.by_key.get(&key) {
                                if other != slot {
                                    return Err(Error::DuplicateKey {
                                        entity: T::ENTITY_NAME,
                                        key: key_text(&key),
                                    });
                                }
                            }
                        }
                    }
                    ChangeKind::Insert
                }
                Lifecycle::Persisted | Lifecycle::Removed => {
                    let before = tracked.persisted().key();
                    let after = tracked.value.key();
                    if before != after {
                        return Err(Error::KeyChanged {
                            entity: T::ENTITY_NAME,
                            before: key_text(&before),
                            after: key_text(&after),
                        });
                    }
                    if tracked.value.version_differs(tracked.persisted()) {
                        let version = T::version_field().unwrap_or_default();
                        return Err(Error::VersionChanged {
                            entity: T::ENTITY_NAME,
                            key: key_text(&before),
                            persisted: format!(
                                "{:?}",
                                FieldValue::<T, C::Backend>(
                                    tracked.persisted(),
                                    version,
                                    PhantomData
                                )
                            ),
                            current: format!(
                                "{:?}",
                                FieldValue::<T, C::Backend>(&tracked.value, version, PhantomData)
                            ),
                        });
                    }
                    if tracked.lifecycle == Lifecycle::Removed {
                        ChangeKind::Delete
                    } else {
                        let mut fields = tracked.changed_fields();
                        if let Some(version) = T::version_field() {
                            if !fields.is_empty() {
                                fields.insert(version);
                            }
                        }
                        ChangeKind::Update(fields)
                    }
                }
            };
            out.push(Change { store, slot, kind });
        }
        Ok(())
    }

    fn table_info(&self) -> TableInfo {
        TableInfo {
            entity: T::ENTITY_NAME,
            table: T::TABLE_NAME,
            rows_per_insert: execute::rows_per_insert::<T, C::Backend>(),
            rows_per_delete: execute::rows_per_delete::<T, C::Backend>(),
        }
    }

    fn preview(&self, step: &Step) -> PreviewStep {
        let rows = step
            .slots
            .iter()
            .filter_map(|&slot| self.tracked(slot))
            .map(|tracked| match step.operation {
                Operation::Insert | Operation::Select => {
                    let values: Vec<String> = inserted_values::<T, C::Backend>(tracked)
                        .into_iter()
                        .map(|(field, value)| format!("{} = {value}", field.column))
                        .collect();
                    format!("new: {}", values.join(", "))
                }
                Operation::Delete => format!("key {}", key_text(&tracked.value.key())),
                Operation::Update => {
                    // What the UPDATE will write: the next version, and the keys of parents
                    // inserted by this commit for `set_parent` links.
                    let mut next = tracked.value.clone();
                    next.bump_version();
                    let relations = if tracked.links.is_empty() {
                        Vec::new()
                    } else {
                        relations_of::<T>()
                    };
                    let changes: Vec<String> = step
                        .fields
                        .iter()
                        .map(|i| {
                            let old =
                                FieldValue::<T, C::Backend>(tracked.persisted(), i, PhantomData);
                            match linked_parent(tracked, &relations, i) {
                                Some(parent) => format!(
                                    "{}: {:?} -> key of new {parent}",
                                    T::FIELDS[i].column,
                                    old,
                                ),
                                None => format!(
                                    "{}: {:?} -> {:?}",
                                    T::FIELDS[i].column,
                                    old,
                                    FieldValue::<T, C::Backend>(&next, i, PhantomData)
                                ),
                            }
                        })
                        .collect();
                    format!(
                        "key {}: {}",
                        key_text(&tracked.value.key()),
                        changes.join(", ")
                    )
                }
            })
            .collect();
        PreviewStep {
            operation: step.operation,
            table: T::TABLE_NAME,
            entity: T::ENTITY_NAME,
            statements: match step.operation {
                Operation::Update => step.slots.len(),
                Operation::Insert => execute::insert_statements::<T, C::Backend>(step.slots.len()),
                _ => 1,
            },
            rows,
        }
    }

    fn describe(&self, slot: u32) -> String {
        match self.tracked(slot) {
            // A new entity may have no key yet: the values set in Rust are what its author
            // recognises it by.
            Some(t) if t.lifecycle == Lifecycle::New => {
                let fields: Vec<String> = inserted_values::<T, C::Backend>(t)
                    .into_iter()
                    .map(|(field, value)| format!("{}: {}", field.name, clip(value)))
                    .collect();
                if fields.is_empty() {
                    format!("new {} (slot {slot})", T::ENTITY_NAME)
                } else {
                    format!("new {} {{ {} }}", T::ENTITY_NAME, fields.join(", "))
                }
            }
            Some(t) => format!("{} with key {}", T::ENTITY_NAME, key_text(&t.value.key())),
            None => T::ENTITY_NAME.to_string(),
        }
    }

    fn has_relations(&self) -> bool {
        struct Any(bool);
        impl<T: Entity> RelationVisitor<T> for Any {
            fn visit<R: Relation<T>>(&mut self, _index: usize) {
                self.0 = true;
            }
        }
        let mut any = Any(false);
        T::visit_relations(&mut any);
        any.0
    }

    fn edges(&self, deps: &Dependencies<'_, C>, out: &mut Vec<Edge>) -> Result<()> {
        let mut finder = EdgeFinder {
            store: self,
            deps,
            out,
            error: None,
        };
        T::visit_relations(&mut finder);
        match finder.error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn link_requests(&self, step: &Step, out: &mut Vec<LinkRequest>) {
        let mut relations = None;
        for &slot in &step.slots {
            let Some(tracked) = self.tracked(slot) else {
                continue;
            };
            for link in &tracked.links {
                let relations = relations.get_or_insert_with(relations_of::<T>);
                if let Some(meta) = relations.get(link.relation) {
                    out.push(LinkRequest {
                        slot,
                        relation: link.relation,
                        parent: meta.parent,
                        parent_name: meta.parent_name,
                        parent_slot: link.parent_slot,
                        parent_generation: link.parent_generation,
                    });
                }
            }
        }
    }

    fn refile_keys(&mut self) -> Result<()> {
        if T::FIELDS.iter().any(|f| f.key && f.generated) {
            return Ok(()); // filed by the commit that inserts them, under the generated key
        }
        let mut moves: HashMap<u32, T::Key, FastHash> = HashMap::default();
        for &slot in &self.touched {
            let Some(tracked) = self.tracked(slot) else {
                continue;
            };
            if tracked.lifecycle != Lifecycle::New {
                continue; // a persisted key that changed is `KeyChanged`, found by `pending`
            }
            let key = tracked.value.key();
            if tracked.key.as_ref() != Some(&key) {
                moves.insert(slot, key);
            }
        }
        if moves.is_empty() {
            return Ok(());
        }
        // Checked against the map as it will be once every moved entity has left its old key,
        // so two new entities may swap keys.
        let mut taken: HashMap<&T::Key, u32, FastHash> = HashMap::default();
        for (&slot, key) in &moves {
            let held = self
                .by_key
                .get(key)
                .filter(|other| **other != slot && !moves.contains_key(other));
            if held.is_some() || taken.insert(key, slot).is_some() {
                return Err(Error::DuplicateKey {
                    entity: T::ENTITY_NAME,
                    key: key_text(key),
                });
            }
        }
        for &slot in moves.keys() {
            // A scope rolling back puts the old filing back with the saved slot.
            self.save(slot);
            let old = self.slots[slot as usize]
                .tracked
                .as_mut()
                .and_then(|t| t.key.take());
            if let Some(old) = old {
                if self.by_key.get(&old) == Some(&slot) {
                    self.by_key.remove(&old);
                }
            }
        }
        for (slot, key) in moves {
            if let Some(tracked) = self.slots[slot as usize].tracked.as_mut() {
                tracked.key = Some(key.clone());
                self.by_key.insert(key, slot);
            }
        }
        Ok(())
    }

    fn current_key_any(&self, slot: u32, generation: u32) -> Option<Box<dyn Any>> {
        self.current_key(slot, generation)
            .map(|k| Box::new(k) as Box<dyn Any>)
    }

    fn execute(
        &mut self,
        conn: &mut C,
        session: &mut Session,
        step: &Step,
        links: Vec<ResolvedLink>,
        report: &mut CommitReport,
    ) -> Result<()> {
        for link in links {
            let mut copy = match self.pending_linked.remove(&link.slot) {
                Some(copy) => copy,
                None => match self.tracked(link.slot) {
                    Some(tracked) => tracked.value.clone(),
                    None => continue,
                },
            };
            set_parent_key(&mut copy, link.relation, link.key);
            self.pending_linked.insert(link.slot, copy);
        }
        let statement_error = |source| Error::Statement {
            operation: step.operation,
            table: T::TABLE_NAME,
            source,
        };
        match step.operation {
            Operation::Insert => {
                let rows = self.entities(&step.slots);
                let has_generated = T::FIELDS.iter().any(|f| f.generated);
                let statements = if has_generated {
                    let inserted = C::Backend::insert_returning(conn, session, &rows)
                        .map_err(statement_error)?;
                    if inserted.generated.len() != rows.len() {
                        return Err(Error::GeneratedKeys {
                            entity: T::ENTITY_NAME,
                            table: T::TABLE_NAME,
                            expected: rows.len(),
                            returned: inserted.generated.len(),
                        });
                    }
                    drop(rows);
                    self.pending_generated
                        .extend(step.slots.iter().copied().zip(inserted.generated));
                    inserted.statements
                } else {
                    let sent =
                        C::Backend::insert_rows(conn, session, &rows).map_err(statement_error)?;
                    if sent.rows != rows.len() {
                        return Err(Error::GeneratedKeys {
                            entity: T::ENTITY_NAME,
                            table: T::TABLE_NAME,
                            expected: rows.len(),
                            returned: sent.rows,
                        });
                    }
                    let keys: Vec<_> = rows.iter().map(|e| e.key()).collect();
                    drop(rows);
                    self.pending_keys
                        .extend(step.slots.iter().copied().zip(keys));
                    sent.statements
                };
                report.record(
                    T::ENTITY_NAME,
                    T::TABLE_NAME,
                    Operation::Insert,
                    step.slots.len(),
                    statements,
                );
            }
            Operation::Update => {
                if T::version_field().is_some() {
                    // The row is written with the next version; memory gets it with the copy,
                    // only once the commit succeeds.
                    for &slot in &step.slots {
                        let mut copy = match self.pending_linked.remove(&slot) {
                            Some(copy) => copy,
                            None => match self.tracked(slot) {
                                Some(tracked) => tracked.value.clone(),
                                None => continue,
                            },
                        };
                        copy.bump_version();
                        self.pending_linked.insert(slot, copy);
                    }
                }
                for &slot in &step.slots {
                    let Some(tracked) = self.tracked(slot) else {
                        continue;
                    };
                    let entity = self.pending_linked.get(&slot).unwrap_or(&tracked.value);
                    let persisted = tracked.persisted();
                    let updated = UpdateRow::new(entity, persisted, step.fields)
                        .execute(conn)
                        .map_err(statement_error)?;
                    if updated != 1 {
                        return Err(Error::Conflict {
                            operation: Operation::Update,
                            entity: T::ENTITY_NAME,
                            table: T::TABLE_NAME,
                            key: key_text(&persisted.key()),
                        });
                    }
                }
                report.record(
                    T::ENTITY_NAME,
                    T::TABLE_NAME,
                    Operation::Update,
                    step.slots.len(),
                    step.slots.len(),
                );
            }
            Operation::Select => {}
            Operation::Delete => {
                let rows: Vec<&T> = step
                    .slots
                    .iter()
                    .filter_map(|s| self.tracked(*s))
                    .map(|t| t.persisted())
                    .collect();
                let deleted = DeleteRows::new(&rows)
                    .execute(conn)
                    .map_err(statement_error)?;
                if deleted != rows.len() {
                    // The batch already removed the rows it found, so the missing one cannot be
                    // told apart here; a single-row batch names its key exactly.
                    let key = rows.first().map(|e| key_text(&e.key())).unwrap_or_default();
                    return Err(Error::Conflict {
                        operation: Operation::Delete,
                        entity: T::ENTITY_NAME,
                        table: T::TABLE_NAME,
                        key: if rows.len() == 1 {
                            key
                        } else {
                            format!("among {} keys starting at {key}", rows.len())
                        },
                    });
                }
                report.record(
                    T::ENTITY_NAME,
                    T::TABLE_NAME,
                    Operation::Delete,
                    rows.len(),
                    1,
                );
            }
        }
        Ok(())
    }

    fn abandon_commit(&mut self) {
        self.pending_generated.clear();
        self.pending_linked.clear();
        self.pending_keys.clear();
    }

    fn begin_scope(&mut self) {
        self.scopes.push(ScopeLog {
            saved: HashMap::default(),
            touched: self.touched.clone(),
        });
    }

    fn rollback_scope(&mut self) {
        let Some(log) = self.scopes.pop() else {
            return;
        };
        self.pending_generated.clear();
        self.pending_linked.clear();
        self.pending_keys.clear();
        for (slot, saved) in log.saved {
            let index = slot as usize;
            if index >= self.slots.len() {
                continue;
            }
            if let Some(key) = self.slots[index]
                .tracked
                .as_ref()
                .and_then(|t| t.key.as_ref())
            {
                if self.by_key.get(key) == Some(&slot) {
                    self.by_key.remove(key);
                }
            }
            if let Some(key) = saved.tracked.as_ref().and_then(|t| t.key.clone()) {
                self.by_key.insert(key, slot);
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
        self.touched = log.touched;
    }

    fn revision(&self, slot: u32, generation: u32) -> Option<u32> {
        self.get(slot, generation).map(|t| t.revision)
    }

    fn commit_scope(&mut self) {
        let Some(log) = self.scopes.pop() else {
            return;
        };
        if let Some(outer) = self.scopes.last_mut() {
            for (slot, saved) in log.saved {
                outer.saved.entry(slot).or_insert(saved);
            }
        }
    }

    fn finish_commit(&mut self) {
        if !self.scopes.is_empty() {
            for slot in self.touched.clone() {
                self.save(slot);
            }
        }
        for (slot, linked) in std::mem::take(&mut self.pending_linked) {
            if let Some(tracked) = self.slots[slot as usize].tracked.as_mut() {
                tracked.value = linked;
            }
        }
        // Room for every generated key filed below at once, not by repeated doubling; and the
        // slab written in slot order, not the map's scattered order (cache misses on big
        // commits; see BENCHMARKS.md).
        self.by_key.reserve(self.pending_generated.len());
        let mut generated: Vec<(u32, T::Generated)> = std::mem::take(&mut self.pending_generated)
            .into_iter()
            .collect();
        generated.sort_unstable_by_key(|(slot, _)| *slot);
        for (slot, generated) in generated {
            if let Some(tracked) = self.slots[slot as usize].tracked.as_mut() {
                tracked.value.set_generated(generated);
                let key = tracked.value.key();
                tracked.key = Some(key.clone());
                self.by_key.insert(key, slot);
            }
        }
        for (slot, key) in std::mem::take(&mut self.pending_keys) {
            if let Some(tracked) = self.slots[slot as usize].tracked.as_mut() {
                if tracked.key.as_ref() != Some(&key) {
                    if let Some(old) = tracked.key.replace(key.clone()) {
                        if self.by_key.get(&old) == Some(&slot) {
                            self.by_key.remove(&old);
                        }
                    }
                    self.by_key.insert(key, slot);
                }
            }
        }
        for slot in std::mem::take(&mut self.touched) {
            self.slots[slot as usize].listed = false;
            let removed = match self.slots[slot as usize].tracked.as_mut() {
                Some(tracked) if tracked.lifecycle == Lifecycle::Removed => true,
                Some(tracked) => {
                    tracked.settle();
                    false
                }
                None => false,
            };
            if removed {
                self.release(slot);
            }
        }
    }
}
