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

    /// Inserts `rows`, entities without generated fields (one statement unless the backend
    /// must cut it), and says how many rows and statements that took.
    #[doc(hidden)]
    fn insert_rows<T, C>(conn: &mut C, session: &mut Session, rows: &[&T]) -> QueryResult<Sent>
    where
        T: Persist<Self>,
        C: LoadConnection<Backend = Self>,
    {
        let _ = session;
        let rows = InsertRows::new(rows).execute(conn)?;
        Ok(Sent {
            rows,
            statements: 1,
        })
    }

    /// Inserts `rows`, entities with generated fields, and returns the generated values of
    /// each row in the order of `rows`, and how many statements it sent. A row whose values
    /// cannot be matched to it with certainty is left out, so the caller sees fewer values
    /// than rows and refuses the commit: a guess could give an entity another row's key.
    #[doc(hidden)]
    fn insert_returning<T, C>(
        conn: &mut C,
        session: &mut Session,
        rows: &[&T],
    ) -> QueryResult<Inserted<T>>
    where
        T: Persist<Self>,
        C: LoadConnection<Backend = Self>;

    /// Rows with generated fields one INSERT statement carries on this backend (1 when the
    /// generated values could not be matched to their rows otherwise).
    #[doc(hidden)]
    fn generated_rows_per_statement<T: Entity>() -> usize;

    /// Bind parameters an INSERT of `T` with generated fields carries per row, and once per
    /// statement.
    #[doc(hidden)]
    fn generated_insert_binds<T: Entity>() -> (usize, usize) {
        (insert_width::<T>(), 0)
    }

    /// `DEFAULT VALUES` or the backend's equivalent, for a table with nothing to insert.
    #[doc(hidden)]
    fn push_default_values(out: AstPass<'_, '_, Self>);
}

/// What one write has learnt about its connection's server, asked for at most once per write
/// and only where a backend needs it (MySQL's auto-increment lock mode and step, and its
/// packet size).
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Session {
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    server: Option<ServerFacts>,
}

#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
struct ServerFacts {
    autoinc_lock_mode: i64,
    auto_increment_increment: u64,
    max_allowed_packet: u64,
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

statement!(InsertRows, UpdateRow, DeleteRows, SelectByKey; returning SelectByKey);

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

/// `INSERT INTO t (cols) VALUES (...), (...)`: rows without generated values to read back.
pub(crate) struct InsertRows<'a, T> {
    rows: &'a [&'a T],
}

impl<'a, T: Entity> InsertRows<'a, T> {
    pub(crate) fn new(rows: &'a [&'a T]) -> Self {
        InsertRows { rows }
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
        walk_insert(self.rows, false, out)
    }
}

