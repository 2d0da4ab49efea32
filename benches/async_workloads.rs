//! W1, W2 and W6 (see BENCHMARKS.md, "Async (diesel-async)") on PostgreSQL through
//! diesel-async: `AsyncUnitOfWork<AsyncPgConnection>` against hand-written diesel-async doing
//! the same job (the ordinary way and the best way `workloads.rs` uses for synchronous
//! Diesel), and against the synchronous `UnitOfWork<PgConnection>` doing the same job, all in
//! the same run and the same criterion group.
//!
//! The async routines run on one tokio multi-threaded runtime (the usual server set-up; its
//! workers drive the connections' I/O tasks): each `iter_custom` call is one
//! `Runtime::block_on` around its iterations, and inside it only the routine itself is timed.
//! Emptying tables, seeding rows and building the input values run outside the timed region,
//! as in `workloads.rs`. Every benchmark gets a schema of its own, dropped afterwards. Before
//! each group a sanity check runs every variant once on a separate schema and asserts what it
//! sent and what the tables hold afterwards, so no baseline does less work than the unit of
//! work.
//!
//! `cargo bench --bench async_workloads --features async,postgres [-- FILTER]`; then
//! `python3 benches/summarize.py` prints the "async" table.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode};
use diesel::pg::Pg;
use diesel::PgConnection;
use diesel_async::AsyncPgConnection;
use uow::{AsyncUnitOfWork, Driver, Handle, UnitOfWork};

use common::on_async::AsyncBenchDb;
use common::*;

/// Settings for groups whose routine takes milliseconds (10,000 rows) or less
/// (`workloads.rs`'s `configure`).
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

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => panic!("cannot start the tokio runtime: {e}"),
    }
});

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    RUNTIME.block_on(future)
}

fn ok<T, E: std::fmt::Display>(result: Result<T, E>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("{what} failed: {e}"),
    }
}

fn group<'c>(c: &'c mut Criterion, name: &str, heavy: bool) -> BenchmarkGroup<'c, WallTime> {
    // `<workload>_<backend>`, the form benches/summarize.py splits.
    let mut group = c.benchmark_group(format!("{name}_postgres"));
    configure(&mut group, heavy);
    group
}

/// A step of an asynchronous benchmark: a future borrowing the benchmark's database, `Send`
/// so that it can run on the runtime's workers.
type Step<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Times `routine` only, on a task spawned on the runtime, as a web framework runs a request
/// handler (the handler's task and the connection's I/O task on the runtime's workers): `setup`
/// runs before each call and the routine's output is dropped after it, both untimed. Both get
/// the benchmark's database, lent to the task for the call, and `param`. Polling the routine
/// from the benchmark's own thread instead (`Runtime::block_on` around it) would add two
/// wake-ups across threads to every round trip, which the hand-written variants, with fewer
/// round trips, would pay less of.
fn timed_async<P: Copy + Send + 'static, I: Send + 'static, O: Send + 'static>(
    iters: u64,
    db: &mut Option<AsyncBenchDb>,
    param: P,
    setup: for<'a> fn(&'a mut AsyncBenchDb, P) -> Step<'a, I>,
    routine: for<'a> fn(&'a mut AsyncBenchDb, I) -> Step<'a, O>,
) -> Duration {
    let Some(mut lent) = db.take() else {
        panic!("the benchmark's database was not given back");
    };
    let task = RUNTIME.spawn(async move {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let input = setup(&mut lent, param).await;
            let start = Instant::now();
            let output = routine(&mut lent, input).await;
            total += start.elapsed();
            drop(output);
        }
        (lent, total)
    });
    let (lent, total) = ok(block_on(task), "the benchmark's task");
    *db = Some(lent);
    total
}

/// Opens a benchmark database (on the runtime: its connection's task is spawned there).
fn open_async() -> Option<AsyncBenchDb> {
    Some(block_on(AsyncBenchDb::open()))
}

/// Drops a benchmark database on the runtime (its connection's task is stopped there).
fn close_async(db: Option<AsyncBenchDb>) {
    block_on(async move { drop(db) });
}

