//! MySQL's statements over a batch of rows. A table of bound values (a derived table, `VALUES
//! ROW(..)`) loses the values' types on MySQL and MariaDB: its columns compare as strings or
//! doubles, inexact for integers past 2^53 and without the key's index. So each row is picked
//! by comparing the key columns with bound values directly: `CASE` chooses a row's value in
//! the SET list, and the WHERE clause is the one a DELETE of the same rows has.

use diesel::deserialize::QueryableByName;
use diesel::mysql::Mysql;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::query_dsl::RunQueryDsl;
use diesel::row::NamedRow;
use diesel::sql_types::{BigInt, Integer, Unsigned, Untyped};
use diesel::QueryResult;

use super::batched::ROW;
use super::batching::{insert_width, key_width};
use super::statements::{cache_if_small, walk_insert, walk_row_match, walk_rows_match};
use crate::entity::{Entity, FieldSet, Persist};

/// The most rows one UPDATE carries on MySQL. `CASE` looks for a row's branch by trying its
/// `WHEN`s in order, so a statement's cost grows with the square of its rows: on MariaDB 10.11
/// about 7 µs a row at 100 to 200 rows and 11 µs at 1,000 (server time), against a round trip
/// of 50 µs or more per row sent alone.
pub(super) const MAX_ROWS_PER_CASE_UPDATE: usize = 200;

/// `UPDATE t SET c = CASE k WHEN ? THEN ? .. END, .. WHERE k IN (..)` (or `CASE WHEN k1 = ?
/// AND k2 = ? THEN ?` and `WHERE (k1 = ? AND k2 = ? [AND version = ?]) OR ..` for composite
/// keys and versions). `rows`: per row the values to write and the persisted values.
///
/// Only key columns are compared in the `CASE`s, and a persisted key is never written, so
/// MySQL's left-to-right evaluation of the SET list (a later assignment sees an earlier one's
/// value) cannot change which branch a row takes.
pub(super) fn walk_case_update<'b, T: Persist<Mysql>>(
    rows: &'b [(&'b T, &'b T)],
    fields: FieldSet,
    mut out: AstPass<'_, 'b, Mysql>,
) -> QueryResult<()> {
    out.push_sql("UPDATE ");
    T::walk_table(out.reborrow())?;
    out.push_sql(" SET ");
    walk_cases(rows, fields, &mut out)?;
    out.push_sql(" WHERE ");
    walk_rows_match(rows.iter().map(|(_, persisted)| *persisted), &mut out)
}

/// `c = CASE .. END, ..`: for each written column, each row's value chosen by its key.
fn walk_cases<'b, T: Persist<Mysql>>(
    rows: &'b [(&'b T, &'b T)],
    fields: FieldSet,
    out: &mut AstPass<'_, 'b, Mysql>,
) -> QueryResult<()> {
    // A single-column key takes the simple form, `CASE k WHEN ?`, which MariaDB evaluates
    // faster than a search condition per branch.
    let single_key = match key_width::<T>() {
        1 => T::FIELDS.iter().enumerate().find(|(_, f)| f.key),
        _ => None,
    };
    for (n, index) in fields.iter().enumerate() {
        let field = T::FIELDS.get(index).ok_or_else(|| {
            diesel::result::Error::QueryBuilderError(
                format!("{} has no field {index}", T::ENTITY_NAME).into(),
            )
        })?;
        if n > 0 {
            out.push_sql(", ");
        }
        out.push_identifier(field.column)?;
        out.push_sql(" = CASE");
        if let Some((_, key)) = single_key {
            out.push_sql(" ");
            out.push_identifier(key.column)?;
        }
        for (written, persisted) in rows {
            out.push_sql(" WHEN ");
            match single_key {
                Some((key, _)) => persisted.walk_field(key, out.reborrow())?,
                None => walk_row_match(*persisted, None, out)?,
            }
            out.push_sql(" THEN ");
            written.walk_field(index, out.reborrow())?;
        }
        out.push_sql(" END");
    }
    Ok(())
}

/// What one row binds in [`walk_case_update`], for measuring it against the packet size.
pub(super) struct CaseRow<'a, T> {
    pub row: &'a (&'a T, &'a T),
    pub fields: FieldSet,
}

impl<T: Persist<Mysql>> QueryFragment<Mysql> for CaseRow<'_, T> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Mysql>) -> QueryResult<()> {
        walk_case_update(std::slice::from_ref(self.row), self.fields, out)
    }
}

/// `SELECT CAST(CASE WHEN <row 0> THEN 0 WHEN <row 1> THEN 1 .. END AS SIGNED) FROM t WHERE
/// <row 0> OR <row 1> ..`: the numbers of the rows of a batch that the table has, each row
/// matched by the key of its second value and the version of its first.
pub(super) struct FoundRows<'a, T> {
    rows: &'a [(&'a T, &'a T)],
    numbers: Vec<i32>,
}

