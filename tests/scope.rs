//! Scoped transactions: commit on `Ok`, rollback of database AND memory on `Err` or panic,
//! `flush` inside the scope, nested scopes on savepoints, and the misuse errors around them.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::*;
use diesel::prelude::*;
use uow::prelude::*;

backend_tests! {
    fn a_scope_commits_when_the_closure_returns_ok(db) {
        let id = uow::transaction(&mut db.conn, |uow| {
            let ann = uow.register_new(account("ann", 10))?;
            uow.register_new(account("bob", 20))?;
            uow.flush()?;
            let id = uow.get(&ann)?.id;
            assert_ne!(id, 0, "key readable right after flush");
            uow.get_mut(&ann)?.balance = 11; // after the flush: written at the end of the scope
            Ok::<_, uow::Error>(id)
        })?;
        let rows = account_rows(&mut db.conn);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows.iter().find(|r| r.id == id).map(|r| r.balance), Some(11));
        Ok(())
    }

    fn an_error_rolls_back_flushed_and_unflushed_work_in_database_and_memory(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        let bob = uow.register_new(account("bob", 20))?;
        uow.commit(&mut db.conn)?;
        uow.get_mut(&bob)?.note = Some("pending before the scope".into());
        let rows_before = account_rows(&mut db.conn);
        let memory_before = (observe(&uow, &ann), observe(&uow, &bob));

        let mut new = None;
        let result: Result<(), uow::Error> = uow.transaction(&mut db.conn, |uow| {
            let n = uow.register_new(account("new", 1))?;
            new = Some(n);
            uow.get_mut(&ann)?.balance = 0;
            uow.register_removed(&bob)?;
            uow.flush()?; // INSERT, UPDATEs, DELETE sent; entities settled
            assert_ne!(uow.get(&n)?.id, 0);
            assert_eq!(uow.state(&ann)?, EntityState::Clean);
            uow.get_mut(&ann)?.owner = "unflushed".into();
            Err(uow::Error::NoTransaction) // stands for any failure of the caller
        });
        assert!(result.is_err());
        assert_eq!(account_rows(&mut db.conn), rows_before, "flushed work rolled back");
        assert_eq!((observe(&uow, &ann), observe(&uow, &bob)), memory_before, "memory as at scope start");
        let new = new.ok_or("scope ran")?;
        assert!(matches!(uow.get(&new), Err(uow::Error::UnknownEntity { .. })), "registered inside the failed scope");
        assert_eq!(uow.len(), 2);

        // The unit of work is usable: the change pending before the scope commits.
        let log = db.record();
        let report = uow.commit(&mut db.conn)?;
        assert_eq!(report.updated("accounts"), 1);
        assert_eq!(log.writes().len(), 1);
        assert_eq!(account_rows(&mut db.conn)[1].note.as_deref(), Some("pending before the scope"));
        Ok(())
    }

    fn a_panic_rolls_back_and_the_panic_continues(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        uow.commit(&mut db.conn)?;
        let memory_before = observe(&uow, &ann);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let _: Result<(), uow::Error> = uow.transaction(&mut db.conn, |uow| {
                uow.get_mut(&ann)?.balance = 1;
                uow.register_new(account("new", 1))?;
                uow.flush()?;
                panic!("boom");
            });
        }));
        let payload = outcome.expect_err("the panic continues");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom"));
        assert_eq!(observe(&uow, &ann), memory_before);
        assert_eq!(uow.len(), 1, "the entity registered in the scope is gone");
        assert_eq!(transaction_depth(&mut db.conn), None, "the connection is not left in the transaction");
        // Seen from another session, so uncommitted writes of this one could not pass.
        let rows = account_rows(&mut db.connect());
        assert_eq!(rows.len(), 1, "nothing written");
        assert_eq!(rows[0].balance, 10);
        uow.get_mut(&ann)?.balance = 12;
        uow.commit(&mut db.conn)?;
        assert_eq!(account_rows(&mut db.connect())[0].balance, 12, "the next commit is durable");
        Ok(())
    }

    fn a_failure_at_the_end_of_scope_flush_restores_memory(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        uow.commit(&mut db.conn)?;
        let memory_before = observe(&uow, &ann);
        let result: Result<(), uow::Error> = uow.transaction(&mut db.conn, |uow| {
            uow.register_new(account("ok", 1))?;
            uow.flush()?;
            uow.get_mut(&ann)?.balance = -1; // breaks the CHECK when the scope flushes at its end
            Ok(())
        });
        assert!(matches!(result, Err(uow::Error::Statement { .. })), "{result:?}");
        assert_eq!(observe(&uow, &ann), memory_before);
        assert_eq!(account_rows(&mut db.conn).len(), 1);
        Ok(())
    }

    fn inner_failure_undoes_only_the_inner_changes(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        uow.commit(&mut db.conn)?;
        let log = db.record();
        uow.transaction(&mut db.conn, |outer| {
            outer.get_mut(&ann)?.balance = 20;
            outer.register_new(account("outer", 1))?;
            outer.flush()?;
            let inner: Result<(), uow::Error> = outer.nested(|inner| {
                inner.get_mut(&ann)?.balance = 30;
                inner.register_new(account("inner", 2))?;
                inner.flush()?;
                inner.get_mut(&ann)?.note = Some("inner".into());
                Err(uow::Error::NoTransaction)
            });
            assert!(inner.is_err());
            assert_eq!(outer.len(), 2, "the entity registered inside is gone");
            assert_eq!(outer.get(&ann)?.balance, 20, "inner change undone in memory");
            assert_eq!(outer.get(&ann)?.note, None);
            assert_eq!(outer.state(&ann)?, EntityState::Clean, "as flushed by the outer scope");
            outer.get_mut(&ann)?.owner = "anne".into();
            Ok::<_, uow::Error>(())
        })?;
        let owners: Vec<_> = account_rows(&mut db.conn).into_iter().map(|a| (a.owner, a.balance, a.note)).collect();
        assert_eq!(owners, [("anne".to_string(), 20, None), ("outer".to_string(), 1, None)]);
        assert!(log.all().iter().any(|s| s.to_uppercase().contains("SAVEPOINT")), "nested on a savepoint");
        Ok(())
    }

    fn inner_success_folds_into_the_outer_unit(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        uow.commit(&mut db.conn)?;
        let memory_before = observe(&uow, &ann);
        // Inner succeeds, outer fails: the inner changes go too.
        let result: Result<(), uow::Error> = uow.transaction(&mut db.conn, |outer| {
            outer.nested(|inner| {
                inner.get_mut(&ann)?.balance = 30;
                inner.register_new(account("inner", 2))?;
                inner.flush()?;
                Ok::<_, uow::Error>(())
            })?;
            assert_eq!(outer.get(&ann)?.balance, 30);
            Err(uow::Error::NoTransaction)
        });
        assert!(result.is_err());
        assert_eq!(observe(&uow, &ann), memory_before);
        assert_eq!(account_rows(&mut db.conn).len(), 1);

        // Inner succeeds without flushing, outer succeeds: the inner changes are committed.
        uow.transaction(&mut db.conn, |outer| {
            outer.nested(|inner| {
                inner.get_mut(&ann)?.balance = 31;
                Ok::<_, uow::Error>(())
            })
        })?;
        assert_eq!(account_rows(&mut db.conn)[0].balance, 31);
        assert_eq!(uow.state(&ann)?, EntityState::Clean);
        Ok(())
    }

    fn a_panic_in_a_nested_scope_undoes_it_and_continues(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        uow.commit(&mut db.conn)?;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let _: Result<(), uow::Error> = uow.transaction(&mut db.conn, |outer| {
                outer.get_mut(&ann)?.balance = 20;
                let inner = catch_unwind(AssertUnwindSafe(|| {
                    let _: Result<(), uow::Error> = outer.nested(|inner| {
                        inner.get_mut(&ann)?.balance = 30;
                        inner.flush()?;
                        panic!("inner boom");
                    });
                }));
                assert!(inner.is_err());
                assert_eq!(outer.get(&ann)?.balance, 20);
                Ok(())
            });
        }));
        assert!(outcome.is_ok());
        assert_eq!(account_rows(&mut db.conn)[0].balance, 20);
        Ok(())
    }

    fn scope_misuse_is_a_clear_error(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        uow.register_new(account("ann", 10))?;
        let error = uow.flush(&mut db.conn).expect_err("no transaction");
        assert!(matches!(error, uow::Error::NoTransaction), "{error}");
        assert!(error.to_string().contains("uow.transaction"), "{error}");

        let result: Result<(), uow::Error> = uow.transaction(&mut db.conn, |_| Ok(()));
        result?;
        assert_eq!(account_rows(&mut db.conn).len(), 1, "the scope committed the pending work");

        // flush inside a transaction the caller opened works.
        uow.register_new(account("bob", 1))?;
        db.conn.transaction::<_, uow::Error, _>(|conn| {
            uow.flush(conn)?;
            Ok(())
        })?;
        assert_eq!(account_rows(&mut db.conn).len(), 2);
        Ok(())
    }

    fn a_handle_from_a_rolled_back_scope_stays_stale(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let mut inside = None;
        let result: Result<(), uow::Error> = uow.transaction(&mut db.conn, |scope| {
            inside = Some(scope.register_new(account("gone", 1))?);
            Err(uow::Error::NoTransaction)
        });
        assert!(result.is_err());
        let inside = inside.ok_or("ran")?;
        // The same slot is reused by the next entity; the old handle must not reach it.
        let next = uow.register_new(account("next", 2))?;
        assert!(matches!(uow.get(&inside), Err(uow::Error::UnknownEntity { .. })));
        assert!(uow.register_removed(&inside).is_err());
        assert_eq!(uow.get(&next)?.owner, "next");
        // And after the next entity leaves that slot again, still nothing.
        uow.register_removed(&next)?;
        let third = uow.register_new(account("third", 3))?;
        assert!(uow.get(&inside).is_err());
        assert!(uow.get(&next).is_err());
        assert_eq!(uow.get(&third)?.owner, "third");
        let _ = db;
        Ok(())
    }

    fn slots_emptied_or_made_in_a_failed_scope_are_emptied_and_reused(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        let bob = uow.register_new(account("bob", 20))?;
        uow.commit(&mut db.conn)?;
        // Empty slots when the scope begins: six emptied by a commit, one of them reused and
        // emptied again without one (so on the touched list still). The scope reuses five,
        // the nested scope the sixth (its kept log must fold into the scope's).
        let dropped: Vec<_> = (0..6)
            .map(|i| uow.register_new(account(&format!("dropped {i}"), 0)))
            .collect::<Result<_, _>>()?;
        uow.commit(&mut db.conn)?;
        for h in &dropped {
            uow.register_removed(h)?;
        }
        uow.commit(&mut db.conn)?;
        let listed = uow.register_new(account("listed", 0))?;
        uow.register_removed(&listed)?;
        let tag = uow.register_new(Tag { code: "kept".into(), label: "before".into() })?;
        let rows_before = account_rows(&mut db.conn);
        let memory_before = (observe(&uow, &ann), observe(&uow, &bob), observe(&uow, &tag));

        let mut inside = Vec::new();
        let mut keys = Vec::new();
        let result: Result<(), uow::Error> = uow.transaction(&mut db.conn, |scope| {
            for i in 0..5 {
                inside.push(scope.register_new(account(&format!("in {i}"), i))?);
            }
            scope.register_removed(&ann)?;
            scope.register_new(Tag { code: "new".into(), label: "inside".into() })?;
            scope.get_mut(&tag)?.label = "changed".into();
            scope.flush()?;
            for h in &inside {
                keys.push(scope.get(h)?.id);
            }
            scope.nested(|inner| {
                // The first reuses ann's slot, the second the last slot empty since before
                // the scope.
                inside.push(inner.register_new(account("nested", 7))?);
                inside.push(inner.register_new(account("nested too", 7))?);
                inner.register_removed(&inside[0])?;
                inner.flush()?;
                Ok::<_, uow::Error>(())
            })?;
            inside.push(scope.register_new(account("unflushed", 8))?);
            Err(uow::Error::NoTransaction)
        });
        assert!(result.is_err());
        assert_eq!(account_rows(&mut db.conn), rows_before);
        assert_eq!((observe(&uow, &ann), observe(&uow, &bob), observe(&uow, &tag)), memory_before);
        assert_eq!(uow.len(), 3, "ann, bob and the tag");
        for h in &inside {
            assert!(matches!(uow.get(h), Err(uow::Error::UnknownEntity { .. })));
        }
        for key in &keys {
            assert!(uow.find::<Account>(key).is_none(), "key {key} filed inside the scope is gone");
        }
        assert!(uow.find::<Tag>(&"new".to_string()).is_none());
        assert!(uow.find::<Tag>(&"kept".to_string()).is_some());

        // The emptied slots are reused, each entity written once, old handles stay stale.
        let after: Vec<_> = (0..7)
            .map(|i| uow.register_new(account(&format!("after {i}"), i)))
            .collect::<Result<_, _>>()?;
        uow.register_new(Tag { code: "new".into(), label: "after".into() })?;
        let report = uow.commit(&mut db.conn)?;
        assert_eq!(report.inserted("accounts"), 7);
        assert_eq!(report.inserted("tags"), 2);
        assert_eq!(account_rows(&mut db.conn).len(), 9);
        assert_eq!(uow.len(), 11);
        for (i, h) in after.iter().enumerate() {
            assert_eq!(uow.get(h)?.owner, format!("after {i}"));
        }
        for h in &inside {
            assert!(uow.get(h).is_err());
        }
        Ok(())
    }

    fn a_panic_inside_a_diesel_transaction_in_the_scope_rolls_back_the_whole_scope(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        uow.commit(&mut db.conn)?;
        let memory_before = observe(&uow, &ann);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let _: Result<(), uow::Error> = uow.transaction(&mut db.conn, |scope| {
                scope.get_mut(&ann)?.balance = 1;
                scope.register_new(account("new", 1))?;
                scope.flush()?;
                // Diesel's `transaction` does not roll back when its closure panics: its
                // savepoint is still open while the panic unwinds through the scope.
                let _ = scope
                    .connection()
                    .transaction::<(), diesel::result::Error, _>(|_| panic!("deep boom"));
                Ok(())
            });
        }));
        assert!(outcome.is_err(), "the panic continues");
        assert_eq!(transaction_depth(&mut db.conn), None, "every level rolled back, not only the savepoint");
        assert_eq!(observe(&uow, &ann), memory_before);
        assert_eq!(uow.len(), 1);
        let rows = account_rows(&mut db.connect());
        assert_eq!((rows.len(), rows[0].balance), (1, 10), "nothing written");
        uow.get_mut(&ann)?.balance = 12;
        uow.commit(&mut db.conn)?;
        assert_eq!(account_rows(&mut db.connect())[0].balance, 12, "the next commit is durable");
        Ok(())
    }

    fn a_transaction_left_open_in_a_scope_rolls_the_scope_back(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let result: Result<(), uow::Error> = uow.transaction(&mut db.conn, |scope| {
            scope.register_new(account("new", 1))?;
            scope.flush()?;
            begin_level(scope.connection()).map_err(uow::Error::Query)?;
            Ok(()) // without closing the level it opened: a COMMIT now would only release it
        });
        assert!(matches!(result, Err(uow::Error::TransactionLeftOpen)), "{result:?}");
        assert_eq!(transaction_depth(&mut db.conn), None);
        assert!(uow.is_empty(), "memory rolled back with the database");
        assert!(account_rows(&mut db.connect()).is_empty());
        Ok(())
    }

    fn a_failing_statement_of_the_callers_own_is_a_query_error_and_rolls_the_scope_back(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        uow.register_new(Tag { code: "a".into(), label: "taken".into() })?;
        uow.commit(&mut db.conn)?;
        let rows_before = account_rows(&mut db.conn);
        let memory_before = observe(&uow, &ann);
        let mut new = None;
        let result: Result<(), uow::Error> = uow.transaction(&mut db.conn, |scope| {
            scope.get_mut(&ann)?.balance = 20;
            new = Some(scope.register_new(account("new", 1))?);
            scope.flush()?;
            // The caller's own INSERT, whose label is taken (UNIQUE), its error through `?`.
            scope.connection().with(|conn| {
                diesel::insert_into(tags::table)
                    .values((tags::code.eq("b"), tags::label.eq("taken")))
                    .execute(conn)
            })?;
            Ok(())
        });
        let error = result.expect_err("the label is taken");
        assert!(matches!(error, uow::Error::Query(_)), "{error:?}");
        assert!(error.to_string().contains("a statement of your own"), "{error}");
        let source = std::error::Error::source(&error)
            .and_then(|source| source.downcast_ref::<diesel::result::Error>());
        assert!(
            matches!(source, Some(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _))),
            "{source:?}"
        );
        assert!(error.database_error().is_some() && !error.is_transient());
        // Rolled back, database and memory; nothing left open.
        assert_eq!(transaction_depth(&mut db.conn), None);
        assert_eq!(account_rows(&mut db.connect()), rows_before);
        let tags: i64 = tags::table.count().get_result(&mut db.connect())?;
        assert_eq!(tags, 1);
        assert_eq!(observe(&uow, &ann), memory_before);
        assert!(matches!(uow.get(&new.ok_or("ran")?), Err(uow::Error::UnknownEntity { .. })));
        // The unit of work goes on.
        uow.get_mut(&ann)?.balance = 12;
        uow.commit(&mut db.conn)?;
        assert_eq!(account_rows(&mut db.connect())[0].balance, 12);
        Ok(())
    }

    fn a_failing_statement_of_the_callers_own_in_a_nested_scope_undoes_only_that_scope(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        uow.commit(&mut db.conn)?;
        uow.transaction(&mut db.conn, |outer| {
            outer.get_mut(&ann)?.balance = 20;
            outer.flush()?;
            let inner: Result<(), uow::Error> = outer.nested(|inner| {
                inner.register_new(account("inner", 2))?;
                inner.flush()?;
                inner.connection().with(|conn| {
                    diesel::sql_query("SELECT * FROM no_such_table").execute(conn)
                })?;
                Ok(())
            });
            let error = inner.expect_err("the table does not exist");
            assert!(matches!(error, uow::Error::Query(diesel::result::Error::DatabaseError(..))), "{error:?}");
            assert!(std::error::Error::source(&error).is_some());
            // Only the savepoint was rolled back (on PostgreSQL, that also ends the error
            // state the failed statement put the transaction in).
            assert_eq!(outer.len(), 1);
            outer.get_mut(&ann)?.owner = "anne".into();
            Ok::<_, uow::Error>(())
        })?;
        let rows: Vec<_> = account_rows(&mut db.connect()).into_iter().map(|a| (a.owner, a.balance)).collect();
        assert_eq!(rows, [("anne".to_string(), 20)]);
        Ok(())
    }

    fn a_transient_failure_of_the_callers_own_statement_is_retried(db) {
        // A trigger makes the caller's own INSERT of the tag `busy` fail as a lost race does:
        // a serialization failure (PostgreSQL's SQLSTATE 40001), MySQL's deadlock message,
        // SQLite's "database is locked".
        match <Conn as TestBackend>::KIND {
            Kind::Sqlite => db.exec(
                "CREATE TRIGGER tags_busy BEFORE INSERT ON tags WHEN NEW.code = 'busy' \
                 BEGIN SELECT RAISE(ABORT, 'database is locked'); END",
            ),
            Kind::Postgres => {
                db.exec(
                    "CREATE FUNCTION tags_busy() RETURNS trigger AS $$ BEGIN \
                     IF NEW.code = 'busy' THEN RAISE EXCEPTION 'could not serialize access' \
                     USING ERRCODE = 'serialization_failure'; END IF; RETURN NEW; END $$ \
                     LANGUAGE plpgsql",
                );
                db.exec(
                    "CREATE TRIGGER tags_busy BEFORE INSERT ON tags \
                     FOR EACH ROW EXECUTE FUNCTION tags_busy()",
                );
            }
            Kind::Mysql => db.exec(
                "CREATE TRIGGER tags_busy BEFORE INSERT ON tags FOR EACH ROW BEGIN \
                 IF NEW.code = 'busy' THEN SIGNAL SQLSTATE '40001' SET MESSAGE_TEXT = \
                 'Deadlock found when trying to get lock; try restarting transaction'; END IF; END",
            ),
        }
        let policy = uow::RetryPolicy::default()
            .backoff(std::time::Duration::ZERO, std::time::Duration::ZERO);
        let mut errors = Vec::new();
        let id = uow::retry(&policy, |attempt| {
            let result = uow::transaction(&mut db.conn, |scope| {
                let ann = scope.register_new(account("ann", attempt.into()))?;
                scope.flush()?;
                let code = if attempt == 1 { "busy" } else { "calm" };
                scope.connection().with(|conn| {
                    diesel::insert_into(tags::table)
                        .values((tags::code.eq(code), tags::label.eq(code)))
                        .execute(conn)
                })?;
                Ok::<_, uow::Error>(scope.get(&ann)?.id)
            });
            if let Err(error) = &result {
                errors.push(error.to_string());
                assert!(matches!(error, uow::Error::Query(_)) && error.is_transient(), "{error:?}");
            }
            result
        })?;
        assert_eq!(errors.len(), 1, "run twice: {errors:?}");
        let rows: Vec<_> = account_rows(&mut db.connect()).into_iter().map(|a| (a.id, a.balance)).collect();
        assert_eq!(rows, [(id, 2)], "the first run's INSERT was rolled back");
        let codes: Vec<String> = tags::table.select(tags::code).load(&mut db.connect())?;
        assert_eq!(codes, ["calm"]);
        Ok(())
    }

    fn a_panicking_before_commit_hook_undoes_the_commit(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        uow.commit(&mut db.conn)?;
        let panics = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let p = panics.clone();
        uow.on_before_commit(move |uow| {
            uow.register_new(Tag { code: "audit".into(), label: "audit".into() })?;
            if p.load(std::sync::atomic::Ordering::Relaxed) {
                panic!("hook boom");
            }
            Ok(())
        });
        uow.get_mut(&ann)?.balance = 11;
        let memory_before = observe(&uow, &ann);
        let outcome = catch_unwind(AssertUnwindSafe(|| uow.commit(&mut db.conn)));
        assert!(outcome.is_err(), "the panic continues");
        assert_eq!(observe(&uow, &ann), memory_before);
        assert_eq!(uow.len(), 1, "the hook's registration was undone");
        assert!(!uow.in_scope());
        assert_eq!(transaction_depth(&mut db.conn), None);
        panics.store(false, std::sync::atomic::Ordering::Relaxed);
        uow.commit(&mut db.conn)?;
        assert_eq!(account_rows(&mut db.connect())[0].balance, 11);
        assert_eq!(uow.len(), 2);
        Ok(())
    }
}

