//! A real multi-primary cluster: three MariaDB Galera nodes on this machine
//! (`scripts/galera.sh start`; feature `galera`, node URLs in `UOW_TEST_GALERA_URLS`). What
//! one server never shows: a transaction that loses certification against one committed on
//! another node fails at COMMIT and must be rerun; AUTO_INCREMENT steps by the cluster size
//! under the interleaved lock mode (2) Galera requires, where one INSERT's keys need not be
//! consecutive (uow reads them with MariaDB's `INSERT .. RETURNING`); a commit on one node is
//! read on another.
//!
//! Each test's database is made on the first node and replicates; connections to the other
//! nodes read causally (`wsrep_sync_wait = 1`). The rollback and ordering suites run their
//! bodies on the first node too (`galera::` modules of `tests/rollback.rs`, `tests/ordering.rs`).
#![cfg(feature = "galera")]

mod common;

use common::*;
use diesel::prelude::*;
use uow::prelude::*;

/// A transfer done: from, to, amount.
type Transfer = (i32, i32, i64);

/// `(id, owner, balance, version)` of every ledger row, by id, read on `conn`.
fn ledger_rows<C>(conn: &mut C) -> QueryResult<Vec<(i32, String, i64, i32)>>
where
    C: diesel::connection::LoadConnection + 'static,
    for<'a> diesel::dsl::Order<
        diesel::dsl::Select<
            ledger::table,
            (ledger::id, ledger::owner, ledger::balance, ledger::version),
        >,
        ledger::id,
    >: diesel::query_dsl::LoadQuery<'a, C, (i32, String, i64, i32)>,
{
    ledger::table
        .select((ledger::id, ledger::owner, ledger::balance, ledger::version))
        .order(ledger::id)
        .load(conn)
}

