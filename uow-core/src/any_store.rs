//! `AnyStore` for `Store<T>`: the erased operations (declared in `stores.rs`) on the typed store,
//! each handed to the module that does that job (changes, relations, preview, save points).

use crate::entity::Entity;
use crate::error::Result;
use crate::plan::{Change, Edge, Step};
use crate::preview::PreviewStep;
use crate::store::Store;
use crate::stores::{AnyStore, EdgeContext, LinkRows, SyncRoots};

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
        T::HAS_CHILDREN.then_some(crate::aggregates::sync_roots::<T> as SyncRoots)
    }

    fn describe(&self, slot: u32) -> String {
        Store::describe(self, slot)
    }

    fn preview(&self, step: &Step) -> PreviewStep {
        Store::preview(self, step)
    }

    fn end_write(&mut self, committed: bool) {
        if committed {
            self.finish_write();
        } else {
            self.abandon_write();
        }
    }

    fn begin_level(&mut self) {
        Store::begin_level(self);
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
