//! PostgreSQL's statements over a batch: every column of the batch bound as one array and
//! turned back into rows by `unnest`, `UPDATE t SET c = v.c FROM unnest($1, $2) AS v (k, c)
//! WHERE t.k = v.k`. One parameter per column whatever the number of rows, so a statement's
//! text (its prepared statement, its plan) is the same for every batch of a column set, and
//! planning it does not grow with the rows as a `VALUES` list's does (a 10,000-row list took
//! about 15 ms to plan). Each array is typed by its field's SQL type, from the derive's
//! [`Persist::visit_columns`], and serialized by Diesel's own `ToSql` for arrays, element by
//! element with that type's `ToSql`, so a value is written exactly as it would be as a
//! parameter of its own.

use std::io::Write;

use diesel::pg::Pg;
use diesel::query_builder::AstPass;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{Array, HasSqlType, Integer};
use diesel::QueryResult;

use super::batched::{
    with_cte, Batch, ColumnValues, FirstMissing, Source, UpdateRows, BATCH, OLD_VERSION, ROW,
};
use crate::entity::{ColumnVisitor, Persist};

/// Whether every persisted field of `T` can be bound as an array of its values: PostgreSQL
/// has no arrays of arrays (a field whose SQL type is an array would need one), so an entity
/// with such a field has its batches sent as tables of bound values, the default form, cut by
/// the bind limit. Diesel's `Array` is recognised by its type's name, the one thing a generic
/// visitor can read of it.
pub(super) fn arrays_fit<T: Persist<Pg>>() -> bool {
    let fields: Vec<usize> = (0..T::FIELDS.len()).collect();
    let mut check = FindArrays {
        fields: &fields,
        found: false,
    };
    T::visit_columns(&mut check);
    !check.found
}

/// Finds a field among `fields` whose SQL type is an array.
struct FindArrays<'f> {
    fields: &'f [usize],
    found: bool,
}

impl<T: Persist<Pg>> ColumnVisitor<T, Pg> for FindArrays<'_> {
    fn visit<ST: 'static, F>(&mut self, field: usize, _: fn(&T) -> &F)
    where
        Pg: HasSqlType<ST>,
        F: ToSql<ST, Pg>,
    {
        if self.fields.contains(&field) && std::any::type_name::<ST>().contains("Array<") {
            self.found = true;
        }
    }
}

/// `UPDATE t SET c = v.c FROM unnest(..) AS v (..) WHERE t.k = v.k [AND t.version = v.old]`,
/// or the default form where a column cannot be an array.
pub(super) fn walk_update<'b, T: Persist<Pg>>(
    update: &'b UpdateRows<'_, T>,
    mut out: AstPass<'_, 'b, Pg>,
) -> QueryResult<()> {
    if !arrays_fit::<T>() {
        return with_cte::walk_update(update, out);
    }
    out.push_sql("UPDATE ");
    T::walk_table(out.reborrow())?;
    out.push_sql(" SET ");
    update.walk_set(false, &mut out)?;
    out.push_sql(" FROM ");
    walk_unnest(&update.batch, &mut out)?;
    out.push_sql(" WHERE ");
    update.batch.walk_match(Some(OLD_VERSION), &mut out)
}

/// `SELECT row FROM unnest(..) AS v (..) WHERE NOT EXISTS (..) ORDER BY row LIMIT 1`, or the
/// default form where a column cannot be an array.
pub(super) fn walk_first_missing<'b, T: Persist<Pg>>(
    probe: &'b FirstMissing<'_, T>,
    mut out: AstPass<'_, 'b, Pg>,
) -> QueryResult<()> {
    if !arrays_fit::<T>() {
        return with_cte::walk_first_missing(probe, out);
    }
    out.push_sql("SELECT ");
    out.push_identifier(ROW)?;
    out.push_sql(" FROM ");
    walk_unnest(&probe.batch, &mut out)?;
    with_cte::walk_not_exists(probe, &mut out)
}

/// `unnest($1, $2, ..) AS "__uow_v" ("c1", "c2", ..)`: one array per column of the batch.
pub(super) fn walk_unnest<'b, T: Persist<Pg>>(
    batch: &'b Batch<'_, T>,
    out: &mut AstPass<'_, 'b, Pg>,
) -> QueryResult<()> {
    out.push_sql("unnest(");
    for (n, values) in batch.values.iter().enumerate() {
        if n > 0 {
            out.push_sql(", ");
        }
        match values.source {
            Source::Number => out.push_bind_param::<Array<Integer>, _>(values)?,
            Source::First(field) | Source::Second(field) => {
                let mut bind = BindColumn {
                    field,
                    values,
                    out: out.reborrow(),
                    result: None,
                };
                T::visit_columns(&mut bind);
                bind.result
                    .unwrap_or_else(|| Err(no_such_field::<T>(field)))?;
            }
        }
    }
    out.push_sql(") AS ");
    out.push_identifier(BATCH)?;
    out.push_sql(" (");
    batch.walk_names(out)?;
    out.push_sql(")");
    Ok(())
}

