//! The relay's publisher to NATS JetStream (feature `nats`): async-nats, the message id in
//! `Nats-Msg-Id` for the stream's duplicate window, acks awaited after the batch is sent.

use std::collections::VecDeque;
use std::fmt;

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::{self, Context};
use async_nats::{HeaderMap, HeaderValue};

use super::{headers, BrokerError, OutboxMessage, PublishError, Publisher};

/// Chooses a message's subject.
type Subject = Box<dyn Fn(&OutboxMessage) -> String + Send + Sync>;

/// Publishes outbox messages to NATS JetStream, for the [`Relay`](super::Relay).
///
/// Each message goes to the subject `"{prefix}.{aggregate_type}.{event_type}"` (unless
/// [`subject`](Self::subject) chooses another), which a stream must take. The body is the
/// event's JSON; the headers are `Nats-Msg-Id` (the outbox's message id, the same each time a
/// row is published), `Content-Type` `application/json`, and [`event_type`, `aggregate_type`,
/// `aggregate_key`, `sequence`, `created_at`](super::headers).
///
/// Through `Nats-Msg-Id`, the stream itself drops a message published again within its
/// duplicate window (2 minutes unless the stream says otherwise): a relay that died after the
/// ack but before marking the row leaves no second copy in the stream when the next relay
/// publishes it within the window. Past the window the copy is stored, and consumers drop it
/// with the inbox. The server acks such a duplicate as stored; [`duplicates`](Self::duplicates)
/// counts them.
///
/// [`publish`](Publisher::publish) sends the messages of a batch one after the other without
/// waiting, then waits for the acks (at most [`max_pending`](Self::max_pending) unacked at a
/// time): one round trip per batch, not per message. It fails, and the relay marks nothing
/// published, if an ack does not come (no stream takes the subject, the server timed out) or
/// reports an error.
///
/// ```no_run
/// # #[cfg(feature = "postgres")] fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use diesel_async::{AsyncConnection, AsyncPgConnection};
/// use uow::outbox::{JetStreamPublisher, Relay};
///
/// tokio::runtime::Runtime::new()?.block_on(async {
///     let mut conn = AsyncPgConnection::establish("postgres://localhost/app").await?;
///     // A stream must take the subjects "events.>" (see `JetStreamPublisher::new`).
///     let publisher = JetStreamPublisher::connect("nats://127.0.0.1:4222", "events").await?;
///     let mut relay = Relay::new(publisher);
///     tokio::select! {
///         failed = relay.run(&mut conn, tokio::time::sleep) => failed?,
///         _ = tokio::signal::ctrl_c() => {}
///     }
///     Ok(())
/// })
/// # }
/// # #[cfg(not(feature = "postgres"))] fn main() {}
/// ```
pub struct JetStreamPublisher {
    context: Context,
    subject: Subject,
    max_pending: usize,
    duplicates: u64,
}

impl JetStreamPublisher {
    /// A publisher on `context` to subjects under `prefix`: `"{prefix}.{aggregate_type}.{event_type}"`.
    /// The stream that stores them is the application's to create (a stream whose subjects
    /// include `"{prefix}.>"`), with the duplicate window it wants.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use uow::outbox::async_nats::jetstream::{self, stream};
    /// use uow::outbox::JetStreamPublisher;
    ///
    /// tokio::runtime::Runtime::new()?.block_on(async {
    ///     let client = uow::outbox::async_nats::connect("nats://127.0.0.1:4222").await?;
    ///     let context = jetstream::new(client);
    ///     context
    ///         .get_or_create_stream(stream::Config {
    ///             name: "EVENTS".into(),
    ///             subjects: vec!["events.>".into()],
    ///             duplicate_window: std::time::Duration::from_secs(600),
    ///             ..Default::default()
    ///         })
    ///         .await?;
    ///     let publisher = JetStreamPublisher::new(context, "events");
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub fn new(context: Context, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        JetStreamPublisher {
            context,
            subject: Box::new(move |m: &OutboxMessage| {
                format!("{prefix}.{}.{}", m.aggregate_type, m.event_type)
            }),
            max_pending: 256,
            duplicates: 0,
        }
    }

