//! Transaction modes: each backend's BEGIN for an isolation level and read-only, what each level
//! lets a transaction see of a concurrent commit, read-only transactions refusing writes, a
//! mode refused where it cannot apply, and SERIALIZABLE turning write skew into a failure that
//! `retry` reruns.

mod common;

use common::*;
use diesel::connection::TransactionManager;
use uow::prelude::*;
use uow::{Isolation, TransactionMode};

const LEVELS: [Isolation; 3] = [
    Isolation::ReadCommitted,
    Isolation::RepeatableRead,
    Isolation::Serializable,
];

/// The statement a backend opens a transaction in `mode` with.
fn expected_begin(kind: Kind, mode: TransactionMode) -> String {
    let level = mode.level().map(|l| l.to_string());
    match (kind, level) {
        (Kind::Sqlite, _) => "BEGIN IMMEDIATE".into(),
        (Kind::Postgres, None) => "BEGIN".into(),
        (Kind::Postgres, Some(level)) => format!("BEGIN ISOLATION LEVEL {level}"),
        (Kind::Mysql, None) => "BEGIN".into(),
        (Kind::Mysql, Some(level)) => {
            format!("SET TRANSACTION ISOLATION LEVEL {level}; START TRANSACTION")
        }
    }
}

backend_tests! {
    fn each_transaction_the_unit_of_work_opens_begins_in_its_mode(db) {
        let modes = [TransactionMode::new()].into_iter().chain(LEVELS.map(|l| TransactionMode::new().isolation(l)));
        for mode in modes {
            let mut uow = UnitOfWork::<Conn>::new();
            uow.set_transaction_mode(mode);
            let ann = uow.register_new(ledger("ann", 10))?;
            let log = db.record();
            uow.commit(&mut db.conn)?;
            let first = log.all().first().cloned().unwrap_or_default();
            assert_eq!(first, expected_begin(Conn::KIND, mode), "commit in mode {mode}");

            // A scope begins in the mode too; a nested scope is a savepoint of that transaction.
            let log = db.record();
            uow.transaction(&mut db.conn, |scope| {
                scope.get_mut(&ann)?.balance += 1;
                scope.nested(|inner| {
                    inner.get_mut(&ann)?.balance += 1;
                    Ok::<_, uow::Error>(())
                })
            })?;
            let all = log.all();
            assert_eq!(all.first().cloned().unwrap_or_default(), expected_begin(Conn::KIND, mode), "scope in mode {mode}");
            assert!(all.iter().filter(|s| s.starts_with("BEGIN") || s.contains("START TRANSACTION")).count() == 1, "one BEGIN, nested levels are savepoints: {all:?}");
            assert!(all.iter().any(|s| s.starts_with("SAVEPOINT")), "{all:?}");
            assert_eq!(uow.get(&ann)?.balance, 12);
        }
        Ok(())
    }

    fn a_mode_cannot_reach_a_transaction_opened_outside_the_unit_of_work(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        uow.set_transaction_mode(TransactionMode::new().isolation(Isolation::Serializable));
        let ann = uow.register_new(ledger("ann", 10))?;
        begin_level(&mut db.conn)?;
        let log = db.record();
        let error = uow.commit(&mut db.conn).err().ok_or("a commit in mode SERIALIZABLE inside somebody's transaction is refused")?;
        assert!(matches!(error, uow::Error::TransactionModeInOuterTransaction { .. }), "{error}");
        assert!(error.to_string().contains("SERIALIZABLE"), "the message names the mode: {error}");
        let scoped: Result<(), uow::Error> = uow.transaction(&mut db.conn, |_| Ok(()));
        assert!(matches!(scoped, Err(uow::Error::TransactionModeInOuterTransaction { .. })), "{scoped:?}");
        let flushed = uow.flush(&mut db.conn);
        assert!(matches!(flushed, Err(uow::Error::TransactionModeInOuterTransaction { .. })), "{flushed:?}");
        assert!(log.all().is_empty(), "nothing sent: {:?}", log.all());
        assert_eq!(uow.state(&ann)?, uow::EntityState::New);

        // Without a mode the unit of work works inside it, on a savepoint.
        uow.set_transaction_mode(TransactionMode::new());
        uow.flush(&mut db.conn)?;
        assert_ne!(uow.get(&ann)?.id, 0);
        // The outer transaction ends, or it would hold its locks past the test.
        <Conn as diesel::Connection>::TransactionManager::rollback_transaction(&mut db.conn)?;
        Ok(())
    }
}

