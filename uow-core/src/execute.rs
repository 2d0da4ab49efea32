//! The execute layer: the statements a plan sends, built with Diesel's query builder.
//!
//! Every statement here is a Diesel [`QueryFragment`]: table and column names go through
//! `push_identifier` (quoted by the backend), every value through `push_bind_param`. No value
//! is ever formatted into SQL text. Backend differences (RETURNING, LAST_INSERT_ID, bind
//! parameter limits) live in [`Dialect`] and nowhere else.

use diesel::backend::Backend;
use diesel::connection::LoadConnection;
use diesel::query_builder::{AsChangeset, AstPass, Query, QueryFragment, QueryId};
use diesel::query_dsl::RunQueryDsl;
use diesel::row::NamedRow;
use diesel::sql_types::Untyped;
use diesel::QueryResult;

use crate::entity::{Entity, FieldSet, Load, Persist};

/// What differs between Diesel backends when writing entities. Implemented for every backend
/// whose cargo feature is on; sealed.
pub trait Dialect: Backend + Sized + sealed::Sealed + 'static {
    /// The backend's name, for messages.
    const NAME: &'static str;
    /// The most bind parameters one statement may carry.
    const MAX_BIND_PARAMS: usize;

    /// Inserts `rows` in one statement and returns the generated values of each row, in the
    /// order of `rows`.
    #[doc(hidden)]
    fn insert_returning<T, C>(conn: &mut C, rows: &[&T]) -> QueryResult<Vec<T::Generated>>
    where
        T: Persist<Self>,
        C: LoadConnection<Backend = Self>;

    /// How many rows with generated fields one INSERT may carry on this backend (1 when the
    /// generated values could not be matched to their rows otherwise).
    #[doc(hidden)]
    fn generated_rows_per_insert<T: Entity>() -> usize;

    /// `DEFAULT VALUES` or the backend's equivalent, for a table with nothing to insert.
    #[doc(hidden)]
    fn push_default_values(out: AstPass<'_, '_, Self>);
}

mod sealed {
    pub trait Sealed {}
}

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
        let mut first = true;
        for index in self.fields.iter() {
            if !first {
                out.push_sql(", ");
            }
            first = false;
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
            self.entity.walk_field(index, out.reborrow())?;
        }
        Ok(())
    }

    fn is_noop(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(self.fields.is_empty())
    }
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
    let mut first = true;
    for (index, field) in T::FIELDS
        .iter()
        .enumerate()
        .filter(|(_, f)| f.key || f.version)
    {
        if !first {
            out.push_sql(" AND ");
        }
        first = false;
        out.push_identifier(field.column)?;
        out.push_sql(" = ");
        entity.walk_field(index, out.reborrow())?;
    }
    Ok(())
}

/// Writes `"a", "b", ...`: the columns of the fields `include` picks, in field order.
fn push_columns<T: Entity, DB: Backend>(
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

fn key_width<T: Entity>() -> usize {
    T::FIELDS.iter().filter(|f| f.key).count()
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

statement!(InsertRows, UpdateRow, DeleteRows, SelectByKey; returning InsertRows, SelectByKey);

/// Number of columns an INSERT of `T` binds per row.
pub(crate) fn insert_width<T: Entity>() -> usize {
    T::FIELDS.iter().filter(|f| !f.generated).count()
}

/// Batches binding more values than this are kept out of Diesel's prepared-statement cache.
///
/// The cache is keyed by SQL text and never evicts, and a batch's text depends on its row
/// count, so caching every batch would keep one prepared statement per distinct batch size
/// (megabytes for a batch of thousands of rows) for the connection's lifetime. Small batches,
/// the usual commit, stay cached; Diesel keeps its own `Vec` batch inserts out of the cache
/// altogether.
pub(crate) const MAX_CACHED_BATCH_BINDS: usize = 256;

/// The most rows one INSERT carries (fewer when the bind-parameter limit says so).
///
/// Full batches all have the same SQL text, so they share one cached prepared statement: a
/// database parses a 10,000-row INSERT anew each time, and that parse is a large part of its
/// cost (a third on SQLite); batches of this size cost a few round trips more on a server and
/// save the parse. Only the last, shorter batch of a commit has a text of its own.
pub(crate) const MAX_ROWS_PER_INSERT: usize = 1000;

/// `INSERT INTO t (cols) VALUES (...), (...) [RETURNING generated cols]`.
pub(crate) struct InsertRows<'a, T> {
    rows: &'a [&'a T],
    returning: bool,
}

