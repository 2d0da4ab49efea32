//! Generated keys on every backend: many new rows in one commit, each entity gets the key of
//! its own row (RETURNING on PostgreSQL and SQLite, LAST_INSERT_ID on MySQL/MariaDB).

mod common;

use common::*;
use uow::prelude::*;

/// A unit of work with six new `Keyed` entities (labels `row-0` .. `row-5`), not committed.
/// A macro, so that the test module's own `UnitOfWork` (either driver) makes it.
macro_rules! six_new_keyed {
    () => {{
        let mut uow = UnitOfWork::<Conn>::new();
        let handles: Labelled = (0..6)
            .map(|i| {
                let label = format!("row-{i}");
                uow.register_new(Keyed {
                    id: 0,
                    label: label.clone(),
                })
                .map(|h| (h, label))
            })
            .collect::<Result<_, _>>()?;
        (uow, handles)
    }};
}

/// Every held `Keyed` has the key of the row holding its own label, in memory, in the
/// identity map, and for the UPDATE the next commit sends. A macro, for the test module's own
/// `UnitOfWork` (either driver).
macro_rules! check_keys_belong_to_their_rows {
    ($uow:expr, $conn:expr, $handles:expr, $setup:expr) => {{
        let (uow, conn, handles, setup) = ($uow, $conn, $handles, $setup);
        let mut seen = std::collections::HashSet::new();
        for (handle, label) in handles {
            let held = uow.get(handle)?.clone();
            assert_eq!(&held.label, label, "{setup}");
            assert!(seen.insert(held.id), "{setup}: key {} given twice", held.id);
            assert_eq!(
                uow.find::<Keyed>(&held.id),
                Some(*handle),
                "{setup}: identity map"
            );
            // The row with this entity's key holds this entity's label.
            let mut probe = UnitOfWork::<Conn>::new();
            let row = probe.load::<Keyed>(conn, held.id)?;
            assert_eq!(
                probe.get(&row)?.label,
                *label,
                "{setup}: key {} is another row's",
                held.id
            );
        }
        // An UPDATE through the unit of work reaches the entity's own row.
        for (handle, label) in handles {
            uow.get_mut(handle)?.label = format!("{label}!");
        }
        uow.commit(conn)?;
        for (handle, label) in handles {
            let id = uow.get(handle)?.id;
            let mut probe = UnitOfWork::<Conn>::new();
            let row = probe.load::<Keyed>(conn, id)?;
            assert_eq!(
                probe.get(&row)?.label,
                format!("{label}!"),
                "{setup}: the UPDATE of {label} hit another row"
            );
        }
    }};
}

/// `@@innodb_autoinc_lock_mode` on MySQL/MariaDB (read only there).
fn autoinc_lock_mode<C: diesel::connection::LoadConnection + 'static>(conn: &mut C) -> i64
where
    C::Backend: diesel::backend::Backend,
{
    let _ = conn;
    #[cfg(feature = "mysql")]
    {
        let any: &mut dyn std::any::Any = conn;
        use diesel::prelude::*;
        let mode = diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "CAST(@@innodb_autoinc_lock_mode AS SIGNED)",
        );
        if let Some(mysql) = any.downcast_mut::<diesel::MysqlConnection>() {
            let mode = diesel::select(mode).get_result::<i64>(mysql);
            return mode.unwrap_or_else(|e| panic!("{e}"));
        }
        #[cfg(feature = "async")]
        if let Some(mysql) = any.downcast_mut::<common::on_async::AsyncConnectionWrapper<diesel_async::AsyncMysqlConnection>>() {
            let mode = diesel::select(mode).get_result::<i64>(mysql);
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

    fn generated_keys_that_do_not_grow_with_the_rows_are_matched_to_their_own_rows(db) {
        for (setup, ddl) in unordered_key_tables(<Conn as TestBackend>::KIND) {
            db.exec("DROP TABLE IF EXISTS keyed");
            for statement in ddl {
                db.exec(statement);
            }
            let (mut uow, handles) = six_new_keyed!();
            uow.commit(&mut db.conn)?;
            check_keys_belong_to_their_rows!(&mut uow, &mut db.conn, &handles, setup);
        }
        Ok(())
    }

    fn an_entity_type_whose_only_column_is_its_generated_key_gets_one_row_each(db) {
        db.exec(match <Conn as TestBackend>::KIND {
            Kind::Sqlite => "CREATE TABLE bare (id INTEGER PRIMARY KEY)",
            Kind::Postgres => "CREATE TABLE bare (id BIGSERIAL PRIMARY KEY)",
            Kind::Mysql => "CREATE TABLE bare (id BIGINT AUTO_INCREMENT PRIMARY KEY)",
        });
        let mut uow = UnitOfWork::<Conn>::new();
        let handles: Vec<_> = (0..5).map(|_| uow.register_new(Bare { id: 0 })).collect::<Result<_, _>>()?;
        uow.commit(&mut db.conn)?;
        let mut ids: Vec<i64> = handles.iter().map(|h| uow.get(h).map(|b| b.id)).collect::<Result<_, _>>()?;
        ids.sort_unstable();
        assert_eq!(ids.len(), 5);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "five rows, five keys: {ids:?}");
        let rows: i64 = {
            use diesel::prelude::*;
            bare::table.count().get_result(&mut db.conn)?
        };
        assert_eq!(rows, 5, "one row per entity");
        Ok(())
    }
}

