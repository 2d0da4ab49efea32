//! # uow: the Unit of Work pattern for Rust, on Diesel
//!
//! Annotate a domain struct with `#[derive(Tracked)]`; a [`UnitOfWork`] gathers new, changed
//! and removed entities and writes them in one Diesel transaction on [`commit`]. Either every
//! change lands, or the database **and the entities in memory** are exactly as before.
//!
//! ```
//! use uow::prelude::*;
//! use diesel::{Connection, RunQueryDsl, SqliteConnection};
//!
//! diesel::table! { accounts (id) { id -> Integer, owner -> Text, balance -> BigInt } }
//!
//! #[derive(Tracked, Clone, Debug, PartialEq)]
//! #[tracked(table = accounts)]
//! struct Account {
//!     #[tracked(generated)]
//!     id: i32,
//!     owner: String,
//!     balance: i64,
//! }
//!
//! let mut conn = SqliteConnection::establish(":memory:")?;
//! diesel::sql_query(
//!     "CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT NOT NULL,
//!      balance BIGINT NOT NULL CHECK (balance >= 0))",
//! )
//! .execute(&mut conn)?;
//!
//! let mut uow = UnitOfWork::new();
//! let ann = uow.register_new(Account { id: 0, owner: "ann".into(), balance: 10 })?;
//! uow.commit(&mut conn)?;
//!
//! // A commit that fails leaves memory as it was: the change is still pending.
//! uow.get_mut(&ann)?.balance -= 50;
//! assert!(uow.commit(&mut conn).is_err());
//! assert_eq!(uow.get(&ann)?.balance, -40);
//! assert_eq!(uow.changed_columns(&ann)?, ["balance"]);
//!
//! // Fix the cause, commit again.
//! uow.get_mut(&ann)?.balance = 5;
//! assert_eq!(uow.commit(&mut conn)?.updated("accounts"), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Guide
//!
//! The [`guide`] takes uow one idea at a time, each with code that runs:
//!
//! - [concepts](guide#concepts): entity, unit of work, handle, state;
//! - [the life of an entity](guide#the-life-of-an-entity): new, clean, dirty, removed;
//! - [reading entities](guide#reading-entities): `load` by key (a tuple for a composite key),
//!   your own Diesel queries, the identity map;
//! - [commit, scopes or flush](guide#commit-scopes-or-flush): which to choose;
//! - [relations](guide#relations): `belongs_to`, `set_parent`, aggregates;
//! - [versions](guide#versions): `#[tracked(version)]`, `Conflict`, `force_version_increment`;
//! - [errors and what to do about them](guide#errors-and-what-to-do-about-them): reload,
//!   [`retry`], transient failures;
//! - [threads, async and the web](guide#threads-async-and-the-web): one unit of work per
//!   request, pools, `AsyncUnitOfWork`;
//! - [limits](guide#limits): what uow does not do.
//!
//! Every public method of [`UnitOfWork`], [`Scope`], [`Handle`], [`EntitiesMut`], the
//! participants ([`Participant`], [`AtomicFile`]), [`RetryPolicy`], [`TransactionMode`],
//! [`PlanPreview`] and [`CommitReport`] has a short example of its own, run as a doctest.
//!
//! # Attributes
//!
//! | where | attribute | meaning |
//! |---|---|---|
//! | struct | `#[tracked(table = accounts)]` | the Diesel `table!` (required) |
//! | struct | `#[tracked(belongs_to(Parent, foreign_key = field))]` | a foreign key to another entity (several allowed, self-references too): orders writes and fills keys of new parents |
//! | struct | `#[tracked(crate = path)]` | where `uow` is, if re-exported |
//! | field | `#[tracked(primary_key)]` | key field; defaults to `id`; several make a composite key |
//! | field | `#[tracked(generated)]` | assigned by the database on insert, written back after commit |
//! | field | `#[tracked(version)]` | integer checked by UPDATE/DELETE and advanced by one; a mismatch is [`Error::Conflict`] |
//! | field | `#[tracked(skip)]` | not a column: neither written nor tracked |
//! | field | `#[tracked(column = name)]` | the column's name when it differs from the field's |
//! | field | `#[tracked(children)]` | a `Vec` of an aggregate's members (entities that `belongs_to` this struct), written with it |
//!
//! # Aggregates
//!
//! A root holds its members in plain `Vec`s marked `#[tracked(children)]`, to any depth. Change
//! the tree with plain Rust through [`get_mut`](UnitOfWork::get_mut); the commit inserts new
//! elements (foreign keys filled, generated keys written back into the tree), deletes removed
//! ones (their members first), updates changed ones, and checks and advances the root's
//! version when any member changed, so concurrent changes anywhere in one aggregate conflict.
//! [`load`](UnitOfWork::load) reads a root with its tree, one query per level, and
//! [`attach_aggregates`](UnitOfWork::attach_aggregates) does the same for roots read with a
//! Diesel query.
//!
//! ```
//! use uow::prelude::*;
//! use diesel::connection::SimpleConnection;
//! use diesel::{Connection, SqliteConnection};
//!
//! diesel::table! { orders (id) { id -> Integer, customer -> Text, version -> Integer } }
//! diesel::table! { lines (order_id, no) { order_id -> Integer, no -> Integer, qty -> Integer } }
//!
//! #[derive(Tracked, Clone, Debug, PartialEq)]
//! #[tracked(table = orders)]
//! struct Order {
//!     #[tracked(generated)]
//!     id: i32,
//!     customer: String,
//!     #[tracked(version)]
//!     version: i32,
//!     #[tracked(children)]
//!     lines: Vec<Line>,
//! }
//!
//! // The key holds the order's: filled from the new order's generated key at the commit.
//! #[derive(Tracked, Clone, Debug, PartialEq)]
//! #[tracked(table = lines, belongs_to(Order, foreign_key = order_id))]
//! struct Line {
//!     #[tracked(primary_key)]
//!     order_id: i32,
//!     #[tracked(primary_key)]
//!     no: i32,
//!     qty: i32,
//! }
//!
//! let mut conn = SqliteConnection::establish(":memory:")?;
//! conn.batch_execute(
//!     "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, version INTEGER NOT NULL);
//!      CREATE TABLE lines (order_id INTEGER NOT NULL REFERENCES orders (id), no INTEGER NOT NULL,
//!                          qty INTEGER NOT NULL, PRIMARY KEY (order_id, no));",
//! )?;
//! let line = |no, qty| Line { order_id: 0, no, qty };
//! let mut uow = UnitOfWork::new();
//! let order = uow.register_new(Order {
//!     id: 0,
//!     customer: "ann".into(),
//!     version: 1,
//!     lines: vec![line(1, 2), line(2, 1)],
//! })?;
//! uow.commit(&mut conn)?;
//! let id = uow.get(&order)?.id;
//! assert!(uow.get(&order)?.lines.iter().all(|l| l.order_id == id));
//!
//! uow.get_mut(&order)?.lines[1].qty = 4; // a member changes: its row, and the order's version
//! uow.commit(&mut conn)?;
//! assert_eq!(uow.get(&order)?.version, 2);
//!
//! let mut elsewhere = UnitOfWork::<SqliteConnection>::new();
//! let loaded = elsewhere.load::<Order>(&mut conn, id)?; // 2 queries: orders, lines
//! assert_eq!(elsewhere.get(&loaded)?, uow.get(&order)?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Field types must be `PartialEq` (changes are found by comparing with the persisted values)
//! and map to their column's SQL type as in any Diesel query. Entities are `Clone + 'static`:
//! the unit of work keeps them between calls; a struct with lifetimes is an entity at
//! `'static` (e.g. `Cow<'static, str>` fields).
//!
//! # Feature flags
//!
//! - `sqlite` (default): SQLite through Diesel with a bundled libsqlite3; nothing to install.
//! - `postgres`: PostgreSQL through Diesel (links libpq).
//! - `mysql`: MySQL and MariaDB through Diesel (links libmysqlclient).
//! - `tracing`: `tracing` spans for commit, flush and scope rollback, with row counts.
//! - `async`: `AsyncUnitOfWork<C>` over diesel-async connections, `transaction_async`.
//! - `galera`: tests only (enables `mysql`): the test suite's Galera cluster tests run too.
//!
//! # Transactions
//!
//! Each `commit` and each outermost scope is one database transaction; nested scopes and
//! `flush` are savepoints. [`UnitOfWork::set_transaction_mode`] sets the isolation level and
//! read-only mode they begin with ([`TransactionMode`], [`Isolation`]); serialization failures
//! and deadlocks (also a Galera cluster's certification failures) are
//! [transient](Error::is_transient), for [`retry`] to rerun the whole unit of work.
//!
//! ```
//! use uow::{Isolation, TransactionMode, UnitOfWork};
//! let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
//! uow.set_transaction_mode(TransactionMode::new().isolation(Isolation::RepeatableRead));
//! assert_eq!(uow.transaction_mode().to_string(), "REPEATABLE READ");
//! ```
//!
//! [`commit`]: UnitOfWork::commit
#![warn(missing_docs)]

