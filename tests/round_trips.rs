//! Round trips are the cost of a commit on a server: rows of one shape go in one statement per
//! batch (INSERT, UPDATE, DELETE, versions included), and a batch that conflicts still names
//! the row that did. Statements are counted with Diesel's `Instrumentation`, BEGIN and COMMIT
//! included.

mod common;

use common::*;
use diesel::prelude::*;
use uow::prelude::*;

diesel::table! {
    big_keys (id) {
        id -> BigInt,
        label -> Text,
        note -> Nullable<Text>,
        amount -> Double,
    }
}

/// Keys past 2^53, where a double cannot tell neighbours apart, and values of several types.
#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = big_keys)]
struct BigKey {
    id: i64,
    label: String,
    note: Option<String>,
    amount: f64,
}

/// Every statement sent, transaction control and reads included.
fn sent(log: &StatementLog) -> usize {
    log.all().len()
}

/// Rows in one UPDATE of `columns` changed columns of an entity whose key is one column, as
/// uow cuts them: the bind limit over the values per row, at most 1,000 on SQLite; PostgreSQL
/// binds a column of any number of rows as one array, up to 65,535 rows. MySQL picks each row's
/// values with a `CASE` on its key (the key bound once more per column), at most 200 rows: the
/// cost of a `CASE` grows with its branches.
fn rows_per_update(kind: Kind, columns: usize, versioned: bool) -> usize {
    let version = usize::from(versioned);
    match kind {
        Kind::Sqlite => (32766 / (1 + columns + version)).min(1000),
        Kind::Postgres => 65_535,
        Kind::Mysql => (65535 / (2 * columns + 1 + version)).min(200),
    }
}

/// Rows in one DELETE of versioned rows: the `(k = ? AND version = ?) OR ...` form.
const ROWS_PER_VERSIONED_DELETE: usize = 500;

/// The balances of the ledger rows, by key.
fn ledger_balances<C: TestBackend>(conn: &mut C) -> Vec<(i32, i64, i32)>
where
    for<'a> diesel::dsl::Order<
        diesel::dsl::Select<ledger::table, (ledger::id, ledger::balance, ledger::version)>,
        ledger::id,
    >: diesel::query_dsl::LoadQuery<'a, C, (i32, i64, i32)>,
{
    match ledger::table
        .select((ledger::id, ledger::balance, ledger::version))
        .order(ledger::id)
        .load(conn)
    {
        Ok(rows) => rows,
        Err(e) => panic!("{e}"),
    }
}

