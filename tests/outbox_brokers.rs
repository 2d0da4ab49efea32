//! The relay against the real brokers (features `rabbitmq` and `nats`), on every enabled
//! backend: the events of the commits that succeed arrive, in order per aggregate, and none of
//! a commit or scope that rolled back; a broker's refusal (a nack, an unroutable message)
//! fails the batch and leaves its rows to publish again; two relays side by side publish each
//! row once; consumers racing on the same messages handle each once through the inbox; and
//! JetStream's duplicate window drops a message id published again.
//!
//! Every test has queues, exchanges and streams of its own (named after the process and a
//! counter), removed at its end. RabbitMQ and NATS must be up (`.ci/run` starts them); one
//! that cannot be reached fails the test.
#![cfg(all(feature = "rabbitmq", feature = "nats"))]

mod brokers;
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use brokers::*;
use common::open_isolated;
use uow::outbox::lapin::types::AMQPValue;
use uow::outbox::lapin::ExchangeKind;
use uow::outbox::{JetStreamPublisher, RabbitMqPublisher, Relay};
use uow::prelude::*;
use uow::Load;

/// One `#[test]` per enabled backend for each generic test function named.
macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        #[cfg(feature = "sqlite")]
        mod sqlite {
            $(#[test]
            fn $test() -> Result<(), super::BoxError> {
                super::$test::<diesel::SqliteConnection>()
            })*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(#[test]
            fn $test() -> Result<(), super::BoxError> {
                super::$test::<diesel::PgConnection>()
            })*
        }
        #[cfg(feature = "mysql")]
        mod mysql {
            $(#[test]
            fn $test() -> Result<(), super::BoxError> {
                super::$test::<diesel::MysqlConnection>()
            })*
        }
    };
}

on_every_backend!(
    rabbitmq_delivers_every_committed_event_and_none_rolled_back,
    rabbitmq_keeps_each_aggregates_order_through_a_topic_exchange,
    rabbitmq_refusals_fail_the_batch_and_leave_its_rows_unpublished,
    rabbitmq_a_relay_started_before_its_exchange_exists_publishes_once_it_does,
    rabbitmq_two_relays_publish_each_row_once_and_racing_consumers_handle_it_once,
    nats_delivers_every_event_once_in_order_and_its_window_drops_a_republished_id,
    nats_two_relays_publish_each_row_once_and_republished_ids_are_dropped,
);

/// The wait between two batches of a relay when two run side by side: the other's turn at
/// SQLite's write lock (on PostgreSQL and MySQL they work at once regardless).
const TURN: Duration = Duration::from_millis(10);

/// Commits that must leave nothing in the outbox: one the CHECK refuses (the wallet's balance
/// below zero), and a scope that writes its changes and its event's row (a flush) and then
/// returns an error. Their events have `n` < 0.
fn commit_and_roll_back<C: RelayDb>(conn: &mut C) -> Result<(), BoxError>
where
    Wallet: Persist<C::Backend> + Load<C::Backend>,
{
    let mut uow = UnitOfWork::<C>::new();
    let wallet = uow.load::<Wallet>(conn, 1)?;
    uow.get_mut(&wallet)?.balance = -1;
    uow.record_outbox_event(&wallet, Deposited { wallet: 1, n: -1 })?;
    let refused = uow.commit(conn);
    assert!(refused.is_err(), "the CHECK refuses a negative balance");
    drop(uow); // gives up: its event goes with it

    let mut uow = UnitOfWork::<C>::new();
    let gave_up = uow.transaction(conn, |scope| {
        let wallet = scope.load::<Wallet>(2)?;
        scope.get_mut(&wallet)?.balance += 5;
        scope.record_outbox_event(&wallet, Deposited { wallet: 2, n: -2 })?;
        scope.flush()?;
        Err::<(), Box<dyn std::error::Error>>("the handler gave up".into())
    });
    assert!(gave_up.is_err());
    Ok(())
}

