//! W7 (see BENCHMARKS.md, "W7: an aggregate"): load an aggregate of 1 root, 100 children and
//! 1,000 grandchildren, change it (10 children's quantity, a new grandchild under 10 children,
//! one grandchild removed from 10 others) and commit, against hand-written Diesel doing the
//! same job the usual way: one query per level, the tree assembled by hand, a copy kept to
//! diff against, then in one transaction an UPDATE per changed child, one multi-row INSERT,
//! one DELETE .. IN and the root's version checked and advanced. Same run, same database; on
//! in-memory SQLite and, with `--features postgres`, on PostgreSQL.
//!
//! Resetting the tables to the seeded aggregate is untimed (`iter_custom`). Before each group a
//! check runs both variants once and asserts that they leave the same rows.
//!
//! `cargo bench --bench aggregates [--features postgres]`; `python3 benches/summarize.py`.

mod common;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use diesel::prelude::*;
use uow::prelude::*;

use common::*;

const CHILDREN: usize = 100;
const GRANDCHILDREN: usize = 10;

diesel::table! {
    agg_products (id) { id -> Integer, sku -> Text, version -> Integer }
}
diesel::table! {
    agg_batches (id) { id -> Integer, product_id -> Integer, reference -> Text, qty -> Integer }
}
diesel::table! {
    agg_lines (id) { id -> Integer, batch_id -> Integer, order_id -> Text, qty -> Integer }
}
diesel::allow_tables_to_appear_in_same_query!(agg_products, agg_batches, agg_lines);

#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = agg_products)]
pub struct Product {
    #[tracked(generated)]
    id: i32,
    sku: String,
    #[tracked(version)]
    version: i32,
    #[tracked(children)]
    batches: Vec<Batch>,
}

#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = agg_batches, belongs_to(Product, foreign_key = product_id))]
pub struct Batch {
    #[tracked(generated)]
    id: i32,
    product_id: i32,
    reference: String,
    qty: i32,
    #[tracked(children)]
    lines: Vec<Line>,
}

#[derive(Tracked, Queryable, Insertable, Clone, Debug, PartialEq)]
#[tracked(table = agg_lines, belongs_to(Batch, foreign_key = batch_id))]
#[diesel(table_name = agg_lines)]
pub struct Line {
    #[tracked(generated)]
    #[diesel(skip_insertion)]
    id: i32,
    batch_id: i32,
    order_id: String,
    qty: i32,
}

/// The change both variants make: 10 children's quantity, a new line under children 10-19,
/// the first line of children 20-29 removed.
fn change(product: &mut Product) {
    for batch in &mut product.batches[..10] {
        batch.qty += 1;
    }
    for (i, batch) in product.batches[10..20].iter_mut().enumerate() {
        batch.lines.push(Line {
            id: 0,
            batch_id: batch.id,
            order_id: format!("new-{i}"),
            qty: 1,
        });
    }
    for batch in &mut product.batches[20..30] {
        batch.lines.remove(0);
    }
}