backend_tests! {
    fn ten_thousand_changed_rows_take_a_statement_per_batch(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let handles: Vec<_> = (0..10_000).map(|i| uow.register_new(account(&format!("o{i}"), i))).collect::<Result<_, _>>()?;
        uow.commit(&mut db.conn)?;
        for h in &handles {
            uow.get_mut(h)?.balance += 1;
        }
        let log = db.record();
        uow.commit(&mut db.conn)?;
        let batches = 10_000usize.div_ceil(rows_per_update(<Conn as TestBackend>::KIND, 1, false));
        assert!(sent(&log) <= batches + 2, "{} statements for {batches} batches: {:?}", sent(&log), log.all().iter().map(|s| &s[..40.min(s.len())]).collect::<Vec<_>>());
        assert_eq!(account_rows(&mut db.conn).iter().map(|a| a.balance).sum::<i64>(), (1..=10_000).sum::<i64>());

        // Versioned rows: the batch is checked for a row that moved on first (one SELECT).
        let mut uow = UnitOfWork::<Conn>::new();
        let handles: Vec<_> = (0..10_000).map(|i| uow.register_new(ledger(&format!("l{i}"), i))).collect::<Result<_, _>>()?;
        uow.commit(&mut db.conn)?;
        for h in &handles {
            uow.get_mut(h)?.balance += 1;
        }
        log.clear();
        uow.commit(&mut db.conn)?;
        let per_batch = rows_per_update(<Conn as TestBackend>::KIND, 2, true);
        let batches = 10_000usize.div_ceil(per_batch);
        // A SELECT looks for rows that moved on before each batch of more than one row.
        let checks = if per_batch > 1 { batches } else { 0 };
        assert!(sent(&log) <= batches + checks + 2, "{} statements for {batches} batches", sent(&log));
        assert!(uow.get(&handles[9_999])?.version == 2);
        let rows = ledger_balances(&mut db.conn);
        assert!(rows.iter().all(|(_, _, version)| *version == 2));

        // And removed: one DELETE per batch (and the check for versions).
        for h in &handles {
            uow.register_removed(h)?;
        }
        log.clear();
        uow.commit(&mut db.conn)?;
        let batches = 10_000usize.div_ceil(ROWS_PER_VERSIONED_DELETE);
        let checks = batches;
        assert!(sent(&log) <= batches + checks + 2, "{} statements", sent(&log));
        assert!(ledger_balances(&mut db.conn).is_empty());
        Ok(())
    }

    fn a_mixed_commit_takes_a_fixed_handful_of_statements(db) {
        // W6's shape: new parents with new children, retitled children, parents removed with
        // their children.
        let mut uow = UnitOfWork::<Conn>::new();
        let old: Vec<_> = (0..10).map(|i| uow.register_new(Author { id: 0, name: format!("old{i}") })).collect::<Result<_, _>>()?;
        let mut old_books = Vec::new();
        for a in &old {
            for j in 0..10 {
                let b = uow.register_new(Book { id: 0, author_id: 0, title: format!("t{j}") })?;
                uow.set_parent(&b, a)?;
                old_books.push(b);
            }
        }
        let kept = uow.register_new(Author { id: 0, name: "kept".into() })?;
        let kept_books: Vec<_> = (0..200).map(|j| {
            let b = uow.register_new(Book { id: 0, author_id: 0, title: format!("k{j}") })?;
            uow.set_parent(&b, &kept)?;
            Ok::<_, uow::Error>(b)
        }).collect::<Result<_, _>>()?;
        uow.commit(&mut db.conn)?;

        for i in 0..20 {
            let a = uow.register_new(Author { id: 0, name: format!("new{i}") })?;
            for j in 0..5 {
                let b = uow.register_new(Book { id: 0, author_id: 0, title: format!("n{j}") })?;
                uow.set_parent(&b, &a)?;
            }
        }
        for b in &kept_books {
            uow.get_mut(b)?.title.push('!');
        }
        for b in &old_books {
            uow.register_removed(b)?;
        }
        for a in &old {
            uow.register_removed(a)?;
        }
        let log = db.record();
        let report = uow.commit(&mut db.conn)?;
        assert_eq!((report.inserted("authors"), report.inserted("books"), report.updated("books"), report.deleted("books"), report.deleted("authors")), (20, 100, 200, 100, 10));
        // BEGIN, INSERT authors, INSERT books, UPDATE books, DELETE books, DELETE authors,
        // COMMIT; and the backend's reads for generated keys (SQLite: the table's rowids around
        // each INSERT; MySQL: LAST_INSERT_ID and the server's settings).
        assert!(sent(&log) <= 12, "{} statements: {:?}", sent(&log), log.all().iter().map(|s| &s[..50.min(s.len())]).collect::<Vec<_>>());
        assert_eq!(log.writes().len(), 5, "{:?}", log.writes().len());
        Ok(())
    }

    fn a_conflict_in_the_first_a_middle_or_the_last_row_of_an_update_batch_names_that_row(db) {
        for conflicting in [0usize, 24, 49] {
            let mut uow = UnitOfWork::<Conn>::new();
            let handles: Vec<_> = (0..50).map(|i| uow.register_new(ledger(&format!("l{i}"), 100))).collect::<Result<_, _>>()?;
            uow.commit(&mut db.conn)?;
            // Somebody else changes one row: its version moves on, to the one we would write.
            let id = uow.get(&handles[conflicting])?.id;
            diesel::update(ledger::table.find(id)).set((ledger::balance.eq(0), ledger::version.eq(2))).execute(&mut db.connect())?;
            for h in &handles {
                uow.get_mut(h)?.balance += 1;
            }
            let before: Vec<_> = handles.iter().map(|h| observe(&uow, h)).collect();
            let error = uow.commit(&mut db.conn).expect_err("one row moved on");
            assert!(matches!(&error, uow::Error::Conflict { operation: uow::Operation::Update, entity: "LedgerAccount", key, .. } if *key == id.to_string()), "row {conflicting}: {error}");
            // Everything rolled back, in the database and in memory.
            let rows = ledger_balances(&mut db.conn);
            assert!(rows.iter().all(|(row, balance, version)| if *row == id { (*balance, *version) == (0, 2) } else { (*balance, *version) == (100, 1) }), "row {conflicting}: {rows:?}");
            let after: Vec<_> = handles.iter().map(|h| observe(&uow, h)).collect();
            assert_eq!(after, before);
            // Reloaded, the row commits with the others.
            uow.refresh(&mut db.conn, &handles[conflicting])?;
            uow.get_mut(&handles[conflicting])?.balance += 1;
            uow.commit(&mut db.conn)?;
            assert_eq!(uow.get(&handles[conflicting])?.version, 3);
            diesel::delete(ledger::table).execute(&mut db.conn)?;
        }
        Ok(())
    }

    fn a_conflict_in_the_first_a_middle_or_the_last_row_of_a_delete_batch_names_that_row(db) {
        for conflicting in [0usize, 24, 49] {
            let mut uow = UnitOfWork::<Conn>::new();
            let handles: Vec<_> = (0..50).map(|i| uow.register_new(ledger(&format!("l{i}"), 100))).collect::<Result<_, _>>()?;
            uow.commit(&mut db.conn)?;
            let id = uow.get(&handles[conflicting])?.id;
            diesel::update(ledger::table.find(id)).set(ledger::version.eq(7)).execute(&mut db.connect())?;
            for h in &handles {
                uow.register_removed(h)?;
            }
            let log = db.record();
            let error = uow.commit(&mut db.conn).expect_err("one row moved on");
            assert!(matches!(&error, uow::Error::Conflict { operation: uow::Operation::Delete, entity: "LedgerAccount", key, .. } if *key == id.to_string()), "row {conflicting}: {error}");
            assert!(log.writes().is_empty(), "found before anything is deleted: {:?}", log.writes());
            assert_eq!(ledger_balances(&mut db.conn).len(), 50);
            assert!(handles.iter().all(|h| uow.state(h).ok() == Some(EntityState::Removed)));
            // The others go once the row is reloaded (its removal is then taken back).
            uow.refresh(&mut db.conn, &handles[conflicting])?;
            uow.commit(&mut db.conn)?;
            assert_eq!(ledger_balances(&mut db.conn).len(), 1);
            diesel::delete(ledger::table).execute(&mut db.conn)?;
        }
        Ok(())
    }

    fn a_row_deleted_by_somebody_else_in_an_update_batch_is_named(db) {
        for missing in [0usize, 24, 49] {
            let mut uow = UnitOfWork::<Conn>::new();
            let handles: Vec<_> = (0..50).map(|i| uow.register_new(account(&format!("a{i}"), 1))).collect::<Result<_, _>>()?;
            uow.commit(&mut db.conn)?;
            let id = uow.get(&handles[missing])?.id;
            diesel::delete(accounts::table.find(id)).execute(&mut db.connect())?;
            for h in &handles {
                uow.get_mut(h)?.balance = 2;
            }
            let error = uow.commit(&mut db.conn).expect_err("one row is gone");
            assert!(matches!(&error, uow::Error::Conflict { operation: uow::Operation::Update, key, .. } if *key == id.to_string()), "row {missing}: {error}");
            assert!(account_rows(&mut db.conn).iter().all(|a| a.balance == 1), "rolled back");
            diesel::delete(accounts::table).execute(&mut db.conn)?;
        }
        Ok(())
    }

    fn a_batch_writes_each_row_its_own_values_even_where_keys_differ_past_2_pow_53(db) {
        let double = if <Conn as TestBackend>::KIND == Kind::Postgres { "DOUBLE PRECISION" } else { "DOUBLE" };
        db.exec(&format!("CREATE TABLE big_keys (id BIGINT PRIMARY KEY, label TEXT NOT NULL, note TEXT, amount {double} NOT NULL)"));
        let first = (1i64 << 53) + 1;
        let keys: Vec<i64> = (first..first + 6).chain(i64::MAX - 2..=i64::MAX).collect();
        let mut uow = UnitOfWork::<Conn>::new();
        let handles: Vec<_> = keys.iter().map(|&id| uow.register_new(BigKey { id, label: "new".into(), note: Some("old".into()), amount: 0.0 })).collect::<Result<_, _>>()?;
        uow.commit(&mut db.conn)?;
        for (i, h) in handles.iter().enumerate() {
            let row = uow.get_mut(h)?;
            row.label = format!("row {i}");
            row.note = (i % 2 == 0).then(|| format!("note {i}"));
            row.amount = i as f64 + 0.25;
        }
        let log = db.record();
        uow.commit(&mut db.conn)?;
        assert_eq!(log.writes().len(), 1, "one UPDATE for the batch: {:?}", log.writes());
        if <Conn as TestBackend>::KIND == Kind::Postgres {
            // One array per column (nulls among the notes), whatever the number of rows.
            let update = &log.writes()[0];
            assert!(update.contains("unnest($1, $2, $3, $4)") && !update.contains("$5"), "{update}");
        }
        let rows: Vec<(i64, String, Option<String>, f64)> = big_keys::table.order(big_keys::id).load(&mut db.conn)?;
        let held: Vec<(i64, String, Option<String>, f64)> = handles.iter().map(|h| uow.get(h).map(|b| (b.id, b.label.clone(), b.note.clone(), b.amount))).collect::<Result<_, _>>()?;
        assert_eq!(rows, held, "each row got its own values");
        Ok(())
    }
}

