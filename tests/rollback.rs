//! A failed commit rolls back the database AND leaves every entity exactly as before the call;
//! fixing the cause and committing again sends each change exactly once (README promise 2).
//!
//! Failures are injected at the first statement (a DELETE stopped by a trigger), a middle one
//! (an UPDATE breaking a CHECK) and the last one (an INSERT breaking a CHECK). With no foreign
//! keys between them, the plan sends deletes, then updates, then inserts.

mod common;

use common::*;
use uow::prelude::*;

/// A unit of work with one committed state and, on top of it, pending work of every kind:
/// `(uow, [new, dirty, removed, clean] handles)`. A macro, so that the test module's own
/// `UnitOfWork` (synchronous or async driver) makes it.
macro_rules! pending_work {
    ($conn:expr) => {{
        let mut uow = UnitOfWork::<Conn>::new();
        let dirty = uow.register_new(account("dirty", 10))?;
        let removed = uow.register_new(account("removed", 20))?;
        let clean = uow.register_new(account("clean", 30))?;
        uow.commit($conn)?;
        let new = uow.register_new(account("new", 40))?;
        uow.get_mut(&dirty)?.balance = 11;
        uow.get_mut(&dirty)?.note = Some("touched".into());
        uow.register_removed(&removed)?;
        (uow, [new, dirty, removed, clean])
    }};
}

