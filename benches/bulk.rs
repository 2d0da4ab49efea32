//! Bulk (see BENCHMARKS.md): 100,000 new customers registered in 1,000-row chunks on in-memory
//! SQLite, three ways in the same run:
//!
//! - `commit_per_chunk`: `register_new` each row of a chunk, then `uow.commit(&mut conn)`;
//! - `scope_flush_per_chunk`: one `uow.transaction` scope, `scope.flush()` after each chunk
//!   (every entity stays undoable until the scope ends);
//! - `diesel_multi_row_returning`: hand-written Diesel, one multi-row `INSERT .. RETURNING id`
//!   per chunk in one transaction, the ids written into the rows, which are kept (the same job:
//!   keys known, rows held).
//!
//! And heap memory, counted by a counting global allocator (bytes currently allocated, and the
//! peak): the bytes a held entity costs beyond its row (100,000 rows loaded by Diesel into an
//! exact-size `Vec`, against the same rows attached to a unit of work), and for each bulk
//! variant the peak heap per row and the heap per row still held after it, both beyond the
//! input rows. Written to `<target>/criterion/uow-memory.json` for `benches/summarize.py`.
//!
//! `UOW_BULK_PROFILE=scope` (or `commit`, `diesel`) runs one variant once and nothing else, for a
//! profiler. Before timing, a check runs each variant once and asserts what it did: 100,000 rows in the
//! table, 100 INSERT statements, every entity held with its generated key.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use uow::prelude::*;

use common::StatementLog;

/// The system allocator, keeping the bytes currently allocated and their peak.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = CURRENT.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        new
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn current() -> usize {
    CURRENT.load(Ordering::Relaxed)
}

/// Starts a new peak from the bytes allocated now.
fn reset_peak() -> usize {
    let now = current();
    PEAK.store(now, Ordering::Relaxed);
    now
}

fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

diesel::table! {
    customers (id) {
        id -> Integer,
        name -> Text,
        description -> Text,
        qty -> BigInt,
    }
}

/// The entity of SQLAlchemy's bulk examples (`examples/performance`), with one number more.
#[derive(Tracked, Queryable, Selectable, Clone, Debug, PartialEq)]
#[tracked(table = customers)]
#[diesel(table_name = customers)]
struct Customer {
    #[tracked(generated)]
    id: i32,
    name: String,
    description: String,
    qty: i64,
}

/// One multi-row INSERT per chunk (see `common::NewItem` for the attribute).
#[derive(Insertable)]
#[diesel(table_name = customers, treat_none_as_default_value = false)]
struct NewCustomer<'a> {
    name: &'a str,
    description: &'a str,
    qty: i64,
}

type Conn = diesel::SqliteConnection;

const ROWS: usize = 100_000;
const CHUNK: usize = 1_000;

fn ok<T, E: std::fmt::Display>(result: Result<T, E>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("{what} failed: {e}"),
    }
}

fn open() -> Conn {
    let mut conn = ok(Conn::establish(":memory:"), "opening SQLite");
    ok(
        conn.batch_execute(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
                 description TEXT NOT NULL, qty BIGINT NOT NULL)",
        ),
        "schema",
    );
    conn
}

fn reset(conn: &mut Conn) {
    ok(conn.batch_execute("DELETE FROM customers"), "reset");
}

fn count(conn: &mut Conn) -> i64 {
    ok(customers::table.count().get_result(conn), "count")
}

fn new_customers(n: usize) -> Vec<Customer> {
    (0..n)
        .map(|i| Customer {
            id: 0,
            name: format!("customer name {i}"),
            description: format!("customer description {i}"),
            qty: i as i64,
        })
        .collect()
}

#[inline(never)]
fn commit_per_chunk(conn: &mut Conn, rows: Vec<Customer>) -> UnitOfWork<Conn> {
    let mut uow = UnitOfWork::<Conn>::new();
    let mut rows = rows.into_iter();
    loop {
        let chunk: Vec<Customer> = rows.by_ref().take(CHUNK).collect();
        if chunk.is_empty() {
            return uow;
        }
        for row in chunk {
            ok(uow.register_new(row), "register_new");
        }
        ok(uow.commit(conn), "commit");
    }
}

