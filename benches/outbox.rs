//! The outbox (see BENCHMARKS.md), in the same run:
//!
//! - `outbox_commit_1000_<backend>`: 1,000 held items each changed and given one event, then
//!   one commit; `events_in_memory` records them with `record_event` (outbox off),
//!   `outbox` with `record_outbox_event` (one more INSERT of 1,000 rows in the commit), and
//!   `diesel_by_hand` does the same job with hand-written Diesel (the UPDATE per row as W2's
//!   loop, then the outbox rows in one multi-row INSERT, JSON by serde_json, in one
//!   transaction). The ratio outbox / in memory is the outbox's cost.
//! - `outbox_relay_<broker>` (features `rabbitmq` / `nats`, the brokers on this machine):
//!   1,000 outbox rows published by `Relay::relay_once` in batches of 100, each batch confirmed
//!   by the broker before its rows are marked; criterion's throughput line is events/s.
//!
//! Before timing, a check runs each commit variant once and asserts what it wrote.

mod common;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use diesel::connection::LoadConnection;
use diesel::prelude::*;
use uow::outbox::OutboxEvent;
use uow::prelude::*;

use common::{items, BenchBackend, Item};

const CHANGES: usize = 1_000;

#[derive(serde::Serialize)]
struct QtyChanged {
    item: i32,
    qty: i64,
}

impl OutboxEvent for QtyChanged {
    const EVENT_TYPE: &'static str = "QtyChanged";
}

/// A database with `CHANGES` items and the outbox tables; the items' rows.
fn open<C: BenchBackend + DieselByHand>() -> (common::BenchDb<C>, Vec<Item>)
where
    C::Backend: uow::Dialect,
    Item: Persist<C::Backend> + uow::Load<C::Backend>,
{
    let mut db = C::open();
    let schema = match C::NAME {
        "sqlite" => uow::outbox::SQLITE_SCHEMA,
        _ => uow::outbox::POSTGRES_SCHEMA,
    };
    for statement in schema {
        db.exec(statement);
    }
    let mut uow = UnitOfWork::<C>::new();
    for item in common::new_items(CHANGES) {
        if let Err(e) = uow.register_new(item) {
            panic!("{e}");
        }
    }
    if let Err(e) = uow.commit(&mut db.conn) {
        panic!("{e}");
    }
    let rows = db.conn.reload();
    (db, rows)
}

/// Which way the events go.
#[derive(Clone, Copy, PartialEq)]
enum Events {
    InMemory,
    Outbox,
}

/// Holds `rows`, changes each and records one event per change, commits.
fn uow_commit<C>(conn: &mut C, rows: &[Item], events: Events) -> uow::Result<usize>
where
    C: Connection + LoadConnection + Send + 'static,
    C::Backend: uow::Dialect,
    Item: Persist<C::Backend>,
{
    let mut uow = UnitOfWork::<C>::new();
    let handles = uow.attach_all(rows.iter().cloned());
    for handle in &handles {
        let item = uow.get_mut(handle)?;
        item.qty += 1;
        let event = QtyChanged {
            item: item.id,
            qty: item.qty,
        };
        match events {
            Events::InMemory => uow.record_event(handle, event)?,
            Events::Outbox => uow.record_outbox_event(handle, event)?,
        }
    }
    let report = uow.commit(conn)?;
    Ok(report.rows())
}

/// The same job by hand: an UPDATE per row, then the outbox rows, in one transaction (a
/// trait: Diesel's statement types are checked per backend).
trait DieselByHand {
    fn by_hand(&mut self, rows: &[Item]) -> QueryResult<usize>;
    /// The items' rows, by key.
    fn reload(&mut self) -> Vec<Item>;
    /// The outbox's rows.
    fn outbox_rows(&mut self) -> i64;
}

