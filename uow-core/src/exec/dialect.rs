//! [`Dialect`]: everything that differs between Diesel backends when writing entities, and
//! nothing else. Shared default methods serve backends that behave alike (the single-row
//! `RETURNING` fallback, `DEFAULT VALUES`), so a backend states only where it differs.

use diesel::backend::Backend;
use diesel::connection::LoadConnection;
use diesel::query_builder::AstPass;
use diesel::query_dsl::RunQueryDsl;
use diesel::QueryResult;

use super::batching::insert_width;
use super::statements::{InsertOne, InsertRows, ReturnedRow};
use crate::entity::{Entity, Persist};

/// What differs between Diesel backends when writing entities. Implemented for every backend
/// whose cargo feature is on; sealed.
pub trait Dialect: Backend + Sized + sealed::Sealed + 'static {
    /// The backend's name, for messages.
    const NAME: &'static str;
    /// The most bind parameters one statement may carry.
    const MAX_BIND_PARAMS: usize;

    /// Inserts `rows`, entities without generated fields (one statement unless the backend
    /// must cut it), and says how many rows and statements that took.
    #[doc(hidden)]
    fn insert_rows<T: Persist<Self>>(
        conn: &mut impl Conn<Self>,
        session: &mut Session,
        rows: &[&T],
    ) -> QueryResult<Sent> {
        let _ = session;
        let rows = InsertRows(rows).execute(conn)?;
        Ok(Sent {
            rows,
            statements: 1,
        })
    }

    /// Inserts `rows`, entities with generated fields, and returns the generated values of
    /// each row in the order of `rows`, and how many statements it sent. A row whose values
    /// cannot be matched to it with certainty is left out, so the caller sees fewer values
    /// than rows and refuses the commit: a guess could give an entity another row's key.
    ///
    /// By default one statement per row, each with its own `RETURNING`: exact on every
    /// backend that has `RETURNING`, whatever order it returns rows in.
    #[doc(hidden)]
    fn insert_returning<T: Persist<Self>>(
        conn: &mut impl Conn<Self>,
        session: &mut Session,
        rows: &[&T],
    ) -> QueryResult<Inserted<T>> {
        let _ = session;
        insert_one_by_one(conn, rows)
    }

    /// Rows with generated fields one INSERT statement carries on this backend.
    #[doc(hidden)]
    fn generated_rows_per_statement<T: Entity>() -> usize {
        1
    }

    /// Bind parameters an INSERT of `T` with generated fields carries per row, and once per
    /// statement.
    #[doc(hidden)]
    fn generated_insert_binds<T: Entity>() -> (usize, usize) {
        (insert_width::<T>(), 0)
    }

    /// `DEFAULT VALUES` or the backend's equivalent, for a table with nothing to insert.
    #[doc(hidden)]
    fn push_default_values(mut out: AstPass<'_, '_, Self>) {
        out.push_sql("DEFAULT VALUES");
    }
}

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// A Diesel connection to backend `DB` that can read rows back: what a [`Dialect`] writes on.
#[doc(hidden)]
pub trait Conn<DB: Backend>: LoadConnection<Backend = DB> {}

impl<DB: Backend, C: LoadConnection<Backend = DB>> Conn<DB> for C {}

/// What one write has learnt about its connection's server, asked for at most once per write
/// and only where a backend needs it (MySQL's auto-increment lock mode and step, and its
/// packet size).
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Session {
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    pub(super) server: Option<ServerFacts>,
}

#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
pub(super) struct ServerFacts {
    pub autoinc_lock_mode: i64,
    pub auto_increment_increment: u64,
    pub max_allowed_packet: u64,
}

/// Rows written and statements sent by one call of the [`Dialect`].
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Rows the database reported written.
    pub rows: usize,
    /// Statements sent.
    pub statements: usize,
}

/// What [`Dialect::insert_returning`] hands back: each row's generated values, in row order,
/// and the statements it took.
#[doc(hidden)]
pub struct Inserted<T: Entity> {
    /// Generated values, one per matched row, in the order of the rows.
    pub generated: Vec<T::Generated>,
    /// Statements sent.
    pub statements: usize,
}

/// Inserts `rows` one statement each, reading each row's generated values from its own
/// `RETURNING`.
pub(super) fn insert_one_by_one<T, C>(conn: &mut C, rows: &[&T]) -> QueryResult<Inserted<T>>
where
    C: LoadConnection,
    C::Backend: Dialect,
    T: Persist<C::Backend>,
{
    let mut generated = Vec::with_capacity(rows.len());
    for row in rows {
        let mut returned: Vec<ReturnedRow<T>> = InsertOne(*row).load(conn)?;
        // One row in, one row out. Anything else (a rule or trigger at work) leaves the
        // caller short of values, and the commit is refused rather than guessed.
        if returned.len() == 1 {
            generated.extend(returned.pop().map(|r| r.0));
        }
    }
    Ok(Inserted {
        generated,
        statements: rows.len(),
    })
}