/// The synchronous counterpart (`workloads.rs`'s `timed`).
fn timed_sync<D, I, O>(
    iters: u64,
    state: &mut D,
    mut setup: impl FnMut(&mut D) -> I,
    mut routine: impl FnMut(&mut D, I) -> O,
) -> Duration {
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

// -------------------------------------------------------------------- in memory, both drivers

/// The unit of work's side of each workload before its commit, for the synchronous and the
/// asynchronous unit of work alike (`UnitOfWork<PgConnection>` and the
/// `UnitOfWork<Async<AsyncPgConnection>>` an `AsyncUnitOfWork` dereferences to).
mod changes {
    use super::*;

    pub fn register_all<D: Driver<Backend = Pg>>(uow: &mut UnitOfWork<D>, rows: Vec<Item>) {
        for row in rows {
            ok(uow.register_new(row), "register_new");
        }
    }

    pub fn increment_all<D: Driver<Backend = Pg>>(uow: &mut UnitOfWork<D>, rows: Vec<Item>) {
        let handles = uow.attach_all(rows);
        for h in &handles {
            ok(uow.get_mut(h), "get_mut").qty += 1;
        }
    }

    pub const W6_AUTHORS: usize = 100;
    pub const W6_BOOKS_EACH: usize = 10;
    pub const W6_NEW_AUTHORS: usize = 20;
    pub const W6_NEW_BOOKS_EACH: usize = 5;
    /// Authors 0..10 are deleted with their books; books of authors 10..30 retitled.
    pub const W6_REMOVED_AUTHORS: usize = 10;
    pub const W6_RETITLED_AUTHORS: std::ops::Range<usize> = 10..30;

    /// W6's changes (`workloads.rs`'s `w6_uow` before its commit).
    pub fn w6<D: Driver<Backend = Pg>>(
        uow: &mut UnitOfWork<D>,
        authors: &[Handle<Author>],
        books: &[Handle<Book>],
    ) {
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
        for h in &books
            [W6_RETITLED_AUTHORS.start * W6_BOOKS_EACH..W6_RETITLED_AUTHORS.end * W6_BOOKS_EACH]
        {
            ok(uow.get_mut(h), "get_mut").title.push_str(" (2nd ed.)");
        }
        for h in &books[..W6_REMOVED_AUTHORS * W6_BOOKS_EACH] {
            ok(uow.register_removed(h), "register_removed");
        }
        for h in &authors[..W6_REMOVED_AUTHORS] {
            ok(uow.register_removed(h), "register_removed");
        }
    }
}

use changes::*;

// -------------------------------------------------------------------- diesel-async

/// Everything on `AsyncPgConnection`: the unit of work and the hand-written baselines.
mod on_async {
    use super::*;

    use diesel::{ExpressionMethods, QueryDsl, SelectableHelper};
    use diesel_async::{AsyncConnection, RunQueryDsl};

    pub type Conn = AsyncPgConnection;

    pub async fn count_items(conn: &mut Conn) -> i64 {
        ok(items::table.count().get_result(conn).await, "count")
    }

    pub async fn seed_items(conn: &mut Conn, count: usize) {
        let rows = new_items(count);
        let new: Vec<NewItem<'_>> = rows.iter().map(NewItem::from).collect();
        ok(
            diesel::insert_into(items::table)
                .values(&new)
                .execute(conn)
                .await,
            "seeding items",
        );
    }

    pub async fn load_items(conn: &mut Conn) -> Vec<Item> {
        ok(
            items::table
                .order(items::id)
                .select(Item::as_select())
                .load(conn)
                .await,
            "loading items",
        )
    }

    // ------------------------------------------------------------------------ W1

    pub async fn w1_uow(conn: &mut Conn, rows: Vec<Item>) -> AsyncUnitOfWork<Conn> {
        let mut uow = AsyncUnitOfWork::<Conn>::new();
        register_all(&mut uow, rows);
        ok(uow.commit(conn).await, "commit");
        uow
    }

    pub async fn w1_multi_row(conn: &mut Conn, rows: &[Item]) {
        let new: Vec<NewItem<'_>> = rows.iter().map(NewItem::from).collect();
        ok(
            diesel::insert_into(items::table)
                .values(&new)
                .execute(conn)
                .await,
            "insert",
        );
    }

    pub async fn w1_multi_row_returning(conn: &mut Conn, rows: &mut [Item]) {
        let new: Vec<NewItem<'_>> = rows.iter().map(NewItem::from).collect();
        let ids: Vec<i32> = ok(
            diesel::insert_into(items::table)
                .values(&new)
                .returning(items::id)
                .get_results(conn)
                .await,
            "insert returning",
        );
        for (row, id) in rows.iter_mut().zip(ids) {
            row.id = id;
        }
    }

    /// `w1_multi_row_returning` inside `conn.transaction`: the hand-written form with the
    /// unit of work's guarantee that a future dropped half way writes nothing (a lone
    /// statement already sent commits whether or not its future is still awaited).
    pub async fn w1_returning_in_transaction(conn: &mut Conn, rows: &mut [Item]) {
        let new: Vec<NewItem<'_>> = rows.iter().map(NewItem::from).collect();
        let ids: Vec<i32> = ok(
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                diesel::insert_into(items::table)
                    .values(&new)
                    .returning(items::id)
                    .get_results(conn)
                    .await
            })
            .await,
            "insert returning in a transaction",
        );
        for (row, id) in rows.iter_mut().zip(ids) {
            row.id = id;
        }
    }

    /// `w1_returning_in_transaction` with BEGIN pipelined with the INSERT (both sent before
    /// either answer is read, over `&AsyncPgConnection`), then COMMIT: the fewest round trips
    /// (two) any form can take that never commits a statement whose future was dropped. Not
    /// what the unit of work does (a BEGIN that alone fails, a cancel request landing on it,
    /// would leave the INSERT committed on its own); the profile mode's floor for W1.
    pub async fn w1_returning_pipelined_begin(conn: &mut Conn, rows: &mut [Item]) {
        use diesel_async::SimpleAsyncConnection;
        let new: Vec<NewItem<'_>> = rows.iter().map(NewItem::from).collect();
        let mut shared: &Conn = &*conn;
        let mut shared2: &Conn = &*conn;
        let begin = async move { shared.batch_execute("BEGIN").await };
        let insert = diesel::insert_into(items::table)
            .values(&new)
            .returning(items::id)
            .get_results::<i32>(&mut shared2);
        let ((), ids) = ok(tokio::try_join!(begin, insert), "begin + insert");
        ok(conn.batch_execute("COMMIT").await, "commit");
        for (row, id) in rows.iter_mut().zip(ids) {
            row.id = id;
        }
    }

    pub async fn w1_row_by_row(conn: &mut Conn, rows: &[Item]) {
        ok(
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                for row in rows {
                    diesel::insert_into(items::table)
                        .values(NewItem::from(row))
                        .execute(conn)
                        .await?;
                }
                Ok(())
            })
            .await,
            "insert loop",
        );
    }

    // ------------------------------------------------------------------------ W2

    pub async fn w2_uow(conn: &mut Conn) -> AsyncUnitOfWork<Conn> {
        let rows = load_items(conn).await;
        let mut uow = AsyncUnitOfWork::<Conn>::new();
        increment_all(&mut uow, rows);
        ok(uow.commit(conn).await, "commit");
        uow
    }

    async fn load_and_change(conn: &mut Conn) -> Vec<Item> {
        let mut rows = load_items(conn).await;
        for row in &mut rows {
            row.qty += 1;
        }
        rows
    }

    pub async fn w2_update_loop(conn: &mut Conn) -> Vec<Item> {
        let rows = load_and_change(conn).await;
        ok(
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                for row in &rows {
                    diesel::update(items::table.find(row.id))
                        .set(items::qty.eq(row.qty))
                        .execute(conn)
                        .await?;
                }
                Ok(())
            })
            .await,
            "update loop",
        );
        rows
    }

    pub async fn w2_update_from_unnest(conn: &mut Conn) -> Vec<Item> {
        let rows = load_and_change(conn).await;
        ok(
            update_qty_from_unnest_query(&rows).execute(conn).await,
            "UPDATE .. FROM unnest",
        );
        rows
    }

    /// The unnest UPDATE with the unit of work's guarantees: in a transaction (a future
    /// dropped half way writes nothing), rolled back unless every row was matched.
    pub async fn w2_unnest_in_transaction(conn: &mut Conn) -> Vec<Item> {
        let rows = load_and_change(conn).await;
        ok(
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                let matched = update_qty_from_unnest_query(&rows).execute(conn).await?;
                if matched != rows.len() {
                    return Err(diesel::result::Error::RollbackTransaction);
                }
                Ok(())
            })
            .await,
            "UPDATE .. FROM unnest in conn.transaction",
        );
        rows
    }

    // ------------------------------------------------------------------------ W6

    /// 100 authors with 10 books each, read back as loaded entities.
    pub async fn w6_seed(conn: &mut Conn) -> (Vec<Author>, Vec<Book>) {
        let names: Vec<String> = (0..W6_AUTHORS).map(|i| format!("author {i}")).collect();
        let new: Vec<NewAuthor<'_>> = names.iter().map(|n| NewAuthor { name: n }).collect();
        ok(
            diesel::insert_into(authors::table)
                .values(&new)
                .execute(conn)
                .await,
            "seeding authors",
        );
        let authors: Vec<Author> = ok(
            authors::table
                .order(authors::id)
                .select(Author::as_select())
                .load(conn)
                .await,
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
            diesel::insert_into(books::table)
                .values(&new)
                .execute(conn)
                .await,
            "seeding books",
        );
        let books = w6_tables(conn).await.1;
        (authors, books)
    }

    pub async fn w6_tables(conn: &mut Conn) -> (Vec<Author>, Vec<Book>) {
        let authors = ok(
            authors::table
                .order(authors::id)
                .select(Author::as_select())
                .load(conn)
                .await,
            "loading authors",
        );
        let books = ok(
            books::table
                .order(books::id)
                .select(Book::as_select())
                .load(conn)
                .await,
            "loading books",
        );
        (authors, books)
    }

    pub struct W6Uow {
        uow: AsyncUnitOfWork<Conn>,
        authors: Vec<Handle<Author>>,
        books: Vec<Handle<Book>>,
    }

    pub async fn w6_uow_setup(conn: &mut Conn) -> W6Uow {
        let (authors, books) = w6_seed(conn).await;
        let mut uow = AsyncUnitOfWork::<Conn>::new();
        let authors = uow.attach_all(authors);
        let books = uow.attach_all(books);
        W6Uow {
            uow,
            authors,
            books,
        }
    }

    pub async fn w6_uow(conn: &mut Conn, w: W6Uow) -> AsyncUnitOfWork<Conn> {
        let W6Uow {
            mut uow,
            authors,
            books,
        } = w;
        changes::w6(&mut uow, &authors, &books);
        ok(uow.commit(conn).await, "commit");
        uow
    }

    /// `workloads.rs`'s `w6_diesel` on diesel-async: in one transaction, `INSERT ..
    /// RETURNING id` for the authors, then their books with those ids, a per-row UPDATE loop,
    /// and two `DELETE .. WHERE id IN (..)`, children first.
    pub async fn w6_diesel(
        conn: &mut Conn,
        data: (Vec<Author>, Vec<Book>),
    ) -> (Vec<Author>, Vec<Book>) {
        let (mut authors, mut books) = data;
        let result = conn
            .transaction::<_, diesel::result::Error, _>(async |conn| {
                let names: Vec<String> = (0..W6_NEW_AUTHORS)
                    .map(|i| format!("new author {i}"))
                    .collect();
                let new: Vec<NewAuthor<'_>> = names.iter().map(|n| NewAuthor { name: n }).collect();
                let ids: Vec<i32> = diesel::insert_into(authors::table)
                    .values(&new)
                    .returning(authors::id)
                    .get_results(conn)
                    .await?;
                let titles: Vec<(i32, String)> = ids
                    .iter()
                    .enumerate()
                    .flat_map(|(i, id)| {
                        (0..W6_NEW_BOOKS_EACH).map(move |j| (*id, format!("new book {j} of {i}")))
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
                    .get_results(conn)
                    .await?;
                let retitled = &mut books[W6_RETITLED_AUTHORS.start * W6_BOOKS_EACH
                    ..W6_RETITLED_AUTHORS.end * W6_BOOKS_EACH];
                for book in retitled {
                    book.title.push_str(" (2nd ed.)");
                    diesel::update(books::table.find(book.id))
                        .set(books::title.eq(&book.title))
                        .execute(conn)
                        .await?;
                }
                let removed_books: Vec<i32> = books
                    .drain(..W6_REMOVED_AUTHORS * W6_BOOKS_EACH)
                    .map(|b| b.id)
                    .collect();
                diesel::delete(books::table.filter(books::id.eq_any(&removed_books)))
                    .execute(conn)
                    .await?;
                let removed_authors: Vec<i32> =
                    authors.drain(..W6_REMOVED_AUTHORS).map(|a| a.id).collect();
                diesel::delete(authors::table.filter(authors::id.eq_any(&removed_authors)))
                    .execute(conn)
                    .await?;
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
            })
            .await;
        ok(result, "W6 transaction");
        (authors, books)
    }
}

// -------------------------------------------------------------------- synchronous Diesel

/// The synchronous unit of work on `PgConnection`, doing the same jobs (`workloads.rs`'s
/// `uow` variants).
mod on_sync {
    use super::*;

    use diesel::prelude::*;

    pub type Conn = PgConnection;

    pub fn count_items(conn: &mut Conn) -> i64 {
        ok(items::table.count().get_result(conn), "count")
    }

    pub fn seed_items(conn: &mut Conn, count: usize) {
        let rows = new_items(count);
        let new: Vec<NewItem<'_>> = rows.iter().map(NewItem::from).collect();
        ok(
            diesel::insert_into(items::table).values(&new).execute(conn),
            "seeding items",
        );
    }

    pub fn load_items(conn: &mut Conn) -> Vec<Item> {
        ok(
            items::table
                .order(items::id)
                .select(Item::as_select())
                .load(conn),
            "loading items",
        )
    }

    #[inline(never)]
    pub fn w1_uow(conn: &mut Conn, rows: Vec<Item>) -> UnitOfWork<Conn> {
        let mut uow = UnitOfWork::<Conn>::new();
        register_all(&mut uow, rows);
        ok(uow.commit(conn), "commit");
        uow
    }

    #[inline(never)]
    pub fn w2_uow(conn: &mut Conn) -> UnitOfWork<Conn> {
        let rows = load_items(conn);
        let mut uow = UnitOfWork::<Conn>::new();
        increment_all(&mut uow, rows);
        ok(uow.commit(conn), "commit");
        uow
    }

    pub fn w6_seed(conn: &mut Conn) -> (Vec<Author>, Vec<Book>) {
        let names: Vec<String> = (0..W6_AUTHORS).map(|i| format!("author {i}")).collect();
        let new: Vec<NewAuthor<'_>> = names.iter().map(|n| NewAuthor { name: n }).collect();
        ok(
            diesel::insert_into(authors::table)
                .values(&new)
                .execute(conn),
            "seeding authors",
        );
        let authors = w6_tables(conn).0;
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
        w6_tables(conn)
    }

    pub fn w6_tables(conn: &mut Conn) -> (Vec<Author>, Vec<Book>) {
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

    pub struct W6Uow {
        uow: UnitOfWork<Conn>,
        authors: Vec<Handle<Author>>,
        books: Vec<Handle<Book>>,
    }

    pub fn w6_uow_setup(conn: &mut Conn) -> W6Uow {
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
    pub fn w6_uow(conn: &mut Conn, w: W6Uow) -> UnitOfWork<Conn> {
        let W6Uow {
            mut uow,
            authors,
            books,
        } = w;
        changes::w6(&mut uow, &authors, &books);
        ok(uow.commit(conn), "commit");
        uow
    }
}

// -------------------------------------------------------------------- W1

fn w1_check(n: usize) {
    block_on(async {
        let mut db = AsyncBenchDb::open().await;
        let log = StatementLog::attach_async(&mut db.conn);
        let mut uow = on_async::w1_uow(&mut db.conn, new_items(n)).await;
        // uow sends one INSERT of up to 65,535 rows (every column one array), the same as on
        // the synchronous driver.
        assert_eq!(
            log.take_writes().len(),
            n.div_ceil(65_535),
            "uow_async: one multi-row INSERT"
        );
        assert_eq!(on_async::count_items(&mut db.conn).await, n as i64);
        assert_eq!(uow.len(), n);
        // Every key written back into its entity (the job the RETURNING baseline matches).
        let mut keys: Vec<i32> = uow
            .entities_mut::<Item>()
            .iter_mut()
            .map(|i| i.id)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, (1..=n as i32).collect::<Vec<_>>());

        db.reset().await;
        log.take();
        on_async::w1_multi_row(&mut db.conn, &new_items(n)).await;
        assert_eq!(
            log.take_writes().len(),
            1,
            "diesel-async: one multi-row INSERT"
        );
        assert_eq!(on_async::count_items(&mut db.conn).await, n as i64);

        db.reset().await;
        let mut rows = new_items(n);
        log.take();
        on_async::w1_multi_row_returning(&mut db.conn, &mut rows).await;
        assert_eq!(
            log.take_writes().len(),
            1,
            "diesel-async: one INSERT RETURNING"
        );
        assert!(rows.iter().all(|r| r.id > 0));
        assert_eq!(on_async::count_items(&mut db.conn).await, n as i64);

        db.reset().await;
        let mut rows = new_items(n);
        log.take();
        on_async::w1_returning_in_transaction(&mut db.conn, &mut rows).await;
        assert_eq!(
            log.take_writes().len(),
            1,
            "diesel-async: one INSERT RETURNING in a transaction"
        );
        assert!(rows.iter().all(|r| r.id > 0));
        assert_eq!(on_async::count_items(&mut db.conn).await, n as i64);

        db.reset().await;
        log.take();
        on_async::w1_row_by_row(&mut db.conn, &new_items(n)).await;
        assert_eq!(
            log.take_writes().len(),
            n,
            "diesel-async: one INSERT per row"
        );
        assert_eq!(on_async::count_items(&mut db.conn).await, n as i64);
    });

    let mut db = <PgConnection as BenchBackend>::open();
    let log = StatementLog::attach(&mut db.conn);
    let uow = on_sync::w1_uow(&mut db.conn, new_items(n));
    assert_eq!(log.take_writes().len(), n.div_ceil(65_535), "uow_sync");
    assert_eq!(on_sync::count_items(&mut db.conn), n as i64);
    assert_eq!(uow.len(), n);
}

/// W1's set-up: empty tables, `n` new rows.
fn w1_setup(db: &mut AsyncBenchDb, n: usize) -> Step<'_, Vec<Item>> {
    Box::pin(async move {
        db.reset().await;
        new_items(n)
    })
}

fn w1(c: &mut Criterion) {
    type Routine = for<'a> fn(&'a mut AsyncBenchDb, Vec<Item>) -> Step<'a, Box<dyn Send>>;
    let variants: [(&str, Routine); 5] = [
        ("uow_async", |db, rows| {
            Box::pin(async move {
                Box::new(on_async::w1_uow(&mut db.conn, rows).await) as Box<dyn Send>
            })
        }),
        ("diesel_async_multi_row", |db, rows| {
            Box::pin(async move {
                on_async::w1_multi_row(&mut db.conn, &rows).await;
                Box::new(rows) as Box<dyn Send>
            })
        }),
        ("diesel_async_multi_row_returning", |db, mut rows| {
            Box::pin(async move {
                on_async::w1_multi_row_returning(&mut db.conn, &mut rows).await;
                Box::new(rows) as Box<dyn Send>
            })
        }),
        ("diesel_async_returning_in_transaction", |db, mut rows| {
            Box::pin(async move {
                on_async::w1_returning_in_transaction(&mut db.conn, &mut rows).await;
                Box::new(rows) as Box<dyn Send>
            })
        }),
        ("diesel_async_row_by_row", |db, rows| {
            Box::pin(async move {
                on_async::w1_row_by_row(&mut db.conn, &rows).await;
                Box::new(rows) as Box<dyn Send>
            })
        }),
    ];
    for n in [100usize, 10_000] {
        w1_check(n);
        let mut g = group(c, &format!("w1_async_insert_{n}"), n > 1000);
        for (name, routine) in variants {
            g.bench_function(name, |b| {
                let mut db = open_async();
                b.iter_custom(|iters| timed_async(iters, &mut db, n, w1_setup, routine));
                close_async(db);
            });
        }
        g.bench_function("uow_sync", |b| {
            let mut db = <PgConnection as BenchBackend>::open();
            b.iter_custom(|iters| {
                timed_sync(
                    iters,
                    &mut db,
                    |db| {
                        db.reset();
                        new_items(n)
                    },
                    |db, rows| on_sync::w1_uow(&mut db.conn, rows),
                )
            })
        });
        g.finish();
    }
}

