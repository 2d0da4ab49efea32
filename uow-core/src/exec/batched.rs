//! Statements over a batch of rows given as a table of bound values: one UPDATE for every row
//! of a step, and the query that finds which row of a batch has no matching row in the table
//! (a conflict).
//!
//! By default the batch is a CTE, `WITH "__uow_v" (cols) AS (VALUES ...)`, joined by `UPDATE
//! .. FROM` (SQLite 3.33 and later), where the values keep their types. PostgreSQL binds each
//! column of the batch as one array instead (`postgres_arrays.rs`, through
//! `Dialect::walk_batch_update` and `Dialect::walk_first_missing`; `Batch::values` are those
//! columns). MySQL keeps no types for a table of bound values, so it writes its own UPDATE of
//! a batch (`mysql_batched.rs`) and finds conflicting rows its own way
//! (`Dialect::first_missing`). A batch of one row is the plain UPDATE everywhere. Every value
//! is bound.

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::query_dsl::RunQueryDsl;
use diesel::row::NamedRow;
use diesel::sql_types::Untyped;
use diesel::QueryResult;

use super::batching::{rows_per_update, MAX_CACHED_BATCH_BINDS, MAX_ROWS_PER_UPDATE};
use super::dialect::Dialect;
use super::statements::walk_update_one;
use crate::entity::{Entity, FieldSet, Persist};

/// The name the batch's table has in the statement.
pub(crate) const BATCH: &str = "__uow_v";
/// The column of a row's number in the batch.
pub(crate) const ROW: &str = "__uow_row";
/// The column of a row's persisted version, when the row also writes its next version.
pub(crate) const OLD_VERSION: &str = "__uow_old_version";

/// Where a column of the batch takes its value from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Field `n` of the row's first value (the values to write, or the key to look for).
    First(usize),
    /// Field `n` of the row's second value (the persisted values).
    Second(usize),
    /// The row's number in the batch.
    Number,
}

/// A column of the batch: its name in the statement and where its values come from.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub source: Source,
}

/// Rows of `T` as a table of bound values: per row two values of the entity (for an UPDATE,
/// the values to write and the persisted ones) and its number.
#[doc(hidden)]
pub struct Batch<'a, T> {
    pub columns: Vec<Column>,
    pub rows: &'a [(&'a T, &'a T)],
    numbers: Vec<i32>,
    /// Each column's values over every row, for a backend that binds a column as one value
    /// (PostgreSQL's arrays), in the order of `columns`.
    pub values: Vec<ColumnValues<'a, T>>,
}

/// The values of one column of a batch over all its rows, bound as one parameter where a
/// backend takes arrays.
#[doc(hidden)]
pub struct ColumnValues<'a, T> {
    pub rows: &'a [(&'a T, &'a T)],
    pub source: Source,
}

impl<T> std::fmt::Debug for ColumnValues<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} of {} rows", self.source, self.rows.len())
    }
}

impl<'a, T: Entity> Batch<'a, T> {
    pub(super) fn new(columns: Vec<Column>, rows: &'a [(&'a T, &'a T)]) -> Self {
        let numbers = (0..rows.len())
            .map(|n| i32::try_from(n).unwrap_or(i32::MAX))
            .collect();
        let values = columns
            .iter()
            .map(|c| ColumnValues {
                rows,
                source: c.source,
            })
            .collect();
        Batch {
            columns,
            rows,
            numbers,
            values,
        }
    }

