//! W1 and W2 on one node of the 3-node MariaDB Galera cluster (`scripts/galera.sh start`;
//! feature `galera`), against hand-written Diesel on the same node, in the same run.
//!
//! Galera requires `innodb_autoinc_lock_mode = 2`, under which one INSERT's rows may get keys
//! that are not consecutive, so `LAST_INSERT_ID()` alone cannot tell them. W1 shows what
//! getting the keys back costs there: the unit of work (one multi-row `INSERT .. RETURNING`,
//! MariaDB 10.5+) against Diesel's multi-row INSERT that does not read them, and against the
//! same job by hand with what plain Diesel has (one INSERT and one `SELECT LAST_INSERT_ID()`
//! per row, in one transaction). W2 (10,000 rows loaded, one field
//! changed in each, committed) is the UPDATE side, against Diesel's UPDATE per row.
//!
//! `cargo bench --bench galera --features galera`; node 1 at the first URL of
//! `UOW_TEST_GALERA_URLS` (default `mysql://root@127.0.0.1:3316/test`).

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{new_items, Item, NewItem, StatementLog};
use criterion::{criterion_group, criterion_main, Criterion};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::MysqlConnection;
use uow::prelude::*;

use common::items;

const URLS_VAR: &str = "UOW_TEST_GALERA_URLS";
const FIRST_NODE: &str = "mysql://root@127.0.0.1:3316/test";
const W1_ROWS: usize = 100;
const W2_ROWS: usize = 10_000;

diesel::define_sql_function! {
    /// The key of this connection's last INSERT.
    fn last_insert_id() -> diesel::sql_types::Unsigned<diesel::sql_types::BigInt>;
}

/// A database of its own on node 1 with the `items` table; dropped afterwards.
struct NodeDb {
    conn: MysqlConnection,
    server: String,
    database: String,
}

impl NodeDb {
    fn open() -> NodeDb {
        let url = std::env::var(URLS_VAR)
            .ok()
            .and_then(|urls| urls.split_whitespace().next().map(str::to_string))
            .unwrap_or_else(|| FIRST_NODE.to_string());
        let server = match url.rfind('/') {
            Some(i) if i > "mysql://".len() => url[..i].to_string(),
            _ => url.clone(),
        };
        let database = format!("uow_bench_galera_{}", std::process::id());
        let mut admin = connect(&url);
        exec(&mut admin, &format!("CREATE DATABASE {database}"));
        let mut conn = connect(&format!("{server}/{database}"));
        exec(
            &mut conn,
            "CREATE TABLE items (id INTEGER AUTO_INCREMENT PRIMARY KEY, \
             name VARCHAR(255) NOT NULL, qty BIGINT NOT NULL)",
        );
        NodeDb {
            conn,
            server,
            database,
        }
    }

    fn reset(&mut self) {
        exec(&mut self.conn, "DELETE FROM items");
    }
}

impl Drop for NodeDb {
    fn drop(&mut self) {
        let mut admin = connect(&format!("{}/test", self.server));
        let _ = admin.batch_execute(&format!("DROP DATABASE {}", self.database));
    }
}

fn connect(url: &str) -> MysqlConnection {
    match MysqlConnection::establish(url) {
        Ok(conn) => conn,
        Err(e) => panic!(
            "the Galera node at {url} cannot be reached ({e}): start the cluster with \
             `scripts/galera.sh start`, or set {URLS_VAR}"
        ),
    }
}

fn exec(conn: &mut MysqlConnection, sql: &str) {
    if let Err(e) = conn.batch_execute(sql) {
        panic!("benchmark setup statement failed: {e}\n{sql}");
    }
}

fn or_panic<T, E: std::fmt::Display>(result: Result<T, E>) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("{e}"),
    }
}

// ---------------------------------------------------------------- W1

fn w1_uow(
    conn: &mut MysqlConnection,
    rows: Vec<Item>,
) -> (UnitOfWork<MysqlConnection>, Vec<Handle<Item>>) {
    let mut uow = UnitOfWork::new();
    let handles = rows
        .into_iter()
        .map(|row| or_panic(uow.register_new(row)))
        .collect();
    or_panic(uow.commit(conn));
    (uow, handles)
}

fn w1_diesel_multi_row(conn: &mut MysqlConnection, rows: Vec<Item>) -> Vec<Item> {
    let new: Vec<NewItem<'_>> = rows.iter().map(NewItem::from).collect();
    or_panic(diesel::insert_into(items::table).values(&new).execute(conn));
    rows
}