// -------------------------------------------------------------------- W2

const W2_ROWS: usize = 10_000;

fn w2_check() {
    use diesel_async::RunQueryDsl;

    let by_uow = block_on(async {
        let mut db = AsyncBenchDb::open().await;
        on_async::seed_items(&mut db.conn, W2_ROWS).await;
        let log = StatementLog::attach_async(&mut db.conn);
        on_async::w2_uow(&mut db.conn).await;
        let writes = log.take_writes();
        // One UPDATE per 65,535 rows on PostgreSQL (each column one array), as in workloads.rs.
        assert_eq!(
            writes.len(),
            1,
            "uow_async: one batched UPDATE: {writes:#?}"
        );
        assert!(
            writes.iter().all(|w| !w.contains("name")),
            "only qty is written"
        );
        let by_uow = on_async::load_items(&mut db.conn).await;
        assert!(by_uow
            .iter()
            .enumerate()
            .all(|(i, r)| r.qty == i as i64 + 1));

        // Each baseline from the same seeded table (keys restart): the same rows.
        db.reset().await;
        on_async::seed_items(&mut db.conn, W2_ROWS).await;
        log.take();
        on_async::w2_update_loop(&mut db.conn).await;
        assert_eq!(
            log.take_writes().len(),
            W2_ROWS,
            "diesel-async: per-row UPDATEs"
        );
        assert_eq!(on_async::load_items(&mut db.conn).await, by_uow);

        db.reset().await;
        on_async::seed_items(&mut db.conn, W2_ROWS).await;
        log.take();
        on_async::w2_update_from_unnest(&mut db.conn).await;
        let writes = log.take_writes();
        assert_eq!(
            writes.len(),
            1,
            "diesel-async unnest: one UPDATE: {writes:#?}"
        );
        assert_eq!(on_async::load_items(&mut db.conn).await, by_uow);
        let changed = ok(
            update_qty_from_unnest_query(&by_uow)
                .execute(&mut db.conn)
                .await,
            "unnest",
        );
        assert_eq!(changed, W2_ROWS, "unnest: every row matched");

        db.reset().await;
        on_async::seed_items(&mut db.conn, W2_ROWS).await;
        log.take();
        on_async::w2_unnest_in_transaction(&mut db.conn).await;
        let writes = log.take_writes();
        assert_eq!(
            writes.len(),
            1,
            "diesel-async unnest in a transaction: one UPDATE: {writes:#?}"
        );
        assert_eq!(on_async::load_items(&mut db.conn).await, by_uow);
        by_uow
    });

    let mut db = <PgConnection as BenchBackend>::open();
    on_sync::seed_items(&mut db.conn, W2_ROWS);
    let log = StatementLog::attach(&mut db.conn);
    on_sync::w2_uow(&mut db.conn);
    assert_eq!(log.take_writes().len(), 1, "uow_sync: one batched UPDATE");
    assert_eq!(on_sync::load_items(&mut db.conn), by_uow);
}