// The synchronous driver only: a scope dereferences to a `UnitOfWork<C>` whose `commit`,
// `transaction` and `flush` take a connection, so the calls below compile and must be refused
// at run time. On the async driver they do not compile: a scope dereferences to
// `UnitOfWork<Async<C>>`, and those methods exist only on `AsyncUnitOfWork`.
sync_backend_tests! {
    fn the_unit_of_works_own_writes_are_refused_inside_a_scope(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        uow.register_new(account("ann", 10))?;
        let mut other = db.connect();
        let result: Result<(), uow::Error> = uow.transaction(&mut db.conn, |scope| {
            let commit = scope.commit(&mut other).expect_err("the scope owns the transaction");
            assert!(matches!(commit, uow::Error::CommitInScope), "{commit}");
            let nested: Result<(), uow::Error> = scope.transaction(&mut other, |_| Ok(()));
            assert!(matches!(nested, Err(uow::Error::ScopeOnOtherConnection)), "{nested:?}");
            // Through `Deref`, the unit of work's own flush would write on another connection.
            let flush = UnitOfWork::flush(&mut **scope, &mut other).expect_err("not the scope's connection");
            assert!(matches!(flush, uow::Error::FlushInScope), "{flush}");
            Ok(())
        });
        result?;
        assert_eq!(account_rows(&mut db.conn).len(), 1, "the scope still committed its work");
        Ok(())
    }
}