macro_rules! backend {
    ($module:ident, $feature:literal, $conn:ty, $serial:literal) => {
        #[cfg(feature = $feature)]
        mod $module {
            use super::*;

            type Conn = $conn;

            pub fn open() -> BenchDb<Conn> {
                let mut db = <Conn as BenchBackend>::open();
                db.exec(concat!(
                    "CREATE TABLE agg_products (id ",
                    $serial,
                    ", sku VARCHAR(50) NOT NULL, version INTEGER NOT NULL);",
                    "CREATE TABLE agg_batches (id ",
                    $serial,
                    ", product_id INTEGER NOT NULL REFERENCES agg_products (id), ",
                    "reference VARCHAR(50) NOT NULL, qty INTEGER NOT NULL);",
                    "CREATE TABLE agg_lines (id ",
                    $serial,
                    ", batch_id INTEGER NOT NULL REFERENCES agg_batches (id), ",
                    "order_id VARCHAR(50) NOT NULL, qty INTEGER NOT NULL);",
                    "CREATE INDEX agg_batches_product ON agg_batches (product_id);",
                    "CREATE INDEX agg_lines_batch ON agg_lines (batch_id);",
                ));
                db
            }

            /// Empties the tables and writes the aggregate again (untimed); its root's key.
            pub fn seed(db: &mut BenchDb<Conn>) -> i32 {
                db.exec(
                    "DELETE FROM agg_lines; DELETE FROM agg_batches; DELETE FROM agg_products;",
                );
                let mut uow = UnitOfWork::<Conn>::new();
                let batches = (0..CHILDREN)
                    .map(|b| Batch {
                        id: 0,
                        product_id: 0,
                        reference: format!("b{b}"),
                        qty: 100,
                        lines: (0..GRANDCHILDREN)
                            .map(|l| Line {
                                id: 0,
                                batch_id: 0,
                                order_id: format!("o{b}-{l}"),
                                qty: 1,
                            })
                            .collect(),
                    })
                    .collect();
                let root = Product {
                    id: 0,
                    sku: "LAMP".into(),
                    version: 1,
                    batches,
                };
                let product = match uow.register_new(root) {
                    Ok(product) => product,
                    Err(e) => panic!("seeding: {e}"),
                };
                if let Err(e) = uow.commit(&mut db.conn) {
                    panic!("seeding: {e}");
                }
                uow.get(&product).map_or(0, |p| p.id)
            }

            #[inline(never)]
            pub fn with_uow(conn: &mut Conn, id: i32) -> UnitOfWork<Conn> {
                let mut uow = UnitOfWork::<Conn>::new();
                let mut run = |uow: &mut UnitOfWork<Conn>| -> uow::Result<()> {
                    let product = uow.load::<Product>(conn, id)?;
                    change(uow.get_mut(&product)?);
                    uow.commit(conn)?;
                    Ok(())
                };
                if let Err(e) = run(&mut uow) {
                    panic!("uow: {e}");
                }
                uow
            }

            /// One query per level, the tree assembled by hand.
            fn load(conn: &mut Conn, id: i32) -> QueryResult<Product> {
                let (id, sku, version) = agg_products::table
                    .find(id)
                    .first::<(i32, String, i32)>(conn)?;
                let mut batches: Vec<Batch> = agg_batches::table
                    .filter(agg_batches::product_id.eq(id))
                    .order(agg_batches::id)
                    .load::<(i32, i32, String, i32)>(conn)?
                    .into_iter()
                    .map(|(id, product_id, reference, qty)| Batch {
                        id,
                        product_id,
                        reference,
                        qty,
                        lines: Vec::new(),
                    })
                    .collect();
                let ids: Vec<i32> = batches.iter().map(|b| b.id).collect();
                let lines: Vec<Line> = agg_lines::table
                    .filter(agg_lines::batch_id.eq_any(&ids))
                    .order(agg_lines::id)
                    .load(conn)?;
                let position: std::collections::HashMap<i32, usize> =
                    ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
                for line in lines {
                    if let Some(&i) = position.get(&line.batch_id) {
                        batches[i].lines.push(line);
                    }
                }
                Ok(Product {
                    id,
                    sku,
                    version,
                    batches,
                })
            }

            /// The changes found by comparing with the copy, written in one transaction.
            fn save(conn: &mut Conn, before: &Product, after: &Product) -> QueryResult<()> {
                conn.transaction(|conn| {
                    let mut new_lines = Vec::new();
                    let mut gone = Vec::new();
                    let mut changed = false;
                    for (old, new) in before.batches.iter().zip(&after.batches) {
                        if old.qty != new.qty {
                            diesel::update(agg_batches::table.find(new.id))
                                .set(agg_batches::qty.eq(new.qty))
                                .execute(conn)?;
                            changed = true;
                        }
                        new_lines.extend(new.lines.iter().filter(|l| l.id == 0).cloned());
                        let kept: std::collections::HashSet<i32> =
                            new.lines.iter().map(|l| l.id).collect();
                        gone.extend(
                            old.lines
                                .iter()
                                .map(|l| l.id)
                                .filter(|id| !kept.contains(id)),
                        );
                    }
                    if !new_lines.is_empty() {
                        diesel::insert_into(agg_lines::table)
                            .values(&new_lines)
                            .execute(conn)?;
                        changed = true;
                    }
                    if !gone.is_empty() {
                        diesel::delete(agg_lines::table.filter(agg_lines::id.eq_any(&gone)))
                            .execute(conn)?;
                        changed = true;
                    }
                    if changed {
                        let bumped = diesel::update(
                            agg_products::table
                                .find(after.id)
                                .filter(agg_products::version.eq(before.version)),
                        )
                        .set(agg_products::version.eq(before.version + 1))
                        .execute(conn)?;
                        if bumped != 1 {
                            return Err(diesel::result::Error::RollbackTransaction);
                        }
                    }
                    Ok(())
                })
            }

            #[inline(never)]
            pub fn by_hand(conn: &mut Conn, id: i32) -> Product {
                let run = |conn: &mut Conn| -> QueryResult<Product> {
                    let before = load(conn, id)?;
                    let mut after = before.clone();
                    change(&mut after);
                    save(conn, &before, &after)?;
                    Ok(after)
                };
                match run(conn) {
                    Ok(product) => product,
                    Err(e) => panic!("by hand: {e}"),
                }
            }

            /// Both variants leave the same rows (new lines' keys aside).
            pub fn check() {
                let rows = |db: &mut BenchDb<Conn>| -> (i32, Vec<i32>, Vec<(String, i32)>) {
                    let version = agg_products::table
                        .select(agg_products::version)
                        .first(&mut db.conn);
                    let qty = agg_batches::table
                        .select(agg_batches::qty)
                        .order(agg_batches::id)
                        .load(&mut db.conn);
                    let lines = agg_lines::table
                        .select((agg_lines::order_id, agg_lines::qty))
                        .order(agg_lines::order_id)
                        .load(&mut db.conn);
                    match (version, qty, lines) {
                        (Ok(v), Ok(q), Ok(l)) => (v, q, l),
                        _ => panic!("reading the check's rows failed"),
                    }
                };
                let mut db = open();
                let id = seed(&mut db);
                drop(with_uow(&mut db.conn, id));
                let by_uow = rows(&mut db);
                let id = seed(&mut db);
                by_hand(&mut db.conn, id);
                let by_diesel = rows(&mut db);
                assert_eq!(by_uow, by_diesel, "both variants leave the same rows");
                assert_eq!(by_uow.0, 2, "the version advanced once");
                assert_eq!(
                    by_uow.2.len(),
                    CHILDREN * GRANDCHILDREN,
                    "10 lines added, 10 removed"
                );
            }

            pub fn bench(c: &mut Criterion) {
                check();
                let mut g = c.benchmark_group(concat!("w7_aggregate_", stringify!($module)));
                g.sample_size(20)
                    .warm_up_time(Duration::from_secs(1))
                    .measurement_time(Duration::from_secs(4));
                g.bench_function("uow", |b| {
                    let mut db = open();
                    b.iter_custom(|iters| timed(iters, &mut db, seed, with_uow));
                });
                g.bench_function("diesel_by_hand", |b| {
                    let mut db = open();
                    b.iter_custom(|iters| timed(iters, &mut db, seed, by_hand));
                });
                g.finish();
            }
        }
    };
}

