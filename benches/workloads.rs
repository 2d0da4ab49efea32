//! W1-W4 and W6 (see BENCHMARKS.md): the unit of work and its baselines, in the same run, on
//! in-memory SQLite and, with `--features postgres`, on PostgreSQL.
//!
//! Every benchmark gets a database of its own. Work that is not part of the measured job
//! (emptying tables, seeding rows, building the input values) runs outside the timed region
//! through `iter_custom`. Before each group a sanity check runs every variant once on a
//! separate database and asserts what it sent and what the tables hold afterwards, so a
//! baseline cannot silently do less work than the unit of work.
//!
//! The measured routines are `#[inline(never)]` so that profiles (callgrind's
//! `--toggle-collect`, perf) attribute costs to them.
//!
//! Run the whole suite with `bash benches/run.sh`; this binary alone with
//! `cargo bench --bench workloads [--features postgres] [-- FILTER]`.
//!
//! With `UOW_BENCH_RTT` set (by `benches/latency.sh`, which puts PostgreSQL behind a link with
//! that round trip), only W1, W2 and W6 run, on PostgreSQL only, in groups named
//! `<workload>_postgres_rtt<RTT>` so that the summary keeps them apart from the local runs.

mod common;

use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode};

use common::*;

/// Settings for groups whose routine takes milliseconds (10,000 rows) or microseconds.
fn configure(group: &mut BenchmarkGroup<'_, WallTime>, heavy: bool) {
    if heavy {
        group
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(5));
    } else {
        group
            .sample_size(30)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
    }
}

/// Times `routine` only: `setup` runs before each call and the routine's output is dropped
/// after it, both untimed (so freeing the entities is counted for no variant). Both get
/// `state` (the benchmark's database).
fn timed<D, S, I, R, O>(iters: u64, state: &mut D, mut setup: S, mut routine: R) -> Duration
where
    S: FnMut(&mut D) -> I,
    R: FnMut(&mut D, I) -> O,
{
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let input = setup(state);
        let start = Instant::now();
        let output = routine(state, input);
        total += start.elapsed();
        drop(output);
    }
    total
}

/// The round trip of the delayed link this run goes through, from `UOW_BENCH_RTT`: a label
/// (e.g. `1ms`) that becomes part of every group's name. The bench cannot measure the link
/// itself; benches/latency.sh builds it and checks its round trip before the run.
fn link_rtt() -> Option<String> {
    let rtt = std::env::var("UOW_BENCH_RTT").ok()?;
    if rtt.is_empty() {
        return None;
    }
    assert!(
        rtt.chars().all(|c| c.is_ascii_alphanumeric()),
        "UOW_BENCH_RTT={rtt:?}: letters and digits only (it becomes part of group names)"
    );
    Some(rtt)
}

/// A W2 commit written by hand as one set-based UPDATE: the variant's name and the function.
type SetBased<C> = (
    &'static str,
    fn(&mut C, &[Item]) -> diesel::QueryResult<usize>,
);

fn ok<T, E: std::fmt::Display>(result: Result<T, E>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("{what} failed: {e}"),
    }
}

