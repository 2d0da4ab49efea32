//! The statements the execution layer sends, as Diesel query fragments.
//!
//! Every statement here is a Diesel [`QueryFragment`]: table and column names go through
//! `push_identifier` (quoted by the backend), every value through `push_bind_param`. No value
//! is ever formatted into SQL text.

use diesel::backend::Backend;
use diesel::deserialize::{FromSqlRow, QueryableByName};
use diesel::query_builder::{AsChangeset, AstPass, Query, QueryFragment, QueryId};
use diesel::query_dsl::RunQueryDsl;
use diesel::row::{NamedRow, Row};
use diesel::sql_types::Untyped;
use diesel::QueryResult;

use super::batching::{insert_width, key_width, rows_per_insert, MAX_CACHED_BATCH_BINDS};
use super::dialect::sealed::EntityColumns;
use super::dialect::Dialect;
use crate::entity::{Entity, FieldSet, Load, Persist};

/// The SET list of an UPDATE: exactly the changed columns of one entity.
///
/// It is a Diesel [`AsChangeset`], so it also works in hand-written Diesel updates; get one
/// from [`UnitOfWork::changes`](crate::UnitOfWork::changes).
#[derive(Debug, Clone, Copy)]
pub struct Changes<'a, T> {
    entity: &'a T,
    fields: FieldSet,
}

impl<'a, T: Entity> Changes<'a, T> {
    /// The changes of `entity` restricted to `fields`.
    pub fn new(entity: &'a T, fields: FieldSet) -> Self {
        Changes { entity, fields }
    }

    /// The fields in this changeset.
    pub fn fields(&self) -> FieldSet {
        self.fields
    }

    /// The columns in this changeset, in field order. Indexes past `T::FIELDS` (possible
    /// only with a hand-built [`FieldSet`]) name no column and are left out.
    pub fn columns(&self) -> Vec<&'static str> {
        self.fields
            .iter()
            .filter_map(|i| T::FIELDS.get(i).map(|f| f.column))
            .collect()
    }
}

impl<T: Entity> QueryId for Changes<'_, T> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<T, DB> QueryFragment<DB> for Changes<'_, T>
where
    DB: Backend,
    T: Persist<DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        walk_changes(self.entity, self.fields, &mut out)
    }

    fn is_noop(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(self.fields.is_empty())
    }
}

/// `"a" = ?, "b" = ?`: `fields` of `entity`, bound.
fn walk_changes<'b, T: Persist<DB>, DB: Backend>(
    entity: &'b T,
    fields: FieldSet,
    out: &mut AstPass<'_, 'b, DB>,
) -> QueryResult<()> {
    for (n, index) in fields.iter().enumerate() {
        if n > 0 {
            out.push_sql(", ");
        }
        // `Changes::new` takes any `FieldSet`, so an index may be past the entity's fields;
        // an UPDATE silently missing a column would be worse than refusing to build it.
        let field = T::FIELDS.get(index).ok_or_else(|| {
            diesel::result::Error::QueryBuilderError(
                format!(
                    "field index {index} is out of range for `{name}`, which has {count} \
                     persisted fields; build the `FieldSet` from indexes into \
                     `{name}::FIELDS`, or take the changeset from `UnitOfWork::changes`",
                    name = T::ENTITY_NAME,
                    count = T::FIELDS.len(),
                )
                .into(),
            )
        })?;
        out.push_identifier(field.column)?;
        out.push_sql(" = ");
        entity.walk_field(index, out.reborrow())?;
    }
    Ok(())
}

impl<'a, T: Entity> AsChangeset for Changes<'a, T> {
    type Target = T::Table;
    type Changeset = Self;

    fn as_changeset(self) -> Self::Changeset {
        self
    }
}

/// Writes `"k1" = ? AND "k2" = ?` for the key of `entity`, and `AND "version" = ?` when the
/// entity has a version field: `entity` must hold the persisted values.
fn walk_key_match<'b, T, DB>(entity: &'b T, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()>
where
    DB: Backend,
    T: Persist<DB>,
{
    walk_row_match(entity, Some(entity), &mut out)
}

