//! Shared by the tests against the real brokers (`outbox_brokers.rs`, `outbox_crash.rs`): the
//! brokers' addresses, queues and streams of a test's own (removed when dropped), the wallets
//! whose events the tests write, the consumer that handles each message once through the
//! inbox, and the diesel-async connection the relay runs on.
//!
//! A broker that cannot be reached fails the test with a message saying how to start it or
//! which variable names it (`UOW_TEST_AMQP_URL`, `UOW_TEST_NATS_URL`); nothing is skipped.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use diesel::connection::LoadConnection;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, SimpleAsyncConnection};
use lapin::options::{
    BasicAckOptions, BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection as AmqpConnection, ConnectionProperties, ExchangeKind};
#[cfg(feature = "nats")]
use uow::outbox::async_nats;
use uow::outbox::{lapin, OutboxEvent, OutboxMessage, PublishError, Publisher};
use uow::prelude::*;
use uow::Dialect;

use crate::common::{Kind, Target, TestBackend, TestDb};

/// The tests' error: what `?` gives from uow's, the brokers' and the publishers' errors.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub const AMQP_URL_VAR: &str = "UOW_TEST_AMQP_URL";
pub const AMQP_URL_DEFAULT: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const NATS_URL_VAR: &str = "UOW_TEST_NATS_URL";
pub const NATS_URL_DEFAULT: &str = "nats://127.0.0.1:4222";

pub fn amqp_url() -> String {
    std::env::var(AMQP_URL_VAR).unwrap_or_else(|_| AMQP_URL_DEFAULT.to_string())
}

pub fn nats_url() -> String {
    std::env::var(NATS_URL_VAR).unwrap_or_else(|_| NATS_URL_DEFAULT.to_string())
}

/// A name no other test (of this process or another) uses: `uow-{what}-{pid}-{n}`.
pub fn unique(what: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "uow-{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A tokio runtime for one test: the brokers' clients and the relay's connections run on its
/// workers; the test's thread (and the consumers' threads) `block_on` it.
pub fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => panic!("cannot start a tokio runtime: {e}"),
    }
}

/// Runs `cleanup` on a thread of its own with a runtime of its own: drop code may run inside
/// a test's runtime, where another cannot be entered.
fn clean_up_elsewhere<F: Future<Output = ()> + Send + 'static>(
    cleanup: impl FnOnce() -> F + Send + 'static,
) {
    let thread = std::thread::spawn(move || {
        if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            runtime.block_on(async {
                let _ = tokio::time::timeout(Duration::from_secs(10), cleanup()).await;
            });
        }
    });
    let _ = thread.join();
}

// ---------------------------------------------------------------- RabbitMQ

/// A connection to the test broker, or a failure saying how to start it.
pub async fn amqp_connection() -> AmqpConnection {
    let url = amqp_url();
    match AmqpConnection::connect(&url, ConnectionProperties::default()).await {
        Ok(connection) => connection,
        Err(e) => panic!(
            "RabbitMQ at {url} cannot be reached ({e}): start it (`rabbitmq-server -detached`) \
             or set {AMQP_URL_VAR} to its URL"
        ),
    }
}

/// A test's queues and exchanges on RabbitMQ, and a channel to read them: deleted when
/// dropped (and, should the process die first, expired by the broker after 10 minutes).
pub struct Rabbit {
    pub connection: AmqpConnection,
    pub channel: Channel,
    queues: Vec<String>,
    exchanges: Vec<String>,
}

impl Rabbit {
    pub async fn connect() -> Rabbit {
        let connection = amqp_connection().await;
        let channel = match connection.create_channel().await {
            Ok(channel) => channel,
            Err(e) => panic!("cannot open a RabbitMQ channel: {e}"),
        };
        Rabbit {
            connection,
            channel,
            queues: Vec::new(),
            exchanges: Vec::new(),
        }
    }

