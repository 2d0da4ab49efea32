//! The outbox's and the inbox's statements (feature `outbox`): the rows a commit inserts, and
//! the relay's claim, order check and marking, the inbox's insert. Each is Diesel's query
//! builder on the concrete backend: [`outbox_statements!`] writes the same methods into each
//! backend's `Dialect` impl, where only the claim's lock and the inbox's "insert unless
//! present" differ.

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, HasSqlType, Text};
use diesel::QueryResult;

use super::dialect::Dialect;
use super::driver::Driver;
use crate::error::{Error, Operation, Result};
use crate::events::NewOutboxRow;
#[cfg(feature = "async")]
use crate::outbox_table::OutboxMessage;
use crate::report::CommitReport;

/// Rows per INSERT: 6 bound values each, under every backend's bind limit.
pub(crate) const OUTBOX_ROWS_PER_INSERT: usize = 1_000;

/// The `Dialect` methods of the outbox, for a backend's impl: `lock` is what the claim adds
/// (`for_update().skip_locked()` where rows can be locked), `insert_unless_present` the
/// inbox's INSERT that skips a message id already there.
macro_rules! outbox_statements {
    (claim: |$query:ident| $claim:expr, inbox: |$inbox:ident| $insert:expr $(,)?) => {
        fn insert_outbox<'q, D: $crate::exec::Driver<Backend = Self>>(
            conn: &'q mut D::Conn,
            rows: &'q [$crate::events::NewOutboxRow<'q>],
        ) -> impl std::future::Future<Output = diesel::QueryResult<usize>> + Send + 'q {
            D::execute(conn, $crate::exec::outbox::InsertOutboxRows(rows))
        }

        fn claim_outbox<D: $crate::exec::Driver<Backend = Self>>(
            conn: &mut D::Conn,
            limit: i64,
        ) -> impl std::future::Future<
            Output = diesel::QueryResult<Vec<$crate::outbox_table::OutboxMessage>>,
        > + Send
               + '_ {
            use $crate::outbox_table::schema::uow_outbox::dsl as o;
            use diesel::{ExpressionMethods, QueryDsl};
            let $query = o::uow_outbox
                .filter(o::published_at.is_null())
                .order(o::sequence)
                .limit(limit)
                .select((
                    o::sequence,
                    o::message_id,
                    o::aggregate_type,
                    o::aggregate_key,
                    o::event_type,
                    o::payload,
                    o::created_at,
                ));
            D::load(conn, $claim)
        }

        fn unpublished_up_to<D: $crate::exec::Driver<Backend = Self>>(
            conn: &mut D::Conn,
            last: i64,
        ) -> impl std::future::Future<Output = diesel::QueryResult<Vec<(i64, String, String)>>>
               + Send
               + '_ {
            use $crate::outbox_table::schema::uow_outbox::dsl as o;
            use diesel::{ExpressionMethods, QueryDsl};
            let query = o::uow_outbox
                .filter(o::published_at.is_null())
                .filter(o::sequence.le(last))
                .order(o::sequence)
                .select((o::sequence, o::aggregate_type, o::aggregate_key));
            D::load(conn, query)
        }

        fn mark_published<D: $crate::exec::Driver<Backend = Self>>(
            conn: &mut D::Conn,
            sequences: Vec<i64>,
            at: i64,
        ) -> impl std::future::Future<Output = diesel::QueryResult<usize>> + Send + '_ {
            use $crate::outbox_table::schema::uow_outbox::dsl as o;
            use diesel::{ExpressionMethods, QueryDsl};
            let query = diesel::update(o::uow_outbox.filter(o::sequence.eq_any(sequences)))
                .set(o::published_at.eq(Some(at)));
            D::execute(conn, query)
        }

        fn insert_inbox<'q, D: $crate::exec::Driver<Backend = Self>>(
            conn: &'q mut D::Conn,
            message_id: &'q str,
            at: i64,
        ) -> impl std::future::Future<Output = diesel::QueryResult<usize>> + Send + 'q {
            use $crate::outbox_table::schema::uow_inbox::dsl as i;
            use diesel::ExpressionMethods;
            let $inbox = (i::message_id.eq(message_id), i::handled_at.eq(at));
            D::execute(conn, $insert)
        }
    };
}
pub(crate) use outbox_statements;

