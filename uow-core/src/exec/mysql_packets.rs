//! What fits in one MySQL packet: a statement larger than the server's `max_allowed_packet`
//! makes it drop the connection ("Server has gone away"), so INSERTs of large rows, and the
//! outbox's rows, are cut by the bytes they bind as well as by rows. Measuring, cutting, and
//! the groups of each kind of statement live here; reading the setting is `mysql.rs`'s.

use diesel::mysql::Mysql;
use diesel::query_builder::bind_collector::RawBytesBindCollector;
use diesel::query_builder::{AstPass, QueryFragment};
use diesel::QueryResult;

use super::dialect::Session;
use super::driver::Driver;
use super::mysql::max_allowed_packet;
use super::statements::walk_inserted_values;
use crate::entity::{Entity, Persist};

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

/// The values one row binds in an INSERT, for measuring them.
struct RowValues<'a, T>(&'a T);

impl<T: Persist<Mysql>> QueryFragment<Mysql> for RowValues<'_, T> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Mysql>) -> QueryResult<()> {
        walk_inserted_values(self.0, &mut out)
    }
}

/// What the values `fragment` binds add to a statement's packet, in bytes.
pub(super) fn bind_bytes(fragment: &impl QueryFragment<Mysql>) -> QueryResult<usize> {
    let mut binds = RawBytesBindCollector::<Mysql>::new();
    fragment.collect_binds(&mut binds, &mut (), &Mysql)?;
    Ok(binds
        .binds
        .iter()
        .map(|b| b.as_ref().map_or(0, Vec::len) + BYTES_PER_PARAM)
        .sum())
}

/// How many rows each statement of `rows` carries, given the bytes each row binds: all of
/// them when they fit in the server's `max_allowed_packet`, else groups that do. A statement
/// larger than the packet makes the server drop the connection ("Server has gone away"); a
/// row that alone does not fit is refused before anything is sent (`what` says which rows:
/// "new", "changed").
pub(super) async fn packets<'r, D: Driver<Backend = Mysql>, T: Entity, R>(
    conn: &mut D::Conn,
    session: &mut Session,
    rows: &'r [R],
    sizes: &[usize],
    what: &str,
) -> QueryResult<Vec<&'r [R]>> {
    let total: usize = sizes.iter().sum();
    if total <= SMALL_STATEMENT_BYTES {
        return Ok(vec![rows]);
    }
    let packet = max_allowed_packet::<D>(conn, session).await?;
    let budget = usize::try_from(packet)
        .unwrap_or(usize::MAX)
        .saturating_sub(PACKET_HEADROOM);
    let counts = cut_by_bytes(sizes, budget).map_err(|row| {
        diesel::result::Error::QueryBuilderError(
            format!(
                "a {what} {entity} takes {bytes} bytes, more than one statement may carry on \
                 this server (max_allowed_packet = {packet}); nothing was sent: raise \
                 max_allowed_packet, or store less in one row",
                entity = T::ENTITY_NAME,
                bytes = sizes[row],
            )
            .into(),
        )
    })?;
    let mut rest = rows;
    Ok(counts
        .into_iter()
        .map(|count| {
            let (group, after) = rest.split_at(count);
            rest = after;
            group
        })
        .collect())
}

/// The groups of an INSERT of `rows` (see [`packets`]).
pub(super) async fn statements_for<'r, D: Driver<Backend = Mysql>, T: Persist<Mysql>>(
    conn: &mut D::Conn,
    session: &mut Session,
    rows: &'r [&'r T],
) -> QueryResult<Vec<&'r [&'r T]>> {
    let sizes = rows
        .iter()
        .map(|row| bind_bytes(&RowValues(*row)))
        .collect::<QueryResult<Vec<usize>>>()?;
    packets::<D, T, _>(conn, session, rows, &sizes, "new").await
}

/// The outbox rows each INSERT carries: at most `OUTBOX_ROWS_PER_INSERT`, and no more bytes
/// than `max_allowed_packet` (asked for only when the rows are large); an event that alone
/// does not fit is refused before anything of the outbox is sent.
#[cfg(feature = "outbox")]
pub(super) async fn outbox_groups<D: Driver<Backend = Mysql>>(
    conn: &mut D::Conn,
    rows: &[crate::events::NewOutboxRow<'_>],
) -> QueryResult<Vec<usize>> {
    use super::outbox::{groups_of_at_most, OUTBOX_ROWS_PER_INSERT};
    let sizes: Vec<usize> = rows
        .iter()
        .map(|r| {
            let text = r.message_id.len()
                + r.aggregate_type.len()
                + r.aggregate_key.len()
                + r.event_type.len()
                + r.payload.len();
            text + std::mem::size_of::<i64>() + 6 * BYTES_PER_PARAM
        })
        .collect();
    if sizes.iter().sum::<usize>() <= SMALL_STATEMENT_BYTES {
        return Ok(groups_of_at_most(rows.len(), OUTBOX_ROWS_PER_INSERT));
    }
    let packet: i64 =
        super::driver::one_row::<D, _, _>(conn, diesel::select(super::mysql::packet_sql())).await?;
    let budget = usize::try_from(packet)
        .unwrap_or(usize::MAX)
        .saturating_sub(PACKET_HEADROOM);
    let by_bytes = cut_by_bytes(&sizes, budget).map_err(|row| {
        diesel::result::Error::QueryBuilderError(
            format!(
                "an outbox event {kind} takes {bytes} bytes, more than one statement may carry \
                 on this server (max_allowed_packet = {packet}); nothing was sent: raise \
                 max_allowed_packet, or record a smaller event",
                kind = rows[row].event_type,
                bytes = sizes[row],
            )
            .into(),
        )
    })?;
    Ok(by_bytes
        .into_iter()
        .flat_map(|count| groups_of_at_most(count, OUTBOX_ROWS_PER_INSERT))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

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