    /// Declares a queue of this test named after `what`, with the extra `arguments`; its name.
    pub async fn queue(&mut self, what: &str, arguments: &[(&str, AMQPValue)]) -> String {
        let name = unique(what);
        let mut table = FieldTable::default();
        table.insert("x-expires".into(), AMQPValue::LongUInt(600_000));
        for (key, value) in arguments {
            table.insert((*key).into(), value.clone());
        }
        if let Err(e) = self
            .channel
            .queue_declare(name.as_str().into(), QueueDeclareOptions::default(), table)
            .await
        {
            panic!("cannot declare the queue {name}: {e}");
        }
        self.queues.push(name.clone());
        name
    }

    /// Declares an exchange of this test named after `what`; its name.
    pub async fn exchange(&mut self, what: &str, kind: ExchangeKind) -> String {
        let name = unique(what);
        self.declare_exchange(&name, kind).await;
        name
    }

    /// Declares the exchange `name`, removed with the others at the end.
    pub async fn declare_exchange(&mut self, name: &str, kind: ExchangeKind) {
        if let Err(e) = self
            .channel
            .exchange_declare(
                name.into(),
                kind,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
        {
            panic!("cannot declare the exchange {name}: {e}");
        }
        self.exchanges.push(name.to_owned());
    }

    pub async fn bind(&self, queue: &str, exchange: &str, routing_key: &str) {
        if let Err(e) = self
            .channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                routing_key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
        {
            panic!("cannot bind {queue} to {exchange}: {e}");
        }
    }

    /// The next message of `queue` (acknowledged), if there is one.
    pub async fn next(&self, queue: &str) -> Option<Received> {
        next(&self.channel, queue).await
    }

    /// Every message in `queue` now, in queue order.
    pub async fn drain(&self, queue: &str) -> Vec<Received> {
        let mut all = Vec::new();
        while let Some(message) = self.next(queue).await {
            all.push(message);
        }
        all
    }

    /// Another channel on the connection, for a consumer of its own.
    pub async fn channel(&self) -> Channel {
        match self.connection.create_channel().await {
            Ok(channel) => channel,
            Err(e) => panic!("cannot open a RabbitMQ channel: {e}"),
        }
    }

    /// How many messages `queue` holds.
    pub async fn count(&self, queue: &str) -> u32 {
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        match self
            .channel
            .queue_declare(queue.into(), options, FieldTable::default())
            .await
        {
            Ok(q) => q.message_count(),
            Err(e) => panic!("cannot read the queue {queue}: {e}"),
        }
    }
}

/// The next message of `queue` on `channel` (acknowledged), if there is one.
pub async fn next(channel: &Channel, queue: &str) -> Option<Received> {
    let got = channel
        .basic_get(queue.into(), BasicGetOptions::default())
        .await;
    let message = match got {
        Ok(message) => message?,
        Err(e) => panic!("cannot read from the queue {queue}: {e}"),
    };
    let delivery = message.delivery;
    if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
        panic!("cannot acknowledge a message of {queue}: {e}");
    }
    Some(Received::from_amqp(&delivery))
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        let queues = std::mem::take(&mut self.queues);
        let exchanges = std::mem::take(&mut self.exchanges);
        if queues.is_empty() && exchanges.is_empty() {
            return;
        }
        clean_up_elsewhere(move || async move {
            let Ok(connection) =
                AmqpConnection::connect(&amqp_url(), ConnectionProperties::default()).await
            else {
                return;
            };
            let Ok(channel) = connection.create_channel().await else {
                return;
            };
            for queue in queues {
                let _ = channel
                    .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
            for exchange in exchanges {
                let _ = channel
                    .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                    .await;
            }
            let _ = connection.close(200, "done".into()).await;
        });
    }
}

// ---------------------------------------------------------------- NATS JetStream

/// A JetStream stream of this test taking the subjects `{prefix}.>`: deleted when dropped
/// (and its messages expire after 10 minutes should the process die first).
#[cfg(feature = "nats")]
pub struct Nats {
    pub context: async_nats::jetstream::Context,
    pub stream: String,
    pub prefix: String,
}

