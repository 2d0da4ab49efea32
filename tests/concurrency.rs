//! Optimistic concurrency (DESIGN.md promise 7): `#[tracked(version)]` fields make UPDATE and
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

fn ledger(owner: &str, balance: i64) -> LedgerAccount {
    LedgerAccount {
        id: 0,
        owner: owner.into(),
        balance,
        version: 1,
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
        assert!(update.contains("version"), "{update}");
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

    fn the_second_of_two_writers_gets_a_conflict_and_writes_nothing(db) {
        let mut seed = UnitOfWork::<Conn>::new();
        let id = {
            let h = seed.register_new(ledger("ann", 100))?;
            seed.commit(&mut db.conn)?;
            seed.get(&h)?.id
        };
        let mut other_conn = db.connect();
        let mut first = UnitOfWork::<Conn>::new();
        let mut second = UnitOfWork::<Conn>::new();
        let a1 = first.load::<LedgerAccount>(&mut db.conn, id)?;
        let a2 = second.load::<LedgerAccount>(&mut other_conn, id)?;
        first.get_mut(&a1)?.balance -= 30;
        second.get_mut(&a2)?.balance -= 50;
        let extra = second.register_new(account("written with the second", 1))?;
        first.commit(&mut db.conn)?;

        let before = (observe(&second, &a2), observe(&second, &extra));
        let error = second.commit(&mut other_conn).expect_err("stale version");
        match &error {
            uow::Error::Conflict { entity, key, .. } => {
                assert_eq!(*entity, "LedgerAccount");
                assert_eq!(*key, id.to_string());
            }
            other => panic!("expected a conflict, got {other}"),
        }
        assert_eq!((observe(&second, &a2), observe(&second, &extra)), before, "memory as before");
        assert!(account_rows(&mut db.conn).is_empty(), "the whole commit rolled back");
        assert_eq!(ledger_rows(&mut db.conn)[0].balance, 70);

        // Refresh, redo the change on current data, commit.
        second.refresh(&mut other_conn, &a2)?;
        assert_eq!(second.get(&a2)?.version, 2);
        second.get_mut(&a2)?.balance -= 50;
        second.commit(&mut other_conn)?;
        let row = ledger_rows(&mut db.conn).remove(0);
        assert_eq!((row.balance, row.version), (20, 3));
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

    /// One transfer as a unit of work: read both accounts, move the money, commit; conflicts and
    /// transient failures are rerun from scratch (the closure reloads).
    fn transfer<C>(conn: &mut C, t: Transfer, conflicts: &Mutex<u32>) -> Result<(), uow::Error>
    where
        C: diesel::Connection + diesel::connection::LoadConnection + 'static,
        C::Backend: uow::Dialect,
        LedgerAccount: uow::Load<C::Backend>,
    {
        let policy = uow::RetryPolicy::default()
            .attempts(50)
            .backoff(
                std::time::Duration::from_millis(1),
                std::time::Duration::from_millis(50),
            )
            .retry_conflicts(true);
        uow::retry(&policy, |_| {
            let outcome = uow::transaction(conn, |uow| {
                let from = uow.load::<LedgerAccount>(t.from)?;
                let to = uow.load::<LedgerAccount>(t.to)?;
                uow.get_mut(&from)?.balance -= t.amount;
                uow.get_mut(&to)?.balance += t.amount;
                Ok::<_, uow::Error>(())
            });
            if let Err(e) = &outcome {
                if e.is_conflict() || e.is_transient() {
                    if let Ok(mut n) = conflicts.lock() {
                        *n += 1;
                    }
                }
            }
            outcome
        })
    }

    server_backend_tests! {
        fn contention_loses_no_update(db) {
            const THREADS: usize = 8;
            const TRANSFERS: usize = 50;
            const ACCOUNTS: usize = 10;
            let mut seed = UnitOfWork::<Conn>::new();
            let handles: Vec<_> = (0..ACCOUNTS).map(|i| seed.register_new(ledger(&format!("a{i}"), 1_000_000))).collect::<Result<_, _>>()?;
            seed.commit(&mut db.conn)?;
            let ids: Vec<i32> = handles.iter().map(|h| seed.get(h).map(|a| a.id)).collect::<Result<_, _>>()?;

            let conflicts = Arc::new(Mutex::new(0u32));
            let outcomes = Arc::new(Mutex::new(Vec::new()));
            let start = Arc::new(Barrier::new(THREADS));
            let workers: Vec<_> = (0..THREADS)
                .map(|thread| {
                    let mut conn = db.connect();
                    let ids = ids.clone();
                    let (conflicts, outcomes, start) = (conflicts.clone(), outcomes.clone(), start.clone());
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
                            let result = transfer(&mut conn, t, &conflicts);
                            if let Ok(mut o) = outcomes.lock() {
                                o.push((t, result.map_err(|e| e.to_string())));
                            }
                        }
                    })
                })
                .collect();
            for w in workers {
                w.join().map_err(|_| "worker panicked")?;
            }
            let outcomes = outcomes.lock().map_err(|_| "poisoned")?.clone();
            let conflicts = *conflicts.lock().map_err(|_| "poisoned")?;

            // Expected balances: the start plus every transfer reported as successful.
            let mut expected: std::collections::HashMap<i32, i64> = ids.iter().map(|id| (*id, 1_000_000)).collect();
            let mut succeeded = 0;
            for (t, result) in &outcomes {
                match result {
                    Ok(()) => {
                        succeeded += 1;
                        *expected.entry(t.from).or_default() -= t.amount;
                        *expected.entry(t.to).or_default() += t.amount;
                    }
                    Err(e) => eprintln!("surfaced to the caller: {e}"),
                }
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
            eprintln!(
                "{} transfers: {} succeeded, {} surfaced; {} conflicts or transient failures retried",
                outcomes.len(), succeeded, outcomes.len() - succeeded, conflicts
            );
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
                            let product = uow.load::<Product>("LAMP".to_string())?;
                            // Both have read version 1 before either writes.
                            loaded.wait();
                            let allocation = uow.register_new(Allocation { id: 0, sku: "LAMP".into(), qty: 1 })?;
                            uow.set_parent(&allocation, &product)?;
                            uow.get_mut(&product)?.available -= 1;
                            Ok::<_, uow::Error>(())
                        })
                        .map_err(|e| e.to_string())
                    })
                })
                .collect();
            let results: Vec<Result<(), String>> = workers.into_iter().map(|w| w.join().map_err(|_| "panicked".to_string())?).collect();
            let ok = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(ok, 1, "exactly one allocation succeeds: {results:?}");
            let failure = results.iter().find_map(|r| r.as_ref().err()).ok_or("one failed")?;
            assert!(failure.contains("Product") && failure.contains("LAMP"), "the conflict names entity and key: {failure}");
            let product: Product = products::table.select(Product::as_select()).first(&mut db.conn)?;
            assert_eq!((product.version, product.available), (2, 9));
            let allocations: i64 = allocations::table.count().get_result(&mut db.conn)?;
            assert_eq!(allocations, 1);
            Ok(())
        }
    }
}