pub use uow_core::*;
/// # Example
///
/// ```
/// use uow::prelude::*;
/// use diesel::{Connection, SqliteConnection};
///
/// diesel::table! { accounts (id) { id -> Integer, owner -> Text, nickname -> Nullable<Text> } }
///
/// #[derive(Tracked, Clone, Debug, PartialEq)]
/// #[tracked(table = accounts)]
/// struct Account {
///     #[tracked(generated)] // assigned by the database on insert
///     id: i32,
///     owner: String,
///     nickname: Option<String>, // a `Nullable` column takes an `Option`
///     #[tracked(skip)] // not a column: `Default` when read from a row
///     cache: Vec<u8>,
/// }
///
/// let mut conn = SqliteConnection::establish(":memory:")?;
/// diesel::RunQueryDsl::execute(
///     diesel::sql_query("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, nickname TEXT)"),
///     &mut conn,
/// )?;
/// let mut uow = UnitOfWork::new();
/// let ann = uow.register_new(Account { id: 0, owner: "ann".into(), nickname: None, cache: vec![] })?;
/// uow.commit(&mut conn)?;
/// assert_eq!(uow.get(&ann)?.id, 1, "the generated key is written back");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[doc(inline)]
pub use uow_derive::Tracked;

pub mod guide {
    #![doc = include_str!("guide.md")]
}

/// The README's code blocks, run as doctests so the "In short" example cannot go stale. Its
/// other blocks are tagged `sh`/`text`, except "Async and web", which runs with `async` on; the
/// examples open SQLite databases, hence the feature.
#[cfg(all(doctest, feature = "sqlite"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Everything a typical user needs: `use uow::prelude::*;`.
pub mod prelude {
    #[cfg(feature = "async")]
    pub use uow_core::{AsyncUnitOfWork, ScopedFutureExt};
    pub use uow_core::{CommitReport, Entity, EntityState, Error, Handle, Persist, UnitOfWork};
    pub use uow_derive::Tracked;
}