/// Writes `"k1" = ? AND "k2" = ?` for the key of `key_of`, and `AND "version" = ?` with the
/// version of `version_of` when there is one and the entity has a version field.
pub(super) fn walk_row_match<'b, T, DB>(
    key_of: &'b T,
    version_of: Option<&'b T>,
    out: &mut AstPass<'_, 'b, DB>,
) -> QueryResult<()>
where
    DB: Backend,
    T: Persist<DB>,
{
    let mut first = true;
    for (index, field) in T::FIELDS.iter().enumerate() {
        let values = match (field.key, field.version, version_of) {
            (true, _, _) => key_of,
            (false, true, Some(version_of)) => version_of,
            _ => continue,
        };
        if !first {
            out.push_sql(" AND ");
        }
        first = false;
        out.push_identifier(field.column)?;
        out.push_sql(" = ");
        values.walk_field(index, out.reborrow())?;
    }
    Ok(())
}

/// Writes what picks `rows` (persisted values) in a WHERE clause: `k IN (...)` for a
/// single-column key without a version, else `(k1 = ? AND k2 = ? [AND version = ?]) OR ...`.
pub(super) fn walk_rows_match<'b, T, DB>(
    rows: impl ExactSizeIterator<Item = &'b T>,
    out: &mut AstPass<'_, 'b, DB>,
) -> QueryResult<()>
where
    DB: Backend,
    T: Persist<DB> + 'b,
{
    if key_width::<T>() == 1 && T::version_field().is_none() {
        let (index, field) = T::FIELDS.iter().enumerate().find(|(_, f)| f.key).ok_or(
            diesel::result::Error::QueryBuilderError("entity has no key field".into()),
        )?;
        out.push_identifier(field.column)?;
        out.push_sql(" IN (");
        for (row_index, row) in rows.enumerate() {
            if row_index > 0 {
                out.push_sql(", ");
            }
            row.walk_field(index, out.reborrow())?;
        }
        out.push_sql(")");
    } else {
        for (row_index, row) in rows.enumerate() {
            out.push_sql(if row_index == 0 { "(" } else { " OR (" });
            walk_row_match(row, Some(row), out)?;
            out.push_sql(")");
        }
    }
    Ok(())
}

/// Writes `"a", "b", ...`: the columns of the fields `include` picks, in field order.
pub(super) fn push_columns<T: Entity, DB: Backend>(
    out: &mut AstPass<'_, '_, DB>,
    include: impl Fn(&crate::entity::FieldInfo) -> bool,
) -> QueryResult<()> {
    for (n, field) in T::FIELDS.iter().filter(|f| include(f)).enumerate() {
        if n > 0 {
            out.push_sql(", ");
        }
        out.push_identifier(field.column)?;
    }
    Ok(())
}

/// What every statement type here needs besides `QueryFragment`: a query id that says "no
/// static id" (the SQL text depends on the rows: Diesel caches by text), and `RunQueryDsl`;
/// statements that return rows also get `Query` with rows read by column name.
macro_rules! statement {
    ($($name:ident),* $(; returning $($loads:ident),*)?) => {
        $(
            impl<T: Entity> QueryId for $name<'_, T> {
                type QueryId = ();
                const HAS_STATIC_QUERY_ID: bool = false;
            }

            impl<T: Entity, C> RunQueryDsl<C> for $name<'_, T> {}
        )*
        $($(
            impl<T: Entity> Query for $loads<'_, T> {
                type SqlType = Untyped;
            }
        )*)?
    };
}

statement!(InsertRows, DeleteRows, SelectByKey);

impl<T: Entity> Query for SelectByKey<'_, T> {
    type SqlType = EntityColumns;
}

/// Keeps a statement binding more than [`MAX_CACHED_BATCH_BINDS`] values out of Diesel's
/// prepared-statement cache, unless it is `full` (every full batch has the same text).
pub(super) fn cache_if_small<DB: Backend>(out: &mut AstPass<'_, '_, DB>, binds: usize, full: bool) {
    if !full && binds > MAX_CACHED_BATCH_BINDS {
        out.unsafe_to_cache_prepared();
    }
}

