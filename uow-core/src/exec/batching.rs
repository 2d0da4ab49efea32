//! How many rows one statement carries: the bind-parameter limits of each backend, the row
//! caps that keep prepared statements reusable, and the arithmetic, unit-tested here.

use super::dialect::Dialect;
use crate::entity::{Entity, Persist};
use crate::plan::TableInfo;

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

/// Number of key columns (values a DELETE binds per row without a version).
pub(crate) fn key_width<T: Entity>() -> usize {
    T::FIELDS.iter().filter(|f| f.key).count()
}

/// Rows of `T` one INSERT step carries on `DB`: as many as the bind limit allows, at most
/// [`MAX_ROWS_PER_INSERT`]. A backend may send a step with generated fields in several
/// statements ([`Dialect::generated_rows_per_statement`]); one that binds nothing per row
/// (PostgreSQL's arrays) says itself how many rows a statement carries.
pub(crate) fn rows_per_insert<T: Persist<DB>, DB: Dialect>() -> usize {
    let width = insert_width::<T>();
    if !T::HAS_GENERATED {
        if width == 0 {
            // `DEFAULT VALUES` inserts exactly one row.
            return 1;
        }
        return rows_per_statement(width, DB::MAX_BIND_PARAMS, MAX_ROWS_PER_INSERT);
    }
    let (per_row, fixed) = DB::generated_insert_binds::<T>();
    if per_row == 0 {
        return DB::generated_rows_per_statement::<T>().max(1);
    }
    rows_per_statement(
        per_row,
        DB::MAX_BIND_PARAMS.saturating_sub(fixed),
        MAX_ROWS_PER_INSERT,
    )
}

/// What the planner needs to know about `T` on `DB`: rows per INSERT and DELETE step, and
/// rows per INSERT statement.
pub(crate) fn table_info<T: Persist<DB>, DB: Dialect>() -> TableInfo {
    let rows_per_insert = rows_per_insert::<T, DB>();
    TableInfo {
        rows_per_insert,
        rows_per_delete: rows_per_delete::<T, DB>(),
        insert_rows_per_statement: if T::HAS_GENERATED {
            DB::generated_rows_per_statement::<T>()
        } else {
            rows_per_insert
        },
        rows_per_update: rows_per_update::<T, DB>,
    }
}

/// The most rows one UPDATE carries, for the reason [`MAX_ROWS_PER_INSERT`] gives.
pub(crate) const MAX_ROWS_PER_UPDATE: usize = 1000;

/// Values an UPDATE of `T` binds per row besides the columns it writes: the key, and the
/// persisted version it checks.
pub(crate) fn update_base_width<T: Entity>() -> usize {
    key_width::<T>() + usize::from(T::version_field().is_some())
}

/// Rows of `T` one UPDATE writing `columns` columns may carry on `DB`.
pub(crate) fn rows_per_update<T: Persist<DB>, DB: Dialect>(columns: usize) -> usize {
    rows_per_statement(
        DB::update_binds_per_row::<T>(columns),
        DB::MAX_BIND_PARAMS,
        DB::MAX_ROWS_PER_UPDATE,
    )
}

/// Rows of `T` one DELETE may carry on `DB`: a key list (`k IN (...)`) for a single-column key
/// without a version, else the OR form, capped by [`MAX_ROWS_PER_OR_DELETE`].
pub(crate) fn rows_per_delete<T: Entity, DB: Dialect>() -> usize {
    let width = update_base_width::<T>();
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
