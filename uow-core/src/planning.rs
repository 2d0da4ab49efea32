//! From every store's pending changes to one plan: the changes, the foreign-key edges between
//! them, and the planner. Pure: reads the stores, sends nothing.

use std::any::TypeId;
use std::collections::hash_map::{Entry, HashMap};

use crate::error::{Error, Result};
use crate::plan::{self, Change, ChangeIndex, Edge, Plan, TableInfo};
use crate::preview::PlanPreview;
use crate::stores::{EdgeContext, MemberPaths, StoreSet};

/// Plans every pending change of `stores`, cut to the backend's batch sizes (`tables`, one per
/// store). Errors that make a write impossible (`DuplicateKey`, `KeyChanged`,
/// `VersionChanged`, `UnknownEntity`, `Cycle` naming the entities) come before any I/O.
pub(crate) fn plan(stores: &StoreSet, tables: &[TableInfo]) -> Result<Plan> {
    let mut changes = Vec::new();
    let mut writing = Vec::new();
    for (index, store) in stores.iter().enumerate() {
        let before = changes.len();
        store.changes(index, &mut changes)?;
        if changes.len() > before {
            writing.push(index);
        }
    }
    check_one_type_per_row(stores, &writing, &changes)?;
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
        let indexed = ChangeIndex::new(changes, index);
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
        indexed.into_changes()
    } else {
        changes
    };
    plan::plan(&changes, &edges, tables).map_err(|cycle| {
        let paths = member_paths(stores);
        Error::Cycle {
            entities: cycle
                .changes
                .iter()
                .map(|&i| {
                    let change = changes[i];
                    let name = stores
                        .dyn_at(change.store)
                        .map_or_else(String::new, |s| s.describe(change.slot));
                    match paths.get(&(change.store, change.slot)) {
                        Some(path) => format!("{name} at {path}"),
                        None => name,
                    }
                })
                .collect(),
        }
    })
}

/// Refuses a commit in which two entity types stored in one table (`writing` holds the stores
/// with changes) change the same row: whichever is written second would silently overwrite the
/// other. Only types that share a table are compared, so the usual commit pays one pass over
/// the writing stores.
fn check_one_type_per_row(stores: &StoreSet, writing: &[usize], changes: &[Change]) -> Result<()> {
    let tables: Vec<_> = writing
        .iter()
        .filter_map(|&i| Some((i, stores.dyn_at(i)?.table())))
        .collect();
    let shared: Vec<usize> = tables
        .iter()
        .filter(|(i, (table, ..))| {
            tables
                .iter()
                .any(|(j, (other, ..))| i != j && table == other)
        })
        .map(|(i, _)| *i)
        .collect();
    if shared.is_empty() {
        return Ok(());
    }
    let mut rows: HashMap<(TypeId, String), usize> = HashMap::new();
    for change in changes.iter().filter(|c| shared.contains(&c.store)) {
        let Some(store) = stores.dyn_at(change.store) else {
            continue;
        };
        let Some(key) = store.row_key(change.slot) else {
            continue;
        };
        let (table, table_name, entity) = store.table();
        match rows.entry((table, key)) {
            Entry::Occupied(first) if *first.get() != change.store => {
                let first_entity = stores.dyn_at(*first.get()).map_or("", |s| s.table().2);
                return Err(Error::TwoTypesOneRow {
                    table: table_name,
                    key: first.key().1.clone(),
                    first: first_entity,
                    second: entity,
                });
            }
            Entry::Occupied(_) => {}
            Entry::Vacant(slot) => {
                slot.insert(change.store);
            }
        }
    }
    Ok(())
}

/// Where every member of a touched aggregate sits in its root's tree.
fn member_paths(stores: &StoreSet) -> MemberPaths {
    let mut paths = MemberPaths::default();
    for store in stores.iter() {
        store.root_paths(stores, &mut paths);
    }
    paths
}

/// The plan, printed.
pub(crate) fn preview(stores: &StoreSet, tables: &[TableInfo]) -> Result<PlanPreview> {
    let plan = plan(stores, tables)?;
    let paths = member_paths(stores);
    Ok(PlanPreview {
        examined: plan.examined,
        lines: plan
            .steps
            .iter()
            .filter_map(|step| stores.dyn_at(step.store).map(|s| s.preview(step, &paths)))
            .collect(),
    })
}
