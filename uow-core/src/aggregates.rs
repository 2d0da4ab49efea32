//! Aggregates: `#[tracked(children)]` collections, changed with plain Rust through the root.
//!
//! The tree in the root's value is what domain code reads and changes. The unit of work keeps
//! one held entity per element, a *member* (in its type's store, filed by key, marked as a
//! member), and the persisted state of the collections is the members' persisted values. Each
//! write first brings the members in line with the tree ([`sync_roots`], before planning): an
//! element whose key matches a persisted member updates it (changed columns only), any other
//! element becomes a new member linked to its parent (foreign key filled at the commit, even
//! from a generated key), and a persisted member no element matches is removed with its own
//! members, unless its element moved to another collection of the tree: then the member
//! follows it, and its foreign key is updated (`aggregates/moves.rs`). So the planner,
//! ordering, batching and save points treat members like any entity, and a failed write
//! leaves the tree untouched: only after the write succeeded are the stored columns
//! (generated keys, foreign keys, versions) copied back into the tree ([`write_back`]).
//!
//! The alignment is recomputed by every write from the tree and the persisted members, so it
//! holds nothing that could go stale: new members left by a failed write are dropped and made
//! again, members marked removed are taken back first. When any member of an aggregate is
//! written, its root's version is checked and advanced with it. `refresh` of a root replaces
//! its tree with the one just read and brings the members in line with it, discarding every
//! local change (`aggregates/refresh.rs`).

use std::any::TypeId;

use crate::entity::{ChildOf, ChildrenVisitor, Entity, Relation, RelationVisitor};
use crate::error::{Error, Result};
use crate::relations::set_link;
use crate::stores::{StoreSet, SyncedRoot};
use crate::tracking::{EntityState, Lifecycle, Link, Member, Tracked};

mod adoption;
mod copy_back;
mod matching;
mod moves;
mod refresh;
mod relation;
pub(crate) use adoption::refuse_rows_held_as_new;
use copy_back::write_back;
use matching::Matching;
use moves::{remove_released, Claim, Moves};
pub(crate) use refresh::refresh_tree;
pub(crate) use relation::{child_relation, parent_keys};

/// One entity of an aggregate being brought in line: the root, or a member.
#[derive(Clone, Copy)]
struct Node {
    store: usize,
    slot: u32,
    generation: u32,
    lifecycle: Lifecycle,
}

impl Node {
    /// The node of a member, in the state `lifecycle`.
    fn of_member(member: Member, lifecycle: Lifecycle) -> Node {
        Node {
            store: member.store as usize,
            slot: member.slot,
            generation: member.generation,
            lifecycle,
        }
    }
}

/// Brings the members of every touched root of store `index` (of type `T`) in line with its
/// tree; adds each root to `synced`. A root whose members changed gets its version checked
/// and advanced by the write.
pub(crate) fn sync_roots<T: Entity>(
    stores: &mut StoreSet,
    index: usize,
    synced: &mut Vec<SyncedRoot>,
) -> Result<()> {
    let Some(store) = stores.at::<T>(index) else {
        return Ok(());
    };
    let roots: Vec<Node> = store
        .touched()
        .filter(|(_, t)| !t.is_member())
        .filter_map(|(slot, t)| {
            Some(Node {
                store: index,
                slot,
                generation: store.generation(slot)?,
                lifecycle: t.lifecycle(),
            })
        })
        .collect();
    for node in roots {
        let mode = match node.lifecycle {
            Lifecycle::Removed => Mode::Remove,
            _ => Mode::Write,
        };
        let changed = sync_tree::<T>(stores, node, mode)?;
        let bump =
            changed && node.lifecycle == Lifecycle::Persisted && T::version_field().is_some();
        if let Some(root) = stores
            .at_mut::<T>(index)
            .and_then(|s| s.get_mut(node.slot, node.generation))
        {
            root.set_members_changed(bump);
        }
        synced.push(SyncedRoot {
            store: index,
            slot: node.slot,
            generation: node.generation,
            write_back: write_back::<T>,
        });
    }
    Ok(())
}