macro_rules! by_hand {
    ($conn:ty) => {
        impl DieselByHand for $conn {
            fn by_hand(&mut self, rows: &[Item]) -> QueryResult<usize> {
                use uow::outbox::schema::uow_outbox::dsl as o;
                self.transaction(|conn| {
                    let mut written = 0;
                    let mut outbox = Vec::with_capacity(rows.len());
                    let now = 0i64;
                    for row in rows {
                        let qty = row.qty + 1;
                        written += diesel::update(items::table.find(row.id))
                            .set(items::qty.eq(qty))
                            .execute(conn)?;
                        let payload = serde_json::to_string(&QtyChanged { item: row.id, qty })
                            .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
                        outbox.push((
                            o::message_id.eq(uuid_like(row.id)),
                            o::aggregate_type.eq("Item"),
                            o::aggregate_key.eq(row.id.to_string()),
                            o::event_type.eq(QtyChanged::EVENT_TYPE),
                            o::payload.eq(payload),
                            o::created_at.eq(now),
                        ));
                    }
                    // One multi-row INSERT of at most 1,000 rows, as uow sends.
                    for chunk in outbox.chunks(1_000) {
                        written += diesel::insert_into(o::uow_outbox)
                            .values(chunk.to_vec())
                            .execute(conn)?;
                    }
                    Ok(written)
                })
            }

            fn reload(&mut self) -> Vec<Item> {
                match items::table
                    .order(items::id)
                    .load::<(i32, String, i64)>(self)
                {
                    Ok(rows) => rows
                        .into_iter()
                        .map(|(id, name, qty)| Item { id, name, qty })
                        .collect(),
                    Err(e) => panic!("{e}"),
                }
            }

            fn outbox_rows(&mut self) -> i64 {
                match uow::outbox::schema::uow_outbox::table
                    .count()
                    .get_result(self)
                {
                    Ok(n) => n,
                    Err(e) => panic!("{e}"),
                }
            }
        }
    };
}

by_hand!(diesel::SqliteConnection);
#[cfg(feature = "postgres")]
by_hand!(diesel::PgConnection);

/// A message id unique per row and per run, as uow's UUIDs are.
fn uuid_like(id: i32) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static RUN: AtomicU64 = AtomicU64::new(0);
    format!("{:016x}-{id}", RUN.fetch_add(1, Ordering::Relaxed))
}

/// Each variant once, checked: every item updated, and (with the outbox) one row per event.
fn check<C>()
where
    C: BenchBackend + DieselByHand,
    C::Backend: uow::Dialect,
    Item: Persist<C::Backend> + uow::Load<C::Backend>,
{
    let (mut db, rows) = open::<C>();
    let count = |conn: &mut C| conn.outbox_rows();
    assert_eq!(
        uow_commit(&mut db.conn, &rows, Events::InMemory).ok(),
        Some(CHANGES)
    );
    assert_eq!(count(&mut db.conn), 0);
    let rows = db.conn.reload();
    assert_eq!(
        uow_commit(&mut db.conn, &rows, Events::Outbox).ok(),
        Some(2 * CHANGES)
    );
    assert_eq!(count(&mut db.conn), CHANGES as i64);
    let rows = db.conn.reload();
    assert_eq!(C::by_hand(&mut db.conn, &rows).ok(), Some(2 * CHANGES));
    assert_eq!(count(&mut db.conn), 2 * CHANGES as i64);
}

fn commit_group<C>(c: &mut Criterion)
where
    C: BenchBackend + DieselByHand,
    C::Backend: uow::Dialect,
    Item: Persist<C::Backend> + uow::Load<C::Backend>,
{
    check::<C>();
    let mut group = c.benchmark_group(format!("outbox_commit_{CHANGES}_{}", C::NAME));
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (name, events) in [
        ("events_in_memory", Some(Events::InMemory)),
        ("outbox", Some(Events::Outbox)),
        ("diesel_by_hand", None),
    ] {
        group.bench_function(name, |b| {
            let (mut db, _) = open::<C>();
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let rows = db.conn.reload();
                    let start = Instant::now();
                    let written = match events {
                        Some(events) => uow_commit(&mut db.conn, &rows, events).ok(),
                        None => C::by_hand(&mut db.conn, &rows).ok(),
                    };
                    total += start.elapsed();
                    assert!(written.is_some());
                }
                total
            })
        });
    }
    group.finish();
}