#[inline(never)]
fn scope_flush_per_chunk(conn: &mut Conn, rows: Vec<Customer>) -> UnitOfWork<Conn> {
    let mut uow = UnitOfWork::<Conn>::new();
    let done = uow.transaction(conn, |scope| {
        let mut rows = rows.into_iter();
        loop {
            let chunk: Vec<Customer> = rows.by_ref().take(CHUNK).collect();
            if chunk.is_empty() {
                return Ok::<_, uow::Error>(());
            }
            for row in chunk {
                scope.register_new(row)?;
            }
            scope.flush()?;
        }
    });
    ok(done, "scope");
    uow
}

#[inline(never)]
fn diesel_multi_row_returning(conn: &mut Conn, mut rows: Vec<Customer>) -> Vec<Customer> {
    let done = conn.transaction::<_, diesel::result::Error, _>(|conn| {
        for chunk in rows.chunks_mut(CHUNK) {
            let new: Vec<NewCustomer<'_>> = chunk
                .iter()
                .map(|c| NewCustomer {
                    name: &c.name,
                    description: &c.description,
                    qty: c.qty,
                })
                .collect();
            let ids: Vec<i32> = diesel::insert_into(customers::table)
                .values(&new)
                .returning(customers::id)
                .get_results(conn)?;
            for (row, id) in chunk.iter_mut().zip(ids) {
                row.id = id;
            }
        }
        Ok(())
    });
    ok(done, "diesel insert");
    rows
}

/// Every variant once: the rows are in the table, each chunk was one INSERT, and the entities
/// are held with their keys.
fn check() {
    let mut conn = open();
    let log = StatementLog::attach(&mut conn);
    let uows = [
        (
            "commit per chunk",
            commit_per_chunk as fn(&mut Conn, _) -> _,
        ),
        ("scope", scope_flush_per_chunk),
    ];
    for (name, variant) in uows {
        reset(&mut conn);
        log.take();
        let uow = variant(&mut conn, new_customers(ROWS));
        assert_eq!(
            log.take_writes().len(),
            ROWS / CHUNK,
            "{name}: one INSERT per chunk"
        );
        assert_eq!(count(&mut conn), ROWS as i64, "{name}: rows written");
        assert_eq!(uow.len(), ROWS, "{name}: entities held");
        for id in [1, ROWS as i32 / 2, ROWS as i32] {
            let found = uow
                .find::<Customer>(&id)
                .map(|h| uow.get(&h).map(|c| c.qty));
            assert!(matches!(found, Some(Ok(_))), "{name}: key {id} filed");
        }
    }
    reset(&mut conn);
    log.take();
    let rows = diesel_multi_row_returning(&mut conn, new_customers(ROWS));
    assert_eq!(
        log.take_writes().len(),
        ROWS / CHUNK,
        "Diesel: one INSERT per chunk"
    );
    assert_eq!(count(&mut conn), ROWS as i64, "Diesel: rows written");
    assert!(rows.iter().all(|r| r.id > 0), "Diesel: keys read back");
}

/// Bytes per held entity beyond its row: the rows loaded by Diesel into an exact-size `Vec`,
/// then the same rows attached to a unit of work (which takes their strings as they are).
fn held_overhead(conn: &mut Conn) -> (f64, f64) {
    reset(conn);
    diesel_multi_row_returning(conn, new_customers(ROWS));
    let base = current();
    let mut rows: Vec<Customer> = ok(
        customers::table
            .order(customers::id)
            .select(Customer::as_select())
            .load(conn),
        "load",
    );
    rows.shrink_to_fit();
    let vec_bytes = current() - base;
    let mut uow = UnitOfWork::<Conn>::new();
    let held = uow.attach_all(rows).len();
    assert_eq!(held, ROWS);
    let uow_bytes = current() - base;
    drop(uow);
    let per_row = vec_bytes as f64 / ROWS as f64;
    let overhead = (uow_bytes as f64 - vec_bytes as f64) / ROWS as f64;
    (per_row, overhead)
}