/// The same job as the unit of work: every row gets its key back, exactly.
fn w1_diesel_keys_per_row(conn: &mut MysqlConnection, mut rows: Vec<Item>) -> Vec<Item> {
    or_panic(conn.transaction::<_, diesel::result::Error, _>(|conn| {
        for row in &mut rows {
            diesel::insert_into(items::table)
                .values(NewItem::from(&*row))
                .execute(conn)?;
            let id: u64 = diesel::select(last_insert_id()).get_result(conn)?;
            row.id = id as i32;
        }
        Ok(())
    }));
    rows
}

/// W1 through diesel-async on the same node: the unit of work reads the keys of its one
/// multi-row INSERT with `RETURNING` (which Diesel's synchronous MySQL connection cannot read).
#[cfg(feature = "async")]
mod on_async {
    use super::*;
    use diesel_async::{AsyncConnection, AsyncMysqlConnection};
    use uow::AsyncUnitOfWork;

    static RUNTIME: std::sync::LazyLock<tokio::runtime::Runtime> =
        std::sync::LazyLock::new(|| or_panic(tokio::runtime::Runtime::new()));

    pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
        RUNTIME.block_on(future)
    }

    pub fn connect(db: &NodeDb) -> AsyncMysqlConnection {
        let url = format!("{}/{}", db.server, db.database);
        or_panic(block_on(AsyncMysqlConnection::establish(&url)))
    }

    pub async fn w1_uow(
        conn: &mut AsyncMysqlConnection,
        rows: Vec<Item>,
    ) -> Box<dyn std::any::Any> {
        let mut uow = AsyncUnitOfWork::<AsyncMysqlConnection>::new();
        let handles: Vec<Handle<Item>> = rows
            .into_iter()
            .map(|row| or_panic(uow.register_new(row)))
            .collect();
        or_panic(uow.commit(conn).await);
        Box::new((uow, handles))
    }

    pub async fn w1_multi_row(
        conn: &mut AsyncMysqlConnection,
        rows: Vec<Item>,
    ) -> Box<dyn std::any::Any> {
        let new: Vec<NewItem<'_>> = rows.iter().map(NewItem::from).collect();
        let insert = diesel::insert_into(items::table).values(&new);
        or_panic(diesel_async::RunQueryDsl::execute(insert, conn).await);
        Box::new(rows)
    }

    /// The keys come back through one `INSERT .. RETURNING`, each entity with its row's.
    pub fn check(db: &mut NodeDb) {
        db.reset();
        let mut conn = connect(db);
        let rows = new_items(W1_ROWS);
        let mut uow = AsyncUnitOfWork::<AsyncMysqlConnection>::new();
        let handles: Vec<Handle<Item>> = rows
            .into_iter()
            .map(|row| or_panic(uow.register_new(row)))
            .collect();
        let report = or_panic(block_on(uow.commit(&mut conn)));
        assert_eq!(report.statements(), 1, "one INSERT .. RETURNING: {report}");
        let mut by_uow: Vec<Item> = handles
            .iter()
            .map(|h| or_panic(uow.get(h)).clone())
            .collect();
        by_uow.sort_by_key(|i| i.id);
        let mut stored = load(&mut db.conn);
        stored.sort_by_key(|i| i.id);
        assert_eq!(by_uow, stored, "every entity holds its row's key");
    }

    pub fn bench(
        g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
        db: &mut NodeDb,
    ) {
        check(db);
        let mut conn = connect(db);
        type Routine = for<'c> fn(
            &'c mut AsyncMysqlConnection,
            Vec<Item>,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Box<dyn std::any::Any>> + 'c>,
        >;
        let variants: [(&str, Routine); 2] = [
            ("uow_async", |conn, rows| Box::pin(w1_uow(conn, rows))),
            ("diesel_async_multi_row", |conn, rows| {
                Box::pin(w1_multi_row(conn, rows))
            }),
        ];
        for (name, routine) in variants {
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    timed(
                        iters,
                        || {
                            db.reset();
                            new_items(W1_ROWS)
                        },
                        |rows| block_on(routine(&mut conn, rows)),
                    )
                });
            });
        }
    }
}

// ---------------------------------------------------------------- W2

fn seed(db: &mut NodeDb) {
    db.reset();
    let rows = new_items(W2_ROWS);
    let new: Vec<NewItem<'_>> = rows.iter().map(NewItem::from).collect();
    for chunk in new.chunks(1000) {
        or_panic(
            diesel::insert_into(items::table)
                .values(chunk)
                .execute(&mut db.conn),
        );
    }
}

fn load(conn: &mut MysqlConnection) -> Vec<Item> {
    or_panic(items::table.select(Item::as_select()).load(conn))
}