// MySQL/MariaDB only: a session may set `auto_increment_increment` (replication setups do), and
// the ids of a multi-row INSERT then step by it.
backend_tests_on! { mysql: mysql_increment, mysql_increment_async;
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

    // The lock mode and step are read once per unit of work, then again with each INSERT's
    // keys (in the same SELECT), so a step changed between commits, or another connection
    // with its own step, still gives each entity its own row's key.
    fn a_later_commit_asks_nothing_before_its_insert_and_follows_the_step_read_with_its_keys(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let mut handles = Vec::new();
        let log = db.record();
        for i in 0..5 {
            handles.push(uow.register_new(account(&format!("a{i}"), i))?);
        }
        uow.commit(&mut db.conn)?;
        let first = log.all();
        assert!(first.iter().any(|s| s.contains("@@innodb_autoinc_lock_mode")), "{first:#?}");
        let interleaved = autoinc_lock_mode(&mut db.conn) == 2;

        db.exec("SET SESSION auto_increment_increment = 4");
        log.clear();
        let second: Vec<_> = (0..5).map(|i| uow.register_new(account(&format!("b{i}"), i))).collect::<Result<_, _>>()?;
        uow.commit(&mut db.conn)?;
        let sent = log.all();
        let inserts = if interleaved { 5 } else { 1 };
        // BEGIN, then per INSERT the INSERT and the SELECT of its keys, then COMMIT.
        assert_eq!(sent.len(), 2 + 2 * inserts, "{sent:#?}");
        assert!(sent[1].starts_with("INSERT"), "nothing asked before the INSERT: {sent:#?}");
        let mut keys: Vec<i32> = second.iter().map(|h| uow.get(h).map(|a| a.id)).collect::<Result<_, _>>()?;
        keys.sort_unstable();
        assert!(keys.windows(2).all(|w| w[1] - w[0] == 4), "stepped by 4: {keys:?}");

        // The same unit of work on another connection, whose step is 7.
        let mut other = db.connect();
        {
            use diesel::connection::SimpleConnection;
            other.batch_execute("SET SESSION auto_increment_increment = 7")?;
        }
        let third: Vec<_> = (0..5).map(|i| uow.register_new(account(&format!("c{i}"), i))).collect::<Result<_, _>>()?;
        uow.commit(&mut other)?;
        let mut keys: Vec<i32> = third.iter().map(|h| uow.get(h).map(|a| a.id)).collect::<Result<_, _>>()?;
        keys.sort_unstable();
        assert!(keys.windows(2).all(|w| w[1] - w[0] == 7), "stepped by 7: {keys:?}");

        handles.extend(second);
        handles.extend(third);
        let rows = account_rows(&mut db.conn);
        assert_eq!(rows.len(), 15);
        for handle in &handles {
            let held = uow.get(handle)?;
            let row = rows.iter().find(|r| r.id == held.id).ok_or("no row for key")?;
            assert_eq!(row, held, "each entity holds its own row's key");
        }
        Ok(())
    }
}

