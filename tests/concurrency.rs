//! Optimistic concurrency (README promise 7): `#[tracked(version)]` fields make UPDATE and
//! DELETE check and advance the version; a mismatch is a `Conflict` that rolls back the whole
//! commit; `uow::retry` reruns transient failures; under real contention no update is lost.

mod common;

use common::*;
use diesel::prelude::*;
use uow::prelude::*;

fn ledger_rows<C>(conn: &mut C) -> Vec<LedgerAccount>
where
    C: diesel::connection::LoadConnection + 'static,
    C::Backend: diesel::backend::Backend,
    for<'a> diesel::dsl::Order<
        diesel::dsl::Select<ledger::table, diesel::dsl::AsSelect<LedgerAccount, C::Backend>>,
        ledger::id,
    >: diesel::query_dsl::LoadQuery<'a, C, LedgerAccount>,
{
    match ledger::table
        .select(LedgerAccount::as_select())
        .order(ledger::id)
        .load(conn)
    {
        Ok(rows) => rows,
        Err(e) => panic!("{e}"),
    }
}

diesel::table! {
    markers (id) {
        id -> Integer,
        version -> Integer,
    }
}

/// A row holding only its key and its version (a root whose data lives in other rows).
#[derive(Tracked, Queryable, Selectable, Clone, Debug, PartialEq)]
#[tracked(table = markers)]
#[diesel(table_name = markers)]
struct Marker {
    id: i32,
    #[tracked(version)]
    version: i32,
}

fn marker_versions<C>(conn: &mut C) -> Vec<i32>
where
    C: diesel::connection::LoadConnection + 'static,
    C::Backend: diesel::backend::Backend,
    for<'a> diesel::dsl::Order<diesel::dsl::Select<markers::table, markers::version>, markers::id>:
        diesel::query_dsl::LoadQuery<'a, C, i32>,
{
    match markers::table
        .select(markers::version)
        .order(markers::id)
        .load(conn)
    {
        Ok(rows) => rows,
        Err(e) => panic!("{e}"),
    }
}