/// `INSERT INTO t (cols) VALUES (...), (...)`: rows without generated values to read back.
pub(crate) struct InsertRows<'a, T>(pub &'a [&'a T]);

impl<T: Persist<DB>, DB: Dialect> QueryFragment<DB> for InsertRows<'_, T> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let full = self.0.len() == rows_per_insert::<T, DB>();
        cache_if_small(&mut out, self.0.len() * insert_width::<T>(), full);
        walk_insert(self.0, false, out)
    }
}

/// `INSERT INTO t (cols) VALUES (...), (...) [RETURNING generated cols]`.
pub(super) fn walk_insert<'b, T: Persist<DB>, DB: Dialect>(
    rows: &'b [&'b T],
    returning: bool,
    mut out: AstPass<'_, 'b, DB>,
) -> QueryResult<()> {
    out.push_sql("INSERT INTO ");
    T::walk_table(out.reborrow())?;
    if insert_width::<T>() == 0 {
        out.push_sql(" ");
        DB::push_default_values(out.reborrow(), rows.len())?;
    } else {
        out.push_sql(" (");
        push_columns::<T, DB>(&mut out, |f| !f.generated)?;
        out.push_sql(") VALUES ");
        for (row_index, row) in rows.iter().enumerate() {
            out.push_sql(if row_index == 0 { "(" } else { ", (" });
            walk_inserted_values(*row, &mut out)?;
            out.push_sql(")");
        }
    }
    if returning {
        out.push_sql(" RETURNING ");
        push_columns::<T, DB>(&mut out, |f| f.generated)?;
    }
    Ok(())
}

/// Binds the values an INSERT writes for `row`: every field the database does not generate.
pub(super) fn walk_inserted_values<'b, T: Persist<DB>, DB: Backend>(
    row: &'b T,
    out: &mut AstPass<'_, 'b, DB>,
) -> QueryResult<()> {
    let mut first = true;
    for (index, _) in T::FIELDS.iter().enumerate().filter(|(_, f)| !f.generated) {
        if !first {
            out.push_sql(", ");
        }
        first = false;
        row.walk_field(index, out.reborrow())?;
    }
    Ok(())
}

/// A row returned by `INSERT ... RETURNING`: the generated values of one entity.
pub(crate) struct ReturnedRow<T: Entity>(pub T::Generated);

impl<T: Persist<DB>, DB: Backend> QueryableByName<DB> for ReturnedRow<T> {
    fn build<'a>(row: &impl NamedRow<'a, DB>) -> diesel::deserialize::Result<Self> {
        T::read_generated(row).map(ReturnedRow)
    }
}

/// `UPDATE t SET <changes> WHERE <key> [AND <version>]` for one row: the SET list binds the
/// values to write, the WHERE clause the persisted ones (the persisted version, for the check).
pub(super) fn walk_update_one<'b, T: Persist<DB>, DB: Backend>(
    written: &'b T,
    persisted: &'b T,
    fields: FieldSet,
    mut out: AstPass<'_, 'b, DB>,
) -> QueryResult<()> {
    out.push_sql("UPDATE ");
    T::walk_table(out.reborrow())?;
    out.push_sql(" SET ");
    walk_changes(written, fields, &mut out)?;
    out.push_sql(" WHERE ");
    walk_key_match(persisted, out.reborrow())
}

/// `DELETE FROM t WHERE k IN (...)`, or `WHERE (k1 = ? AND k2 = ?) OR ...` for composite keys
/// and versioned rows.
pub(crate) struct DeleteRows<'a, T>(pub &'a [&'a T]);

impl<T: Persist<DB>, DB: Backend> QueryFragment<DB> for DeleteRows<'_, T> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        cache_if_small(&mut out, self.0.len() * key_width::<T>(), false);
        out.push_sql("DELETE FROM ");
        T::walk_table(out.reborrow())?;
        out.push_sql(" WHERE ");
        walk_rows_match(self.0.iter().copied(), &mut out)
    }
}

/// `SELECT <persisted columns> FROM t WHERE <key>`.
pub(crate) struct SelectByKey<'a, T: Entity>(pub &'a T::Key);

