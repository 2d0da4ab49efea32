//! `AnyStore` for `Store<T>`: the erased operations (declared in `stores.rs`) on the typed store,
//! each handed to the module that does that job (changes, relations, preview, save points).

use crate::entity::Entity;
use crate::error::Result;
use crate::plan::{Change, Edge, Step};
use crate::preview::PreviewStep;
use std::any::TypeId;

use crate::store::{key_text, Store};
use crate::stores::{AnyStore, EdgeContext, LinkRows, MemberPaths, StoreSet, SyncRoots};
use crate::tracking::Lifecycle;

impl<T: Entity> AnyStore for Store<T> {
    fn len(&self) -> usize {
        Store::len(self)
    }

    fn changes(&self, me: usize, out: &mut Vec<Change>) -> Result<()> {
        Store::changes(self, me, out)
    }

    fn edges(&self, cx: &EdgeContext<'_>, out: &mut Vec<Edge>) -> Result<()> {
        Store::edges(self, cx, out)
    }

    fn has_relations(&self) -> bool {
        !self.relations().is_empty()
    }

    fn refile_new_keys(&mut self) -> Result<()> {
        Store::refile_new_keys(self)
    }

    fn link_rows(&self) -> LinkRows {
        crate::relations::link_rows::<T>
    }

    fn sync_roots(&self) -> Option<SyncRoots> {
        (T::HAS_CHILDREN && self.has_touched())
            .then_some(crate::aggregates::sync_roots::<T> as SyncRoots)
    }

    fn describe(&self, slot: u32) -> String {
        Store::describe(self, slot)
    }

    fn table(&self) -> (TypeId, &'static str, &'static str) {
        (TypeId::of::<T::Table>(), T::TABLE_NAME, T::ENTITY_NAME)
    }

    fn row_key(&self, slot: u32) -> Option<String> {
        let tracked = self.at_slot(slot)?;
        if tracked.is_new() && T::KEY_GENERATED {
            return None;
        }
        Some(key_text(&tracked.value().key()))
    }

    fn preview(&self, step: &Step, paths: &MemberPaths) -> PreviewStep {
        Store::preview(self, step, |slot| {
            paths.get(&(step.store, slot)).map(String::as_str)
        })
    }

    fn root_paths(&self, stores: &StoreSet, out: &mut MemberPaths) {
        if !T::HAS_CHILDREN {
            return;
        }
        for (slot, tracked) in self.touched() {
            if !tracked.is_member() && !tracked.members().is_empty() {
                AnyStore::member_paths(self, slot, &self.describe(slot), stores, out);
            }
        }
    }

    fn member_paths(&self, slot: u32, prefix: &str, stores: &StoreSet, out: &mut MemberPaths) {
        let Some(tracked) = self.at_slot(slot) else {
            return;
        };
        // Elements come in order, field by field; members being removed come last.
        let mut positions = vec![0usize; T::CHILDREN.len()];
        for member in tracked.members() {
            let Some(store) = stores.dyn_at(member.store as usize) else {
                continue;
            };
            let Some(removing) = store.removing(member.slot, member.generation) else {
                continue;
            };
            let field = member.field as usize;
            let name = T::CHILDREN.get(field).copied().unwrap_or("children");
            let path = if removing {
                format!("{prefix}.{name}[removed]")
            } else {
                let position = positions.get_mut(field).map_or(0, |p| {
                    *p += 1;
                    *p - 1
                });
                format!("{prefix}.{name}[{position}]")
            };
            store.member_paths(member.slot, &path, stores, out);
            out.insert((member.store as usize, member.slot), path);
        }
    }

    fn removing(&self, slot: u32, generation: u32) -> Option<bool> {
        self.get(slot, generation)
            .map(|t| t.lifecycle() == Lifecycle::Removed)
    }

    fn end_write(&mut self, committed: bool) {
        if committed {
            self.finish_write();
        } else {
            self.abandon_write();
        }
    }

    fn begin_level(&mut self, trees_kept: bool) {
        Store::begin_level(self, trees_kept);
    }

    fn end_level(&mut self, keep: bool) {
        if keep {
            self.keep_level();
        } else {
            self.undo_level();
        }
    }

    fn revision(&self, slot: u32, generation: u32) -> Option<u32> {
        Store::revision(self, slot, generation)
    }
}
