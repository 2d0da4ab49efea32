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
//!
//! [`commit`]: UnitOfWork::commit
#![warn(missing_docs)]

pub use uow_core::*;
pub use uow_derive::Tracked;

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