impl<'a, T: Entity> InsertRows<'a, T> {
    pub(crate) fn new(rows: &'a [&'a T], returning: bool) -> Self {
        InsertRows { rows, returning }
    }
}

impl<T, DB> QueryFragment<DB> for InsertRows<'_, T>
where
    DB: Dialect,
    T: Persist<DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        // A full batch has the one shape every full batch shares: cache it. Other large
        // batches (a commit's remainder) would each leave a statement of their own behind.
        let full = self.rows.len() == rows_per_insert::<T, DB>();
        if !full && self.rows.len() * insert_width::<T>() > MAX_CACHED_BATCH_BINDS {
            out.unsafe_to_cache_prepared();
        }
        out.push_sql("INSERT INTO ");
        T::walk_table(out.reborrow())?;
        if insert_width::<T>() == 0 {
            out.push_sql(" ");
            DB::push_default_values(out.reborrow());
        } else {
            out.push_sql(" (");
            push_columns::<T, DB>(&mut out, |f| !f.generated)?;
            out.push_sql(") VALUES ");
            for (row_index, row) in self.rows.iter().enumerate() {
                out.push_sql(if row_index == 0 { "(" } else { ", (" });
                let mut first = true;
                for (index, _) in T::FIELDS.iter().enumerate().filter(|(_, f)| !f.generated) {
                    if !first {
                        out.push_sql(", ");
                    }
                    first = false;
                    row.walk_field(index, out.reborrow())?;
                }
                out.push_sql(")");
            }
        }
        if self.returning {
            out.push_sql(" RETURNING ");
            push_columns::<T, DB>(&mut out, |f| f.generated)?;
        }
        Ok(())
    }
}

/// A row returned by `INSERT ... RETURNING`: the generated values of one entity.
pub(crate) struct ReturnedRow<T: Entity>(pub T::Generated);

impl<T, DB> diesel::deserialize::QueryableByName<DB> for ReturnedRow<T>
where
    DB: Backend,
    T: Persist<DB>,
{
    fn build<'a>(row: &impl NamedRow<'a, DB>) -> diesel::deserialize::Result<Self> {
        T::read_generated(row).map(ReturnedRow)
    }
}

/// `UPDATE t SET <changes> WHERE <key> [AND <version>]`: the SET list binds the values to
/// write, the WHERE clause the persisted ones (the persisted version, for the check).
pub(crate) struct UpdateRow<'a, T> {
    changes: Changes<'a, T>,
    persisted: &'a T,
}

impl<'a, T: Entity> UpdateRow<'a, T> {
    pub(crate) fn new(entity: &'a T, persisted: &'a T, fields: FieldSet) -> Self {
        UpdateRow {
            changes: Changes::new(entity, fields),
            persisted,
        }
    }
}

impl<T, DB> QueryFragment<DB> for UpdateRow<'_, T>
where
    DB: Backend,
    T: Persist<DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("UPDATE ");
        T::walk_table(out.reborrow())?;
        out.push_sql(" SET ");
        self.changes.walk_ast(out.reborrow())?;
        out.push_sql(" WHERE ");
        walk_key_match(self.persisted, out.reborrow())
    }
}

/// `DELETE FROM t WHERE k IN (...)`, or `WHERE (k1 = ? AND k2 = ?) OR ...` for composite keys.
pub(crate) struct DeleteRows<'a, T> {
    rows: &'a [&'a T],
}

impl<'a, T: Entity> DeleteRows<'a, T> {
    pub(crate) fn new(rows: &'a [&'a T]) -> Self {
        DeleteRows { rows }
    }
}

