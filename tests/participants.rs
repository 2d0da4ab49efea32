//! Beyond the database (README promise 9): participants are prepared before the database
//! commits, made final after it, compensated in reverse order when anything fails; domain
//! events are handed out only for committed changes; hooks run around commits.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use common::*;
use uow::prelude::*;
use uow::{AtomicFile, Participant, ParticipantError};

/// A participant that logs each step into the statement log, and fails where told to.
struct Recorder {
    name: &'static str,
    log: StatementLog,
    fail_prepare: bool,
    panic_prepare: bool,
    fail_commit: bool,
    fail_compensate: bool,
}

impl Recorder {
    fn new(name: &'static str, log: &StatementLog) -> Self {
        Recorder {
            name,
            log: log.clone(),
            fail_prepare: false,
            panic_prepare: false,
            fail_commit: false,
            fail_compensate: false,
        }
    }
}

impl Participant for Recorder {
    fn name(&self) -> String {
        self.name.to_string()
    }
    fn prepare(&mut self) -> Result<(), ParticipantError> {
        self.log.push(format!("prepare {}", self.name));
        if self.panic_prepare {
            panic!("{} broke", self.name);
        }
        if self.fail_prepare {
            return Err("no capacity".into());
        }
        Ok(())
    }
    fn commit(&mut self) -> Result<(), ParticipantError> {
        self.log.push(format!("commit {}", self.name));
        if self.fail_commit {
            return Err("rename failed".into());
        }
        Ok(())
    }
    fn compensate(&mut self) -> Result<(), ParticipantError> {
        self.log.push(format!("compensate {}", self.name));
        if self.fail_compensate {
            return Err("API unreachable".into());
        }
        Ok(())
    }
}

/// The participant steps and the transaction boundaries, in order.
fn protocol(log: &StatementLog) -> Vec<String> {
    log.all()
        .into_iter()
        .filter_map(|s| {
            let upper = s.to_uppercase();
            if s.starts_with("prepare") || s.starts_with("commit ") || s.starts_with("compensate") {
                Some(s)
            } else if upper.starts_with("BEGIN") || upper.starts_with("START TRANSACTION") {
                Some("BEGIN".into())
            } else if upper.starts_with("COMMIT") {
                Some("COMMIT".into())
            } else if upper.starts_with("ROLLBACK") {
                Some("ROLLBACK".into())
            } else if upper.starts_with("INSERT")
                || upper.starts_with("UPDATE")
                || upper.starts_with("WITH \"__UOW_ROWS\"")
            {
                Some("write".into())
            } else {
                None
            }
        })
        .collect()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "uow-{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("{e}");
    }
    dir
}