galera_tests! {
    fn the_cluster_is_three_synced_nodes_in_interleaved_lock_mode(db) {
        let nodes = galera_urls();
        assert_eq!(nodes.len(), 3, "{GALERA_URLS_VAR}: {nodes:?}");
        for node in &nodes {
            let mut conn = db.connect_to_node(node);
            let (size, increment, lock_mode): (i64, i64, i64) = diesel::select((
                diesel::dsl::sql::<diesel::sql_types::BigInt>(
                    "(SELECT CAST(VARIABLE_VALUE AS SIGNED) FROM information_schema.GLOBAL_STATUS \
                     WHERE VARIABLE_NAME = 'WSREP_CLUSTER_SIZE')",
                ),
                diesel::dsl::sql::<diesel::sql_types::BigInt>("CAST(@@auto_increment_increment AS SIGNED)"),
                diesel::dsl::sql::<diesel::sql_types::BigInt>("CAST(@@innodb_autoinc_lock_mode AS SIGNED)"),
            ))
            .get_result(&mut conn)?;
            assert_eq!((size, increment, lock_mode), (3, 3, 2), "{node}");
        }
        Ok(())
    }

    fn a_commit_on_one_node_is_loaded_on_the_others(db) {
        let nodes = galera_urls();
        let mut first = db.connect_to_node(&nodes[0]);
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(ledger("ann", 10))?;
        uow.commit(&mut first)?;
        let id = uow.get(&ann)?.id;

        let mut second = db.connect_to_node(&nodes[1]);
        let mut reader = UnitOfWork::<Conn>::new();
        let seen = reader.load::<LedgerAccount>(&mut second, id)?;
        assert_eq!((reader.get(&seen)?.balance, reader.get(&seen)?.version), (10, 1));
        reader.get_mut(&seen)?.balance = 20;
        reader.commit(&mut second)?;

        let mut third = db.connect_to_node(&nodes[2]);
        let mut last = UnitOfWork::<Conn>::new();
        let seen = last.load::<LedgerAccount>(&mut third, id)?;
        assert_eq!((last.get(&seen)?.balance, last.get(&seen)?.version), (20, 2), "node 3 reads node 2's commit");
        Ok(())
    }

    fn a_certification_failure_at_commit_is_rolled_back_in_memory_and_rerun_by_retry(db) {
        let nodes = galera_urls();
        let mut seed = UnitOfWork::<Conn>::new();
        let row = seed.register_new(ledger("ann", 100))?;
        seed.commit(&mut db.conn)?;
        let id = seed.get(&row)?.id;

        let mut on_first = db.connect_to_node(&nodes[0]);
        let mut on_second = db.connect_to_node(&nodes[1]);
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.load::<LedgerAccount>(&mut on_first, id)?;
        let memory_before = (uow.get(&ann)?.clone(), uow.state(&ann)?);
        let mut failures = Vec::new();
        let policy = uow::RetryPolicy::default().attempts(5).backoff(std::time::Duration::from_millis(5), std::time::Duration::from_millis(50));
        uow::retry(&policy, |attempt| {
            let outcome = uow.transaction(&mut on_first, |scope| {
                scope.refresh(&ann)?;
                scope.get_mut(&ann)?.balance += 1;
                // The UPDATE runs on node 1 and holds the row there...
                scope.flush()?;
                if attempt == 1 {
                    // ...while node 2 commits a change of the same row first: it is
                    // certified first, so node 1's transaction loses at its COMMIT.
                    let mut other = UnitOfWork::<Conn>::new();
                    let same = other.load::<LedgerAccount>(&mut on_second, id)?;
                    other.get_mut(&same)?.balance += 10;
                    other.commit(&mut on_second)?;
                }
                Ok::<_, uow::Error>(())
            });
            if let Err(e) = &outcome {
                failures.push((e.is_transient(), e.to_string()));
                assert_eq!((uow.get(&ann)?.clone(), uow.state(&ann)?), memory_before.clone(), "memory as before the failed run");
            }
            outcome
        })?;
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].0, "a certification failure is transient: {}", failures[0].1);
        let rows = ledger_rows(&mut db.connect_to_node(&nodes[2]))?;
        assert_eq!((rows[0].2, rows[0].3), (111, 3), "both changes, once each, read on node 3");
        assert_eq!((uow.get(&ann)?.balance, uow.get(&ann)?.version), (111, 3));
        Ok(())
    }

    fn multi_row_inserts_on_a_node_get_their_keys_back_under_interleaved_lock_mode(db) {
        let nodes = galera_urls();
        for rows in [1usize, 2, 3, 100, 5000] {
            // Another node inserts into the same table all along, taking ids in between.
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let mut other = db.connect_to_node(&nodes[1]);
            let other_stop = stop.clone();
            let inserter = std::thread::spawn(move || -> Result<usize, String> {
                let mut n = 0;
                while !other_stop.load(std::sync::atomic::Ordering::Relaxed) {
                    diesel::insert_into(ledger::table)
                        .values((ledger::owner.eq(format!("other{n}")), ledger::balance.eq(0), ledger::version.eq(1)))
                        .execute(&mut other)
                        .map_err(|e| e.to_string())?;
                    n += 1;
                }
                Ok(n)
            });
            let mut uow = UnitOfWork::<Conn>::new();
            let handles: Vec<_> = (0..rows).map(|i| uow.register_new(ledger(&format!("r{rows}_{i}"), i as i64))).collect::<Result<_, _>>()?;
            let log = db.record();
            let committed = uow.commit(&mut db.conn);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let others = inserter.join().map_err(|_| "inserter panicked")??;
            committed?;

            let stored: std::collections::HashMap<String, (i32, i64)> = ledger_rows(&mut db.conn)?.into_iter().map(|(id, owner, balance, _)| (owner, (id, balance))).collect();
            let mut ids = std::collections::HashSet::new();
            for (i, h) in handles.iter().enumerate() {
                let entity = uow.get(h)?;
                assert_eq!(stored.get(&entity.owner), Some(&(entity.id, i as i64)), "{rows} rows: row {i} got its own key back");
                assert!(ids.insert(entity.id));
            }
            let steps: std::collections::HashSet<i32> = ids.iter().map(|id| id.rem_euclid(3)).collect();
            assert_eq!(steps.len(), 1, "one node's ids share its offset modulo the cluster size: {steps:?}");
            // MariaDB returns the keys of a multi-row INSERT (`RETURNING`, sorted: see
            // `insert_returning_keys`); a lone row reads its key with LAST_INSERT_ID().
            // Diesel's synchronous MySQL connection cannot read a RETURNING (it asks for the
            // columns before running the statement, which MariaDB describes only then): one
            // INSERT per row there.
            let inserts: Vec<String> = log.writes().into_iter().filter(|s| s.starts_with("INSERT")).collect();
            let returning = std::any::type_name::<Conn>().contains("Async") && rows > 1;
            assert_eq!(inserts.len(), if returning { rows.div_ceil(1000) } else { rows }, "rows per INSERT");
            assert!(inserts.iter().all(|s| s.contains("RETURNING") == returning), "{:?}", &inserts[0][..inserts[0].len().min(80)]);
            eprintln!("{rows} rows: keys right with {others} rows inserted on another node meanwhile");
        }
        Ok(())
    }

    fn contention_over_three_nodes_loses_no_update(db) {
        const THREADS: usize = 6;
        const TRANSFERS: usize = 25;
        const ACCOUNTS: usize = 6;
        let nodes = galera_urls();
        let mut seed = UnitOfWork::<Conn>::new();
        let handles: Vec<_> = (0..ACCOUNTS).map(|i| seed.register_new(ledger(&format!("a{i}"), 1_000))).collect::<Result<_, _>>()?;
        seed.commit(&mut db.conn)?;
        let ids: Vec<i32> = handles.iter().map(|h| seed.get(h).map(|a| a.id)).collect::<Result<_, _>>()?;

        let start = std::sync::Arc::new(std::sync::Barrier::new(THREADS));
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let mut conn = db.connect_to_node(&nodes[thread % nodes.len()]);
                let (ids, start) = (ids.clone(), start.clone());
                std::thread::spawn(move || -> Result<(Vec<Transfer>, Vec<String>), String> {
                    start.wait();
                    let mut done = Vec::new();
                    let mut retried = Vec::new();
                    for n in 0..TRANSFERS {
                        let (from, to) = (ids[(thread * 5 + n * 3) % ACCOUNTS], ids[(thread * 7 + n * 5 + 1) % ACCOUNTS]);
                        if from == to {
                            continue;
                        }
                        let amount = (n % 7 + 1) as i64;
                        let policy = uow::RetryPolicy::default().attempts(100).backoff(std::time::Duration::from_millis(1), std::time::Duration::from_millis(50)).retry_conflicts(true);
                        let result = uow::retry(&policy, |_| {
                            let outcome = uow::transaction(&mut conn, |scope| {
                                let a = scope.load::<LedgerAccount>(from)?;
                                let b = scope.load::<LedgerAccount>(to)?;
                                scope.get_mut(&a)?.balance -= amount;
                                scope.get_mut(&b)?.balance += amount;
                                Ok::<_, uow::Error>(())
                            });
                            if let Err(e) = &outcome {
                                assert!(e.is_transient() || e.is_conflict(), "only certification failures, deadlocks and conflicts: {e}");
                                retried.push(e.to_string());
                            }
                            outcome
                        });
                        result.map_err(|e| format!("transfer {from} -> {to} gave up: {e}"))?;
                        done.push((from, to, amount));
                    }
                    Ok((done, retried))
                })
            })
            .collect();
        let mut expected: std::collections::HashMap<i32, i64> = ids.iter().map(|id| (*id, 1_000)).collect();
        let (mut succeeded, mut retried) = (0usize, Vec::new());
        for worker in workers {
            let (done, failures) = worker.join().map_err(|_| "worker panicked")??;
            for (from, to, amount) in done {
                *expected.entry(from).or_default() -= amount;
                *expected.entry(to).or_default() += amount;
                succeeded += 1;
            }
            retried.extend(failures);
        }
        for node in &nodes {
            let rows = ledger_rows(&mut db.connect_to_node(node))?;
            let total: i64 = rows.iter().map(|r| r.2).sum();
            assert_eq!(total, 1_000 * ACCOUNTS as i64, "money is conserved, read on {node}");
            for (id, _, balance, _) in &rows {
                assert_eq!(Some(balance), expected.get(id), "account {id} matches the transfers, read on {node}");
            }
            let versions: i32 = rows.iter().map(|r| r.3 - 1).sum();
            assert_eq!(versions as usize, 2 * succeeded, "every transfer advanced two versions, once");
        }
        assert!(!retried.is_empty(), "threads on three nodes collided at least once");
        let certification = retried.iter().filter(|e| e.contains("Deadlock")).count();
        eprintln!("{succeeded} transfers over 3 nodes; {} runs retried ({certification} certification failures or deadlocks)", retried.len());
        Ok(())
    }
}