fn rabbitmq_delivers_every_committed_event_and_none_rolled_back<C: RelayDb>() -> Result<(), BoxError>
where
    Wallet: Persist<C::Backend> + Load<C::Backend>,
{
    let mut db = open_isolated::<C>();
    create_tables(&mut db);
    let mut seed = seed();
    let mut counts = open_wallets(&mut db.conn, 3);
    deposit_rounds(&mut db.conn, &mut counts, 5, &mut seed);
    commit_and_roll_back(&mut db.conn)?;
    deposit_rounds(&mut db.conn, &mut counts, 5, &mut seed);

    let received = runtime().block_on(async {
        let mut rabbit = Rabbit::connect().await;
        let queue = rabbit.queue("events", &[]).await;
        let to_queue = queue.clone();
        // The default exchange: the routing key is the queue's name.
        let publisher = RabbitMqPublisher::connect(&amqp_url(), "")
            .await?
            .routing_key(move |_| to_queue.clone());
        let mut conn = connect_async::<C>(&db.target).await;
        let mut relay = Relay::new(publisher).batch_size(4);
        relay_until_empty::<C, _>(&mut relay, &mut conn).await;
        let received = rabbit.drain(&queue).await;
        Ok::<_, BoxError>((queue, received))
    });
    let (queue, received) = received?;

    let rows = C::outbox_rows(&mut db.conn);
    assert!(
        rows.iter().all(|(_, published)| *published),
        "every row marked published"
    );
    let ids: Vec<&str> = received.iter().map(|m| m.message_id.as_str()).collect();
    let written: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids, written,
        "each row once, in sequence order, and nothing else"
    );
    assert_eq!(received.len(), 30, "3 wallets, 10 commits");
    assert!(
        received.iter().all(|m| m.n >= 0),
        "no event of a rolled back commit or scope"
    );
    let pairs: Vec<(i32, i64)> = received.iter().map(|m| (m.wallet, m.n)).collect();
    assert_in_order(&pairs, &counts, "the queue");

    // What a consumer sees of each message.
    for m in &received {
        assert_eq!(
            (m.event_type.as_str(), m.aggregate_type.as_str()),
            ("Deposited", "Wallet")
        );
        assert_eq!(m.aggregate_key, m.wallet.to_string(), "the key as JSON");
        assert_eq!(m.metadata["content_type"], "application/json");
        assert_eq!(m.metadata["delivery_mode"], "Some(2)", "persistent");
        assert_eq!(m.metadata["routing_key"], queue);
        assert_ne!(m.metadata["timestamp"], "None");
    }
    let sequences: Vec<i64> = received.iter().map(|m| m.sequence).collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
    Ok(())
}