macro_rules! workloads {
    ($module:ident, $conn:ty, $own:ident) => {
        mod $module {
            use super::*;

            use diesel::prelude::*;
            use uow::prelude::*;

            type Conn = $conn;

            pub fn all(c: &mut Criterion) {
                w1(c);
                w2(c);
                // W3 sends one statement per commit and W4 none: a slower link adds the same
                // round trips to both sides of their ratios and tells nothing new.
                if link_rtt().is_none() {
                    w3(c);
                    w4(c);
                }
                w6(c);
            }

            fn group<'c>(
                c: &'c mut Criterion,
                name: &str,
                heavy: bool,
            ) -> BenchmarkGroup<'c, WallTime> {
                let link = link_rtt()
                    .map(|rtt| format!("_rtt{rtt}"))
                    .unwrap_or_default();
                let mut group =
                    c.benchmark_group(format!("{name}_{}{link}", <Conn as BenchBackend>::NAME));
                // Over a delayed link every routine takes milliseconds.
                configure(&mut group, heavy || !link.is_empty());
                group
            }

            fn count_items(conn: &mut Conn) -> i64 {
                ok(items::table.count().get_result(conn), "count")
            }

            fn seed_items(conn: &mut Conn, count: usize) {
                let rows = new_items(count);
                let new: Vec<NewItem<'_>> = rows.iter().map(NewItem::from).collect();
                ok(
                    diesel::insert_into(items::table).values(&new).execute(conn),
                    "seeding items",
                );
            }

            fn load_items(conn: &mut Conn) -> Vec<Item> {
                ok(
                    items::table
                        .order(items::id)
                        .select(Item::as_select())
                        .load(conn),
                    "loading items",
                )
            }

            // ---------------------------------------------------------------- W1

            #[inline(never)]
            fn w1_uow(conn: &mut Conn, rows: Vec<Item>) -> UnitOfWork<Conn> {
                let mut uow = UnitOfWork::<Conn>::new();
                for row in rows {
                    ok(uow.register_new(row), "register_new");
                }
                ok(uow.commit(conn), "commit");
                uow
            }

            #[inline(never)]
            fn w1_diesel_multi_row(conn: &mut Conn, rows: &[Item]) {
                let new: Vec<NewItem<'_>> = rows.iter().map(NewItem::from).collect();
                ok(
                    diesel::insert_into(items::table).values(&new).execute(conn),
                    "insert",
                );
            }

            #[inline(never)]
            fn w1_diesel_multi_row_returning(conn: &mut Conn, rows: &mut [Item]) {
                let new: Vec<NewItem<'_>> = rows.iter().map(NewItem::from).collect();
                let ids: Vec<i32> = ok(
                    diesel::insert_into(items::table)
                        .values(&new)
                        .returning(items::id)
                        .get_results(conn),
                    "insert returning",
                );
                for (row, id) in rows.iter_mut().zip(ids) {
                    row.id = id;
                }
            }

            #[inline(never)]
            fn w1_diesel_row_by_row(conn: &mut Conn, rows: &[Item]) {
                ok(
                    conn.transaction::<_, diesel::result::Error, _>(|conn| {
                        for row in rows {
                            diesel::insert_into(items::table)
                                .values(NewItem::from(row))
                                .execute(conn)?;
                        }
                        Ok(())
                    }),
                    "insert loop",
                );
            }

            /// Whether W1 with `n` rows times Diesel's one INSERT per row: not over a delayed
            /// link at 10,000 rows, where it is 10,000 round trips (over 10 s a run, two
            /// minutes for criterion's ten samples) and says no more than at 100 rows.
            fn w1_row_by_row_timed(n: usize) -> bool {
                link_rtt().is_none() || n <= 1000
            }

            fn w1_check(n: usize) {
                let mut db = <Conn as BenchBackend>::open();
                let log = StatementLog::attach(&mut db.conn);
                w1_uow(&mut db.conn, new_items(n));
                // uow sends batches of at most 1,000 rows (one cached statement shape), or on
                // PostgreSQL of 65,535 (every column one array, one text for any rows).
                let per_statement = match <Conn as BenchBackend>::NAME {
                    "postgres" => 65_535,
                    _ => 1000,
                };
                assert_eq!(
                    log.take_writes().len(),
                    n.div_ceil(per_statement),
                    "uow: multi-row INSERTs of {per_statement} rows"
                );
                assert_eq!(count_items(&mut db.conn), n as i64);
                db.reset();
                log.take();
                w1_diesel_multi_row(&mut db.conn, &new_items(n));
                assert_eq!(log.take_writes().len(), 1, "Diesel: one multi-row INSERT");
                assert_eq!(count_items(&mut db.conn), n as i64);
                db.reset();
                let mut rows = new_items(n);
                log.take();
                w1_diesel_multi_row_returning(&mut db.conn, &mut rows);
                assert_eq!(log.take_writes().len(), 1, "Diesel: one INSERT RETURNING");
                assert!(rows.iter().all(|r| r.id > 0));
                if w1_row_by_row_timed(n) {
                    db.reset();
                    log.take();
                    w1_diesel_row_by_row(&mut db.conn, &new_items(n));
                    assert_eq!(log.take_writes().len(), n, "Diesel: one INSERT per row");
                    assert_eq!(count_items(&mut db.conn), n as i64);
                }
            }

            fn w1(c: &mut Criterion) {
                for n in [100usize, 10_000] {
                    w1_check(n);
                    let heavy = n > 1000;
                    let mut g = group(c, &format!("w1_insert_{n}"), heavy);
                    g.bench_function("uow", |b| {
                        let mut db = <Conn as BenchBackend>::open();
                        b.iter_custom(|iters| {
                            timed(
                                iters,
                                &mut db,
                                |db| {
                                    db.reset();
                                    new_items(n)
                                },
                                |db, rows| w1_uow(&mut db.conn, rows),
                            )
                        })
                    });
                    g.bench_function("diesel_multi_row", |b| {
                        let mut db = <Conn as BenchBackend>::open();
                        b.iter_custom(|iters| {
                            timed(
                                iters,
                                &mut db,
                                |db| {
                                    db.reset();
                                    new_items(n)
                                },
                                |db, rows| {
                                    w1_diesel_multi_row(&mut db.conn, &rows);
                                    rows
                                },
                            )
                        })
                    });
                    g.bench_function("diesel_multi_row_returning", |b| {
                        let mut db = <Conn as BenchBackend>::open();
                        b.iter_custom(|iters| {
                            timed(
                                iters,
                                &mut db,
                                |db| {
                                    db.reset();
                                    new_items(n)
                                },
                                |db, mut rows| {
                                    w1_diesel_multi_row_returning(&mut db.conn, &mut rows);
                                    rows
                                },
                            )
                        })
                    });
                    if w1_row_by_row_timed(n) {
                        g.bench_function("diesel_row_by_row", |b| {
                            let mut db = <Conn as BenchBackend>::open();
                            b.iter_custom(|iters| {
                                timed(
                                    iters,
                                    &mut db,
                                    |db| {
                                        db.reset();
                                        new_items(n)
                                    },
                                    |db, rows| {
                                        w1_diesel_row_by_row(&mut db.conn, &rows);
                                        rows
                                    },
                                )
                            })
                        });
                    }
                    $own::w1(&mut g, n);
                    $own::w1_returning(&mut g, n);
                    g.finish();
                }
            }

            // ---------------------------------------------------------------- W2

            const W2_ROWS: usize = 10_000;

            /// Load every row, change one field of each, commit.
            #[inline(never)]
            fn w2_uow(conn: &mut Conn) -> UnitOfWork<Conn> {
                let rows = load_items(conn);
                let mut uow = UnitOfWork::<Conn>::new();
                let handles = uow.attach_all(rows);
                for h in &handles {
                    ok(uow.get_mut(h), "get_mut").qty += 1;
                }
                ok(uow.commit(conn), "commit");
                uow
            }

            #[inline(never)]
            fn w2_diesel_loop(conn: &mut Conn) -> Vec<Item> {
                let mut rows = load_items(conn);
                for row in &mut rows {
                    row.qty += 1;
                }
                w2_diesel_updates(conn, &rows);
                rows
            }

            #[inline(never)]
            fn w2_diesel_updates(conn: &mut Conn, rows: &[Item]) {
                ok(
                    conn.transaction::<_, diesel::result::Error, _>(|conn| {
                        for row in rows {
                            diesel::update(items::table.find(row.id))
                                .set(items::qty.eq(row.qty))
                                .execute(conn)?;
                        }
                        Ok(())
                    }),
                    "update loop",
                );
            }

            /// Load, change, and the backend's hand-written set-based UPDATE (one statement).
            #[inline(never)]
            fn w2_diesel_set_based(
                conn: &mut Conn,
                update: fn(&mut Conn, &[Item]) -> diesel::QueryResult<usize>,
            ) -> Vec<Item> {
                let mut rows = load_items(conn);
                for row in &mut rows {
                    row.qty += 1;
                }
                ok(update(conn, &rows), "UPDATE .. FROM");
                rows
            }

            /// Held and changed already: the commit alone.
            fn w2_prepare_uow(conn: &mut Conn) -> UnitOfWork<Conn> {
                let mut uow = UnitOfWork::<Conn>::new();
                let handles = uow.attach_all(load_items(conn));
                for h in &handles {
                    ok(uow.get_mut(h), "get_mut").qty += 1;
                }
                uow
            }

            fn w2_check() {
                let mut db = <Conn as BenchBackend>::open();
                seed_items(&mut db.conn, W2_ROWS);
                let log = StatementLog::attach(&mut db.conn);
                w2_uow(&mut db.conn);
                let writes = log.take_writes();
                // One UPDATE per 1,000 rows on SQLite, per 65,535 on PostgreSQL (a column of
                // any number of rows is one array), per 200 on MySQL (rows picked by `CASE`).
                let per_statement = match <Conn as BenchBackend>::NAME {
                    "mysql" => 200,
                    "postgres" => 65_535,
                    _ => 1000,
                };
                assert_eq!(
                    writes.len(),
                    W2_ROWS.div_ceil(per_statement),
                    "uow: batched UPDATEs"
                );
                assert!(
                    writes.iter().all(|w| !w.contains("name")),
                    "only qty is written"
                );
                w2_diesel_loop(&mut db.conn);
                assert_eq!(log.take_writes().len(), W2_ROWS);
                let rows = load_items(&mut db.conn);
                assert!(rows.iter().enumerate().all(|(i, r)| r.qty == i as i64 + 2));

                for &(name, update) in $own::W2_SET_BASED {
                    // From the same seeded table (keys restart), the same rows as the unit of
                    // work's commit leaves, in one statement.
                    db.reset();
                    seed_items(&mut db.conn, W2_ROWS);
                    w2_uow(&mut db.conn);
                    let by_uow = load_items(&mut db.conn);
                    db.reset();
                    seed_items(&mut db.conn, W2_ROWS);
                    log.take();
                    w2_diesel_set_based(&mut db.conn, update);
                    let writes = log.take_writes();
                    assert_eq!(writes.len(), 1, "{name}: one UPDATE: {writes:#?}");
                    assert_eq!(
                        load_items(&mut db.conn),
                        by_uow,
                        "{name}: the unit of work's rows"
                    );
                    let changed = ok(update(&mut db.conn, &by_uow), name);
                    assert_eq!(changed, W2_ROWS, "{name}: every row matched");
                }
            }

            fn w2(c: &mut Criterion) {
                w2_check();
                let mut g = group(c, "w2_update_10000", true);
                g.bench_function("uow", |b| {
                    let mut db = <Conn as BenchBackend>::open();
                    seed_items(&mut db.conn, W2_ROWS);
                    b.iter_custom(|iters| {
                        timed(iters, &mut db, |_| (), |db, ()| w2_uow(&mut db.conn))
                    })
                });
                g.bench_function("diesel_update_loop", |b| {
                    let mut db = <Conn as BenchBackend>::open();
                    seed_items(&mut db.conn, W2_ROWS);
                    b.iter_custom(|iters| {
                        timed(
                            iters,
                            &mut db,
                            |_| (),
                            |db, ()| w2_diesel_loop(&mut db.conn),
                        )
                    })
                });
                for &(name, update) in $own::W2_SET_BASED {
                    g.bench_function(name, |b| {
                        let mut db = <Conn as BenchBackend>::open();
                        seed_items(&mut db.conn, W2_ROWS);
                        b.iter_custom(|iters| {
                            timed(
                                iters,
                                &mut db,
                                |_| (),
                                |db, ()| w2_diesel_set_based(&mut db.conn, update),
                            )
                        })
                    });
                }
                g.finish();

                // Over a delayed link W2' would add another four minutes of the per-row loop
                // (20,000 round trips a run) for what W2 already shows.
                if link_rtt().is_some() {
                    return;
                }

                // The same without the load and the mutation: only what commit sends.
                let mut g = group(c, "w2_commit_only_10000", true);
                g.bench_function("uow", |b| {
                    let mut db = <Conn as BenchBackend>::open();
                    seed_items(&mut db.conn, W2_ROWS);
                    b.iter_custom(|iters| {
                        timed(
                            iters,
                            &mut db,
                            |db| w2_prepare_uow(&mut db.conn),
                            |db, mut uow| {
                                ok(uow.commit(&mut db.conn), "commit");
                                uow
                            },
                        )
                    })
                });
                g.bench_function("diesel_update_loop", |b| {
                    let mut db = <Conn as BenchBackend>::open();
                    seed_items(&mut db.conn, W2_ROWS);
                    b.iter_custom(|iters| {
                        timed(
                            iters,
                            &mut db,
                            |db| {
                                let mut rows = load_items(&mut db.conn);
                                for row in &mut rows {
                                    row.qty += 1;
                                }
                                rows
                            },
                            |db, rows| {
                                w2_diesel_updates(&mut db.conn, &rows);
                                rows
                            },
                        )
                    })
                });
                for &(name, update) in $own::W2_SET_BASED {
                    g.bench_function(name, |b| {
                        let mut db = <Conn as BenchBackend>::open();
                        seed_items(&mut db.conn, W2_ROWS);
                        b.iter_custom(|iters| {
                            timed(
                                iters,
                                &mut db,
                                |db| {
                                    let mut rows = load_items(&mut db.conn);
                                    for row in &mut rows {
                                        row.qty += 1;
                                    }
                                    rows
                                },
                                |db, rows| {
                                    ok(update(&mut db.conn, &rows), name);
                                    rows
                                },
                            )
                        })
                    });
                }
                $own::w2_commit(&mut g);
                g.finish();
            }

            // ---------------------------------------------------------------- W3

            const W3_TRACKED: usize = 10_000;
            const W3_TOUCHED: usize = 100;

            /// A unit of work holding `tracked` of the rows, and the handles of the 100 that
            /// each commit changes (the same rows whatever `tracked` is).
            fn w3_setup(conn: &mut Conn, tracked: usize) -> (UnitOfWork<Conn>, Vec<Handle<Item>>) {
                let step = W3_TRACKED / W3_TOUCHED;
                let rows = load_items(conn);
                let mut uow = UnitOfWork::<Conn>::new();
                let mut touched = Vec::new();
                for (i, row) in rows.into_iter().enumerate() {
                    if tracked == W3_TRACKED || i % step == 0 {
                        let h = uow.attach(row);
                        if i % step == 0 {
                            touched.push(h);
                        }
                    }
                }
                assert_eq!(uow.len(), tracked);
                assert_eq!(touched.len(), W3_TOUCHED);
                (uow, touched)
            }

            #[inline(never)]
            fn w3_round(conn: &mut Conn, uow: &mut UnitOfWork<Conn>, touched: &[Handle<Item>]) {
                for h in touched {
                    ok(uow.get_mut(h), "get_mut").qty += 1;
                }
                ok(uow.commit(conn), "commit");
            }

            fn w3_check() {
                let mut db = <Conn as BenchBackend>::open();
                seed_items(&mut db.conn, W3_TRACKED);
                let log = StatementLog::attach(&mut db.conn);
                for tracked in [W3_TRACKED, W3_TOUCHED] {
                    let (mut uow, touched) = w3_setup(&mut db.conn, tracked);
                    log.take();
                    w3_round(&mut db.conn, &mut uow, &touched);
                    // The touched rows in one UPDATE, however many are tracked.
                    assert_eq!(log.take_writes().len(), 1);
                }
            }

            fn w3(c: &mut Criterion) {
                w3_check();
                let mut g = group(c, "w3_touched_100", false);
                for (name, tracked) in [
                    ("uow_10000_tracked", W3_TRACKED),
                    ("uow_100_tracked", W3_TOUCHED),
                ] {
                    g.bench_function(name, |b| {
                        let mut db = <Conn as BenchBackend>::open();
                        seed_items(&mut db.conn, W3_TRACKED);
                        let (mut uow, touched) = w3_setup(&mut db.conn, tracked);
                        b.iter(|| w3_round(&mut db.conn, &mut uow, &touched))
                    });
                }
                g.finish();
            }

            // ---------------------------------------------------------------- W4

            fn w4(c: &mut Criterion) {
                let mut db = <Conn as BenchBackend>::open();
                seed_items(&mut db.conn, 10_000);
                let mut uow = UnitOfWork::<Conn>::new();
                uow.attach_all(load_items(&mut db.conn));
                let log = StatementLog::attach(&mut db.conn);
                let report = ok(uow.commit(&mut db.conn), "commit");
                assert_eq!(report.statements(), 0);
                assert!(log.take().is_empty(), "a clean commit sends nothing");
                drop(db);

                let mut g = group(c, "w4_clean_commit", false);
                for (name, tracked) in [("uow_10000_clean", 10_000), ("uow_empty", 0)] {
                    g.bench_function(name, |b| {
                        let mut db = <Conn as BenchBackend>::open();
                        seed_items(&mut db.conn, tracked);
                        let mut uow = UnitOfWork::<Conn>::new();
                        uow.attach_all(load_items(&mut db.conn));
                        assert_eq!(uow.len(), tracked);
                        b.iter(|| ok(uow.commit(&mut db.conn), "commit"))
                    });
                }
                g.finish();
            }

            // ---------------------------------------------------------------- W6

            const W6_AUTHORS: usize = 100;
            const W6_BOOKS_EACH: usize = 10;
            const W6_NEW_AUTHORS: usize = 20;
            const W6_NEW_BOOKS_EACH: usize = 5;
            /// Authors 0..10 are deleted with their books; books of authors 10..30 retitled.
            const W6_REMOVED_AUTHORS: usize = 10;
            const W6_RETITLED_AUTHORS: std::ops::Range<usize> = 10..30;

            /// 100 authors with 10 books each, read back as loaded entities.
            fn w6_seed(conn: &mut Conn) -> (Vec<Author>, Vec<Book>) {
                let names: Vec<String> = (0..W6_AUTHORS).map(|i| format!("author {i}")).collect();
                let new: Vec<NewAuthor<'_>> = names.iter().map(|n| NewAuthor { name: n }).collect();
                ok(
                    diesel::insert_into(authors::table)
                        .values(&new)
                        .execute(conn),
                    "seeding authors",
                );
                let authors: Vec<Author> = ok(
                    authors::table
                        .order(authors::id)
                        .select(Author::as_select())
                        .load(conn),
                    "loading authors",
                );
                let titles: Vec<(i32, String)> = authors
                    .iter()
                    .flat_map(|a| {
                        (0..W6_BOOKS_EACH).map(move |j| (a.id, format!("book {j} of {}", a.name)))
                    })
                    .collect();
                let new: Vec<NewBook<'_>> = titles
                    .iter()
                    .map(|(author_id, title)| NewBook {
                        author_id: *author_id,
                        title,
                    })
                    .collect();
                ok(
                    diesel::insert_into(books::table).values(&new).execute(conn),
                    "seeding books",
                );
                let books: Vec<Book> = ok(
                    books::table
                        .order(books::id)
                        .select(Book::as_select())
                        .load(conn),
                    "loading books",
                );
                (authors, books)
            }

            struct W6Uow {
                uow: UnitOfWork<Conn>,
                authors: Vec<Handle<Author>>,
                books: Vec<Handle<Book>>,
            }

            fn w6_uow_setup(conn: &mut Conn) -> W6Uow {
                let (authors, books) = w6_seed(conn);
                let mut uow = UnitOfWork::<Conn>::new();
                let authors = uow.attach_all(authors);
                let books = uow.attach_all(books);
                W6Uow {
                    uow,
                    authors,
                    books,
                }
            }

            #[inline(never)]
            fn w6_uow(conn: &mut Conn, w: W6Uow) -> UnitOfWork<Conn> {
                let W6Uow {
                    mut uow,
                    authors,
                    books,
                } = w;
                for i in 0..W6_NEW_AUTHORS {
                    let author = ok(
                        uow.register_new(Author {
                            id: 0,
                            name: format!("new author {i}"),
                        }),
                        "register_new",
                    );
                    for j in 0..W6_NEW_BOOKS_EACH {
                        let book = ok(
                            uow.register_new(Book {
                                id: 0,
                                author_id: 0,
                                title: format!("new book {j} of {i}"),
                            }),
                            "register_new",
                        );
                        ok(uow.set_parent(&book, &author), "set_parent");
                    }
                }
                for h in &books[W6_RETITLED_AUTHORS.start * W6_BOOKS_EACH
                    ..W6_RETITLED_AUTHORS.end * W6_BOOKS_EACH]
                {
                    ok(uow.get_mut(h), "get_mut").title.push_str(" (2nd ed.)");
                }
                for h in &books[..W6_REMOVED_AUTHORS * W6_BOOKS_EACH] {
                    ok(uow.register_removed(h), "register_removed");
                }
                for h in &authors[..W6_REMOVED_AUTHORS] {
                    ok(uow.register_removed(h), "register_removed");
                }
                ok(uow.commit(conn), "commit");
                uow
            }

            #[inline(never)]
            fn w6_diesel(
                conn: &mut Conn,
                data: (Vec<Author>, Vec<Book>),
            ) -> (Vec<Author>, Vec<Book>) {
                let (mut authors, mut books) = data;
                let result = conn.transaction::<_, diesel::result::Error, _>(|conn| {
                    let names: Vec<String> = (0..W6_NEW_AUTHORS)
                        .map(|i| format!("new author {i}"))
                        .collect();
                    let new: Vec<NewAuthor<'_>> =
                        names.iter().map(|n| NewAuthor { name: n }).collect();
                    let ids: Vec<i32> = diesel::insert_into(authors::table)
                        .values(&new)
                        .returning(authors::id)
                        .get_results(conn)?;
                    let titles: Vec<(i32, String)> = ids
                        .iter()
                        .enumerate()
                        .flat_map(|(i, id)| {
                            (0..W6_NEW_BOOKS_EACH)
                                .map(move |j| (*id, format!("new book {j} of {i}")))
                        })
                        .collect();
                    let new: Vec<NewBook<'_>> = titles
                        .iter()
                        .map(|(author_id, title)| NewBook {
                            author_id: *author_id,
                            title,
                        })
                        .collect();
                    let book_ids: Vec<i32> = diesel::insert_into(books::table)
                        .values(&new)
                        .returning(books::id)
                        .get_results(conn)?;
                    let retitled = &mut books[W6_RETITLED_AUTHORS.start * W6_BOOKS_EACH
                        ..W6_RETITLED_AUTHORS.end * W6_BOOKS_EACH];
                    for book in retitled {
                        book.title.push_str(" (2nd ed.)");
                        diesel::update(books::table.find(book.id))
                            .set(books::title.eq(&book.title))
                            .execute(conn)?;
                    }
                    let removed_books: Vec<i32> = books
                        .drain(..W6_REMOVED_AUTHORS * W6_BOOKS_EACH)
                        .map(|b| b.id)
                        .collect();
                    diesel::delete(books::table.filter(books::id.eq_any(&removed_books)))
                        .execute(conn)?;
                    let removed_authors: Vec<i32> =
                        authors.drain(..W6_REMOVED_AUTHORS).map(|a| a.id).collect();
                    diesel::delete(authors::table.filter(authors::id.eq_any(&removed_authors)))
                        .execute(conn)?;
                    for (id, name) in ids.into_iter().zip(names) {
                        authors.push(Author { id, name });
                    }
                    for (id, (author_id, title)) in book_ids.into_iter().zip(titles) {
                        books.push(Book {
                            id,
                            author_id,
                            title,
                        });
                    }
                    Ok(())
                });
                ok(result, "W6 transaction");
                (authors, books)
            }

            fn w6_tables(conn: &mut Conn) -> (Vec<Author>, Vec<Book>) {
                let authors = ok(
                    authors::table
                        .order(authors::id)
                        .select(Author::as_select())
                        .load(conn),
                    "loading authors",
                );
                let books = ok(
                    books::table
                        .order(books::id)
                        .select(Book::as_select())
                        .load(conn),
                    "loading books",
                );
                (authors, books)
            }

            fn w6_check() {
                let mut db = <Conn as BenchBackend>::open();
                let setup = w6_uow_setup(&mut db.conn);
                let log = StatementLog::attach(&mut db.conn);
                let uow = w6_uow(&mut db.conn, setup);
                let uow_writes = log.take_writes();
                let by_uow = w6_tables(&mut db.conn);
                assert_eq!(
                    by_uow.0.len(),
                    W6_AUTHORS - W6_REMOVED_AUTHORS + W6_NEW_AUTHORS
                );
                // Every new book points at its new author, with the key the database gave it.
                for book in &by_uow.1 {
                    assert!(by_uow.0.iter().any(|a| a.id == book.author_id));
                }
                assert_eq!(uow.len(), by_uow.0.len() + by_uow.1.len());
                db.reset();
                let data = w6_seed(&mut db.conn);
                log.take();
                let in_memory = w6_diesel(&mut db.conn, data);
                let diesel_writes = log.take_writes();
                let by_diesel = w6_tables(&mut db.conn);
                assert_eq!(by_uow, by_diesel, "both write the same rows");
                let mut in_memory = in_memory;
                in_memory.0.sort_by_key(|a| a.id);
                in_memory.1.sort_by_key(|b| b.id);
                assert_eq!(in_memory, by_diesel);
                // The baseline: 2 INSERTs, 200 UPDATEs, 2 DELETEs. uow: the same INSERTs and
                // DELETEs, and one UPDATE carrying the 200 retitled books.
                assert_eq!(diesel_writes.len(), 204, "{diesel_writes:#?}");
                assert_eq!(uow_writes.len(), 5, "{uow_writes:#?}");
            }

            fn w6(c: &mut Criterion) {
                w6_check();
                let mut g = group(c, "w6_mixed", false);
                g.bench_function("uow", |b| {
                    let mut db = <Conn as BenchBackend>::open();
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            db.reset();
                            let setup = w6_uow_setup(&mut db.conn);
                            let start = Instant::now();
                            let uow = w6_uow(&mut db.conn, setup);
                            total += start.elapsed();
                            drop(uow);
                        }
                        total
                    })
                });
                g.bench_function("diesel", |b| {
                    let mut db = <Conn as BenchBackend>::open();
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            db.reset();
                            let data = w6_seed(&mut db.conn);
                            let start = Instant::now();
                            let data = w6_diesel(&mut db.conn, data);
                            total += start.elapsed();
                            drop(data);
                        }
                        total
                    })
                });
                g.finish();
            }
        }
    };
}

