//! PostgreSQL: keys taken from the key's sequence in the INSERT that uses them, rows matched
//! by number.

use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::query_dsl::RunQueryDsl;
use diesel::row::NamedRow;
use diesel::sql_types::Untyped;
use diesel::QueryResult;

use super::batched::{Batch, Column, FirstMissing, Source, UpdateRows, ROW};
use super::batching::{
    insert_width, rows_per_insert, update_base_width, MAX_CACHED_BATCH_BINDS, MAX_ROWS_PER_INSERT,
};
use super::dialect::{insert_one_by_one, sealed, Dialect, Inserted, Session};
use super::driver::Driver;
use super::postgres_arrays;
use super::statements::{push_columns, walk_inserted_values};
use crate::entity::{Entity, Persist};
use crate::error::Error;
use crate::transaction_mode::{Isolation, TransactionMode};
use diesel::pg::{Pg, PgQueryBuilder};
use diesel::query_builder::QueryBuilder;
use diesel::sql_types::{Integer, Nullable, Text};

impl sealed::Sealed for Pg {}
sealed::entity_columns_metadata!(Pg);

impl Dialect for Pg {
    #[cfg(feature = "outbox")]
    super::outbox::outbox_statements!(
        claim: |query| query.for_update().skip_locked(),
        inbox: |values| diesel::insert_into(i::uow_inbox).values(values).on_conflict_do_nothing(),
    );
    const NAME: &'static str = "PostgreSQL";
    const MAX_BIND_PARAMS: usize = 65535;

    fn begin_sql(mode: TransactionMode) -> Result<Option<&'static str>, Error> {
        use Isolation::*;
        Ok(Some(match (mode.level(), mode.is_read_only()) {
            (None, false) => return Ok(None),
            (None, true) => "BEGIN READ ONLY",
            (Some(ReadCommitted), false) => "BEGIN ISOLATION LEVEL READ COMMITTED",
            (Some(ReadCommitted), true) => "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY",
            (Some(RepeatableRead), false) => "BEGIN ISOLATION LEVEL REPEATABLE READ",
            (Some(RepeatableRead), true) => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            (Some(Serializable), false) => "BEGIN ISOLATION LEVEL SERIALIZABLE",
            (Some(Serializable), true) => "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY",
        }))
    }
    /// A batch is bound as one array per column (`exec/postgres_arrays.rs`), so no bind limit
    /// cuts it; this cap keeps one statement's arrays to a few megabytes. Large batches pay:
    /// PostgreSQL joins a batch to the table with one scan of the table, so batches of 1,000
    /// rows cost a scan each (10,000 changed rows of a 10,000-row table: ten scans, 55-75 ms
    /// of server time, against 50-55 ms in one statement; `EXPLAIN ANALYZE`), and over a
    /// network each batch is a round trip more.
    const MAX_ROWS_PER_UPDATE: usize = 65_535;
    /// An array's text does not depend on its length.
    fn batch_text_follows_rows<T: Persist<Self>>(_: &Batch<'_, T>) -> bool {
        !postgres_arrays::arrays_fit::<T>()
    }

    /// One array per column, whatever the rows: nothing per row counts against the bind
    /// limit (but for an entity with a field of an array type, whose batches are tables of
    /// bound values).
    fn update_binds_per_row<T: Persist<Self>>(columns: usize) -> usize {
        if postgres_arrays::arrays_fit::<T>() {
            0
        } else {
            update_base_width::<T>() + columns
        }
    }

    fn walk_batch_update<'b, T: Persist<Self>>(
        update: &'b UpdateRows<'_, T>,
        out: AstPass<'_, 'b, Self>,
    ) -> QueryResult<()> {
        postgres_arrays::walk_update(update, out)
    }

    fn walk_first_missing<'b, T: Persist<Self>>(
        probe: &'b FirstMissing<'_, T>,
        out: AstPass<'_, 'b, Self>,
    ) -> QueryResult<()> {
        postgres_arrays::walk_first_missing(probe, out)
    }

    /// A generated key: one statement per batch that takes the keys from the key's
    /// sequence itself ([`InsertAllocatingKeys`]), so each row's key is known before it is
    /// inserted. A key with no sequence of its own (a default expression, a trigger), or
    /// generated fields besides a key chosen in Rust: one statement per row.
    async fn insert_returning<D: Driver<Backend = Self>, T: Persist<Self>>(
        conn: &mut D::Conn,
        _: &mut Session,
        rows: &[&T],
    ) -> QueryResult<Inserted<T>> {
        if !key_is_generated::<T>() || rows.is_empty() {
            return insert_one_by_one::<D, T>(conn, rows).await;
        }
        // Each row paired with itself: the array form reads a batch's columns from pairs.
        let pairs: Vec<(&T, &T)> = rows.iter().map(|row| (*row, *row)).collect();
        let statement = InsertAllocatingKeys::new(rows, &pairs)?;
        let returned: Vec<NumberedRow<T>> = D::load(conn, statement).await?;
        if returned.is_empty() {
            // The statement inserts nothing when the key owns no sequence.
            let mut inserted = insert_one_by_one::<D, T>(conn, rows).await?;
            inserted.statements += 1;
            return Ok(inserted);
        }
        let mut by_row: Vec<Option<T::Generated>> = vec![None; rows.len()];
        for row in returned {
            // A row the database changed the key of (a trigger) has no number: it and
            // a number seen twice leave the result short, and the commit is refused.
            let slot = row
                .number
                .and_then(|n| usize::try_from(n).ok())
                .and_then(|n| by_row.get_mut(n));
            if let Some(slot @ None) = slot {
                *slot = Some(row.generated);
            } else {
                by_row.clear();
                break;
            }
        }
        Ok(Inserted {
            generated: by_row.into_iter().flatten().collect(),
            statements: 1,
        })
    }

    /// Arrays: as many rows as an UPDATE carries (one statement text for every batch, so
    /// no cap is needed to keep it cached); a table of bound values: [`MAX_ROWS_PER_INSERT`].
    fn generated_rows_per_statement<T: Persist<Self>>() -> usize {
        if !key_is_generated::<T>() {
            1
        } else if postgres_arrays::arrays_fit::<T>() {
            Self::MAX_ROWS_PER_UPDATE
        } else {
            MAX_ROWS_PER_INSERT
        }
    }

    fn generated_insert_binds<T: Persist<Self>>() -> (usize, usize) {
        if !key_is_generated::<T>() {
            (insert_width::<T>(), 0)
        } else if postgres_arrays::arrays_fit::<T>() {
            // The table and key column names, the numbers' array and one array per column.
            (0, insert_width::<T>() + 3)
        } else {
            // Each row's number, and the table and key column names once.
            (insert_width::<T>() + 1, 2)
        }
    }
}

