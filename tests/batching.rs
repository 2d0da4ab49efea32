//! Batching: new rows go in multi-row INSERTs under the backend's bind-parameter limit, dirty
//! rows with the same changed columns share one statement shape, removed rows go in
//! `DELETE ... IN (...)` batches. Counted with Diesel's `Instrumentation`.

mod common;

use common::*;
use diesel::prelude::*;
use uow::prelude::*;

diesel::table! {
    blobs (id) {
        id -> Integer,
        body -> Text,
    }
}

/// A row carrying a large text, for statements measured in bytes rather than binds.
#[derive(Tracked, Queryable, Clone, Debug, PartialEq)]
#[tracked(table = blobs)]
struct Blob {
    #[tracked(generated)]
    id: i32,
    body: String,
}

fn create_blobs<C: TestBackend>(db: &mut TestDb<C>) {
    db.exec(match C::KIND {
        Kind::Sqlite => "CREATE TABLE blobs (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
        Kind::Postgres => "CREATE TABLE blobs (id SERIAL PRIMARY KEY, body TEXT NOT NULL)",
        Kind::Mysql => {
            "CREATE TABLE blobs (id INTEGER AUTO_INCREMENT PRIMARY KEY, body LONGTEXT NOT NULL)"
        }
    });
}

/// 1 MiB of text that tells rows apart.
fn mebibyte(i: usize) -> String {
    let mut body = format!("{i:04}:");
    body.push_str(&"x".repeat((1 << 20) - body.len()));
    body
}

/// Bind parameters one statement may carry, as `uow` assumes per backend.
fn bind_limit(kind: Kind) -> usize {
    match kind {
        Kind::Sqlite => 32766,
        Kind::Postgres | Kind::Mysql => 65535,
    }
}

/// Rows a composite-key DELETE carries at most, as `uow` caps them (SQLite's expression depth).
const COMPOSITE_KEY_ROWS_PER_DELETE: usize = 500;

/// The INSERT statements logged, whole (PostgreSQL's INSERT of rows with generated keys is a
/// CTE whose VALUES list comes before its `INSERT INTO`).
fn inserts(log: &StatementLog) -> Vec<String> {
    log.all()
        .into_iter()
        .filter(|s| s.contains("INSERT INTO"))
        .collect()
}

/// Rows in the VALUES list of a logged INSERT (the SQL text, before Diesel's bind list).
fn value_rows(insert: &str) -> usize {
    let sql = insert.split(" -- binds").next().unwrap_or(insert);
    match sql.split_once("VALUES ") {
        Some((_, values)) => values.matches("), (").count() + 1,
        None => 0,
    }
}