#[cfg(feature = "nats")]
impl Nats {
    pub async fn stream(duplicate_window: Duration) -> Nats {
        let url = nats_url();
        let client = match async_nats::connect(&url).await {
            Ok(client) => client,
            Err(e) => panic!(
                "NATS at {url} cannot be reached ({e}): start it (`nats-server -js`) or set \
                 {NATS_URL_VAR} to its URL"
            ),
        };
        let context = async_nats::jetstream::new(client);
        let id = unique("s").replace('-', "_");
        let (stream, prefix) = (id.to_uppercase(), id.replace('_', "-"));
        let config = async_nats::jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![format!("{prefix}.>")],
            duplicate_window,
            max_age: Duration::from_secs(600),
            ..Default::default()
        };
        if let Err(e) = context.create_stream(config).await {
            panic!(
                "cannot create the JetStream stream {stream} ({e}): is JetStream on \
                 (`nats-server -js`)?"
            );
        }
        Nats {
            context,
            stream,
            prefix,
        }
    }

    async fn handle(&self) -> async_nats::jetstream::stream::Stream {
        match self.context.get_stream(&self.stream).await {
            Ok(stream) => stream,
            Err(e) => panic!("cannot read the stream {}: {e}", self.stream),
        }
    }

    /// How many messages the stream holds.
    pub async fn count(&self) -> u64 {
        let mut stream = self.handle().await;
        match stream.info().await {
            Ok(info) => info.state.messages,
            Err(e) => panic!("cannot read the stream {}: {e}", self.stream),
        }
    }

    /// Every message of the stream, in stream order, with the subject it was stored under.
    pub async fn messages(&self) -> Vec<(String, Received)> {
        let mut stream = self.handle().await;
        let last = match stream.info().await {
            Ok(info) => info.state.last_sequence,
            Err(e) => panic!("cannot read the stream {}: {e}", self.stream),
        };
        let mut all = Vec::new();
        for sequence in 1..=last {
            match stream.get_raw_message(sequence).await {
                Ok(message) => {
                    all.push((message.subject.to_string(), Received::from_nats(&message)))
                }
                Err(e) => panic!("cannot read message {sequence} of {}: {e}", self.stream),
            }
        }
        all
    }
}

#[cfg(feature = "nats")]
impl Drop for Nats {
    fn drop(&mut self) {
        let (context, stream) = (self.context.clone(), self.stream.clone());
        clean_up_elsewhere(move || async move {
            let _ = context.delete_stream(&stream).await;
        });
    }
}

// ---------------------------------------------------------------- messages

/// A message as a consumer received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub message_id: String,
    pub event_type: String,
    pub aggregate_type: String,
    pub aggregate_key: String,
    pub sequence: i64,
    pub wallet: i32,
    pub n: i64,
    /// Everything else the broker said about it: its properties and headers, as text.
    pub metadata: BTreeMap<String, String>,
}

impl Received {
    fn from_amqp(delivery: &lapin::message::Delivery) -> Received {
        let p = &delivery.properties;
        let text = |v: &Option<lapin::types::ShortString>| {
            v.as_ref()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default()
        };
        let mut metadata = BTreeMap::new();
        metadata.insert("content_type".into(), text(p.content_type()));
        metadata.insert("delivery_mode".into(), format!("{:?}", p.delivery_mode()));
        metadata.insert("timestamp".into(), format!("{:?}", p.timestamp()));
        metadata.insert("routing_key".into(), delivery.routing_key.to_string());
        metadata.insert("redelivered".into(), delivery.redelivered.to_string());
        let mut header = |name: &str| -> String {
            let value = p
                .headers()
                .as_ref()
                .and_then(|t| t.inner().get(name).cloned());
            let shown = match value {
                Some(AMQPValue::LongString(s)) => s.to_string(),
                Some(AMQPValue::LongLongInt(n)) => n.to_string(),
                other => panic!("header {name}: unexpected {other:?}"),
            };
            metadata.insert(format!("header {name}"), shown.clone());
            shown
        };
        let aggregate_type = header("aggregate_type");
        let aggregate_key = header("aggregate_key");
        let sequence = header("sequence").parse().unwrap_or(-1);
        header("created_at");
        let (wallet, n) = payload(&delivery.data);
        Received {
            message_id: text(p.message_id()),
            event_type: text(p.kind()),
            aggregate_type,
            aggregate_key,
            sequence,
            wallet,
            n,
            metadata,
        }
    }

