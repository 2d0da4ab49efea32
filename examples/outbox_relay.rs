//! The outbox relay as a program: publishes the rows of a database's `uow_outbox` to RabbitMQ
//! with publisher confirms, marks them published, and goes on until Ctrl-C.
//!
//! ```text
//! cargo run --example outbox_relay --features rabbitmq                    # a demo on a temporary SQLite file
//! cargo run --example outbox_relay --features rabbitmq -- shop.db --queue order-events
//! cargo run --example outbox_relay --features rabbitmq,postgres -- postgres://localhost/shop --exchange events
//! cargo run --example outbox_relay --features rabbitmq,mysql -- mysql://root@127.0.0.1/shop --queue order-events --once
//! ```
//!
//! The database is a URL (`postgres://` or `mysql://`, with the features of the same name) or
//! an SQLite file (or `DATABASE_URL`); the broker is `--amqp URI` (or `AMQP_URL`, by default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`). Messages go to `--exchange NAME` with the routing
//! key `"{aggregate_type}.{event_type}"`, or to the queue `--queue NAME` through the default
//! exchange. `--batch N` rows per transaction (100); `--once` publishes until the outbox is
//! empty and exits.
//!
//! Each batch the broker confirmed prints `confirmed N (sequence A..B)` before the relay marks
//! its rows. With `UOW_RELAY_PAUSE_AFTER_CONFIRM_MS` set, it then waits that long: the moment
//! at which a relay that dies leaves rows the broker has and the outbox still holds
//! unpublished. The next relay publishes them again, with the same message ids, and consumers
//! drop the duplicates with the inbox (`uow::outbox::handle_once`). `tests/outbox_crash.rs`
//! kills this relay there, and at random moments, a hundred times.

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use diesel_async::AsyncConnection;
use uow::outbox::{OutboxMessage, PublishError, Publisher, RabbitMqPublisher, Relay};

type BoxError = Box<dyn Error + Send + Sync>;

/// What to relay, and where to.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// A `postgres://` or `mysql://` URL, or an SQLite file.
    pub database: String,
    /// The broker's URI.
    pub amqp: String,
    /// The exchange (`""`: the default exchange, with `queue`).
    pub exchange: String,
    /// Every message to this queue through the default exchange.
    pub queue: Option<String>,
    /// Rows per batch.
    pub batch: usize,
    /// Stop once the outbox is empty.
    pub once: bool,
    /// How long to wait after each confirm, before the rows are marked.
    pub pause_after_confirm: Option<Duration>,
}

const USAGE: &str = "usage: outbox_relay [DATABASE] [--amqp URI] [--exchange NAME | --queue NAME] \
                     [--batch N] [--once]";

impl Config {
    /// The configuration from the command line's arguments (without the program's name) and
    /// the environment; `None` when no database is named (the demo).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Config>, String> {
        let mut database = std::env::var("DATABASE_URL").ok();
        let mut amqp = std::env::var("AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
        let (mut exchange, mut queue, mut batch, mut once) = (None, None, 100, false);
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value =
                |name: &str| args.next().ok_or(format!("{name} needs a value\n{USAGE}"));
            match arg.as_str() {
                "--amqp" => amqp = value("--amqp")?,
                "--exchange" => exchange = Some(value("--exchange")?),
                "--queue" => queue = Some(value("--queue")?),
                "--batch" => {
                    batch = value("--batch")?
                        .parse()
                        .map_err(|e| format!("--batch: {e}\n{USAGE}"))?
                }
                "--once" => once = true,
                "--help" | "-h" => return Err(USAGE.to_owned()),
                flag if flag.starts_with("--") => {
                    return Err(format!("unknown option {flag}\n{USAGE}"))
                }
                _ => database = Some(arg),
            }
        }
        if exchange.is_some() && queue.is_some() {
            return Err(format!("give --exchange or --queue, not both\n{USAGE}"));
        }
        let pause_after_confirm = match std::env::var("UOW_RELAY_PAUSE_AFTER_CONFIRM_MS") {
            Ok(ms) => Some(Duration::from_millis(ms.parse().map_err(|e| {
                format!("UOW_RELAY_PAUSE_AFTER_CONFIRM_MS={ms:?}: {e}")
            })?)),
            Err(_) => None,
        };
        Ok(database.map(|database| Config {
            database,
            amqp,
            exchange: exchange.unwrap_or_default(),
            queue,
            batch,
            once,
            pause_after_confirm,
        }))
    }
}

