//! W5 (see BENCHMARKS.md): one field change through the tracked path
//! (`uow.get_mut(&h)?.qty += 1`) against the same change on a plain struct, with heap
//! allocations counted by a counting global allocator.
//!
//! Two tracked cases: the steady state (the entity was borrowed mutably since the last commit,
//! so its persisted values are kept already) and the first change after a commit, which keeps
//! them (one clone of the entity: copy-on-write).
//!
//! And the loop over every held entity, one change each (10,000 per pass, timed per change):
//! a plain `Vec`, the typed view's `get_mut` per handle, and its `iter_mut` (no handles, so
//! none of their checks).
//!
//! Allocations per change are written to `<target>/criterion/uow-allocations.json` for the
//! summary printed by `benches/run.sh`.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use diesel::prelude::*;
use uow::prelude::*;

use common::*;

/// The system allocator, counting every allocation and reallocation.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

type Conn = diesel::SqliteConnection;

/// Entities held by the unit of work in every tracked case.
const HELD: usize = 10_000;
/// Changes per commit in the first-change-after-commit case.
const PER_COMMIT: usize = 1_000;

fn ok<T, E: std::fmt::Display>(result: Result<T, E>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("{what} failed: {e}"),
    }
}

/// A database with `HELD` rows, and a unit of work holding all of them (clean).
fn setup() -> (BenchDb<Conn>, UnitOfWork<Conn>, Vec<Handle<Item>>) {
    let mut db = <Conn as BenchBackend>::open();
    let rows = new_items(HELD);
    let new: Vec<NewItem<'_>> = rows.iter().map(NewItem::from).collect();
    ok(
        diesel::insert_into(items::table)
            .values(&new)
            .execute(&mut db.conn),
        "seeding",
    );
    let loaded: Vec<Item> = ok(
        items::table
            .order(items::id)
            .select(Item::as_select())
            .load(&mut db.conn),
        "loading",
    );
    let mut uow = UnitOfWork::<Conn>::new();
    let handles = uow.attach_all(loaded);
    (db, uow, handles)
}

/// Allocations per change, counted over `changes` changes.
fn count_per_change(changes: usize, mut change: impl FnMut(usize)) -> f64 {
    let before = allocations();
    for i in 0..changes {
        change(i);
    }
    (allocations() - before) as f64 / changes as f64
}

/// Times `iters` changes made by passes of at most HELD (`pass(batch)` makes `batch`).
fn per_change_passes(iters: u64, mut pass: impl FnMut(usize)) -> Duration {
    let start = Instant::now();
    let mut left = iters as usize;
    while left > 0 {
        let batch = left.min(HELD);
        pass(batch);
        left -= batch;
    }
    start.elapsed()
}

fn write_allocations(entries: &[(&str, f64)]) {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".to_string());
    let dir = std::path::Path::new(&target).join("criterion");
    let body: Vec<String> = entries
        .iter()
        .map(|(name, per_change)| format!("  \"{name}\": {per_change}"))
        .collect();
    let json = format!("{{\n{}\n}}\n", body.join(",\n"));
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join("uow-allocations.json"), json);
    }
}