fn w2(c: &mut Criterion) {
    w2_check();
    let mut g = group(c, "w2_async_update_10000", true);
    type Routine = for<'a> fn(&'a mut AsyncBenchDb, ()) -> Step<'a, Box<dyn Send>>;
    let variants: [(&str, Routine); 4] = [
        ("uow_async", |db, ()| {
            Box::pin(async move { Box::new(on_async::w2_uow(&mut db.conn).await) as Box<dyn Send> })
        }),
        ("diesel_async_update_loop", |db, ()| {
            Box::pin(async move {
                Box::new(on_async::w2_update_loop(&mut db.conn).await) as Box<dyn Send>
            })
        }),
        ("diesel_async_update_from_unnest", |db, ()| {
            Box::pin(async move {
                Box::new(on_async::w2_update_from_unnest(&mut db.conn).await) as Box<dyn Send>
            })
        }),
        (
            "diesel_async_update_from_unnest_in_transaction",
            |db, ()| {
                Box::pin(async move {
                    Box::new(on_async::w2_unnest_in_transaction(&mut db.conn).await)
                        as Box<dyn Send>
                })
            },
        ),
    ];
    for (name, routine) in variants {
        g.bench_function(name, |b| {
            let mut db = Some(block_on(async {
                let mut db = AsyncBenchDb::open().await;
                on_async::seed_items(&mut db.conn, W2_ROWS).await;
                db
            }));
            b.iter_custom(|iters| {
                timed_async(iters, &mut db, (), |_, ()| Box::pin(async {}), routine)
            });
            close_async(db);
        });
    }
    g.bench_function("uow_sync", |b| {
        let mut db = <PgConnection as BenchBackend>::open();
        on_sync::seed_items(&mut db.conn, W2_ROWS);
        b.iter_custom(|iters| {
            timed_sync(
                iters,
                &mut db,
                |_| (),
                |db, ()| on_sync::w2_uow(&mut db.conn),
            )
        })
    });
    g.finish();
}

