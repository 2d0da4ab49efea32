//! [`Dialect`]: everything that differs between Diesel backends when writing entities, and
//! nothing else. Shared default methods serve backends that behave alike (the single-row
//! `RETURNING` fallback, `DEFAULT VALUES`), so a backend states only where it differs.

use std::future::Future;

use diesel::backend::Backend;
use diesel::expression::QueryMetadata;
use diesel::query_builder::AstPass;
use diesel::QueryResult;

use super::batched::{with_cte, Batch, FirstMissing, RowNumber, UpdateRows};
use super::batching::{insert_width, update_base_width, MAX_ROWS_PER_UPDATE};
use super::driver::Driver;
use super::statements::{InsertOne, InsertRows, ReturnedRow};
use crate::entity::{Entity, FieldSet, Persist};
use crate::error::Error;
use crate::transaction_mode::TransactionMode;

/// What differs between Diesel backends when writing entities. Implemented for every backend
/// whose cargo feature is on; sealed.
// `QueryMetadata<Untyped>` is implied by `Backend`; stated too so that code generic over a
// dialect still reads untyped rows: with only the `EntityColumns` bound in scope, rustc takes
// that bound for every `QueryMetadata` it needs.
pub trait Dialect:
    Backend
    + QueryMetadata<sealed::EntityColumns>
    + QueryMetadata<diesel::sql_types::Untyped>
    + Sized
    + sealed::Sealed
    + sealed::RowNumbers
    + 'static
{
    /// The backend's name, for messages.
    const NAME: &'static str;
    /// The most bind parameters one statement may carry.
    const MAX_BIND_PARAMS: usize;
    /// The most rows one UPDATE carries (fewer when the bind-parameter limit says so).
    #[doc(hidden)]
    const MAX_ROWS_PER_UPDATE: usize = MAX_ROWS_PER_UPDATE;

    /// The SQL opening a transaction in `mode` at the outermost level (`None`: the
    /// connection's own BEGIN); an error names what the backend cannot do.
    #[doc(hidden)]
    fn begin_sql(mode: TransactionMode) -> Result<Option<&'static str>, Error>;

    /// Inserts outbox rows (feature `outbox`), one statement.
    #[cfg(feature = "outbox")]
    #[doc(hidden)]
    fn insert_outbox<'q, D: Driver<Backend = Self>>(
        conn: &'q mut D::Conn,
        rows: &'q [crate::events::NewOutboxRow<'q>],
    ) -> impl Future<Output = QueryResult<usize>> + Send + 'q;

    /// How many of `rows` (outbox rows, in order) each INSERT carries:
    /// [`OUTBOX_ROWS_PER_INSERT`](super::outbox::OUTBOX_ROWS_PER_INSERT) at most, and fewer
    /// where the backend limits a statement's bytes (MySQL's `max_allowed_packet`).
    #[cfg(feature = "outbox")]
    #[doc(hidden)]
    fn outbox_groups<'q, D: Driver<Backend = Self>>(
        _conn: &'q mut D::Conn,
        rows: &'q [crate::events::NewOutboxRow<'q>],
    ) -> impl Future<Output = QueryResult<Vec<usize>>> + Send + 'q {
        std::future::ready(Ok(super::outbox::groups_of_at_most(
            rows.len(),
            super::outbox::OUTBOX_ROWS_PER_INSERT,
        )))
    }

    /// Up to `limit` unpublished outbox rows in order, locked where rows can be.
    #[cfg(feature = "outbox")]
    #[doc(hidden)]
    fn claim_outbox<D: Driver<Backend = Self>>(
        conn: &mut D::Conn,
        limit: i64,
    ) -> impl Future<Output = QueryResult<Vec<crate::outbox_table::OutboxMessage>>> + Send + '_;

    /// Sequence, aggregate type and key of every unpublished outbox row up to `last`.
    #[cfg(feature = "outbox")]
    #[doc(hidden)]
    fn unpublished_up_to<D: Driver<Backend = Self>>(
        conn: &mut D::Conn,
        last: i64,
    ) -> impl Future<Output = QueryResult<Vec<(i64, String, String)>>> + Send + '_;

    /// Marks outbox rows published.
    #[cfg(feature = "outbox")]
    #[doc(hidden)]
    fn mark_published<D: Driver<Backend = Self>>(
        conn: &mut D::Conn,
        sequences: Vec<i64>,
        at: i64,
    ) -> impl Future<Output = QueryResult<usize>> + Send + '_;

    /// Inserts a message id into the inbox unless it is there: 1 row, or 0.
    #[cfg(feature = "outbox")]
    #[doc(hidden)]
    fn insert_inbox<'q, D: Driver<Backend = Self>>(
        conn: &'q mut D::Conn,
        message_id: &'q str,
        at: i64,
    ) -> impl Future<Output = QueryResult<usize>> + Send + 'q;

    /// Values an UPDATE of `T` writing `columns` columns binds per row: by default the key,
    /// the persisted version it checks, and the values.
    #[doc(hidden)]
    fn update_binds_per_row<T: Persist<Self>>(columns: usize) -> usize {
        update_base_width::<T>() + columns
    }

    /// Updates `rows` (per row: the values to write and the persisted values), writing the
    /// columns of `fields`, and says how many rows matched and how many statements that took
    /// (by default one, [`UpdateRows`]).
    #[doc(hidden)]
    fn update_rows<D: Driver<Backend = Self>, T: Persist<Self>>(
        conn: &mut D::Conn,
        session: &mut Session,
        rows: &[(&T, &T)],
        fields: FieldSet,
    ) -> impl Future<Output = QueryResult<Sent>> + Send {
        let _ = session;
        async move {
            let rows = D::execute(conn, UpdateRows::new(rows, fields)).await?;
            Ok(Sent {
                rows,
                statements: 1,
            })
        }
    }

    /// The number of the first of `rows` that no row of the table matches, by the key of the
    /// row's second value and the version of its first, with one query ([`FirstMissing`] by
    /// default).
    #[doc(hidden)]
    fn first_missing<D: Driver<Backend = Self>, T: Persist<Self>>(
        conn: &mut D::Conn,
        rows: &[(&T, &T)],
    ) -> impl Future<Output = QueryResult<Option<usize>>> + Send {
        async move {
            let found: Vec<RowNumber> = D::load(conn, FirstMissing::new(rows)).await?;
            Ok(found.first().and_then(|n| usize::try_from(n.0).ok()))
        }
    }

    /// Inserts `rows`, entities without generated fields (one statement unless the backend
    /// must cut it), and says how many rows and statements that took.
    #[doc(hidden)]
    fn insert_rows<D: Driver<Backend = Self>, T: Persist<Self>>(
        conn: &mut D::Conn,
        session: &mut Session,
        rows: &[&T],
    ) -> impl Future<Output = QueryResult<Sent>> + Send {
        let _ = session;
        async move {
            let rows = D::execute(conn, InsertRows(rows)).await?;
            Ok(Sent {
                rows,
                statements: 1,
            })
        }
    }

    /// Inserts `rows`, entities with generated fields, and returns the generated values of
    /// each row in the order of `rows`, and how many statements it sent. A row whose values
    /// cannot be matched to it with certainty is left out, so the caller sees fewer values
    /// than rows and refuses the commit: a guess could give an entity another row's key.
    ///
    /// By default one statement per row, each with its own `RETURNING`: exact on every
    /// backend that has `RETURNING`, whatever order it returns rows in.
    #[doc(hidden)]
    fn insert_returning<D: Driver<Backend = Self>, T: Persist<Self>>(
        conn: &mut D::Conn,
        session: &mut Session,
        rows: &[&T],
    ) -> impl Future<Output = QueryResult<Inserted<T>>> + Send {
        let _ = session;
        insert_one_by_one::<D, T>(conn, rows)
    }

    /// Rows with generated fields one INSERT statement carries on this backend.
    #[doc(hidden)]
    fn generated_rows_per_statement<T: Persist<Self>>() -> usize {
        1
    }

    /// Bind parameters an INSERT of `T` with generated fields carries per row, and once per
    /// statement.
    #[doc(hidden)]
    fn generated_insert_binds<T: Persist<Self>>() -> (usize, usize) {
        (insert_width::<T>(), 0)
    }

    /// Whether the text of the UPDATE of `batch` depends on its row count (a table of bound
    /// values does; arrays do not), so that large batches stay out of the statement cache.
    #[doc(hidden)]
    fn batch_text_follows_rows<T: Persist<Self>>(batch: &Batch<'_, T>) -> bool {
        let _ = batch;
        true
    }

    /// The query of [`FirstMissing`] (by default over the batch as a CTE).
    #[doc(hidden)]
    fn walk_first_missing<'b, T: Persist<Self>>(
        probe: &'b FirstMissing<'_, T>,
        out: AstPass<'_, 'b, Self>,
    ) -> QueryResult<()> {
        with_cte::walk_first_missing(probe, out)
    }

    /// One UPDATE of every row of `update`, two rows or more (by default the batch as a CTE
    /// joined with `UPDATE .. FROM`, as SQLite 3.33 and later take it).
    #[doc(hidden)]
    fn walk_batch_update<'b, T: Persist<Self>>(
        update: &'b UpdateRows<'_, T>,
        out: AstPass<'_, 'b, Self>,
    ) -> QueryResult<()> {
        with_cte::walk_update(update, out)
    }

    /// `DEFAULT VALUES` or the backend's equivalent, for `rows` rows of a table with nothing
    /// to insert. `DEFAULT VALUES` inserts exactly one row, so by default more are refused
    /// (the callers send such rows one per statement where the backend has no multi-row form).
    #[doc(hidden)]
    fn push_default_values(mut out: AstPass<'_, '_, Self>, rows: usize) -> QueryResult<()> {
        if rows != 1 {
            return Err(diesel::result::Error::QueryBuilderError(
                format!("{}: DEFAULT VALUES inserts one row, not {rows}", Self::NAME).into(),
            ));
        }
        out.push_sql("DEFAULT VALUES");
        Ok(())
    }
}