impl<T, DB> QueryFragment<DB> for DeleteRows<'_, T>
where
    DB: Backend,
    T: Persist<DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        if self.rows.len() * key_width::<T>() > MAX_CACHED_BATCH_BINDS {
            out.unsafe_to_cache_prepared();
        }
        out.push_sql("DELETE FROM ");
        T::walk_table(out.reborrow())?;
        out.push_sql(" WHERE ");
        if key_width::<T>() == 1 && T::version_field().is_none() {
            let (index, field) = T::FIELDS.iter().enumerate().find(|(_, f)| f.key).ok_or(
                diesel::result::Error::QueryBuilderError("entity has no key field".into()),
            )?;
            out.push_identifier(field.column)?;
            out.push_sql(" IN (");
            for (row_index, row) in self.rows.iter().enumerate() {
                if row_index > 0 {
                    out.push_sql(", ");
                }
                row.walk_field(index, out.reborrow())?;
            }
            out.push_sql(")");
        } else {
            for (row_index, row) in self.rows.iter().enumerate() {
                out.push_sql(if row_index == 0 { "(" } else { " OR (" });
                walk_key_match(*row, out.reborrow())?;
                out.push_sql(")");
            }
        }
        Ok(())
    }
}

/// `SELECT <persisted columns> FROM t WHERE <key>`.
pub(crate) struct SelectByKey<'a, T: Entity> {
    key: &'a T::Key,
}

impl<'a, T: Entity> SelectByKey<'a, T> {
    pub(crate) fn new(key: &'a T::Key) -> Self {
        SelectByKey { key }
    }
}

impl<T, DB> QueryFragment<DB> for SelectByKey<'_, T>
where
    DB: Backend,
    T: Persist<DB>,
{
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
            T::walk_key(self.key, part, out.reborrow())?;
        }
        Ok(())
    }
}

/// A whole entity read from a row.
pub(crate) struct LoadedRow<T>(pub T);

impl<T, DB> diesel::deserialize::QueryableByName<DB> for LoadedRow<T>
where
    DB: Backend,
    T: Load<DB>,
{
    fn build<'a>(row: &impl NamedRow<'a, DB>) -> diesel::deserialize::Result<Self> {
        T::from_row(row).map(LoadedRow)
    }
}

/// Reads the row with key `key`, if there is one.
pub(crate) fn select_by_key<T, C>(conn: &mut C, key: &T::Key) -> QueryResult<Option<T>>
where
    C: LoadConnection,
    C::Backend: 'static,
    T: Load<C::Backend>,
{
    let mut rows: Vec<LoadedRow<T>> = SelectByKey::<T>::new(key).load(conn)?;
    Ok(rows.pop().map(|r| r.0))
}

/// Rows of `T` one INSERT may carry on `DB`.
pub(crate) fn rows_per_insert<T: Entity, DB: Dialect>() -> usize {
    let width = insert_width::<T>();
    if width == 0 {
        // `DEFAULT VALUES` inserts exactly one row.
        return 1;
    }
    let by_binds = rows_per_statement(width, DB::MAX_BIND_PARAMS, MAX_ROWS_PER_INSERT);
    if T::FIELDS.iter().any(|f| f.generated) {
        by_binds.min(DB::generated_rows_per_insert::<T>())
    } else {
        by_binds
    }
}

/// Rows of `T` one DELETE may carry on `DB`: one per statement for version-checked rows, so a
/// row that fails its check is known exactly.
pub(crate) fn rows_per_delete<T: Entity, DB: Dialect>() -> usize {
    if T::version_field().is_some() {
        return 1;
    }
    let width = key_width::<T>();
    let cap = if width > 1 {
        MAX_ROWS_PER_OR_DELETE
    } else {
        usize::MAX
    };
    rows_per_statement(width, DB::MAX_BIND_PARAMS, cap)
}

/// The most rows one composite-key DELETE (`(k1 = ? AND k2 = ?) OR ...`) carries.
///
/// SQLite parses an OR chain into a left-deep tree, one level per OR, and refuses a tree
/// deeper than `SQLITE_MAX_EXPR_DEPTH` (1,000 by default: "Expression tree is too large").
/// 500 rows stay at half that depth, leaving room for each row's AND group and the rest of
/// the statement; PostgreSQL and MySQL flatten OR chains, so the cap costs them only a few
/// more round trips on very large deletes.
pub(crate) const MAX_ROWS_PER_OR_DELETE: usize = 500;

/// Rows one statement binding `width` values per row may carry: as many as `bind_limit`
/// allows, at most `row_cap`, and at least one (a row wider than the limit still has to go,
/// and gets the database's own error).
pub(crate) fn rows_per_statement(width: usize, bind_limit: usize, row_cap: usize) -> usize {
    (bind_limit / width.max(1)).clamp(1, row_cap.max(1))
}

