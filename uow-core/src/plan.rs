//! The planner: a pure function from pending changes to an ordered, batched list of steps.
//!
//! Nothing here touches a database or an entity value, so ordering and batching are
//! unit-tested on plain data (`plan/tests.rs`). The execution layer runs the steps in order;
//! each step is one statement shape (an INSERT batch, a group of UPDATEs with the same column
//! list, a DELETE batch).

use std::collections::HashMap;

use crate::entity::FieldSet;
use crate::error::Operation;
use crate::fast_hash::FastHash;

/// What the planner needs to know about one entity type (one store of a unit of work), from
/// the backend the write goes to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TableInfo {
    /// Rows one INSERT step may carry (at least 1).
    pub rows_per_insert: usize,
    /// Rows one DELETE statement may carry (at least 1).
    pub rows_per_delete: usize,
    /// Rows one INSERT statement carries (an INSERT step may take several statements when
    /// the backend reads generated values back row by row).
    pub insert_rows_per_statement: usize,
    /// Rows one UPDATE statement may carry when it writes this many columns (at least 1).
    pub rows_per_update: fn(usize) -> usize,
}

/// One pending change of one entity, identified by its store and slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Change {
    /// Index of the entity type in the `tables` slice given to [`plan`].
    pub store: usize,
    /// The entity's slot inside its store.
    pub slot: u32,
    /// What has to be written.
    pub kind: ChangeKind,
}

/// What a [`Change`] or a [`Step`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    /// INSERT the entity.
    Insert,
    /// UPDATE these fields.
    Update(FieldSet),
    /// DELETE the row.
    Delete,
}

impl ChangeKind {
    /// The statement kind.
    pub fn operation(&self) -> Operation {
        match self {
            ChangeKind::Insert => Operation::Insert,
            ChangeKind::Update(_) => Operation::Update,
            ChangeKind::Delete => Operation::Delete,
        }
    }
}

/// One statement shape over some rows of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    /// The entity type (index into the `tables` slice).
    pub store: usize,
    /// INSERT, UPDATE (of these fields, for every row) or DELETE.
    pub kind: ChangeKind,
    /// The slots of the rows, in the order they were given.
    pub slots: Vec<u32>,
    /// The statements the step takes: one for an UPDATE or a DELETE, one per
    /// `insert_rows_per_statement` rows for an INSERT.
    pub statements: usize,
}

/// The ordered steps of one commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Steps in execution order.
    pub steps: Vec<Step>,
    /// The entities looked at to make it: every one touched since the last write, whether it
    /// needs writing or not (what a write costs grows with this, not with what is held).
    pub examined: usize,
}

impl Plan {
    /// Whether the plan sends nothing.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// How many statements the plan sends.
    #[cfg(test)]
    pub fn statement_count(&self) -> usize {
        self.steps.iter().map(|s| s.statements).sum()
    }
}

/// The changes of one planning pass, found by store and slot.
pub(crate) struct ChangeIndex {
    changes: Vec<Change>,
    /// (store, slot) -> index into `changes`; built only when some type has relations.
    index: HashMap<(usize, u32), usize, FastHash>,
}

impl ChangeIndex {
    pub fn new(changes: Vec<Change>, index: HashMap<(usize, u32), usize, FastHash>) -> Self {
        ChangeIndex { changes, index }
    }

    pub fn into_changes(self) -> Vec<Change> {
        self.changes
    }

    /// Where the change of `slot` in store `store` is, if it has one.
    pub fn position(&self, store: usize, slot: u32) -> Option<usize> {
        self.index.get(&(store, slot)).copied()
    }

    /// What change number `position` writes.
    pub fn kind(&self, position: usize) -> ChangeKind {
        self.changes[position].kind
    }
}

/// A dependency between two changes: `before` must be written before `after` (indexes into
/// the `changes` slice given to [`plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Edge {
    /// The change written first (a parent's INSERT, a child's DELETE...).
    pub before: usize,
    /// The change that depends on it.
    pub after: usize,
}

/// The changes that depend on each other in a circle, so no order can write them; nothing
/// is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cycle {
    /// Indexes into `changes` of every change on or behind the circle.
    pub changes: Vec<usize>,
}

