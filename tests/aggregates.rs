//! Aggregates: `#[tracked(children)]` collections, changed with plain Rust through the root
//! and written as one (README, "Aggregates"): new elements inserted with their foreign keys
//! filled and their keys written back into the tree, removed ones deleted (theirs first),
//! changed ones updated; the root's version checked and advanced when any member changes; a
//! failed commit leaves the tree as it was.

mod common;

use common::*;
use diesel::prelude::*;
use uow::prelude::*;

diesel::table! {
    skus (id) {
        id -> Integer,
        sku -> Text,
        version -> Integer,
    }
}

diesel::table! {
    stock_batches (id) {
        id -> Integer,
        product_id -> Integer,
        reference -> Text,
        qty -> Integer,
    }
}

diesel::table! {
    order_lines (id) {
        id -> Integer,
        batch_id -> Integer,
        order_id -> Text,
        qty -> Integer,
    }
}

diesel::allow_tables_to_appear_in_same_query!(skus, stock_batches, order_lines);

/// The root: its version guards the whole aggregate.
#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = skus)]
struct Product {
    #[tracked(generated)]
    id: i32,
    sku: String,
    #[tracked(version)]
    version: i32,
    #[tracked(children)]
    batches: Vec<Batch>,
}

#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = stock_batches, belongs_to(Product, foreign_key = product_id))]
struct Batch {
    #[tracked(generated)]
    id: i32,
    product_id: i32,
    reference: String,
    qty: i32,
    #[tracked(children)]
    allocations: Vec<Allocation>,
}

#[derive(Tracked, Queryable, Clone, Debug, PartialEq)]
#[tracked(table = order_lines, belongs_to(Batch, foreign_key = batch_id))]
struct Allocation {
    #[tracked(generated)]
    id: i32,
    batch_id: i32,
    order_id: String,
    qty: i32,
}

diesel::table! {
    shelves (code) {
        code -> Text,
        product_id -> Integer,
        next_code -> Nullable<Text>,
    }
}

/// A product's shelves, keyed in Rust, each naming the next one: two new shelves naming each
/// other cannot be inserted in any order.
#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = shelves, belongs_to(Warehouse, foreign_key = product_id), belongs_to(Shelf, foreign_key = next_code))]
struct Shelf {
    #[tracked(primary_key)]
    code: String,
    product_id: i32,
    next_code: Option<String>,
}

diesel::table! {
    warehouses (id) {
        id -> Integer,
        name -> Text,
    }
}

#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = warehouses)]
struct Warehouse {
    #[tracked(generated)]
    id: i32,
    name: String,
    #[tracked(children)]
    shelves: Vec<Shelf>,
}

fn create_tables<C: TestBackend>(db: &mut TestDb<C>) {
    let serial = match C::KIND {
        Kind::Sqlite => "INTEGER PRIMARY KEY",
        Kind::Postgres => "SERIAL PRIMARY KEY",
        Kind::Mysql => "INTEGER AUTO_INCREMENT PRIMARY KEY",
    };
    db.exec(&format!(
        "CREATE TABLE skus (id {serial}, sku VARCHAR(50) NOT NULL, version INTEGER NOT NULL)"
    ));
    db.exec(&format!(
        "CREATE TABLE stock_batches (id {serial}, product_id INTEGER NOT NULL REFERENCES skus (id), \
         reference VARCHAR(50) NOT NULL UNIQUE, qty INTEGER NOT NULL)"
    ));
    db.exec(&format!(
        "CREATE TABLE order_lines (id {serial}, batch_id INTEGER NOT NULL REFERENCES stock_batches (id), \
         order_id VARCHAR(50) NOT NULL, qty INTEGER NOT NULL)"
    ));
}

fn create_warehouse_tables<C: TestBackend>(db: &mut TestDb<C>) {
    let serial = match C::KIND {
        Kind::Sqlite => "INTEGER PRIMARY KEY",
        Kind::Postgres => "SERIAL PRIMARY KEY",
        Kind::Mysql => "INTEGER AUTO_INCREMENT PRIMARY KEY",
    };
    db.exec(&format!(
        "CREATE TABLE warehouses (id {serial}, name VARCHAR(50) NOT NULL)"
    ));
    db.exec(
        "CREATE TABLE shelves (code VARCHAR(50) PRIMARY KEY, \
         product_id INTEGER NOT NULL REFERENCES warehouses (id), next_code VARCHAR(50))",
    );
}

fn batch(reference: &str, qty: i32, allocations: Vec<Allocation>) -> Batch {
    Batch {
        id: 0,
        product_id: 0,
        reference: reference.into(),
        qty,
        allocations,
    }
}

fn line(order_id: &str, qty: i32) -> Allocation {
    Allocation {
        id: 0,
        batch_id: 0,
        order_id: order_id.into(),
        qty,
    }
}

fn lamp() -> Product {
    Product {
        id: 0,
        sku: "LAMP".into(),
        version: 1,
        batches: vec![
            batch("b1", 20, vec![line("o1", 2), line("o2", 3)]),
            batch("b2", 50, vec![]),
        ],
    }
}

/// The aggregate as the database holds it, read with plain Diesel one level at a time, each
/// level in key order.
trait ReadTree {
    fn read_tree(&mut self, id: i32) -> QueryResult<Product>;
}

