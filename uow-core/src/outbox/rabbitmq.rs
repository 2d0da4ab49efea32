//! The relay's publisher to RabbitMQ (feature `rabbitmq`): lapin, publisher confirms, every
//! message of a batch sent before the confirms are awaited.

use std::fmt;
use std::time::Duration;

use lapin::message::BasicReturnMessage;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

use super::{headers, BrokerError, OutboxMessage, PublishError, Publisher};

/// Chooses a message's routing key.
type RoutingKey = Box<dyn Fn(&OutboxMessage) -> String + Send + Sync>;

/// Publishes outbox messages to a RabbitMQ exchange with publisher confirms, for the
/// [`Relay`](super::Relay).
///
/// Each message is one AMQP message: the body is the event's JSON; the properties are
/// `message_id` (the outbox's, the same each time a row is published: consumers deduplicate
/// on it), `type` (the event type), `content_type` `application/json`, persistent delivery
/// mode, a timestamp (seconds), and the headers [`aggregate_type`, `aggregate_key`,
/// `sequence`, `created_at`](super::headers). The routing key is
/// `"{aggregate_type}.{event_type}"` unless [`routing_key`](Self::routing_key) chooses
/// another.
///
/// [`publish`](Publisher::publish) sends every message of the batch on one channel (in order,
/// so a queue receives them in order), then waits for the broker's confirm of each. It fails,
/// and the relay marks nothing published, if the broker refuses a message (a nack: it could
/// not store it), if a message is returned as unroutable (it is published `mandatory`: no
/// queue is bound for its routing key; see [`mandatory`](Self::mandatory)), if the channel
/// fails, or if the batch is not confirmed within [`confirm_timeout`](Self::confirm_timeout)
/// (30 s). A publisher made with [`connect`](Self::connect) opens a new connection on the next
/// batch after its connection was lost; one made from a channel ([`new`](Self::new)) reports
/// the closed channel. It runs on a tokio runtime with its timer enabled (lapin's runtime).
///
/// ```no_run
/// # #[cfg(feature = "postgres")] fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use diesel_async::{AsyncConnection, AsyncPgConnection};
/// use uow::outbox::{RabbitMqPublisher, Relay};
///
/// tokio::runtime::Runtime::new()?.block_on(async {
///     let mut conn = AsyncPgConnection::establish("postgres://localhost/app").await?;
///     // The exchange "events" (a topic exchange, say) must exist, with queues bound to it.
///     let publisher = RabbitMqPublisher::connect("amqp://guest:guest@127.0.0.1:5672/%2f", "events").await?;
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
pub struct RabbitMqPublisher {
    channel: Channel,
    /// Set by `connect`: the connection it opened (kept open while the publisher lives) and
    /// the URI to open a new one when it is lost.
    connection: Option<(Connection, String)>,
    exchange: ShortString,
    routing_key: RoutingKey,
    mandatory: bool,
    confirm_timeout: Duration,
}