fn no_such_field<T>(field: usize) -> diesel::result::Error {
    diesel::result::Error::QueryBuilderError(
        format!(
            "{} has no persisted field {field} to bind as an array",
            std::any::type_name::<T>()
        )
        .into(),
    )
}

/// Binds the column of field `field` as an array of the field's SQL type.
struct BindColumn<'o, 'b, 'v, T> {
    field: usize,
    values: &'b ColumnValues<'v, T>,
    out: AstPass<'o, 'b, Pg>,
    result: Option<QueryResult<()>>,
}

impl<T: Persist<Pg>> ColumnVisitor<T, Pg> for BindColumn<'_, '_, '_, T> {
    fn visit<ST: 'static, F>(&mut self, field: usize, _: fn(&T) -> &F)
    where
        Pg: HasSqlType<ST>,
        F: ToSql<ST, Pg>,
    {
        if field == self.field && self.result.is_none() {
            self.result = Some(self.out.push_bind_param::<Array<ST>, _>(self.values));
        }
    }
}

/// The array of a column: PostgreSQL's binary array format (one dimension, lower bound 1),
/// each element written by its field's own `ToSql`, `NULL` as length -1.
impl<T: Persist<Pg>, ST> ToSql<Array<ST>, Pg> for ColumnValues<'_, T>
where
    Pg: HasSqlType<ST>,
{
    fn to_sql<'x>(&'x self, out: &mut Output<'x, '_, Pg>) -> serialize::Result {
        let (field, first) = match self.source {
            Source::Number => return write_numbers(self.rows.len(), out),
            Source::First(field) => (field, true),
            Source::Second(field) => (field, false),
        };
        let mut write = WriteColumn {
            field,
            first,
            rows: self.rows,
            out,
            result: None,
        };
        T::visit_columns(&mut write);
        write
            .result
            .unwrap_or_else(|| Err(Box::new(no_such_field::<T>(field))))
    }
}

/// Writes the array of field `field` of every row (its first value or its second).
struct WriteColumn<'o, 'x, 'l, T> {
    field: usize,
    first: bool,
    rows: &'x [(&'x T, &'x T)],
    out: &'o mut Output<'x, 'l, Pg>,
    result: Option<serialize::Result>,
}

impl<'x, T: Persist<Pg>> ColumnVisitor<T, Pg> for WriteColumn<'_, 'x, '_, T> {
    fn visit<ST: 'static, F>(&mut self, field: usize, get: fn(&T) -> &F)
    where
        Pg: HasSqlType<ST>,
        F: ToSql<ST, Pg>,
    {
        if field != self.field || self.result.is_some() {
            return;
        }
        let first = self.first;
        let values = self
            .rows
            .iter()
            .map(move |(a, b)| get(if first { *a } else { *b }));
        self.result = Some(write_array::<ST, F>(values, self.out));
    }
}

/// Serializes `values` as a one-dimensional array of `ST`: Diesel's `ToSql` for a slice, which
/// writes each element with its own `ToSql` (`NULL` as length -1), through a reference to it.
fn write_array<'x, ST, F>(
    values: impl Iterator<Item = &'x F>,
    out: &mut Output<'_, '_, Pg>,
) -> serialize::Result
where
    ST: 'static,
    Pg: HasSqlType<ST>,
    F: ToSql<ST, Pg> + 'x,
{
    let elements: Vec<&F> = values.collect();
    ToSql::<Array<ST>, Pg>::to_sql(elements.as_slice(), &mut out.reborrow())
}

/// The row numbers `0..rows` as an `int4[]`.
fn write_numbers(rows: usize, out: &mut Output<'_, '_, Pg>) -> serialize::Result {
    let element_oid = <Pg as HasSqlType<Integer>>::metadata(out.metadata_lookup()).oid()?;
    write_header(out, false, element_oid, i32::try_from(rows)?)?;
    for number in 0..rows {
        out.write_all(&4i32.to_be_bytes())?;
        out.write_all(&i32::try_from(number)?.to_be_bytes())?;
    }
    Ok(IsNull::No)
}

/// Dimensions, the null flag, the element type, the length, the lower bound.
fn write_header(
    out: &mut Output<'_, '_, Pg>,
    has_null: bool,
    element_oid: u32,
    len: i32,
) -> std::io::Result<()> {
    out.write_all(&1i32.to_be_bytes())?;
    out.write_all(&i32::from(has_null).to_be_bytes())?;
    out.write_all(&element_oid.to_be_bytes())?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(&1i32.to_be_bytes())
}