workloads!(sqlite, diesel::SqliteConnection, raw_sqlite);
#[cfg(feature = "postgres")]
workloads!(postgres, diesel::PgConnection, postgres_own);

/// PostgreSQL's own baselines: no raw (C API) ones here, and W2's commit as one set-based
/// UPDATE.
#[cfg(feature = "postgres")]
mod postgres_own {
    use super::*;

    use diesel::PgConnection;

    pub fn w1(_group: &mut BenchmarkGroup<'_, WallTime>, _n: usize) {}
    pub fn w1_returning(_group: &mut BenchmarkGroup<'_, WallTime>, _n: usize) {}

    pub fn w2_commit(_group: &mut BenchmarkGroup<'_, WallTime>) {}

    /// W2's commit by hand in one statement: the rows as a `VALUES` list of bound values (the
    /// statement the unit of work sends), and as two bound arrays.
    pub const W2_SET_BASED: &[SetBased<PgConnection>] = &[
        (
            "diesel_update_from_values",
            update_qty_from_values::<diesel::pg::Pg, PgConnection, true>,
        ),
        ("diesel_update_from_unnest", update_qty_from_unnest),
    ];

    /// The fastest W2 commit by hand found: `common::update_qty_from_unnest_query`, two bound
    /// arrays joined to the table in one statement (also the async bench's baseline). It runs
    /// on its own (one statement is atomic), without the BEGIN and COMMIT round trips a unit
    /// of work sends.
    #[inline(never)]
    fn update_qty_from_unnest(
        conn: &mut PgConnection,
        rows: &[Item],
    ) -> diesel::QueryResult<usize> {
        diesel::query_dsl::methods::ExecuteDsl::execute(update_qty_from_unnest_query(rows), conn)
    }
}

/// W2's commit by hand as one `UPDATE .. FROM` a table of values: `WITH v (id, qty) AS
/// (VALUES (?, ?), ..) UPDATE items SET qty = v.qty FROM v WHERE items.id = v.id` (SQLite takes
/// no column names on a subquery in FROM, so the values are a CTE), every value bound (10,000 rows are 20,000 binds, under both backends' limits), on its
/// own without a transaction. PostgreSQL types the first row's binds by cast (its `VALUES`
/// takes the types of the first row).
mod set_based {
    use super::*;

    use diesel::backend::Backend;
    use diesel::query_builder::{AstPass, QueryFragment, QueryId};
    use diesel::serialize::ToSql;
    use diesel::sql_types::{BigInt, Integer};
    use diesel::{Connection, RunQueryDsl};

    /// `CAST`: the first row's binds cast to the columns' types (PostgreSQL).
    struct UpdateFromValues<'a, const CAST: bool>(&'a [Item]);

    impl<const CAST: bool> QueryId for UpdateFromValues<'_, CAST> {
        type QueryId = ();
        const HAS_STATIC_QUERY_ID: bool = false;
    }

    impl<DB, const CAST: bool> QueryFragment<DB> for UpdateFromValues<'_, CAST>
    where
        DB: Backend
            + diesel::sql_types::HasSqlType<Integer>
            + diesel::sql_types::HasSqlType<BigInt>,
        i32: ToSql<Integer, DB>,
        i64: ToSql<BigInt, DB>,
    {
        fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> diesel::QueryResult<()> {
            out.unsafe_to_cache_prepared();
            out.push_sql("WITH v (id, qty) AS (VALUES ");
            for (i, row) in self.0.iter().enumerate() {
                out.push_sql(if i == 0 { "(" } else { ", (" });
                out.push_bind_param::<Integer, i32>(&row.id)?;
                out.push_sql(if i == 0 && CAST { "::int4, " } else { ", " });
                out.push_bind_param::<BigInt, i64>(&row.qty)?;
                out.push_sql(if i == 0 && CAST { "::int8)" } else { ")" });
            }
            out.push_sql(") UPDATE items SET qty = v.qty FROM v WHERE items.id = v.id");
            Ok(())
        }
    }

    impl<C, const CAST: bool> RunQueryDsl<C> for UpdateFromValues<'_, CAST> {}

    #[inline(never)]
    pub fn update_qty_from_values<DB, C, const CAST: bool>(
        conn: &mut C,
        rows: &[Item],
    ) -> diesel::QueryResult<usize>
    where
        C: Connection<Backend = DB>,
        DB: Backend
            + diesel::sql_types::HasSqlType<Integer>
            + diesel::sql_types::HasSqlType<BigInt>,
        i32: ToSql<Integer, DB>,
        i64: ToSql<BigInt, DB>,
    {
        UpdateFromValues::<CAST>(rows).execute(conn)
    }
}

use set_based::update_qty_from_values;

/// The physical limit: SQLite's C API, one prepared statement stepped per row.
mod raw_sqlite {
    use super::*;