fn w2_uow(conn: &mut MysqlConnection) -> UnitOfWork<MysqlConnection> {
    let mut uow = UnitOfWork::new();
    let handles = uow.attach_all(load(conn));
    for h in &handles {
        or_panic(uow.get_mut(h)).qty += 1;
    }
    or_panic(uow.commit(conn));
    uow
}

fn w2_diesel_per_row(conn: &mut MysqlConnection) -> Vec<Item> {
    let mut rows = load(conn);
    for row in &mut rows {
        row.qty += 1;
    }
    or_panic(conn.transaction::<_, diesel::result::Error, _>(|conn| {
        for row in &rows {
            diesel::update(items::table.find(row.id))
                .set(items::qty.eq(row.qty))
                .execute(conn)?;
        }
        Ok(())
    }));
    rows
}

/// Both W1 variants that read keys leave the same keyed rows; uow on the synchronous driver
/// sends one INSERT per row (lock mode 2); both W2 variants leave the same rows.
fn check() {
    let mut db = NodeDb::open();
    let log = StatementLog::attach(&mut db.conn);
    let (uow, handles) = w1_uow(&mut db.conn, new_items(W1_ROWS));
    let inserts = log.take_writes();
    assert_eq!(
        inserts.len(),
        W1_ROWS,
        "lock mode 2, synchronous driver: one INSERT per row"
    );
    let mut by_uow: Vec<Item> = handles
        .iter()
        .map(|h| or_panic(uow.get(h)).clone())
        .collect();
    by_uow.sort_by_key(|i| i.id);
    let mut stored = load(&mut db.conn);
    stored.sort_by_key(|i| i.id);
    assert_eq!(by_uow, stored, "every entity holds its row's key");
    db.reset();
    let mut by_hand = w1_diesel_keys_per_row(&mut db.conn, new_items(W1_ROWS));
    by_hand.sort_by_key(|i| i.id);
    let mut stored = load(&mut db.conn);
    stored.sort_by_key(|i| i.id);
    assert_eq!(by_hand, stored);

    seed(&mut db);
    w2_uow(&mut db.conn);
    let after_uow: Vec<i64> = load(&mut db.conn).iter().map(|i| i.qty).collect();
    seed(&mut db);
    w2_diesel_per_row(&mut db.conn);
    let after_hand: Vec<i64> = load(&mut db.conn).iter().map(|i| i.qty).collect();
    assert_eq!(
        after_uow, after_hand,
        "both W2 variants leave the same rows"
    );
}

fn bench(c: &mut Criterion) {
    check();
    let mut db = NodeDb::open();
    let mut g = c.benchmark_group("galera_w1_insert_100");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    // Each routine's output is dropped outside the timed region.
    type W1 = fn(&mut MysqlConnection, Vec<Item>) -> Box<dyn std::any::Any>;
    let variants: [(&str, W1); 3] = [
        ("uow", |conn, rows| Box::new(w1_uow(conn, rows))),
        ("diesel_multi_row", |conn, rows| {
            Box::new(w1_diesel_multi_row(conn, rows))
        }),
        ("diesel_keys_per_row", |conn, rows| {
            Box::new(w1_diesel_keys_per_row(conn, rows))
        }),
    ];
    for (name, routine) in variants {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let conn = std::cell::RefCell::new(&mut db);
                timed(
                    iters,
                    || {
                        conn.borrow_mut().reset();
                        new_items(W1_ROWS)
                    },
                    |rows| routine(&mut conn.borrow_mut().conn, rows),
                )
            });
        });
    }
    #[cfg(feature = "async")]
    on_async::bench(&mut g, &mut db);
    g.finish();

    let mut g = c.benchmark_group("galera_w2_update_10000");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    type W2 = fn(&mut MysqlConnection) -> Box<dyn std::any::Any>;
    let variants: [(&str, W2); 2] = [
        ("uow", |conn| Box::new(w2_uow(conn))),
        ("diesel_per_row", |conn| Box::new(w2_diesel_per_row(conn))),
    ];
    for (name, routine) in variants {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let conn = std::cell::RefCell::new(&mut db);
                timed(
                    iters,
                    || seed(&mut conn.borrow_mut()),
                    |()| routine(&mut conn.borrow_mut().conn),
                )
            });
        });
    }
    g.finish();
}

/// Times `routine` only: `before` makes its input first, and its output is dropped after.
fn timed<I, O>(
    iters: u64,
    mut before: impl FnMut() -> I,
    mut routine: impl FnMut(I) -> O,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let input = before();
        let start = Instant::now();
        let output = routine(input);
        total += start.elapsed();
        drop(output);
    }
    total
}

criterion_group!(galera, bench);
criterion_main!(galera);
