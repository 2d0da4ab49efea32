//! MySQL and MariaDB: keys from `LAST_INSERT_ID()` (or MariaDB's `INSERT .. RETURNING`), the
//! session's settings (lock mode, step, `max_allowed_packet`), statements cut to the packet
//! (`mysql_packets.rs` measures and cuts).

use diesel::query_builder::AstPass;
use diesel::QueryResult;

use super::batched::UpdateRows;
use super::batching::{key_width, update_base_width, MAX_ROWS_PER_INSERT};
use super::dialect::{sealed, AutoIncrement, Dialect, Inserted, Sent, Session};
use super::driver::{one_row, Driver};
use super::mysql_batched::{
    walk_case_update, CaseRow, FoundRow, FoundRows, InsertIdAndSettings, InsertReturningKeys,
    ReturnedKey, MAX_ROWS_PER_CASE_UPDATE,
};
use super::mysql_packets::{bind_bytes, packets, statements_for};
use super::statements::InsertRows;
use crate::entity::{Entity, FieldSet, Persist};
use crate::error::Error;
use crate::transaction_mode::{Isolation, TransactionMode};
use diesel::mysql::Mysql;

use diesel::dsl::sql;
use diesel::expression::SqlLiteral;
use diesel::sql_types::BigInt;

impl sealed::Sealed for Mysql {}
sealed::entity_columns_metadata!(Mysql);

/// Whether InnoDB gives the rows of one multi-row INSERT consecutive ids:
/// lock modes 0 ("traditional") and 1 ("consecutive") do; 2 ("interleaved") does not.
pub(super) fn multi_row_ids_are_consecutive(lock_mode: i64) -> bool {
    matches!(lock_mode, 0 | 1)
}

/// The auto-increment settings and `max_allowed_packet`, in one SELECT: asked for when a
/// write first needs one of them and the unit of work does not know the auto-increment
/// settings yet.
async fn read_settings<D: Driver<Backend = Mysql>>(
    conn: &mut D::Conn,
    session: &mut Session,
) -> QueryResult<()> {
    let version = sql::<diesel::sql_types::Text>("VERSION()");
    let settings = diesel::select((lock_mode_sql(), increment_sql(), packet_sql(), version));
    let (lock_mode, increment, packet, version): (i64, i64, i64, String) =
        one_row::<D, _, _>(conn, settings).await?;
    session.auto_increment = Some(AutoIncrement {
        lock_mode,
        increment: step(increment),
    });
    session.max_allowed_packet = Some(u64::try_from(packet).unwrap_or(u64::MAX));
    session.insert_returning = has_insert_returning(&version);
    Ok(())
}

/// Whether the server of `VERSION()` is MariaDB 10.5 or later (`10.11.6-MariaDB-0+deb12u1`),
/// which has `INSERT .. RETURNING`.
pub(super) fn has_insert_returning(version: &str) -> bool {
    let mut numbers = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let major = numbers.next().unwrap_or(0);
    let minor = numbers.next().unwrap_or(0);
    version.contains("MariaDB") && (major, minor) >= (10, 5)
}

fn lock_mode_sql() -> SqlLiteral<BigInt> {
    sql::<BigInt>("CAST(@@innodb_autoinc_lock_mode AS SIGNED)")
}

fn increment_sql() -> SqlLiteral<BigInt> {
    sql::<BigInt>("CAST(@@auto_increment_increment AS SIGNED)")
}

pub(super) fn packet_sql() -> SqlLiteral<BigInt> {
    sql::<BigInt>("CAST(@@max_allowed_packet AS SIGNED)")
}

fn step(increment: i64) -> u64 {
    u64::try_from(increment).unwrap_or(1).max(1)
}

/// The auto-increment settings as last read on this unit of work's connection, asked for
/// only if never read: after each INSERT they are read again with its keys, so a wrong
/// guess from them is caught there (see [`keys_step`]).
async fn auto_increment<D: Driver<Backend = Mysql>>(
    conn: &mut D::Conn,
    session: &mut Session,
) -> QueryResult<AutoIncrement> {
    if session.auto_increment.is_none() {
        read_settings::<D>(conn, session).await?;
    }
    session.auto_increment.ok_or_else(|| {
        diesel::result::Error::QueryBuilderError("MySQL's auto-increment settings".into())
    })
}