#[cfg(test)]
mod rows_per_statement_tests {
    use super::{rows_per_statement, MAX_ROWS_PER_INSERT, MAX_ROWS_PER_OR_DELETE};

    #[test]
    fn the_row_cap_wins_for_narrow_rows() {
        assert_eq!(rows_per_statement(3, 32766, MAX_ROWS_PER_INSERT), 1000);
        assert_eq!(rows_per_statement(3, 65535, MAX_ROWS_PER_INSERT), 1000);
        assert_eq!(rows_per_statement(2, 32766, MAX_ROWS_PER_OR_DELETE), 500);
    }

    #[test]
    fn the_bind_limit_wins_for_wide_rows() {
        // 40 columns: 32766 / 40 = 819 rows on SQLite, 65535 / 40 = 1638 capped to 1,000.
        assert_eq!(rows_per_statement(40, 32766, MAX_ROWS_PER_INSERT), 819);
        assert_eq!(rows_per_statement(40, 65535, MAX_ROWS_PER_INSERT), 1000);
        assert_eq!(rows_per_statement(100, 65535, MAX_ROWS_PER_INSERT), 655);
        // A single-column key list has no cap but the bind limit.
        assert_eq!(rows_per_statement(1, 32766, usize::MAX), 32766);
    }

    #[test]
    fn never_fewer_than_one_row() {
        assert_eq!(rows_per_statement(40_000, 32766, MAX_ROWS_PER_INSERT), 1);
        assert_eq!(rows_per_statement(0, 10, 5), 5);
        assert_eq!(rows_per_statement(3, 30, 0), 1);
    }
}

/// Orders generated values returned by a multi-row INSERT to match the rows: by the generated
/// key when there is one (databases assign keys in VALUES order, but RETURNING does not
/// promise to return rows in that order).
pub(crate) fn order_returned<T: Entity>(mut returned: Vec<T::Generated>) -> Vec<T::Generated> {
    let order = |g: &T::Generated| T::generated_key_order(g).unwrap_or(0);
    // Databases return rows in VALUES order in practice: check (no allocation) before sorting.
    if returned.len() > 1 && !returned.is_sorted_by_key(order) {
        returned.sort_by_cached_key(order);
    }
    returned
}