/// Orders and batches `changes`, respecting `edges`.
///
/// Row-level topological order (as EF Core does): a change is written only after every change
/// it depends on. Among changes that are free to go, DELETEs go first, then UPDATEs, then
/// INSERTs; and each step takes *every* free change of one shape (same table, operation and,
/// for updates, column list), so independent rows share statements. Steps are cut to the
/// rows one statement may carry (`TableInfo`). Rows keep the order they were given in within a
/// step.
///
/// A unique value freed by a DELETE can be taken by an INSERT or an UPDATE of the same commit:
/// an INSERT or UPDATE of a table that still has DELETEs to plan waits while anything else can
/// go. When only such changes are free, just the ones some of those DELETEs depend on (through
/// other rows) go, so the rest still follow the DELETEs.
pub(crate) fn plan(
    changes: &[Change],
    edges: &[Edge],
    tables: &[TableInfo],
) -> Result<Plan, Cycle> {
    use std::collections::BTreeMap;

    const DELETE: u8 = 0;
    const UPDATE: u8 = 1;
    const INSERT: u8 = 2;

    let count = changes.len();
    let mut indegree = vec![0usize; count];
    let mut successors: Vec<Vec<usize>> = vec![Vec::new(); count];
    let mut predecessors: Vec<Vec<usize>> = vec![Vec::new(); count];
    for edge in edges {
        // A row pointing at itself is written by one statement, which the database checks as
        // a whole; a change that really needs itself first is refused before planning.
        if edge.before < count && edge.after < count && edge.before != edge.after {
            successors[edge.before].push(edge.after);
            predecessors[edge.after].push(edge.before);
            indegree[edge.after] += 1;
        }
    }

    // A step's shape; the derived order is the priority among free changes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    struct Shape {
        rank: u8,
        store: usize,
        fields: FieldSet,
    }
    let shape = |change: &Change| match change.kind {
        ChangeKind::Delete => Shape {
            rank: DELETE,
            store: usize::MAX - change.store,
            fields: FieldSet::EMPTY,
        },
        ChangeKind::Update(fields) => Shape {
            rank: UPDATE,
            store: change.store,
            fields,
        },
        ChangeKind::Insert => Shape {
            rank: INSERT,
            store: change.store,
            fields: FieldSet::EMPTY,
        },
    };

    let mut free: BTreeMap<Shape, Vec<usize>> = BTreeMap::new();
    let mut skipped = vec![false; count];
    let mut planned = vec![false; count];
    // DELETEs not planned yet, per store: INSERTs into the store wait for them.
    let mut deletes_left = vec![0usize; tables.len()];
    for (index, change) in changes.iter().enumerate() {
        let nothing_to_write = matches!(change.kind, ChangeKind::Update(f) if f.is_empty());
        if change.store >= tables.len() || nothing_to_write {
            skipped[index] = true;
        } else if change.kind == ChangeKind::Delete {
            deletes_left[change.store] += 1;
        }
        if indegree[index] == 0 {
            free.entry(shape(change)).or_default().push(index);
        }
    }

    // Off once the DELETEs INSERTs wait for can never go (they are on a cycle): waiting longer
    // would gain nothing, and the cycle is reported below.
    let mut wait_for_deletes = true;
    let mut steps = Vec::new();
    let mut done = 0;
    while !free.is_empty() {
        // A row written into a table may take a unique value that a DELETE of the same table
        // frees, so INSERTs and UPDATEs wait for the table's DELETEs while anything else can go.
        let waits = |s: &Shape| {
            wait_for_deletes
                && (s.rank == INSERT || s.rank == UPDATE)
                && deletes_left.get(s.store).is_some_and(|n| *n > 0)
        };
        let (_shape, mut group) = match free.keys().copied().find(|s| !waits(s)) {
            Some(next) => match free.remove_entry(&next) {
                Some(entry) => entry,
                None => break,
            },
            None => {
                // Only waiting INSERTs and UPDATEs are free: let go of those the DELETEs they
                // wait for depend on, through the rows still to plan.
                let waiting_stores: Vec<usize> = free.keys().map(|s| s.store).collect();
                let mut wanted = vec![false; count];
                let mut stack: Vec<usize> = (0..count)
                    .filter(|&i| {
                        !planned[i]
                            && changes[i].kind == ChangeKind::Delete
                            && waiting_stores.contains(&changes[i].store)
                    })
                    .collect();
                while let Some(i) = stack.pop() {
                    for &before in &predecessors[i] {
                        if !planned[before] && !wanted[before] {
                            wanted[before] = true;
                            stack.push(before);
                        }
                    }
                }
                let first = free
                    .iter()
                    .find(|(_, group)| group.iter().any(|i| wanted[*i]))
                    .map(|(s, _)| *s);
                let Some(first) = first else {
                    wait_for_deletes = false;
                    continue;
                };
                let Some(group) = free.remove(&first) else {
                    break;
                };
                let (go, stay): (Vec<usize>, Vec<usize>) =
                    group.into_iter().partition(|i| wanted[*i]);
                if !stay.is_empty() {
                    free.insert(first, stay);
                }
                (first, go)
            }
        };
        group.sort_unstable();
        done += group.len();
        let writes: Vec<usize> = group.iter().copied().filter(|i| !skipped[*i]).collect();
        if let Some(&first) = writes.first() {
            let store = changes[first].store;
            let table = tables[store];
            let kind = changes[first].kind;
            let chunk = match kind {
                ChangeKind::Insert => table.rows_per_insert,
                ChangeKind::Delete => table.rows_per_delete,
                ChangeKind::Update(fields) => (table.rows_per_update)(fields.len()),
            };
            if kind == ChangeKind::Delete {
                deletes_left[store] -= writes.len();
            }
            let slots: Vec<u32> = writes.iter().map(|i| changes[*i].slot).collect();
            for rows in slots.chunks(chunk.max(1)) {
                let statements = match kind {
                    ChangeKind::Insert => {
                        rows.len().div_ceil(table.insert_rows_per_statement.max(1))
                    }
                    ChangeKind::Update(_) | ChangeKind::Delete => 1,
                };
                steps.push(Step {
                    store,
                    kind,
                    slots: rows.to_vec(),
                    statements,
                });
            }
        }
        for &index in &group {
            planned[index] = true;
        }
        for index in group {
            for &next in &successors[index] {
                indegree[next] -= 1;
                if indegree[next] == 0 {
                    free.entry(shape(&changes[next])).or_default().push(next);
                }
            }
        }
    }

    if done < count {
        let changes = (0..count).filter(|i| indegree[*i] > 0).collect();
        return Err(Cycle { changes });
    }
    Ok(Plan {
        steps,
        examined: count,
    })
}

#[cfg(test)]
mod tests;