// SQLite only: where a new row's key is its rowid, the keys of a multi-row INSERT follow from
// `last_insert_rowid()`, and the INSERT goes without `RETURNING`. Every table below must end
// with each entity holding its own row's key; the ones the schema check must refuse go through
// `RETURNING` as before.
backend_tests_on! { sqlite: sqlite_rowid_keys, sqlite_rowid_keys_async;
    fn keys_read_from_the_rowid_only_where_the_key_is_the_rowid_and_nothing_else_inserts(db) {
        for (setup, ddl, by_rowid) in sqlite_rowid_tables() {
            db.exec("DROP TABLE IF EXISTS keyed");
            for statement in ddl {
                db.exec(statement);
            }
            let (mut uow, handles) = six_new_keyed!();
            let log = db.record();
            uow.commit(&mut db.conn)?;
            let inserts: Vec<String> =
                log.writes().into_iter().filter(|s| s.starts_with("INSERT")).collect();
            let returning = inserts.iter().any(|s| s.contains("RETURNING"));
            assert_eq!(returning, !by_rowid, "{setup}: {inserts:#?}");
            if by_rowid {
                assert_eq!(inserts.len(), 1, "{setup}: one INSERT for the six rows");
            }
            check_keys_belong_to_their_rows!(&mut uow, &mut db.conn, &handles, setup);
        }
        Ok(())
    }
}

diesel::table! {
    bare (id) {
        id -> BigInt,
    }
}

#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = bare)]
struct Bare {
    #[tracked(generated)]
    id: i64,
}

/// SQLite tables for `keyed`: the setup's name, its DDL, and whether the keys are the rowids
/// of a table nothing else writes to during the INSERT (so no `RETURNING` is needed).
#[cfg(feature = "sqlite")]
fn sqlite_rowid_tables() -> Vec<(&'static str, Vec<&'static str>, bool)> {
    vec![
        (
            "INTEGER PRIMARY KEY",
            vec!["CREATE TABLE keyed (id INTEGER PRIMARY KEY, label TEXT NOT NULL)"],
            true,
        ),
        (
            "integer primary key, in lower case, rows deleted from the top",
            vec![
                "CREATE TABLE keyed (id integer primary key, label TEXT NOT NULL)",
                "INSERT INTO keyed (label) VALUES ('a'), ('b'), ('c'), ('d')",
                "DELETE FROM keyed WHERE id > 2",
            ],
            true,
        ),
        (
            "AUTOINCREMENT after every row was deleted (rowids go on from the sequence)",
            vec![
                "CREATE TABLE keyed (id INTEGER PRIMARY KEY AUTOINCREMENT, label TEXT NOT NULL)",
                "INSERT INTO keyed (label) VALUES ('a'), ('b'), ('c')",
                "DELETE FROM keyed",
            ],
            true,
        ),
        (
            "INTEGER PRIMARY KEY DESC (not the rowid) with a random default",
            vec![
                "CREATE TABLE keyed (id INTEGER PRIMARY KEY DESC DEFAULT (abs(random()) % 1000000000000), \
                 label TEXT NOT NULL)",
            ],
            false,
        ),
        (
            "BIGINT PRIMARY KEY (not the rowid) with a random default",
            vec![
                "CREATE TABLE keyed (id BIGINT PRIMARY KEY DEFAULT (abs(random()) % 1000000000000), \
                 label TEXT NOT NULL)",
            ],
            false,
        ),
        (
            "WITHOUT ROWID",
            vec![
                "CREATE TABLE keyed (id INTEGER PRIMARY KEY DEFAULT (abs(random()) % 1000000000000), \
                 label TEXT NOT NULL) WITHOUT ROWID",
            ],
            false,
        ),
        (
            "a trigger inserting a row into the same table after each row",
            vec![
                "CREATE TABLE keyed (id INTEGER PRIMARY KEY, label TEXT NOT NULL)",
                "CREATE TRIGGER keyed_echo AFTER INSERT ON keyed WHEN new.label NOT LIKE 'echo%' \
                 BEGIN INSERT INTO keyed (label) VALUES ('echo ' || new.label); END",
            ],
            false,
        ),
        (
            "a TEMP trigger on the table, inserting before each row",
            vec![
                "CREATE TABLE keyed (id INTEGER PRIMARY KEY, label TEXT NOT NULL)",
                "CREATE TEMP TRIGGER keyed_echo BEFORE INSERT ON main.keyed WHEN new.label NOT LIKE 'echo%' \
                 BEGIN INSERT INTO keyed (label) VALUES ('echo ' || new.label); END",
            ],
            false,
        ),
        (
            "rowid past i64::MAX - 6 (SQLite then picks random rowids)",
            vec![
                "CREATE TABLE keyed (id INTEGER PRIMARY KEY, label TEXT NOT NULL)",
                "INSERT INTO keyed (id, label) VALUES (9223372036854775805, 'near the end')",
            ],
            false,
        ),
    ]
}

// Keys the database hands out in an order that is not the order of the rows: every entity
// must still get the key of its own row (matched by something other than key order).
diesel::table! {
    keyed (id) {
        id -> BigInt,
        label -> Text,
    }
}