impl RabbitMqPublisher {
    /// A publisher on `channel`, to `exchange` (`""`, the default exchange, routes each
    /// message to the queue named by its routing key: see [`routing_key`](Self::routing_key)).
    /// Turns publisher confirms on for the channel (`confirm.select`): give it a channel of
    /// its own, on which nothing else publishes.
    ///
    /// Fails if the channel is closed, or the exchange name is longer than 255 bytes.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use uow::outbox::lapin::{Connection, ConnectionProperties};
    /// use uow::outbox::RabbitMqPublisher;
    ///
    /// tokio::runtime::Runtime::new()?.block_on(async {
    ///     let connection =
    ///         Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f", ConnectionProperties::default()).await?;
    ///     let publisher = RabbitMqPublisher::new(connection.create_channel().await?, "events").await?;
    ///     assert_eq!(publisher.exchange(), "events");
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub async fn new(channel: Channel, exchange: impl Into<String>) -> Result<Self, BrokerError> {
        let exchange = exchange.into();
        let exchange = ShortString::try_new(exchange.clone()).map_err(|e| {
            failure(format!(
                "the exchange name {exchange:?} is not a valid AMQP name ({e})"
            ))
        })?;
        if !channel.status().confirm() {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| {
                    failure(format!(
                        "cannot turn on publisher confirms on the RabbitMQ channel ({e}): \
                         check that the channel is open and that nothing published on it \
                         in transaction mode"
                    ))
                })?;
        }
        Ok(RabbitMqPublisher {
            channel,
            connection: None,
            exchange,
            routing_key: Box::new(default_routing_key),
            mandatory: true,
            confirm_timeout: Duration::from_secs(30),
        })
    }

    /// Connects to the broker at `uri` (`amqp://user:password@host:port/vhost`, the vhost
    /// URL-encoded: `%2f` is `/`) on the current tokio runtime, opens a channel, and makes a
    /// publisher to `exchange` on it. After the connection is lost, the next batch connects
    /// again.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use uow::outbox::RabbitMqPublisher;
    ///
    /// tokio::runtime::Runtime::new()?.block_on(async {
    ///     let publisher = RabbitMqPublisher::connect("amqp://guest:guest@127.0.0.1:5672/%2f", "events").await?;
    ///     assert!(publisher.channel().status().connected());
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub async fn connect(uri: &str, exchange: impl Into<String>) -> Result<Self, BrokerError> {
        let (connection, channel) = open(uri).await?;
        let mut publisher = Self::new(channel, exchange).await?;
        publisher.connection = Some((connection, uri.to_owned()));
        Ok(publisher)
    }

    /// Chooses each message's routing key with `key` (by default
    /// `"{aggregate_type}.{event_type}"`, as a topic exchange expects). With the default
    /// exchange `""`, the routing key is the name of the queue the message goes to.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use uow::outbox::RabbitMqPublisher;
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// // Every event into the queue "account-events", through the default exchange.
    /// let publisher = RabbitMqPublisher::connect("amqp://127.0.0.1:5672/%2f", "")
    ///     .await?
    ///     .routing_key(|_message| "account-events".to_owned());
    /// // Or one key per event type, for a direct or topic exchange.
    /// let publisher = RabbitMqPublisher::connect("amqp://127.0.0.1:5672/%2f", "events")
    ///     .await?
    ///     .routing_key(|message| format!("events.{}", message.event_type));
    /// # Ok::<(), Box<dyn std::error::Error>>(()) })
    /// # }
    /// ```
    pub fn routing_key(
        mut self,
        key: impl Fn(&OutboxMessage) -> String + Send + Sync + 'static,
    ) -> Self {
        self.routing_key = Box::new(key);
        self
    }

    /// Whether messages are published `mandatory` (the default): the broker returns a message
    /// no queue is bound to receive, and the batch fails, so no event is lost to a missing
    /// binding. `false` lets the broker drop such messages (an exchange nobody listens to yet).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use uow::outbox::RabbitMqPublisher;
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let publisher = RabbitMqPublisher::connect("amqp://127.0.0.1:5672/%2f", "audit")
    ///     .await?
    ///     .mandatory(false);
    /// # Ok::<(), Box<dyn std::error::Error>>(()) })
    /// # }
    /// ```
    pub fn mandatory(mut self, mandatory: bool) -> Self {
        self.mandatory = mandatory;
        self
    }

    /// The longest a batch may take to send and be confirmed (30 s by default); past it, the
    /// batch fails and the relay marks nothing (the rows are published again). A broker under
    /// a resource alarm blocks publishers without failing them: this bounds how long a relay
    /// holds its batch's rows meanwhile.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use uow::outbox::RabbitMqPublisher;
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let publisher = RabbitMqPublisher::connect("amqp://127.0.0.1:5672/%2f", "events")
    ///     .await?
    ///     .confirm_timeout(std::time::Duration::from_secs(5));
    /// # Ok::<(), Box<dyn std::error::Error>>(()) })
    /// # }
    /// ```
    pub fn confirm_timeout(mut self, limit: Duration) -> Self {
        self.confirm_timeout = limit;
        self
    }

    /// The exchange messages are published to.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use uow::outbox::RabbitMqPublisher;
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let publisher = RabbitMqPublisher::connect("amqp://127.0.0.1:5672/%2f", "").await?;
    /// assert_eq!(publisher.exchange(), "", "the default exchange");
    /// # Ok::<(), Box<dyn std::error::Error>>(()) })
    /// # }
    /// ```
    pub fn exchange(&self) -> &str {
        self.exchange.as_str()
    }

    /// The channel it publishes on (after a reconnection, the new one).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use uow::outbox::RabbitMqPublisher;
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let publisher = RabbitMqPublisher::connect("amqp://127.0.0.1:5672/%2f", "").await?;
    /// assert!(publisher.channel().status().confirm(), "publisher confirms are on");
    /// # Ok::<(), Box<dyn std::error::Error>>(()) })
    /// # }
    /// ```
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// A channel that can publish: the one it has, or, for a publisher made by `connect`
    /// whose connection was lost, a new connection's.
    async fn usable_channel(&mut self) -> Result<(), BrokerError> {
        if self.channel.status().connected() {
            return Ok(());
        }
        let Some((_, uri)) = &self.connection else {
            return Err(failure(format!(
                "the RabbitMQ channel is closed ({:?}): make a new channel and publisher, or \
                 make the publisher with `RabbitMqPublisher::connect`, which reconnects",
                self.channel.status()
            )));
        };
        let uri = uri.clone();
        let (connection, channel) = open(&uri).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| {
                failure(format!(
                    "cannot turn on publisher confirms on a new RabbitMQ channel ({e})"
                ))
            })?;
        self.channel = channel;
        self.connection = Some((connection, uri));
        Ok(())
    }

    /// Sends one message; its confirm is awaited later.
    async fn send(
        &self,
        message: &OutboxMessage,
        routing_key: &str,
    ) -> Result<lapin::PublisherConfirm, BrokerError> {
        let key = ShortString::try_new(routing_key).map_err(|e| {
            failure(format!(
                "the routing key {routing_key:?} of message {} is not a valid AMQP routing \
                 key ({e}): choose shorter ones with `RabbitMqPublisher::routing_key`",
                message.message_id
            ))
        })?;
        let options = BasicPublishOptions {
            mandatory: self.mandatory,
            ..BasicPublishOptions::default()
        };
        self.channel
            .basic_publish(
                self.exchange.clone(),
                key,
                options,
                message.payload.as_bytes(),
                properties(message)?,
            )
            .await
            .map_err(|e| {
                failure(format!(
                    "cannot publish message {} to RabbitMQ exchange {:?} ({e}): check that \
                     the broker is reachable and the exchange exists",
                    message.message_id,
                    self.exchange.as_str()
                ))
            })
    }
}