/// Makes the elements of the tree of the persisted entity just registered in `slot` of store
/// `index` its persisted members (`register_clean`, `attach`): the rows exist. An element
/// whose row is held already shows the held instance and becomes a member (identity map: one
/// row, one instance; `aggregates/adoption.rs`).
pub(crate) fn adopt<T: Entity>(stores: &mut StoreSet, index: usize, slot: u32, generation: u32) {
    let removed = adoption::show_held::<T>(stores, index, slot, generation);
    // What can fail here (an element type with two relations to its parent) fails the next
    // write too, which reports it.
    let _ = sync_held::<T>(
        stores,
        index,
        (slot, generation),
        Lifecycle::Persisted,
        Mode::Adopt,
    );
    if removed {
        adoption::drop_removed::<T>(stores, index, slot, generation);
    }
}

/// Drops the members of the new entity in `slot` of store `index`, with theirs: it is removed
/// before it was ever written, so its members never will be.
pub(crate) fn release_members<T: Entity>(
    stores: &mut StoreSet,
    index: usize,
    slot: u32,
    generation: u32,
) {
    let _ = sync_held::<T>(
        stores,
        index,
        (slot, generation),
        Lifecycle::New,
        Mode::Release,
    );
}

/// [`sync_node`] for the held entity in `slot` of store `index`, over its own value.
fn sync_held<T: Entity>(
    stores: &mut StoreSet,
    index: usize,
    (slot, generation): (u32, u32),
    lifecycle: Lifecycle,
    mode: Mode,
) -> Result<bool> {
    let Some(tracked) = stores.at::<T>(index).and_then(|s| s.get(slot, generation)) else {
        return Ok(false);
    };
    if mode == Mode::Release && tracked.members().is_empty() {
        return Ok(false);
    }
    let node = Node {
        store: index,
        slot,
        generation,
        lifecycle,
    };
    sync_tree::<T>(stores, node, mode)
}

/// [`sync_node`] over the tree of the held entity `node`, taken out of its store meanwhile (it
/// is read while other stores change; nothing reads it through the store then) and put back.
fn sync_tree<T: Entity>(stores: &mut StoreSet, node: Node, mode: Mode) -> Result<bool> {
    let Some(tree) = stores
        .at_mut::<T>(node.store)
        .and_then(|s| s.take_tree(node.slot, node.generation))
    else {
        return Ok(false);
    };
    let synced = if mode == Mode::Write {
        sync_moving(stores, node, &tree)
    } else {
        sync_node(stores, node, &tree, mode, None)
    };
    if let Some(store) = stores.at_mut::<T>(node.store) {
        store.put_tree(node.slot, node.generation, tree);
    }
    synced
}

/// A write's [`sync_node`] over a root's tree, its elements free to move from one collection to
/// another ([`Moves`]): a second pass when an element came before the collection it left.
fn sync_moving<T: Entity>(stores: &mut StoreSet, node: Node, tree: &T) -> Result<bool> {
    let mut moves = Moves::default();
    let mut changed = sync_node(stores, node, tree, Mode::Write, Some(&mut moves))?;
    if moves.again() {
        changed |= sync_node(stores, node, tree, Mode::Write, Some(&mut moves))?;
    }
    Ok(moves.finish(stores)? || changed)
}

/// How [`sync_node`] treats the elements of the tree.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A write: elements become new members or update persisted ones, members no element
    /// matches are removed.
    Write,
    /// Registration of a persisted root: elements become persisted members.
    Adopt,
    /// The node is being removed: every member is removed (persisted) or dropped (new); the
    /// elements are not read.
    Remove,
    /// The node is dropped before it was written: every member is dropped.
    Release,
    /// `refresh` of a root whose tree was just read again: a member an element matches takes
    /// the element's row (clean), the others are forgotten ([`Mode::Forget`]), and an element
    /// no member matches becomes a persisted one.
    Refresh,
    /// The node's members are forgotten, at every level, whatever their state: their rows are
    /// not written (`refresh` discards them with the tree they stood for).
    Forget,
}