/// `max_allowed_packet`, asked for at most once per write.
pub(super) async fn max_allowed_packet<D: Driver<Backend = Mysql>>(
    conn: &mut D::Conn,
    session: &mut Session,
) -> QueryResult<u64> {
    match session.max_allowed_packet {
        Some(packet) => Ok(packet),
        None if session.auto_increment.is_none() => {
            read_settings::<D>(conn, session).await?;
            Ok(session.max_allowed_packet.unwrap_or(u64::MAX))
        }
        None => {
            let packet: i64 = one_row::<D, _, _>(conn, diesel::select(packet_sql())).await?;
            let packet = u64::try_from(packet).unwrap_or(u64::MAX);
            session.max_allowed_packet = Some(packet);
            Ok(packet)
        }
    }
}

/// The step between the keys of an INSERT of `rows` rows, given the settings read in the
/// same session right after it: `None` when the rows may not have consecutive keys (lock
/// mode 2), which only a multi-row INSERT sent on settings read earlier, on a connection
/// that has since become another server's, can meet.
pub(super) fn keys_step(rows: usize, actual: AutoIncrement) -> Option<u64> {
    if rows <= 1 {
        Some(1)
    } else if multi_row_ids_are_consecutive(actual.lock_mode) {
        Some(actual.increment)
    } else {
        None
    }
}