/// `INSERT INTO uow_outbox (..) VALUES (..), (..)`: one statement for many rows on every
/// backend (Diesel's own batch insert sends one statement per row on SQLite), each value
/// bound.
pub(crate) struct InsertOutboxRows<'a>(pub &'a [NewOutboxRow<'a>]);

impl QueryId for InsertOutboxRows<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB> QueryFragment<DB> for InsertOutboxRows<'_>
where
    DB: Backend + HasSqlType<Text> + HasSqlType<BigInt>,
    str: ToSql<Text, DB>,
    i64: ToSql<BigInt, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        // The text depends on the row count: kept out of the prepared-statement cache.
        out.unsafe_to_cache_prepared();
        out.push_sql("INSERT INTO ");
        out.push_identifier("uow_outbox")?;
        out.push_sql(" (");
        for (n, column) in OUTBOX_COLUMNS.iter().enumerate() {
            if n > 0 {
                out.push_sql(", ");
            }
            out.push_identifier(column)?;
        }
        out.push_sql(") VALUES ");
        for (n, row) in self.0.iter().enumerate() {
            out.push_sql(if n > 0 { ", (" } else { "(" });
            out.push_bind_param::<Text, str>(row.message_id)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, str>(row.aggregate_type)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, str>(&row.aggregate_key)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, str>(row.event_type)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, str>(row.payload)?;
            out.push_sql(", ");
            out.push_bind_param::<BigInt, i64>(&row.created_at)?;
            out.push_sql(")");
        }
        Ok(())
    }
}

/// The columns [`InsertOutboxRows`] writes, in its order.
const OUTBOX_COLUMNS: [&str; 6] = [
    "message_id",
    "aggregate_type",
    "aggregate_key",
    "event_type",
    "payload",
    "created_at",
];