    #[cfg(feature = "nats")]
    fn from_nats(message: &async_nats::jetstream::message::StreamMessage) -> Received {
        let header = |name: &str| -> String {
            match message.headers.get(name) {
                Some(value) => value.as_str().to_owned(),
                None => panic!("message {} has no header {name}", message.sequence),
            }
        };
        let mut metadata = BTreeMap::new();
        for name in ["Content-Type", "created_at"] {
            metadata.insert(format!("header {name}"), header(name));
        }
        let (wallet, n) = payload(&message.payload);
        Received {
            message_id: header("Nats-Msg-Id"),
            event_type: header("event_type"),
            aggregate_type: header("aggregate_type"),
            aggregate_key: header("aggregate_key"),
            sequence: header("sequence").parse().unwrap_or(-1),
            wallet,
            n,
            metadata,
        }
    }
}

/// A `Deposited` event's wallet and number, from its JSON.
fn payload(bytes: &[u8]) -> (i32, i64) {
    let event: Deposited = match serde_json::from_slice(bytes) {
        Ok(event) => event,
        Err(e) => panic!(
            "not a Deposited event ({e}): {}",
            String::from_utf8_lossy(bytes)
        ),
    };
    (event.wallet, event.n)
}

/// Asserts that `received` holds each wallet's events in order: 0, 1, 2, ... up to its count
/// in `expected`.
pub fn assert_in_order(received: &[(i32, i64)], expected: &BTreeMap<i32, i64>, what: &str) {
    let mut per_wallet: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for (wallet, n) in received {
        per_wallet.entry(*wallet).or_default().push(*n);
    }
    for (wallet, count) in expected {
        let seen = per_wallet.remove(wallet).unwrap_or_default();
        let wanted: Vec<i64> = (0..*count).collect();
        assert_eq!(
            seen, wanted,
            "{what}: wallet {wallet}'s events in order, each once"
        );
    }
    assert!(
        per_wallet.is_empty(),
        "{what}: events of unknown wallets: {per_wallet:?}"
    );
}

// ---------------------------------------------------------------- the database

diesel::table! {
    wallets (id) {
        id -> Integer,
        balance -> BigInt,
    }
}

diesel::table! {
    handled (id) {
        id -> Integer,
        message_id -> Text,
        wallet -> Integer,
        n -> BigInt,
        consumer -> Integer,
    }
}

/// The aggregate: its events are numbered per wallet from 0.
#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = wallets)]
pub struct Wallet {
    pub id: i32,
    pub balance: i64,
}

/// What a consumer's handler writes: one row per message it handled.
#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = handled)]
pub struct Handled {
    #[tracked(generated)]
    pub id: i32,
    pub message_id: String,
    pub wallet: i32,
    pub n: i64,
    pub consumer: i32,
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
pub struct Deposited {
    pub wallet: i32,
    pub n: i64,
}

impl OutboxEvent for Deposited {
    const EVENT_TYPE: &'static str = "Deposited";
}

/// A backend the relay runs on: its diesel-async connection to a test's database.
pub trait RelayDb: TestBackend + Send + diesel::Connection<Backend: Dialect> {
    type Async: AsyncConnection<Backend = <Self as diesel::Connection>::Backend>
        + SimpleAsyncConnection
        + Send
        + 'static;

    /// The outbox schema uow ships for this backend.
    fn outbox_schema() -> &'static [&'static str] {
        match Self::KIND {
            Kind::Sqlite => uow::outbox::SQLITE_SCHEMA,
            Kind::Postgres => uow::outbox::POSTGRES_SCHEMA,
            Kind::Mysql => uow::outbox::MYSQL_SCHEMA,
        }
    }

