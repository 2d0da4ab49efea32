//! SQLite: rows with generated keys matched through their rowids.

use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::query_dsl::RunQueryDsl;
use diesel::row::NamedRow;
use diesel::sql_types::Untyped;
use diesel::QueryResult;

use super::batching::{insert_width, rows_per_insert, MAX_CACHED_BATCH_BINDS, MAX_ROWS_PER_INSERT};
use super::dialect::{insert_one_by_one, sealed, Dialect, Inserted, Session};
use super::driver::{one_row, Driver};
use super::statements::{push_columns, walk_insert, InsertRows};
use crate::entity::{Entity, Persist};
use crate::error::Error;
use crate::transaction_mode::TransactionMode;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use diesel::sqlite::Sqlite;
use std::any::TypeId;

impl sealed::Sealed for Sqlite {}
sealed::entity_columns_metadata!(Sqlite);

impl Dialect for Sqlite {
    #[cfg(feature = "outbox")]
    super::outbox::outbox_statements!(
        claim: |query| query,
        inbox: |values| diesel::insert_or_ignore_into(i::uow_inbox).values(values),
    );
    const NAME: &'static str = "SQLite";
    // SQLITE_MAX_VARIABLE_NUMBER of the bundled SQLite (3.32 and later).
    const MAX_BIND_PARAMS: usize = 32766;

    /// `BEGIN IMMEDIATE` whatever the level (SQLite runs every transaction serializably): the
    /// write lock is taken when the transaction begins, so a second writer waits for it (up
    /// to the busy timeout) instead of failing when its read lock cannot be upgraded.
    fn begin_sql(mode: TransactionMode) -> Result<Option<&'static str>, Error> {
        if mode.is_read_only() {
            return Err(Error::TransactionModeUnsupported {
                backend: Self::NAME,
                mode,
                reason: "SQLite has no read-only transactions (open the database read-only \
                         instead, with a `file:..?mode=ro` URI)",
            });
        }
        Ok(Some("BEGIN IMMEDIATE"))
    }

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
    ///
    /// Where the key is the only generated value and the table's rowid itself (the schema
    /// read with the table's state before each INSERT), the keys follow from `last_insert_rowid()` and the
    /// INSERT needs no `RETURNING` (SQLite keeps returned rows aside until the statement ends:
    /// 44 % of the instructions of a 10,000-row commit went there), [`insert_keyed_by_rowid`].
    async fn insert_returning<D: Driver<Backend = Self>, T: Persist<Self>>(
        conn: &mut D::Conn,
        session: &mut Session,
        rows: &[&T],
    ) -> QueryResult<Inserted<T>> {
        // `DEFAULT VALUES` inserts one row, whatever the number of entities.
        if rows.len() < 2 || insert_width::<T>() == 0 {
            return insert_one_by_one::<D, T>(conn, rows).await;
        }
        if let Some(key) = rowid_key::<T>(session) {
            if let Some(inserted) = insert_keyed_by_rowid::<D, T>(conn, session, key, rows).await? {
                return Ok(inserted);
            }
        }
        let room = i64::try_from(rows.len()).unwrap_or(i64::MAX);
        let largest = largest_rowid::<D, T>(conn).await;
        match largest {
            Ok(largest) if largest.unwrap_or(0) < i64::MAX - room => {}
            // No rowid (`WITHOUT ROWID`), or random rowids ahead.
            _ => return insert_one_by_one::<D, T>(conn, rows).await,
        }
        let mut returned: Vec<RowidRow<T>> = D::load(conn, InsertReturningRowid { rows }).await?;
        let largest = largest_rowid::<D, T>(conn).await?;
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

    fn generated_rows_per_statement<T: Persist<Self>>() -> usize {
        MAX_ROWS_PER_INSERT
    }
}

/// The key column of `T` when it could be the rowid of `T`'s table: `T`'s only generated
/// value is its key, a single integer column (what the schema says is asked per INSERT, by
/// [`insert_keyed_by_rowid`]), and no earlier INSERT of this write found otherwise.
fn rowid_key<T: Persist<Sqlite>>(session: &Session) -> Option<&'static str> {
    if insert_width::<T>() == 0 || T::generated_from_insert_id(1).is_none() {
        return None;
    }
    let mut keys = T::FIELDS.iter().filter(|f| f.key);
    let (Some(key), None) = (keys.next(), keys.next()) else {
        return None;
    };
    let refused = session.rowid_refused.contains(&TypeId::of::<T>());
    (key.generated && !refused).then_some(key.column)
}