macro_rules! read_tree_for {
    ($($feature:literal => $conn:ty),*) => {$(
        #[cfg(feature = $feature)]
        impl ReadTree for $conn {
            fn read_tree(&mut self, id: i32) -> QueryResult<Product> {
                let (id, sku, version) = skus::table
                    .select((skus::id, skus::sku, skus::version))
                    .filter(skus::id.eq(id))
                    .first::<(i32, String, i32)>(self)?;
                let rows: Vec<(i32, i32, String, i32)> = stock_batches::table
                    .select((stock_batches::id, stock_batches::product_id, stock_batches::reference, stock_batches::qty))
                    .filter(stock_batches::product_id.eq(id))
                    .order(stock_batches::id)
                    .load(self)?;
                let mut batches = Vec::new();
                for (batch_id, product_id, reference, qty) in rows {
                    let allocations: Vec<Allocation> = order_lines::table
                        .filter(order_lines::batch_id.eq(batch_id))
                        .order(order_lines::id)
                        .load(self)?;
                    batches.push(Batch { id: batch_id, product_id, reference, qty, allocations });
                }
                Ok(Product { id, sku, version, batches })
            }
        }
    )*};
}
read_tree_for!("sqlite" => diesel::SqliteConnection, "postgres" => diesel::PgConnection, "mysql" => diesel::MysqlConnection);
#[cfg(feature = "async")]
read_tree_for!(
    "sqlite" => on_async::AsyncConnectionWrapper<
        diesel_async::sync_connection_wrapper::SyncConnectionWrapper<diesel::SqliteConnection>,
    >,
    "postgres" => on_async::AsyncConnectionWrapper<diesel_async::AsyncPgConnection>,
    "mysql" => on_async::AsyncConnectionWrapper<diesel_async::AsyncMysqlConnection>
);

fn read_tree<C: ReadTree>(conn: &mut C, id: i32) -> QueryResult<Product> {
    conn.read_tree(id)
}