fn w5(c: &mut Criterion) {
    // Allocation counts first, outside criterion.
    let mut plain = new_items(1).remove(0);
    let plain_allocs = count_per_change(PER_COMMIT, |_| black_box(&mut plain).qty += 1);

    let (mut db, mut uow, handles) = setup();
    // Steady state: every entity was borrowed mutably once since the last commit.
    for h in &handles[..PER_COMMIT] {
        ok(uow.get_mut(h), "get_mut").qty += 1;
    }
    let steady_allocs = count_per_change(PER_COMMIT, |i| {
        ok(uow.get_mut(black_box(&handles[i])), "get_mut").qty += 1;
    });
    let view_allocs = {
        let mut items = uow.entities_mut::<Item>();
        count_per_change(PER_COMMIT, |i| {
            ok(items.get_mut(black_box(&handles[i])), "get_mut").qty += 1;
        })
    };
    // One pass over every entity, so all are in the steady state.
    for item in uow.entities_mut::<Item>().iter_mut() {
        item.qty += 1;
    }
    let iter_allocs = {
        let before = allocations();
        for item in uow.entities_mut::<Item>().iter_mut() {
            black_box(item).qty += 1;
        }
        (allocations() - before) as f64 / HELD as f64
    };
    ok(uow.commit(&mut db.conn), "commit");
    let first_allocs = count_per_change(PER_COMMIT, |i| {
        ok(uow.get_mut(black_box(&handles[i])), "get_mut").qty += 1;
    });
    ok(uow.commit(&mut db.conn), "commit");
    drop((db, uow));
    println!(
        "W5 allocations per change: plain {plain_allocs}, tracked (steady) {steady_allocs}, \
         typed view {view_allocs}, typed view iter_mut {iter_allocs}, \
         tracked (first after commit) {first_allocs}"
    );
    write_allocations(&[
        ("plain_assignment", plain_allocs),
        ("uow_get_mut", steady_allocs),
        ("uow_entities_mut", view_allocs),
        ("uow_iter_mut", iter_allocs),
        ("uow_get_mut_first_after_commit", first_allocs),
    ]);

    let mut group = c.benchmark_group("w5_field_change");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    group.bench_function("plain_assignment", |b| {
        let mut item = new_items(1).remove(0);
        b.iter(|| black_box(&mut item).qty += 1)
    });

    group.bench_function("uow_get_mut", |b| {
        let (_db, mut uow, handles) = setup();
        let h = handles[HELD / 2];
        ok(uow.get_mut(&h), "get_mut").qty += 1;
        b.iter(|| ok(uow.get_mut(black_box(&h)), "get_mut").qty += 1)
    });

    // The type's entities found once (`entities_mut`), as a loop over many changes would.
    group.bench_function("uow_entities_mut", |b| {
        let (_db, mut uow, handles) = setup();
        let h = handles[HELD / 2];
        let mut items = uow.entities_mut::<Item>();
        ok(items.get_mut(&h), "get_mut").qty += 1;
        b.iter(|| ok(items.get_mut(black_box(&h)), "get_mut").qty += 1)
    });

    // The loops over all HELD entities, timed per change (a pass may stop early).
    group.bench_function("plain_loop", |b| {
        let mut items = new_items(HELD);
        b.iter_custom(|iters| {
            per_change_passes(iters, |batch| {
                for item in black_box(&mut items[..batch]) {
                    item.qty += 1;
                }
            })
        })
    });

    group.bench_function("uow_entities_mut_loop", |b| {
        let (_db, mut uow, handles) = setup();
        let mut items = uow.entities_mut::<Item>();
        for h in &handles {
            ok(items.get_mut(h), "get_mut").qty += 1;
        }
        b.iter_custom(|iters| {
            per_change_passes(iters, |batch| {
                for h in black_box(&handles[..batch]) {
                    ok(items.get_mut(h), "get_mut").qty += 1;
                }
            })
        })
    });

    group.bench_function("uow_iter_mut", |b| {
        let (_db, mut uow, _handles) = setup();
        for item in uow.entities_mut::<Item>().iter_mut() {
            item.qty += 1;
        }
        b.iter_custom(|iters| {
            per_change_passes(iters, |batch| {
                let mut items = uow.entities_mut::<Item>();
                if batch < HELD {
                    for item in items.iter_mut().take(batch) {
                        item.qty += 1;
                    }
                    return;
                }
                // The loop as written without a count: every entity.
                for item in black_box(&mut items).iter_mut() {
                    item.qty += 1;
                }
            })
        })
    });

    // Per change: a commit (untimed) every PER_COMMIT changes, so each timed change is the
    // first mutable borrow of its entity since the last commit.
    group.bench_function("uow_get_mut_first_after_commit", |b| {
        let (mut db, mut uow, handles) = setup();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let batch = left.min(PER_COMMIT);
                let start = Instant::now();
                for h in &handles[..batch] {
                    ok(uow.get_mut(black_box(h)), "get_mut").qty += 1;
                }
                total += start.elapsed();
                ok(uow.commit(&mut db.conn), "commit");
                left -= batch;
            }
            total
        })
    });
    group.finish();
}

criterion_group!(tracking, w5);
criterion_main!(tracking);