impl Dialect for Mysql {
    #[cfg(feature = "outbox")]
    super::outbox::outbox_statements!(
        claim: |query| query.for_update().skip_locked(),
        inbox: |values| diesel::insert_or_ignore_into(i::uow_inbox).values(values),
    );
    #[cfg(feature = "outbox")]
    fn outbox_groups<'q, D: Driver<Backend = Self>>(
        conn: &'q mut D::Conn,
        rows: &'q [crate::events::NewOutboxRow<'q>],
    ) -> impl std::future::Future<Output = QueryResult<Vec<usize>>> + Send + 'q {
        super::mysql_packets::outbox_groups::<D>(conn, rows)
    }
    const NAME: &'static str = "MySQL";
    const MAX_BIND_PARAMS: usize = 65535;

    /// MySQL's `START TRANSACTION` takes no isolation level: `SET TRANSACTION` (without
    /// `SESSION`) sets it for the next transaction only, sent with it in one round trip.
    fn begin_sql(mode: TransactionMode) -> Result<Option<&'static str>, Error> {
        use Isolation::*;
        Ok(Some(match (mode.level(), mode.is_read_only()) {
            (None, false) => return Ok(None),
            (None, true) => "START TRANSACTION READ ONLY",
            (Some(ReadCommitted), false) => {
                "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION"
            }
            (Some(ReadCommitted), true) => {
                "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION READ ONLY"
            }
            (Some(RepeatableRead), false) => {
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; START TRANSACTION"
            }
            (Some(RepeatableRead), true) => {
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; START TRANSACTION READ ONLY"
            }
            (Some(Serializable), false) => {
                "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; START TRANSACTION"
            }
            (Some(Serializable), true) => {
                "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; START TRANSACTION READ ONLY"
            }
        }))
    }

    async fn insert_rows<D: Driver<Backend = Self>, T: Persist<Self>>(
        conn: &mut D::Conn,
        session: &mut Session,
        rows: &[&T],
    ) -> QueryResult<Sent> {
        let mut sent = Sent {
            rows: 0,
            statements: 0,
        };
        for group in statements_for::<D, T>(conn, session, rows).await? {
            sent.rows += D::execute(conn, InsertRows(group)).await?;
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
    /// Galera requires) concurrent inserts may interleave their values: MariaDB 10.5 and
    /// later return them ([`insert_returning_keys`]) to the async driver; MySQL, and the
    /// synchronous driver (see `Driver::READS_COLUMNS_DESCRIBED_ON_EXECUTION`), get one row
    /// per statement. A generated key on MySQL must be the table's AUTO_INCREMENT
    /// column; other generated fields cannot be read back at all (MySQL has no
    /// `RETURNING`), and are refused.
    async fn insert_returning<D: Driver<Backend = Self>, T: Persist<Self>>(
        conn: &mut D::Conn,
        session: &mut Session,
        rows: &[&T],
    ) -> QueryResult<Inserted<T>> {
        let mut inserted = Inserted {
            generated: Vec::with_capacity(rows.len()),
            statements: 0,
        };
        for group in statements_for::<D, T>(conn, session, rows).await? {
            let lock_mode = match group.len() {
                1 => None,
                _ => Some(auto_increment::<D>(conn, session).await?.lock_mode),
            };
            let consecutive = lock_mode.is_some_and(multi_row_ids_are_consecutive);
            if consecutive {
                let keys = insert_with_insert_id::<D, T>(conn, session, group).await?;
                inserted.generated.extend(keys);
                inserted.statements += 1;
            } else if lock_mode.is_some()
                && session.insert_returning
                && D::READS_COLUMNS_DESCRIBED_ON_EXECUTION
            {
                let keys = insert_returning_keys::<D, T>(conn, group).await?;
                inserted.generated.extend(keys);
                inserted.statements += 1;
            } else {
                for row in group {
                    let one = std::slice::from_ref(row);
                    let key = insert_with_insert_id::<D, T>(conn, session, one).await?;
                    inserted.generated.extend(key);
                    inserted.statements += 1;
                }
            }
        }
        Ok(inserted)
    }

    fn generated_rows_per_statement<T: Persist<Self>>() -> usize {
        // Only an AUTO_INCREMENT key can be read back (through LAST_INSERT_ID).
        let only_key_generated = T::FIELDS.iter().all(|f| !f.generated || f.key);
        if only_key_generated {
            MAX_ROWS_PER_INSERT
        } else {
            1
        }
    }

    /// MySQL's form takes many rows: `() VALUES (), (), ..`.
    fn push_default_values(mut out: AstPass<'_, '_, Self>, rows: usize) -> QueryResult<()> {
        out.push_sql("() VALUES ()");
        for _ in 1..rows {
            out.push_sql(", ()");
        }
        Ok(())
    }

    /// Rows are found by `CASE`, whose cost grows with the square of the batch.
    const MAX_ROWS_PER_UPDATE: usize = MAX_ROWS_PER_CASE_UPDATE;

    fn update_binds_per_row<T: Persist<Self>>(columns: usize) -> usize {
        // Each written column's CASE binds every row's key and value; the WHERE its key and
        // persisted version.
        columns * (key_width::<T>() + 1) + update_base_width::<T>()
    }

    /// One [`UpdateRows`] per group of rows that fits the server's packet.
    async fn update_rows<D: Driver<Backend = Self>, T: Persist<Self>>(
        conn: &mut D::Conn,
        session: &mut Session,
        rows: &[(&T, &T)],
        fields: FieldSet,
    ) -> QueryResult<Sent> {
        let sizes = rows
            .iter()
            .map(|row| bind_bytes(&CaseRow { row, fields }))
            .collect::<QueryResult<Vec<usize>>>()?;
        let mut sent = Sent {
            rows: 0,
            statements: 0,
        };
        for group in packets::<D, T, _>(conn, session, rows, &sizes, "changed").await? {
            sent.rows += D::execute(conn, UpdateRows::new(group, fields)).await?;
            sent.statements += 1;
        }
        Ok(sent)
    }

    fn walk_batch_update<'b, T: Persist<Self>>(
        update: &'b UpdateRows<'_, T>,
        out: AstPass<'_, 'b, Self>,
    ) -> QueryResult<()> {
        walk_case_update(update.batch.rows, update.fields, out)
    }

    /// The rows the table has ([`FoundRows`]); the first of the others is the one.
    async fn first_missing<D: Driver<Backend = Self>, T: Persist<Self>>(
        conn: &mut D::Conn,
        rows: &[(&T, &T)],
    ) -> QueryResult<Option<usize>> {
        let found: Vec<FoundRow> = D::load(conn, FoundRows::new(rows)).await?;
        let mut present = vec![false; rows.len()];
        for FoundRow(number) in found {
            if let Some(seen) = usize::try_from(number)
                .ok()
                .and_then(|n| present.get_mut(n))
            {
                *seen = true;
            }
        }
        Ok(present.iter().position(|seen| !seen))
    }
}