    /// Binds the values of row `row`, separated by commas; `alias` writes ` AS "name"` after
    /// each (a derived table names its columns in its first row).
    pub fn walk_row<'b, DB: Dialect>(
        &'b self,
        row: usize,
        alias: bool,
        out: &mut AstPass<'_, 'b, DB>,
    ) -> QueryResult<()>
    where
        T: Persist<DB>,
    {
        let (first, second) = self.rows[row];
        for (n, column) in self.columns.iter().enumerate() {
            if n > 0 {
                out.push_sql(", ");
            }
            match column.source {
                Source::First(field) => first.walk_field(field, out.reborrow())?,
                Source::Second(field) => second.walk_field(field, out.reborrow())?,
                Source::Number => DB::push_number(out, &self.numbers[row])?,
            }
            if alias {
                out.push_sql(" AS ");
                out.push_identifier(column.name)?;
            }
        }
        Ok(())
    }

    /// `"c1", "c2", ...`: the batch's column names.
    pub fn walk_names<DB: Backend>(&self, out: &mut AstPass<'_, '_, DB>) -> QueryResult<()> {
        for (n, column) in self.columns.iter().enumerate() {
            if n > 0 {
                out.push_sql(", ");
            }
            out.push_identifier(column.name)?;
        }
        Ok(())
    }

    /// `<table>."k1" = "__uow_v"."k1" AND ...`: the row of the table each batch row is about
    /// (by key, and by version where the batch has one: `version` names the batch column).
    pub fn walk_match<'b, DB: Backend>(
        &'b self,
        version: Option<&'static str>,
        out: &mut AstPass<'_, 'b, DB>,
    ) -> QueryResult<()>
    where
        T: Persist<DB>,
    {
        let key_columns = T::FIELDS
            .iter()
            .filter(|f| f.key)
            .map(|f| (f.column, f.column));
        let version_column = T::FIELDS
            .iter()
            .find(|f| f.version)
            .zip(version)
            .map(|(f, batch_column)| (f.column, batch_column));
        for (n, (table_column, batch_column)) in key_columns.chain(version_column).enumerate() {
            if n > 0 {
                out.push_sql(" AND ");
            }
            T::walk_table(out.reborrow())?;
            out.push_sql(".");
            out.push_identifier(table_column)?;
            out.push_sql(" = ");
            out.push_identifier(BATCH)?;
            out.push_sql(".");
            out.push_identifier(batch_column)?;
        }
        Ok(())
    }

    /// Whether the batch is large enough to leave out of the prepared-statement cache: full
    /// batches of at most [`MAX_ROWS_PER_UPDATE`] rows share one statement and stay, but a
    /// backend without that cap (PostgreSQL) would keep a statement of tens of thousands of
    /// parameters for the connection's lifetime, on both sides.
    fn uncached(&self, full: bool) -> bool {
        let shared = full && self.rows.len() <= MAX_ROWS_PER_UPDATE;
        !shared && self.rows.len() * self.columns.len() > MAX_CACHED_BATCH_BINDS
    }
}

/// One UPDATE of `fields` for every row of a batch: the key and the persisted version
/// (checked) from the persisted values, the columns from the values to write.
#[doc(hidden)]
pub struct UpdateRows<'a, T> {
    pub batch: Batch<'a, T>,
    pub fields: FieldSet,
}

impl<'a, T: Entity> UpdateRows<'a, T> {
    /// `rows`: per row, the values to write and the persisted values.
    pub fn new(rows: &'a [(&'a T, &'a T)], fields: FieldSet) -> Self {
        let keys = T::FIELDS.iter().enumerate().filter(|(_, f)| f.key);
        let mut columns: Vec<Column> = keys
            .map(|(i, f)| Column {
                name: f.column,
                source: Source::Second(i),
            })
            .collect();
        columns.extend(fields.iter().filter_map(|i| {
            T::FIELDS.get(i).map(|f| Column {
                name: f.column,
                source: Source::First(i),
            })
        }));
        if let Some(version) = T::version_field() {
            columns.push(Column {
                name: OLD_VERSION,
                source: Source::Second(version),
            });
        }
        UpdateRows {
            batch: Batch::new(columns, rows),
            fields,
        }
    }

    /// `<table>."f1" = "__uow_v"."f1", ...`: the SET list (`qualified`: with the table's name).
    pub fn walk_set<DB: Backend>(
        &self,
        qualified: bool,
        out: &mut AstPass<'_, '_, DB>,
    ) -> QueryResult<()>
    where
        T: Persist<DB>,
    {
        for (n, field) in self
            .fields
            .iter()
            .filter_map(|i| T::FIELDS.get(i))
            .enumerate()
        {
            if n > 0 {
                out.push_sql(", ");
            }
            if qualified {
                T::walk_table(out.reborrow())?;
                out.push_sql(".");
            }
            out.push_identifier(field.column)?;
            out.push_sql(" = ");
            out.push_identifier(BATCH)?;
            out.push_sql(".");
            out.push_identifier(field.column)?;
        }
        Ok(())
    }
}

impl<T: Persist<DB>, DB: Dialect> QueryFragment<DB> for UpdateRows<'_, T> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let full = self.batch.rows.len() == rows_per_update::<T, DB>(self.fields.len());
        if DB::batch_text_follows_rows(&self.batch) && self.batch.uncached(full) {
            out.unsafe_to_cache_prepared();
        }
        // One row needs no table: the plain UPDATE, one SQL text per column set, is simpler
        // for the server to plan, and the form every backend takes.
        match self.batch.rows {
            [(written, persisted)] => walk_update_one(*written, *persisted, self.fields, out),
            _ => DB::walk_batch_update(self, out),
        }
    }
}

/// The number of the first row of a batch whose key (and version) no row of the table has:
/// the row a short UPDATE or DELETE count is about.
#[doc(hidden)]
pub struct FirstMissing<'a, T> {
    pub batch: Batch<'a, T>,
    /// The batch column holding the version to look for, if the entity has one.
    pub version: Option<&'static str>,
}