    /// How many outbox rows are not published yet.
    fn unpublished(conn: &mut Self::Async) -> impl Future<Output = i64> + Send;

    /// The message id of each `handled` row, in the order they were written.
    fn handled_ids(conn: &mut Self) -> Vec<String>;

    /// The outbox's message ids in sequence order, and whether each is published.
    fn outbox_rows(conn: &mut Self) -> Vec<(String, bool)>;

    /// Marks the rows whose sequence is a multiple of `every` unpublished again, as if the
    /// relays that published them had died before their COMMIT; how many.
    fn unpublish_every(conn: &mut Self, every: i64) -> usize;
}

/// A diesel-async connection to `target`, with its setup statements run.
pub async fn connect_async<C: RelayDb>(target: &Target) -> C::Async {
    let mut conn = match C::Async::establish(&target.url).await {
        Ok(conn) => conn,
        Err(e) => panic!("cannot connect to {} through diesel-async: {e}", target.url),
    };
    for statement in &target.setup {
        if let Err(e) = conn.batch_execute(statement).await {
            panic!("connection setup failed: {e}\n{statement}");
        }
    }
    conn
}

macro_rules! relay_db {
    ($feature:literal, $sync:ty, $async_conn:ty) => {
        #[cfg(feature = $feature)]
        impl RelayDb for $sync {
            type Async = $async_conn;

            async fn unpublished(conn: &mut Self::Async) -> i64 {
                use uow::outbox::schema::uow_outbox::dsl as o;
                let query = o::uow_outbox.filter(o::published_at.is_null()).count();
                match diesel_async::RunQueryDsl::get_result::<i64>(query, conn).await {
                    Ok(count) => count,
                    Err(e) => panic!("cannot count the unpublished rows: {e}"),
                }
            }

            fn handled_ids(conn: &mut Self) -> Vec<String> {
                match handled::table
                    .order(handled::id)
                    .select(handled::message_id)
                    .load(conn)
                {
                    Ok(ids) => ids,
                    Err(e) => panic!("cannot read the handled rows: {e}"),
                }
            }

            fn outbox_rows(conn: &mut Self) -> Vec<(String, bool)> {
                use uow::outbox::schema::uow_outbox::dsl as o;
                match o::uow_outbox
                    .select((o::message_id, o::published_at))
                    .order(o::sequence)
                    .load::<(String, Option<i64>)>(conn)
                {
                    Ok(rows) => rows
                        .into_iter()
                        .map(|(id, at)| (id, at.is_some()))
                        .collect(),
                    Err(e) => panic!("cannot read the outbox: {e}"),
                }
            }

            fn unpublish_every(conn: &mut Self, every: i64) -> usize {
                let sql = format!(
                    "UPDATE uow_outbox SET published_at = NULL WHERE sequence % {every} = 0"
                );
                match diesel::sql_query(sql).execute(conn) {
                    Ok(rows) => rows,
                    Err(e) => panic!("cannot unpublish rows: {e}"),
                }
            }
        }
    };
}

relay_db!(
    "sqlite",
    diesel::SqliteConnection,
    diesel_async::sync_connection_wrapper::SyncConnectionWrapper<diesel::SqliteConnection>
);
relay_db!(
    "postgres",
    diesel::PgConnection,
    diesel_async::AsyncPgConnection
);
relay_db!(
    "mysql",
    diesel::MysqlConnection,
    diesel_async::AsyncMysqlConnection
);