/// The RabbitMQ publisher, announcing each confirmed batch on stdout (and pausing, when
/// asked) before the relay marks it.
struct Announcing {
    inner: RabbitMqPublisher,
    pause: Option<Duration>,
}

impl Publisher for Announcing {
    const NAME: &'static str = RabbitMqPublisher::NAME;

    async fn publish(&mut self, messages: &[OutboxMessage]) -> Result<(), PublishError> {
        self.inner.publish(messages).await?;
        let (first, last) = match (messages.first(), messages.last()) {
            (Some(first), Some(last)) => (first.sequence, last.sequence),
            _ => return Ok(()),
        };
        println!("confirmed {} (sequence {first}..{last})", messages.len());
        if let Some(pause) = self.pause {
            tokio::time::sleep(pause).await;
        }
        Ok(())
    }
}

/// Relays `config.database`'s outbox until Ctrl-C (or, with `once`, until it is empty).
pub async fn run(config: &Config) -> Result<(), BoxError> {
    let mut publisher = RabbitMqPublisher::connect(&config.amqp, config.exchange.as_str()).await?;
    if let Some(queue) = &config.queue {
        let queue = queue.clone();
        publisher = publisher.routing_key(move |_| queue.clone());
    }
    let relay = Relay::new(Announcing {
        inner: publisher,
        pause: config.pause_after_confirm,
    })
    .batch_size(config.batch)
    .idle_interval(Duration::from_millis(50));

    let url = config.database.as_str();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        return relay_on(
            relay,
            diesel_async::AsyncPgConnection::establish(url).await?,
            config.once,
        )
        .await;
        #[cfg(not(feature = "postgres"))]
        return Err("built without the `postgres` feature".into());
    }
    if url.starts_with("mysql://") {
        #[cfg(feature = "mysql")]
        return relay_on(
            relay,
            diesel_async::AsyncMysqlConnection::establish(url).await?,
            config.once,
        )
        .await;
        #[cfg(not(feature = "mysql"))]
        return Err("built without the `mysql` feature".into());
    }
    #[cfg(feature = "sqlite")]
    {
        use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
        use diesel_async::SimpleAsyncConnection;
        let mut conn = SyncConnectionWrapper::<diesel::SqliteConnection>::establish(url).await?;
        // The application's writers and this relay take turns at the write lock: wait for it.
        conn.batch_execute("PRAGMA busy_timeout = 5000").await?;
        relay_on(relay, conn, config.once).await
    }
    #[cfg(not(feature = "sqlite"))]
    Err("built without the `sqlite` feature".into())
}

async fn relay_on<C>(mut relay: Relay<Announcing>, mut conn: C, once: bool) -> Result<(), BoxError>
where
    C: AsyncConnection + 'static,
    C::Backend: uow::Dialect,
{
    if once {
        while relay.relay_once(&mut conn).await? > 0 {}
        println!("the outbox is empty");
        return Ok(());
    }
    tokio::select! {
        failed = relay.run(&mut conn, tokio::time::sleep) => failed?,
        _ = tokio::signal::ctrl_c() => println!("stopped"),
    }
    Ok(())
}