/// Peak heap per row while `variant` runs, its result (the held rows) included, and the heap
/// per row still allocated once it returned (its result alive), both beyond the input rows.
fn heap_per_row<O>(
    conn: &mut Conn,
    variant: impl FnOnce(&mut Conn, Vec<Customer>) -> O,
) -> (f64, f64) {
    reset(conn);
    let rows = new_customers(ROWS);
    let base = reset_peak();
    let out = variant(conn, rows);
    let (top, after) = (peak(), current());
    drop(out);
    let per_row = |bytes: usize| (bytes as f64 - base as f64) / ROWS as f64;
    (per_row(top), per_row(after))
}

fn write_memory(entries: &[(&str, f64)]) {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".to_string());
    let dir = std::path::Path::new(&target).join("criterion");
    let body: Vec<String> = entries
        .iter()
        .map(|(name, value)| format!("  \"{name}\": {value:.1}"))
        .collect();
    let json = format!("{{\n{}\n}}\n", body.join(",\n"));
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join("uow-memory.json"), json);
    }
}

fn memory() {
    let mut conn = open();
    let (row_bytes, overhead) = held_overhead(&mut conn);
    let (commit, commit_held) = heap_per_row(&mut conn, commit_per_chunk);
    let (scope, scope_held) = heap_per_row(&mut conn, scope_flush_per_chunk);
    let (diesel, diesel_held) = heap_per_row(&mut conn, diesel_multi_row_returning);
    println!(
        "heap: a loaded row {row_bytes:.1} B, a held entity {overhead:.1} B more; \
         per new row beyond the input, peak (held after): commit per chunk {commit:.1} B \
         ({commit_held:.1} B), scope {scope:.1} B ({scope_held:.1} B), \
         Diesel {diesel:.1} B ({diesel_held:.1} B)"
    );
    write_memory(&[
        ("row_bytes", row_bytes),
        ("held_overhead_bytes", overhead),
        ("peak_commit_per_chunk_bytes", commit),
        ("peak_scope_bytes", scope),
        ("peak_diesel_bytes", diesel),
        ("held_commit_per_chunk_bytes", commit_held),
        ("held_scope_bytes", scope_held),
        ("held_diesel_bytes", diesel_held),
    ]);
}

/// Times `routine` only: emptying the table and building the rows run before it, dropping its
/// result after it, all untimed.
fn timed<O>(iters: u64, conn: &mut Conn, routine: fn(&mut Conn, Vec<Customer>) -> O) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        reset(conn);
        let rows = new_customers(ROWS);
        let start = Instant::now();
        let out = routine(conn, rows);
        total += start.elapsed();
        drop(out);
    }
    total
}

/// `UOW_BULK_PROFILE=scope|commit|diesel`: that variant once, nothing else (for a profiler:
/// `valgrind --tool=callgrind`, `perf record`).
fn profile_only() -> bool {
    let Ok(variant) = std::env::var("UOW_BULK_PROFILE") else {
        return false;
    };
    let mut conn = open();
    let rows = new_customers(ROWS);
    match variant.as_str() {
        "scope" => drop(scope_flush_per_chunk(&mut conn, rows)),
        "commit" => drop(commit_per_chunk(&mut conn, rows)),
        _ => drop(diesel_multi_row_returning(&mut conn, rows)),
    }
    true
}

fn bulk(c: &mut Criterion) {
    if profile_only() {
        return;
    }
    check();
    memory();
    let mut group = c.benchmark_group(format!("bulk_{ROWS}"));
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group.bench_function("scope_flush_per_chunk", |b| {
        let mut conn = open();
        b.iter_custom(|iters| timed(iters, &mut conn, scope_flush_per_chunk))
    });
    group.bench_function("commit_per_chunk", |b| {
        let mut conn = open();
        b.iter_custom(|iters| timed(iters, &mut conn, commit_per_chunk))
    });
    group.bench_function("diesel_multi_row_returning", |b| {
        let mut conn = open();
        b.iter_custom(|iters| timed(iters, &mut conn, diesel_multi_row_returning))
    });
    group.finish();
}

criterion_group!(benches, bulk);
criterion_main!(benches);
