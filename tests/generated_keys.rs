//! Generated keys on every backend: many new rows in one commit, each entity gets the key of
//! its own row (RETURNING on PostgreSQL and SQLite, LAST_INSERT_ID on MySQL/MariaDB).

mod common;

use common::*;
use uow::prelude::*;

/// `@@innodb_autoinc_lock_mode` on MySQL/MariaDB (read only there).
fn autoinc_lock_mode<C: diesel::connection::LoadConnection + 'static>(conn: &mut C) -> i64
where
    C::Backend: diesel::backend::Backend,
{
    let _ = conn;
    #[cfg(feature = "mysql")]
    {
        let any: &mut dyn std::any::Any = conn;
        if let Some(mysql) = any.downcast_mut::<diesel::MysqlConnection>() {
            use diesel::prelude::*;
            let mode = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
                "CAST(@@innodb_autoinc_lock_mode AS SIGNED)",
            ))
            .get_result::<i64>(mysql);
            return mode.unwrap_or_else(|e| panic!("{e}"));
        }
    }
    1
}

backend_tests! {
    fn a_thousand_new_entities_each_get_their_own_rows_key(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let handles: Vec<_> = (0..1000)
            .map(|i| {
                let mut a = account(&format!("owner-{i:04}"), i);
                a.note = Some(format!("note {i}"));
                uow.register_new(a)
            })
            .collect::<Result<_, _>>()?;
        let log = db.record();
        let report = uow.commit(&mut db.conn)?;
        assert_eq!(report.inserted("accounts"), 1000);
        let inserts = log.writes().iter().filter(|s| s.starts_with("INSERT")).count();
        // MySQL hands out consecutive ids to a multi-row INSERT only under the "traditional"
        // and "consecutive" auto-increment lock modes; under "interleaved" uow sends one row
        // per INSERT.
        let expected = if <Conn as TestBackend>::KIND == Kind::Mysql && autoinc_lock_mode(&mut db.conn) == 2 {
            1000
        } else {
            1
        };
        assert_eq!(inserts, expected, "INSERTs for 1,000 new rows");

        let rows = account_rows(&mut db.conn);
        assert_eq!(rows.len(), 1000);
        let mut ids = std::collections::HashSet::new();
        for (i, handle) in handles.iter().enumerate() {
            let held = uow.get(handle)?;
            assert!(ids.insert(held.id), "key {} given twice", held.id);
            let row = rows.iter().find(|r| r.id == held.id).ok_or("no row for key")?;
            // Compare every other column: the key belongs to this entity's own row.
            assert_eq!(row.owner, format!("owner-{i:04}"));
            assert_eq!(row.balance, i as i64);
            assert_eq!(row, held);
            assert_eq!(uow.find::<Account>(&held.id), Some(*handle));
        }
        Ok(())
    }

    fn new_entities_in_two_commits_get_increasing_keys(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let first: Vec<_> = (0..3).map(|i| uow.register_new(account("a", i))).collect::<Result<_, _>>()?;
        uow.commit(&mut db.conn)?;
        let second: Vec<_> = (0..3).map(|i| uow.register_new(account("b", i))).collect::<Result<_, _>>()?;
        uow.commit(&mut db.conn)?;
        let max_first = first.iter().map(|h| uow.get(h).map(|a| a.id)).collect::<Result<Vec<_>, _>>()?.into_iter().max();
        let min_second = second.iter().map(|h| uow.get(h).map(|a| a.id)).collect::<Result<Vec<_>, _>>()?.into_iter().min();
        assert!(max_first < min_second);
        for row in account_rows(&mut db.conn) {
            let handle = uow.find::<Account>(&row.id).ok_or("not in identity map")?;
            assert_eq!(uow.get(&handle)?, &row);
        }
        Ok(())
    }
}

// MySQL/MariaDB only: a session may set `auto_increment_increment` (replication setups do), and
// the ids of a multi-row INSERT then step by it.
backend_module! { "mysql", mysql_increment, diesel::MysqlConnection;
    fn ids_of_a_multi_row_insert_follow_the_auto_increment_step(db) {
        db.exec("SET SESSION auto_increment_increment = 3");
        let mut uow = UnitOfWork::<Conn>::new();
        let handles: Vec<_> = (0..50).map(|i| uow.register_new(account(&format!("o{i}"), i))).collect::<Result<_, _>>()?;
        let log = db.record();
        uow.commit(&mut db.conn)?;
        if autoinc_lock_mode(&mut db.conn) != 2 {
            assert_eq!(log.writes().len(), 1, "one multi-row INSERT");
        }
        let rows = account_rows(&mut db.conn);
        let ids: Vec<i32> = rows.iter().map(|r| r.id).collect();
        assert!(ids.windows(2).all(|w| w[1] - w[0] == 3), "the server stepped by 3: {ids:?}");
        for (i, handle) in handles.iter().enumerate() {
            let held = uow.get(handle)?;
            let row = rows.iter().find(|r| r.id == held.id).ok_or("no row for key")?;
            assert_eq!((row.owner.as_str(), row.balance), (format!("o{i}").as_str(), i as i64));
        }
        Ok(())
    }
}