impl Publisher for RabbitMqPublisher {
    const NAME: &'static str = "RabbitMQ";

    async fn publish(&mut self, messages: &[OutboxMessage]) -> Result<(), PublishError> {
        self.usable_channel().await?;
        let limit = self.confirm_timeout;
        match tokio::time::timeout(limit, self.send_and_confirm(messages)).await {
            Ok(outcome) => Ok(outcome?),
            Err(_) => Err(failure(format!(
                "RabbitMQ did not confirm the batch of {} messages within {limit:?}: check the \
                 broker's resource alarms (`rabbitmq-diagnostics alarms`: a blocked connection \
                 takes no messages), its log, and the network",
                messages.len()
            ))
            .into()),
        }
    }
}

impl RabbitMqPublisher {
    /// Sends every message, then waits for each confirm: one round trip per batch.
    async fn send_and_confirm(&self, messages: &[OutboxMessage]) -> Result<(), BrokerError> {
        let mut sent = Vec::with_capacity(messages.len());
        for message in messages {
            let routing_key = (self.routing_key)(message);
            match self.send(message, &routing_key).await {
                Ok(confirm) => sent.push((message, routing_key, confirm)),
                Err(failed) => {
                    // The broker may have closed the channel over a message sent before (an
                    // exchange it does not have): that message's confirm carries its reason.
                    for (message, routing_key, confirm) in sent {
                        self.confirmed(message, &routing_key, confirm).await?;
                    }
                    return Err(failed);
                }
            }
        }
        for (message, routing_key, confirm) in sent {
            self.confirmed(message, &routing_key, confirm).await?;
        }
        Ok(())
    }

    /// Waits for the broker's confirm of `message`: an error unless it was acked and routed.
    async fn confirmed(
        &self,
        message: &OutboxMessage,
        routing_key: &str,
        confirm: lapin::PublisherConfirm,
    ) -> Result<(), BrokerError> {
        let confirmation = confirm.await.map_err(|e| {
            failure(format!(
                "RabbitMQ did not confirm message {} ({e}): the channel or connection failed; \
                 check the broker's log",
                message.message_id
            ))
        })?;
        let refused = |what: &str, returned: Option<BasicReturnMessage>| {
            let why = returned.map_or_else(String::new, |r| {
                format!(" ({} {})", r.reply_code, r.reply_text)
            });
            failure(format!(
                "RabbitMQ {what} message {} sent to exchange {:?} with routing key \
                 {routing_key:?}{why}",
                message.message_id,
                self.exchange.as_str()
            ))
        };
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) => Err(refused(
                "returned as unroutable (no queue is bound for it: bind one, or publish with \
                 `mandatory(false)`)",
                Some(returned),
            )),
            Confirmation::Nack(returned) => Err(refused(
                "refused (nack: it could not store it; check the broker's disk and memory \
                 alarms and the queue's limits)",
                returned,
            )),
            Confirmation::NotRequested => Err(failure(format!(
                "RabbitMQ did not confirm message {}: publisher confirms are off on the channel",
                message.message_id
            ))),
        }
    }
}