/// Creates the outbox, the inbox, `wallets` (its balance CHECKed non-negative) and `handled`
/// in `db`; SQLite in WAL mode, so that readers and the relay's writes do not wait on each
/// other.
pub fn create_tables<C: RelayDb>(db: &mut TestDb<C>) {
    if C::KIND == Kind::Sqlite {
        db.exec("PRAGMA journal_mode = WAL");
    }
    for statement in C::outbox_schema() {
        db.exec(statement);
    }
    let (serial, text) = match C::KIND {
        Kind::Sqlite => ("INTEGER PRIMARY KEY", "TEXT"),
        Kind::Postgres => ("SERIAL PRIMARY KEY", "TEXT"),
        Kind::Mysql => ("INTEGER AUTO_INCREMENT PRIMARY KEY", "VARCHAR(64)"),
    };
    db.exec(
        "CREATE TABLE wallets (id INTEGER PRIMARY KEY, balance BIGINT NOT NULL CHECK (balance >= 0))",
    );
    db.exec(&format!(
        "CREATE TABLE handled (id {serial}, message_id {text} NOT NULL, wallet INTEGER NOT NULL, \
         n BIGINT NOT NULL, consumer INTEGER NOT NULL)"
    ));
}

/// The events committed so far: how many each wallet has (its next number).
pub type Counts = BTreeMap<i32, i64>;

/// Opens `wallets` wallets (ids 1..=wallets) in one commit, without events.
pub fn open_wallets<C>(conn: &mut C, wallets: i32) -> Counts
where
    C: Connection + LoadConnection + Send + 'static,
    C::Backend: Dialect,
    Wallet: Persist<C::Backend> + uow::Load<C::Backend>,
{
    let mut uow = UnitOfWork::<C>::new();
    for id in 1..=wallets {
        if let Err(e) = uow.register_new(Wallet { id, balance: 0 }) {
            panic!("{e}");
        }
    }
    if let Err(e) = uow.commit(conn) {
        panic!("cannot open the wallets: {e}");
    }
    (1..=wallets).map(|id| (id, 0)).collect()
}

/// Commits `rounds` commits; each deposits 1 into every wallet of `counts`, in an order that
/// changes from one commit to the next, and records a `Deposited` event with the wallet's next
/// number. The wallets' events interleave in the outbox.
pub fn deposit_rounds<C>(conn: &mut C, counts: &mut Counts, rounds: usize, seed: &mut u64)
where
    C: Connection + LoadConnection + Send + 'static,
    C::Backend: Dialect,
    Wallet: Persist<C::Backend> + uow::Load<C::Backend>,
{
    let mut ids: Vec<i32> = counts.keys().copied().collect();
    for _ in 0..rounds {
        // Fisher-Yates with xorshift: each commit records its events in another order.
        for i in (1..ids.len()).rev() {
            let j = (next_random(seed) % (i as u64 + 1)) as usize;
            ids.swap(i, j);
        }
        let mut uow = UnitOfWork::<C>::new();
        let result = (|| {
            for id in &ids {
                let wallet = uow.load::<Wallet>(conn, *id)?;
                uow.get_mut(&wallet)?.balance += 1;
                let n = counts[id];
                uow.record_outbox_event(&wallet, Deposited { wallet: *id, n })?;
            }
            uow.commit(conn).map(|_| ())
        })();
        if let Err(e) = result {
            panic!("a deposit failed: {e}");
        }
        for id in &ids {
            if let Some(n) = counts.get_mut(id) {
                *n += 1;
            }
        }
    }
}

