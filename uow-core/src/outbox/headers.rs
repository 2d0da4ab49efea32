//! The names of the headers the broker publishers (features `rabbitmq` and `nats`) put on
//! every message, besides its body (the event's JSON): a consumer reads the aggregate, the
//! outbox sequence and the creation time from them.
//!
//! RabbitMQ carries the message id and the event type in its own properties (`message_id`,
//! `type`), and these four in the message's headers table (the text ones as long strings,
//! the numbers as 64-bit integers). NATS JetStream carries the message id in `Nats-Msg-Id`,
//! and the event type in [`EVENT_TYPE`] beside these four, all as text.
//!
//! ```
//! use uow::outbox::headers;
//! assert_eq!(
//!     [headers::AGGREGATE_TYPE, headers::AGGREGATE_KEY, headers::SEQUENCE, headers::CREATED_AT],
//!     ["aggregate_type", "aggregate_key", "sequence", "created_at"],
//! );
//! ```

/// The entity's name ([`OutboxMessage::aggregate_type`](super::OutboxMessage::aggregate_type)).
///
/// ```
/// assert_eq!(uow::outbox::headers::AGGREGATE_TYPE, "aggregate_type");
/// ```
pub const AGGREGATE_TYPE: &str = "aggregate_type";

/// The entity's key as JSON ([`OutboxMessage::aggregate_key`](super::OutboxMessage::aggregate_key)).
///
/// ```
/// assert_eq!(uow::outbox::headers::AGGREGATE_KEY, "aggregate_key");
/// ```
pub const AGGREGATE_KEY: &str = "aggregate_key";

/// The row's place in the outbox ([`OutboxMessage::sequence`](super::OutboxMessage::sequence)).
///
/// ```
/// assert_eq!(uow::outbox::headers::SEQUENCE, "sequence");
/// ```
pub const SEQUENCE: &str = "sequence";

/// When the event was recorded, in microseconds since the Unix epoch
/// ([`OutboxMessage::created_at`](super::OutboxMessage::created_at)).
///
/// ```
/// assert_eq!(uow::outbox::headers::CREATED_AT, "created_at");
/// ```
pub const CREATED_AT: &str = "created_at";

/// The event's name ([`OutboxMessage::event_type`](super::OutboxMessage::event_type)), on NATS
/// (RabbitMQ has the `type` property for it).
///
/// ```
/// assert_eq!(uow::outbox::headers::EVENT_TYPE, "event_type");
/// ```
pub const EVENT_TYPE: &str = "event_type";