backend_tests! {
    fn participants_are_prepared_before_and_committed_after_the_database(db) {
        let log = db.record();
        let mut uow = UnitOfWork::<Conn>::new();
        uow.register_new(account("ann", 1))?;
        uow.enlist(Recorder::new("a", &log));
        uow.enlist(Recorder::new("b", &log));
        uow.commit(&mut db.conn)?;
        assert_eq!(protocol(&log), ["prepare a", "prepare b", "BEGIN", "write", "COMMIT", "commit a", "commit b"]);
        // Done after success: the next commit does not run them again.
        log.clear();
        uow.commit(&mut db.conn)?;
        assert!(protocol(&log).is_empty());
        Ok(())
    }

    fn a_failing_prepare_compensates_the_prepared_ones_in_reverse_and_writes_nothing(db) {
        let log = db.record();
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 1))?;
        uow.enlist(Recorder::new("a", &log));
        uow.enlist(Recorder::new("b", &log));
        uow.enlist(Recorder { fail_prepare: true, ..Recorder::new("c", &log) });
        let before = observe(&uow, &ann);
        let error = uow.commit(&mut db.conn).expect_err("c fails");
        assert!(matches!(&error, uow::Error::Participant { participant, .. } if participant == "c"), "{error}");
        assert_eq!(protocol(&log), ["prepare a", "prepare b", "prepare c", "compensate b", "compensate a"]);
        assert!(account_rows(&mut db.conn).is_empty());
        assert_eq!(observe(&uow, &ann), before);
        Ok(())
    }

    fn a_failing_statement_compensates_every_participant_and_the_retry_runs_them_again(db) {
        let log = db.record();
        let mut uow = UnitOfWork::<Conn>::new();
        let bad = uow.register_new(account("ann", -1))?;
        uow.enlist(Recorder::new("a", &log));
        uow.enlist(Recorder::new("b", &log));
        assert!(uow.commit(&mut db.conn).is_err());
        assert_eq!(
            protocol(&log),
            ["prepare a", "prepare b", "BEGIN", "write", "ROLLBACK", "compensate b", "compensate a"]
        );
        log.clear();
        uow.get_mut(&bad)?.balance = 1;
        uow.commit(&mut db.conn)?;
        assert_eq!(protocol(&log), ["prepare a", "prepare b", "BEGIN", "write", "COMMIT", "commit a", "commit b"]);
        Ok(())
    }

    fn a_compensation_that_fails_is_reported_not_swallowed(db) {
        let log = db.record();
        let mut uow = UnitOfWork::<Conn>::new();
        uow.register_new(account("ann", -1))?;
        uow.enlist(Recorder { fail_compensate: true, ..Recorder::new("server web-1", &log) });
        uow.enlist(Recorder::new("dns", &log));
        let error = uow.commit(&mut db.conn).expect_err("CHECK fails");
        match &error {
            uow::Error::Compensation { cause, not_undone } => {
                assert!(matches!(**cause, uow::Error::Statement { .. }), "{cause}");
                assert_eq!(not_undone.len(), 1);
                assert_eq!(not_undone[0].0, "server web-1");
                assert!(not_undone[0].1.contains("API unreachable"));
            }
            other => panic!("expected a compensation error, got {other}"),
        }
        assert!(error.to_string().contains("could NOT be undone"), "{error}");
        assert_eq!(protocol(&log).last().map(String::as_str), Some("compensate server web-1"));
        Ok(())
    }

    fn an_atomic_file_is_replaced_only_when_the_database_commits(db) {
        let dir = temp_dir("atomic");
        let path = dir.join("report.txt");
        std::fs::write(&path, "old")?;
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", -1))?;
        uow.enlist(AtomicFile::new(&path, "new"));
        assert!(uow.commit(&mut db.conn).is_err());
        assert_eq!(std::fs::read_to_string(&path)?, "old", "target untouched");
        assert!(AtomicFile::staged_files(&path)?.is_empty(), "staged file removed");
        uow.get_mut(&ann)?.balance = 1;
        uow.commit(&mut db.conn)?;
        assert_eq!(std::fs::read_to_string(&path)?, "new");
        assert!(AtomicFile::staged_files(&path)?.is_empty());
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }

    fn scopes_prepare_participants_at_their_end_and_drop_them_on_rollback(db) {
        let log = db.record();
        let mut uow = UnitOfWork::<Conn>::new();
        let result: Result<(), uow::Error> = uow.transaction(&mut db.conn, |scope| {
            scope.enlist(Recorder::new("a", &log));
            scope.register_new(account("ann", 1))?;
            scope.flush()?;
            Err(uow::Error::NoTransaction)
        });
        assert!(result.is_err());
        assert!(!protocol(&log).iter().any(|s| s.contains(" a")), "never prepared: {:?}", protocol(&log));
        log.clear();
        uow.transaction(&mut db.conn, |scope| {
            scope.enlist(Recorder::new("b", &log));
            let inner: Result<(), uow::Error> = scope.nested(|inner| {
                inner.enlist(Recorder::new("dropped", &log));
                Err(uow::Error::NoTransaction)
            });
            assert!(inner.is_err());
            scope.register_new(account("bob", 1))?;
            Ok::<_, uow::Error>(())
        })?;
        let steps = protocol(&log);
        assert!(!steps.iter().any(|s| s.contains("dropped")), "{steps:?}");
        let prepare = steps.iter().position(|s| s == "prepare b").ok_or("prepared")?;
        let commit = steps.iter().rposition(|s| s == "COMMIT").ok_or("committed")?;
        let finish = steps.iter().position(|s| s == "commit b").ok_or("finished")?;
        assert!(prepare < commit && commit < finish, "{steps:?}");
        assert_eq!(account_rows(&mut db.conn).len(), 1);
        Ok(())
    }

    fn events_are_handed_out_in_order_only_for_committed_changes(db) {
        #[derive(Debug, PartialEq)]
        struct Opened(String);
        #[derive(Debug, PartialEq)]
        struct Closed(i32);

        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", -1))?;
        uow.record_event(&ann, Opened("ann".into()))?;
        assert!(uow.commit(&mut db.conn).is_err());
        assert!(uow.take_events().is_empty(), "none after a failed commit");
        uow.get_mut(&ann)?.balance = 1;
        let bob = uow.register_new(account("bob", 1))?;
        uow.record_event(&bob, Opened("bob".into()))?;
        uow.commit(&mut db.conn)?;
        let events = uow.take_events();
        let names: Vec<_> = events.iter().filter_map(|e| e.downcast_ref::<Opened>()).map(|o| o.0.as_str()).collect();
        assert_eq!(names, ["ann", "bob"], "recorded order; ann's survived the failed attempt");
        assert_eq!(events[0].entity(), "Account");
        assert!(uow.take_events().is_empty(), "handed out once");

        // A scope that rolls back drops the events recorded inside it.
        let result: Result<(), uow::Error> = uow.transaction(&mut db.conn, |scope| {
            scope.record_event(&ann, Closed(1))?;
            Err(uow::Error::NoTransaction)
        });
        assert!(result.is_err());
        uow.transaction(&mut db.conn, |scope| {
            scope.record_event(&bob, Closed(2))
        })?;
        let events = uow.take_events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].downcast_ref::<Closed>(), Some(&Closed(2)));
        Ok(())
    }

    fn hooks_run_before_commit_after_commit_and_after_rollback(db) {
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut uow = UnitOfWork::<Conn>::new();
        // The before-commit hook may still register changes: an audit tag per commit.
        let counter = Arc::new(Mutex::new(0));
        let c = counter.clone();
        uow.on_before_commit(move |uow| {
            let n = {
                let mut count = c.lock().unwrap_or_else(|p| p.into_inner());
                *count += 1;
                *count
            };
            uow.register_new(Tag { code: format!("audit-{n}"), label: format!("commit {n}") })?;
            Ok(())
        });
        let s = seen.clone();
        uow.on_after_commit(move |report| s.lock().unwrap_or_else(|p| p.into_inner()).push(format!("committed {} rows", report.rows())));
        let s = seen.clone();
        uow.on_after_rollback(move |error| s.lock().unwrap_or_else(|p| p.into_inner()).push(format!("rolled back: {}", error.is_some())));

        let ann = uow.register_new(account("ann", 1))?;
        uow.commit(&mut db.conn)?;
        assert_eq!(uow.len(), 2, "ann and the first audit tag");
        uow.get_mut(&ann)?.balance = -1;
        assert!(uow.commit(&mut db.conn).is_err());
        assert_eq!(*seen.lock().unwrap_or_else(|p| p.into_inner()), ["committed 2 rows", "rolled back: true"]);
        assert_eq!(uow.len(), 2, "the hook's change in the failed commit was undone in memory");
        assert_eq!(uow.state(&ann)?, EntityState::Dirty);
        uow.get_mut(&ann)?.balance = 2;
        uow.commit(&mut db.conn)?;
        assert_eq!(*seen.lock().unwrap_or_else(|p| p.into_inner()), ["committed 2 rows", "rolled back: true", "committed 2 rows"]);
        use diesel::prelude::*;
        let audits: i64 = tags::table.count().get_result(&mut db.conn)?;
        assert_eq!(audits, 2, "one audit row per successful commit");
        Ok(())
    }

    fn a_hook_registering_the_first_entity_of_a_type_is_undone_by_a_failed_commit(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        uow.on_before_commit(|uow| {
            uow.register_new(Tag { code: "audit".into(), label: "audit".into() })?;
            Ok(())
        });
        let ann = uow.register_new(account("ann", -1))?;
        assert!(uow.commit(&mut db.conn).is_err());
        assert_eq!(uow.len(), 1, "only ann: the hook's Tag went with the failed commit");
        assert_eq!(uow.find::<Tag>(&"audit".to_string()), None);
        uow.get_mut(&ann)?.balance = 1;
        uow.commit(&mut db.conn)?;
        assert_eq!(uow.len(), 2);
        Ok(())
    }

    fn participants_are_refused_inside_a_transaction_opened_outside(db) {
        use diesel::Connection;
        let log = db.record();
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 1))?;
        uow.enlist(Recorder::new("a", &log));
        let before = observe(&uow, &ann);
        // The participant would be final when `commit` returns, but this outer transaction
        // can still roll back: refused before anything is prepared or written.
        let result = db.conn.transaction::<_, uow::Error, _>(|conn| uow.commit(conn).map(|_| ()));
        assert!(matches!(result, Err(uow::Error::ParticipantsInOuterTransaction)), "{result:?}");
        let scoped = db.conn.transaction::<_, uow::Error, _>(|conn| uow.transaction(conn, |_| Ok(())));
        assert!(matches!(scoped, Err(uow::Error::ParticipantsInOuterTransaction)), "{scoped:?}");
        assert!(!protocol(&log).iter().any(|s| s.contains(" a")), "{:?}", protocol(&log));
        assert!(account_rows(&mut db.conn).is_empty());
        assert_eq!(observe(&uow, &ann), before);
        // Where the unit of work owns the transaction, the same commit goes through.
        log.clear();
        uow.commit(&mut db.conn)?;
        assert_eq!(protocol(&log), ["prepare a", "BEGIN", "write", "COMMIT", "commit a"]);
        Ok(())
    }

    fn a_panicking_prepare_compensates_the_prepared_ones(db) {
        let log = db.record();
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 1))?;
        uow.enlist(Recorder::new("a", &log));
        uow.enlist(Recorder { panic_prepare: true, ..Recorder::new("b", &log) });
        let before = observe(&uow, &ann);
        let outcome = catch_unwind(AssertUnwindSafe(|| uow.commit(&mut db.conn)));
        assert!(outcome.is_err(), "the panic continues");
        assert_eq!(protocol(&log), ["prepare a", "prepare b", "compensate a"]);
        assert!(account_rows(&mut db.conn).is_empty());
        assert_eq!(observe(&uow, &ann), before);

        // The same inside a scope: prepared at its end, compensated when one panics.
        log.clear();
        let mut scoped = UnitOfWork::<Conn>::new();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let _: Result<(), uow::Error> = scoped.transaction(&mut db.conn, |scope| {
                scope.register_new(account("bob", 1))?;
                scope.enlist(Recorder::new("c", &log));
                scope.enlist(Recorder { panic_prepare: true, ..Recorder::new("d", &log) });
                Ok(())
            });
        }));
        assert!(outcome.is_err());
        let steps = protocol(&log);
        assert_eq!(steps.iter().filter(|s| s.contains("prepare") || s.contains("compensate")).cloned().collect::<Vec<_>>(), ["prepare c", "prepare d", "compensate c"]);
        assert!(!steps.iter().any(|s| s == "COMMIT"), "{steps:?}");
        assert!(account_rows(&mut db.connect()).is_empty());
        Ok(())
    }

    fn a_participant_that_cannot_finish_is_reported_after_the_database_committed(db) {
        let log = db.record();
        let mut uow = UnitOfWork::<Conn>::new();
        uow.register_new(account("ann", 1))?;
        uow.enlist(Recorder { fail_commit: true, ..Recorder::new("file a", &log) });
        uow.enlist(Recorder::new("b", &log));
        let committed = Arc::new(Mutex::new(0));
        let c = committed.clone();
        uow.on_after_commit(move |report| *c.lock().unwrap_or_else(|p| p.into_inner()) += report.rows());
        let error = uow.commit(&mut db.conn).expect_err("file a cannot finish");
        match &error {
            uow::Error::Finalize { failed } => {
                assert_eq!(failed.len(), 1);
                assert_eq!(failed[0].0, "file a");
                assert!(failed[0].1.contains("rename failed"));
            }
            other => panic!("expected Finalize, got {other}"),
        }
        assert_eq!(protocol(&log), ["prepare file a", "prepare b", "BEGIN", "write", "COMMIT", "commit file a", "commit b"], "b still finished");
        assert_eq!(account_rows(&mut db.conn).len(), 1, "the database change stands");
        assert_eq!(*committed.lock().unwrap_or_else(|p| p.into_inner()), 1, "after-commit hooks ran");
        assert!(!uow.has_changes());
        Ok(())
    }

    fn a_before_commit_hook_can_refuse_the_commit(db) {
        let log = db.record();
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 1))?;
        uow.enlist(Recorder::new("a", &log));
        uow.on_before_commit(|_| Err("the books are closed".into()));
        let before = observe(&uow, &ann);
        let error = uow.commit(&mut db.conn).expect_err("refused");
        assert!(matches!(error, uow::Error::Hook(_)), "{error}");
        assert!(error.to_string().contains("the books are closed"), "{error}");
        assert!(protocol(&log).is_empty(), "nothing prepared or sent: {:?}", protocol(&log));
        assert_eq!(observe(&uow, &ann), before);
        Ok(())
    }

    fn events_of_a_refreshed_entity_are_dropped_with_its_changes(db) {
        #[derive(Debug, PartialEq)]
        struct Withdrawn(i64);
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        let bob = uow.register_new(account("bob", 10))?;
        uow.commit(&mut db.conn)?;

        uow.get_mut(&ann)?.balance -= 11;
        uow.record_event(&ann, Withdrawn(11))?;
        uow.get_mut(&bob)?.balance -= 1;
        uow.record_event(&bob, Withdrawn(1))?;
        assert!(uow.commit(&mut db.conn).is_err(), "the CHECK refuses ann's balance");
        // The retry after reloading ann: her first withdrawal is gone, so is its event.
        uow.refresh(&mut db.conn, &ann)?;
        uow.get_mut(&ann)?.balance -= 5;
        uow.record_event(&ann, Withdrawn(5))?;
        uow.commit(&mut db.conn)?;
        let events: Vec<_> = uow.take_events().into_iter().filter_map(|e| e.downcast::<Withdrawn>().ok()).collect();
        assert_eq!(events, [Withdrawn(1), Withdrawn(5)], "bob's event kept, ann's first one dropped");

        // A refresh inside a scope that rolls back is undone, and so is the dropping.
        uow.get_mut(&ann)?.balance -= 1;
        uow.record_event(&ann, Withdrawn(1))?;
        let result: Result<(), uow::Error> = uow.transaction(&mut db.conn, |scope| {
            scope.refresh(&ann)?;
            Err(uow::Error::NoTransaction)
        });
        assert!(result.is_err());
        assert_eq!(uow.get(&ann)?.balance, 4, "the change from before the scope is back");
        uow.commit(&mut db.conn)?;
        let events: Vec<_> = uow.take_events().into_iter().filter_map(|e| e.downcast::<Withdrawn>().ok()).collect();
        assert_eq!(events, [Withdrawn(1)]);
        Ok(())
    }
}