fn outbox(c: &mut Criterion) {
    commit_group::<diesel::SqliteConnection>(c);
    #[cfg(feature = "postgres")]
    commit_group::<diesel::PgConnection>(c);
    #[cfg(feature = "rabbitmq")]
    relay::group(c, "rabbitmq");
    #[cfg(feature = "nats")]
    relay::group(c, "nats");
}

/// The relay's throughput: `RELAYED` outbox rows (in an SQLite file, as a service's own
/// database would hold them) published in batches of 100 to a broker on this machine.
#[cfg(any(feature = "rabbitmq", feature = "nats"))]
mod relay {
    use super::*;
    use criterion::Throughput;
    use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
    use diesel_async::AsyncConnection;
    use uow::outbox::schema::uow_outbox::dsl as o;
    use uow::outbox::{Publisher, Relay};

    pub const RELAYED: usize = 1_000;

    type AsyncSqlite = SyncConnectionWrapper<diesel::SqliteConnection>;

    fn runtime() -> tokio::runtime::Runtime {
        match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => panic!("cannot start tokio: {e}"),
        }
    }

    /// `RELAYED` unpublished rows, as commits would write them.
    fn fill(conn: &mut diesel::SqliteConnection) {
        let rows: Vec<_> = (0..RELAYED)
            .map(|n| {
                (
                    o::message_id.eq(format!("{}-{n}", uuid_like(n as i32))),
                    o::aggregate_type.eq("Item"),
                    o::aggregate_key.eq((n % 50).to_string()),
                    o::event_type.eq("QtyChanged"),
                    o::payload.eq(format!(r#"{{"item":{},"qty":{n}}}"#, n % 50)),
                    o::created_at.eq(0i64),
                )
            })
            .collect();
        for chunk in rows.chunks(500) {
            if let Err(e) = diesel::insert_into(o::uow_outbox)
                .values(chunk.to_vec())
                .execute(conn)
            {
                panic!("{e}");
            }
        }
    }

    /// Relays until the outbox is empty: the rows published.
    async fn relay_all<P: Publisher>(relay: &mut Relay<P>, conn: &mut AsyncSqlite) -> usize {
        let mut published = 0;
        loop {
            match relay.relay_once(conn).await {
                Ok(0) => return published,
                Ok(n) => published += n,
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Runs `future` to its end from inside the runtime's `block_on` (criterion's closures are
    /// synchronous).
    fn wait<F: std::future::Future>(future: F) -> F::Output {
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
    }

    /// Benchmarks `relay` publishing `RELAYED` rows, filled before each iteration; `after`
    /// runs after each, untimed (a queue emptied). Called inside the runtime.
    fn timed_relay<P: Publisher>(
        group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
        relay: &mut Relay<P>,
        conn: &mut AsyncSqlite,
        filler: &mut diesel::SqliteConnection,
        mut after: impl AsyncFnMut(&Relay<P>),
    ) {
        group.bench_function("relay", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    fill(filler);
                    let start = Instant::now();
                    let published = wait(relay_all(relay, conn));
                    total += start.elapsed();
                    assert_eq!(published, RELAYED);
                    wait(after(relay));
                }
                total
            })
        });
    }

    pub fn group(c: &mut Criterion, broker: &str) {
        let dir =
            std::env::temp_dir().join(format!("uow_bench_relay_{}_{broker}", std::process::id()));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("{e}");
        }
        let path = dir.join("outbox.db").to_string_lossy().into_owned();
        let mut filler = match diesel::SqliteConnection::establish(&path) {
            Ok(conn) => conn,
            Err(e) => panic!("{e}"),
        };
        for statement in uow::outbox::SQLITE_SCHEMA {
            if let Err(e) =
                diesel::connection::SimpleConnection::batch_execute(&mut filler, statement)
            {
                panic!("{e}");
            }
        }
        let runtime = runtime();
        let mut group = c.benchmark_group(format!("outbox_relay_{broker}"));
        group
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .throughput(Throughput::Elements(RELAYED as u64))
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(5));
        runtime.block_on(async {
            let mut conn = match AsyncSqlite::establish(&path).await {
                Ok(conn) => conn,
                Err(e) => panic!("{e}"),
            };
            match broker {
                #[cfg(feature = "rabbitmq")]
                "rabbitmq" => {
                    let (publisher, queue) = rabbitmq::publisher().await;
                    let mut relay = Relay::new(publisher).batch_size(100);
                    fill(&mut filler);
                    assert_eq!(
                        relay_all(&mut relay, &mut conn).await,
                        RELAYED,
                        "checked once before timing"
                    );
                    rabbitmq::purge(&relay, &queue).await;
                    timed_relay(
                        &mut group,
                        &mut relay,
                        &mut conn,
                        &mut filler,
                        async |relay| rabbitmq::purge(relay, &queue).await,
                    );
                    rabbitmq::delete(&relay, &queue).await;
                }
                #[cfg(feature = "nats")]
                "nats" => {
                    let (publisher, stream) = nats::publisher().await;
                    let mut relay = Relay::new(publisher).batch_size(100);
                    fill(&mut filler);
                    assert_eq!(
                        relay_all(&mut relay, &mut conn).await,
                        RELAYED,
                        "checked once before timing"
                    );
                    timed_relay(&mut group, &mut relay, &mut conn, &mut filler, async |_| {});
                    nats::delete(&relay, &stream).await;
                }
                other => panic!("no publisher for {other}"),
            }
        });
        group.finish();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(feature = "rabbitmq")]
    mod rabbitmq {
        use uow::outbox::lapin::options::{
            QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
        };
        use uow::outbox::lapin::types::FieldTable;
        use uow::outbox::{RabbitMqPublisher, Relay};

        const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

        pub async fn publisher() -> (RabbitMqPublisher, String) {
            let queue = format!("uow-bench-relay-{}", std::process::id());
            let publisher = match RabbitMqPublisher::connect(URL, "").await {
                Ok(p) => p,
                Err(e) => panic!("RabbitMQ at {URL}: {e}"),
            };
            let declared = publisher
                .channel()
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions::default(),
                    FieldTable::default(),
                )
                .await;
            if let Err(e) = declared {
                panic!("{e}");
            }
            let routed = queue.clone();
            (publisher.routing_key(move |_| routed.clone()), queue)
        }

        pub async fn purge(relay: &Relay<RabbitMqPublisher>, queue: &str) {
            let purged = relay
                .publisher()
                .channel()
                .queue_purge(queue.into(), QueuePurgeOptions::default())
                .await;
            if let Err(e) = purged {
                panic!("{e}");
            }
        }

        pub async fn delete(relay: &Relay<RabbitMqPublisher>, queue: &str) {
            let _ = relay
                .publisher()
                .channel()
                .queue_delete(queue.into(), QueueDeleteOptions::default())
                .await;
        }
    }

    #[cfg(feature = "nats")]
    mod nats {
        use uow::outbox::async_nats::jetstream::{self, stream};
        use uow::outbox::{JetStreamPublisher, Relay};

        pub async fn publisher() -> (JetStreamPublisher, String) {
            let name = format!("UOW_BENCH_RELAY_{}", std::process::id());
            let prefix = format!("uow-bench-relay-{}", std::process::id());
            let client = match uow::outbox::async_nats::connect("nats://127.0.0.1:4222").await {
                Ok(client) => client,
                Err(e) => panic!("NATS at 127.0.0.1:4222: {e}"),
            };
            let context = jetstream::new(client);
            let created = context
                .get_or_create_stream(stream::Config {
                    name: name.clone(),
                    subjects: vec![format!("{prefix}.>")],
                    ..Default::default()
                })
                .await;
            if let Err(e) = created {
                panic!("{e}");
            }
            (JetStreamPublisher::new(context, prefix), name)
        }

        pub async fn delete(relay: &Relay<JetStreamPublisher>, stream: &str) {
            let _ = relay.publisher().context().delete_stream(stream).await;
        }
    }
}

criterion_group!(benches, outbox);
criterion_main!(benches);