/// One INSERT of `rows`, then `SELECT LAST_INSERT_ID()` with the auto-increment settings
/// of the same session (kept for the next INSERT): row `k` has key `first + k * increment`
/// (see `insert_returning` for why). Settings that do not promise consecutive keys refuse the
/// commit with an error that asks for a rerun: the rows were sent on settings read on another
/// connection, and a rerun sends one row per INSERT.
async fn insert_with_insert_id<D: Driver<Backend = Mysql>, T: Persist<Mysql>>(
    conn: &mut D::Conn,
    session: &mut Session,
    rows: &[&T],
) -> QueryResult<Vec<T::Generated>> {
    let inserted = D::execute(conn, InsertRows(rows)).await?;
    if inserted != rows.len() {
        return Err(diesel::result::Error::QueryBuilderError(
            format!("INSERT affected {inserted} rows, expected {}", rows.len()).into(),
        ));
    }
    let (first, lock_mode, increment): (u64, i64, i64) =
        one_row::<D, _, _>(conn, InsertIdAndSettings).await?;
    let actual = AutoIncrement {
        lock_mode,
        increment: step(increment),
    };
    session.auto_increment = Some(actual);
    let increment = keys_step(rows.len(), actual).ok_or_else(|| {
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::SerializationFailure,
            Box::new(format!(
                "{}: this connection's server hands out AUTO_INCREMENT values interleaved \
                 (innodb_autoinc_lock_mode = 2), so the keys of the {} rows just inserted \
                 in one statement cannot be told apart; the commit was rolled back: run it \
                 again (uow::retry does), and uow sends one row per INSERT on this server",
                T::ENTITY_NAME,
                rows.len()
            )),
        )
    })?;
    (0..rows.len() as u64)
        .map(|offset| {
            let id = offset
                .checked_mul(increment)
                .and_then(|step| first.checked_add(step));
            id.and_then(T::generated_from_insert_id)
                .ok_or_else(only_the_key_is_generated::<T>)
        })
        .collect()
}

/// The error for an entity with generated fields besides its AUTO_INCREMENT key.
fn only_the_key_is_generated<T: Entity>() -> diesel::result::Error {
    diesel::result::Error::QueryBuilderError(
        format!(
            "{}: MySQL reports only the AUTO_INCREMENT key through LAST_INSERT_ID; other \
             generated fields are not supported on MySQL: drop `generated` from them and set \
             them in Rust",
            T::ENTITY_NAME
        )
        .into(),
    )
}

/// One multi-row `INSERT .. RETURNING` its keys (MariaDB 10.5 and later), for the
/// interleaved lock mode (2, which Galera requires), where the keys of one statement's rows
/// need not be consecutive. The keys, in ascending order, are the rows' in the order of the
/// VALUES list, because of two things InnoDB promises: its AUTO_INCREMENT values are "unique
/// and monotonically increasing across all concurrently executing INSERT-like statements" in
/// every lock mode (interleaving only leaves gaps), and an `INSERT .. VALUES` inserts its rows
/// in the order listed (what `LAST_INSERT_ID()`, the first row's key, relies on too). So
/// RETURNING's own row order, which no manual promises, is never relied on: the keys are
/// sorted. A count that differs, or a key seen twice, refuses the commit.
async fn insert_returning_keys<D: Driver<Backend = Mysql>, T: Persist<Mysql>>(
    conn: &mut D::Conn,
    rows: &[&T],
) -> QueryResult<Vec<T::Generated>> {
    let returned: Vec<ReturnedKey> = D::load(conn, InsertReturningKeys(rows)).await?;
    let mut keys: Vec<u64> = returned.into_iter().map(|key| key.0).collect();
    keys.sort_unstable();
    let distinct = keys.windows(2).all(|pair| pair[0] < pair[1]);
    if keys.len() != rows.len() || !distinct {
        return Err(diesel::result::Error::QueryBuilderError(
            format!(
                "INSERT .. RETURNING gave {} distinct keys for {} new {}",
                keys.len(),
                rows.len(),
                T::ENTITY_NAME
            )
            .into(),
        ));
    }
    keys.into_iter()
        .map(|id| T::generated_from_insert_id(id).ok_or_else(only_the_key_is_generated::<T>))
        .collect()
}

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
    fn keys_follow_the_step_read_with_them_and_interleaved_multi_row_keys_are_refused() {
        let consecutive = AutoIncrement {
            lock_mode: 1,
            increment: 3,
        };
        let interleaved = AutoIncrement {
            lock_mode: 2,
            increment: 3,
        };
        assert_eq!(keys_step(5, consecutive), Some(3));
        assert_eq!(keys_step(1, consecutive), Some(1));
        assert_eq!(
            keys_step(1, interleaved),
            Some(1),
            "one row: nothing to tell apart"
        );
        assert_eq!(keys_step(2, interleaved), None);
    }

    #[test]
    fn insert_returning_is_mariadb_10_5_and_later() {
        assert!(has_insert_returning("10.11.6-MariaDB-0+deb12u1"));
        assert!(has_insert_returning("10.5.0-MariaDB"));
        assert!(has_insert_returning("11.4.2-MariaDB-log"));
        assert!(!has_insert_returning("10.4.32-MariaDB"));
        assert!(!has_insert_returning("8.0.36"));
        assert!(!has_insert_returning("8.4.0-MySQL"));
        assert!(!has_insert_returning(""));
    }
}