    /// W2's commit by hand in one statement, as a `VALUES` list (SQLite has no arrays).
    pub const W2_SET_BASED: &[SetBased<diesel::SqliteConnection>] = &[(
        "diesel_update_from_values",
        update_qty_from_values::<diesel::sqlite::Sqlite, diesel::SqliteConnection, false>,
    )];

    /// W1: the INSERT loop.
    pub fn w1(group: &mut BenchmarkGroup<'_, WallTime>, n: usize) {
        insert_variant(group, n, "raw_sqlite", |raw, rows, ids| {
            raw.insert(rows, ids)
        });
    }

    /// W1 the unit of work's way through the C API: multi-row `INSERT .. RETURNING id`, in
    /// batches of the unit of work's size.
    pub fn w1_returning(group: &mut BenchmarkGroup<'_, WallTime>, n: usize) {
        // The unit of work's batch size (its INSERTs carry at most 1,000 rows: see w1_check).
        let batch = 1000;
        insert_variant(group, n, "raw_sqlite_returning", move |raw, rows, ids| {
            raw.insert_returning(rows, batch, ids)
        });
    }

    /// One raw W1 variant: checked once (every row inserted, every key read back, in order),
    /// then timed on an emptied table each time.
    fn insert_variant(
        group: &mut BenchmarkGroup<'_, WallTime>,
        n: usize,
        name: &str,
        insert: impl Fn(&raw::RawSqlite, &[Item], &mut Vec<i64>),
    ) {
        {
            let raw = raw::RawSqlite::open();
            let mut ids = Vec::new();
            insert(&raw, &new_items(n), &mut ids);
            assert_eq!(raw.count(), n as i64);
            assert_eq!(ids, (1..=n as i64).collect::<Vec<_>>());
        }
        group.bench_function(name, |b| {
            let raw = raw::RawSqlite::open();
            let mut ids = Vec::with_capacity(n);
            b.iter_custom(|iters| {
                timed(
                    iters,
                    &mut ids,
                    |ids| {
                        raw.exec(c"DELETE FROM items");
                        ids.clear();
                        new_items(n)
                    },
                    |ids, rows| {
                        insert(&raw, &rows, ids);
                        rows
                    },
                )
            })
        });
    }

