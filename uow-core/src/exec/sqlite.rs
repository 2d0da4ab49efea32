//! SQLite: rows with generated keys matched through their rowids.

use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::query_dsl::RunQueryDsl;
use diesel::row::NamedRow;
use diesel::sql_types::Untyped;
use diesel::QueryResult;

use super::batching::{insert_width, rows_per_insert, MAX_CACHED_BATCH_BINDS, MAX_ROWS_PER_INSERT};
use super::dialect::{insert_one_by_one, sealed, Conn, Dialect, Inserted, Session};
use super::statements::{push_columns, walk_insert};
use crate::entity::{Entity, Persist};
use diesel::sql_types::{BigInt, Nullable};
use diesel::sqlite::Sqlite;

impl sealed::Sealed for Sqlite {}

impl Dialect for Sqlite {
    const NAME: &'static str = "SQLite";
    // SQLITE_MAX_VARIABLE_NUMBER of the bundled SQLite (3.32 and later).
    const MAX_BIND_PARAMS: usize = 32766;

    /// One multi-row `INSERT .. RETURNING rowid, <generated columns>`, matched to the rows
    /// through the rowid. SQLite returns the rows "in an arbitrary order", and a key need
    /// not grow (a key that is not the rowid can be anything), but the rowid follows a
    /// documented rule: a new row gets one more than the largest rowid in the table, the
    /// rows of a VALUES list being inserted in the order listed, so the rowids of one
    /// statement's rows grow in row order. The exception is a table whose largest rowid is
    /// `i64::MAX`, where SQLite picks rowids at random: so the largest rowid is read before
    /// (a batch that could reach `i64::MAX` goes one row per statement) and after (if it
    /// is `i64::MAX` now, a concurrent writer got there first, and the rows are not
    /// matched: the commit is refused, never guessed). A `WITHOUT ROWID` table, which has
    /// no rowid, goes one row per statement, each with its own `RETURNING`.
    fn insert_returning<T: Persist<Self>>(
        conn: &mut impl Conn<Self>,
        _: &mut Session,
        rows: &[&T],
    ) -> QueryResult<Inserted<T>> {
        if rows.len() < 2 {
            return insert_one_by_one(conn, rows);
        }
        let room = i64::try_from(rows.len()).unwrap_or(i64::MAX);
        let largest = MaxRowid::<T>(std::marker::PhantomData).get_result::<Option<i64>>(conn);
        match largest {
            Ok(largest) if largest.unwrap_or(0) < i64::MAX - room => {}
            // No rowid (`WITHOUT ROWID`), or random rowids ahead.
            _ => return insert_one_by_one(conn, rows),
        }
        let mut returned: Vec<RowidRow<T>> = InsertReturningRowid { rows }.load(conn)?;
        let largest = MaxRowid::<T>(std::marker::PhantomData).get_result::<Option<i64>>(conn)?;
        returned.sort_unstable_by_key(|r| r.rowid);
        let distinct = returned.windows(2).all(|w| w[0].rowid < w[1].rowid);
        let generated = if largest == Some(i64::MAX) || !distinct {
            Vec::new()
        } else {
            returned.into_iter().map(|r| r.generated).collect()
        };
        Ok(Inserted {
            generated,
            statements: 1,
        })
    }

    fn generated_rows_per_statement<T: Entity>() -> usize {
        MAX_ROWS_PER_INSERT
    }

    fn push_default_values(mut out: AstPass<'_, '_, Self>) {
        out.push_sql("DEFAULT VALUES");
    }
}

/// `SELECT max(rowid) FROM t`: the table's largest rowid (an error for `WITHOUT ROWID`).
struct MaxRowid<T>(std::marker::PhantomData<T>);

impl<T: Entity> QueryId for MaxRowid<T> {
    type QueryId = MaxRowid<T>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<T: Entity, C> RunQueryDsl<C> for MaxRowid<T> {}

impl<T: Entity> Query for MaxRowid<T> {
    type SqlType = Nullable<BigInt>;
}

impl<T: Persist<Sqlite>> QueryFragment<Sqlite> for MaxRowid<T> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        out.push_sql("SELECT max(rowid) FROM ");
        T::walk_table(out.reborrow())
    }
}

/// `INSERT INTO t (cols) VALUES (..), .. RETURNING rowid AS "__uow_rowid", <generated>`.
struct InsertReturningRowid<'a, T> {
    rows: &'a [&'a T],
}

impl<T: Entity> QueryId for InsertReturningRowid<'_, T> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<T: Entity, C> RunQueryDsl<C> for InsertReturningRowid<'_, T> {}

impl<T: Entity> Query for InsertReturningRowid<'_, T> {
    type SqlType = Untyped;
}

impl<T: Persist<Sqlite>> QueryFragment<Sqlite> for InsertReturningRowid<'_, T> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        let full = self.rows.len() == rows_per_insert::<T, Sqlite>();
        if !full && self.rows.len() * insert_width::<T>() > MAX_CACHED_BATCH_BINDS {
            out.unsafe_to_cache_prepared();
        }
        walk_insert(self.rows, false, out.reborrow())?;
        out.push_sql(" RETURNING rowid AS \"__uow_rowid\", ");
        push_columns::<T, Sqlite>(&mut out, |f| f.generated)
    }
}

/// A row returned by [`InsertReturningRowid`].
struct RowidRow<T: Entity> {
    rowid: i64,
    generated: T::Generated,
}

impl<T: Persist<Sqlite>> diesel::deserialize::QueryableByName<Sqlite> for RowidRow<T> {
    fn build<'a>(row: &impl NamedRow<'a, Sqlite>) -> diesel::deserialize::Result<Self> {
        Ok(RowidRow {
            rowid: NamedRow::get::<BigInt, i64>(row, "__uow_rowid")?,
            generated: T::read_generated(row)?,
        })
    }
}