/// xorshift64: the tests' random numbers, from a seed they print.
pub fn next_random(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// A seed for this run: from `UOW_TEST_SEED` to replay one, else from the clock and pid.
pub fn seed() -> u64 {
    if let Some(seed) = std::env::var("UOW_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return seed;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (u64::from(nanos) << 20 ^ u64::from(std::process::id())) | 1
}

/// Handles `message` once, as consumer `consumer`: in one transaction, records it in the
/// inbox and writes a `handled` row. `true` if this call handled it, `false` if it had been
/// handled before (a duplicate). A transient failure (SQLite's write lock held by a relay
/// past the busy timeout, a deadlock) is retried, as a consumer would get the message again.
pub fn handle<C>(conn: &mut C, message: &Received, consumer: i32) -> bool
where
    C: Connection + LoadConnection + Send + 'static,
    C::Backend: Dialect,
    Handled: Persist<C::Backend>,
{
    let policy = uow::RetryPolicy::default().attempts(50);
    let outcome = uow::retry(&policy, |_attempt| {
        let mut uow = UnitOfWork::<C>::new();
        uow::outbox::handle_once(&mut uow, conn, &message.message_id, |scope| {
            scope.register_new(Handled {
                id: 0,
                message_id: message.message_id.clone(),
                wallet: message.wallet,
                n: message.n,
                consumer,
            })?;
            Ok::<_, uow::Error>(())
        })
    });
    match outcome {
        Ok(handled) => handled.is_some(),
        Err(e) => panic!("consumer {consumer} failed on {}: {e}", message.message_id),
    }
}

/// The `handled` rows: how many each message id has, and the total.
pub fn handled_counts<C: RelayDb>(conn: &mut C) -> (BTreeMap<String, i64>, i64) {
    let ids = C::handled_ids(conn);
    let mut counts = BTreeMap::new();
    for id in &ids {
        *counts.entry(id.clone()).or_insert(0) += 1;
    }
    (counts, ids.len() as i64)
}

// ---------------------------------------------------------------- publishers for the tests

/// A publisher that counts what it published and waits a moment after each batch (so that a
/// second relay gets its turn).
pub struct Counting<P> {
    pub inner: P,
    pub published: usize,
    pub pause: Duration,
}

impl<P: Publisher> Counting<P> {
    pub fn new(inner: P, pause: Duration) -> Self {
        Counting {
            inner,
            published: 0,
            pause,
        }
    }
}

impl<P: Publisher> Publisher for Counting<P> {
    const NAME: &'static str = P::NAME;

    async fn publish(&mut self, messages: &[OutboxMessage]) -> Result<(), PublishError> {
        self.inner.publish(messages).await?;
        self.published += messages.len();
        tokio::time::sleep(self.pause).await;
        Ok(())
    }
}

/// Publishes with `relay` on `conn` until no row is left unpublished (a batch of 0 with rows
/// left means another relay holds them: look again a moment later). Fails the test after 60 s.
pub async fn relay_until_empty<C: RelayDb, P: Publisher>(
    relay: &mut uow::outbox::Relay<P>,
    conn: &mut C::Async,
) {
    relay_until_empty_pausing::<C, P>(relay, conn, Duration::ZERO).await;
}

/// [`relay_until_empty`], waiting `between` after each batch (outside its transaction): on
/// SQLite, where relays take turns at the database's write lock, the other relay's turn.
pub async fn relay_until_empty_pausing<C: RelayDb, P: Publisher>(
    relay: &mut uow::outbox::Relay<P>,
    conn: &mut C::Async,
    between: Duration,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match relay.relay_once(conn).await {
            Ok(0) => {
                if C::unpublished(conn).await == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(_) => tokio::time::sleep(between).await,
            Err(e) => panic!("the relay failed: {e}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outbox is not empty after 60 s"
        );
    }
}

/// Two relays, `a` and `b`, each on its own connection, publishing side by side (pausing
/// `between` batches) until the outbox is empty; the rows each published, asserted to add up
/// to `total` with both having published some.
pub async fn race_two_relays<C: RelayDb, P: Publisher>(
    (a, conn_a): (&mut uow::outbox::Relay<Counting<P>>, &mut C::Async),
    (b, conn_b): (&mut uow::outbox::Relay<Counting<P>>, &mut C::Async),
    between: Duration,
    total: usize,
) -> (usize, usize) {
    tokio::join!(
        relay_until_empty_pausing::<C, _>(a, conn_a, between),
        relay_until_empty_pausing::<C, _>(b, conn_b, between),
    );
    let (by_a, by_b) = (a.publisher().published, b.publisher().published);
    assert_eq!(
        by_a + by_b,
        total,
        "each row published once: {by_a} + {by_b}"
    );
    assert!(
        by_a > 0 && by_b > 0,
        "both relays published: {by_a} and {by_b}"
    );
    (by_a, by_b)
}