pub(crate) mod sealed {
    use diesel::backend::Backend;
    use diesel::deserialize::{self, FromSql};
    use diesel::query_builder::AstPass;
    use diesel::row::NamedRow;
    use diesel::serialize::ToSql;
    use diesel::sql_types::Integer;
    use diesel::QueryResult;

    pub trait Sealed {}

    /// The SQL "type" of uow's own SELECTs (`load`, `refresh`, an aggregate's levels): every
    /// persisted column of one entity, in the order of its `FIELDS`, so a row is read by
    /// position ([`Load::from_row`](crate::Load::from_row)) and not looked up by name. Each
    /// backend describes it as Diesel describes an untyped query.
    #[derive(Debug, Clone, Copy)]
    pub struct EntityColumns;

    /// `QueryMetadata<EntityColumns>` for a backend: what it says for an untyped query.
    macro_rules! entity_columns_metadata {
        ($backend:ty) => {
            impl diesel::expression::QueryMetadata<$crate::exec::dialect::sealed::EntityColumns>
                for $backend
            {
                fn row_metadata(
                    lookup: &mut Self::MetadataLookup,
                    out: &mut Vec<Option<Self::TypeMetadata>>,
                ) {
                    <Self as diesel::expression::QueryMetadata<
                        diesel::expression::expression_types::Untyped,
                    >>::row_metadata(lookup, out)
                }
            }
        };
    }
    pub(crate) use entity_columns_metadata;

