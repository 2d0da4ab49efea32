//! The plan layer: a pure function from pending changes to an ordered, batched list of steps.
//!
//! Nothing here touches a database or an entity value, so ordering and batching are
//! unit-tested on plain data. The executor runs the steps in order; each step is one statement
//! shape (an INSERT batch, a group of UPDATEs with the same column list, a DELETE batch).

use std::fmt;

use crate::entity::FieldSet;
use crate::error::Operation;

/// What the planner needs to know about one entity type (one store of a unit of work).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableInfo {
    /// The entity type's name.
    pub entity: &'static str,
    /// Its table's name.
    pub table: &'static str,
    /// Rows one INSERT statement may carry (at least 1).
    pub rows_per_insert: usize,
    /// Rows one DELETE statement may carry (at least 1).
    pub rows_per_delete: usize,
}

/// One pending change of one entity, identified by its store and slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// Index of the entity type in the `tables` slice given to [`plan`].
    pub store: usize,
    /// The entity's slot inside its store.
    pub slot: u32,
    /// What has to be written.
    pub kind: ChangeKind,
}

/// What a [`Change`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// INSERT the entity.
    Insert,
    /// UPDATE these fields.
    Update(FieldSet),
    /// DELETE the row.
    Delete,
}

/// One statement shape over some rows of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The entity type (index into the `tables` slice).
    pub store: usize,
    /// INSERT, UPDATE or DELETE.
    pub operation: Operation,
    /// For updates, the fields every row of this step writes; empty otherwise.
    pub fields: FieldSet,
    /// The slots of the rows; an INSERT or DELETE step is one statement, an UPDATE step is one
    /// statement per row, all of the same shape.
    pub slots: Vec<u32>,
}

/// The ordered steps of one commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Steps in execution order.
    pub steps: Vec<Step>,
}

impl Plan {
    /// Whether the plan sends nothing.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// How many statements the plan sends.
    pub fn statement_count(&self) -> usize {
        self.steps
            .iter()
            .map(|s| match s.operation {
                Operation::Update => s.slots.len(),
                _ => 1,
            })
            .sum()
    }
}

/// Orders and batches `changes`.
///
/// Order: inserts by entity type in registration order, then updates, then deletes in reverse
/// type order, so rows a later statement may refer to exist by then and rows are gone only
/// after nothing points at them any more. Within a type, rows keep the order they were
/// registered in. Inserts and deletes are cut into statements of at most `rows_per_insert` /
/// `rows_per_delete` rows; updates are grouped by their exact column list so that every
/// statement of a group has the same SQL and reuses one prepared statement.
///
/// ```
/// use uow_core::plan::{plan, Change, ChangeKind, TableInfo};
/// let tables = [TableInfo { entity: "Note", table: "notes", rows_per_insert: 2, rows_per_delete: 10 }];
/// let changes: Vec<_> = (0..5).map(|slot| Change { store: 0, slot, kind: ChangeKind::Insert }).collect();
/// let plan = plan(&changes, &tables);
/// assert_eq!(plan.steps.iter().map(|s| s.slots.len()).collect::<Vec<_>>(), [2, 2, 1]);
/// ```
pub fn plan(changes: &[Change], tables: &[TableInfo]) -> Plan {
    let mut inserts: Vec<Vec<u32>> = vec![Vec::new(); tables.len()];
    let mut deletes: Vec<Vec<u32>> = vec![Vec::new(); tables.len()];
    // Per store: update groups in order of first appearance.
    let mut updates: Vec<Vec<(FieldSet, Vec<u32>)>> = vec![Vec::new(); tables.len()];

    for change in changes {
        let Some(_) = tables.get(change.store) else {
            continue;
        };
        match change.kind {
            ChangeKind::Insert => inserts[change.store].push(change.slot),
            ChangeKind::Delete => deletes[change.store].push(change.slot),
            ChangeKind::Update(fields) if fields.is_empty() => {}
            ChangeKind::Update(fields) => {
                let groups = &mut updates[change.store];
                match groups.iter_mut().find(|(f, _)| *f == fields) {
                    Some((_, slots)) => slots.push(change.slot),
                    None => groups.push((fields, vec![change.slot])),
                }
            }
        }
    }

    let mut steps = Vec::new();
    for (store, slots) in inserts.into_iter().enumerate() {
        for chunk in slots.chunks(tables[store].rows_per_insert.max(1)) {
            steps.push(Step {
                store,
                operation: Operation::Insert,
                fields: FieldSet::EMPTY,
                slots: chunk.to_vec(),
            });
        }
    }
    for (store, groups) in updates.into_iter().enumerate() {
        for (fields, slots) in groups {
            steps.push(Step {
                store,
                operation: Operation::Update,
                fields,
                slots,
            });
        }
    }
    for (store, slots) in deletes.into_iter().enumerate().rev() {
        for chunk in slots.chunks(tables[store].rows_per_delete.max(1)) {
            steps.push(Step {
                store,
                operation: Operation::Delete,
                fields: FieldSet::EMPTY,
                slots: chunk.to_vec(),
            });
        }
    }
    Plan { steps }
}