impl<'a, T: Entity> FirstMissing<'a, T> {
    /// `rows`: per row, the values whose version to look for, and the persisted values (the
    /// key).
    pub fn new(rows: &'a [(&'a T, &'a T)]) -> Self {
        let mut columns = vec![Column {
            name: ROW,
            source: Source::Number,
        }];
        columns.extend(
            T::FIELDS
                .iter()
                .enumerate()
                .filter(|(_, f)| f.key)
                .map(|(i, f)| Column {
                    name: f.column,
                    source: Source::Second(i),
                }),
        );
        let version = T::version_field().and_then(|i| T::FIELDS.get(i).map(|f| (i, f)));
        if let Some((i, field)) = version {
            columns.push(Column {
                name: field.column,
                source: Source::First(i),
            });
        }
        FirstMissing {
            batch: Batch::new(columns, rows),
            version: version.map(|(_, f)| f.column),
        }
    }
}

impl<T: Persist<DB>, DB: Dialect> QueryFragment<DB> for FirstMissing<'_, T> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        // Sent only when a batch conflicts: never worth a place in the cache.
        out.unsafe_to_cache_prepared();
        DB::walk_first_missing(self, out)
    }
}

impl<T: Entity> QueryId for UpdateRows<'_, T> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<T: Entity> QueryId for FirstMissing<'_, T> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<T: Entity, C> RunQueryDsl<C> for UpdateRows<'_, T> {}

impl<T: Entity, C> RunQueryDsl<C> for FirstMissing<'_, T> {}

impl<T: Entity> Query for FirstMissing<'_, T> {
    type SqlType = Untyped;
}

/// The row [`FirstMissing`] returns: a number in the batch.
pub(crate) struct RowNumber(pub i32);

impl<DB: Dialect> diesel::deserialize::QueryableByName<DB> for RowNumber {
    fn build<'a>(row: &impl NamedRow<'a, DB>) -> diesel::deserialize::Result<Self> {
        DB::read_number(row, ROW).map(RowNumber)
    }
}

/// The default batch statements (SQLite): the batch as a CTE.
pub(crate) mod with_cte {
    use super::*;

    /// `WITH "__uow_v" (cols) AS (VALUES (...), (...))`.
    fn walk_batch<'b, T: Persist<DB>, DB: Dialect>(
        batch: &'b Batch<'_, T>,
        out: &mut AstPass<'_, 'b, DB>,
    ) -> QueryResult<()> {
        out.push_sql("WITH ");
        out.push_identifier(BATCH)?;
        out.push_sql(" (");
        batch.walk_names(out)?;
        out.push_sql(") AS (VALUES ");
        for row in 0..batch.rows.len() {
            out.push_sql(if row == 0 { "(" } else { ", (" });
            batch.walk_row(row, false, out)?;
            out.push_sql(")");
        }
        out.push_sql(") ");
        Ok(())
    }

    /// `WITH .. UPDATE t SET c = v.c FROM v WHERE t.k = v.k [AND t.version = v.old]`.
    pub(crate) fn walk_update<'b, T: Persist<DB>, DB: Dialect>(
        update: &'b UpdateRows<'_, T>,
        mut out: AstPass<'_, 'b, DB>,
    ) -> QueryResult<()> {
        walk_batch(&update.batch, &mut out)?;
        out.push_sql("UPDATE ");
        T::walk_table(out.reborrow())?;
        out.push_sql(" SET ");
        update.walk_set(false, &mut out)?;
        out.push_sql(" FROM ");
        out.push_identifier(BATCH)?;
        out.push_sql(" WHERE ");
        update.batch.walk_match(Some(OLD_VERSION), &mut out)
    }

    /// `WITH .. SELECT row FROM v WHERE NOT EXISTS (SELECT 1 FROM t WHERE ..) ORDER BY row
    /// LIMIT 1`.
    pub(crate) fn walk_first_missing<'b, T: Persist<DB>, DB: Dialect>(
        probe: &'b FirstMissing<'_, T>,
        mut out: AstPass<'_, 'b, DB>,
    ) -> QueryResult<()> {
        walk_batch(&probe.batch, &mut out)?;
        out.push_sql("SELECT ");
        out.push_identifier(ROW)?;
        out.push_sql(" FROM ");
        out.push_identifier(BATCH)?;
        walk_not_exists(probe, &mut out)
    }

    /// ` WHERE NOT EXISTS (SELECT 1 FROM t WHERE <match>) ORDER BY row LIMIT 1`.
    pub(crate) fn walk_not_exists<'b, T: Persist<DB>, DB: Backend>(
        probe: &'b FirstMissing<'_, T>,
        out: &mut AstPass<'_, 'b, DB>,
    ) -> QueryResult<()> {
        out.push_sql(" WHERE NOT EXISTS (SELECT 1 FROM ");
        T::walk_table(out.reborrow())?;
        out.push_sql(" WHERE ");
        probe.batch.walk_match(probe.version, out)?;
        out.push_sql(") ORDER BY 1 LIMIT 1");
        Ok(())
    }
}