fn key_is_generated<T: Entity>() -> bool {
    T::FIELDS.iter().any(|f| f.key && f.generated)
}

/// Inserts rows whose key a sequence generates, numbering them, so that every returned
/// row says which entity it belongs to:
///
/// ```sql
/// WITH "__uow_rows" AS (
///     SELECT nextval((SELECT CAST(pg_get_serial_sequence($1, $2) AS regclass))) AS "__uow_key", "__uow_v".*
///     FROM unnest($3, $4, ..) AS "__uow_v" ("__uow_row", "name", ..)
/// ), "__uow_inserted" AS (
///     INSERT INTO "t" ("id", "name", ..) OVERRIDING SYSTEM VALUE
///     SELECT "__uow_key", "name", .. FROM "__uow_rows" WHERE "__uow_key" IS NOT NULL
///     RETURNING <generated columns>
/// )
/// SELECT "__uow_rows"."__uow_row", "__uow_inserted".* FROM "__uow_inserted"
/// LEFT JOIN "__uow_rows" ON "__uow_inserted"."id" = "__uow_rows"."__uow_key"
/// ```
///
/// The keys come from the key column's own sequence (`pg_get_serial_sequence`: SERIAL and
/// identity columns, and any sequence `OWNED BY` the column), one `nextval` per row in a
/// CTE that is evaluated once, and are inserted explicitly (`OVERRIDING SYSTEM VALUE` lets
/// a `GENERATED ALWAYS` identity take them); the returned rows are joined back to their
/// number by key. So the match does not depend on the order of `RETURNING`, nor on the
/// keys growing (a descending or cycling sequence gives each row its own key all the
/// same). A key with no such sequence makes `$1, $2` name none: nothing is inserted and
/// nothing returned, and the caller falls back to one statement per row. A trigger that
/// changes a key leaves that row without a number, and the commit is refused.
///
/// The rows come as arrays, one per column (`$3` the numbers 0.., `$4` the first column's
/// values, ..: `postgres_arrays.rs`), so the statement's text is the same for every batch
/// of a table and stays in the prepared-statement cache, and planning it does not grow with
/// the rows. An entity with a field of an array type (PostgreSQL has no arrays of arrays)
/// sends its rows as `(VALUES ($3, $4, ..), ..)` instead, at most [`MAX_ROWS_PER_INSERT`].
pub(super) struct InsertAllocatingKeys<'a, T> {
    rows: &'a [&'a T],
    /// The rows as arrays, or `None` for the `VALUES` form.
    arrays: Option<Batch<'a, T>>,
    /// The table as a (quoted, possibly schema-qualified) name, and the key column, bound
    /// as text for `pg_get_serial_sequence`.
    table: String,
    key_column: &'static str,
    numbers: Vec<i32>,
}

