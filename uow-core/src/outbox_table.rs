//! The outbox's and the inbox's tables, as data: their `table!` definitions, the SQL that
//! creates them on each backend, and [`OutboxMessage`], one row as the relay reads it.
//! Re-exported by `outbox` (the public API); the execution layer reads and writes them.

/// The `table!` definitions of the outbox and the inbox.
pub mod schema {
    diesel::table! {
        /// One domain event waiting to be published (`published_at` null) or published.
        uow_outbox (sequence) {
            /// The order rows were inserted in.
            sequence -> BigInt,
            /// A UUID: brokers and the inbox deduplicate on it.
            message_id -> Text,
            /// The entity's name (`Entity::ENTITY_NAME`).
            aggregate_type -> Text,
            /// The entity's key as JSON.
            aggregate_key -> Text,
            /// `OutboxEvent::EVENT_TYPE`.
            event_type -> Text,
            /// The event as JSON.
            payload -> Text,
            /// Microseconds since the Unix epoch.
            created_at -> BigInt,
            /// Microseconds since the Unix epoch; null until a broker confirmed it.
            published_at -> Nullable<BigInt>,
        }
    }

    diesel::table! {
        /// The messages a consumer has handled (see `handle_once`).
        uow_inbox (message_id) {
            /// The message's id (the outbox's `message_id`).
            message_id -> Text,
            /// Microseconds since the Unix epoch.
            handled_at -> BigInt,
        }
    }
}

/// The outbox and inbox tables on SQLite, one statement per item (also shipped as a Diesel
/// migration in `migrations/sqlite/`).
pub const SQLITE_SCHEMA: &[&str] = &split_statements::<3>(include_str!(
    "../migrations/sqlite/2026-12-01-000000_uow_outbox/up.sql"
));

/// The outbox and inbox tables on PostgreSQL, one statement per item (also shipped as a Diesel
/// migration in `migrations/postgres/`).
pub const POSTGRES_SCHEMA: &[&str] = &split_statements::<3>(include_str!(
    "../migrations/postgres/2026-12-01-000000_uow_outbox/up.sql"
));

/// The outbox and inbox tables on MySQL and MariaDB, one statement per item (also shipped as a
/// Diesel migration in `migrations/mysql/`).
pub const MYSQL_SCHEMA: &[&str] = &split_statements::<2>(include_str!(
    "../migrations/mysql/2026-12-01-000000_uow_outbox/up.sql"
));

/// The `N` statements of a migration, split at each `;` that ends a line (the files have no
/// other), at compile time.
const fn split_statements<const N: usize>(sql: &'static str) -> [&'static str; N] {
    let bytes = sql.as_bytes();
    let mut out = [""; N];
    let (mut start, mut i, mut n) = (0, 0, 0);
    while i < bytes.len() {
        if bytes[i] == b';' && (i + 1 == bytes.len() || bytes[i + 1] == b'\n') {
            assert!(n < N, "more statements in the migration than declared");
            let (_, rest) = bytes.split_at(start);
            let (statement, _) = rest.split_at(i - start);
            out[n] = match std::str::from_utf8(statement) {
                Ok(statement) => statement,
                Err(_) => panic!("the migration is not UTF-8"),
            };
            n += 1;
            start = i + 1;
        }
        i += 1;
    }
    assert!(n == N, "fewer statements in the migration than declared");
    out
}

/// One row of the outbox, as the relay reads it and a [`Publisher`](crate::outbox::Publisher) sends it.
///
/// ```
/// let message = uow::outbox::OutboxMessage {
///     sequence: 7,
///     message_id: "6f1c9e8e-5f43-4f5e-9a55-1b8b8d7c2a10".into(),
///     aggregate_type: "Account".into(),
///     aggregate_key: "42".into(),
///     event_type: "AccountOpened".into(),
///     payload: r#"{"balance":100}"#.into(),
///     created_at: 1_764_633_600_000_000,
/// };
/// assert_eq!(message.aggregate(), ("Account", "42"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, diesel::Queryable)]
pub struct OutboxMessage {
    /// The order rows were inserted in.
    pub sequence: i64,
    /// A UUID, the same each time the row is published: brokers and the inbox deduplicate on
    /// it.
    pub message_id: String,
    /// The entity's name.
    pub aggregate_type: String,
    /// The entity's key as JSON.
    pub aggregate_key: String,
    /// [`OutboxEvent::EVENT_TYPE`](crate::outbox::OutboxEvent::EVENT_TYPE).
    pub event_type: String,
    /// The event as JSON.
    pub payload: String,
    /// Microseconds since the Unix epoch.
    pub created_at: i64,
}

impl OutboxMessage {
    /// The aggregate it belongs to: its type and key. Order is kept per aggregate.
    ///
    /// ```
    /// # let message = uow::outbox::OutboxMessage { sequence: 1, message_id: "m".into(),
    /// #     aggregate_type: "Account".into(), aggregate_key: "42".into(),
    /// #     event_type: "AccountOpened".into(), payload: "{}".into(), created_at: 0 };
    /// let (kind, key) = message.aggregate();
    /// assert_eq!(format!("{kind}/{key}"), "Account/42");
    /// ```
    pub fn aggregate(&self) -> (&str, &str) {
        (&self.aggregate_type, &self.aggregate_key)
    }
}