backend_tests! {
    fn versions_are_checked_and_advanced_only_when_the_commit_succeeds(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(ledger("ann", 10))?;
        uow.commit(&mut db.conn)?;
        assert_eq!(uow.get(&ann)?.version, 1, "a new row starts at its initial value");

        let log = db.record();
        uow.get_mut(&ann)?.balance = 11;
        assert_eq!(uow.changed_columns(&ann)?, ["balance"]);
        let preview = uow.plan()?.to_string();
        assert!(preview.contains("balance: 10 -> 11, version: 1 -> 2"), "{preview}");
        uow.commit(&mut db.conn)?;
        let update = log.writes().pop().ok_or("no UPDATE")?.to_lowercase();
        // `UPDATE t SET .. FROM batch WHERE ..` (PostgreSQL, SQLite) or `UPDATE t SET ..
        // WHERE ..` (one row): the SET list, and what picks the row.
        let (head, set) = update.split_once(" set ").ok_or("an UPDATE with a SET")?;
        let (set, tail) = set
            .split_once(" from ")
            .or_else(|| set.split_once(" where "))
            .unwrap_or((set, ""));
        let filter = format!("{head} {tail}");
        assert!(set.contains("version"), "the version is advanced: {update}");
        assert!(filter.contains("version"), "and checked: {update}");
        assert_eq!(uow.get(&ann)?.version, 2);
        assert_eq!(ledger_rows(&mut db.conn)[0].version, 2);

        // A failed commit leaves the in-memory version where it was.
        uow.get_mut(&ann)?.balance = 12;
        uow.register_new(account("broke", -1))?;
        assert!(uow.commit(&mut db.conn).is_err());
        assert_eq!(uow.get(&ann)?.version, 2);
        assert_eq!(ledger_rows(&mut db.conn)[0].version, 2);
        Ok(())
    }

    fn a_version_changed_by_hand_is_refused(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(ledger("ann", 10))?;
        uow.commit(&mut db.conn)?;
        uow.get_mut(&ann)?.balance = 11;
        // Say, a client's If-Match value: checking against it would make the version go
        // backwards (SET version = 6 WHERE version = 1) if the unit of work trusted it.
        uow.get_mut(&ann)?.version = 5;
        let log = db.record();
        let error = uow.commit(&mut db.conn).expect_err("the version is not the caller's to set");
        assert!(matches!(&error, uow::Error::VersionChanged { entity: "LedgerAccount", persisted, current, .. } if persisted == "1" && current == "5"), "{error}");
        assert!(log.all().is_empty(), "nothing sent: {:?}", log.all());
        uow.get_mut(&ann)?.version = 1;
        uow.commit(&mut db.conn)?;
        let row = ledger_rows(&mut db.conn).remove(0);
        assert_eq!((row.balance, row.version), (11, 2));
        Ok(())
    }

    fn a_forced_version_increment_writes_only_the_version(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(ledger("ann", 10))?;
        uow.commit(&mut db.conn)?;
        uow.force_version_increment(&ann)?;
        assert_eq!(uow.state(&ann)?, EntityState::Dirty);
        let log = db.record();
        uow.commit(&mut db.conn)?;
        let writes = log.writes();
        assert_eq!(writes.len(), 1, "{writes:?}");
        let sql = writes[0].split(" -- binds").next().unwrap_or(&writes[0]).to_lowercase();
        assert!(sql.starts_with("update") && sql.contains("version") && !sql.contains("balance") && !sql.contains("owner"), "only the version is set: {sql}");
        let row = ledger_rows(&mut db.conn).remove(0);
        assert_eq!((row.balance, row.version), (10, 2));
        assert_eq!(uow.get(&ann)?.version, 2);
        assert_eq!(uow.state(&ann)?, EntityState::Clean);
        let log = db.record();
        uow.commit(&mut db.conn)?;
        assert!(log.all().is_empty(), "forced once, written once: {:?}", log.all());

        // Together with a changed column: one UPDATE, the version advanced once.
        uow.get_mut(&ann)?.balance = 11;
        uow.force_version_increment(&ann)?;
        uow.commit(&mut db.conn)?;
        let row = ledger_rows(&mut db.conn).remove(0);
        assert_eq!((row.balance, row.version), (11, 3));
        Ok(())
    }

    fn a_forced_version_increment_conflicts_with_a_concurrent_change(db) {
        let mut seed = UnitOfWork::<Conn>::new();
        let h = seed.register_new(ledger("ann", 100))?;
        seed.commit(&mut db.conn)?;
        let id = seed.get(&h)?.id;
        let mut other_conn = db.connect();
        let mut root = UnitOfWork::<Conn>::new();
        let mut rival = UnitOfWork::<Conn>::new();
        let mine = root.load::<LedgerAccount>(&mut db.conn, id)?;
        let theirs = rival.load::<LedgerAccount>(&mut other_conn, id)?;
        rival.get_mut(&theirs)?.balance = 50;
        rival.commit(&mut other_conn)?;

        // Only rows the root guards changed (here: a new account), the root's version forced.
        root.force_version_increment(&mine)?;
        let child = root.register_new(account("guarded", 1))?;
        let error = root.commit(&mut db.conn).expect_err("the row moved on");
        assert!(matches!(&error, uow::Error::Conflict { entity: "LedgerAccount", key, .. } if *key == id.to_string()), "{error}");
        assert!(account_rows(&mut db.conn).is_empty(), "rolled back with the conflict");
        assert_eq!(root.get(&mine)?.version, 1, "memory as before");
        assert_eq!(root.state(&mine)?, EntityState::Dirty, "still forced: a retry checks again");
        assert_eq!(root.state(&child)?, EntityState::New);

        root.refresh(&mut db.conn, &mine)?;
        assert_eq!(root.state(&mine)?, EntityState::Clean, "refresh discards the forced increment");
        root.force_version_increment(&mine)?;
        root.commit(&mut db.conn)?;
        let row = ledger_rows(&mut db.conn).remove(0);
        assert_eq!((row.balance, row.version), (50, 3));
        assert_eq!(account_rows(&mut db.conn).len(), 1);
        Ok(())
    }

    fn a_forced_version_increment_needs_a_version(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 1))?;
        uow.commit(&mut db.conn)?;
        let error = uow.force_version_increment(&ann).expect_err("accounts have no version");
        assert!(matches!(error, uow::Error::NoVersion { entity: "Account" }), "{error}");
        assert!(error.to_string().contains("#[tracked(version)]"), "{error}");
        assert_eq!(uow.state(&ann)?, EntityState::Clean);
        Ok(())
    }

    fn register_dirty_writes_the_version_of_a_row_that_holds_only_a_key_and_a_version(db) {
        db.exec("CREATE TABLE markers (id INTEGER PRIMARY KEY, version INTEGER NOT NULL)");
        let mut seed = UnitOfWork::<Conn>::new();
        seed.register_new(Marker { id: 1, version: 1 })?;
        seed.commit(&mut db.conn)?;

        let mut uow = UnitOfWork::<Conn>::new();
        let marker = uow.register_dirty(Marker { id: 1, version: 1 })?;
        assert_eq!(uow.state(&marker)?, EntityState::Dirty);
        let log = db.record();
        uow.commit(&mut db.conn)?;
        assert_eq!(log.writes().len(), 1, "{:?}", log.writes());
        assert_eq!(uow.get(&marker)?.version, 2);
        assert_eq!(marker_versions(&mut db.conn), [2]);

        // Built from a stale version (a client's): a conflict, nothing written.
        let mut stale = UnitOfWork::<Conn>::new();
        let old = stale.register_dirty(Marker { id: 1, version: 1 })?;
        let error = stale.commit(&mut db.conn).expect_err("the row is at version 2");
        assert!(matches!(&error, uow::Error::Conflict { entity: "Marker", .. }), "{error}");
        assert_eq!(stale.get(&old)?.version, 1);
        assert_eq!(marker_versions(&mut db.conn), [2]);
        Ok(())
    }

    fn the_second_of_two_writers_gets_a_conflict_and_writes_nothing(db) {
        let mut seed = UnitOfWork::<Conn>::new();
        let id = {
            let h = seed.register_new(ledger("ann", 100))?;
            seed.commit(&mut db.conn)?;
            seed.get(&h)?.id
        };
        let doomed = {
            let h = seed.register_new(account("deleted with the second", 1))?;
            seed.commit(&mut db.conn)?;
            seed.get(&h)?.id
        };
        let mut other_conn = db.connect();
        let log = StatementLog::default();
        other_conn.set_instrumentation(log.clone());
        let mut first = UnitOfWork::<Conn>::new();
        let mut second = UnitOfWork::<Conn>::new();
        let a1 = first.load::<LedgerAccount>(&mut db.conn, id)?;
        let a2 = second.load::<LedgerAccount>(&mut other_conn, id)?;
        first.get_mut(&a1)?.balance -= 30;
        second.get_mut(&a2)?.balance -= 50;
        // Sent before the conflicting UPDATE (DELETEs go first), so "rolled back" means
        // something: a statement that had succeeded is undone.
        let removed = second.load::<Account>(&mut other_conn, doomed)?;
        second.register_removed(&removed)?;
        let extra = second.register_new(account("written with the second", 1))?;
        first.commit(&mut db.conn)?;

        let before = (observe(&second, &a2), observe(&second, &removed), observe(&second, &extra));
        log.clear();
        let error = second.commit(&mut other_conn).expect_err("stale version");
        let writes = log.writes();
        assert!(writes.len() >= 2 && writes[0].to_uppercase().starts_with("DELETE"), "{writes:?}");
        match &error {
            uow::Error::Conflict { entity, key, .. } => {
                assert_eq!(*entity, "LedgerAccount");
                assert_eq!(*key, id.to_string());
            }
            other => panic!("expected a conflict, got {other}"),
        }
        assert_eq!((observe(&second, &a2), observe(&second, &removed), observe(&second, &extra)), before, "memory as before");
        let accounts: Vec<_> = account_rows(&mut db.conn).into_iter().map(|a| a.id).collect();
        assert_eq!(accounts, [doomed], "the whole commit rolled back: the DELETE too, no INSERT");
        assert_eq!(ledger_rows(&mut db.conn)[0].balance, 70);

        // Refresh, redo the change on current data, commit.
        second.refresh(&mut other_conn, &a2)?;
        assert_eq!(second.get(&a2)?.version, 2);
        second.get_mut(&a2)?.balance -= 50;
        second.commit(&mut other_conn)?;
        let row = ledger_rows(&mut db.conn).remove(0);
        assert_eq!((row.balance, row.version), (20, 3));
        let owners: Vec<_> = account_rows(&mut db.conn).into_iter().map(|a| a.owner).collect();
        assert_eq!(owners, ["written with the second"], "the retry sent the DELETE and the INSERT once");
        Ok(())
    }

    fn a_stale_delete_is_a_conflict(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(ledger("ann", 1))?;
        let bob = uow.register_new(ledger("bob", 1))?;
        uow.commit(&mut db.conn)?;
        let bob_id = uow.get(&bob)?.id;
        diesel::update(ledger::table.find(bob_id)).set(ledger::version.eq(7)).execute(&mut db.conn)?;
        uow.register_removed(&ann)?;
        uow.register_removed(&bob)?;
        let error = uow.commit(&mut db.conn).expect_err("bob changed");
        assert!(matches!(&error, uow::Error::Conflict { operation: uow::Operation::Delete, key, .. } if *key == bob_id.to_string()), "{error}");
        assert_eq!(ledger_rows(&mut db.conn).len(), 2, "ann's delete rolled back too");
        assert_eq!(uow.state(&ann)?, EntityState::Removed);
        Ok(())
    }
}