impl<'a, T: Persist<Pg>> InsertAllocatingKeys<'a, T> {
    /// `pairs` holds each row of `rows` paired with itself.
    pub(super) fn new(rows: &'a [&'a T], pairs: &'a [(&'a T, &'a T)]) -> QueryResult<Self> {
        let mut table = PgQueryBuilder::new();
        TableName::<T>(std::marker::PhantomData).to_sql(&mut table, &Pg)?;
        let key_column = T::FIELDS
            .iter()
            .find(|f| f.key && f.generated)
            .map(|f| f.column)
            .ok_or_else(|| {
                diesel::result::Error::QueryBuilderError("the key is not generated".into())
            })?;
        let numbers = (0..rows.len())
            .map(|n| i32::try_from(n).unwrap_or(i32::MAX))
            .collect();
        let arrays = postgres_arrays::arrays_fit::<T>().then(|| {
            let mut columns = vec![Column {
                name: ROW,
                source: Source::Number,
            }];
            columns.extend(
                T::FIELDS
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| !f.generated)
                    .map(|(n, f)| Column {
                        name: f.column,
                        source: Source::First(n),
                    }),
            );
            Batch::new(columns, pairs)
        });
        Ok(InsertAllocatingKeys {
            rows,
            arrays,
            table: table.finish(),
            key_column,
            numbers,
        })
    }
}

/// The table's name as `walk_table` writes it.
struct TableName<T>(std::marker::PhantomData<T>);

impl<T: Persist<Pg>> QueryFragment<Pg> for TableName<T> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        T::walk_table(out)
    }
}

impl<T: Entity> QueryId for InsertAllocatingKeys<'_, T> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<T: Entity, C> RunQueryDsl<C> for InsertAllocatingKeys<'_, T> {}

impl<T: Entity> Query for InsertAllocatingKeys<'_, T> {
    type SqlType = Untyped;
}

impl<T: Persist<Pg>> QueryFragment<Pg> for InsertAllocatingKeys<'_, T> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // The sequence is looked up, and its name resolved, once per statement (the sub-select
        // is evaluated once), not once per row as `nextval(text)` would.
        out.push_sql("WITH \"__uow_rows\" AS (SELECT nextval((SELECT CAST(pg_get_serial_sequence(");
        out.push_bind_param::<Text, str>(self.table.as_str())?;
        out.push_sql(", ");
        out.push_bind_param::<Text, str>(self.key_column)?;
        out.push_sql(") AS regclass))) AS \"__uow_key\", \"__uow_v\".* FROM ");
        match &self.arrays {
            Some(batch) => postgres_arrays::walk_unnest(batch, &mut out)?,
            None => self.walk_values(&mut out)?,
        }
        out.push_sql("), \"__uow_inserted\" AS (INSERT INTO ");
        T::walk_table(out.reborrow())?;
        out.push_sql(" (");
        out.push_identifier(self.key_column)?;
        if insert_width::<T>() > 0 {
            out.push_sql(", ");
            push_columns::<T, Pg>(&mut out, |f| !f.generated)?;
        }
        out.push_sql(") OVERRIDING SYSTEM VALUE SELECT \"__uow_key\"");
        if insert_width::<T>() > 0 {
            out.push_sql(", ");
            push_columns::<T, Pg>(&mut out, |f| !f.generated)?;
        }
        out.push_sql(" FROM \"__uow_rows\" WHERE \"__uow_key\" IS NOT NULL RETURNING ");
        push_columns::<T, Pg>(&mut out, |f| f.generated)?;
        out.push_sql(") SELECT \"__uow_rows\".\"__uow_row\", \"__uow_inserted\".* FROM \"__uow_inserted\" LEFT JOIN \"__uow_rows\" ON \"__uow_inserted\".");
        out.push_identifier(self.key_column)?;
        out.push_sql(" = \"__uow_rows\".\"__uow_key\"");
        Ok(())
    }
}

impl<'a, T: Persist<Pg>> InsertAllocatingKeys<'a, T> {
    /// `(VALUES ($3, $4, ..), ..) AS "__uow_v" ("__uow_row", "name", ..)`.
    fn walk_values<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let full = self.rows.len() == rows_per_insert::<T, Pg>();
        if !full && self.rows.len() * (insert_width::<T>() + 1) > MAX_CACHED_BATCH_BINDS {
            out.unsafe_to_cache_prepared();
        }
        out.push_sql("(VALUES ");
        for (index, (row, number)) in self.rows.iter().zip(&self.numbers).enumerate() {
            out.push_sql(if index == 0 { "(" } else { ", (" });
            out.push_bind_param::<Integer, i32>(number)?;
            if insert_width::<T>() > 0 {
                out.push_sql(", ");
                walk_inserted_values(*row, out)?;
            }
            out.push_sql(")");
        }
        out.push_sql(") AS \"__uow_v\" (\"__uow_row\"");
        if insert_width::<T>() > 0 {
            out.push_sql(", ");
            push_columns::<T, Pg>(out, |f| !f.generated)?;
        }
        out.push_sql(")");
        Ok(())
    }
}

/// A row returned by [`InsertAllocatingKeys`]: its number (none if its key was changed on
/// the way) and its generated values.
struct NumberedRow<T: Entity> {
    number: Option<i32>,
    generated: T::Generated,
}

impl<T: Persist<Pg>> diesel::deserialize::QueryableByName<Pg> for NumberedRow<T> {
    fn build<'a>(row: &impl NamedRow<'a, Pg>) -> diesel::deserialize::Result<Self> {
        Ok(NumberedRow {
            number: NamedRow::get::<Nullable<Integer>, Option<i32>>(row, "__uow_row")?,
            generated: T::read_generated(row)?,
        })
    }
}
