//! The planner on plain data: ordering, batching, waiting for DELETEs, cycles.

use super::*;

fn info(table: &'static str, rows_per_insert: usize) -> TableInfo {
    let _ = table;
    fn three(_columns: usize) -> usize {
        3
    }
    TableInfo {
        rows_per_insert,
        rows_per_delete: 3,
        insert_rows_per_statement: rows_per_insert,
        rows_per_update: three,
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
        .map(|s| (s.kind.operation(), s.store, s.slots.clone()))
        .collect()
}

#[test]
fn a_new_parent_goes_before_its_new_child() {
    let tables = [info("parents", 100), info("children", 100)];
    let changes = [
        change(1, 0, ChangeKind::Insert), // child of...
        change(0, 0, ChangeKind::Insert), // ...this new parent
    ];
    let plan = plan(&changes, &[edge(1, 0)], &tables).unwrap();
    assert_eq!(
        plan.steps.iter().map(|s| s.store).collect::<Vec<_>>(),
        [0, 1]
    );
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
    assert_eq!(plan.steps[0].kind, ChangeKind::Update(fields(&[1])));
    assert_eq!(plan.steps[0].slots, [0, 2]);
    assert_eq!(plan.steps[1].kind, ChangeKind::Update(fields(&[1, 2])));
    assert_eq!(plan.steps[1].slots, [1]);
    // One statement per shape; the empty change sends nothing.
    assert_eq!(plan.statement_count(), 2);
}

#[test]
fn updates_of_one_column_set_are_cut_into_batches_of_the_rows_a_statement_carries() {
    let changes: Vec<_> = (0..7)
        .map(|slot| change(0, slot, ChangeKind::Update(fields(&[3]))))
        .collect();
    let plan = plan(&changes, &[], &[info("a", 3)]).unwrap();
    let batches: Vec<Vec<u32>> = plan.steps.iter().map(|s| s.slots.clone()).collect();
    assert_eq!(batches, [vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
    assert_eq!(plan.statement_count(), 3);
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