/// Inserts the outbox rows of the events a commit releases, on its open transaction, and adds
/// them to its report.
pub(crate) async fn insert_rows<D: Driver>(
    conn: &mut D::Conn,
    rows: &[NewOutboxRow<'_>],
    sent: &mut CommitReport,
) -> Result<()> {
    let groups = <D::Backend as Dialect>::outbox_groups::<D>(conn, rows)
        .await
        .map_err(|source| statement_error(Operation::Insert, source))?;
    let mut rest = rows;
    for count in groups {
        let (group, after) = rest.split_at(count.min(rest.len()));
        rest = after;
        let inserted = <D::Backend as Dialect>::insert_outbox::<D>(conn, group)
            .await
            .map_err(|source| statement_error(Operation::Insert, source))?;
        sent.record("outbox", "uow_outbox", Operation::Insert, inserted, 1);
    }
    Ok(())
}

/// `rows` rows cut into groups of `most` (the last one smaller): the sizes of the groups.
pub(crate) fn groups_of_at_most(rows: usize, most: usize) -> Vec<usize> {
    let most = most.max(1);
    let mut groups = vec![most; rows / most];
    if rows % most > 0 {
        groups.push(rows % most);
    }
    groups
}

#[cfg(feature = "async")]
/// Up to `limit` unpublished rows in `sequence` order, locked for this relay's transaction
/// (skipping rows another relay holds) where the backend can lock rows.
pub(crate) async fn claim<D: Driver>(conn: &mut D::Conn, limit: i64) -> Result<Vec<OutboxMessage>> {
    <D::Backend as Dialect>::claim_outbox::<D>(conn, limit)
        .await
        .map_err(|source| statement_error(Operation::Select, source))
}

#[cfg(feature = "async")]
/// The claimed rows that may be published now, in order: for each aggregate, the claimed rows
/// before its first unpublished row that `claimed` lacks (one another relay holds), so no
/// aggregate's events overtake each other.
pub(crate) async fn publishable<D: Driver>(
    conn: &mut D::Conn,
    claimed: Vec<OutboxMessage>,
) -> Result<Vec<OutboxMessage>> {
    let Some(last) = claimed.last().map(|m| m.sequence) else {
        return Ok(claimed);
    };
    let unpublished = <D::Backend as Dialect>::unpublished_up_to::<D>(conn, last)
        .await
        .map_err(|source| statement_error(Operation::Select, source))?;
    Ok(in_aggregate_order(claimed, &unpublished))
}

#[cfg(feature = "async")]
/// [`publishable`]'s rule on rows read: `unpublished` lists (sequence, aggregate type, key) of
/// every unpublished row up to the last claimed one, in order.
pub(crate) fn in_aggregate_order(
    claimed: Vec<OutboxMessage>,
    unpublished: &[(i64, String, String)],
) -> Vec<OutboxMessage> {
    use std::collections::{HashMap, HashSet};
    let ours: HashSet<i64> = claimed.iter().map(|m| m.sequence).collect();
    // Per aggregate, the first unpublished row this relay did not claim.
    let mut blocked_from: HashMap<(&str, &str), i64> = HashMap::new();
    for (sequence, kind, key) in unpublished {
        if !ours.contains(sequence) {
            blocked_from
                .entry((kind.as_str(), key.as_str()))
                .or_insert(*sequence);
        }
    }
    claimed
        .into_iter()
        .filter(|m| {
            blocked_from
                .get(&m.aggregate())
                .is_none_or(|&first| m.sequence < first)
        })
        .collect()
}

#[cfg(feature = "async")]
/// Marks `sequences` published at `at`.
pub(crate) async fn mark_published<D: Driver>(
    conn: &mut D::Conn,
    sequences: Vec<i64>,
    at: i64,
) -> Result<usize> {
    <D::Backend as Dialect>::mark_published::<D>(conn, sequences, at)
        .await
        .map_err(|source| statement_error(Operation::Update, source))
}

/// Records `message_id` in the inbox; `false` if it was there (handled before, or by a
/// concurrent consumer that committed first).
pub(crate) async fn record_in_inbox<D: Driver>(
    conn: &mut D::Conn,
    message_id: &str,
    at: i64,
) -> Result<bool> {
    let inserted = <D::Backend as Dialect>::insert_inbox::<D>(conn, message_id, at)
        .await
        .map_err(|source| Error::Statement {
            operation: Operation::Insert,
            table: "uow_inbox",
            source,
        })?;
    Ok(inserted == 1)
}

fn statement_error(operation: Operation, source: diesel::result::Error) -> Error {
    Error::Statement {
        operation,
        table: "uow_outbox",
        source,
    }
}

#[cfg(all(test, feature = "async"))]
mod tests {
    use super::*;

    #[test]
    fn rows_are_cut_into_groups_of_at_most_the_given_size() {
        assert_eq!(groups_of_at_most(0, 1_000), Vec::<usize>::new());
        assert_eq!(groups_of_at_most(3, 1_000), [3]);
        assert_eq!(groups_of_at_most(2_000, 1_000), [1_000, 1_000]);
        assert_eq!(groups_of_at_most(2_001, 1_000), [1_000, 1_000, 1]);
        assert_eq!(groups_of_at_most(2, 0), [1, 1], "never groups of nothing");
    }

    fn message(sequence: i64, key: &str) -> OutboxMessage {
        OutboxMessage {
            sequence,
            message_id: format!("m{sequence}"),
            aggregate_type: "Account".into(),
            aggregate_key: key.into(),
            event_type: "E".into(),
            payload: "{}".into(),
            created_at: 0,
        }
    }

    fn row(sequence: i64, key: &str) -> (i64, String, String) {
        (sequence, "Account".into(), key.into())
    }

    #[test]
    fn rows_after_another_relays_row_of_the_same_aggregate_wait() {
        // Another relay holds 2 (aggregate "1"); we claimed 1, 3, 4, 5.
        let claimed = vec![
            message(1, "1"),
            message(3, "1"),
            message(4, "2"),
            message(5, "2"),
        ];
        let unpublished = [
            row(1, "1"),
            row(2, "1"),
            row(3, "1"),
            row(4, "2"),
            row(5, "2"),
        ];
        let kept: Vec<i64> = in_aggregate_order(claimed, &unpublished)
            .iter()
            .map(|m| m.sequence)
            .collect();
        assert_eq!(kept, [1, 4, 5]);
    }

    #[test]
    fn everything_claimed_is_published_when_nothing_else_is_pending() {
        let claimed = vec![message(7, "1"), message(8, "1")];
        let unpublished = [row(7, "1"), row(8, "1")];
        assert_eq!(in_aggregate_order(claimed, &unpublished).len(), 2);
    }

    #[test]
    fn an_aggregate_whose_head_is_held_elsewhere_waits_entirely() {
        let claimed = vec![message(2, "9")];
        let unpublished = [row(1, "9"), row(2, "9")];
        assert!(in_aggregate_order(claimed, &unpublished).is_empty());
    }
}
