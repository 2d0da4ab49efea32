//! A store seen without its entity type: what the unit of work does with every store at once
//! (plan, settle, save points), as a few coarse operations. Nothing here sends a statement.

use std::any::Any;

use crate::entity::Entity;
use crate::error::Result;
use crate::plan::{Change, Edge, Step};
use crate::preview::PreviewStep;
use crate::relations::EdgeContext;
use crate::store::Store;
use crate::stores::StoreSet;

/// Links the rows of a step to their new parents' keys (`relations::link_rows` for the
/// store's type): a function of the whole set, since it reads parents and writes children.
pub(crate) type LinkRows = fn(&mut StoreSet, usize, &Step) -> Result<()>;

/// A store of some entity type. `Send`: a unit of work moves between threads with its
/// entities.
pub(crate) trait AnyStore: Any + Send {
    /// Entities held.
    fn len(&self) -> usize;
    /// Lists what the touched entities need written (store `me`), checked before any I/O.
    fn changes(&self, me: usize, out: &mut Vec<Change>) -> Result<()>;
    /// Adds the foreign-key dependencies of this store's changes (see `Store::edges`).
    fn edges(&self, cx: &EdgeContext<'_>, out: &mut Vec<Edge>) -> Result<()>;
    /// Whether the type has `belongs_to` relations (can depend on other rows at all).
    fn has_relations(&self) -> bool;
    /// Files new entities whose key was changed in Rust under their current key.
    fn refile_new_keys(&mut self) -> Result<()>;
    /// The function linking a step's rows to their parents' keys.
    fn link_rows(&self) -> LinkRows;
    /// One line naming the entity in `slot`, for cycle errors.
    fn describe(&self, slot: u32) -> String;
    /// The rows of `step`, printed for [`PlanPreview`](crate::PlanPreview).
    fn preview(&self, step: &Step) -> PreviewStep;
    /// The write under way committed (`true`: apply what it produced and settle) or failed.
    fn end_write(&mut self, committed: bool);
    /// A save point begins.
    fn begin_level(&mut self);
    /// The innermost save point ends: kept, or undone.
    fn end_level(&mut self, keep: bool);
    /// The revision of the entity in `slot` (see `Tracked::revision`), if it is still held.
    fn revision(&self, slot: u32, generation: u32) -> Option<u32>;
}

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