/// `INSERT INTO t (cols) VALUES (...), (...) [RETURNING generated cols]`.
fn walk_insert<'b, T, DB>(
    rows: &'b [&'b T],
    returning: bool,
    mut out: AstPass<'_, 'b, DB>,
) -> QueryResult<()>
where
    DB: Dialect,
    T: Persist<DB>,
{
    out.push_sql("INSERT INTO ");
    T::walk_table(out.reborrow())?;
    if insert_width::<T>() == 0 {
        out.push_sql(" ");
        DB::push_default_values(out.reborrow());
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
fn walk_inserted_values<'b, T, DB>(row: &'b T, out: &mut AstPass<'_, 'b, DB>) -> QueryResult<()>
where
    DB: Backend,
    T: Persist<DB>,
{
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

/// Rows of `T` one INSERT step carries on `DB`: as many as the bind limit allows, at most
/// [`MAX_ROWS_PER_INSERT`]. A backend may send a step with generated fields in several
/// statements ([`Dialect::generated_rows_per_statement`]).
pub(crate) fn rows_per_insert<T: Entity, DB: Dialect>() -> usize {
    let width = insert_width::<T>();
    if !T::FIELDS.iter().any(|f| f.generated) {
        if width == 0 {
            // `DEFAULT VALUES` inserts exactly one row.
            return 1;
        }
        return rows_per_statement(width, DB::MAX_BIND_PARAMS, MAX_ROWS_PER_INSERT);
    }
    let (per_row, fixed) = DB::generated_insert_binds::<T>();
    let by_binds = rows_per_statement(
        per_row,
        DB::MAX_BIND_PARAMS.saturating_sub(fixed),
        MAX_ROWS_PER_INSERT,
    );
    if per_row == 0 {
        by_binds.min(DB::generated_rows_per_statement::<T>())
    } else {
        by_binds
    }
}

/// Statements an INSERT step of `rows` rows of `T` takes on `DB`.
pub(crate) fn insert_statements<T: Entity, DB: Dialect>(rows: usize) -> usize {
    if T::FIELDS.iter().any(|f| f.generated) {
        rows.div_ceil(DB::generated_rows_per_statement::<T>().max(1))
    } else {
        usize::from(rows > 0)
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

/// `INSERT INTO t (cols) VALUES (...) RETURNING <generated cols>`: one row, so the returned
/// values are that row's, whatever the database's order of rows or of keys.
///
/// Its SQL text depends only on `T` (and the backend), so it has a static query id: Diesel
/// caches it by type and does not rebuild the text for every row.
pub(crate) struct InsertOne<'a, T> {
    row: &'a T,
}

impl<T: Entity> QueryId for InsertOne<'_, T> {
    type QueryId = InsertOne<'static, T>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<T: Entity, C> RunQueryDsl<C> for InsertOne<'_, T> {}

impl<T: Entity> Query for InsertOne<'_, T> {
    type SqlType = Untyped;
}

impl<T, DB> QueryFragment<DB> for InsertOne<'_, T>
where
    DB: Dialect,
    T: Persist<DB>,
{
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        walk_insert(std::slice::from_ref(&self.row), true, out)
    }
}

/// Inserts `rows` one statement each, reading each row's generated values from its own
/// `RETURNING` (PostgreSQL, SQLite).
pub(crate) fn insert_one_by_one<T, C>(conn: &mut C, rows: &[&T]) -> QueryResult<Inserted<T>>
where
    C: LoadConnection,
    C::Backend: Dialect,
    T: Persist<C::Backend>,
{
    let mut generated = Vec::with_capacity(rows.len());
    for row in rows {
        let mut returned: Vec<ReturnedRow<T>> = InsertOne { row: *row }.load(conn)?;
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

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
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
        fn insert_returning<T, C>(
            conn: &mut C,
            _: &mut Session,
            rows: &[&T],
        ) -> QueryResult<Inserted<T>>
        where
            T: Persist<Self>,
            C: LoadConnection<Backend = Self>,
        {
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
            let largest =
                MaxRowid::<T>(std::marker::PhantomData).get_result::<Option<i64>>(conn)?;
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
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use diesel::pg::{Pg, PgQueryBuilder};
    use diesel::query_builder::QueryBuilder;
    use diesel::sql_types::{Integer, Nullable, Text};

    impl sealed::Sealed for Pg {}

    impl Dialect for Pg {
        const NAME: &'static str = "PostgreSQL";
        const MAX_BIND_PARAMS: usize = 65535;

        /// A generated key: one statement per batch that takes the keys from the key's
        /// sequence itself ([`InsertAllocatingKeys`]), so each row's key is known before it is
        /// inserted. A key with no sequence of its own (a default expression, a trigger), or
        /// generated fields besides a key chosen in Rust: one statement per row.
        fn insert_returning<T, C>(
            conn: &mut C,
            _: &mut Session,
            rows: &[&T],
        ) -> QueryResult<Inserted<T>>
        where
            T: Persist<Self>,
            C: LoadConnection<Backend = Self>,
        {
            if !key_is_generated::<T>() || rows.is_empty() {
                return insert_one_by_one(conn, rows);
            }
            let statement = InsertAllocatingKeys::new(rows)?;
            let returned: Vec<NumberedRow<T>> = statement.load(conn)?;
            if returned.is_empty() {
                // The statement inserts nothing when the key owns no sequence.
                let mut inserted = insert_one_by_one(conn, rows)?;
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

        fn generated_rows_per_statement<T: Entity>() -> usize {
            if key_is_generated::<T>() {
                MAX_ROWS_PER_INSERT
            } else {
                1
            }
        }

        fn generated_insert_binds<T: Entity>() -> (usize, usize) {
            if key_is_generated::<T>() {
                // Each row's number, and the table and key column names once.
                (insert_width::<T>() + 1, 2)
            } else {
                (insert_width::<T>(), 0)
            }
        }

        fn push_default_values(mut out: AstPass<'_, '_, Self>) {
            out.push_sql("DEFAULT VALUES");
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
    ///     SELECT nextval((SELECT pg_get_serial_sequence($1, $2))) AS "__uow_key", "__uow_v".*
    ///     FROM (VALUES ($3, $4, ..), ..) AS "__uow_v" ("__uow_row", "name", ..)
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
    pub(super) struct InsertAllocatingKeys<'a, T> {
        rows: &'a [&'a T],
        /// The table as a (quoted, possibly schema-qualified) name, and the key column, bound
        /// as text for `pg_get_serial_sequence`.
        table: String,
        key_column: &'static str,
        numbers: Vec<i32>,
    }

    impl<'a, T: Persist<Pg>> InsertAllocatingKeys<'a, T> {
        pub(super) fn new(rows: &'a [&'a T]) -> QueryResult<Self> {
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
            Ok(InsertAllocatingKeys {
                rows,
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
            let full = self.rows.len() == rows_per_insert::<T, Pg>();
            if !full && self.rows.len() * (insert_width::<T>() + 1) > MAX_CACHED_BATCH_BINDS {
                out.unsafe_to_cache_prepared();
            }
            out.push_sql("WITH \"__uow_rows\" AS (SELECT nextval((SELECT pg_get_serial_sequence(");
            out.push_bind_param::<Text, str>(self.table.as_str())?;
            out.push_sql(", ");
            out.push_bind_param::<Text, str>(self.key_column)?;
            out.push_sql("))) AS \"__uow_key\", \"__uow_v\".* FROM (VALUES ");
            for (index, (row, number)) in self.rows.iter().zip(&self.numbers).enumerate() {
                out.push_sql(if index == 0 { "(" } else { ", (" });
                out.push_bind_param::<Integer, i32>(number)?;
                if insert_width::<T>() > 0 {
                    out.push_sql(", ");
                    walk_inserted_values(*row, &mut out)?;
                }
                out.push_sql(")");
            }
            out.push_sql(") AS \"__uow_v\" (\"__uow_row\"");
            if insert_width::<T>() > 0 {
                out.push_sql(", ");
                push_columns::<T, Pg>(&mut out, |f| !f.generated)?;
            }
            out.push_sql(")), \"__uow_inserted\" AS (INSERT INTO ");
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
}

#[cfg(feature = "mysql")]
mod mysql {
    use super::*;
    use diesel::mysql::Mysql;
    use diesel::query_builder::bind_collector::RawBytesBindCollector;

    use diesel::dsl::sql;
    use diesel::sql_types::BigInt;

    impl sealed::Sealed for Mysql {}

    /// Whether InnoDB gives the rows of one multi-row INSERT consecutive ids:
    /// lock modes 0 ("traditional") and 1 ("consecutive") do; 2 ("interleaved") does not.
    pub(super) fn multi_row_ids_are_consecutive(lock_mode: i64) -> bool {
        matches!(lock_mode, 0 | 1)
    }

    /// Statements up to this size are sent without asking the server for its
    /// `max_allowed_packet`: it is at least 4 MiB by default on every MySQL and MariaDB
    /// (16 MiB on MariaDB 10.11, 64 MiB on MySQL 8), so only a server configured below
    /// 64 KiB could refuse them.
    const SMALL_STATEMENT_BYTES: usize = 64 << 10;

    /// Room kept in a packet for the command header and the parameter types.
    const PACKET_HEADROOM: usize = 4 << 10;

    /// What a bound value costs in the packet beyond its bytes: its type (2 bytes) and the
    /// longest length prefix (9 bytes).
    const BYTES_PER_PARAM: usize = 11;

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn interleaved_lock_mode_falls_back_to_one_row_per_insert() {
            assert!(multi_row_ids_are_consecutive(0));
            assert!(multi_row_ids_are_consecutive(1));
            assert!(!multi_row_ids_are_consecutive(2));
        }

        #[test]
        fn batches_are_cut_where_the_next_row_would_overflow_the_packet() {
            assert_eq!(cut_by_bytes(&[10, 10, 10, 10], 25), Ok(vec![2, 2]));
            assert_eq!(cut_by_bytes(&[10, 10, 10], 30), Ok(vec![3]));
            assert_eq!(cut_by_bytes(&[30, 1, 1], 30), Ok(vec![1, 2]));
            assert_eq!(cut_by_bytes(&[], 30), Ok(vec![]));
            assert_eq!(
                cut_by_bytes(&[5, 31, 1], 30),
                Err(1),
                "a row alone too large"
            );
        }
    }

    /// Cuts rows of the given sizes into consecutive groups of at most `budget` bytes each;
    /// `Err(row)` when that row alone is larger.
    pub(super) fn cut_by_bytes(sizes: &[usize], budget: usize) -> Result<Vec<usize>, usize> {
        let mut groups = Vec::new();
        let (mut count, mut bytes) = (0usize, 0usize);
        for (index, &size) in sizes.iter().enumerate() {
            if size > budget {
                return Err(index);
            }
            if count > 0 && bytes + size > budget {
                groups.push(count);
                (count, bytes) = (0, 0);
            }
            count += 1;
            bytes += size;
        }
        if count > 0 {
            groups.push(count);
        }
        Ok(groups)
    }

    diesel::define_sql_function! {
        /// MySQL's id of the first row of the last INSERT on this connection.
        fn last_insert_id() -> diesel::sql_types::Unsigned<diesel::sql_types::BigInt>;
    }

    /// The values one row binds in an INSERT, for measuring them.
    struct RowValues<'a, T>(&'a T);

    impl<T: Persist<Mysql>> QueryFragment<Mysql> for RowValues<'_, T> {
        fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Mysql>) -> QueryResult<()> {
            walk_inserted_values(self.0, &mut out)
        }
    }

    /// What `row` adds to an INSERT's packet, in bytes.
    fn row_bytes<T: Persist<Mysql>>(row: &T) -> QueryResult<usize> {
        let mut binds = RawBytesBindCollector::<Mysql>::new();
        RowValues(row).collect_binds(&mut binds, &mut (), &Mysql)?;
        Ok(binds
            .binds
            .iter()
            .map(|b| b.as_ref().map_or(0, Vec::len) + BYTES_PER_PARAM)
            .sum())
    }

    /// The server's settings a write needs, read once per write with one SELECT.
    fn facts<C: LoadConnection<Backend = Mysql>>(
        conn: &mut C,
        session: &mut Session,
    ) -> QueryResult<ServerFacts> {
        if let Some(facts) = session.server {
            return Ok(facts);
        }
        let (lock_mode, increment, packet): (i64, i64, i64) = diesel::select((
            sql::<BigInt>("CAST(@@innodb_autoinc_lock_mode AS SIGNED)"),
            sql::<BigInt>("CAST(@@auto_increment_increment AS SIGNED)"),
            sql::<BigInt>("CAST(@@max_allowed_packet AS SIGNED)"),
        ))
        .get_result(conn)?;
        let facts = ServerFacts {
            autoinc_lock_mode: lock_mode,
            auto_increment_increment: u64::try_from(increment).unwrap_or(1).max(1),
            max_allowed_packet: u64::try_from(packet).unwrap_or(u64::MAX),
        };
        session.server = Some(facts);
        Ok(facts)
    }

    /// How many rows each statement of an INSERT of `rows` carries: all of them when they fit
    /// in the server's `max_allowed_packet`, else groups that do. A statement larger than the
    /// packet makes the server drop the connection ("Server has gone away"); a row that alone
    /// does not fit is refused before anything is sent.
    fn statements_for<T, C>(
        conn: &mut C,
        session: &mut Session,
        rows: &[&T],
    ) -> QueryResult<Vec<usize>>
    where
        T: Persist<Mysql>,
        C: LoadConnection<Backend = Mysql>,
    {
        let sizes = rows
            .iter()
            .map(|row| row_bytes(*row))
            .collect::<QueryResult<Vec<usize>>>()?;
        let total: usize = sizes.iter().sum();
        if total <= SMALL_STATEMENT_BYTES {
            return Ok(vec![rows.len()]);
        }
        let packet = facts(conn, session)?.max_allowed_packet;
        let budget = usize::try_from(packet)
            .unwrap_or(usize::MAX)
            .saturating_sub(PACKET_HEADROOM);
        cut_by_bytes(&sizes, budget).map_err(|row| {
            diesel::result::Error::QueryBuilderError(
                format!(
                    "a new {entity} takes {bytes} bytes, more than one statement may carry on                      this server (max_allowed_packet = {packet}); nothing was sent: raise                      max_allowed_packet, or store less in one row",
                    entity = T::ENTITY_NAME,
                    bytes = sizes[row],
                )
                .into(),
            )
        })
    }

    impl Dialect for Mysql {
        const NAME: &'static str = "MySQL";
        const MAX_BIND_PARAMS: usize = 65535;

        fn insert_rows<T, C>(conn: &mut C, session: &mut Session, rows: &[&T]) -> QueryResult<Sent>
        where
            T: Persist<Self>,
            C: LoadConnection<Backend = Self>,
        {
            let mut sent = Sent {
                rows: 0,
                statements: 0,
            };
            let mut rest = rows;
            for count in statements_for(conn, session, rows)? {
                let (group, after) = rest.split_at(count);
                rest = after;
                sent.rows += InsertRows::new(group).execute(conn)?;
                sent.statements += 1;
            }
            Ok(sent)
        }

        /// `LAST_INSERT_ID()` after each INSERT: the key of its first row, from which the
        /// others follow. This is exact, not a guess, because of what InnoDB promises for a
        /// "simple insert" (an `INSERT .. VALUES` whose row count is known up front, which is
        /// what uow sends): under the auto-increment lock modes 0 ("traditional") and 1
        /// ("consecutive"), the values of one such statement are allocated as one consecutive
        /// series, to the rows in the order of the VALUES list. Consecutive means stepping by
        /// the session's `auto_increment_increment`, read from the same session;
        /// `auto_increment_offset` only decides where a series starts (and is ignored when
        /// larger than the increment), and `LAST_INSERT_ID()` reports that start: the first
        /// value generated by this connection's last INSERT, whatever other sessions do. So
        /// row `k` has key `first + k * increment`. Under lock mode 2 ("interleaved", which
        /// Galera requires) concurrent inserts may interleave their values: one row per
        /// statement then. A generated key on MySQL must be the table's AUTO_INCREMENT
        /// column; other generated fields cannot be read back at all (MySQL has no
        /// `RETURNING`), and are refused.
        fn insert_returning<T, C>(
            conn: &mut C,
            session: &mut Session,
            rows: &[&T],
        ) -> QueryResult<Inserted<T>>
        where
            T: Persist<Self>,
            C: LoadConnection<Backend = Self>,
        {
            let mut inserted = Inserted {
                generated: Vec::with_capacity(rows.len()),
                statements: 0,
            };
            let mut rest = rows;
            for count in statements_for(conn, session, rows)? {
                let (group, after) = rest.split_at(count);
                rest = after;
                let increment = if group.len() > 1 {
                    let facts = facts(conn, session)?;
                    if !multi_row_ids_are_consecutive(facts.autoinc_lock_mode) {
                        for row in group {
                            let one = insert_with_insert_id(conn, std::slice::from_ref(row), 1)?;
                            inserted.generated.extend(one);
                            inserted.statements += 1;
                        }
                        continue;
                    }
                    facts.auto_increment_increment
                } else {
                    1
                };
                inserted
                    .generated
                    .extend(insert_with_insert_id(conn, group, increment)?);
                inserted.statements += 1;
            }
            Ok(inserted)
        }

        fn generated_rows_per_statement<T: Entity>() -> usize {
            // Only an AUTO_INCREMENT key can be read back (through LAST_INSERT_ID).
            let only_key_generated = T::FIELDS.iter().all(|f| !f.generated || f.key);
            if only_key_generated {
                MAX_ROWS_PER_INSERT
            } else {
                1
            }
        }

        fn push_default_values(mut out: AstPass<'_, '_, Self>) {
            out.push_sql("() VALUES ()");
        }
    }

    /// One multi-row INSERT of `rows`, then `SELECT LAST_INSERT_ID()`; row `k` has key
    /// `first + k * increment` (see `insert_returning` for why).
    fn insert_with_insert_id<T, C>(
        conn: &mut C,
        rows: &[&T],
        increment: u64,
    ) -> QueryResult<Vec<T::Generated>>
    where
        T: Persist<Mysql>,
        C: LoadConnection<Backend = Mysql>,
    {
        let inserted = InsertRows::new(rows).execute(conn)?;
        if inserted != rows.len() {
            return Err(diesel::result::Error::QueryBuilderError(
                format!("INSERT affected {inserted} rows, expected {}", rows.len()).into(),
            ));
        }
        let first: u64 = diesel::select(last_insert_id()).get_result(conn)?;
        (0..rows.len() as u64)
            .map(|offset| {
                let id = offset
                    .checked_mul(increment)
                    .and_then(|step| first.checked_add(step));
                id.and_then(T::generated_from_insert_id).ok_or_else(|| {
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
}
