//! From every store's pending changes to one plan: the changes, the foreign-key edges between
//! them, and the planner. Pure: reads the stores, sends nothing.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::fast_hash::FastHash;
use crate::plan::{self, Change, ChangeKind, Edge, Plan, TableInfo};
use crate::preview::PlanPreview;
use crate::relations::EdgeContext;
use crate::stores::StoreSet;

/// The changes of one planning pass, found by store and slot.
pub(crate) struct ChangeIndex {
    changes: Vec<Change>,
    /// (store, slot) -> index into `changes`; built only when some type has relations.
    index: HashMap<(usize, u32), usize, FastHash>,
}

impl ChangeIndex {
    /// Where the change of `slot` in store `store` is, if it has one.
    pub fn position(&self, store: usize, slot: u32) -> Option<usize> {
        self.index.get(&(store, slot)).copied()
    }

    /// What change number `position` writes.
    pub fn kind(&self, position: usize) -> ChangeKind {
        self.changes[position].kind
    }
}

/// Plans every pending change of `stores`, cut to the backend's batch sizes (`tables`, one per
/// store). Errors that make a write impossible (`DuplicateKey`, `KeyChanged`,
/// `VersionChanged`, `UnknownEntity`, `Cycle` naming the entities) come before any I/O.
pub(crate) fn plan(stores: &StoreSet, tables: &[TableInfo]) -> Result<Plan> {
    let mut changes = Vec::new();
    for (index, store) in stores.iter().enumerate() {
        store.changes(index, &mut changes)?;
    }
    let mut edges: Vec<Edge> = Vec::new();
    // Only entity types with relations can depend on other rows: without them there is no
    // edge to find, and no index of every change to build.
    let related = stores.iter().any(|s| s.has_relations());
    let changes = if !changes.is_empty() && related {
        let index = changes
            .iter()
            .enumerate()
            .map(|(i, c)| ((c.store, c.slot), i))
            .collect();
        let indexed = ChangeIndex { changes, index };
        for (me, store) in stores.iter().enumerate() {
            if store.has_relations() {
                let cx = EdgeContext {
                    me,
                    changes: &indexed,
                    stores,
                };
                store.edges(&cx, &mut edges)?;
            }
        }
        indexed.changes
    } else {
        changes
    };
    plan::plan(&changes, &edges, tables).map_err(|cycle| Error::Cycle {
        entities: cycle
            .changes
            .iter()
            .map(|&i| {
                let change = changes[i];
                stores
                    .dyn_at(change.store)
                    .map_or_else(String::new, |s| s.describe(change.slot))
            })
            .collect(),
    })
}

/// The plan, printed.
pub(crate) fn preview(stores: &StoreSet, tables: &[TableInfo]) -> Result<PlanPreview> {
    let plan = plan(stores, tables)?;
    Ok(PlanPreview {
        lines: plan
            .steps
            .iter()
            .filter_map(|step| stores.dyn_at(step.store).map(|s| s.preview(step)))
            .collect(),
    })
}