type Observed = Vec<(Account, EntityState, Vec<&'static str>)>;

fn observe_all<C>(uow: &UnitOfWork<C>, handles: &[Handle<Account>]) -> Observed
where
    C: uow::Driver,
    Account: Persist<C::Backend>,
{
    handles.iter().map(|h| observe(uow, h)).collect()
}

backend_and_galera_tests! {
    fn failure_at_the_first_statement_changes_nothing(db) {
        let (mut uow, handles) = pending_work!(&mut db.conn);
        let [_, _, removed, _] = handles;
        // The DELETE, first statement, is stopped by a trigger: the removed row is made
        // "locked" in the database behind the unit of work's back.
        let id = uow.get(&removed)?.id;
        {
            use diesel::prelude::*;
            diesel::update(accounts::table.find(id)).set(accounts::owner.eq("locked")).execute(&mut db.conn)?;
        }
        let rows_before = account_rows(&mut db.conn);
        let memory_before = observe_all(&uow, &handles);
        let plan_before = uow.plan()?.to_string();

        let log = db.record();
        let error = uow.commit(&mut db.conn).expect_err("trigger must fail");
        assert!(matches!(error, uow::Error::Statement { operation: uow::Operation::Delete, .. }), "{error}");
        assert!(error.to_string().contains("commit again"), "message says what to do: {error}");
        assert_eq!(log.writes().len(), 1, "stopped at the first statement: {:?}", log.writes());
        assert_eq!(account_rows(&mut db.conn), rows_before, "database rolled back");
        assert_eq!(observe_all(&uow, &handles), memory_before, "memory untouched");
        assert_eq!(uow.plan()?.to_string(), plan_before, "the same work is pending");

        // Fix the cause (unlock the row) and retry: every change lands exactly once.
        {
            use diesel::prelude::*;
            diesel::update(accounts::table.find(id)).set(accounts::owner.eq("removed")).execute(&mut db.conn)?;
        }
        log.clear();
        let report = uow.commit(&mut db.conn)?;
        assert_eq!((report.inserted("accounts"), report.updated("accounts"), report.deleted("accounts")), (1, 1, 1));
        assert_eq!(log.writes().len(), 3, "each change sent once: {:?}", log.writes());
        let owners: Vec<_> = account_rows(&mut db.conn).into_iter().map(|a| (a.owner, a.balance)).collect();
        assert_eq!(owners, [("dirty".into(), 11), ("clean".into(), 30), ("new".into(), 40)]);
        assert!(matches!(uow.get(&removed), Err(uow::Error::UnknownEntity { .. })));
        Ok(())
    }

    fn failure_at_a_middle_statement_rolls_back_the_delete_before_it(db) {
        let (mut uow, handles) = pending_work!(&mut db.conn);
        let [new, dirty, ..] = handles;
        uow.get_mut(&dirty)?.balance = -5; // the UPDATE, after the DELETE, breaks the CHECK
        let rows_before = account_rows(&mut db.conn);
        let memory_before = observe_all(&uow, &handles);

        let log = db.record();
        let error = uow.commit(&mut db.conn).expect_err("CHECK must fail");
        assert!(matches!(error, uow::Error::Statement { operation: uow::Operation::Update, .. }), "{error}");
        assert_eq!(log.writes().len(), 2, "DELETE then the failing UPDATE: {:?}", log.writes());
        assert_eq!(account_rows(&mut db.conn), rows_before, "the DELETE was rolled back");
        assert_eq!(observe_all(&uow, &handles), memory_before);
        assert_eq!(uow.state(&new)?, EntityState::New);

        uow.get_mut(&dirty)?.balance = 11;
        uow.commit(&mut db.conn)?;
        let rows = account_rows(&mut db.conn);
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(rows.iter().filter(|r| r.owner == "new").count(), 1);
        let new_id = uow.get(&new)?.id;
        assert!(rows.iter().any(|r| r.id == new_id && r.owner == "new"));
        Ok(())
    }

    fn failure_at_the_last_statement_rolls_back_everything(db) {
        let (mut uow, handles) = pending_work!(&mut db.conn);
        let [new, ..] = handles;
        uow.get_mut(&new)?.balance = -1; // the INSERT, last statement, breaks the CHECK
        let rows_before = account_rows(&mut db.conn);
        let memory_before = observe_all(&uow, &handles);

        let log = db.record();
        let error = uow.commit(&mut db.conn).expect_err("CHECK must fail");
        assert!(matches!(error, uow::Error::Statement { operation: uow::Operation::Insert, .. }), "{error}");
        assert_eq!(log.writes().len(), 3, "DELETE, UPDATE, failing INSERT: {:?}", log.writes());
        assert_eq!(account_rows(&mut db.conn), rows_before);
        assert_eq!(observe_all(&uow, &handles), memory_before);
        assert_eq!(uow.get(&new)?.id, 0, "no generated key");

        uow.get_mut(&new)?.balance = 40;
        log.clear();
        let report = uow.commit(&mut db.conn)?;
        assert_eq!(report.statements(), 3);
        assert_eq!(log.writes().len(), 3, "each change sent once: {:?}", log.writes());
        assert_eq!(account_rows(&mut db.conn).len(), 3);
        Ok(())
    }

    fn a_failed_commit_of_many_new_entities_keeps_no_key(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let good: Vec<_> = (0..50).map(|i| uow.register_new(account(&format!("a{i}"), i))).collect::<Result<_, _>>()?;
        let bad = uow.register_new(Tag { code: "t".into(), label: "x".into() })?;
        let twin = uow.register_new(Tag { code: "u".into(), label: "x".into() })?; // UNIQUE label
        assert!(uow.commit(&mut db.conn).is_err());
        for h in &good {
            assert_eq!(uow.get(h)?.id, 0);
            assert_eq!(uow.state(h)?, EntityState::New);
        }
        assert!(account_rows(&mut db.conn).is_empty());
        uow.get_mut(&twin)?.label = "y".into();
        uow.commit(&mut db.conn)?;
        let rows = account_rows(&mut db.conn);
        assert_eq!(rows.len(), 50);
        for h in &good {
            let held = uow.get(h)?;
            assert!(rows.iter().any(|r| r == held), "{held:?} matches its row");
        }
        assert_eq!(uow.state(&bad)?, EntityState::Clean);
        Ok(())
    }

    fn the_same_unit_of_work_can_fail_twice_and_then_succeed(db) {
        let (mut uow, handles) = pending_work!(&mut db.conn);
        let [new, dirty, ..] = handles;
        let memory_before = observe_all(&uow, &handles);
        uow.get_mut(&new)?.balance = -1;
        assert!(uow.commit(&mut db.conn).is_err());
        assert!(uow.commit(&mut db.conn).is_err());
        uow.get_mut(&new)?.balance = 40;
        assert_eq!(observe_all(&uow, &handles), memory_before);
        uow.get_mut(&dirty)?.balance = 12;
        uow.commit(&mut db.conn)?;
        assert_eq!(account_rows(&mut db.conn).len(), 3);
        Ok(())
    }
}
