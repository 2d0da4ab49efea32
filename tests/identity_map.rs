//! Identity map: one row, one instance (README promise 5); `load`, `attach` and `refresh`.

mod common;

use common::*;
use diesel::prelude::*;
use uow::prelude::*;

fn seed<C: TestBackend>(db: &mut TestDb<C>) -> Result<Vec<i32>, uow::Error>
where
    C::Backend: uow::Dialect,
    Account: Persist<C::Backend>,
{
    let mut uow = UnitOfWork::<C>::new();
    let handles: Vec<_> = ["ann", "bob"]
        .iter()
        .map(|o| uow.register_new(account(o, 10)))
        .collect::<Result<_, _>>()?;
    uow.commit(&mut db.conn)?;
    handles.iter().map(|h| uow.get(h).map(|a| a.id)).collect()
}

backend_tests! {
    fn load_reads_once_and_then_returns_the_held_instance(db) {
        let ids = seed(&mut db)?;
        let mut uow = UnitOfWork::<Conn>::new();
        let log = db.record();
        let ann = uow.load::<Account>(&mut db.conn, ids[0])?;
        assert_eq!(log.all().len(), 1, "one SELECT: {:?}", log.all());
        assert_eq!(uow.get(&ann)?.owner, "ann");
        assert_eq!(uow.state(&ann)?, EntityState::Clean);
        log.clear();
        let again = uow.load::<Account>(&mut db.conn, ids[0])?;
        assert_eq!(again, ann);
        assert!(log.all().is_empty(), "held: no query");

        let missing = uow.load::<Account>(&mut db.conn, 9999).expect_err("no such row");
        assert!(matches!(missing, uow::Error::NotFound { entity: "Account", .. }), "{missing}");

        let tag = {
            let mut seed = UnitOfWork::<Conn>::new();
            seed.register_new(Tag { code: "k".into(), label: "K".into() })?;
            seed.register_new(Membership { user_id: 1, group_id: 2, role: "r".into() })?;
            seed.commit(&mut db.conn)?;
            uow.load::<Tag>(&mut db.conn, "k".to_string())?
        };
        assert_eq!(uow.get(&tag)?.label, "K");
        let m = uow.load::<Membership>(&mut db.conn, (1, 2))?;
        assert_eq!(uow.get(&m)?.role, "r");
        Ok(())
    }

    fn a_row_read_again_never_overwrites_in_memory_changes(db) {
        let ids = seed(&mut db)?;
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.load::<Account>(&mut db.conn, ids[0])?;
        uow.get_mut(&ann)?.balance = 99;
        let rows: Vec<Account> = accounts::table.order(accounts::id).load(&mut db.conn)?;
        let handles = uow.attach_all(rows);
        assert_eq!(handles[0], ann, "the held instance is reused");
        assert_eq!(uow.get(&ann)?.balance, 99, "the in-memory change survives");
        assert_eq!(uow.changed_columns(&ann)?, ["balance"]);
        assert_eq!(uow.len(), 2);
        let loaded = uow.load::<Account>(&mut db.conn, ids[0])?;
        assert_eq!(uow.get(&loaded)?.balance, 99);
        Ok(())
    }

    fn refresh_discards_local_changes_and_reads_the_row(db) {
        let ids = seed(&mut db)?;
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.load::<Account>(&mut db.conn, ids[0])?;
        uow.get_mut(&ann)?.balance = 99;
        // Someone else changes the row meanwhile.
        let mut other = db.connect();
        diesel::update(accounts::table.find(ids[0])).set(accounts::note.eq("theirs")).execute(&mut other)?;

        uow.refresh(&mut db.conn, &ann)?;
        let held = uow.get(&ann)?;
        assert_eq!((held.balance, held.note.as_deref()), (10, Some("theirs")));
        assert_eq!(uow.state(&ann)?, EntityState::Clean);
        let log = db.record();
        assert!(uow.commit(&mut db.conn)?.is_empty());
        assert!(log.all().is_empty());

        let new = uow.register_new(account("new", 1))?;
        assert!(matches!(uow.refresh(&mut db.conn, &new), Err(uow::Error::NotFound { .. })));
        diesel::delete(accounts::table.find(ids[1])).execute(&mut other)?;
        let gone = uow.attach(Account { id: ids[1], ..account("bob", 10) });
        assert!(matches!(uow.refresh(&mut db.conn, &gone), Err(uow::Error::NotFound { .. })));

        // A refresh inside a scope that rolls back is undone with it: the local change is back.
        uow.get_mut(&ann)?.balance = 77;
        let before = observe(&uow, &ann);
        let result: Result<(), uow::Error> = uow.transaction(&mut db.conn, |scope| {
            scope.refresh(&ann)?;
            assert_eq!(scope.get(&ann)?.balance, 10);
            Err(uow::Error::NoTransaction)
        });
        assert!(result.is_err());
        assert_eq!(observe(&uow, &ann), before);
        Ok(())
    }

    fn a_unit_of_work_dropped_without_commit_writes_nothing(db) {
        let ids = seed(&mut db)?;
        let before = account_rows(&mut db.conn);
        let log = db.record();
        {
            let mut uow = UnitOfWork::<Conn>::new();
            uow.register_new(account("new", 1))?;
            let ann = uow.load::<Account>(&mut db.conn, ids[0])?;
            uow.get_mut(&ann)?.balance = 0;
            let bob = uow.load::<Account>(&mut db.conn, ids[1])?;
            uow.register_removed(&bob)?;
            assert!(uow.has_changes());
        }
        assert!(log.writes().is_empty(), "{:?}", log.writes());
        assert_eq!(account_rows(&mut db.conn), before);
        Ok(())
    }
}