/// The root's state and changed columns, its members' states, and how many entities are held.
type HeldStates = (EntityState, Vec<&'static str>, Vec<EntityState>, usize);

/// What a unit of work shows of an aggregate besides its values: the root's state and changed
/// fields, the state of the member held for each row of `stored`, and how many entities it
/// holds.
fn held_states<C: uow::Driver>(
    uow: &uow::UnitOfWork<C>,
    root: &Handle<Product>,
    stored: &Product,
) -> Result<HeldStates, String> {
    let state = |s: Result<EntityState, uow::Error>| s.map_err(|e| e.to_string());
    let mut members = Vec::new();
    for batch in &stored.batches {
        let handle = uow.find::<Batch>(&batch.id).ok_or("the batch is held")?;
        members.push(state(uow.state(&handle))?);
        for line in &batch.allocations {
            let handle = uow.find::<Allocation>(&line.id).ok_or("the line is held")?;
            members.push(state(uow.state(&handle))?);
        }
    }
    let changed = uow.changed_columns(root).map_err(|e| e.to_string())?;
    Ok((state(uow.state(root))?, changed, members, uow.len()))
}

backend_tests! {
    fn a_new_aggregate_is_inserted_level_by_level_and_its_keys_written_into_the_tree(db) {
        create_tables(&mut db);
        let mut uow = UnitOfWork::<Conn>::new();
        let product = uow.register_new(lamp())?;
        let log = db.record();
        uow.commit(&mut db.conn)?;
        let writes = log.writes();
        assert_eq!(writes.len(), 3, "one INSERT per table: {writes:?}");
        let tables: Vec<&str> = ["skus", "stock_batches", "order_lines"].into_iter().collect();
        for (write, table) in writes.iter().zip(&tables) {
            assert!(write.contains(table), "{table} in order: {writes:?}");
        }
        let held = uow.get(&product)?.clone();
        assert!(held.id > 0);
        assert!(held.batches.iter().all(|b| b.id > 0 && b.product_id == held.id), "{held:?}");
        let b1 = &held.batches[0];
        assert!(b1.allocations.iter().all(|a| a.id > 0 && a.batch_id == b1.id), "{held:?}");
        assert_eq!(read_tree(&mut db.conn, held.id)?, held, "the tree is what the database holds");
        assert_eq!(uow.state(&product)?, EntityState::Clean);
        assert!(!uow.has_changes());
        Ok(())
    }

    fn plain_rust_changes_to_the_tree_become_inserts_updates_and_deletes(db) {
        create_tables(&mut db);
        let mut uow = UnitOfWork::<Conn>::new();
        let product = uow.register_new(lamp())?;
        uow.commit(&mut db.conn)?;
        let removed_batch = uow.get(&product)?.batches[0].id;
        {
            let p = uow.get_mut(&product)?;
            p.batches.retain(|b| b.reference != "b1"); // b1 and its two allocations go
            p.batches[0].qty = 45; // b2 changes
            p.batches[0].allocations.push(line("o3", 5)); // a new allocation in b2
            p.batches.push(batch("b3", 10, vec![line("o4", 1)])); // a new batch with one
        }
        assert_eq!(uow.state(&product)?, EntityState::Clean, "no column of the root changed");
        assert!(uow.has_changes(), "its members did");
        let log = db.record();
        let report = uow.commit(&mut db.conn)?;
        let writes = log.writes();
        let position = |kind: &str, table: &str| {
            writes.iter().position(|w| w.starts_with(kind) && w.contains(table))
        };
        let (delete_allocations, delete_batches) =
            (position("DELETE", "order_lines"), position("DELETE", "stock_batches"));
        assert!(delete_allocations.is_some() && delete_allocations < delete_batches, "children deleted first: {writes:?}");
        let (insert_batches, insert_allocations) =
            (position("INSERT", "stock_batches"), position("INSERT", "order_lines"));
        assert!(insert_batches.is_some() && insert_batches < insert_allocations, "parents inserted first: {writes:?}");
        assert!(position("UPDATE", "stock_batches").is_some(), "{writes:?}");
        let product_update = writes.iter().find(|w| w.starts_with("UPDATE") && w.contains("skus"));
        let set_list = |w: &String| w[w.find(" SET ").unwrap_or(0)..w.find(" WHERE ").unwrap_or(0)].to_string();
        assert!(product_update.map(set_list).is_some_and(|set| set.contains("version") && set.matches('=').count() == 1), "the root's version only: {writes:?}");
        assert_eq!(writes.len(), 6, "{writes:?}");
        assert_eq!(report.rows(), 8, "{report}");

        let held = uow.get(&product)?.clone();
        assert_eq!(held.version, 2, "a member changed: the root's version advanced");
        assert_eq!(held.batches.len(), 2);
        assert!(held.batches.iter().all(|b| b.id > 0 && b.id != removed_batch && b.product_id == held.id));
        assert!(held.batches.iter().flat_map(|b| &b.allocations).all(|a| a.id > 0));
        assert_eq!(read_tree(&mut db.conn, held.id)?, held);
        assert!(!uow.has_changes());
        Ok(())
    }

    fn a_failed_commit_leaves_the_whole_tree_as_it_was(db) {
        create_tables(&mut db);
        let mut uow = UnitOfWork::<Conn>::new();
        let product = uow.register_new(lamp())?;
        uow.commit(&mut db.conn)?;
        {
            let p = uow.get_mut(&product)?;
            p.batches[1].qty = 7;
            let moved = p.batches[0].allocations.remove(1); // o2, from b1 to b2
            p.batches[1].allocations.push(moved);
            p.batches[1].allocations.push(line("o9", 1));
            // The reference is UNIQUE: this INSERT fails, after the others were sent.
            p.batches.push(batch("b1", 5, vec![line("o8", 1)]));
        }
        let before = uow.get(&product)?.clone();
        let in_db = read_tree(&mut db.conn, before.id)?;
        let held_before = held_states(&uow, &product, &in_db)?;
        let error = uow.commit(&mut db.conn).expect_err("duplicate reference");
        assert!(error.database_error().is_some(), "{error}");
        assert_eq!(uow.get(&product)?, &before, "the tree in memory is as before the commit");
        assert_eq!(read_tree(&mut db.conn, before.id)?, in_db, "and the database too");
        // Not only the values: the root's and the members' states, and what is held (the
        // members the write brought in line with the tree are taken back with it).
        assert_eq!(held_states(&uow, &product, &in_db)?, held_before, "states as before the commit");
        // Fixed, the same changes commit once.
        uow.get_mut(&product)?.batches[2].reference = "b3".into();
        uow.commit(&mut db.conn)?;
        let held = uow.get(&product)?.clone();
        assert_eq!(held.version, 2);
        assert_eq!(read_tree(&mut db.conn, held.id)?, held);
        let o2 = &held.batches[1].allocations[0];
        assert_eq!(o2.id, in_db.batches[0].allocations[1].id, "the moved row kept");
        let allocations: i64 = order_lines::table.count().get_result(&mut db.conn)?;
        assert_eq!(allocations, 4);
        Ok(())
    }

    fn a_failed_flush_leaves_the_aggregate_as_it_was_and_the_scope_goes_on(db) {
        create_tables(&mut db);
        let mut uow = UnitOfWork::<Conn>::new();
        let product = uow.register_new(lamp())?;
        uow.commit(&mut db.conn)?;
        let in_db = read_tree(&mut db.conn, uow.get(&product)?.id)?;
        let held = |scope: &CoreUow<Conn>| held_states(scope, &product, &in_db).map_err(|e| uow::Error::Hook(e.into()));
        uow.transaction(&mut db.conn, |scope| {
            {
                let p = scope.get_mut(&product)?;
                p.batches[0].qty = 3;
                p.batches[1].allocations.push(line("o9", 1));
                p.batches.push(batch("b1", 5, vec![])); // the reference is UNIQUE: it fails
            }
            let before = (scope.get(&product)?.clone(), held(scope)?);
            let error = scope.flush().expect_err("duplicate reference");
            assert!(error.database_error().is_some(), "{error}");
            assert_eq!((scope.get(&product)?.clone(), held(scope)?), before, "as before the flush");
            scope.get_mut(&product)?.batches[2].reference = "b3".into();
            scope.flush()?;
            Ok::<_, uow::Error>(())
        })?;
        let held = uow.get(&product)?.clone();
        assert_eq!((held.version, held.batches.len()), (2, 3));
        assert_eq!(read_tree(&mut db.conn, held.id)?, held);
        Ok(())
    }

    fn a_tree_changed_before_a_scope_that_flushed_it_and_failed_is_as_before_the_scope(db) {
        create_tables(&mut db);
        let mut uow = UnitOfWork::<Conn>::new();
        let product = uow.register_new(lamp())?;
        uow.commit(&mut db.conn)?;
        let in_db = read_tree(&mut db.conn, uow.get(&product)?.id)?;
        // Changed outside the scope: the scope's first change of the root is its flush's.
        {
            let p = uow.get_mut(&product)?;
            p.batches[0].qty = 4;
            p.batches[1].allocations.push(line("o7", 1));
        }
        let before = (uow.get(&product)?.clone(), held_states(&uow, &product, &in_db)?);
        let result: Result<(), uow::Error> = uow.transaction(&mut db.conn, |scope| {
            scope.flush()?; // the keys of o7 are written into the tree here
            assert!(scope.get(&product)?.batches[1].allocations[0].id > 0, "flushed");
            Err(uow::Error::NoTransaction) // stands for any failure of the caller
        });
        assert!(result.is_err());
        assert_eq!((uow.get(&product)?.clone(), held_states(&uow, &product, &in_db)?), before, "as before the scope");
        assert_eq!(read_tree(&mut db.conn, in_db.id)?, in_db, "nothing flushed is left");
        uow.commit(&mut db.conn)?;
        let held = uow.get(&product)?.clone();
        assert_eq!(held.version, in_db.version + 1);
        assert_eq!(read_tree(&mut db.conn, held.id)?, held);
        Ok(())
    }

    fn an_element_moved_to_another_collection_keeps_its_row_and_points_at_its_new_parent(db) {
        create_tables(&mut db);
        let mut uow = UnitOfWork::<Conn>::new();
        let product = uow.register_new(lamp())?; // b1 [o1, o2], b2 []
        uow.commit(&mut db.conn)?;
        let (b1, b2, o1) = {
            let p = uow.get(&product)?;
            (p.batches[0].id, p.batches[1].id, p.batches[0].allocations[0].id)
        };
        let no_row_replaced = |writes: &[String]| {
            writes.iter().all(|w| !w.starts_with("DELETE") && !w.starts_with("INSERT"))
        };

        // Out of b1 into b2: the collection it left is brought in line first.
        {
            let p = uow.get_mut(&product)?;
            let moved = p.batches[0].allocations.remove(0);
            p.batches[1].allocations.push(moved);
        }
        let log = db.record();
        uow.commit(&mut db.conn)?;
        let writes = log.writes();
        assert!(no_row_replaced(&writes), "the row is kept: {writes:?}");
        let updates = writes.iter().filter(|w| w.starts_with("UPDATE") && w.contains("order_lines"));
        assert_eq!(updates.count(), 1, "its foreign key: {writes:?}");
        let held = uow.get(&product)?.clone();
        let moved = &held.batches[1].allocations[0];
        assert_eq!((moved.id, moved.batch_id), (o1, b2), "the same row, under b2");
        assert_eq!(held.version, 2, "a member changed: the root's version advanced");
        assert_eq!(read_tree(&mut db.conn, held.id)?, held);

        // Back into b1, changed on the way: now the element comes first.
        {
            let p = uow.get_mut(&product)?;
            let mut moved = p.batches[1].allocations.remove(0);
            moved.qty = 7;
            p.batches[0].allocations.insert(0, moved);
        }
        log.clear();
        uow.commit(&mut db.conn)?;
        let writes = log.writes();
        assert!(no_row_replaced(&writes), "{writes:?}");
        let held = uow.get(&product)?.clone();
        let moved = &held.batches[0].allocations[0];
        assert_eq!((moved.id, moved.batch_id, moved.qty), (o1, b1, 7));
        assert_eq!(read_tree(&mut db.conn, held.id)?, held);
        assert!(!uow.has_changes());

        // Into a batch new in the same commit: the foreign key takes its generated key.
        {
            let p = uow.get_mut(&product)?;
            let moved = p.batches[0].allocations.remove(0);
            p.batches.push(batch("b3", 10, vec![moved]));
        }
        log.clear();
        uow.commit(&mut db.conn)?;
        let writes = log.writes();
        assert!(writes.iter().all(|w| !w.starts_with("DELETE")), "{writes:?}");
        assert!(writes.iter().all(|w| !(w.starts_with("INSERT") && w.contains("order_lines"))), "{writes:?}");
        let held = uow.get(&product)?.clone();
        let (b3, moved) = (&held.batches[2], &held.batches[2].allocations[0]);
        assert_eq!((moved.id, moved.batch_id), (o1, b3.id));
        assert_eq!(read_tree(&mut db.conn, held.id)?, held);
        Ok(())
    }

    fn a_change_anywhere_in_an_aggregate_conflicts_with_a_concurrent_one(db) {
        create_tables(&mut db);
        let mut setup = UnitOfWork::<Conn>::new();
        let product = setup.register_new(lamp())?;
        setup.commit(&mut db.conn)?;
        let id = setup.get(&product)?.id;
        let tree = read_tree(&mut db.conn, id)?;
        // Two writers hold the same aggregate and change different members.
        let mut first = UnitOfWork::<Conn>::new();
        let mut second = UnitOfWork::<Conn>::new();
        let a = first.attach(tree.clone());
        let b = second.register_clean(tree)?;
        assert!(!first.has_changes() && !second.has_changes(), "attaching writes nothing");
        first.get_mut(&a)?.batches[0].allocations[0].qty = 9;
        second.get_mut(&b)?.batches[1].qty = 49;
        first.commit(&mut db.conn)?;
        let error = second.commit(&mut db.conn).expect_err("the version moved");
        assert!(matches!(&error, uow::Error::Conflict { entity: "Product", .. }), "{error}");
        let in_db = read_tree(&mut db.conn, id)?;
        assert_eq!(in_db.version, 2);
        assert_eq!(in_db.batches[1].qty, 50, "the loser's change rolled back");
        assert_eq!(in_db.batches[0].allocations[0].qty, 9);
        assert_eq!(second.get(&b)?.batches[1].qty, 49, "and kept in its memory");
        Ok(())
    }

    fn refreshing_a_root_reads_its_tree_again_and_drops_every_change_in_it(db) {
        // The recovery `Conflict` asks for: refresh, then apply the change again. Re-reading
        // the root's row alone would keep the stale tree, and the retry would write its old
        // values over the winner's.
        create_tables(&mut db);
        let mut setup = UnitOfWork::<Conn>::new();
        let product = setup.register_new(lamp())?;
        setup.commit(&mut db.conn)?;
        let id = setup.get(&product)?.id;
        let mut first = UnitOfWork::<Conn>::new();
        let mut second = UnitOfWork::<Conn>::new();
        let a = first.load::<Product>(&mut db.conn, id)?;
        let b = second.load::<Product>(&mut db.conn, id)?;
        {
            let tree = first.get_mut(&a)?;
            tree.batches[0].allocations[0].qty = 9;
            tree.batches.remove(1);
            tree.batches.push(batch("b3", 30, vec![line("o3", 1)]));
        }
        first.commit(&mut db.conn)?;
        {
            // Changes at every level, on members the first writer kept, changed and removed.
            let tree = second.get_mut(&b)?;
            tree.sku = "LAMP-2".into();
            tree.batches[0].allocations[0].qty = 7;
            tree.batches[0].allocations.remove(1);
            tree.batches[1].allocations.push(line("o4", 4));
            tree.batches.push(batch("b4", 40, vec![]));
        }
        let error = second.commit(&mut db.conn).expect_err("the version moved");
        assert!(matches!(&error, uow::Error::Conflict { entity: "Product", .. }), "{error}");

        let log = db.record();
        second.refresh(&mut db.conn, &b)?;
        assert_eq!(log.all().len(), 3, "the root, its batches, their allocations: {:?}", log.all());
        let stored = read_tree(&mut db.conn, id)?;
        assert_eq!(stored.batches[0].allocations[0].qty, 9);
        assert_eq!(second.get(&b)?, &stored, "the tree as stored: every local change dropped");
        assert_eq!(second.state(&b)?, EntityState::Clean);
        assert!(!second.has_changes(), "no member left to write");
        assert_eq!(second.len(), 1 + 2 + 3, "the root and the rows of its tree, nothing else");

        second.get_mut(&b)?.batches[0].qty = 19;
        second.commit(&mut db.conn)?;
        let mut expected = stored.clone();
        expected.batches[0].qty = 19;
        expected.version += 1;
        assert_eq!(read_tree(&mut db.conn, id)?, expected, "the first writer's changes kept");
        assert_eq!(second.get(&b)?, &expected);

        // A refresh inside a scope that fails is undone with it: the local change comes back.
        second.get_mut(&b)?.batches[1].allocations.clear();
        let before = second.get(&b)?.clone();
        let result: Result<(), uow::Error> = second.transaction(&mut db.conn, |scope| {
            scope.refresh(&b)?;
            assert_eq!(scope.get(&b)?, &expected);
            Err(uow::Error::NoTransaction) // stands for any failure of the caller
        });
        assert!(result.is_err());
        assert_eq!(second.get(&b)?, &before, "the refresh undone with its scope");
        second.commit(&mut db.conn)?;
        expected.batches[1].allocations.clear();
        expected.version += 1;
        assert_eq!(read_tree(&mut db.conn, id)?, expected);
        Ok(())
    }

    fn a_member_changes_through_its_root_and_its_own_handle_only_reads_it(db) {
        // A member found by its own key is the member itself (one row, one instance). Changed
        // through that handle, it was written without the root's version and the tree kept
        // the old value; removed through it, its row went before its own members'.
        create_tables(&mut db);
        let mut setup = UnitOfWork::<Conn>::new();
        let product = setup.register_new(lamp())?;
        setup.commit(&mut db.conn)?;
        let stored = setup.get(&product)?.clone();
        let mut uow = UnitOfWork::<Conn>::new();
        let root = uow.load::<Product>(&mut db.conn, stored.id)?;
        let b1 = stored.batches[0].id;
        let member = uow.load::<Batch>(&mut db.conn, b1)?;
        assert_eq!(uow.find::<Batch>(&b1), Some(member), "one row, one instance");
        assert_eq!(uow.get(&member)?.qty, 20, "its own handle reads it");

        let refused = |result: Result<(), uow::Error>| match result {
            Err(uow::Error::MemberOfAggregate { entity: "Batch", key }) => key == b1.to_string(),
            _ => false,
        };
        assert!(refused(uow.get_mut(&member).map(|_| ())));
        assert!(refused(uow.entities_mut::<Batch>().get_mut(&member).map(|_| ())));
        assert_eq!(uow.entities_mut::<Batch>().iter_mut().count(), 0, "members are not yielded");
        assert!(refused(uow.register_removed(&member)));
        assert!(refused(uow.unremove(&member)));
        assert!(refused(uow.set_parent(&member, &root)));
        assert!(refused(uow.refresh(&mut db.conn, &member)));
        let message = uow.get_mut(&member).map(|_| ()).expect_err("refused").to_string();
        assert!(message.contains("get_mut(&root)"), "{message}");
        assert!(!uow.has_changes(), "nothing to write");

        uow.get_mut(&root)?.batches[0].qty = 19;
        uow.commit(&mut db.conn)?;
        assert_eq!(uow.get(&member)?.qty, 19, "the member follows its element");
        let mut expected = stored.clone();
        expected.batches[0].qty = 19;
        expected.version += 1;
        assert_eq!(read_tree(&mut db.conn, stored.id)?, expected, "written with the root's version");
        Ok(())
    }

    fn removing_the_root_deletes_its_members_children_first(db) {
        create_tables(&mut db);
        let mut uow = UnitOfWork::<Conn>::new();
        let product = uow.register_new(lamp())?;
        let other = uow.register_new(Product { sku: "DESK".into(), ..lamp() })?;
        uow.get_mut(&other)?.batches.iter_mut().for_each(|b| b.reference.push('x'));
        uow.commit(&mut db.conn)?;
        uow.register_removed(&product)?;
        let log = db.record();
        uow.commit(&mut db.conn)?;
        let writes = log.writes();
        let order: Vec<&str> = writes
            .iter()
            .map(|w| ["order_lines", "stock_batches", "skus"].into_iter().find(|t| w.contains(t)).unwrap_or("?"))
            .collect();
        assert_eq!(order, ["order_lines", "stock_batches", "skus"], "{writes:?}");
        let counts: (i64, i64, i64) = (
            skus::table.count().get_result(&mut db.conn)?,
            stock_batches::table.count().get_result(&mut db.conn)?,
            order_lines::table.count().get_result(&mut db.conn)?,
        );
        assert_eq!(counts, (1, 2, 2), "the other aggregate stays");
        Ok(())
    }

    fn a_new_root_removed_before_its_commit_leaves_nothing_behind(db) {
        create_tables(&mut db);
        let mut uow = UnitOfWork::<Conn>::new();
        let product = uow.register_new(lamp())?;
        // The preview brings the members in; removing the new root drops them again.
        assert_eq!(uow.plan()?.statement_count(), 3);
        uow.register_removed(&product)?;
        assert!(!uow.has_changes());
        uow.commit(&mut db.conn)?;
        let skus: i64 = skus::table.count().get_result(&mut db.conn)?;
        assert_eq!(skus, 0);
        Ok(())
    }

    fn the_plan_preview_shows_the_members_an_aggregate_writes(db) {
        create_tables(&mut db);
        let mut uow = UnitOfWork::<Conn>::new();
        let product = uow.register_new(lamp())?;
        uow.commit(&mut db.conn)?;
        uow.get_mut(&product)?.batches[1].qty = 51;
        let preview = uow.plan()?.to_string();
        assert!(preview.contains("UPDATE stock_batches (Batch): 1 row(s)"), "{preview}");
        assert!(preview.contains("UPDATE skus (Product): 1 row(s)"), "{preview}");
        assert!(preview.contains("qty: 50 -> 51 (at Product with key 1.batches[1])"), "members by their path: {preview}");
        // New and removed members too, to any depth.
        {
            let p = uow.get_mut(&product)?;
            p.batches[0].allocations.remove(0);
            p.batches[1].allocations.push(line("o5", 1));
        }
        let preview = uow.plan()?.to_string();
        assert!(preview.contains("(at Product with key 1.batches[0].allocations[removed])"), "{preview}");
        assert!(preview.contains("order_id = \"o5\", qty = 1 (at Product with key 1.batches[1].allocations[0])"), "{preview}");
        Ok(())
    }

    fn a_commit_looks_at_the_members_that_changed_not_at_the_whole_tree(db) {
        create_tables(&mut db);
        let mut setup = UnitOfWork::<Conn>::new();
        let batches = (0..40)
            .map(|b| batch(&format!("r{b}"), 10, (0..5).map(|a| line(&format!("o{b}.{a}"), 1)).collect()))
            .collect();
        let stored = setup.register_new(Product { batches, ..lamp() })?;
        assert_eq!(setup.commit(&mut db.conn)?.examined(), 241, "a new tree: every row");
        let id = setup.get(&stored)?.id;

        // Reading a tree touches none of its 240 members (each touched one would be diffed
        // by every commit that follows).
        let mut uow = UnitOfWork::<Conn>::new();
        let product = uow.load::<Product>(&mut db.conn, id)?;
        assert_eq!(uow.plan()?.examined(), 0, "loaded");
        let mut other = UnitOfWork::<Conn>::new();
        let root = Product { batches: Vec::new(), ..read_tree(&mut db.conn, id)? };
        other.attach_aggregates(&mut db.conn, vec![root])?;
        assert_eq!(other.plan()?.examined(), 0, "attached");

        // One allocation changed through the root: the root and that member are looked at.
        uow.get_mut(&product)?.batches[17].allocations[2].qty = 9;
        assert_eq!(uow.plan()?.examined(), 2);
        let report = uow.commit(&mut db.conn)?;
        assert_eq!(report.examined(), 2, "{report}");
        assert_eq!((report.updated("order_lines"), report.updated("skus")), (1, 1), "{report}");
        assert_eq!(read_tree(&mut db.conn, id)?, *uow.get(&product)?);

        // Borrowed again and left as it was: the root only, nothing written.
        let _ = uow.get_mut(&product)?;
        let report = uow.commit(&mut db.conn)?;
        assert_eq!((report.examined(), report.statements()), (1, 0), "{report}");
        Ok(())
    }

    fn loading_a_root_reads_its_tree_one_query_per_level(db) {
        create_tables(&mut db);
        let mut setup = UnitOfWork::<Conn>::new();
        let first = setup.register_new(lamp())?;
        let second = setup.register_new(Product {
            sku: "DESK".into(),
            batches: vec![batch("d1", 5, vec![line("o7", 1)])],
            ..lamp()
        })?;
        setup.commit(&mut db.conn)?;
        let (first, second) = (setup.get(&first)?.clone(), setup.get(&second)?.clone());

        let mut uow = UnitOfWork::<Conn>::new();
        let log = db.record();
        let product = uow.load::<Product>(&mut db.conn, first.id)?;
        let selects = log.all().iter().filter(|s| s.starts_with("SELECT")).count();
        assert_eq!(selects, 3, "the root, its batches, their allocations: {:?}", log.all());
        assert_eq!(uow.get(&product)?, &first, "the whole tree, in key order");
        log.clear();
        assert_eq!(uow.load::<Product>(&mut db.conn, first.id)?, product);
        assert!(log.all().is_empty(), "held: no query");

        // Several roots from an ordinary Diesel query: one query per level for all of them.
        let rows: Vec<(i32, String, i32)> = skus::table
            .select((skus::id, skus::sku, skus::version))
            .order(skus::id)
            .load(&mut db.conn)?;
        let roots: Vec<Product> = rows
            .into_iter()
            .map(|(id, sku, version)| Product { id, sku, version, batches: Vec::new() })
            .collect();
        let mut other = UnitOfWork::<Conn>::new();
        log.clear();
        let handles = other.attach_aggregates(&mut db.conn, roots)?;
        assert_eq!(log.all().len(), 2, "batches, then allocations, for both: {:?}", log.all());
        assert_eq!(other.get(&handles[0])?, &first);
        assert_eq!(other.get(&handles[1])?, &second);
        assert!(!other.has_changes(), "loaded members are clean");

        // A loaded aggregate is written like any other.
        uow.get_mut(&product)?.batches[0].allocations.remove(0);
        uow.commit(&mut db.conn)?;
        let held = uow.get(&product)?.clone();
        assert_eq!(held.version, 2);
        assert_eq!(read_tree(&mut db.conn, held.id)?, held);
        Ok(())
    }

    fn aggregates_attached_in_a_scope_commit_with_it_and_are_forgotten_when_it_fails(db) {
        create_tables(&mut db);
        let mut setup = UnitOfWork::<Conn>::new();
        let product = setup.register_new(lamp())?;
        setup.commit(&mut db.conn)?;
        let stored = setup.get(&product)?.clone();
        let bare_root = Product { batches: Vec::new(), ..stored.clone() };

        let mut uow = UnitOfWork::<Conn>::new();
        let mut attached = None;
        let log = db.record();
        let result: Result<(), uow::Error> = uow.transaction(&mut db.conn, |scope| {
            log.clear();
            let handles = scope.attach_aggregates(vec![bare_root.clone()])?;
            assert_eq!(log.all().len(), 2, "batches, then allocations: {:?}", log.all());
            assert_eq!(scope.get(&handles[0])?, &stored, "the whole tree");
            scope.get_mut(&handles[0])?.batches[0].qty = 1;
            scope.flush()?;
            attached = Some(handles[0]);
            Err(uow::Error::NoTransaction) // stands for any failure of the caller
        });
        assert!(result.is_err());
        assert_eq!(read_tree(&mut db.conn, stored.id)?, stored, "the flushed change rolled back");
        let attached = attached.ok_or("the scope ran")?;
        assert!(matches!(uow.get(&attached), Err(uow::Error::UnknownEntity { .. })), "attached inside the failed scope");
        assert_eq!(uow.len(), 0, "no member left behind");

        uow::transaction(&mut db.conn, |scope| {
            let handles = scope.attach_aggregates(vec![bare_root.clone()])?;
            scope.get_mut(&handles[0])?.batches[0].allocations.remove(0);
            Ok::<_, uow::Error>(())
        })?;
        let expected = {
            let mut p = stored.clone();
            p.batches[0].allocations.remove(0);
            p.version += 1; // a member changed: the root's version advances
            p
        };
        assert_eq!(read_tree(&mut db.conn, stored.id)?, expected, "committed with the scope");
        Ok(())
    }

    fn two_allocations_racing_for_one_product_end_with_one_winner(db) {
        // Cosmic Python's race, written the natural way: each request loads the aggregate,
        // changes only a member (a new allocation), and commits. The root's version, advanced
        // because a member changed, makes the later commit a Conflict: no over-allocation.
        create_tables(&mut db);
        let mut seed = UnitOfWork::<Conn>::new();
        let product = seed.register_new(Product {
            batches: vec![batch("b1", 1, vec![])],
            ..lamp()
        })?;
        seed.commit(&mut db.conn)?;
        let id = seed.get(&product)?.id;

        let loaded = std::sync::Arc::new(std::sync::Barrier::new(2));
        let workers: Vec<_> = ["o1", "o2"]
            .into_iter()
            .map(|order| {
                let mut conn = db.connect();
                let loaded = loaded.clone();
                std::thread::spawn(move || {
                    let mut uow = UnitOfWork::<Conn>::new();
                    let product = uow.load::<Product>(&mut conn, id);
                    // Both hold version 1 before either commits (a failed load still meets
                    // the other thread here, so nobody waits forever).
                    loaded.wait();
                    let outcome = product.and_then(|product| {
                        let lamp = uow.get_mut(&product)?;
                        let free = lamp.batches.iter_mut().find(|b| {
                            b.qty > b.allocations.iter().map(|a| a.qty).sum::<i32>()
                        });
                        if let Some(batch) = free {
                            batch.allocations.push(line(order, 1));
                        }
                        uow.commit(&mut conn).map(|_| ())
                    });
                    outcome.map_err(|e| (e.is_conflict(), e.to_string()))
                })
            })
            .collect();
        let results: Vec<Result<(), (bool, String)>> = workers
            .into_iter()
            .map(|w| w.join().map_err(|_| (false, "panicked".to_string()))?)
            .collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "one winner: {results:?}");
        let (is_conflict, failure) = results.iter().find_map(|r| r.as_ref().err()).ok_or("one loser")?;
        assert!(is_conflict, "the loser gets a Conflict: {failure}");
        assert!(failure.contains("Product"), "{failure}");
        let tree = read_tree(&mut db.conn, id)?;
        assert_eq!(tree.version, 2);
        assert_eq!(tree.batches[0].allocations.len(), 1, "exactly one allocation persists");
        Ok(())
    }

    fn a_tree_read_with_the_row_of_a_new_entity_is_refused(db) {
        // A shelf registered as new under a code whose row exists, then its warehouse read:
        // the tree used to make the new entity a member showing the row as read, and every
        // commit after failed on its INSERT while its handle refused `register_removed`.
        create_warehouse_tables(&mut db);
        let shelf = |code: &str, warehouse: i32, next: Option<&str>| Shelf {
            code: code.into(),
            product_id: warehouse,
            next_code: next.map(Into::into),
        };
        let mut setup = UnitOfWork::<Conn>::new();
        let stored = setup.register_new(Warehouse { id: 0, name: "north".into(), shelves: vec![shelf("a", 0, None)] })?;
        setup.commit(&mut db.conn)?;
        let stored = setup.get(&stored)?.clone();
        let id = stored.id;

        let mut uow = UnitOfWork::<Conn>::new();
        let new = uow.register_new(shelf("a", id, Some("z")))?;
        let refused = |error: uow::Error| match error {
            uow::Error::RowHeldAsNew { entity, key, root } => {
                assert_eq!((entity, key.as_str()), ("Shelf", "\"a\""));
                assert_eq!(root, format!("Warehouse with key {id}"));
                Ok(())
            }
            other => Err(format!("expected RowHeldAsNew, got {other}")),
        };
        let log = db.record();
        refused(uow.load::<Warehouse>(&mut db.conn, id).expect_err("the row of a new entity"))?;
        let root = Warehouse { shelves: Vec::new(), ..stored.clone() };
        refused(uow.attach_aggregates(&mut db.conn, vec![root]).expect_err("the same row"))?;
        refused(uow.register_clean(stored.clone()).expect_err("the same tree"))?;
        assert!(log.writes().is_empty(), "{:?}", log.writes());
        assert_eq!((uow.len(), uow.find::<Warehouse>(&id)), (1, None), "nothing attached");
        assert_eq!((uow.state(&new)?, uow.get(&new)?.next_code.as_deref()), (EntityState::New, Some("z")));

        // The way out the message names: the new one taken back, the tree read again.
        uow.register_removed(&new)?;
        let warehouse = uow.load::<Warehouse>(&mut db.conn, id)?;
        assert_eq!(uow.get(&warehouse)?, &stored);
        uow.get_mut(&warehouse)?.shelves[0].next_code = Some("z".into());
        assert_eq!(uow.commit(&mut db.conn)?.updated("shelves"), 1);

        // `attach` cannot refuse: the new entity held for the row is the instance in the
        // tree (as `attach` of the row alone returns it), and its INSERT meets the row.
        let mut other = UnitOfWork::<Conn>::new();
        let new = other.register_new(shelf("a", id, Some("y")))?;
        let attached = other.attach(stored.clone());
        let shown = other.get(&attached)?.shelves[0].clone();
        assert_eq!((shown.next_code.as_deref(), other.state(&new)?), (Some("y"), EntityState::New));
        let error = other.commit(&mut db.conn).expect_err("the row exists");
        assert!(matches!(error, uow::Error::Statement { table: "shelves", .. }), "{error}");
        assert_eq!(other.get(&attached)?.shelves[0], shown, "memory as before the commit");
        Ok(())
    }

    fn a_cycle_among_members_names_them_by_their_path(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let shelf = |code: &str, next: &str| Shelf { code: code.into(), product_id: 0, next_code: Some(next.into()) };
        uow.register_new(Warehouse {
            id: 0,
            name: "north".into(),
            shelves: vec![shelf("a", "b"), shelf("b", "a")],
        })?;
        let error = uow.commit(&mut db.conn).expect_err("a cycle");
        let uow::Error::Cycle { entities } = &error else {
            return Err(format!("expected a cycle, got {error}").into());
        };
        assert_eq!(entities.len(), 2, "{entities:?}");
        assert!(entities.iter().any(|e| e.contains("at new Warehouse { name: \"north\" }.shelves[0]")), "{entities:?}");
        assert!(entities.iter().any(|e| e.ends_with(".shelves[1]")), "{entities:?}");
        Ok(())
    }

    fn rows_held_on_their_own_bring_their_changes_into_the_tree_that_adopts_them(db) {
        // One row, one instance: a tree read after some of its rows were loaded on their own
        // shows the held instances, and their changes are written with the root's version.
        // The tree used to hold the rows as read: the next write undid a held Batch's tree
        // changes, wrote a held Allocation's change without the root's version, and left the
        // tree disagreeing with the database.
        create_tables(&mut db);
        let mut setup = UnitOfWork::<Conn>::new();
        let product = setup.register_new(lamp())?;
        setup.commit(&mut db.conn)?;
        let stored = setup.get(&product)?.clone();
        let (b1, b2) = (stored.batches[0].id, stored.batches[1].id);
        let (o1, o2) = (stored.batches[0].allocations[0].id, stored.batches[0].allocations[1].id);

        // A leaf changed on its own, and a row registered for removal.
        let mut uow = UnitOfWork::<Conn>::new();
        let first = uow.load::<Allocation>(&mut db.conn, o1)?;
        uow.get_mut(&first)?.qty = 9;
        let second = uow.load::<Allocation>(&mut db.conn, o2)?;
        uow.register_removed(&second)?;
        let root = uow.load::<Product>(&mut db.conn, stored.id)?;
        let tree = &uow.get(&root)?.batches[0].allocations;
        assert_eq!((tree.len(), tree[0].qty), (1, 9), "the held instances: {tree:?}");
        assert!(matches!(uow.get_mut(&first), Err(uow::Error::MemberOfAggregate { .. })), "a member now");
        let log = db.record();
        uow.commit(&mut db.conn)?;
        let sent = log.all();
        let count = |verb: &str, table: &str| sent.iter().filter(|s| s.starts_with(verb) && s.contains(table)).count();
        assert_eq!(
            (count("DELETE", "order_lines"), count("UPDATE", "order_lines"), count("UPDATE", "skus")),
            (1, 1, 1),
            "the removal, the change, the root's version: {sent:?}"
        );
        let mut expected = stored.clone();
        expected.batches[0].allocations = vec![Allocation { qty: 9, ..stored.batches[0].allocations[0].clone() }];
        expected.version += 1;
        assert_eq!(read_tree(&mut db.conn, stored.id)?, expected, "written with the root's version");
        assert_eq!(uow.get(&root)?, &expected, "the tree is what the database holds");

        // A Batch loaded on its own, with its tree, changed in it: its tree comes along.
        let mut uow = UnitOfWork::<Conn>::new();
        let held = uow.load::<Batch>(&mut db.conn, b1)?;
        {
            let batch = uow.get_mut(&held)?;
            batch.qty = 7;
            batch.allocations[0].qty = 8;
            batch.allocations.push(line("o3", 1));
        }
        let shown = uow.get(&held)?.clone();
        let root = uow.load::<Product>(&mut db.conn, stored.id)?;
        assert_eq!(uow.get(&root)?.batches[0], shown, "the held Batch, its tree with it");
        assert_eq!(uow.get(&root)?.batches[1].id, b2);
        uow.commit(&mut db.conn)?;
        let now = read_tree(&mut db.conn, stored.id)?;
        assert_eq!(uow.get(&root)?, &now, "the tree is what the database holds");
        assert_eq!(now.version, expected.version + 1);
        let batch = &now.batches[0];
        assert_eq!((batch.qty, batch.allocations.len(), batch.allocations[0].qty), (7, 2, 8), "{now:?}");

        // A removal registered on its own is written as the tree's: with the root's version.
        let mut uow = UnitOfWork::<Conn>::new();
        let doomed = uow.load::<Allocation>(&mut db.conn, o1)?;
        uow.register_removed(&doomed)?;
        let root = uow.load::<Product>(&mut db.conn, stored.id)?;
        assert!(uow.get(&root)?.batches[0].allocations.iter().all(|a| a.id != o1), "not in the tree");
        let log = db.record();
        uow.commit(&mut db.conn)?;
        let sent = log.all();
        let count = |verb: &str, table: &str| sent.iter().filter(|s| s.starts_with(verb) && s.contains(table)).count();
        assert_eq!((count("DELETE", "order_lines"), count("UPDATE", "skus")), (1, 1), "{sent:?}");
        let after = read_tree(&mut db.conn, stored.id)?;
        assert_eq!(uow.get(&root)?, &after);
        assert_eq!((after.version, after.batches[0].allocations.len()), (now.version + 1, 1));
        let o3 = after.batches[0].allocations[0].id;

        // Adopted in a scope that fails: the row is held on its own again, its change kept.
        let mut uow = UnitOfWork::<Conn>::new();
        let held = uow.load::<Allocation>(&mut db.conn, o3)?;
        uow.get_mut(&held)?.qty = 4;
        let result: Result<(), uow::Error> = uow.transaction(&mut db.conn, |scope| {
            scope.load::<Product>(stored.id)?;
            Err(uow::Error::NoTransaction) // stands for any failure of the caller
        });
        assert!(result.is_err());
        assert_eq!(uow.get_mut(&held)?.qty, 4, "on its own again, with its change");
        uow.commit(&mut db.conn)?;
        assert_eq!(read_tree(&mut db.conn, stored.id)?.batches[0].allocations[0].qty, 4);
        Ok(())
    }
}