    /// A row's number in a batch, bound and read back as an `INTEGER` (an `i32`), which
    /// every backend has.
    pub trait RowNumbers: Backend {
        /// Binds `number`.
        fn push_number<'b>(out: &mut AstPass<'_, 'b, Self>, number: &'b i32) -> QueryResult<()>;
        /// Reads a number bound by `push_number` back from column `column` of `row`.
        fn read_number<'a>(row: &impl NamedRow<'a, Self>, column: &str)
            -> deserialize::Result<i32>;
    }

    impl<DB> RowNumbers for DB
    where
        DB: Backend,
        i32: ToSql<Integer, DB> + FromSql<Integer, DB>,
    {
        fn push_number<'b>(out: &mut AstPass<'_, 'b, Self>, number: &'b i32) -> QueryResult<()> {
            out.push_bind_param::<Integer, i32>(number)
        }

        fn read_number<'a>(
            row: &impl NamedRow<'a, Self>,
            column: &str,
        ) -> deserialize::Result<i32> {
            NamedRow::get::<Integer, i32>(row, column)
        }
    }
}

/// What the execution layer has learnt about the server a unit of work writes to. One lives
/// in each unit of work, so facts that hold for a connection (MySQL's auto-increment lock mode
/// and step) are asked for once, then checked for free after each INSERT that relies on them;
/// [`Session::start_write`] forgets at the start of each write what may change between writes.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Session {
    /// MySQL: the auto-increment lock mode and step, as last read on the connection written
    /// to (read again with every `LAST_INSERT_ID()`, so a change is seen by the next INSERT).
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    pub(super) auto_increment: Option<AutoIncrement>,
    /// MySQL: `max_allowed_packet`, read in a write only when a statement may exceed 64 KiB.
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    pub(super) max_allowed_packet: Option<u64>,
    /// MySQL: whether the server is MariaDB 10.5 or later, which has `INSERT .. RETURNING`
    /// (read with the auto-increment settings).
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    pub(super) insert_returning: bool,
    /// SQLite: the entity types whose generated key proved not to be their table's rowid
    /// (or whose table something else writes to during an INSERT), not asked again.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(super) rowid_refused: Vec<std::any::TypeId>,
}

impl Session {
    /// Forgets what may differ in the next write: the connection may be another one, with
    /// another packet size, and a table's schema may have changed. The auto-increment facts
    /// stay: every INSERT that relies on them reads them again, in the same round trip as
    /// its keys, and refuses keys computed from stale ones.
    pub(crate) fn start_write(&mut self) {
        self.max_allowed_packet = None;
        self.rowid_refused.clear();
    }
}

/// MySQL's auto-increment settings of a connection: `@@innodb_autoinc_lock_mode` and
/// `@@auto_increment_increment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
pub(super) struct AutoIncrement {
    pub lock_mode: i64,
    pub increment: u64,
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

/// Inserts `rows` one statement each, reading each row's generated values from its own
/// `RETURNING`.
pub(super) async fn insert_one_by_one<D, T>(
    conn: &mut D::Conn,
    rows: &[&T],
) -> QueryResult<Inserted<T>>
where
    D: Driver,
    T: Persist<D::Backend>,
{
    let mut generated = Vec::with_capacity(rows.len());
    for row in rows {
        let mut returned: Vec<ReturnedRow<T>> = D::load(conn, InsertOne(*row)).await?;
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
