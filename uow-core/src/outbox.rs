//! The transactional outbox (feature `outbox`): domain events written to a table in the same
//! database transaction as the changes they describe, then published to a broker by a relay,
//! at least once and in order per aggregate; and the inbox, with which a consumer handles each
//! message once.
//!
//! # Writing events
//!
//! An event type opts in by implementing [`OutboxEvent`] (`serde::Serialize` plus the name
//! consumers know it by). [`UnitOfWork::record_outbox_event`](crate::UnitOfWork::record_outbox_event)
//! records it like [`record_event`](crate::UnitOfWork::record_event) (it is handed out by
//! `take_events` too) and serializes it at once; the commit that writes the entity's changes
//! inserts one `uow_outbox` row per event, in the order they were recorded, before its
//! COMMIT. The rules are the unit of work's: a failed or rolled back commit writes no row and
//! keeps the events for the retry; a scope that rolls back drops the events recorded in it; an
//! entity refreshed since drops its events.
//!
//! ```
//! # use uow::prelude::*;
//! # use diesel::prelude::*;
//! diesel::table! { accounts (id) { id -> Integer, balance -> BigInt } }
//!
//! #[derive(Tracked, Clone, Debug, PartialEq)]
//! #[tracked(table = accounts)]
//! struct Account { #[tracked(generated)] id: i32, balance: i64 }
//!
//! #[derive(serde::Serialize)]
//! struct AccountOpened { balance: i64 }
//! impl uow::outbox::OutboxEvent for AccountOpened {
//!     const EVENT_TYPE: &'static str = "AccountOpened";
//! }
//!
//! let mut conn = SqliteConnection::establish(":memory:")?;
//! diesel::sql_query("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance BIGINT NOT NULL)").execute(&mut conn)?;
//! for statement in uow::outbox::SQLITE_SCHEMA {
//!     diesel::sql_query(*statement).execute(&mut conn)?;
//! }
//! let mut uow = UnitOfWork::new();
//! let account = uow.register_new(Account { id: 0, balance: 100 })?;
//! uow.record_outbox_event(&account, AccountOpened { balance: 100 })?;
//! let report = uow.commit(&mut conn)?; // the account and its event, in one transaction
//! assert_eq!(report.inserted("uow_outbox"), 1);
//!
//! use uow::outbox::schema::uow_outbox::dsl::*;
//! let (key, kind, json): (String, String, String) = uow_outbox
//!     .select((aggregate_key, event_type, payload))
//!     .first(&mut conn)?;
//! assert_eq!((key.as_str(), kind.as_str(), json.as_str()), ("1", "AccountOpened", r#"{"balance":100}"#));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The tables
//!
//! `uow_outbox` (`sequence` orders the rows, `message_id` is a UUID that brokers and the
//! inbox deduplicate on, `aggregate_type` is the entity's name and `aggregate_key` its key as
//! JSON, `payload` the event as JSON, `created_at` and `published_at` in microseconds since
//! the Unix epoch) and `uow_inbox` (`message_id`, `handled_at`). Their schema ships as SQL for
//! each backend ([`SQLITE_SCHEMA`], [`POSTGRES_SCHEMA`], [`MYSQL_SCHEMA`], one statement per
//! item) and as Diesel migrations in this crate's `migrations/<backend>/` folder; [`schema`]
//! holds their `table!` definitions.
//!
//! A commit inserts its events' rows after the entities' statements, in the order recorded:
//! one INSERT per 1,000 rows, and on MySQL and MariaDB fewer rows per INSERT when they would
//! not fit the server's `max_allowed_packet` (a larger statement makes the server drop the
//! connection). An event that alone does not fit fails the commit before any of the outbox
//! is sent, with an error that says to raise `max_allowed_packet` or record a smaller event.
//!
//! # Delivery
//!
//! With the `async` feature, [`Relay`] publishes unpublished rows through a [`Publisher`]
//! (RabbitMQ with feature `rabbitmq`, NATS JetStream with feature `nats`) and marks them
//! published only after the broker confirmed them. What that guarantees, and what it does not:
//!
//! - **At least once.** A row is marked in the transaction that claimed it, after the confirm:
//!   a relay that dies in between leaves it unpublished, and it is published again. Consumers
//!   drop the duplicates with the inbox ([`handle_once`]).
//! - **In order per aggregate.** Rows are published in `sequence` order, and a relay skips a
//!   row while an earlier unpublished row of the same aggregate is claimed by another relay.
//!   `sequence` follows the order in which commits inserted their rows: for two commits that
//!   both change the aggregate's row that is their commit order (the second waits for the
//!   first's row lock); an event recorded on an entity its commit does not change has no such
//!   lock to order it.
//! - **Several relays.** On PostgreSQL and MySQL they claim rows with
//!   `FOR UPDATE SKIP LOCKED` and work side by side. SQLite has no row locks: a relay's
//!   transaction is `BEGIN IMMEDIATE`, so relays take turns, and the application's writers
//!   wait (up to their busy timeout) while a batch is published: keep batches small there,
//!   and give writers a moment between batches (`Relay::pause_between_batches`).
//! - **Not covered:** exactly-once delivery to a consumer that does not use the inbox; order
//!   across aggregates; an event whose commit succeeded on the server while the connection was
//!   lost during COMMIT (`Error::ConnectionLost { during_commit: true }`): its row may exist
//!   although the events stay in memory.