// PostgreSQL has no arrays of arrays: an entity with a field of an array type has its batches
// sent as a table of bound values, cut by the bind limit, and still one statement per batch.
#[cfg(feature = "postgres")]
diesel::table! {
    tagged (id) {
        id -> Integer,
        tags -> Array<Integer>,
        label -> Text,
        version -> Integer,
    }
}

#[cfg(feature = "postgres")]
#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = tagged)]
struct Tagged {
    #[tracked(generated)]
    id: i32,
    tags: Vec<i32>,
    label: String,
    #[tracked(version)]
    version: i32,
}

backend_tests_on! { postgres: postgres_array_fields, postgres_array_fields_async;
    fn a_field_of_an_array_type_is_batched_as_a_table_of_values(db) {
        db.exec("CREATE TABLE tagged (id SERIAL PRIMARY KEY, tags INT4[] NOT NULL, label TEXT NOT NULL, version INT NOT NULL)");
        let mut uow = UnitOfWork::<Conn>::new();
        let handles: Vec<_> = (0..30).map(|i| uow.register_new(Tagged { id: 0, tags: vec![i], label: format!("t{i}"), version: 1 })).collect::<Result<_, _>>()?;
        uow.commit(&mut db.conn)?;
        for (i, h) in handles.iter().enumerate() {
            let row = uow.get_mut(h)?;
            row.tags = (0..i as i32 % 4).collect();
            row.label = format!("u{i}");
        }
        let log = db.record();
        uow.commit(&mut db.conn)?;
        let writes = log.writes();
        assert_eq!(writes.len(), 1, "one UPDATE: {writes:?}");
        assert!(!writes[0].contains("unnest"), "no array of arrays: {}", writes[0]);
        let rows: Vec<(i32, Vec<i32>, String, i32)> = tagged::table.order(tagged::id).load(&mut db.conn)?;
        let held: Vec<(i32, Vec<i32>, String, i32)> = handles.iter().map(|h| uow.get(h).map(|t| (t.id, t.tags.clone(), t.label.clone(), t.version))).collect::<Result<_, _>>()?;
        assert_eq!(rows, held);
        assert!(rows.iter().all(|r| r.3 == 2));
        Ok(())
    }
}