impl<T: Persist<DB>, DB: Backend> QueryFragment<DB> for SelectByKey<'_, T> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("SELECT ");
        push_columns::<T, DB>(&mut out, |_| true)?;
        out.push_sql(" FROM ");
        T::walk_table(out.reborrow())?;
        out.push_sql(" WHERE ");
        for (part, field) in T::FIELDS.iter().filter(|f| f.key).enumerate() {
            if part > 0 {
                out.push_sql(" AND ");
            }
            out.push_identifier(field.column)?;
            out.push_sql(" = ");
            T::walk_key(self.0, part, out.reborrow())?;
        }
        Ok(())
    }
}

/// A whole entity read from a row of a statement selecting its [`EntityColumns`], by position.
pub(crate) struct LoadedRow<T>(pub T);

impl<T: Load<DB>, DB: Backend> FromSqlRow<EntityColumns, DB> for LoadedRow<T> {
    fn build_from_row<'a>(row: &impl Row<'a, DB>) -> diesel::deserialize::Result<Self> {
        T::from_row(row).map(LoadedRow)
    }
}

/// `INSERT INTO t (cols) VALUES (...) RETURNING <generated cols>`: one row, so the returned
/// values are that row's, whatever the database's order of rows or of keys.
///
/// Its SQL text depends only on `T` (and the backend), so it has a static query id: Diesel
/// caches it by type and does not rebuild the text for every row.
pub(crate) struct InsertOne<'a, T>(pub &'a T);

impl<T: Entity> QueryId for InsertOne<'_, T> {
    type QueryId = InsertOne<'static, T>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<T: Entity, C> RunQueryDsl<C> for InsertOne<'_, T> {}

impl<T: Entity> Query for InsertOne<'_, T> {
    type SqlType = Untyped;
}

impl<T: Persist<DB>, DB: Dialect> QueryFragment<DB> for InsertOne<'_, T> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        walk_insert(std::slice::from_ref(&self.0), true, out)
    }
}

/// `SELECT <persisted columns> FROM child WHERE fk IN (..) ORDER BY <key>`, or `(fk1, fk2) IN
/// ((..), ..)` for a foreign key of several fields: the children of many parents at once (one
/// level of an aggregate).
pub(crate) struct SelectChildren<'a, C, P: Entity> {
    /// The child's foreign key fields, in the order of the parent's key.
    pub foreign_key: &'static [usize],
    pub parents: &'a [P::Key],
    pub child: std::marker::PhantomData<fn() -> C>,
}

impl<C, P: Entity> QueryId for SelectChildren<'_, C, P> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<C, P: Entity, Conn> RunQueryDsl<Conn> for SelectChildren<'_, C, P> {}

impl<C, P: Entity> Query for SelectChildren<'_, C, P> {
    type SqlType = EntityColumns;
}

impl<C: Persist<DB>, P: Persist<DB>, DB: Backend> QueryFragment<DB> for SelectChildren<'_, C, P> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        cache_if_small(&mut out, self.parents.len() * self.foreign_key.len(), false);
        let column = |i: &usize| C::FIELDS.get(*i).map(|f| f.column);
        let columns: Vec<&str> = self.foreign_key.iter().filter_map(column).collect();
        out.push_sql("SELECT ");
        push_columns::<C, DB>(&mut out, |_| true)?;
        out.push_sql(" FROM ");
        C::walk_table(out.reborrow())?;
        out.push_sql(" WHERE ");
        let several = columns.len() > 1;
        if several {
            out.push_sql("(");
        }
        for (n, name) in columns.iter().enumerate() {
            if n > 0 {
                out.push_sql(", ");
            }
            out.push_identifier(name)?;
        }
        out.push_sql(if several { ") IN (" } else { " IN (" });
        for (row, key) in self.parents.iter().enumerate() {
            if row > 0 {
                out.push_sql(", ");
            }
            if several {
                out.push_sql("(");
            }
            for part in 0..columns.len() {
                if part > 0 {
                    out.push_sql(", ");
                }
                P::walk_key(key, part, out.reborrow())?;
            }
            if several {
                out.push_sql(")");
            }
        }
        out.push_sql(") ORDER BY ");
        push_columns::<C, DB>(&mut out, |f| f.key)
    }
}