fn main() -> ExitCode {
    let outcome = (|| -> Result<(), BoxError> {
        let config = Config::parse(std::env::args().skip(1))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        match config {
            Some(config) => runtime.block_on(run(&config)),
            None => runtime.block_on(demo::run()),
        }
    })();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outbox_relay: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Without a database: an order placed and changed in a temporary SQLite file, its events
/// relayed to a queue of the demo's own, and read back as a consumer would.
#[cfg(feature = "sqlite")]
mod demo {
    use diesel::{Connection, RunQueryDsl, SqliteConnection};
    use uow::outbox::lapin::options::{
        BasicAckOptions, BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions,
    };
    use uow::outbox::lapin::types::FieldTable;
    use uow::outbox::lapin::{Connection as Amqp, ConnectionProperties};
    use uow::outbox::OutboxEvent;
    use uow::prelude::*;

    use super::{BoxError, Config};

    diesel::table! { orders (id) { id -> Integer, total -> BigInt } }

    #[derive(Tracked, Clone, Debug, PartialEq)]
    #[tracked(table = orders)]
    struct Order {
        id: i32,
        total: i64,
    }

    #[derive(serde::Serialize)]
    struct OrderPlaced {
        total: i64,
    }
    impl OutboxEvent for OrderPlaced {
        const EVENT_TYPE: &'static str = "OrderPlaced";
    }

    #[derive(serde::Serialize)]
    struct OrderChanged {
        total: i64,
    }
    impl OutboxEvent for OrderChanged {
        const EVENT_TYPE: &'static str = "OrderChanged";
    }

    pub async fn run() -> Result<(), BoxError> {
        let dir = std::env::temp_dir().join(format!("uow-outbox-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let database = dir.join("shop.db").to_string_lossy().into_owned();
        let outcome = relay_and_read(&database).await;
        let _ = std::fs::remove_dir_all(&dir);
        outcome
    }

    async fn relay_and_read(database: &str) -> Result<(), BoxError> {
        // The application: each commit writes the order and its event together.
        let mut conn = SqliteConnection::establish(database)?;
        diesel::sql_query("CREATE TABLE orders (id INTEGER PRIMARY KEY, total BIGINT NOT NULL)")
            .execute(&mut conn)?;
        for statement in uow::outbox::SQLITE_SCHEMA {
            diesel::sql_query(*statement).execute(&mut conn)?;
        }
        let mut uow = UnitOfWork::new();
        let order = uow.register_new(Order { id: 1, total: 250 })?;
        uow.record_outbox_event(&order, OrderPlaced { total: 250 })?;
        uow.commit(&mut conn)?;
        uow.get_mut(&order)?.total = 300;
        uow.record_outbox_event(&order, OrderChanged { total: 300 })?;
        uow.commit(&mut conn)?;

        // A queue of the demo's own (removed when its connection closes).
        let amqp = std::env::var("AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
        let broker = Amqp::connect(&amqp, ConnectionProperties::default())
            .await
            .map_err(|e| {
                format!("RabbitMQ at {amqp} cannot be reached ({e}): start it or set AMQP_URL")
            })?;
        let channel = broker.create_channel().await?;
        let queue = format!("uow-outbox-demo-{}", std::process::id());
        let exclusive = QueueDeclareOptions {
            exclusive: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(queue.as_str().into(), exclusive, FieldTable::default())
            .await?;

        // The relay.
        let config = Config {
            database: database.to_owned(),
            amqp,
            exchange: String::new(),
            queue: Some(queue.clone()),
            batch: 100,
            once: true,
            pause_after_confirm: None,
        };
        super::run(&config).await?;

        // A consumer.
        while let Some(message) = channel
            .basic_get(queue.as_str().into(), BasicGetOptions::default())
            .await?
        {
            let delivery = message.delivery;
            let p = &delivery.properties;
            let text = |v: &Option<uow::outbox::lapin::types::ShortString>| {
                v.as_ref().map(|s| s.to_string()).unwrap_or_default()
            };
            println!(
                "received {} {} (message id {}): {}",
                text(p.kind()),
                text(p.content_type()),
                text(p.message_id()),
                String::from_utf8_lossy(&delivery.data)
            );
            delivery.ack(BasicAckOptions::default()).await?;
        }
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await?;
        Ok(())
    }
}

#[cfg(not(feature = "sqlite"))]
mod demo {
    pub async fn run() -> Result<(), super::BoxError> {
        Err(format!("name a database\n{}", super::USAGE).into())
    }
}