// -------------------------------------------------------------------- W6

fn w6_check() {
    let by_uow = block_on(async {
        let mut db = AsyncBenchDb::open().await;
        let setup = on_async::w6_uow_setup(&mut db.conn).await;
        let log = StatementLog::attach_async(&mut db.conn);
        let uow = on_async::w6_uow(&mut db.conn, setup).await;
        let uow_writes = log.take_writes();
        let by_uow = on_async::w6_tables(&mut db.conn).await;
        assert_eq!(
            by_uow.0.len(),
            W6_AUTHORS - W6_REMOVED_AUTHORS + W6_NEW_AUTHORS
        );
        // Every new book points at its new author, with the key the database gave it.
        for book in &by_uow.1 {
            assert!(by_uow.0.iter().any(|a| a.id == book.author_id));
        }
        assert_eq!(uow.len(), by_uow.0.len() + by_uow.1.len());
        // The same 2 INSERTs, 1 UPDATE and 2 DELETEs as the synchronous unit of work.
        assert_eq!(uow_writes.len(), 5, "{uow_writes:#?}");

        db.reset().await;
        let data = on_async::w6_seed(&mut db.conn).await;
        log.take();
        let mut in_memory = on_async::w6_diesel(&mut db.conn, data).await;
        let diesel_writes = log.take_writes();
        let by_diesel = on_async::w6_tables(&mut db.conn).await;
        assert_eq!(by_uow, by_diesel, "both write the same rows");
        in_memory.0.sort_by_key(|a| a.id);
        in_memory.1.sort_by_key(|b| b.id);
        assert_eq!(in_memory, by_diesel);
        // 2 INSERTs, 200 UPDATEs, 2 DELETEs.
        assert_eq!(diesel_writes.len(), 204, "{diesel_writes:#?}");
        by_uow
    });

    let mut db = <PgConnection as BenchBackend>::open();
    let setup = on_sync::w6_uow_setup(&mut db.conn);
    let log = StatementLog::attach(&mut db.conn);
    on_sync::w6_uow(&mut db.conn, setup);
    let writes = log.take_writes();
    assert_eq!(writes.len(), 5, "uow_sync: {writes:#?}");
    assert_eq!(
        on_sync::w6_tables(&mut db.conn),
        by_uow,
        "uow_sync: the same rows"
    );
}