impl<'a, T: Entity> FoundRows<'a, T> {
    pub(super) fn new(rows: &'a [(&'a T, &'a T)]) -> Self {
        let numbers = (0..rows.len())
            .map(|n| i32::try_from(n).unwrap_or(i32::MAX))
            .collect();
        FoundRows { rows, numbers }
    }
}

impl<T: Persist<Mysql>> QueryFragment<Mysql> for FoundRows<'_, T> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Mysql>) -> QueryResult<()> {
        // Sent only when a batch may conflict: never worth a place in the cache.
        out.unsafe_to_cache_prepared();
        out.push_sql("SELECT CAST(CASE");
        for ((first, second), number) in self.rows.iter().zip(&self.numbers) {
            out.push_sql(" WHEN ");
            walk_row_match(*second, Some(*first), &mut out)?;
            out.push_sql(" THEN ");
            out.push_bind_param::<Integer, i32>(number)?;
        }
        out.push_sql(" END AS SIGNED) AS ");
        out.push_identifier(ROW)?;
        out.push_sql(" FROM ");
        T::walk_table(out.reborrow())?;
        out.push_sql(" WHERE ");
        for (n, (first, second)) in self.rows.iter().enumerate() {
            out.push_sql(if n == 0 { "(" } else { " OR (" });
            walk_row_match(*second, Some(*first), &mut out)?;
            out.push_sql(")");
        }
        Ok(())
    }
}

impl<T: Entity> QueryId for FoundRows<'_, T> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<T: Entity> Query for FoundRows<'_, T> {
    type SqlType = Untyped;
}

impl<T: Entity, C> RunQueryDsl<C> for FoundRows<'_, T> {}

/// A row of [`FoundRows`]: its number in the batch.
pub(super) struct FoundRow(pub i64);

impl QueryableByName<Mysql> for FoundRow {
    fn build<'a>(row: &impl NamedRow<'a, Mysql>) -> diesel::deserialize::Result<Self> {
        NamedRow::get::<BigInt, i64>(row, ROW).map(FoundRow)
    }
}

/// `INSERT INTO t (..) VALUES (..), .. RETURNING CAST(k AS UNSIGNED) AS __uow_key`: the
/// AUTO_INCREMENT keys of the rows (MariaDB 10.5 and later; MySQL has no `RETURNING`).
pub(super) struct InsertReturningKeys<'a, T>(pub &'a [&'a T]);

/// The name the returned key is read by.
const KEY: &str = "__uow_key";

impl<T: Persist<Mysql>> QueryFragment<Mysql> for InsertReturningKeys<'_, T> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Mysql>) -> QueryResult<()> {
        cache_if_small(&mut out, self.0.len() * insert_width::<T>(), false);
        walk_insert(self.0, false, out.reborrow())?;
        let key = T::FIELDS.iter().find(|f| f.key && f.generated);
        let Some(key) = key else {
            return Err(diesel::result::Error::QueryBuilderError(
                format!("{} has no generated key to return", T::ENTITY_NAME).into(),
            ));
        };
        out.push_sql(" RETURNING CAST(");
        out.push_identifier(key.column)?;
        out.push_sql(" AS UNSIGNED) AS ");
        out.push_identifier(KEY)
    }
}

impl<T: Entity> QueryId for InsertReturningKeys<'_, T> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<T: Entity> Query for InsertReturningKeys<'_, T> {
    type SqlType = Untyped;
}

impl<T: Entity, C> RunQueryDsl<C> for InsertReturningKeys<'_, T> {}

/// A row of [`InsertReturningKeys`]: one inserted row's key.
pub(super) struct ReturnedKey(pub u64);

impl QueryableByName<Mysql> for ReturnedKey {
    fn build<'a>(row: &impl NamedRow<'a, Mysql>) -> diesel::deserialize::Result<Self> {
        NamedRow::get::<Unsigned<BigInt>, u64>(row, KEY).map(ReturnedKey)
    }
}

/// `SELECT LAST_INSERT_ID()` with the auto-increment lock mode and step of the same session,
/// after each INSERT whose keys it reads: one constant text with a query id of its own, so
/// Diesel prepares it once per connection (an SQL literal would be prepared for every row).
#[derive(Debug, Clone, Copy)]
pub(super) struct InsertIdAndSettings;

impl QueryId for InsertIdAndSettings {
    type QueryId = InsertIdAndSettings;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for InsertIdAndSettings {
    type SqlType = (Unsigned<BigInt>, BigInt, BigInt);
}

impl<C> RunQueryDsl<C> for InsertIdAndSettings {}

impl QueryFragment<Mysql> for InsertIdAndSettings {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Mysql>) -> QueryResult<()> {
        out.push_sql(
            "SELECT LAST_INSERT_ID(), CAST(@@innodb_autoinc_lock_mode AS SIGNED), \
             CAST(@@auto_increment_increment AS SIGNED)",
        );
        Ok(())
    }
}