impl fmt::Debug for RabbitMqPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitMqPublisher")
            .field("exchange", &self.exchange.as_str())
            .field("mandatory", &self.mandatory)
            .field("confirm_timeout", &self.confirm_timeout)
            .field("channel", &self.channel.id())
            .field("reconnects", &self.connection.is_some())
            .finish_non_exhaustive()
    }
}

fn default_routing_key(message: &OutboxMessage) -> String {
    format!("{}.{}", message.aggregate_type, message.event_type)
}

/// A connection to `uri` and a channel on it.
async fn open(uri: &str) -> Result<(Connection, Channel), BrokerError> {
    let connection = Connection::connect(uri, ConnectionProperties::default())
        .await
        .map_err(|e| {
            failure(format!(
                "cannot connect to RabbitMQ ({e}): check that the broker runs, that the URI \
                 (amqp://user:password@host:port/vhost, the vhost URL-encoded) is right, and \
                 that this runs on a tokio runtime"
            ))
        })?;
    let channel = connection.create_channel().await.map_err(|e| {
        failure(format!(
            "connected to RabbitMQ but cannot open a channel ({e}): check the broker's \
             channel limit"
        ))
    })?;
    Ok((connection, channel))
}

/// The AMQP properties of `message`.
fn properties(message: &OutboxMessage) -> Result<BasicProperties, BrokerError> {
    let short = |what: &str, value: &str| {
        ShortString::try_new(value).map_err(|e| {
            failure(format!(
                "the {what} of message {} does not fit an AMQP property ({e})",
                message.message_id
            ))
        })
    };
    let mut table = FieldTable::default();
    table.insert(
        headers::AGGREGATE_TYPE.into(),
        AMQPValue::LongString(message.aggregate_type.as_str().into()),
    );
    table.insert(
        headers::AGGREGATE_KEY.into(),
        AMQPValue::LongString(message.aggregate_key.as_str().into()),
    );
    table.insert(
        headers::SEQUENCE.into(),
        AMQPValue::LongLongInt(message.sequence),
    );
    table.insert(
        headers::CREATED_AT.into(),
        AMQPValue::LongLongInt(message.created_at),
    );
    let seconds = u64::try_from(message.created_at / 1_000_000).unwrap_or(0);
    Ok(BasicProperties::default()
        .with_message_id(short("message id", &message.message_id)?)
        .with_type(short("event type", &message.event_type)?)
        .with_content_type(ShortString::from("application/json"))
        .with_delivery_mode(2)
        .with_timestamp(seconds)
        .with_headers(table))
}

fn failure(message: String) -> BrokerError {
    BrokerError::new(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> OutboxMessage {
        OutboxMessage {
            sequence: 12,
            message_id: "0b8c1f9e-7d0a-4a8e-9a55-1b8b8d7c2a10".into(),
            aggregate_type: "Account".into(),
            aggregate_key: "42".into(),
            event_type: "AccountOpened".into(),
            payload: "{}".into(),
            created_at: 1_764_633_600_123_456,
        }
    }

    #[test]
    fn properties_carry_the_id_type_and_headers() {
        let properties = match properties(&message()) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let text = |v: Option<&ShortString>| v.map(|s| s.as_str().to_owned());
        assert_eq!(
            text(properties.message_id().as_ref()).as_deref(),
            Some("0b8c1f9e-7d0a-4a8e-9a55-1b8b8d7c2a10")
        );
        assert_eq!(
            text(properties.kind().as_ref()).as_deref(),
            Some("AccountOpened")
        );
        assert_eq!(
            text(properties.content_type().as_ref()).as_deref(),
            Some("application/json")
        );
        assert_eq!(*properties.delivery_mode(), Some(2));
        assert_eq!(*properties.timestamp(), Some(1_764_633_600));
        let Some(table) = properties.headers() else {
            panic!("no headers")
        };
        let get = |name: &str| table.inner().get(name).cloned();
        assert_eq!(get("sequence"), Some(AMQPValue::LongLongInt(12)));
        assert_eq!(
            get("created_at"),
            Some(AMQPValue::LongLongInt(1_764_633_600_123_456))
        );
        assert_eq!(
            get("aggregate_type"),
            Some(AMQPValue::LongString("Account".into()))
        );
        assert_eq!(
            get("aggregate_key"),
            Some(AMQPValue::LongString("42".into()))
        );
    }

    #[test]
    fn the_default_routing_key_is_aggregate_dot_event() {
        assert_eq!(default_routing_key(&message()), "Account.AccountOpened");
    }

    #[test]
    fn an_event_type_too_long_for_a_property_is_an_error() {
        let mut long = message();
        long.event_type = "E".repeat(300);
        let Err(e) = properties(&long) else {
            panic!("a 300-byte type fits no short string")
        };
        assert!(e.to_string().contains("event type"), "{e}");
    }
}