fn w6(c: &mut Criterion) {
    w6_check();
    let mut g = group(c, "w6_async_mixed", false);
    g.bench_function("uow_async", |b| {
        let mut db = open_async();
        b.iter_custom(|iters| {
            timed_async(
                iters,
                &mut db,
                (),
                |db, ()| {
                    Box::pin(async move {
                        db.reset().await;
                        on_async::w6_uow_setup(&mut db.conn).await
                    })
                },
                |db, setup| Box::pin(on_async::w6_uow(&mut db.conn, setup)),
            )
        });
        close_async(db);
    });
    g.bench_function("diesel_async", |b| {
        let mut db = open_async();
        b.iter_custom(|iters| {
            timed_async(
                iters,
                &mut db,
                (),
                |db, ()| {
                    Box::pin(async move {
                        db.reset().await;
                        on_async::w6_seed(&mut db.conn).await
                    })
                },
                |db, data| Box::pin(on_async::w6_diesel(&mut db.conn, data)),
            )
        });
        close_async(db);
    });
    g.bench_function("uow_sync", |b| {
        let mut db = <PgConnection as BenchBackend>::open();
        b.iter_custom(|iters| {
            timed_sync(
                iters,
                &mut db,
                |db| {
                    db.reset();
                    on_sync::w6_uow_setup(&mut db.conn)
                },
                |db, setup| on_sync::w6_uow(&mut db.conn, setup),
            )
        })
    });
    g.finish();
}