/// Runs `INSERT ... RETURNING` (PostgreSQL, SQLite) and orders the returned values by key.
pub(crate) fn insert_with_returning<T, C>(
    conn: &mut C,
    rows: &[&T],
) -> QueryResult<Vec<T::Generated>>
where
    C: LoadConnection,
    C::Backend: Dialect,
    T: Persist<C::Backend>,
{
    let returned: Vec<ReturnedRow<T>> = InsertRows::new(rows, true).load(conn)?;
    Ok(order_returned::<T>(
        returned.into_iter().map(|r| r.0).collect(),
    ))
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use diesel::sqlite::Sqlite;

    impl sealed::Sealed for Sqlite {}

    impl Dialect for Sqlite {
        const NAME: &'static str = "SQLite";
        // SQLITE_MAX_VARIABLE_NUMBER of the bundled SQLite (3.32 and later).
        const MAX_BIND_PARAMS: usize = 32766;

        fn insert_returning<T, C>(conn: &mut C, rows: &[&T]) -> QueryResult<Vec<T::Generated>>
        where
            T: Persist<Self>,
            C: LoadConnection<Backend = Self>,
        {
            insert_with_returning(conn, rows)
        }

        fn generated_rows_per_insert<T: Entity>() -> usize {
            // Rows can be matched to their generated values only through an ordered key.
            if T::FIELDS.iter().any(|f| f.key && f.generated) {
                usize::MAX
            } else {
                1
            }
        }

        fn push_default_values(mut out: AstPass<'_, '_, Self>) {
            out.push_sql("DEFAULT VALUES");
        }
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use diesel::pg::Pg;

    impl sealed::Sealed for Pg {}

    impl Dialect for Pg {
        const NAME: &'static str = "PostgreSQL";
        const MAX_BIND_PARAMS: usize = 65535;

        fn insert_returning<T, C>(conn: &mut C, rows: &[&T]) -> QueryResult<Vec<T::Generated>>
        where
            T: Persist<Self>,
            C: LoadConnection<Backend = Self>,
        {
            insert_with_returning(conn, rows)
        }

        fn generated_rows_per_insert<T: Entity>() -> usize {
            if T::FIELDS.iter().any(|f| f.key && f.generated) {
                usize::MAX
            } else {
                1
            }
        }

        fn push_default_values(mut out: AstPass<'_, '_, Self>) {
            out.push_sql("DEFAULT VALUES");
        }
    }
}

#[cfg(feature = "mysql")]
mod mysql {
    use super::*;
    use diesel::mysql::Mysql;

    use diesel::dsl::sql;
    use diesel::sql_types::BigInt;

    impl sealed::Sealed for Mysql {}

    /// Whether InnoDB gives the rows of one multi-row INSERT consecutive ids:
    /// lock modes 0 ("traditional") and 1 ("consecutive") do; 2 ("interleaved") does not.
    pub(super) fn multi_row_ids_are_consecutive(lock_mode: i64) -> bool {
        matches!(lock_mode, 0 | 1)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn interleaved_lock_mode_falls_back_to_one_row_per_insert() {
            assert!(super::multi_row_ids_are_consecutive(0));
            assert!(super::multi_row_ids_are_consecutive(1));
            assert!(!super::multi_row_ids_are_consecutive(2));
        }
    }

    diesel::define_sql_function! {
        /// MySQL's id of the first row of the last INSERT on this connection.
        fn last_insert_id() -> diesel::sql_types::Unsigned<diesel::sql_types::BigInt>;
    }

    impl Dialect for Mysql {
        const NAME: &'static str = "MySQL";
        const MAX_BIND_PARAMS: usize = 65535;

        fn insert_returning<T, C>(conn: &mut C, rows: &[&T]) -> QueryResult<Vec<T::Generated>>
        where
            T: Persist<Self>,
            C: LoadConnection<Backend = Self>,
        {
            // LAST_INSERT_ID gives the first id of a multi-row INSERT; the others follow it
            // only under the "traditional" or "consecutive" auto-increment lock modes.
            let increment = if rows.len() > 1 {
                let (lock_mode, increment): (i64, i64) = diesel::select((
                    sql::<BigInt>("CAST(@@innodb_autoinc_lock_mode AS SIGNED)"),
                    sql::<BigInt>("CAST(@@auto_increment_increment AS SIGNED)"),
                ))
                .get_result(conn)?;
                if !multi_row_ids_are_consecutive(lock_mode) {
                    let mut generated = Vec::with_capacity(rows.len());
                    for row in rows {
                        generated.extend(Self::insert_returning(conn, std::slice::from_ref(row))?);
                    }
                    return Ok(generated);
                }
                u64::try_from(increment).unwrap_or(1).max(1)
            } else {
                1
            };
            let inserted = InsertRows::new(rows, false).execute(conn)?;
            if inserted != rows.len() {
                return Err(diesel::result::Error::QueryBuilderError(
                    format!("INSERT affected {inserted} rows, expected {}", rows.len()).into(),
                ));
            }
            let first: u64 = diesel::select(last_insert_id()).get_result(conn)?;
            (0..rows.len() as u64)
                .map(|offset| {
                    T::generated_from_insert_id(first + offset * increment).ok_or_else(|| {
                        diesel::result::Error::QueryBuilderError(
                            format!(
                                "{}: MySQL reports only the AUTO_INCREMENT key through \
                                 LAST_INSERT_ID; other generated fields are not supported on \
                                 MySQL: drop `generated` from them and set them in Rust",
                                T::ENTITY_NAME
                            )
                            .into(),
                        )
                    })
                })
                .collect()
        }

        fn generated_rows_per_insert<T: Entity>() -> usize {
            // Only an AUTO_INCREMENT key can be read back (through LAST_INSERT_ID).
            let only_key_generated = T::FIELDS.iter().all(|f| !f.generated || f.key);
            if only_key_generated {
                usize::MAX
            } else {
                1
            }
        }

        fn push_default_values(mut out: AstPass<'_, '_, Self>) {
            out.push_sql("() VALUES ()");
        }
    }
}