    /// W2': the UPDATE loop over 10,000 rows whose `qty` changed.
    pub fn w2_commit(group: &mut BenchmarkGroup<'_, WallTime>) {
        let rows = 10_000;
        {
            let raw = raw::RawSqlite::open();
            raw.insert(&new_items(rows), &mut Vec::new());
            let mut items = new_items(rows);
            for (i, item) in items.iter_mut().enumerate() {
                item.id = i as i32 + 1;
                item.qty += 1;
            }
            assert_eq!(raw.update_qty(&items), rows);
        }
        group.bench_function("raw_sqlite", |b| {
            let raw = raw::RawSqlite::open();
            raw.insert(&new_items(rows), &mut Vec::new());
            let mut items = new_items(rows);
            for (i, item) in items.iter_mut().enumerate() {
                item.id = i as i32 + 1;
            }
            b.iter_custom(|iters| {
                timed(
                    iters,
                    &mut items,
                    |items| {
                        for item in items.iter_mut() {
                            item.qty += 1;
                        }
                    },
                    |items, ()| raw.update_qty(items),
                )
            })
        });
    }
}

fn benches(c: &mut Criterion) {
    if link_rtt().is_none() {
        sqlite::all(c);
    } else {
        // Named after a link, the results must have gone through it: to a server the caller
        // named, never the local default.
        #[cfg(not(feature = "postgres"))]
        panic!("UOW_BENCH_RTT is set: the delayed-link run is on PostgreSQL (--features postgres)");
        #[cfg(feature = "postgres")]
        assert!(
            std::env::var_os(POSTGRES_URL_VAR).is_some(),
            "UOW_BENCH_RTT is set but {POSTGRES_URL_VAR} is not: name the server behind the link"
        );
    }
    #[cfg(feature = "postgres")]
    postgres::all(c);
}

criterion_group!(workloads, benches);
criterion_main!(workloads);
