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

/// A dependency between two changes: `before` must be written before `after` (indexes into
/// the `changes` slice given to [`plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Edge {
    /// The change written first (a parent's INSERT, a child's DELETE...).
    pub before: usize,
    /// The change that depends on it.
    pub after: usize,
}

/// The changes that depend on each other in a circle, so no order can write them; nothing
/// is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    /// Indexes into `changes` of every change on or behind the circle.
    pub changes: Vec<usize>,
}

/// Orders and batches `changes`, respecting `edges`.
///
/// Row-level topological order (as EF Core does): a change is written only after every change
/// it depends on. Among changes that are free to go, DELETEs go first, then UPDATEs, then
/// INSERTs; and each step takes *every* free change of one shape (same table, operation and,
/// for updates, column list), so independent rows share statements. Inserts and deletes are
/// cut into statements of at most `rows_per_insert` / `rows_per_delete` rows; updates are one
/// statement per row, all of one SQL text (one prepared statement). Rows keep the order they
/// were given in within a step.
///
/// A unique value freed by a DELETE can be taken by an INSERT or an UPDATE of the same commit:
/// an INSERT or UPDATE of a table that still has DELETEs to plan waits while anything else can
/// go. When only such changes are free, just the ones some of those DELETEs depend on (through
/// other rows) go, so the rest still follow the DELETEs.
///
/// ```
/// use uow_core::plan::{plan, Change, ChangeKind, Edge, TableInfo};
/// let tables = [
///     TableInfo { entity: "Parent", table: "parents", rows_per_insert: 100, rows_per_delete: 100 },
///     TableInfo { entity: "Child", table: "children", rows_per_insert: 100, rows_per_delete: 100 },
/// ];
/// let changes = [
///     Change { store: 1, slot: 0, kind: ChangeKind::Insert }, // child of...
///     Change { store: 0, slot: 0, kind: ChangeKind::Insert }, // ...this new parent
/// ];
/// let plan = plan(&changes, &[Edge { before: 1, after: 0 }], &tables).unwrap();
/// assert_eq!(plan.steps.iter().map(|s| s.store).collect::<Vec<_>>(), [0, 1]);
/// ```
pub fn plan(changes: &[Change], edges: &[Edge], tables: &[TableInfo]) -> Result<Plan, Cycle> {
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
        let (group_shape, mut group) = match free.keys().copied().find(|s| !waits(s)) {
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
            let (operation, chunk) = match changes[first].kind {
                ChangeKind::Insert => (Operation::Insert, tables[store].rows_per_insert),
                ChangeKind::Delete => (Operation::Delete, tables[store].rows_per_delete),
                ChangeKind::Update(_) => (Operation::Update, usize::MAX),
            };
            if operation == Operation::Delete {
                deletes_left[store] -= writes.len();
            }
            let slots: Vec<u32> = writes.iter().map(|i| changes[*i].slot).collect();
            for rows in slots.chunks(chunk.max(1)) {
                steps.push(Step {
                    store,
                    operation,
                    fields: group_shape.fields,
                    slots: rows.to_vec(),
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
    Ok(Plan { steps })
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

    fn change(store: usize, slot: u32, kind: ChangeKind) -> Change {
        Change { store, slot, kind }
    }

    fn edge(before: usize, after: usize) -> Edge {
        Edge { before, after }
    }

    fn order(plan: &Plan) -> Vec<(Operation, usize, Vec<u32>)> {
        plan.steps
            .iter()
            .map(|s| (s.operation, s.store, s.slots.clone()))
            .collect()
    }

    #[test]
    fn no_changes_no_steps() {
        let plan = plan(&[], &[], &[info("a", 10)]).unwrap();
        assert!(plan.is_empty());
        assert_eq!(plan.statement_count(), 0);
    }

    #[test]
    fn without_dependencies_deletes_go_first_then_updates_then_inserts() {
        let tables = [info("a", 10), info("b", 10)];
        let changes = [
            change(1, 2, ChangeKind::Insert),
            change(0, 1, ChangeKind::Insert),
            change(1, 1, ChangeKind::Update(fields(&[1]))),
            change(0, 0, ChangeKind::Delete),
            change(1, 0, ChangeKind::Delete),
        ];
        let plan = plan(&changes, &[], &tables).unwrap();
        assert_eq!(
            order(&plan),
            [
                (Operation::Delete, 1, vec![0]),
                (Operation::Delete, 0, vec![0]),
                (Operation::Update, 1, vec![1]),
                (Operation::Insert, 0, vec![1]),
                (Operation::Insert, 1, vec![2]),
            ]
        );
    }

    #[test]
    fn parent_inserted_before_child_and_child_deleted_before_parent() {
        let tables = [info("parent", 10), info("child", 10)];
        let changes = [
            change(1, 0, ChangeKind::Insert), // 0: new child of new parent 1
            change(0, 0, ChangeKind::Insert), // 1: new parent
            change(0, 1, ChangeKind::Delete), // 2: old parent
            change(1, 1, ChangeKind::Delete), // 3: its child
        ];
        let edges = [edge(1, 0), edge(3, 2)];
        let plan = plan(&changes, &edges, &tables).unwrap();
        assert_eq!(
            order(&plan),
            [
                (Operation::Delete, 1, vec![1]),
                (Operation::Delete, 0, vec![1]),
                (Operation::Insert, 0, vec![0]),
                (Operation::Insert, 1, vec![0]),
            ]
        );
    }

    #[test]
    fn a_moved_child_goes_after_the_new_parent_and_before_the_old_parent_is_deleted() {
        let tables = [info("parent", 10), info("child", 10)];
        let changes = [
            change(0, 5, ChangeKind::Insert),               // 0: new parent
            change(1, 7, ChangeKind::Update(fields(&[2]))), // 1: child moves to it
            change(0, 3, ChangeKind::Delete),               // 2: old parent
        ];
        let edges = [edge(0, 1), edge(1, 2)];
        let plan = plan(&changes, &edges, &tables).unwrap();
        assert_eq!(
            order(&plan),
            [
                (Operation::Insert, 0, vec![5]),
                (Operation::Update, 1, vec![7]),
                (Operation::Delete, 0, vec![3]),
            ]
        );
    }

    #[test]
    fn self_references_split_one_table_into_levels() {
        let tables = [info("node", 100)];
        // root <- a <- b, and an unrelated c
        let changes = [
            change(0, 0, ChangeKind::Insert),
            change(0, 1, ChangeKind::Insert),
            change(0, 2, ChangeKind::Insert),
            change(0, 3, ChangeKind::Insert),
        ];
        let plan = plan(&changes, &[edge(0, 1), edge(1, 2)], &tables).unwrap();
        assert_eq!(
            order(&plan),
            [
                (Operation::Insert, 0, vec![0, 3]),
                (Operation::Insert, 0, vec![1]),
                (Operation::Insert, 0, vec![2]),
            ]
        );
    }

    #[test]
    fn a_cycle_names_every_change_on_it_and_plans_nothing() {
        let tables = [info("a", 10), info("b", 10)];
        let changes = [
            change(0, 0, ChangeKind::Insert),
            change(1, 0, ChangeKind::Insert),
            change(1, 1, ChangeKind::Insert),
        ];
        let cycle = plan(&changes, &[edge(0, 1), edge(1, 0)], &tables).unwrap_err();
        assert_eq!(cycle.changes, [0, 1]);
    }

    #[test]
    fn inserts_are_chunked_keeping_registration_order() {
        let changes: Vec<_> = (0..7)
            .map(|slot| change(0, slot, ChangeKind::Insert))
            .collect();
        let plan = plan(&changes, &[], &[info("a", 3)]).unwrap();
        let chunks: Vec<_> = plan.steps.iter().map(|s| s.slots.clone()).collect();
        assert_eq!(chunks, [vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
        assert_eq!(plan.statement_count(), 3);
    }

    #[test]
    fn updates_grouped_by_exact_column_set() {
        let changes = [
            change(0, 0, ChangeKind::Update(fields(&[1]))),
            change(0, 1, ChangeKind::Update(fields(&[1, 2]))),
            change(0, 2, ChangeKind::Update(fields(&[1]))),
            change(0, 3, ChangeKind::Update(FieldSet::EMPTY)),
        ];
        let plan = plan(&changes, &[], &[info("a", 3)]).unwrap();
        assert_eq!(plan.steps.len(), 2);
        assert_eq!(plan.steps[0].fields, fields(&[1]));
        assert_eq!(plan.steps[0].slots, [0, 2]);
        assert_eq!(plan.steps[1].fields, fields(&[1, 2]));
        assert_eq!(plan.steps[1].slots, [1]);
        // One statement per updated row; the empty change sends nothing.
        assert_eq!(plan.statement_count(), 3);
    }

    #[test]
    fn a_thousand_updates_of_one_column_share_one_shape() {
        let changes: Vec<_> = (0..1000)
            .map(|slot| change(0, slot, ChangeKind::Update(fields(&[3]))))
            .collect();
        let plan = plan(&changes, &[], &[info("a", 3)]).unwrap();
        assert_eq!(plan.steps.len(), 1);
        assert_eq!(plan.statement_count(), 1000);
    }

    #[test]
    fn deletes_are_chunked() {
        let changes: Vec<_> = (0..7)
            .map(|slot| change(0, slot, ChangeKind::Delete))
            .collect();
        let plan = plan(&changes, &[], &[info("a", 3)]).unwrap();
        assert_eq!(
            plan.steps.iter().map(|s| s.slots.len()).collect::<Vec<_>>(),
            [3, 3, 1]
        );
    }

    #[test]
    fn zero_batch_size_is_treated_as_one() {
        let changes: Vec<_> = (0..2)
            .map(|slot| change(0, slot, ChangeKind::Insert))
            .collect();
        let plan = plan(&changes, &[], &[info("a", 0)]).unwrap();
        assert_eq!(plan.steps.len(), 2);
    }

    #[test]
    fn an_empty_update_still_orders_what_depends_on_it() {
        let tables = [info("a", 10)];
        let changes = [
            change(0, 0, ChangeKind::Update(FieldSet::EMPTY)),
            change(0, 1, ChangeKind::Delete),
        ];
        let plan = plan(&changes, &[edge(0, 1)], &tables).unwrap();
        assert_eq!(order(&plan), [(Operation::Delete, 0, vec![1])]);
    }

    #[test]
    fn an_insert_waits_for_a_delete_of_its_table_that_other_rows_hold_up() {
        // Old parent P (unique name "x") with child C; new parents N1 ("x") and N2; C moves to
        // N2 and P is removed. N1 may only go once P is gone, though it is free from the start.
        let tables = [info("parent", 10), info("child", 10)];
        let changes = [
            change(0, 0, ChangeKind::Delete),               // 0: P
            change(1, 0, ChangeKind::Update(fields(&[1]))), // 1: C moves to N2
            change(0, 1, ChangeKind::Insert),               // 2: N1
            change(0, 2, ChangeKind::Insert),               // 3: N2
        ];
        let edges = [edge(3, 1), edge(1, 0)];
        let plan = plan(&changes, &edges, &tables).unwrap();
        assert_eq!(
            order(&plan),
            [
                (Operation::Insert, 0, vec![2]),
                (Operation::Update, 1, vec![0]),
                (Operation::Delete, 0, vec![0]),
                (Operation::Insert, 0, vec![1]),
            ]
        );
    }

    #[test]
    fn a_waiting_insert_lets_every_other_free_change_go_first() {
        let tables = [info("parent", 10), info("child", 10), info("other", 10)];
        let changes = [
            change(0, 0, ChangeKind::Delete),               // 0: P, held up by C
            change(1, 0, ChangeKind::Update(fields(&[1]))), // 1: C moves to N
            change(0, 1, ChangeKind::Insert),               // 2: N
            change(2, 0, ChangeKind::Insert),               // 3: unrelated, not waiting
            change(1, 1, ChangeKind::Insert),               // 4: new child of N
        ];
        let edges = [edge(2, 1), edge(1, 0), edge(2, 4)];
        let plan = plan(&changes, &edges, &tables).unwrap();
        assert_eq!(
            order(&plan),
            [
                (Operation::Insert, 2, vec![0]),
                (Operation::Insert, 0, vec![1]),
                (Operation::Update, 1, vec![0]),
                (Operation::Delete, 0, vec![0]),
                (Operation::Insert, 1, vec![1]),
            ]
        );
    }

    #[test]
    fn waiting_inserts_of_one_table_still_share_a_statement_after_the_delete() {
        // One self-referencing table: C moves from P to the new N, P is removed, M1 and M2
        // are new and unrelated. Only N goes before the delete; M1 and M2 go together after.
        let tables = [info("node", 10)];
        let changes = [
            change(0, 0, ChangeKind::Delete),               // 0: P
            change(0, 1, ChangeKind::Update(fields(&[1]))), // 1: C
            change(0, 2, ChangeKind::Insert),               // 2: M1
            change(0, 3, ChangeKind::Insert),               // 3: N
            change(0, 4, ChangeKind::Insert),               // 4: M2
        ];
        let edges = [edge(3, 1), edge(1, 0)];
        let plan = plan(&changes, &edges, &tables).unwrap();
        assert_eq!(
            order(&plan),
            [
                (Operation::Insert, 0, vec![3]),
                (Operation::Update, 0, vec![1]),
                (Operation::Delete, 0, vec![0]),
                (Operation::Insert, 0, vec![2, 4]),
            ]
        );
    }

    #[test]
    fn inserts_waiting_for_a_delete_on_a_cycle_still_end_in_the_cycle_error() {
        let tables = [info("parent", 10), info("child", 10)];
        let changes = [
            change(0, 0, ChangeKind::Delete), // 0: held up by the cycle
            change(1, 0, ChangeKind::Update(fields(&[1]))), // 1
            change(1, 1, ChangeKind::Update(fields(&[1]))), // 2
            change(0, 1, ChangeKind::Insert), // 3: waits for 0
        ];
        let edges = [edge(1, 2), edge(2, 1), edge(2, 0)];
        let cycle = plan(&changes, &edges, &tables).unwrap_err();
        assert_eq!(cycle.changes, [0, 1, 2]);
    }

    #[test]
    fn free_deletes_go_before_inserts_of_their_table_in_one_step_each() {
        let tables = [info("a", 10)];
        let changes = [
            change(0, 0, ChangeKind::Insert),
            change(0, 1, ChangeKind::Insert),
            change(0, 2, ChangeKind::Delete),
            change(0, 3, ChangeKind::Delete),
        ];
        let plan = plan(&changes, &[], &tables).unwrap();
        assert_eq!(
            order(&plan),
            [
                (Operation::Delete, 0, vec![2, 3]),
                (Operation::Insert, 0, vec![0, 1]),
            ]
        );
    }

    #[test]
    fn an_update_waits_for_a_delete_of_its_table_that_other_rows_hold_up() {
        // Team X (unique name "x") is deleted once its player moved to team Y, which is
        // renamed "x": the rename must wait for the delete, which waits for the move.
        let tables = [info("teams", 10), info("players", 10)];
        let changes = [
            change(0, 0, ChangeKind::Delete),               // 0: X
            change(0, 1, ChangeKind::Update(fields(&[1]))), // 1: Y renamed
            change(1, 0, ChangeKind::Update(fields(&[1]))), // 2: the player moves to Y
        ];
        let edges = [edge(2, 0)];
        let plan = plan(&changes, &edges, &tables).unwrap();
        assert_eq!(
            order(&plan),
            [
                (Operation::Update, 1, vec![0]),
                (Operation::Delete, 0, vec![0]),
                (Operation::Update, 0, vec![1]),
            ]
        );
    }

    #[test]
    fn an_update_the_delete_depends_on_goes_before_it_in_a_self_referencing_table() {
        // One table: C moves away from P, P is deleted, R is renamed (waits for the delete).
        let tables = [info("node", 10)];
        let changes = [
            change(0, 0, ChangeKind::Delete),               // 0: P
            change(0, 1, ChangeKind::Update(fields(&[1]))), // 1: C moves away
            change(0, 2, ChangeKind::Update(fields(&[2]))), // 2: R renamed
        ];
        let edges = [edge(1, 0)];
        let plan = plan(&changes, &edges, &tables).unwrap();
        assert_eq!(
            order(&plan),
            [
                (Operation::Update, 0, vec![1]),
                (Operation::Delete, 0, vec![0]),
                (Operation::Update, 0, vec![2]),
            ]
        );
    }
}