    /// Connects to the NATS server at `url` (`nats://host:port`; the client reconnects by
    /// itself after the connection is lost) and makes a publisher to subjects under `prefix`.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use uow::outbox::JetStreamPublisher;
    ///
    /// tokio::runtime::Runtime::new()?.block_on(async {
    ///     let publisher = JetStreamPublisher::connect("nats://127.0.0.1:4222", "events").await?;
    ///     assert_eq!(publisher.duplicates(), 0);
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self, BrokerError> {
        let client = async_nats::connect(url).await.map_err(|e| {
            failure(format!(
                "cannot connect to NATS at {url} ({e}): check that the server runs there \
                 (with JetStream enabled: `nats-server -js`)"
            ))
        })?;
        Ok(Self::new(jetstream::new(client), prefix))
    }

    /// Chooses each message's subject with `subject` instead of
    /// `"{prefix}.{aggregate_type}.{event_type}"`. A subject is tokens separated by `.`,
    /// without spaces or the wildcards `*` and `>`.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use uow::outbox::JetStreamPublisher;
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// // One subject per aggregate, so a consumer can filter on one entity's events.
    /// let publisher = JetStreamPublisher::connect("nats://127.0.0.1:4222", "events")
    ///     .await?
    ///     .subject(|m| format!("events.{}.{}", m.aggregate_type, m.aggregate_key.trim_matches('"')));
    /// # Ok::<(), Box<dyn std::error::Error>>(()) })
    /// # }
    /// ```
    pub fn subject(
        mut self,
        subject: impl Fn(&OutboxMessage) -> String + Send + Sync + 'static,
    ) -> Self {
        self.subject = Box::new(subject);
        self
    }

    /// At most `messages` published and not yet acked (at least 1; 256 by default); keep it
    /// at most the context's `max_ack_inflight` (5,000 by default), which the client would
    /// otherwise wait on while this publisher holds the acks.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use uow::outbox::JetStreamPublisher;
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let publisher = JetStreamPublisher::connect("nats://127.0.0.1:4222", "events")
    ///     .await?
    ///     .max_pending(1_000);
    /// # Ok::<(), Box<dyn std::error::Error>>(()) })
    /// # }
    /// ```
    pub fn max_pending(mut self, messages: usize) -> Self {
        self.max_pending = messages.max(1);
        self
    }

    /// How many published messages the server acked as duplicates since this publisher was
    /// made: ids it had stored within the stream's duplicate window, so it did not store them
    /// again (a row published again after a relay died before marking it).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use uow::outbox::JetStreamPublisher;
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let publisher = JetStreamPublisher::connect("nats://127.0.0.1:4222", "events").await?;
    /// assert_eq!(publisher.duplicates(), 0, "nothing published yet");
    /// # Ok::<(), Box<dyn std::error::Error>>(()) })
    /// # }
    /// ```
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// The JetStream context it publishes through.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use uow::outbox::JetStreamPublisher;
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let publisher = JetStreamPublisher::connect("nats://127.0.0.1:4222", "events").await?;
    /// let stream = publisher.context().get_stream("EVENTS").await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(()) })
    /// # }
    /// ```
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// Waits for the ack of one message sent to `subject`.
    async fn acked(
        &mut self,
        message: &OutboxMessage,
        subject: &str,
        ack: PublishAckFuture,
    ) -> Result<(), BrokerError> {
        match ack.await {
            Ok(ack) => {
                if ack.duplicate {
                    self.duplicates += 1;
                }
                Ok(())
            }
            Err(e) => Err(failure(match e.kind() {
                PublishErrorKind::StreamNotFound => format!(
                    "no JetStream stream takes the subject {subject:?} of message {}: create \
                     a stream whose subjects include it",
                    message.message_id
                ),
                PublishErrorKind::TimedOut => format!(
                    "NATS JetStream did not ack message {} on {subject:?} in time: check that \
                     the server and the stream's cluster are up",
                    message.message_id
                ),
                _ => format!(
                    "NATS JetStream did not store message {} on {subject:?} ({e}): check the \
                     stream's limits and the server's log",
                    message.message_id
                ),
            })),
        }
    }
}

impl Publisher for JetStreamPublisher {
    const NAME: &'static str = "NATS JetStream";

    async fn publish(&mut self, messages: &[OutboxMessage]) -> Result<(), PublishError> {
        let mut pending: VecDeque<(&OutboxMessage, String, PublishAckFuture)> =
            VecDeque::with_capacity(messages.len().min(self.max_pending));
        for message in messages {
            if pending.len() >= self.max_pending {
                if let Some((message, subject, ack)) = pending.pop_front() {
                    self.acked(message, &subject, ack).await?;
                }
            }
            let subject = (self.subject)(message);
            check_subject(&subject, message)?;
            let ack = self
                .context
                .publish_with_headers(
                    subject.clone(),
                    headers(message)?,
                    message.payload.clone().into(),
                )
                .await
                .map_err(|e| {
                    failure(format!(
                        "cannot publish message {} to NATS on {subject:?} ({e}): check that \
                         the server is reachable",
                        message.message_id
                    ))
                })?;
            pending.push_back((message, subject, ack));
        }
        while let Some((message, subject, ack)) = pending.pop_front() {
            self.acked(message, &subject, ack).await?;
        }
        Ok(())
    }
}