#[derive(Tracked, Clone, Debug, PartialEq, diesel::Queryable, diesel::Selectable)]
#[tracked(table = keyed)]
#[diesel(table_name = keyed)]
struct Keyed {
    #[tracked(generated)]
    id: i64,
    label: String,
}

/// How each backend can hand out keys that do not grow with the order of the rows: the
/// setup's name and its DDL (a `keyed (id, label)` table).
fn unordered_key_tables(kind: Kind) -> Vec<(&'static str, Vec<&'static str>)> {
    match kind {
        Kind::Sqlite => vec![
            (
                "rowid past i64::MAX (SQLite then picks random rowids)",
                vec![
                    "CREATE TABLE keyed (id INTEGER PRIMARY KEY, label TEXT NOT NULL)",
                    "INSERT INTO keyed (id, label) VALUES (9223372036854775807, 'max')",
                ],
            ),
            (
                "a key that is not the rowid (WITHOUT ROWID, a random default)",
                vec![
                    "CREATE TABLE keyed (id INTEGER PRIMARY KEY DEFAULT (abs(random()) % 1000000000000), \
                     label TEXT NOT NULL) WITHOUT ROWID",
                ],
            ),
            (
                "a key that is not the rowid (a rowid table, a descending default)",
                vec![
                    "CREATE TABLE keyed (id BIGINT NOT NULL UNIQUE DEFAULT (1000000 - random() % 1000), \
                     label TEXT NOT NULL)",
                ],
            ),
        ],
        Kind::Postgres => vec![
            (
                "a descending sequence owned by the key",
                vec![
                    "CREATE TABLE keyed (id BIGINT PRIMARY KEY, label TEXT NOT NULL)",
                    "CREATE SEQUENCE keyed_down INCREMENT BY -1 MINVALUE 1 MAXVALUE 1000000 START 1000000 OWNED BY keyed.id",
                    "ALTER TABLE keyed ALTER id SET DEFAULT nextval('keyed_down')",
                ],
            ),
            (
                "a cycled sequence (8, 9, 10, 1, 2, 3)",
                vec![
                    "CREATE TABLE keyed (id BIGINT PRIMARY KEY, label TEXT NOT NULL)",
                    "CREATE SEQUENCE keyed_cycle MINVALUE 1 MAXVALUE 10 START 8 CYCLE OWNED BY keyed.id",
                    "ALTER TABLE keyed ALTER id SET DEFAULT nextval('keyed_cycle')",
                ],
            ),
            (
                "a descending identity column, GENERATED ALWAYS",
                vec![
                    "CREATE TABLE keyed (id BIGINT GENERATED ALWAYS AS IDENTITY \
                     (INCREMENT BY -1 MINVALUE 1 MAXVALUE 1000 START 1000) PRIMARY KEY, label TEXT NOT NULL)",
                ],
            ),
            (
                "a descending sequence the key does not own",
                vec![
                    "CREATE SEQUENCE keyed_loose INCREMENT BY -1 MINVALUE 1 MAXVALUE 500 START 500",
                    "CREATE TABLE keyed (id BIGINT PRIMARY KEY DEFAULT nextval('keyed_loose'), label TEXT NOT NULL)",
                ],
            ),
            (
                "a key from a random default, no sequence at all",
                vec![
                    "CREATE TABLE keyed (id BIGINT PRIMARY KEY DEFAULT floor(random() * 1000000000000)::bigint, \
                     label TEXT NOT NULL)",
                ],
            ),
        ],
        Kind::Mysql => vec![
            (
                "AUTO_INCREMENT stepping by 5 from offset 3",
                vec![
                    "SET SESSION auto_increment_increment = 5",
                    "SET SESSION auto_increment_offset = 3",
                    "CREATE TABLE keyed (id BIGINT AUTO_INCREMENT PRIMARY KEY, label VARCHAR(100) NOT NULL) AUTO_INCREMENT = 100",
                ],
            ),
            (
                "AUTO_INCREMENT with an offset larger than the step (the server ignores the offset)",
                vec![
                    "SET SESSION auto_increment_increment = 2",
                    "SET SESSION auto_increment_offset = 7",
                    "CREATE TABLE keyed (id BIGINT AUTO_INCREMENT PRIMARY KEY, label VARCHAR(100) NOT NULL)",
                ],
            ),
        ],
    }
}

/// Handles of new `Keyed` entities, each with its label.
type Labelled = Vec<(Handle<Keyed>, String)>;