backend_tests! {
    fn ten_thousand_new_rows_take_the_fewest_inserts_the_bind_limit_allows(db) {
        // Keys chosen in Rust: nothing to read back, so every backend batches.
        let mut uow = UnitOfWork::<Conn>::new();
        for i in 0..10_000 {
            uow.register_new(Membership { user_id: i / 100, group_id: i % 100, role: "m".into() })?;
        }
        let log = db.record();
        uow.commit(&mut db.conn)?;
        let inserts: Vec<String> = log.writes().into_iter().filter(|s| s.starts_with("INSERT")).collect();
        // Three bound columns per row, and at most 1,000 rows per INSERT so that full batches
        // share one prepared statement.
        let rows_per_insert = (bind_limit(<Conn as TestBackend>::KIND) / 3).min(1000);
        let most = 10_000usize.div_ceil(rows_per_insert);
        assert!(inserts.len() <= most, "{} INSERTs, at most {most} expected", inserts.len());
        let rows: Vec<usize> = inserts.iter().map(|s| value_rows(s)).collect();
        assert!(rows.iter().all(|n| *n > 1), "every INSERT carries many rows: {rows:?}");
        assert_eq!(rows.iter().sum::<usize>(), 10_000, "{rows:?}");
        let count: i64 = memberships::table.count().get_result(&mut db.conn)?;
        assert_eq!(count, 10_000);
        Ok(())
    }

    fn ten_thousand_rows_with_generated_keys_batch_where_keys_can_be_matched_exactly(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        for i in 0..10_000 {
            uow.register_new(account(&format!("o{i}"), i))?;
        }
        let log = db.record();
        uow.commit(&mut db.conn)?;
        let inserts = inserts(&log);
        if <Conn as TestBackend>::KIND == Kind::Postgres {
            // PostgreSQL numbers the rows and takes the keys from the sequence, every column
            // bound as one array: one statement whatever the rows, its text free of them.
            assert_eq!(inserts.len(), 1, "{inserts:?}");
            let sql = inserts[0].split(" -- binds").next().unwrap_or(&inserts[0]);
            assert!(sql.contains("unnest($3, $4, $5, $6)") && !sql.contains("$7"), "{sql}");
            assert!(!sql.contains("VALUES"), "{sql}");
        } else {
            // SQLite matches rows through their rowids, MySQL counts on from LAST_INSERT_ID:
            // both in batches of 1,000 rows.
            let rows: Vec<usize> = inserts.iter().map(|s| value_rows(s)).collect();
            assert_eq!(inserts.len(), 10, "{rows:?}");
            assert!(rows.iter().all(|n| *n == 1000), "{rows:?}");
            assert_eq!(rows.iter().sum::<usize>(), 10_000, "{rows:?}");
        }
        let rows = account_rows(&mut db.conn);
        assert_eq!(rows.len(), 10_000);
        assert_eq!(rows.iter().map(|a| a.balance).sum::<i64>(), (0..10_000).sum::<i64>());
        Ok(())
    }

    fn a_thousand_rows_with_the_same_changed_column_take_one_update(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let handles: Vec<_> = (0..1000).map(|i| uow.register_new(account(&format!("o{i}"), i))).collect::<Result<_, _>>()?;
        uow.commit(&mut db.conn)?;
        for h in &handles {
            uow.get_mut(h)?.balance += 1;
        }
        let log = db.record();
        uow.commit(&mut db.conn)?;
        let updates: Vec<String> = log.writes().into_iter().filter(|s| s.starts_with("UPDATE")).collect();
        // MySQL: batches of 200 rows (see `MAX_ROWS_PER_CASE_UPDATE`), all of one SQL text.
        let mysql = <Conn as TestBackend>::KIND == Kind::Mysql;
        assert_eq!(updates.len(), if mysql { 5 } else { 1 }, "one UPDATE for the batch");
        let shapes: std::collections::HashSet<&str> = updates.iter().map(|s| s.split(" -- binds").next().unwrap_or(s)).collect();
        assert_eq!(shapes.len(), 1, "{shapes:?}");
        assert!(updates[0].to_lowercase().contains("balance"), "{}", updates[0]);
        assert_eq!(account_rows(&mut db.conn).iter().map(|a| a.balance).sum::<i64>(), (1..=1000).sum::<i64>());
        // Two column sets: two statements.
        for (i, h) in handles.iter().enumerate() {
            if i % 2 == 0 {
                uow.get_mut(h)?.balance += 1;
            } else {
                uow.get_mut(h)?.note = Some("odd".into());
            }
        }
        log.clear();
        uow.commit(&mut db.conn)?;
        // 500 rows each (MySQL: 200 + 200 + 100 each).
        assert_eq!(log.writes().len(), if mysql { 6 } else { 2 }, "{:?}", log.writes().iter().map(|w| &w[..60.min(w.len())]).collect::<Vec<_>>());
        let rows = account_rows(&mut db.conn);
        assert_eq!(rows.iter().filter(|a| a.note.as_deref() == Some("odd")).count(), 500);
        Ok(())
    }

    fn a_thousand_removed_rows_take_a_handful_of_deletes(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let handles: Vec<_> = (0..1000).map(|i| uow.register_new(account(&format!("o{i}"), i))).collect::<Result<_, _>>()?;
        uow.commit(&mut db.conn)?;
        for h in &handles {
            uow.register_removed(h)?;
        }
        let log = db.record();
        let report = uow.commit(&mut db.conn)?;
        assert_eq!(report.deleted("accounts"), 1000);
        let deletes = log.writes().iter().filter(|s| s.starts_with("DELETE")).count();
        assert!(deletes <= 3, "{deletes} DELETEs");
        assert!(account_rows(&mut db.conn).is_empty());
        Ok(())
    }

    fn the_plan_preview_names_tables_keys_and_old_to_new_values(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        let bob = uow.register_new(account("bob", 20))?;
        uow.commit(&mut db.conn)?;
        let (ann_id, bob_id) = (uow.get(&ann)?.id, uow.get(&bob)?.id);
        uow.get_mut(&ann)?.balance = 15;
        uow.get_mut(&ann)?.note = Some("hi".into());
        uow.register_removed(&bob)?;
        uow.register_new(account("cy", 1))?;
        let preview = uow.plan()?;
        let text = preview.to_string();
        assert_eq!(preview.statement_count(), 3, "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "DELETE accounts (Account): 1 row(s) in 1 statement(s)", "{text}");
        assert_eq!(lines[1], format!("  key {bob_id}"), "{text}");
        assert_eq!(lines[2], "UPDATE accounts (Account): 1 row(s) in 1 statement(s)", "{text}");
        assert_eq!(lines[3], format!("  key {ann_id}: balance: 10 -> 15, note: None -> Some(\"hi\")"), "{text}");
        assert_eq!(lines[4], "INSERT accounts (Account): 1 row(s) in 1 statement(s)", "{text}");
        assert_eq!(lines[5], "  new: owner = \"cy\", balance = 1, note = None", "{text}");
        // A preview sends nothing and changes nothing.
        let log = db.record();
        let again = uow.plan()?;
        assert_eq!(again, preview);
        assert!(log.all().is_empty());
        Ok(())
    }

    fn full_batches_share_one_cached_statement_odd_large_ones_stay_out(db) {
        // Diesel's prepared-statement cache is keyed by SQL text and never evicts; a batch's
        // text depends on its row count. Full 1,000-row batches all have one text and are
        // cached once; a large remainder would leave a statement per size behind, so it is not
        // cached; small batches are. PostgreSQL binds each column as one array: one text for
        // any number of rows, cached once.
        let full_batch_entries = if <Conn as TestBackend>::KIND == Kind::Postgres { 0 } else { 1 };
        use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
        use diesel::connection::{Connection, InstrumentationEvent};
        let cached = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = cached.clone();
        db.conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::CacheQuery { .. } = event {
                counter.fetch_add(1, Relaxed);
            }
        });
        let mut uow = UnitOfWork::<Conn>::new();
        for i in 0..2 {
            uow.register_new(account(&format!("small{i}"), i))?;
        }
        uow.commit(&mut db.conn)?;
        let after_small = cached.load(Relaxed);
        assert!(after_small >= 1, "a two-row INSERT is prepared for the cache");
        for i in 0..1500 {
            uow.register_new(account(&format!("big{i}"), i))?;
        }
        uow.commit(&mut db.conn)?;
        assert_eq!(cached.load(Relaxed), after_small + full_batch_entries, "the full 1,000-row batch is cached, the 500-row rest is not");
        for i in 0..1500 {
            uow.register_new(account(&format!("again{i}"), i))?;
        }
        uow.commit(&mut db.conn)?;
        assert_eq!(cached.load(Relaxed), after_small + full_batch_entries, "the full batch's statement is reused");
        assert_eq!(account_rows(&mut db.conn).len(), 3002);
        Ok(())
    }

    fn update_batches_stay_in_the_statement_cache_only_where_they_share_one_text(db) {
        // SQLite cuts UPDATEs at 1,000 rows (full batches share one cached text; the 500-row
        // rest of 1,500 and a lone 700-row batch are not cached), MySQL at 200 (the full
        // batches and the 100-row rest, small enough, are cached), PostgreSQL binds each column
        // as one array: one text for any number of rows, cached once.
        use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
        use diesel::connection::{Connection, InstrumentationEvent};
        let mut uow = UnitOfWork::<Conn>::new();
        let handles: Vec<_> = (0..1500).map(|i| uow.register_new(account(&format!("o{i}"), i))).collect::<Result<_, _>>()?;
        uow.commit(&mut db.conn)?;
        let cached = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = cached.clone();
        db.conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::CacheQuery { .. } = event {
                counter.fetch_add(1, Relaxed);
            }
        });
        let expected = match <Conn as TestBackend>::KIND {
            Kind::Sqlite | Kind::Postgres => 1,
            Kind::Mysql => 2,
        };
        for (round, changed) in [(1, 1500), (2, 1500), (3, 700)] {
            for h in &handles[..changed] {
                uow.get_mut(h)?.balance += 1;
            }
            uow.commit(&mut db.conn)?;
            assert_eq!(cached.load(Relaxed), expected, "after commit {round}: statements cached");
        }
        let held = account_rows(&mut db.conn);
        assert_eq!(held.len(), 1500);
        for row in held {
            let i: i64 = row.owner[1..].parse()?;
            assert_eq!(row.balance, i + if i < 700 { 3 } else { 2 }, "{row:?}");
        }
        Ok(())
    }

    fn two_thousand_composite_key_rows_are_deleted_in_capped_statements(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let handles: Vec<_> = (0..2000)
            .map(|i| uow.register_new(Membership { user_id: i / 40, group_id: i % 40, role: "member".into() }))
            .collect::<Result<_, _>>()?;
        uow.register_new(Membership { user_id: 9999, group_id: 1, role: "stays".into() })?;
        uow.commit(&mut db.conn)?;
        for h in &handles {
            uow.register_removed(h)?;
        }
        let log = db.record();
        let report = uow.commit(&mut db.conn)?;
        assert_eq!(report.deleted("memberships"), 2000);
        let deletes: Vec<String> = log.writes().into_iter().filter(|s| s.starts_with("DELETE")).collect();
        assert_eq!(deletes.len(), 2000usize.div_ceil(COMPOSITE_KEY_ROWS_PER_DELETE), "{} DELETEs", deletes.len());
        assert_eq!(log.writes().len(), deletes.len(), "nothing but DELETEs");
        let rows: Vec<Membership> = memberships::table.load(&mut db.conn)?;
        assert_eq!(rows, [Membership { user_id: 9999, group_id: 1, role: "stays".into() }]);
        Ok(())
    }

    fn rows_larger_in_bytes_than_one_packet_are_cut_into_several_statements(db) {
        // 24 MiB in one commit: more than MySQL's and MariaDB's default `max_allowed_packet`
        // (16 MiB on MariaDB), far below any bind limit.
        create_blobs(&mut db);
        let mut uow = UnitOfWork::<Conn>::new();
        let handles: Vec<_> = (0..24).map(|i| uow.register_new(Blob { id: 0, body: mebibyte(i) })).collect::<Result<_, _>>()?;
        let log = db.record();
        uow.commit(&mut db.conn)?;
        let inserts = log.writes().iter().filter(|s| s.starts_with("INSERT")).count();
        if <Conn as TestBackend>::KIND == Kind::Mysql {
            assert!(inserts >= 2, "24 MiB cannot go in one MySQL packet: {inserts} INSERT(s)");
        }
        let rows: Vec<Blob> = blobs::table.order(blobs::id).load(&mut db.conn)?;
        assert_eq!(rows.len(), 24);
        for (i, handle) in handles.iter().enumerate() {
            let held = uow.get(handle)?;
            let row = rows.iter().find(|r| r.id == held.id).ok_or("no row for the key")?;
            assert!(row.body.starts_with(&format!("{i:04}:")), "row {} holds another entity's body", held.id);
            assert_eq!(row.body.len(), 1 << 20);
        }
        // The connection is fine for the next commit.
        uow.get_mut(&handles[0])?.body = "small".into();
        uow.commit(&mut db.conn)?;
        Ok(())
    }
}

// MySQL/MariaDB only: a single row larger than `max_allowed_packet` cannot be sent at all; it is
// refused before it is sent, so the server does not drop the connection.
backend_tests_on! { mysql: mysql_packet, mysql_packet_async;
    fn a_row_larger_than_one_packet_is_refused_before_it_is_sent(db) {
        create_blobs(&mut db);
        let mut uow = UnitOfWork::<Conn>::new();
        let ok = uow.register_new(Blob { id: 0, body: "fits".into() })?;
        let huge = uow.register_new(Blob { id: 0, body: "y".repeat(17 << 20) })?;
        let before = (observe(&uow, &ok), uow.get(&huge)?.body.len());
        let error = uow.commit(&mut db.conn).expect_err("larger than max_allowed_packet");
        assert!(error.to_string().contains("max_allowed_packet"), "{error}");
        assert_eq!((observe(&uow, &ok), uow.get(&huge)?.body.len()), before);
        // The connection survived: the same unit of work commits once the row is smaller.
        uow.get_mut(&huge)?.body = "smaller".into();
        uow.commit(&mut db.conn)?;
        let count: i64 = blobs::table.count().get_result(&mut db.conn)?;
        assert_eq!(count, 2);
        Ok(())
    }
}
