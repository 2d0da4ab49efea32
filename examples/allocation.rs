//! Cosmic Python's allocation service ("Architecture Patterns with Python", chapters 6-7),
//! written the natural way with uow: `Product` is an aggregate whose batches, each with its
//! allocated order lines, are plain `Vec`s; `product.allocate(line)` is a method of the
//! domain model that knows nothing of the database. The unit of work inserts the new
//! allocation, and advances the product's version because a member changed, so two requests
//! racing for the last unit of stock cannot both win: the later commit is a `Conflict`, and
//! `uow::retry` runs that request again on fresh data, where it finds the stock gone.
//!
//! `cargo run --example allocation` (SQLite in a temporary file, two connections).

use std::error::Error;
use std::fmt;

use diesel::connection::SimpleConnection;
use diesel::{Connection, SqliteConnection};
use uow::prelude::*;
use uow::RetryPolicy;

diesel::table! {
    products (sku) {
        sku -> Text,
        version_number -> Integer,
    }
}

diesel::table! {
    batches (reference) {
        reference -> Text,
        sku -> Text,
        purchased_quantity -> Integer,
        eta -> Nullable<Integer>,
    }
}

diesel::table! {
    allocations (id) {
        id -> Integer,
        batch_reference -> Text,
        orderid -> Text,
        qty -> Integer,
    }
}

// ------------------------------------------------------------------ the domain model

/// The aggregate root: every change to stock goes through it, and its version guards all of it.
#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = products)]
struct Product {
    #[tracked(primary_key)]
    sku: String,
    #[tracked(version)]
    version_number: i32,
    #[tracked(children)]
    batches: Vec<Batch>,
}

/// Stock ordered from a supplier: in the warehouse (`eta: None`) or arriving on day `eta`.
#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = batches, belongs_to(Product, foreign_key = sku))]
struct Batch {
    #[tracked(primary_key)]
    reference: String,
    sku: String,
    purchased_quantity: i32,
    eta: Option<i32>,
    #[tracked(children)]
    allocations: Vec<Allocation>,
}

/// An order line allocated to a batch.
#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = allocations, belongs_to(Batch, foreign_key = batch_reference))]
struct Allocation {
    #[tracked(generated)]
    id: i32,
    batch_reference: String,
    orderid: String,
    qty: i32,
}

/// What a customer ordered of one product.
#[derive(Clone, Debug)]
struct OrderLine {
    orderid: String,
    sku: String,
    qty: i32,
}

#[derive(Debug)]
struct OutOfStock(String);

impl fmt::Display for OutOfStock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "out of stock for sku {}", self.0)
    }
}

impl Error for OutOfStock {}

impl Batch {
    fn available_quantity(&self) -> i32 {
        self.purchased_quantity - self.allocations.iter().map(|a| a.qty).sum::<i32>()
    }

    fn can_allocate(&self, line: &OrderLine) -> bool {
        self.sku == line.sku && self.available_quantity() >= line.qty
    }
}

impl Product {
    /// Allocates `line` to the batch that arrives first (warehouse stock before shipments);
    /// returns the batch's reference.
    fn allocate(&mut self, line: &OrderLine) -> Result<String, OutOfStock> {
        let batch = self
            .batches
            .iter_mut()
            .filter(|b| b.can_allocate(line))
            .min_by_key(|b| b.eta.map_or((0, 0), |day| (1, day)))
            .ok_or_else(|| OutOfStock(line.sku.clone()))?;
        batch.allocations.push(Allocation {
            id: 0,
            batch_reference: batch.reference.clone(),
            orderid: line.orderid.clone(),
            qty: line.qty,
        });
        Ok(batch.reference.clone())
    }
}

// ------------------------------------------------------------------ the service layer

/// One request: load the aggregate, let the model decide, commit. The unit of work is the
/// whole repository and the whole transaction.
fn allocate(
    conn: &mut SqliteConnection,
    line: &OrderLine,
) -> Result<String, Box<dyn Error + Send + Sync>> {
    let mut uow = UnitOfWork::new();
    let product = uow.load::<Product>(conn, line.sku.clone())?;
    let reference = uow.get_mut(&product)?.allocate(line)?;
    uow.commit(conn)?;
    Ok(reference)
}