use std::any::Any;
use std::future::Future;

#[cfg(any(feature = "rabbitmq", feature = "nats"))]
mod broker_error;
#[cfg(any(feature = "rabbitmq", feature = "nats"))]
pub mod headers;
mod inbox;
#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "rabbitmq")]
mod rabbitmq;
mod record;
#[cfg(feature = "async")]
mod relay;

pub use crate::outbox_table::{
    schema, OutboxMessage, MYSQL_SCHEMA, POSTGRES_SCHEMA, SQLITE_SCHEMA,
};
/// The NATS client the [`JetStreamPublisher`] works with (async-nats), re-exported so that an
/// application builds its `Context` with the same version.
#[cfg(feature = "nats")]
pub use async_nats;
#[cfg(any(feature = "rabbitmq", feature = "nats"))]
pub use broker_error::BrokerError;
pub use inbox::handle_once;
/// The RabbitMQ client the [`RabbitMqPublisher`] works with (lapin), re-exported so that an
/// application opens its `Channel` with the same version.
#[cfg(feature = "rabbitmq")]
pub use lapin;
#[cfg(feature = "nats")]
pub use nats::JetStreamPublisher;
#[cfg(feature = "rabbitmq")]
pub use rabbitmq::RabbitMqPublisher;
#[cfg(feature = "async")]
pub use relay::Relay;

/// An event type written to the outbox: serialized with serde to JSON, and named for
/// consumers by [`EVENT_TYPE`](Self::EVENT_TYPE).
///
/// ```
/// #[derive(serde::Serialize)]
/// struct OrderPlaced { order: i32, total: i64 }
///
/// impl uow::outbox::OutboxEvent for OrderPlaced {
///     const EVENT_TYPE: &'static str = "OrderPlaced";
/// }
/// assert_eq!(<OrderPlaced as uow::outbox::OutboxEvent>::EVENT_TYPE, "OrderPlaced");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an outbox event",
    label = "no `OutboxEvent` implementation",
    note = "implement `uow::outbox::OutboxEvent` (and `serde::Serialize`) for it, or record it \
            with `record_event` to keep it in memory only"
)]
pub trait OutboxEvent: serde::Serialize + Any + Send {
    /// The name consumers know the event by (`"OrderPlaced"`); written to `event_type`.
    const EVENT_TYPE: &'static str;
}

/// The error a [`Publisher`] reports; the relay wraps it in [`Error::Publish`](crate::Error::Publish).
pub type PublishError = Box<dyn std::error::Error + Send + Sync>;

/// Sends outbox messages to a broker, for the [`Relay`]. `publish` resolves `Ok` only once the
/// broker has confirmed every message (a RabbitMQ publisher confirm, a JetStream ack): only
/// then does the relay mark the rows published.
///
/// ```
/// use uow::outbox::{OutboxMessage, PublishError, Publisher};
///
/// /// Keeps what it is given: a publisher for tests.
/// #[derive(Default)]
/// struct InMemory(Vec<OutboxMessage>);
///
/// impl Publisher for InMemory {
///     const NAME: &'static str = "memory";
///     async fn publish(&mut self, messages: &[OutboxMessage]) -> Result<(), PublishError> {
///         self.0.extend_from_slice(messages);
///         Ok(())
///     }
/// }
/// ```
pub trait Publisher: Send {
    /// The broker's name, for errors (`"RabbitMQ"`).
    const NAME: &'static str;

    /// Publishes `messages` in the order given, returning once the broker confirmed them all.
    /// On an error the relay marks none of them; some may have reached the broker, and are
    /// published again (each keeps its `message_id`).
    fn publish(
        &mut self,
        messages: &[OutboxMessage],
    ) -> impl Future<Output = Result<(), PublishError>> + Send;
}

/// Microseconds since the Unix epoch, now (0 on a clock set before 1970).
pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