/// Brings the members of `node` (of type `P`) in line with `tree`, its value in the root's
/// tree; returns whether any member is written.
fn sync_node<P: Entity>(
    stores: &mut StoreSet,
    node: Node,
    tree: &P,
    mode: Mode,
    moves: Option<&mut Moves>,
) -> Result<bool> {
    let Some(tracked) = stores
        .at::<P>(node.store)
        .and_then(|s| s.get(node.slot, node.generation))
    else {
        return Ok(false);
    };
    let old = tracked.members().to_vec();
    let mut visitor = SyncChildren::<P> {
        stores,
        node,
        mode,
        moves,
        old,
        members: Vec::new(),
        changed: false,
        keeps_members: false,
        error: None,
        _parent: std::marker::PhantomData,
    };
    tree.visit_children(&mut visitor);
    if let Some(error) = visitor.error {
        return Err(error);
    }
    let (members, changed) = (visitor.members, visitor.changed);
    if let Some(store) = stores.at_mut::<P>(node.store) {
        store.set_members(node.slot, node.generation, members);
    }
    Ok(changed)
}

struct SyncChildren<'a, P> {
    stores: &'a mut StoreSet,
    node: Node,
    mode: Mode,
    /// A write's moves between the root's collections (none in the other modes).
    moves: Option<&'a mut Moves>,
    /// The members before this write, every field.
    old: Vec<Member>,
    /// The members after it, in element order, field by field; removed ones after them.
    members: Vec<Member>,
    changed: bool,
    /// The member just found for an element was one already, with its own members: they
    /// stay as they are ([`Mode::Adopt`] of a row held as the root of its own tree).
    keeps_members: bool,
    error: Option<Error>,
    _parent: std::marker::PhantomData<fn() -> P>,
}

impl<P: Entity> ChildrenVisitor<P> for SyncChildren<'_, P> {
    fn visit<C: Entity + ChildOf<P>>(&mut self, field: usize, children: &[C]) {
        if self.error.is_some() {
            return;
        }
        if let Err(error) = self.sync_field(field, children) {
            self.error = Some(error);
        }
    }
}