fn line(orderid: &str, qty: i32) -> OrderLine {
    OrderLine {
        orderid: orderid.into(),
        sku: "RETRO-CLOCK".into(),
        qty,
    }
}

fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let dir = std::env::temp_dir().join(format!("uow-allocation-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = dir.join("allocation.db").display().to_string();
    let mut conn = SqliteConnection::establish(&url)?;
    conn.batch_execute(
        "PRAGMA foreign_keys = ON;
         CREATE TABLE products (sku TEXT PRIMARY KEY, version_number INTEGER NOT NULL);
         CREATE TABLE batches (reference TEXT PRIMARY KEY, sku TEXT NOT NULL REFERENCES products (sku),
                               purchased_quantity INTEGER NOT NULL, eta INTEGER);
         CREATE TABLE allocations (id INTEGER PRIMARY KEY, orderid TEXT NOT NULL, qty INTEGER NOT NULL,
                                   batch_reference TEXT NOT NULL REFERENCES batches (reference));",
    )?;

    // Stock arrives: one aggregate, written as one.
    let mut uow = UnitOfWork::new();
    let batch = |reference: &str, qty, eta| Batch {
        reference: reference.into(),
        sku: String::new(), // filled from the product by the commit
        purchased_quantity: qty,
        eta,
        allocations: Vec::new(),
    };
    uow.register_new(Product {
        sku: "RETRO-CLOCK".into(),
        version_number: 1,
        batches: vec![batch("in-stock", 3, None), batch("shipment", 10, Some(7))],
    })?;
    let report = uow.commit(&mut conn)?;
    println!("stock added: {report}");

    println!("o1 (2 clocks) -> {}", allocate(&mut conn, &line("o1", 2))?);
    println!("o2 (2 clocks) -> {}", allocate(&mut conn, &line("o2", 2))?);

    // Two requests race for the last clock in the warehouse: both load version 3, both
    // allocate it in memory; the first commit wins and advances the version.
    let mut other_conn = SqliteConnection::establish(&url)?;
    let (mut first, mut second) = (UnitOfWork::new(), UnitOfWork::new());
    let a = first.load::<Product>(&mut conn, "RETRO-CLOCK".into())?;
    let b = second.load::<Product>(&mut other_conn, "RETRO-CLOCK".into())?;
    println!("o3 -> {}", first.get_mut(&a)?.allocate(&line("o3", 1))?);
    println!("o4 -> {}", second.get_mut(&b)?.allocate(&line("o4", 1))?);
    first.commit(&mut conn)?;
    match second.commit(&mut other_conn) {
        Err(conflict) if conflict.is_conflict() => println!("o4 lost the race: {conflict}"),
        other => return Err(format!("expected a conflict, got {other:?}").into()),
    }
    // The request is run again, on fresh data: the warehouse is empty now.
    let policy = RetryPolicy::default().retry_conflicts(true);
    let reference = uow::retry(&policy, |_| allocate(&mut other_conn, &line("o4", 1)))?;
    println!("o4, retried -> {reference}");

    let mut reader = UnitOfWork::<SqliteConnection>::new();
    let product = reader.load::<Product>(&mut conn, "RETRO-CLOCK".into())?;
    let product = reader.get(&product)?;
    for batch in &product.batches {
        let orders: Vec<&str> = batch
            .allocations
            .iter()
            .map(|a| a.orderid.as_str())
            .collect();
        println!(
            "{}: {} of {} left, allocated to {orders:?}",
            batch.reference,
            batch.available_quantity(),
            batch.purchased_quantity
        );
    }
    println!("version {}", product.version_number);
    assert_eq!(
        product.version_number, 5,
        "four allocations after the stock: 1 -> 5"
    );
    assert_eq!(product.batches[0].available_quantity(), 0);
    assert_eq!(
        product.batches[1].available_quantity(),
        7,
        "o2 and, retried, o4 went to the shipment"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