/// Contention needs concurrent server sessions: PostgreSQL and MySQL/MariaDB.
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod contention {
    use super::*;
    use std::sync::{Arc, Barrier, Mutex};

    #[derive(Debug, Clone, Copy)]
    struct Transfer {
        from: i32,
        to: i32,
        amount: i64,
    }

    const ATTEMPTS: u32 = 50;

    /// How one transfer ended: its result, how many runs it took, and how many of those runs
    /// failed with a conflict or a transient error.
    #[derive(Debug)]
    struct Outcome {
        result: Result<(), String>,
        /// The error that reached the caller was a conflict or transient failure.
        surfaced_retryable: bool,
        runs: u32,
        retryable_failures: u32,
    }

    /// One transfer as a unit of work: read both accounts, move the money, commit; conflicts and
    /// transient failures are rerun from scratch (the closure reloads).
    fn transfer<C>(conn: &mut C, t: Transfer, mode: uow::TransactionMode) -> Outcome
    where
        C: diesel::Connection + diesel::connection::LoadConnection + 'static,
        C::Backend: uow::Dialect,
        LedgerAccount: uow::Load<C::Backend>,
    {
        let mut runs = 0;
        let mut retryable_failures = 0;
        let policy = uow::RetryPolicy::default()
            .attempts(ATTEMPTS)
            .backoff(
                std::time::Duration::from_millis(1),
                std::time::Duration::from_millis(50),
            )
            .retry_conflicts(true);
        let result = uow::retry(&policy, |attempt| {
            runs = attempt;
            let mut uow = uow::UnitOfWork::new();
            uow.set_transaction_mode(mode);
            let outcome = uow.transaction(conn, |uow| {
                let from = uow.load::<LedgerAccount>(t.from)?;
                let to = uow.load::<LedgerAccount>(t.to)?;
                uow.get_mut(&from)?.balance -= t.amount;
                uow.get_mut(&to)?.balance += t.amount;
                Ok::<_, uow::Error>(())
            });
            if let Err(e) = &outcome {
                if e.is_conflict() || e.is_transient() {
                    retryable_failures += 1;
                }
            }
            outcome
        });
        Outcome {
            surfaced_retryable: result
                .as_ref()
                .is_err_and(|e| e.is_conflict() || e.is_transient()),
            result: result.map_err(|e| e.to_string()),
            runs,
            retryable_failures,
        }
    }

    server_backend_tests! {
        fn contention_loses_no_update_at_the_default_level_and_at_serializable(db) {
            const THREADS: usize = 8;
            const TRANSFERS: usize = 50;
            const ACCOUNTS: usize = 10;
            // At SERIALIZABLE a transfer that read a row another one changed since fails with
            // a serialization failure (PostgreSQL) or a deadlock (MySQL's locking reads)
            // instead of a conflict: `retry` reruns both.
            for mode in [uow::TransactionMode::new(), uow::TransactionMode::new().isolation(uow::Isolation::Serializable)] {
            diesel::delete(ledger::table).execute(&mut db.conn)?;
            let mut seed = UnitOfWork::<Conn>::new();
            let handles: Vec<_> = (0..ACCOUNTS).map(|i| seed.register_new(ledger(&format!("a{i}"), 1_000_000))).collect::<Result<_, _>>()?;
            seed.commit(&mut db.conn)?;
            let ids: Vec<i32> = handles.iter().map(|h| seed.get(h).map(|a| a.id)).collect::<Result<_, _>>()?;

            let outcomes = Arc::new(Mutex::new(Vec::new()));
            let start = Arc::new(Barrier::new(THREADS));
            let workers: Vec<_> = (0..THREADS)
                .map(|thread| {
                    let mut conn = db.connect();
                    let ids = ids.clone();
                    let (outcomes, start) = (outcomes.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        for n in 0..TRANSFERS {
                            // A deterministic spread of pairs that collide often.
                            let from = ids[(thread * 7 + n * 3) % ACCOUNTS];
                            let to = ids[(thread * 5 + n * 7 + 1) % ACCOUNTS];
                            if from == to {
                                continue;
                            }
                            let t = Transfer { from, to, amount: (n % 9 + 1) as i64 };
                            let outcome = transfer(&mut conn, t, mode);
                            if let Ok(mut o) = outcomes.lock() {
                                o.push((t, outcome));
                            }
                        }
                    })
                })
                .collect();
            for w in workers {
                w.join().map_err(|_| "worker panicked")?;
            }
            let outcomes = std::mem::take(&mut *outcomes.lock().map_err(|_| "poisoned")?);

            // Expected balances: the start plus every transfer reported as successful.
            let mut expected: std::collections::HashMap<i32, i64> = ids.iter().map(|id| (*id, 1_000_000)).collect();
            let mut succeeded = 0;
            let mut retried = 0;
            for (t, outcome) in &outcomes {
                match &outcome.result {
                    Ok(()) => {
                        succeeded += 1;
                        *expected.entry(t.from).or_default() -= t.amount;
                        *expected.entry(t.to).or_default() += t.amount;
                        // Every conflict of this transfer was retried, and the last run won.
                        assert_eq!(outcome.retryable_failures, outcome.runs - 1, "{t:?}: {outcome:?}");
                    }
                    Err(e) => {
                        // Surfaced only once the retries ran out, and only a conflict or a
                        // transient failure: any other error is a bug.
                        assert!(outcome.surfaced_retryable, "{t:?} failed with a non-retryable error: {e}");
                        assert_eq!((outcome.runs, outcome.retryable_failures), (ATTEMPTS, ATTEMPTS), "{t:?}: {outcome:?}");
                    }
                }
                retried += outcome.retryable_failures;
            }
            let rows = ledger_rows(&mut db.conn);
            let total: i64 = rows.iter().map(|r| r.balance).sum();
            assert_eq!(total, 1_000_000 * ACCOUNTS as i64, "money is conserved");
            for row in &rows {
                assert_eq!(Some(&row.balance), expected.get(&row.id), "account {} matches the successful transfers", row.id);
            }
            let versions: i32 = rows.iter().map(|r| r.version - 1).sum();
            assert_eq!(versions as usize, 2 * succeeded, "every successful transfer advanced two versions");
            assert!(succeeded > 0);
            assert!(retried > 0, "8 threads on 10 accounts collided at least once: the check was exercised");
            eprintln!(
                "{mode}: {} transfers: {} succeeded, {} surfaced; {} conflicts or transient failures retried",
                outcomes.len(), succeeded, outcomes.len() - succeeded, retried
            );
            }
            Ok(())
        }

        fn a_real_deadlock_is_transient_and_retry_reruns_the_loser(db) {
            let mut seed = UnitOfWork::<Conn>::new();
            let a = seed.register_new(ledger("a", 100))?;
            let b = seed.register_new(ledger("b", 100))?;
            seed.commit(&mut db.conn)?;
            let (a, b) = (seed.get(&a)?.id, seed.get(&b)?.id);

            let both_hold_one = Arc::new(Barrier::new(2));
            let failures = Arc::new(Mutex::new(Vec::new()));
            let workers: Vec<_> = [(a, b), (b, a)]
                .into_iter()
                .map(|(first, second)| {
                    let mut conn = db.connect();
                    let (both_hold_one, failures) = (both_hold_one.clone(), failures.clone());
                    std::thread::spawn(move || {
                        // The loser's rerun may meet the winner's committed versions: reloading
                        // is part of the closure, so conflicts may be rerun too.
                        let policy = uow::RetryPolicy::default()
                            .attempts(10)
                            .backoff(std::time::Duration::from_millis(5), std::time::Duration::from_millis(50))
                            .retry_conflicts(true);
                        uow::retry(&policy, |attempt| {
                            let outcome = uow::transaction(&mut conn, |scope| {
                                let x = scope.load::<LedgerAccount>(first)?;
                                scope.get_mut(&x)?.balance -= 1;
                                scope.flush()?; // holds the lock on `first`
                                if attempt == 1 {
                                    both_hold_one.wait();
                                }
                                let y = scope.load::<LedgerAccount>(second)?;
                                scope.get_mut(&y)?.balance += 1;
                                scope.flush()?; // waits for the other: one is the deadlock's victim
                                Ok::<_, uow::Error>(())
                            });
                            if let Err(e) = &outcome {
                                if let Ok(mut f) = failures.lock() {
                                    f.push((e.is_transient(), e.is_conflict(), e.to_string()));
                                }
                            }
                            outcome
                        })
                        .map_err(|e| e.to_string())
                    })
                })
                .collect();
            for w in workers {
                w.join().map_err(|_| "worker panicked")??;
            }
            let failures = std::mem::take(&mut *failures.lock().map_err(|_| "poisoned")?);
            assert!(failures.iter().any(|(transient, _, _)| *transient), "a deadlock was seen and recognised: {failures:?}");
            assert!(failures.iter().all(|(t, c, _)| *t || *c), "only deadlocks and conflicts: {failures:?}");
            let rows = ledger_rows(&mut db.conn);
            let state: Vec<_> = rows.iter().map(|r| (r.balance, r.version)).collect();
            assert_eq!(state, [(100, 3), (100, 3)], "both transfers landed exactly once");
            Ok(())
        }

        fn cosmic_python_two_allocations_race_for_one_product(db) {
            let mut seed = UnitOfWork::<Conn>::new();
            seed.register_new(Product { sku: "LAMP".into(), available: 10, version: 1 })?;
            seed.commit(&mut db.conn)?;

            let loaded = Arc::new(Barrier::new(2));
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    let mut conn = db.connect();
                    let loaded = loaded.clone();
                    std::thread::spawn(move || {
                        uow::transaction(&mut conn, |uow| {
                            let product = uow.load::<Product>("LAMP".to_string());
                            // Both have read version 1 before either writes (and a failed read
                            // still meets the other thread here, so nobody waits forever).
                            loaded.wait();
                            let product = product?;
                            let allocation = uow.register_new(Allocation { id: 0, sku: "LAMP".into(), qty: 1 })?;
                            uow.set_parent(&allocation, &product)?;
                            uow.get_mut(&product)?.available -= 1;
                            Ok::<_, uow::Error>(())
                        })
                        .map_err(|e| (e.is_conflict(), e.to_string()))
                    })
                })
                .collect();
            let results: Vec<Result<(), (bool, String)>> = workers.into_iter().map(|w| w.join().map_err(|_| (false, "panicked".to_string()))?).collect();
            let ok = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(ok, 1, "exactly one allocation succeeds: {results:?}");
            let (is_conflict, failure) = results.iter().find_map(|r| r.as_ref().err()).ok_or("one failed")?;
            assert!(is_conflict, "the loser gets a Conflict: {failure}");
            assert!(failure.contains("Product") && failure.contains("LAMP"), "the conflict names entity and key: {failure}");
            let product: Product = products::table.select(Product::as_select()).first(&mut db.conn)?;
            assert_eq!((product.version, product.available), (2, 9));
            let allocations: i64 = allocations::table.count().get_result(&mut db.conn)?;
            assert_eq!(allocations, 1);
            Ok(())
        }

        fn cosmic_python_allocations_at_serializable_are_rerun_and_both_land(db) {
            let mut seed = UnitOfWork::<Conn>::new();
            seed.register_new(Product { sku: "LAMP".into(), available: 10, version: 1 })?;
            seed.commit(&mut db.conn)?;

            let loaded = Arc::new(Barrier::new(2));
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    let mut conn = db.connect();
                    let loaded = loaded.clone();
                    std::thread::spawn(move || {
                        let mut failures = Vec::new();
                        let policy = uow::RetryPolicy::default().attempts(10).backoff(std::time::Duration::from_millis(5), std::time::Duration::from_millis(50)).retry_conflicts(true);
                        let result = uow::retry(&policy, |attempt| {
                            let mut uow = UnitOfWork::<Conn>::new();
                            uow.set_transaction_mode(uow::TransactionMode::new().isolation(uow::Isolation::Serializable));
                            let outcome = uow.transaction(&mut conn, |uow| {
                                let product = uow.load::<Product>("LAMP".to_string());
                                if attempt == 1 {
                                    loaded.wait();
                                }
                                let product = product?;
                                let allocation = uow.register_new(Allocation { id: 0, sku: "LAMP".into(), qty: 1 })?;
                                uow.set_parent(&allocation, &product)?;
                                uow.get_mut(&product)?.available -= 1;
                                Ok::<_, uow::Error>(())
                            });
                            if let Err(e) = &outcome {
                                failures.push((e.is_transient() || e.is_conflict(), e.to_string()));
                            }
                            outcome
                        });
                        (result.map_err(|e| e.to_string()), failures)
                    })
                })
                .collect();
            let mut failures = Vec::new();
            for worker in workers {
                let (result, failed) = worker.join().map_err(|_| "worker panicked")?;
                result?;
                failures.extend(failed);
            }
            assert!(!failures.is_empty(), "the second allocation failed once and was rerun");
            assert!(failures.iter().all(|(retryable, _)| *retryable), "only serialization failures, deadlocks or conflicts: {failures:?}");
            let product: Product = products::table.select(Product::as_select()).first(&mut db.conn)?;
            assert_eq!((product.version, product.available), (3, 8), "both allocations, once each");
            let allocations: i64 = allocations::table.count().get_result(&mut db.conn)?;
            assert_eq!(allocations, 2);
            Ok(())
        }
    }
}