/// Behaviours that need a server's concurrent sessions (PostgreSQL, MySQL/MariaDB).
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod server {
    use super::*;
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;

    /// The balance of ledger row `id`, read by Diesel.
    fn balance<C>(conn: &mut C, id: i32) -> QueryResult<i64>
    where
        C: diesel::connection::LoadConnection + 'static,
        for<'a> diesel::dsl::Select<diesel::dsl::Find<ledger::table, i32>, ledger::balance>:
            diesel::query_dsl::LoadQuery<'a, C, i64>,
    {
        ledger::table
            .find(id)
            .select(ledger::balance)
            .get_result(conn)
    }

    // Each level's promise, seen from inside a scope while another session commits a change.
    server_backend_tests! {
        fn read_committed_sees_a_concurrent_commit_and_repeatable_read_does_not(db) {
            let mut seed = UnitOfWork::<Conn>::new();
            let row = seed.register_new(ledger("ann", 10))?;
            seed.commit(&mut db.conn)?;
            let id = seed.get(&row)?.id;
            let mut other = db.connect();
            for (level, sees_the_commit) in [(Isolation::ReadCommitted, true), (Isolation::RepeatableRead, false), (Isolation::Serializable, false)] {
                let before = balance(&mut other, id)?;
                let after = before + 1;
                let mut uow = UnitOfWork::<Conn>::new();
                uow.set_transaction_mode(TransactionMode::new().isolation(level));
                let seen = uow.transaction(&mut db.conn, |scope| {
                    let ann = scope.load::<LedgerAccount>(id)?;
                    assert_eq!(scope.get(&ann)?.balance, before);
                    if level == Isolation::Serializable && Conn::KIND == Kind::Mysql {
                        // InnoDB's SERIALIZABLE reads lock: the other session cannot write the row.
                        other.batch_execute("SET SESSION innodb_lock_wait_timeout = 1").map_err(uow::Error::Query)?;
                        let blocked = diesel::update(ledger::table.find(id)).set(ledger::balance.eq(after)).execute(&mut other);
                        assert!(blocked.is_err(), "a row read at SERIALIZABLE is locked on MySQL");
                        return Ok::<_, uow::Error>(before);
                    }
                    diesel::update(ledger::table.find(id)).set(ledger::balance.eq(after)).execute(&mut other).map_err(uow::Error::Query)?;
                    scope.refresh(&ann)?;
                    Ok(scope.get(&ann)?.balance)
                })?;
                let expected = if sees_the_commit { after } else { before };
                assert_eq!(seen, expected, "{level}: a re-read {} the concurrent commit", if sees_the_commit { "sees" } else { "does not see" });
            }
            Ok(())
        }

        fn a_read_only_unit_of_work_reads_and_the_database_refuses_its_writes(db) {
            let mut seed = UnitOfWork::<Conn>::new();
            let row = seed.register_new(ledger("ann", 10))?;
            seed.commit(&mut db.conn)?;
            let id = seed.get(&row)?.id;

            let mut uow = UnitOfWork::<Conn>::new();
            uow.set_transaction_mode(TransactionMode::new().isolation(Isolation::RepeatableRead).read_only());
            let read = uow.transaction(&mut db.conn, |scope| {
                let ann = scope.load::<LedgerAccount>(id)?;
                Ok::<_, uow::Error>(scope.get(&ann)?.balance)
            })?;
            assert_eq!(read, 10);
            let ann = uow.find::<LedgerAccount>(&id).ok_or("loaded")?;
            uow.get_mut(&ann)?.balance = 11;
            let error = uow.commit(&mut db.conn).err().ok_or("a write in a read-only transaction fails")?;
            assert!(matches!(error, uow::Error::Statement { .. }), "the database's refusal: {error}");
            let text = error.to_string().to_lowercase();
            assert!(text.contains("read-only") || text.contains("read only"), "{error}");
            assert_eq!(uow.get(&ann)?.balance, 11, "memory as before the commit");
            assert_eq!(uow.state(&ann)?, uow::EntityState::Dirty);
            assert_eq!(balance(&mut db.conn, id)?, 10);

            uow.set_transaction_mode(TransactionMode::new());
            uow.commit(&mut db.conn)?;
            assert_eq!(balance(&mut db.conn, id)?, 11, "the same changes commit once the mode allows writes");
            Ok(())
        }

        // Write skew: two on-call doctors each check that two are on call, then each takes
        // themself off. Each changes only their own row, so there is no version conflict; only
        // SERIALIZABLE sees that the outcome matches no serial order.
        fn serializable_turns_write_skew_into_a_failure_that_retry_reruns(db) {
            /// Both doctors go off call at once, each in a unit of work in `mode` rerun by `retry`
            /// on a transient failure; returns how many are still on call and how many runs failed.
            fn both_go_off_call(db: &common::TestDb<Conn>, ids: [i32; 2], mode: TransactionMode) -> Result<(i64, usize), String> {
                let both_read = std::sync::Arc::new(std::sync::Barrier::new(2));
                let workers: Vec<_> = [(ids[0], ids[1]), (ids[1], ids[0])]
                    .into_iter()
                    .map(|(me, colleague)| {
                        let mut conn = db.connect();
                        let both_read = both_read.clone();
                        std::thread::spawn(move || {
                            let mut failures = 0;
                            let policy = uow::RetryPolicy::default().attempts(10).backoff(std::time::Duration::from_millis(5), std::time::Duration::from_millis(50));
                            let result = uow::retry(&policy, |attempt| {
                                let mut uow = UnitOfWork::<Conn>::new();
                                uow.set_transaction_mode(mode);
                                let outcome = uow.transaction(&mut conn, |scope| {
                                    let mine = scope.load::<LedgerAccount>(me);
                                    let theirs = scope.load::<LedgerAccount>(colleague);
                                    if attempt == 1 {
                                        both_read.wait();
                                    }
                                    let (mine, theirs) = (mine?, theirs?);
                                    let on_call = scope.get(&mine)?.balance + scope.get(&theirs)?.balance;
                                    if on_call >= 2 {
                                        scope.get_mut(&mine)?.balance = 0;
                                    }
                                    Ok::<_, uow::Error>(())
                                });
                                if let Err(e) = &outcome {
                                    assert!(e.is_transient(), "only serialization failures or deadlocks: {e}");
                                    failures += 1;
                                }
                                outcome
                            });
                            result.map(|()| failures).map_err(|e| e.to_string())
                        })
                    })
                    .collect();
                let mut failures = 0;
                for worker in workers {
                    failures += worker.join().map_err(|_| "worker panicked".to_string())??;
                }
                let mut conn = db.connect();
                let on_call = ids.iter().map(|id| balance(&mut conn, *id)).sum::<QueryResult<i64>>();
                Ok((on_call.map_err(|e| e.to_string())?, failures))
            }

            let mut seed = UnitOfWork::<Conn>::new();
            let a = seed.register_new(ledger("alice", 1))?;
            let b = seed.register_new(ledger("bob", 1))?;
            seed.commit(&mut db.conn)?;
            let ids = [seed.get(&a)?.id, seed.get(&b)?.id];

            let (on_call, failures) = both_go_off_call(&db, ids, TransactionMode::new().isolation(Isolation::Serializable))?;
            assert_eq!(on_call, 1, "one doctor stays on call");
            assert!(failures >= 1, "the second transaction failed and was rerun");

            if Conn::KIND == Kind::Postgres {
                // PostgreSQL's default level lets both through: the check above is what
                // SERIALIZABLE adds. (MySQL's reads at REPEATABLE READ do not lock, but its
                // SERIALIZABLE ones do, which is what turned the skew into a deadlock above.)
                diesel::update(ledger::table).set(ledger::balance.eq(1)).execute(&mut db.conn)?;
                let (on_call, failures) = both_go_off_call(&db, ids, TransactionMode::new().isolation(Isolation::ReadCommitted))?;
                assert_eq!((on_call, failures), (0, 0), "READ COMMITTED: write skew, nobody on call");
            }
            Ok(())
        }
    }
}

backend_tests_on! { sqlite: sqlite_modes, sqlite_modes_async;
    fn sqlite_refuses_read_only_before_sending_anything(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        uow.set_transaction_mode(TransactionMode::new().read_only());
        let ann = uow.register_new(ledger("ann", 10))?;
        let log = db.record();
        let error = uow.commit(&mut db.conn).err().ok_or("SQLite has no read-only transactions")?;
        assert!(matches!(error, uow::Error::TransactionModeUnsupported { backend: "SQLite", .. }), "{error}");
        assert!(error.to_string().contains("read-only"), "{error}");
        assert!(log.all().is_empty(), "nothing sent: {:?}", log.all());
        assert_eq!(uow.state(&ann)?, uow::EntityState::New);
        let scoped: Result<(), uow::Error> = uow.transaction(&mut db.conn, |_| Ok(()));
        assert!(matches!(scoped, Err(uow::Error::TransactionModeUnsupported { .. })), "{scoped:?}");
        Ok(())
    }
}