impl fmt::Debug for JetStreamPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamPublisher")
            .field("max_pending", &self.max_pending)
            .field("duplicates", &self.duplicates)
            .finish_non_exhaustive()
    }
}

/// A subject NATS accepts for publishing: non-empty tokens separated by `.`, no whitespace,
/// no wildcard.
fn check_subject(subject: &str, message: &OutboxMessage) -> Result<(), BrokerError> {
    let valid = !subject.is_empty()
        && subject
            .split('.')
            .all(|t| !t.is_empty() && t != "*" && t != ">")
        && !subject.chars().any(char::is_whitespace);
    if valid {
        Ok(())
    } else {
        Err(failure(format!(
            "{subject:?}, the subject of message {}, is not a NATS subject (tokens separated \
             by '.', without spaces or wildcards): choose another with \
             `JetStreamPublisher::subject`",
            message.message_id
        )))
    }
}

/// The headers of `message`.
fn headers(message: &OutboxMessage) -> Result<HeaderMap, BrokerError> {
    let value = |what: &str, text: &str| {
        text.parse::<HeaderValue>().map_err(|_| {
            failure(format!(
                "the {what} of message {} cannot be a NATS header (it has a line break)",
                message.message_id
            ))
        })
    };
    let mut map = HeaderMap::new();
    map.insert(
        async_nats::header::NATS_MESSAGE_ID,
        value("message id", &message.message_id)?,
    );
    map.insert("Content-Type", value("content type", "application/json")?);
    map.insert(
        headers::EVENT_TYPE,
        value("event type", &message.event_type)?,
    );
    map.insert(
        headers::AGGREGATE_TYPE,
        value("aggregate type", &message.aggregate_type)?,
    );
    map.insert(
        headers::AGGREGATE_KEY,
        value("aggregate key", &message.aggregate_key)?,
    );
    map.insert(headers::SEQUENCE, HeaderValue::from(message.sequence));
    map.insert(headers::CREATED_AT, HeaderValue::from(message.created_at));
    Ok(map)
}

fn failure(message: String) -> BrokerError {
    BrokerError::new(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> OutboxMessage {
        OutboxMessage {
            sequence: 3,
            message_id: "8d7c2a10-0b8c-4f1e-9a55-1b8b7d0a4a8e".into(),
            aggregate_type: "Account".into(),
            aggregate_key: "7".into(),
            event_type: "Deposited".into(),
            payload: "{}".into(),
            created_at: 1_764_633_600_000_001,
        }
    }

    #[test]
    fn headers_carry_the_id_and_the_fields() {
        let map = match headers(&message()) {
            Ok(map) => map,
            Err(e) => panic!("{e}"),
        };
        let get = |name: &str| map.get(name).map(|v| v.as_str().to_owned());
        assert_eq!(
            get("Nats-Msg-Id").as_deref(),
            Some("8d7c2a10-0b8c-4f1e-9a55-1b8b7d0a4a8e")
        );
        assert_eq!(get("Content-Type").as_deref(), Some("application/json"));
        assert_eq!(get("event_type").as_deref(), Some("Deposited"));
        assert_eq!(get("aggregate_type").as_deref(), Some("Account"));
        assert_eq!(get("aggregate_key").as_deref(), Some("7"));
        assert_eq!(get("sequence").as_deref(), Some("3"));
        assert_eq!(get("created_at").as_deref(), Some("1764633600000001"));
    }

    #[test]
    fn a_line_break_in_a_header_is_an_error_not_a_panic() {
        let mut broken = message();
        broken.aggregate_key = "\"a\nb\"".into();
        let Err(e) = headers(&broken) else {
            panic!("a line break cannot be in a header")
        };
        assert!(e.to_string().contains("aggregate key"), "{e}");
    }

    #[test]
    fn subjects_with_spaces_or_wildcards_are_refused() {
        let m = message();
        assert!(check_subject("events.Account.Deposited", &m).is_ok());
        for bad in ["", "events..x", "events.*", "events.>", "events.my account"] {
            assert!(check_subject(bad, &m).is_err(), "{bad:?}");
        }
    }
}