// A COMMIT that fails (a deferred foreign key, checked only at COMMIT). MySQL and MariaDB have
// no deferred constraints, so this runs on SQLite and PostgreSQL only.
diesel::table! {
    deferred_notes (id) {
        id -> Integer,
        account_id -> Integer,
    }
}

#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = deferred_notes)]
struct DeferredNote {
    id: i32,
    account_id: i32,
}

/// The bodies below, on the backends that have deferred constraints.
macro_rules! deferrable_backend_tests {
    ($($tests:tt)*) => {
        backend_tests_on!(sqlite: sqlite_deferred, sqlite_deferred_async; $($tests)*);
        backend_tests_on!(postgres: postgres_deferred, postgres_deferred_async; $($tests)*);
    };
}

deferrable_backend_tests! {
    fn a_failing_database_commit_compensates_the_participants(db) {
        db.exec(
            "CREATE TABLE deferred_notes (id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL \
             REFERENCES accounts (id) DEFERRABLE INITIALLY DEFERRED)",
        );
        let mut setup = UnitOfWork::<Conn>::new();
        let ann = setup.register_new(account("ann", 1))?;
        setup.commit(&mut db.conn)?;
        let ann_id = setup.get(&ann)?.id;
        let log = db.record();
        let mut uow = UnitOfWork::<Conn>::new();
        let note = uow.register_new(DeferredNote { id: 1, account_id: 999 })?;
        uow.enlist(Recorder::new("a", &log));
        uow.enlist(Recorder::new("b", &log));
        let before = observe(&uow, &note);
        let error = uow.commit(&mut db.conn).expect_err("the foreign key fails at COMMIT");
        assert!(matches!(error, uow::Error::Transaction(_)), "{error}");
        let steps = protocol(&log);
        let commit = steps.iter().position(|s| s == "COMMIT").ok_or("COMMIT sent")?;
        assert_eq!(&steps[commit + 1..].iter().filter(|s| !s.starts_with("ROLLBACK")).cloned().collect::<Vec<_>>(), &["compensate b", "compensate a"]);
        assert_eq!(observe(&uow, &note), before);
        assert_eq!(transaction_depth(&mut db.conn), None);

        // The same at the end of a scope.
        log.clear();
        let mut scoped = UnitOfWork::<Conn>::new();
        let result: Result<(), uow::Error> = scoped.transaction(&mut db.conn, |scope| {
            scope.register_new(DeferredNote { id: 2, account_id: 999 })?;
            scope.enlist(Recorder::new("c", &log));
            Ok(())
        });
        assert!(matches!(result, Err(uow::Error::Transaction(_))), "{result:?}");
        let steps = protocol(&log);
        let prepare = steps.iter().position(|s| s == "prepare c").ok_or("prepared")?;
        let commit = steps.iter().position(|s| s == "COMMIT").ok_or("COMMIT sent")?;
        let compensate = steps.iter().position(|s| s == "compensate c").ok_or("compensated")?;
        assert!(prepare < commit && commit < compensate, "{steps:?}");
        assert!(!steps.iter().any(|s| s == "commit c"), "{steps:?}");
        assert!(scoped.is_empty(), "memory rolled back with the scope");
        use diesel::prelude::*;
        let rows: i64 = deferred_notes::table.count().get_result(&mut db.connect())?;
        assert_eq!(rows, 0);

        // Fixed, the first unit of work commits and runs its participants once.
        log.clear();
        uow.get_mut(&note)?.account_id = ann_id;
        uow.commit(&mut db.conn)?;
        assert_eq!(protocol(&log), ["prepare a", "prepare b", "BEGIN", "write", "COMMIT", "commit a", "commit b"]);
        let rows: i64 = deferred_notes::table.count().get_result(&mut db.connect())?;
        assert_eq!(rows, 1);
        Ok(())
    }
}