// SQLite's transient failure: another connection holds the write lock.
backend_tests_on! { sqlite: sqlite_busy, sqlite_busy_async;
    fn a_busy_database_is_transient_and_retry_commits_once_it_is_free(db) {
        db.exec("PRAGMA busy_timeout = 0");
        let mut blocker = db.connect();
        use diesel::connection::SimpleConnection;
        blocker.batch_execute("BEGIN IMMEDIATE")?;
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(ledger("ann", 1))?;
        let policy = uow::RetryPolicy::default().backoff(std::time::Duration::from_millis(1), std::time::Duration::from_millis(5));
        let mut failures = Vec::new();
        let mut runs = 0;
        uow::retry(&policy, |attempt| {
            runs = attempt;
            if attempt == 2 {
                // The other writer finishes; the rerun finds the database free.
                blocker.batch_execute("COMMIT")?;
            }
            let outcome = uow.commit(&mut db.conn).map(|_| ());
            if let Err(e) = &outcome {
                failures.push((e.is_transient(), e.to_string()));
            }
            outcome.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
        .map_err(|e| e.to_string())?;
        assert_eq!(runs, 2);
        assert_eq!(failures.len(), 1);
        assert!(failures[0].0, "SQLITE_BUSY is transient: {}", failures[0].1);
        assert_ne!(uow.get(&ann)?.id, 0);
        assert_eq!(ledger_rows(&mut db.conn).len(), 1, "written once");
        Ok(())
    }
}