backend!(
    sqlite,
    "sqlite",
    diesel::SqliteConnection,
    "INTEGER PRIMARY KEY"
);
backend!(
    postgres,
    "postgres",
    diesel::PgConnection,
    "SERIAL PRIMARY KEY"
);

/// Times the routine only; seeding runs before each call and the output is dropped after it.
fn timed<C, O>(
    iters: u64,
    db: &mut BenchDb<C>,
    seed: fn(&mut BenchDb<C>) -> i32,
    routine: fn(&mut C, i32) -> O,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let id = seed(db);
        let start = Instant::now();
        let output = routine(&mut db.conn, id);
        total += start.elapsed();
        drop(output);
    }
    total
}

/// `UOW_W7_PROFILE=uow|hand` (and `UOW_W7_ROUNDS`, default 50): that routine on SQLite that
/// many times, nothing else, for a profiler (`valgrind --tool=callgrind
/// --toggle-collect='*with_uow*'` counts the routine's instructions only, whatever else the
/// machine does).
fn profile_only() -> bool {
    let Ok(variant) = std::env::var("UOW_W7_PROFILE") else {
        return false;
    };
    let rounds = std::env::var("UOW_W7_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(50);
    let mut db = sqlite::open();
    for _ in 0..rounds {
        let id = sqlite::seed(&mut db);
        match variant.as_str() {
            "uow" => drop(sqlite::with_uow(&mut db.conn, id)),
            _ => drop(sqlite::by_hand(&mut db.conn, id)),
        }
    }
    true
}

fn benches(c: &mut Criterion) {
    if profile_only() {
        return;
    }
    #[cfg(feature = "sqlite")]
    sqlite::bench(c);
    #[cfg(feature = "postgres")]
    postgres::bench(c);
}

criterion_group!(aggregates, benches);
criterion_main!(aggregates);