/// Inserts `rows` with one INSERT without `RETURNING`, their keys being the consecutive rowids
/// that end at `last_insert_rowid()`, or sends nothing and says `None` where that cannot be
/// shown. Before the INSERT one statement reads the schema and the table's state
/// ([`RowidState`]): the key column must be the table's rowid and nothing else may write to
/// the table during an INSERT (no trigger), and the largest rowid must leave room for the rows
/// (past `i64::MAX` SQLite picks rowids at random). After it, the state proves the rows' keys:
/// exactly `rows.len()` rows changed in the database, the last row is the table's largest, and
/// every new rowid is above the largest before (SQLite numbers a new row one above the
/// largest, the rows of a VALUES list in their order). Where that proof fails after the
/// INSERT, no key is handed back and the commit is refused, never guessed.
async fn insert_keyed_by_rowid<D: Driver<Backend = Sqlite>, T: Persist<Sqlite>>(
    conn: &mut D::Conn,
    session: &mut Session,
    key: &'static str,
    rows: &[&T],
) -> QueryResult<Option<Inserted<T>>> {
    let count = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    // A table the check cannot read (an error: `WITHOUT ROWID` has no rowid) is not one.
    let before = one_row::<D, _, StateRow>(conn, RowidState::<T, true>::new(key)).await;
    let Ok((true, largest_before, changes_before, _)) = before else {
        session.rowid_refused.push(TypeId::of::<T>());
        return Ok(None);
    };
    let largest_before = largest_before.unwrap_or(0);
    if largest_before < 0 || largest_before >= i64::MAX - count {
        return Ok(None);
    }
    let written = D::execute(conn, InsertRows(rows)).await?;
    let (_, largest, changes, last) =
        one_row::<D, _, StateRow>(conn, RowidState::<T, false>::new(key)).await?;
    let first = last - (count - 1);
    let proven = written == rows.len()
        && changes - changes_before == count
        && largest == Some(last)
        && first > largest_before;
    let generated = if proven {
        (first..=last)
            .map(|rowid| {
                u64::try_from(rowid)
                    .ok()
                    .and_then(T::generated_from_insert_id)
            })
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    Ok(Some(Inserted {
        generated,
        statements: 1,
    }))
}

/// The table's largest rowid (`None` when empty).
async fn largest_rowid<D: Driver<Backend = Sqlite>, T: Persist<Sqlite>>(
    conn: &mut D::Conn,
) -> QueryResult<Option<i64>> {
    one_row::<D, _, Option<i64>>(conn, MaxRowid::<T>(std::marker::PhantomData)).await
}

/// What [`RowidState`] reads: whether the key is the rowid (`CHECK`; else true), the largest
/// rowid, `total_changes()` and `last_insert_rowid()`.
type StateRow = (bool, Option<i64>, i64, i64);

/// `SELECT <the key is the rowid>, max(rowid), total_changes(), last_insert_rowid() FROM t`,
/// the first column asked of the schema only with `CHECK`. One statement of constant text per
/// table (prepared once per connection, the names bound), since preparing the check costs
/// more than a small INSERT. The check: `t` is a table in `main` (one in `temp` would be
/// another table of that name), nothing in `temp` names it (a temporary trigger), no trigger
/// is on it, its key is its only primary key column, declared `INTEGER` without a default,
/// and has no index of origin `pk` (an `INTEGER PRIMARY KEY DESC` or a `WITHOUT ROWID` key has
/// one, and is not the rowid), and no other column is named `rowid`, `oid` or `_rowid_`.
struct RowidState<T, const CHECK: bool> {
    key: &'static str,
    entity: std::marker::PhantomData<T>,
}

impl<T, const CHECK: bool> RowidState<T, CHECK> {
    fn new(key: &'static str) -> Self {
        RowidState {
            key,
            entity: std::marker::PhantomData,
        }
    }
}

/// The check's text, `T` and `K` standing for the bound table and key column names.
const ROWID_IS_THE_KEY: &[&str] = &[
    "EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ",
    "T",
    " COLLATE NOCASE) AND NOT EXISTS (SELECT 1 FROM sqlite_temp_schema WHERE tbl_name = ",
    "T",
    " COLLATE NOCASE) AND NOT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'trigger' \
     AND tbl_name = ",
    "T",
    " COLLATE NOCASE) AND NOT EXISTS (SELECT 1 FROM pragma_index_list(",
    "T",
    ") WHERE origin = 'pk') AND (SELECT count(*) FILTER (WHERE pk > 0) = 1 \
     AND count(*) FILTER (WHERE pk = 1 AND name = ",
    "K",
    " COLLATE NOCASE AND upper(type) = 'INTEGER' AND dflt_value IS NULL) = 1 \
     AND count(*) FILTER (WHERE pk = 0 AND lower(name) IN ('rowid', 'oid', '_rowid_')) = 0 \
     FROM pragma_table_info(",
    "T",
    "))",
];

impl<T: Entity, const CHECK: bool> QueryId for RowidState<T, CHECK> {
    type QueryId = RowidState<T, CHECK>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<T: Entity, C, const CHECK: bool> RunQueryDsl<C> for RowidState<T, CHECK> {}

impl<T: Entity, const CHECK: bool> Query for RowidState<T, CHECK> {
    type SqlType = (Bool, Nullable<BigInt>, BigInt, BigInt);
}

impl<T: Persist<Sqlite>, const CHECK: bool> QueryFragment<Sqlite> for RowidState<T, CHECK> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        out.push_sql("SELECT ");
        if CHECK {
            for part in ROWID_IS_THE_KEY {
                match *part {
                    "T" => out.push_bind_param::<Text, _>(&T::TABLE_NAME)?,
                    "K" => out.push_bind_param::<Text, _>(&self.key)?,
                    sql => out.push_sql(sql),
                }
            }
        } else {
            out.push_sql("1");
        }
        out.push_sql(", max(rowid), total_changes(), last_insert_rowid() FROM ");
        T::walk_table(out.reborrow())
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