/// A plan with names, ready to print: see [`UnitOfWork::plan`](crate::UnitOfWork::plan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanPreview {
    pub(crate) lines: Vec<PreviewStep>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PreviewStep {
    pub operation: Operation,
    pub table: &'static str,
    pub entity: &'static str,
    /// One line per row: the key, and for updates `column: old -> new`.
    pub rows: Vec<String>,
    pub statements: usize,
}

impl PlanPreview {
    /// How many statements the commit would send.
    pub fn statement_count(&self) -> usize {
        self.lines.iter().map(|s| s.statements).sum()
    }

    /// Whether the commit would send nothing.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

impl fmt::Display for PlanPreview {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lines.is_empty() {
            return writeln!(f, "nothing to commit");
        }
        for step in &self.lines {
            writeln!(
                f,
                "{} {} ({}): {} row(s) in {} statement(s)",
                step.operation,
                step.table,
                step.entity,
                step.rows.len(),
                step.statements
            )?;
            for row in &step.rows {
                writeln!(f, "  {row}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(table: &'static str, rows_per_insert: usize) -> TableInfo {
        TableInfo {
            entity: table,
            table,
            rows_per_insert,
            rows_per_delete: 3,
        }
    }

    fn fields(indexes: &[usize]) -> FieldSet {
        let mut set = FieldSet::EMPTY;
        for i in indexes {
            set.insert(*i);
        }
        set
    }

    #[test]
    fn no_changes_no_steps() {
        let plan = plan(&[], &[info("a", 10)]);
        assert!(plan.is_empty());
        assert_eq!(plan.statement_count(), 0);
    }

    #[test]
    fn inserts_then_updates_then_deletes_in_reverse_type_order() {
        let tables = [info("a", 10), info("b", 10)];
        let changes = [
            Change {
                store: 1,
                slot: 0,
                kind: ChangeKind::Delete,
            },
            Change {
                store: 0,
                slot: 0,
                kind: ChangeKind::Delete,
            },
            Change {
                store: 1,
                slot: 1,
                kind: ChangeKind::Update(fields(&[1])),
            },
            Change {
                store: 1,
                slot: 2,
                kind: ChangeKind::Insert,
            },
            Change {
                store: 0,
                slot: 1,
                kind: ChangeKind::Insert,
            },
        ];
        let plan = plan(&changes, &tables);
        let order: Vec<_> = plan.steps.iter().map(|s| (s.operation, s.store)).collect();
        assert_eq!(
            order,
            [
                (Operation::Insert, 0),
                (Operation::Insert, 1),
                (Operation::Update, 1),
                (Operation::Delete, 1),
                (Operation::Delete, 0),
            ]
        );
    }

    #[test]
    fn inserts_are_chunked_keeping_registration_order() {
        let changes: Vec<_> = (0..7)
            .map(|slot| Change {
                store: 0,
                slot,
                kind: ChangeKind::Insert,
            })
            .collect();
        let plan = plan(&changes, &[info("a", 3)]);
        let chunks: Vec<_> = plan.steps.iter().map(|s| s.slots.clone()).collect();
        assert_eq!(chunks, [vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
        assert_eq!(plan.statement_count(), 3);
    }

    #[test]
    fn updates_grouped_by_exact_column_set() {
        let changes = [
            Change {
                store: 0,
                slot: 0,
                kind: ChangeKind::Update(fields(&[1])),
            },
            Change {
                store: 0,
                slot: 1,
                kind: ChangeKind::Update(fields(&[1, 2])),
            },
            Change {
                store: 0,
                slot: 2,
                kind: ChangeKind::Update(fields(&[1])),
            },
            Change {
                store: 0,
                slot: 3,
                kind: ChangeKind::Update(FieldSet::EMPTY),
            },
        ];
        let plan = plan(&changes, &[info("a", 3)]);
        assert_eq!(plan.steps.len(), 2);
        assert_eq!(plan.steps[0].fields, fields(&[1]));
        assert_eq!(plan.steps[0].slots, [0, 2]);
        assert_eq!(plan.steps[1].fields, fields(&[1, 2]));
        assert_eq!(plan.steps[1].slots, [1]);
        // One statement per updated row; the empty change sends nothing.
        assert_eq!(plan.statement_count(), 3);
    }

    #[test]
    fn deletes_are_chunked() {
        let changes: Vec<_> = (0..7)
            .map(|slot| Change {
                store: 0,
                slot,
                kind: ChangeKind::Delete,
            })
            .collect();
        let plan = plan(&changes, &[info("a", 3)]);
        assert_eq!(
            plan.steps.iter().map(|s| s.slots.len()).collect::<Vec<_>>(),
            [3, 3, 1]
        );
    }

    #[test]
    fn zero_batch_size_is_treated_as_one() {
        let changes: Vec<_> = (0..2)
            .map(|slot| Change {
                store: 0,
                slot,
                kind: ChangeKind::Insert,
            })
            .collect();
        let plan = plan(&changes, &[info("a", 0)]);
        assert_eq!(plan.steps.len(), 2);
    }
}