/// `UOW_ASYNC_PROFILE=uow,returning_in_transaction,..` (any of W1's asynchronous variants,
/// `UOW_ASYNC_ROUNDS` rounds, default 1,000, of `UOW_ASYNC_ROWS` rows, default 100), or
/// `UOW_ASYNC_PROFILE=w2_uow,w2_unnest_in_transaction,..` (W2's: [`profile_w2`]): those
/// variants only, taking turns round by round on one spawned task, so that a drift of the
/// machine (a checkpoint, another process) falls on all of them alike; prints each one's
/// median and mean. `UOW_ASYNC_NO_FSYNC=1` sets `synchronous_commit = off` on the
/// connection, taking the disk's flush at COMMIT out of the comparison. For comparing
/// statements, and for a profiler (`perf record`, `valgrind --tool=callgrind
/// --toggle-collect=..`).
fn profile_only() -> bool {
    let Ok(variants) = std::env::var("UOW_ASYNC_PROFILE") else {
        return false;
    };
    let number = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let rounds = number("UOW_ASYNC_ROUNDS", 1_000);
    let n = number("UOW_ASYNC_ROWS", 100);
    let db = block_on(AsyncBenchDb::open());
    let run = profile_w1(variants, n, rounds, db);
    let db = ok(block_on(RUNTIME.spawn(run)), "the profiling task");
    close_async(Some(db));
    true
}