impl<P: Entity> SyncChildren<'_, P> {
    fn sync_field<C: Entity>(&mut self, field: usize, children: &[C]) -> Result<()> {
        let store = self
            .stores
            .index_of(TypeId::of::<C>())
            .ok_or(Error::UnknownEntity {
                entity: C::ENTITY_NAME,
            })?;
        let field_no = u16::try_from(field).unwrap_or(u16::MAX);
        let old: Vec<Member> = self
            .old
            .iter()
            .filter(|m| m.field == field_no && m.store as usize == store)
            .copied()
            .collect();
        if self.mode == Mode::Forget {
            for member in old {
                self.forget::<C>(member)?;
            }
            return Ok(());
        }
        // Back to the persisted members: new ones from an earlier, failed write are dropped
        // (with theirs), removals taken back; what the tree says now is applied below. They
        // stay in the order of the elements they were made for, so an unchanged collection
        // matches position by position, with no key hashed.
        let mut persisted: Vec<(C::Key, Member)> = Vec::with_capacity(old.len());
        for member in old {
            let Some(tracked) = self.member::<C>(member) else {
                continue; // removed by a write that succeeded since
            };
            match tracked.lifecycle() {
                Lifecycle::New => {
                    let value = tracked.value().clone();
                    release_member(self.stores, member, &value);
                }
                Lifecycle::Removed | Lifecycle::Persisted => {
                    let key = tracked.persisted_value().key();
                    if tracked.lifecycle() == Lifecycle::Removed {
                        if let Some(t) = self.member_mut::<C>(member) {
                            t.unremove();
                        }
                    }
                    persisted.push((key, member));
                }
            }
        }
        let relation = child_relation::<P, C>(field)?;
        let mut matching = Matching::new(persisted);
        if matches!(self.mode, Mode::Write | Mode::Adopt | Mode::Refresh) {
            for (position, element) in children.iter().enumerate() {
                let member = match matching.take(position, &element.key()) {
                    Some(member) => {
                        match self.mode {
                            Mode::Write => self.update_member(member, element, relation)?,
                            Mode::Refresh => self.refresh_member(member, element),
                            _ => {}
                        }
                        member
                    }
                    None => match self.claim(store, field_no, element, relation)? {
                        Some(member) => member,
                        None => continue, // waits for the second pass
                    },
                };
                self.members.push(member);
                if !C::HAS_CHILDREN || std::mem::take(&mut self.keeps_members) {
                    continue;
                }
                let lifecycle = self
                    .member::<C>(member)
                    .map_or(Lifecycle::New, Tracked::lifecycle);
                let node = Node::of_member(member, lifecycle);
                let moves = self.moves.as_deref_mut();
                self.changed |= sync_node(self.stores, node, element, self.mode, moves)?;
            }
        }
        // Persisted members no element stands for: their rows are deleted, theirs first.
        for member in matching.rest() {
            if matches!(self.mode, Mode::Adopt | Mode::Release) {
                continue;
            }
            if self.mode == Mode::Refresh {
                self.forget::<C>(member)?;
                continue;
            }
            if let Some(moves) = self.moves.as_deref_mut() {
                // Removed at the end of the write unless an element elsewhere claims it.
                moves.release(self.node, member, remove_released::<P, C>);
                continue;
            }
            let Some(tracked) = self.member_mut::<C>(member) else {
                continue;
            };
            tracked.mark_removed();
            let value = tracked.value().clone();
            self.changed = true;
            self.members.push(member);
            if !C::HAS_CHILDREN {
                continue;
            }
            let node = Node::of_member(member, Lifecycle::Removed);
            sync_node(self.stores, node, &value, Mode::Remove, None)?;
        }
        Ok(())
    }

    fn member<C: Entity>(&self, member: Member) -> Option<&Tracked<C>> {
        self.stores
            .at::<C>(member.store as usize)
            .and_then(|s| s.get(member.slot, member.generation))
    }

    fn member_mut<C: Entity>(&mut self, member: Member) -> Option<&mut Tracked<C>> {
        self.stores
            .at_mut::<C>(member.store as usize)
            .and_then(|s| s.get_mut(member.slot, member.generation))
    }

    /// A persisted member takes the element's columns (when they differ) and points at its
    /// parent.
    fn update_member<C: Entity>(
        &mut self,
        member: Member,
        element: &C,
        relation: (usize, &'static [usize]),
    ) -> Result<()> {
        let Some(store) = self.stores.at_mut::<C>(member.store as usize) else {
            return Ok(());
        };
        let Some(held) = store.get(member.slot, member.generation) else {
            return Ok(());
        };
        let differs = !element.changed_fields(held.value()).is_empty()
            || element.version_differs(held.value());
        if !differs {
            // Its foreign key is the one it was loaded or written with: its parent's.
            if held.state() != EntityState::Clean {
                self.changed = true;
            }
            return Ok(());
        }
        if let Some(value) = store.mutate(member.slot, member.generation) {
            value.assign_persisted(element.clone_columns());
        }
        self.point_at_parent::<C>(member, relation, false)?;
        if self
            .member::<C>(member)
            .is_some_and(|t| t.state() != EntityState::Clean)
        {
            self.changed = true;
        }
        Ok(())
    }

    /// The member for an element no member of its own collection matched: the member released
    /// for it by another collection of the tree (moved here: its foreign key now points at
    /// this parent), none yet (the element waits for the second pass), or a new one.
    fn claim<C: Entity>(
        &mut self,
        store: usize,
        field: u16,
        element: &C,
        relation: (usize, &'static [usize]),
    ) -> Result<Option<Member>> {
        let claim = match self.moves.as_deref_mut() {
            Some(moves) => moves.claim::<C>(self.stores, store, &element.key()),
            None => Claim::New,
        };
        let released = match claim {
            Claim::New => return self.new_member(store, field, element, relation).map(Some),
            Claim::Wait => return Ok(None),
            Claim::Moved(released) => released,
        };
        let member = Member { field, ..released };
        self.update_member(member, element, relation)?;
        self.point_at_parent::<C>(member, relation, false)?;
        if self
            .member::<C>(member)
            .is_some_and(|t| t.state() != EntityState::Clean)
        {
            self.changed = true;
        }
        Ok(Some(member))
    }

    /// A new member for `element`, linked to the parent.
    fn new_member<C: Entity>(
        &mut self,
        store: usize,
        field: u16,
        element: &C,
        relation: (usize, &'static [usize]),
    ) -> Result<Member> {
        let value = element.clone_columns();
        let adopting = matches!(self.mode, Mode::Adopt | Mode::Refresh);
        let Some(children) = self.stores.at_mut::<C>(store) else {
            return Err(Error::UnknownEntity {
                entity: C::ENTITY_NAME,
            });
        };
        let (slot, generation) = if adopting {
            self.keeps_members = self.mode == Mode::Adopt
                && children
                    .find(&value.key())
                    .and_then(|(slot, generation)| children.get(slot, generation))
                    .is_some_and(Tracked::is_member);
            let fresh = (self.mode == Mode::Refresh).then(|| value.clone());
            let (slot, generation) =
                children.find_or_insert_member(Tracked::persisted(value).into_member());
            // A row held already (registered on its own) takes the row just read, as every
            // member of a refreshed tree does. Only then is it borrowed for change: that puts
            // it on the touched list, which every write walks.
            if let Some(fresh) = fresh {
                if let Some(held) = children.get_mut(slot, generation) {
                    held.refresh(fresh);
                }
            }
            (slot, generation)
        } else {
            children.insert(Tracked::new_entity(value).into_member(), true)?
        };
        let member = Member {
            field,
            store: u32::try_from(store).unwrap_or(u32::MAX),
            slot,
            generation,
        };
        if !adopting {
            self.changed = true;
            self.point_at_parent::<C>(member, relation, true)?;
        }
        Ok(member)
    }

    /// Points the member's foreign key at the parent: now where the parent's key is known, at
    /// the commit where the database generates it (a link, as `set_parent` makes). A
    /// persisted member already pointing at it is left alone.
    fn point_at_parent<C: Entity>(
        &mut self,
        member: Member,
        (relation, fields): (usize, &'static [usize]),
        is_new: bool,
    ) -> Result<()> {
        let parent_is_new = self.node.lifecycle == Lifecycle::New;
        if !is_new && !parent_is_new && self.points_at_parent::<C>(member, relation) {
            return Ok(());
        }
        let link = Link {
            relation,
            fields,
            parent_slot: self.node.slot,
            parent_generation: self.node.generation,
        };
        set_link::<C>(
            self.stores,
            member.store as usize,
            (member.slot, member.generation),
            link,
            parent_is_new,
        )
    }

    /// Whether the member's foreign key holds its parent's key.
    fn points_at_parent<C: Entity>(&self, member: Member, relation: usize) -> bool {
        struct Check<'a, C> {
            stores: &'a StoreSet,
            child: &'a C,
            relation: usize,
            parent: Node,
            holds: bool,
        }
        impl<C: Entity> RelationVisitor<C> for Check<'_, C> {
            fn visit<R: Relation<C>>(&mut self, index: usize) {
                if index != self.relation {
                    return;
                }
                let key = self
                    .stores
                    .at::<R::Parent>(self.parent.store)
                    .and_then(|s| s.current_key(self.parent.slot, self.parent.generation));
                self.holds = key.is_some() && R::parent_key(self.child) == key;
            }
        }
        let Some(tracked) = self.member::<C>(member) else {
            return true;
        };
        let mut check = Check {
            stores: self.stores,
            child: tracked.value(),
            relation,
            parent: self.node,
            holds: false,
        };
        C::visit_relations(&mut check);
        check.holds
    }
}

/// Drops a new member and its own members (never written, never to be).
fn release_member<C: Entity>(stores: &mut StoreSet, member: Member, value: &C) {
    let node = Node::of_member(member, Lifecycle::New);
    let _ = sync_node(stores, node, value, Mode::Release, None);
    if let Some(store) = stores.at_mut::<C>(member.store as usize) {
        store.release(member.slot);
    }
}
