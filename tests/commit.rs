//! Commit: INSERT new entities (keys written back), UPDATE only changed columns, DELETE removed
//! ones, all in one transaction; nothing pending sends nothing. README promises 1, 3 and 4.

mod common;

use common::*;
use diesel::prelude::*;
use uow::prelude::*;

diesel::table! {
    readings (id) {
        id -> Integer,
        value -> Double,
        spare -> Nullable<Double>,
        small -> Float,
    }
}

/// Floating-point fields: NaN is not equal to itself, which must not make them dirty forever.
#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = readings)]
struct Reading {
    id: i32,
    value: f64,
    spare: Option<f64>,
    small: f32,
}

backend_tests! {
    fn commit_inserts_new_entities_and_writes_back_generated_keys(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let handles: Vec<_> = ["ann", "bob", "cy"]
            .iter()
            .enumerate()
            .map(|(i, owner)| uow.register_new(account(owner, 10 * i as i64)))
            .collect::<Result<_, _>>()?;
        assert!(uow.has_changes());
        let report = uow.commit(&mut db.conn)?;
        assert_eq!(report.inserted("accounts"), 3);
        assert_eq!(report.updated("accounts") + report.deleted("accounts"), 0);

        let rows = account_rows(&mut db.conn);
        assert_eq!(rows.len(), 3);
        for handle in &handles {
            let held = uow.get(handle)?;
            assert_ne!(held.id, 0, "generated key written back");
            let row = rows.iter().find(|r| r.id == held.id).ok_or("row missing")?;
            assert_eq!(row, held, "each entity got the key of its own row");
            assert_eq!(uow.state(handle)?, EntityState::Clean);
            assert_eq!(uow.find::<Account>(&held.id), Some(*handle), "filed in the identity map");
        }
        assert!(!uow.has_changes());
        Ok(())
    }

    fn commit_updates_only_the_changed_columns(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        let bob = uow.register_new(account("bob", 20))?;
        uow.commit(&mut db.conn)?;

        let log = db.record();
        uow.get_mut(&ann)?.balance += 5;
        assert_eq!(uow.state(&ann)?, EntityState::Dirty);
        assert_eq!(uow.changed_columns(&ann)?, ["balance"]);
        assert_eq!(uow.state(&bob)?, EntityState::Clean);
        let report = uow.commit(&mut db.conn)?;
        assert_eq!(report.updated("accounts"), 1);

        let writes = log.writes();
        assert_eq!(writes.len(), 1, "one UPDATE: {writes:?}");
        let update = writes[0].to_lowercase();
        assert!(update.starts_with("update"), "{update}");
        assert!(update.contains("balance"), "{update}");
        for column in ["owner", "note"] {
            assert!(!update.contains(column), "{column} is unchanged but written: {update}");
        }
        let rows = account_rows(&mut db.conn);
        assert_eq!(rows[0].balance, 15);
        assert_eq!(rows[1].balance, 20);
        assert_eq!(uow.state(&ann)?, EntityState::Clean, "the committed value is the new baseline");
        Ok(())
    }

    fn several_changed_columns_are_written_together(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        uow.commit(&mut db.conn)?;
        let log = db.record();
        {
            let a = uow.get_mut(&ann)?;
            a.owner = "anne".into();
            a.note = Some("renamed".into());
        }
        assert_eq!(uow.changed_columns(&ann)?, ["owner", "note"]);
        uow.commit(&mut db.conn)?;
        let writes = log.writes();
        assert_eq!(writes.len(), 1);
        assert!(!writes[0].to_lowercase().contains("balance"), "{}", writes[0]);
        let rows = account_rows(&mut db.conn);
        assert_eq!((rows[0].owner.as_str(), rows[0].note.as_deref()), ("anne", Some("renamed")));
        Ok(())
    }

    fn a_field_set_back_to_its_original_value_is_clean(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        uow.commit(&mut db.conn)?;
        let log = db.record();
        uow.get_mut(&ann)?.balance = 99;
        uow.get_mut(&ann)?.balance = 10;
        assert_eq!(uow.state(&ann)?, EntityState::Clean);
        assert!(uow.changed_columns(&ann)?.is_empty());
        let report = uow.commit(&mut db.conn)?;
        assert!(report.is_empty());
        assert!(log.all().is_empty(), "no statement at all: {:?}", log.all());
        Ok(())
    }

    fn a_commit_with_nothing_pending_sends_no_statement(db) {
        let mut seed = UnitOfWork::<Conn>::new();
        for i in 0..20 {
            seed.register_new(account(&format!("owner{i}"), i))?;
        }
        seed.commit(&mut db.conn)?;

        let mut uow = UnitOfWork::<Conn>::new();
        let rows = account_rows(&mut db.conn);
        let handles = uow.attach_all(rows);
        assert_eq!(uow.len(), 20);
        // Borrowing without changing anything is not a change either.
        let _ = uow.get_mut(&handles[3])?;
        let log = db.record();
        let report = uow.commit(&mut db.conn)?;
        assert!(report.is_empty());
        assert_eq!(report.statements(), 0);
        assert!(log.all().is_empty(), "not even BEGIN: {:?}", log.all());
        // And an empty unit of work.
        let report = UnitOfWork::<Conn>::new().commit(&mut db.conn)?;
        assert!(report.is_empty());
        assert!(log.all().is_empty());
        Ok(())
    }

    fn a_commit_looks_only_at_the_entities_touched_since_the_last_one(db) {
        let mut seed = UnitOfWork::<Conn>::new();
        for i in 0..300 {
            seed.register_new(account(&format!("owner{i}"), i))?;
        }
        assert_eq!(seed.commit(&mut db.conn)?.examined(), 300, "every new entity");

        let mut uow = UnitOfWork::<Conn>::new();
        let handles = uow.attach_all(account_rows(&mut db.conn));
        let loaded = uow.load::<Account>(&mut db.conn, uow.get(&handles[9])?.id)?;
        assert_eq!(loaded, handles[9], "held: no row read, nothing touched");
        assert_eq!(uow.plan()?.examined(), 0, "300 held, none touched");
        uow.get_mut(&handles[3])?.balance += 1;
        let _ = uow.get_mut(&handles[4])?; // borrowed, left as it was
        uow.register_removed(&handles[5])?;
        uow.register_new(account("new", 1))?;
        assert_eq!(uow.plan()?.examined(), 4);
        let log = db.record();
        let report = uow.commit(&mut db.conn)?;
        assert_eq!(report.examined(), 4, "{report}");
        let counts = (report.inserted("accounts"), report.updated("accounts"), report.deleted("accounts"));
        assert_eq!(counts, (1, 1, 1), "{report}");
        assert_eq!(log.writes().len(), 3, "{:?}", log.writes());

        // Written: nothing is touched any more, whatever the unit of work holds.
        assert_eq!(uow.len(), 300);
        let report = uow.commit(&mut db.conn)?;
        assert_eq!((report.examined(), report.statements()), (0, 0));

        // A scope's report counts its flushes and its end.
        let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = reports.clone();
        uow.on_after_commit(move |report| sink.lock().unwrap().push(report.clone()));
        uow.transaction(&mut db.conn, |scope| {
            scope.get_mut(&handles[10])?.balance += 1;
            assert_eq!(scope.flush()?.examined(), 1);
            scope.get_mut(&handles[11])?.balance += 1;
            scope.get_mut(&handles[12])?.balance += 1;
            Ok::<_, uow::Error>(())
        })?;
        let reports = reports.lock().unwrap().clone();
        assert_eq!(reports.len(), 1);
        assert_eq!((reports[0].examined(), reports[0].updated("accounts")), (3, 3), "{}", reports[0]);
        Ok(())
    }

    fn attached_rows_are_tracked_without_register_dirty(db) {
        let mut seed = UnitOfWork::<Conn>::new();
        seed.register_new(account("ann", 10))?;
        seed.register_new(account("bob", 20))?;
        seed.commit(&mut db.conn)?;

        let mut uow = UnitOfWork::<Conn>::new();
        let rows: Vec<Account> = accounts::table
            .filter(accounts::owner.eq("bob"))
            .select(Account::as_select())
            .load(&mut db.conn)?;
        let bob = uow.attach_all(rows)[0];
        uow.get_mut(&bob)?.balance -= 5;
        assert_eq!(uow.state(&bob)?, EntityState::Dirty);
        let report = uow.commit(&mut db.conn)?;
        assert_eq!(report.updated("accounts"), 1);
        assert_eq!(account_rows(&mut db.conn)[1].balance, 15);
        Ok(())
    }

    fn changes_through_the_typed_view_are_tracked_like_get_mut(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let handles: Vec<_> = (0..4).map(|i| uow.register_new(account(&format!("a{i}"), 10))).collect::<Result<_, _>>()?;
        uow.commit(&mut db.conn)?;
        let log = db.record();
        {
            let mut accounts = uow.entities_mut::<Account>();
            accounts.get_mut(&handles[0])?.balance += 1;
            accounts.get_mut(&handles[1])?.note = Some("seen".into());
            accounts.get_mut(&handles[2])?.balance += 0; // borrowed, not changed: stays clean
            accounts.get_mut(&handles[1])?.note = Some("seen twice".into());
            assert_eq!(accounts.get(&handles[0])?.balance, 11);
            let foreign = UnitOfWork::<Conn>::new().register_new(account("x", 1))?;
            assert!(matches!(accounts.get_mut(&foreign), Err(uow::Error::UnknownEntity { .. })));
        }
        assert_eq!(uow.changed_columns(&handles[0])?, ["balance"]);
        assert_eq!(uow.changed_columns(&handles[1])?, ["note"]);
        assert_eq!(uow.state(&handles[2])?, EntityState::Clean);
        assert_eq!(uow.original(&handles[1])?.note, None, "the persisted values were kept");
        let report = uow.commit(&mut db.conn)?;
        assert_eq!(report.updated("accounts"), 2);
        assert_eq!(log.writes().len(), 2);
        let rows = account_rows(&mut db.conn);
        assert_eq!((rows[0].balance, rows[1].note.as_deref()), (11, Some("seen twice")));

        // Inside a scope that rolls back, the view's changes are undone with the rest.
        let before = observe(&uow, &handles[3]);
        let result: Result<(), uow::Error> = uow.transaction(&mut db.conn, |scope| {
            scope.entities_mut::<Account>().get_mut(&handles[3])?.balance = 99;
            scope.flush()?;
            Err(uow::Error::NoTransaction)
        });
        assert!(result.is_err());
        assert_eq!(observe(&uow, &handles[3]), before);
        assert_eq!(account_rows(&mut db.conn)[3].balance, 10);
        Ok(())
    }

    fn every_entity_through_iter_mut_is_tracked_like_get_mut(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let handles: Vec<_> = (0..5).map(|i| uow.register_new(account(&format!("a{i}"), 10))).collect::<Result<_, _>>()?;
        uow.commit(&mut db.conn)?;
        uow.register_removed(&handles[4])?;
        uow.commit(&mut db.conn)?; // handles[4] is gone: stale
        uow.register_removed(&handles[3])?; // pending: still held, so yielded
        let other = UnitOfWork::<Conn>::new().register_new(account("x", 1))?;
        let log = db.record();
        let mut seen = Vec::new();
        for a in uow.entities_mut::<Account>().iter_mut() {
            seen.push(a.owner.clone());
            match a.owner.as_str() {
                "a1" => a.note = Some("seen".into()),
                "a2" => a.balance += 0, // borrowed, not changed: stays clean
                _ => a.balance += 1,
            }
        }
        seen.sort();
        assert_eq!(seen, ["a0", "a1", "a2", "a3"]);
        assert_eq!(uow.changed_columns(&handles[0])?, ["balance"]);
        assert_eq!(uow.changed_columns(&handles[1])?, ["note"]);
        assert_eq!(uow.state(&handles[2])?, EntityState::Clean);
        assert_eq!(uow.state(&handles[3])?, EntityState::Removed, "a change does not take a removal back");
        assert_eq!(uow.original(&handles[0])?.balance, 10, "the persisted values were kept");
        for stale in [uow.get_mut(&handles[4]).map(|_| ()), uow.entities_mut::<Account>().get_mut(&other).map(|_| ())] {
            assert!(matches!(stale, Err(uow::Error::UnknownEntity { .. })), "{stale:?}");
        }
        let report = uow.commit(&mut db.conn)?;
        assert_eq!((report.updated("accounts"), report.deleted("accounts")), (2, 1));
        assert_eq!(log.writes().len(), 3, "an UPDATE per column set, one DELETE: {:?}", log.writes());
        let rows = account_rows(&mut db.conn);
        assert_eq!(rows.iter().map(|r| (r.balance, r.note.as_deref())).collect::<Vec<_>>(), [(11, None), (10, Some("seen")), (10, None)]);

        // A scope that fails undoes every change made through iter_mut; one that succeeds
        // keeps them, written by its flush.
        let before: Vec<_> = handles[..3].iter().map(|h| observe(&uow, h)).collect();
        let result: Result<(), uow::Error> = uow.transaction(&mut db.conn, |scope| {
            for a in scope.entities_mut::<Account>().iter_mut() {
                a.balance = 99;
            }
            scope.flush()?;
            Err(uow::Error::NoTransaction)
        });
        assert!(result.is_err());
        assert_eq!(handles[..3].iter().map(|h| observe(&uow, h)).collect::<Vec<_>>(), before);
        assert!(account_rows(&mut db.conn).iter().all(|r| r.balance != 99));
        uow.transaction(&mut db.conn, |scope| {
            for a in scope.entities_mut::<Account>().iter_mut().take(2) {
                a.balance = 7;
            }
            scope.flush()
        })?;
        assert!(!uow.has_changes());
        let rows = account_rows(&mut db.conn);
        assert_eq!(rows.iter().filter(|r| r.balance == 7).count(), 2);
        assert_eq!(rows.iter().map(|r| r.balance).sum::<i64>(), 7 + 7 + 10);
        Ok(())
    }

    fn iter_mut_skips_the_slots_of_entities_removed_and_committed(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let handles: Vec<_> = (0..8).map(|i| uow.register_new(account(&format!("a{i}"), 10))).collect::<Result<_, _>>()?;
        uow.commit(&mut db.conn)?;
        for i in [0, 2, 3, 7] {
            uow.register_removed(&handles[i])?; // empty slots first, in a row, and last
        }
        uow.commit(&mut db.conn)?;
        uow.register_new(account("new", 5))?; // new: yielded, and inserted with the change
        let mut seen = Vec::new();
        for a in uow.entities_mut::<Account>().iter_mut() {
            a.balance += 1;
            seen.push(a.owner.clone());
        }
        seen.sort();
        assert_eq!(seen, ["a1", "a4", "a5", "a6", "new"]);
        let report = uow.commit(&mut db.conn)?;
        assert_eq!((report.inserted("accounts"), report.updated("accounts")), (1, 4));
        let rows = account_rows(&mut db.conn);
        assert_eq!(rows.iter().map(|r| r.balance).collect::<Vec<_>>(), [11, 11, 11, 11, 6]);
        Ok(())
    }

    fn removed_entities_are_deleted_and_leave_the_unit_of_work(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        let bob = uow.register_new(account("bob", 20))?;
        let cy = uow.register_new(account("cy", 30))?;
        uow.commit(&mut db.conn)?;
        let bob_id = uow.get(&bob)?.id;

        uow.register_removed(&bob)?;
        uow.register_removed(&cy)?;
        assert_eq!(uow.state(&bob)?, EntityState::Removed);
        let log = db.record();
        let report = uow.commit(&mut db.conn)?;
        assert_eq!(report.deleted("accounts"), 2);
        assert_eq!(log.writes().len(), 1, "one DELETE for both rows: {:?}", log.writes());

        let rows = account_rows(&mut db.conn);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].owner, "ann");
        assert_eq!(uow.len(), 1);
        assert!(matches!(uow.get(&bob), Err(uow::Error::UnknownEntity { .. })));
        assert_eq!(uow.find::<Account>(&bob_id), None);
        assert_eq!(uow.state(&ann)?, EntityState::Clean);
        Ok(())
    }

    fn removing_a_new_entity_before_commit_writes_nothing(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        uow.register_removed(&ann)?;
        let log = db.record();
        assert!(uow.commit(&mut db.conn)?.is_empty());
        assert!(log.all().is_empty());
        assert!(account_rows(&mut db.conn).is_empty());
        Ok(())
    }

    fn unremove_keeps_the_row(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        uow.commit(&mut db.conn)?;
        uow.register_removed(&ann)?;
        uow.unremove(&ann)?;
        assert_eq!(uow.state(&ann)?, EntityState::Clean);
        assert!(uow.commit(&mut db.conn)?.is_empty());
        assert_eq!(account_rows(&mut db.conn).len(), 1);
        Ok(())
    }

    fn register_dirty_writes_every_column(db) {
        let mut seed = UnitOfWork::<Conn>::new();
        let ann = seed.register_new(account("ann", 10))?;
        seed.commit(&mut db.conn)?;
        let id = seed.get(&ann)?.id;

        // An entity rebuilt elsewhere (e.g. from a form): the row's values are unknown.
        let mut uow = UnitOfWork::<Conn>::new();
        let edited = Account { id, owner: "ann".into(), balance: 42, note: Some("n".into()) };
        let handle = uow.register_dirty(edited.clone())?;
        assert_eq!(uow.state(&handle)?, EntityState::Dirty);
        assert_eq!(uow.changed_columns(&handle)?, ["owner", "balance", "note"]);
        let log = db.record();
        uow.commit(&mut db.conn)?;
        assert_eq!(log.writes().len(), 1);
        assert_eq!(account_rows(&mut db.conn), vec![edited]);
        assert_eq!(uow.state(&handle)?, EntityState::Clean);
        Ok(())
    }

    fn mixed_commit_runs_in_one_transaction_and_reports_per_table(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        let old = uow.register_new(account("old", 1))?;
        uow.register_new(Tag { code: "a".into(), label: "Alpha".into() })?;
        uow.commit(&mut db.conn)?;

        uow.get_mut(&ann)?.balance = 11;
        uow.register_removed(&old)?;
        uow.register_new(account("new", 5))?;
        uow.register_new(Tag { code: "b".into(), label: "Beta".into() })?;
        uow.register_new(Membership { user_id: 1, group_id: 2, role: "admin".into() })?;
        let preview = uow.plan()?;
        assert_eq!(preview.statement_count(), 5, "{preview}");

        let log = db.record();
        let report = uow.commit(&mut db.conn)?;
        assert_eq!(
            (report.inserted("accounts"), report.updated("accounts"), report.deleted("accounts")),
            (1, 1, 1)
        );
        assert_eq!(report.inserted("tags"), 1);
        assert_eq!(report.inserted("memberships"), 1);
        assert_eq!(report.statements(), 5);
        assert_eq!(report.rows(), 5);
        assert_eq!(log.writes().len(), 5);
        let all = log.all();
        let begins = all.iter().filter(|s| s.to_uppercase().starts_with("BEGIN")
            || s.to_uppercase().starts_with("START TRANSACTION")).count();
        let commits = all.iter().filter(|s| s.to_uppercase().starts_with("COMMIT")).count();
        assert_eq!((begins, commits), (1, 1), "one transaction: {all:?}");
        let owners: Vec<_> = account_rows(&mut db.conn).into_iter().map(|a| (a.owner, a.balance)).collect();
        assert_eq!(owners, [("ann".to_string(), 11), ("new".to_string(), 5)]);
        Ok(())
    }

    fn entities_with_keys_chosen_in_rust(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let a = uow.register_new(Tag { code: "a".into(), label: "Alpha".into() })?;
        let b = uow.register_new(Tag { code: "b".into(), label: "Beta".into() })?;
        uow.commit(&mut db.conn)?;
        assert_eq!(uow.find::<Tag>(&"a".to_string()), Some(a));
        uow.get_mut(&a)?.label = "Alef".into();
        uow.register_removed(&b)?;
        uow.commit(&mut db.conn)?;
        let rows: Vec<Tag> = tags::table.order(tags::code).load(&mut db.conn)?;
        assert_eq!(rows, [Tag { code: "a".into(), label: "Alef".into() }]);
        Ok(())
    }

    fn entities_with_composite_keys(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let m1 = uow.register_new(Membership { user_id: 1, group_id: 1, role: "member".into() })?;
        let m2 = uow.register_new(Membership { user_id: 1, group_id: 2, role: "member".into() })?;
        let m3 = uow.register_new(Membership { user_id: 2, group_id: 1, role: "member".into() })?;
        uow.commit(&mut db.conn)?;
        assert_eq!(uow.find::<Membership>(&(1, 2)), Some(m2));

        uow.get_mut(&m1)?.role = "admin".into();
        uow.register_removed(&m2)?;
        uow.register_removed(&m3)?;
        let log = db.record();
        let report = uow.commit(&mut db.conn)?;
        assert_eq!((report.updated("memberships"), report.deleted("memberships")), (1, 2));
        assert_eq!(log.writes().len(), 2, "{:?}", log.writes());
        let rows: Vec<Membership> = memberships::table.load(&mut db.conn)?;
        assert_eq!(rows, [Membership { user_id: 1, group_id: 1, role: "admin".into() }]);
        Ok(())
    }

    fn the_changeset_works_in_a_hand_written_diesel_update(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        uow.commit(&mut db.conn)?;
        uow.get_mut(&ann)?.balance = 77;
        let id = uow.get(&ann)?.id;
        let changes = uow.changes(&ann)?;
        assert_eq!(changes.columns(), ["balance"]);
        let updated = diesel::update(accounts::table.find(id)).set(changes).execute(&mut db.conn)?;
        assert_eq!(updated, 1);
        assert_eq!(account_rows(&mut db.conn)[0].balance, 77);
        Ok(())
    }

    fn original_values_are_kept_until_commit(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        uow.commit(&mut db.conn)?;
        uow.get_mut(&ann)?.balance = 3;
        assert_eq!(uow.original(&ann)?.balance, 10);
        uow.commit(&mut db.conn)?;
        assert_eq!(uow.original(&ann)?.balance, 3);
        Ok(())
    }

    fn a_float_field_holding_nan_is_clean_until_it_really_changes(db) {
        let double = if <Conn as TestBackend>::KIND == Kind::Postgres { "DOUBLE PRECISION" } else { "DOUBLE" };
        let float = if <Conn as TestBackend>::KIND == Kind::Postgres { "REAL" } else { "FLOAT" };
        db.exec(&format!("CREATE TABLE readings (id INTEGER PRIMARY KEY, value {double} NOT NULL, spare {double}, small {float} NOT NULL)"));
        let mut uow = UnitOfWork::<Conn>::new();
        let reading = uow.register_new(Reading { id: 1, value: 0.0, spare: Some(1.5), small: 0.0 })?;
        uow.commit(&mut db.conn)?;
        // NaN in memory (as a row read from PostgreSQL may hold): a mutable borrow that changes
        // nothing must leave the entity clean, and a commit must send nothing.
        let nan = uow.register_clean(Reading { id: 2, value: f64::NAN, spare: Some(f64::NAN), small: f32::NAN })?;
        uow.get_mut(&nan)?;
        let _ = uow.get_mut(&nan)?.value;
        assert_eq!(uow.state(&nan)?, EntityState::Clean);
        assert_eq!(uow.changed_columns(&nan)?, Vec::<&str>::new());
        assert!(!uow.has_changes());
        let log = db.record();
        uow.commit(&mut db.conn)?;
        assert!(log.all().is_empty(), "{:?}", log.all());
        // Changes are compared by bits: 0.0 -> -0.0 is a change, and so is NaN -> a number.
        uow.get_mut(&reading)?.value = -0.0;
        assert_eq!(uow.changed_columns(&reading)?, ["value"]);
        uow.get_mut(&nan)?.spare = None;
        assert_eq!(uow.changed_columns(&nan)?, ["spare"]);
        uow.get_mut(&nan)?.spare = Some(f64::NAN);
        assert_eq!(uow.state(&nan)?, EntityState::Clean, "NaN again: the same bits");
        uow.get_mut(&reading)?.small = 2.5;
        assert_eq!(uow.changed_columns(&reading)?, ["value", "small"]);
        uow.commit(&mut db.conn)?;
        assert_eq!(uow.state(&reading)?, EntityState::Clean);
        Ok(())
    }
}