fn rabbitmq_keeps_each_aggregates_order_through_a_topic_exchange<C: RelayDb>(
) -> Result<(), BoxError>
where
    Wallet: Persist<C::Backend> + Load<C::Backend>,
{
    let mut db = open_isolated::<C>();
    create_tables(&mut db);
    let mut seed = seed();
    let mut counts = open_wallets(&mut db.conn, 5);
    deposit_rounds(&mut db.conn, &mut counts, 40, &mut seed);
    let total = 200;

    let received = runtime().block_on(async {
        let mut rabbit = Rabbit::connect().await;
        let exchange = rabbit.exchange("topic", ExchangeKind::Topic).await;
        let queue = rabbit.queue("wallets", &[]).await;
        rabbit.bind(&queue, &exchange, "Wallet.*").await;
        // The default routing key, "{aggregate_type}.{event_type}".
        let publisher = RabbitMqPublisher::connect(&amqp_url(), exchange.as_str()).await?;
        let mut conn = connect_async::<C>(&db.target).await;
        let mut relay = Relay::new(publisher)
            .batch_size(7)
            .idle_interval(Duration::from_millis(10));
        let collect = async {
            let mut got = Vec::new();
            while got.len() < total {
                match rabbit.next(&queue).await {
                    Some(m) => got.push(m),
                    None => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
            got
        };
        // `run` publishes until it is dropped: here, once the queue has every event.
        let got = tokio::select! {
            failed = relay.run(&mut conn, tokio::time::sleep) => panic!("the relay stopped: {failed:?}"),
            got = tokio::time::timeout(Duration::from_secs(60), collect) => got?,
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(rabbit.drain(&queue).await, [], "nothing more than each event once");
        Ok::<_, BoxError>(got)
    })?;

    assert!(received
        .iter()
        .all(|m| m.metadata["routing_key"] == "Wallet.Deposited"));
    let pairs: Vec<(i32, i64)> = received.iter().map(|m| (m.wallet, m.n)).collect();
    assert_in_order(&pairs, &counts, "the queue");
    let interleaved = pairs.windows(2).filter(|w| w[0].0 != w[1].0).count();
    assert!(
        interleaved > 100,
        "the wallets' events interleave: {interleaved} switches"
    );
    Ok(())
}

fn rabbitmq_refusals_fail_the_batch_and_leave_its_rows_unpublished<C: RelayDb>(
) -> Result<(), BoxError>
where
    Wallet: Persist<C::Backend> + Load<C::Backend>,
{
    let mut db = open_isolated::<C>();
    create_tables(&mut db);
    let mut seed = seed();
    let mut counts = open_wallets(&mut db.conn, 1);
    deposit_rounds(&mut db.conn, &mut counts, 5, &mut seed);

    runtime().block_on(async {
        let mut rabbit = Rabbit::connect().await;
        let mut conn = connect_async::<C>(&db.target).await;

        // An exchange no queue is bound to: the broker returns the (mandatory) messages.
        let nowhere = rabbit.exchange("unbound", ExchangeKind::Topic).await;
        let publisher = RabbitMqPublisher::connect(&amqp_url(), nowhere.as_str()).await?;
        let error = match Relay::new(publisher).relay_once(&mut conn).await {
            Err(e) => e,
            Ok(n) => panic!("{n} unroutable messages published"),
        };
        assert!(
            matches!(
                error,
                uow::Error::Publish {
                    publisher: "RabbitMQ",
                    ..
                }
            ),
            "{error}"
        );
        let text = error.to_string();
        assert!(
            text.contains("unroutable") && text.contains("NO_ROUTE"),
            "{text}"
        );
        assert_eq!(C::unpublished(&mut conn).await, 5, "nothing marked");

        // `mandatory(false)`: the broker drops them, and they count as published.
        let publisher = RabbitMqPublisher::connect(&amqp_url(), nowhere.as_str())
            .await?
            .mandatory(false);
        let mut relay = Relay::new(publisher).batch_size(2);
        assert_eq!(relay.relay_once(&mut conn).await?, 2);
        assert_eq!(C::unpublished(&mut conn).await, 3);

        // A queue that refuses what exceeds 2 messages: the broker nacks the third.
        let small = rabbit
            .queue(
                "full",
                &[
                    ("x-max-length", AMQPValue::LongInt(2)),
                    ("x-overflow", AMQPValue::LongString("reject-publish".into())),
                ],
            )
            .await;
        let to_small = small.clone();
        let publisher = RabbitMqPublisher::connect(&amqp_url(), "")
            .await?
            .routing_key(move |_| to_small.clone());
        let mut relay = Relay::new(publisher);
        let error = match relay.relay_once(&mut conn).await {
            Err(e) => e,
            Ok(n) => panic!("{n} messages published past the queue's limit"),
        };
        assert!(error.to_string().contains("refused (nack"), "{error}");
        assert_eq!(C::unpublished(&mut conn).await, 3, "nothing marked");
        assert_eq!(
            rabbit.count(&small).await,
            2,
            "the first two reached the queue"
        );

        // Room again: the same rows are published, the first two a second time.
        let first = rabbit.drain(&small).await;
        let mut relay = Relay::new(relay_publisher(&small).await?).batch_size(2);
        assert_eq!(relay.relay_once(&mut conn).await?, 2);
        let again = rabbit.drain(&small).await;
        let ids = |v: &[Received]| v.iter().map(|m| m.message_id.clone()).collect::<Vec<_>>();
        assert_eq!(
            ids(&first),
            ids(&again),
            "published again with the same ids"
        );
        assert_eq!(relay.relay_once(&mut conn).await?, 1);
        assert_eq!(C::unpublished(&mut conn).await, 0);
        Ok::<_, BoxError>(())
    })
}

fn rabbitmq_a_relay_started_before_its_exchange_exists_publishes_once_it_does<C: RelayDb>(
) -> Result<(), BoxError>
where
    Wallet: Persist<C::Backend> + Load<C::Backend>,
{
    let mut db = open_isolated::<C>();
    create_tables(&mut db);
    let mut seed = seed();
    let mut counts = open_wallets(&mut db.conn, 1);
    deposit_rounds(&mut db.conn, &mut counts, 3, &mut seed);

    runtime().block_on(async {
        let mut rabbit = Rabbit::connect().await;
        let mut conn = connect_async::<C>(&db.target).await;
        let exchange = unique("late");
        let publisher = RabbitMqPublisher::connect(&amqp_url(), exchange.as_str()).await?;
        let mut relay = Relay::new(publisher);

        // The broker closes the channel of a publication to an exchange it does not have.
        let error = match relay.relay_once(&mut conn).await {
            Err(e) => e.to_string(),
            Ok(n) => panic!("{n} messages published to a missing exchange"),
        };
        assert!(
            error.contains("NOT_FOUND") && error.contains(&exchange),
            "{error}"
        );
        assert!(!relay.publisher().channel().status().connected());
        assert_eq!(C::unpublished(&mut conn).await, 3, "nothing marked");

        // Once it exists, the same relay connects again and publishes.
        rabbit
            .declare_exchange(&exchange, ExchangeKind::Topic)
            .await;
        let queue = rabbit.queue("late", &[]).await;
        rabbit.bind(&queue, &exchange, "#").await;
        assert_eq!(relay.relay_once(&mut conn).await?, 3);
        assert!(relay.publisher().channel().status().connected());
        let received = rabbit.drain(&queue).await;
        let pairs: Vec<(i32, i64)> = received.iter().map(|m| (m.wallet, m.n)).collect();
        assert_eq!(pairs, [(1, 0), (1, 1), (1, 2)]);
        Ok::<_, BoxError>(())
    })
}

/// A publisher to `queue` through the default exchange.
async fn relay_publisher(queue: &str) -> Result<RabbitMqPublisher, uow::outbox::PublishError> {
    let queue = queue.to_owned();
    Ok(RabbitMqPublisher::connect(&amqp_url(), "")
        .await?
        .routing_key(move |_| queue.clone()))
}

fn rabbitmq_two_relays_publish_each_row_once_and_racing_consumers_handle_it_once<C: RelayDb>(
) -> Result<(), BoxError>
where
    Wallet: Persist<C::Backend> + Load<C::Backend>,
    Handled: Persist<C::Backend>,
{
    let mut db = open_isolated::<C>();
    create_tables(&mut db);
    let mut seed = seed();
    let mut counts = open_wallets(&mut db.conn, 8);
    deposit_rounds(&mut db.conn, &mut counts, 25, &mut seed);
    let total = 200;

    let runtime = runtime();
    let (rabbit, queues, republished) = runtime.block_on(async {
        let mut rabbit = Rabbit::connect().await;
        // Every message to both queues: one per consumer.
        let fanout = rabbit.exchange("fanout", ExchangeKind::Fanout).await;
        let queues = [rabbit.queue("c1", &[]).await, rabbit.queue("c2", &[]).await];
        for queue in &queues {
            rabbit.bind(queue, &fanout, "").await;
        }
        let relay = |pause| {
            let fanout = fanout.clone();
            async move {
                let publisher = RabbitMqPublisher::connect(&amqp_url(), fanout.as_str()).await?;
                Ok::<_, uow::outbox::PublishError>(
                    Relay::new(Counting::new(publisher, pause)).batch_size(10),
                )
            }
        };
        let (mut a, mut b) = (
            relay(Duration::from_millis(2)).await?,
            relay(Duration::from_millis(3)).await?,
        );
        let mut conn_a = connect_async::<C>(&db.target).await;
        let mut conn_b = connect_async::<C>(&db.target).await;
        let (by_a, by_b) =
            race_two_relays::<C, _>((&mut a, &mut conn_a), (&mut b, &mut conn_b), TURN, total)
                .await;
        for queue in &queues {
            assert_eq!(rabbit.count(queue).await, total as u32);
        }

        // As if relays had died after the broker's confirm: a third of the rows published
        // again, by both relays at once.
        let republished = C::unpublish_every(&mut db.connect(), 3);
        tokio::join!(
            relay_until_empty_pausing::<C, _>(&mut a, &mut conn_a, TURN),
            relay_until_empty_pausing::<C, _>(&mut b, &mut conn_b, TURN),
        );
        let again = a.publisher().published + b.publisher().published - total;
        assert_eq!(
            again, republished,
            "each unpublished row published once more"
        );
        eprintln!(
            "{:?}: relays published {by_a} and {by_b} rows, then {republished} again",
            C::KIND
        );
        Ok::<_, BoxError>((rabbit, queues, republished))
    })?;

    // Two consumers, each on its queue (every message), handle into the same database at once.
    // (handled, skipped as duplicates) per consumer.
    let outcomes: Vec<(usize, usize)> = std::thread::scope(|s| {
        let consumers: Vec<_> = queues
            .iter()
            .enumerate()
            .map(|(n, queue)| {
                let (runtime, rabbit, mut conn) = (&runtime, &rabbit, db.connect());
                s.spawn(move || {
                    let channel = runtime.block_on(rabbit.channel());
                    let (mut handled, mut skipped) = (0, 0);
                    while let Some(message) = runtime.block_on(next(&channel, queue)) {
                        if handle(&mut conn, &message, n as i32) {
                            handled += 1;
                        } else {
                            skipped += 1;
                        }
                    }
                    (handled, skipped)
                })
            })
            .collect();
        consumers
            .into_iter()
            .map(|c| c.join().unwrap_or_else(|_| panic!("a consumer panicked")))
            .collect()
    });
    let handled: usize = outcomes.iter().map(|o| o.0).sum();
    let skipped: usize = outcomes.iter().map(|o| o.1).sum();
    assert_eq!(
        handled, total,
        "each message handled once over both consumers"
    );
    assert_eq!(
        handled + skipped,
        2 * (total + republished),
        "every delivery seen"
    );
    let (per_message, rows) = handled_counts(&mut db.conn);
    assert_eq!(rows, total as i64);
    assert!(
        per_message.values().all(|n| *n == 1),
        "one handled row per message"
    );
    let outbox: BTreeSet<String> = C::outbox_rows(&mut db.conn)
        .into_iter()
        .map(|r| r.0)
        .collect();
    let handled_ids: BTreeSet<String> = per_message.into_keys().collect();
    assert_eq!(handled_ids, outbox, "every event handled");
    eprintln!(
        "{:?}: consumers handled {} and {} messages, dropped {} duplicates",
        C::KIND,
        outcomes[0].0,
        outcomes[1].0,
        skipped
    );
    Ok(())
}

/// Handles `message` once through the async driver: `first_delivery` in an async scope.
async fn handle_async<C: RelayDb>(conn: &mut C::Async, message: &Received, consumer: i32) -> bool
where
    Handled: Persist<C::Backend>,
{
    use uow::ScopedFutureExt;
    let mut uow = AsyncUnitOfWork::<C::Async>::new();
    let message = message.clone();
    let outcome = uow
        .transaction(conn, |scope| {
            async move {
                if !scope.first_delivery(&message.message_id).await? {
                    return Ok(false);
                }
                scope.register_new(Handled {
                    id: 0,
                    message_id: message.message_id.clone(),
                    wallet: message.wallet,
                    n: message.n,
                    consumer,
                })?;
                Ok::<_, uow::Error>(true)
            }
            .scope_boxed()
        })
        .await;
    match outcome {
        Ok(first) => first,
        Err(e) => panic!("consumer {consumer} failed: {e}"),
    }
}

fn nats_delivers_every_event_once_in_order_and_its_window_drops_a_republished_id<C: RelayDb>(
) -> Result<(), BoxError>
where
    Wallet: Persist<C::Backend> + Load<C::Backend>,
    Handled: Persist<C::Backend>,
{
    let mut db = open_isolated::<C>();
    create_tables(&mut db);
    let mut seed = seed();
    let mut counts = open_wallets(&mut db.conn, 4);
    deposit_rounds(&mut db.conn, &mut counts, 10, &mut seed);
    commit_and_roll_back(&mut db.conn)?;
    deposit_rounds(&mut db.conn, &mut counts, 15, &mut seed);
    let total = 100;

    runtime().block_on(async {
        let nats = Nats::stream(Duration::from_secs(300)).await;
        let publisher = JetStreamPublisher::connect(&nats_url(), nats.prefix.as_str()).await?;
        let mut conn = connect_async::<C>(&db.target).await;
        let mut relay = Relay::new(publisher).batch_size(9);
        relay_until_empty::<C, _>(&mut relay, &mut conn).await;
        assert_eq!(relay.publisher().duplicates(), 0);

        let stored = nats.messages().await;
        let rows = C::outbox_rows(&mut db.connect());
        let ids: Vec<&str> = stored.iter().map(|(_, m)| m.message_id.as_str()).collect();
        let written: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(
            ids, written,
            "each row once, in sequence order, nothing rolled back"
        );
        assert_eq!(stored.len(), total);
        let subject = format!("{}.Wallet.Deposited", nats.prefix);
        for (s, m) in &stored {
            assert_eq!(s, &subject);
            assert_eq!(
                (m.event_type.as_str(), m.aggregate_type.as_str()),
                ("Deposited", "Wallet")
            );
            assert_eq!(m.aggregate_key, m.wallet.to_string());
            assert_eq!(m.metadata["header Content-Type"], "application/json");
        }
        let pairs: Vec<(i32, i64)> = stored.iter().map(|(_, m)| (m.wallet, m.n)).collect();
        assert_in_order(&pairs, &counts, "the stream");

        // Every row published again (relays that died before their COMMIT): within the
        // duplicate window the server acks each as a duplicate and stores none.
        assert_eq!(C::unpublish_every(&mut db.connect(), 1), total);
        relay_until_empty::<C, _>(&mut relay, &mut conn).await;
        assert_eq!(
            relay.publisher().duplicates(),
            total as u64,
            "each id seen again"
        );
        assert_eq!(nats.count().await, total as u64, "no second copy stored");

        // Two consumers read the whole stream, twice over (a redelivery), at once, through
        // the async driver: each message handled once.
        let messages: Vec<Received> = stored.into_iter().map(|(_, m)| m).collect();
        let consume = |n: i32| {
            let (messages, target) = (&messages, &db.target);
            async move {
                let mut conn = connect_async::<C>(target).await;
                let mut handled = 0;
                for message in messages.iter().chain(messages.iter()) {
                    handled += usize::from(handle_async::<C>(&mut conn, message, n).await);
                }
                handled
            }
        };
        let (one, two) = tokio::join!(consume(1), consume(2));
        assert_eq!(one + two, total, "handled once over both: {one} + {two}");
        Ok::<_, BoxError>(())
    })?;
    let (per_message, rows) = handled_counts(&mut db.conn);
    assert_eq!(rows, total as i64);
    assert!(per_message.values().all(|n| *n == 1));
    Ok(())
}

fn nats_two_relays_publish_each_row_once_and_republished_ids_are_dropped<C: RelayDb>(
) -> Result<(), BoxError>
where
    Wallet: Persist<C::Backend> + Load<C::Backend>,
{
    let mut db = open_isolated::<C>();
    create_tables(&mut db);
    let mut seed = seed();
    let mut counts = open_wallets(&mut db.conn, 6);
    deposit_rounds(&mut db.conn, &mut counts, 30, &mut seed);
    let total = 180;

    runtime().block_on(async {
        let nats = Nats::stream(Duration::from_secs(300)).await;
        let relay = |pause| {
            let prefix = nats.prefix.clone();
            async move {
                let publisher = JetStreamPublisher::connect(&nats_url(), prefix).await?;
                Ok::<_, uow::outbox::PublishError>(
                    Relay::new(Counting::new(publisher, pause)).batch_size(10),
                )
            }
        };
        let (mut a, mut b) = (
            relay(Duration::from_millis(2)).await?,
            relay(Duration::from_millis(3)).await?,
        );
        let mut conn_a = connect_async::<C>(&db.target).await;
        let mut conn_b = connect_async::<C>(&db.target).await;
        let (by_a, by_b) =
            race_two_relays::<C, _>((&mut a, &mut conn_a), (&mut b, &mut conn_b), TURN, total)
                .await;
        let duplicates = |a: &Relay<Counting<JetStreamPublisher>>,
                          b: &Relay<Counting<JetStreamPublisher>>| {
            a.publisher().inner.duplicates() + b.publisher().inner.duplicates()
        };
        assert_eq!(duplicates(&a, &b), 0);
        assert_eq!(nats.count().await, total as u64);

        let republished = C::unpublish_every(&mut db.connect(), 4);
        tokio::join!(
            relay_until_empty_pausing::<C, _>(&mut a, &mut conn_a, TURN),
            relay_until_empty_pausing::<C, _>(&mut b, &mut conn_b, TURN),
        );
        assert_eq!(
            duplicates(&a, &b),
            republished as u64,
            "the duplicate window drops every id published again"
        );
        assert_eq!(nats.count().await, total as u64, "no second copy stored");

        let stored = nats.messages().await;
        let ids: BTreeSet<&str> = stored.iter().map(|(_, m)| m.message_id.as_str()).collect();
        assert_eq!(ids.len(), total);
        let pairs: Vec<(i32, i64)> = stored.iter().map(|(_, m)| (m.wallet, m.n)).collect();
        assert_in_order(&pairs, &counts, "the stream");
        eprintln!(
            "{:?}: relays published {by_a} and {by_b} rows; {republished} published again were \
             dropped by the duplicate window",
            C::KIND
        );
        Ok::<_, BoxError>(())
    })
}