/// [`profile_only`]'s rounds.
async fn profile_w1(
    variants: String,
    n: usize,
    rounds: usize,
    mut db: AsyncBenchDb,
) -> AsyncBenchDb {
    if std::env::var("UOW_ASYNC_NO_FSYNC").is_ok() {
        db.exec("SET synchronous_commit = off").await;
    }
    let variants: Vec<&str> = variants.split(',').collect();
    if variants.iter().any(|v| v.starts_with("w2_")) {
        return profile_w2(variants, rounds, db).await;
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); variants.len()];
    for _ in 0..rounds {
        for (variant, times) in variants.iter().zip(&mut times) {
            db.reset().await;
            let mut rows = new_items(n);
            let start = Instant::now();
            let uow = match *variant {
                "uow" => Some(on_async::w1_uow(&mut db.conn, std::mem::take(&mut rows)).await),
                "multi_row" => {
                    on_async::w1_multi_row(&mut db.conn, &rows).await;
                    None
                }
                "returning" => {
                    on_async::w1_multi_row_returning(&mut db.conn, &mut rows).await;
                    None
                }
                "returning_in_transaction" => {
                    on_async::w1_returning_in_transaction(&mut db.conn, &mut rows).await;
                    None
                }
                "row_by_row" => {
                    on_async::w1_row_by_row(&mut db.conn, &rows).await;
                    None
                }
                "pipelined_begin" => {
                    on_async::w1_returning_pipelined_begin(&mut db.conn, &mut rows).await;
                    None
                }
                other => panic!(
                    "UOW_ASYNC_PROFILE: no variant {other:?} (uow, multi_row, returning, \
                     returning_in_transaction, pipelined_begin, row_by_row)"
                ),
            };
            times.push(start.elapsed().as_secs_f64() * 1e6);
            drop((uow, rows));
        }
    }
    print_turns(
        &format!("W1, {n} rows, {rounds} rounds each"),
        &variants,
        times,
    );
    db
}

/// [`profile_only`]'s rounds of W2's variants (`w2_uow`, `w2_unnest`,
/// `w2_unnest_in_transaction`, `w2_loop`): the 10,000 items are seeded once, and each round
/// loads and changes them all.
async fn profile_w2(variants: Vec<&str>, rounds: usize, mut db: AsyncBenchDb) -> AsyncBenchDb {
    db.reset().await;
    on_async::seed_items(&mut db.conn, W2_ROWS).await;
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); variants.len()];
    for _ in 0..rounds {
        for (variant, times) in variants.iter().zip(&mut times) {
            let start = Instant::now();
            let done: Box<dyn Send> = match *variant {
                "w2_uow" => Box::new(on_async::w2_uow(&mut db.conn).await),
                "w2_unnest" => Box::new(on_async::w2_update_from_unnest(&mut db.conn).await),
                "w2_unnest_in_transaction" => {
                    Box::new(on_async::w2_unnest_in_transaction(&mut db.conn).await)
                }
                "w2_loop" => Box::new(on_async::w2_update_loop(&mut db.conn).await),
                other => panic!(
                    "UOW_ASYNC_PROFILE: no variant {other:?} (w2_uow, w2_unnest, \
                     w2_unnest_in_transaction, w2_loop)"
                ),
            };
            times.push(start.elapsed().as_secs_f64() * 1e6);
            drop(done);
        }
    }
    print_turns(
        &format!("W2, {W2_ROWS} rows, {rounds} rounds each"),
        &variants,
        times,
    );
    db
}

/// Each variant's median and mean, in µs.
fn print_turns(title: &str, variants: &[&str], times: Vec<Vec<f64>>) {
    println!("{title}, taking turns:");
    for (variant, mut times) in variants.iter().zip(times) {
        times.sort_by(f64::total_cmp);
        let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
        let median = times.get(times.len() / 2).copied().unwrap_or(0.0);
        println!("  {variant}: median {median:.1} µs, mean {mean:.1} µs");
    }
}

fn benches(c: &mut Criterion) {
    if profile_only() {
        return;
    }
    w1(c);
    w2(c);
    w6(c);
}

criterion_group!(async_workloads, benches);
criterion_main!(async_workloads);
