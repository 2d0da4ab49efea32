//! The transactional outbox (feature `outbox`): events written to `uow_outbox` in the
//! commit's transaction under the unit of work's all-or-nothing rules, on every backend and
//! both drivers; the relay (feature `async`) publishing each row once, in order per
//! aggregate, with several relays side by side; the inbox handling a message once.
//!
//! The brokers themselves (RabbitMQ, NATS JetStream) are in `outbox_brokers.rs` and
//! `outbox_crash.rs`; here the relay publishes to a publisher in memory.
#![cfg(feature = "outbox")]

mod common;

use common::*;
use diesel::prelude::*;
use uow::outbox::OutboxEvent;
use uow::prelude::*;

#[derive(serde::Serialize, Debug, Clone, PartialEq)]
struct Deposited {
    amount: i64,
}

impl OutboxEvent for Deposited {
    const EVENT_TYPE: &'static str = "Deposited";
}

/// An event serde cannot write as JSON (a map whose keys are not strings).
#[derive(serde::Serialize)]
struct Unserializable(std::collections::HashMap<(i32, i32), i32>);

impl OutboxEvent for Unserializable {
    const EVENT_TYPE: &'static str = "Unserializable";
}

/// Creates `uow_outbox` and `uow_inbox` in `db` from the schema uow ships.
fn create_outbox<C: TestBackend>(db: &mut TestDb<C>) {
    let schema = match C::KIND {
        Kind::Sqlite => uow::outbox::SQLITE_SCHEMA,
        Kind::Postgres => uow::outbox::POSTGRES_SCHEMA,
        Kind::Mysql => uow::outbox::MYSQL_SCHEMA,
    };
    for statement in schema {
        db.exec(statement);
    }
}

/// Each outbox row: (message id, aggregate type, aggregate key, event type, payload,
/// published at), in sequence order.
type Row = (String, String, String, String, String, Option<i64>);

/// The outbox's rows on `$conn`, in sequence order (a macro: each test module has its own
/// connection type).
macro_rules! read_sequences {
    ($conn:expr) => {{
        use uow::outbox::schema::uow_outbox::dsl as o;
        o::uow_outbox
            .order(o::sequence)
            .select(o::sequence)
            .load::<i64>($conn)?
    }};
}

macro_rules! read_outbox {
    ($conn:expr) => {{
        use uow::outbox::schema::uow_outbox::dsl as o;
        o::uow_outbox
            .order(o::sequence)
            .select((
                o::message_id,
                o::aggregate_type,
                o::aggregate_key,
                o::event_type,
                o::payload,
                o::published_at,
            ))
            .load::<Row>($conn)?
    }};
}

backend_tests! {
    fn a_commit_writes_its_events_with_the_keys_the_database_assigned(db) {
        create_outbox(&mut db);
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        let bob = uow.register_new(account("bob", 20))?;
        uow.record_outbox_event(&ann, Deposited { amount: 10 })?;
        uow.record_outbox_event(&bob, Deposited { amount: 20 })?;
        uow.record_outbox_event(&ann, Deposited { amount: 1 })?;
        let log = db.record();
        let report = uow.commit(&mut db.conn)?;
        assert_eq!(report.inserted("uow_outbox"), 3);
        let outbox_inserts = log.writes().iter().filter(|s| s.contains("uow_outbox")).count();
        assert_eq!(outbox_inserts, 1, "one INSERT for every event of the commit: {:?}", log.writes());

        let (ann_id, bob_id) = (uow.get(&ann)?.id, uow.get(&bob)?.id);
        let rows = read_outbox!(&mut db.conn);
        let seen: Vec<(String, String, String, String)> = rows
            .iter()
            .map(|r| (r.1.clone(), r.2.clone(), r.3.clone(), r.4.clone()))
            .collect();
        assert_eq!(
            seen,
            [
                ("Account".into(), ann_id.to_string(), "Deposited".into(), r#"{"amount":10}"#.into()),
                ("Account".into(), bob_id.to_string(), "Deposited".into(), r#"{"amount":20}"#.into()),
                ("Account".into(), ann_id.to_string(), "Deposited".into(), r#"{"amount":1}"#.into()),
            ],
            "in the order recorded, each under the key the database assigned"
        );
        // The events are handed out as any other, with the id they were written under.
        let events = uow.take_events();
        let ids: Vec<&str> = events.iter().filter_map(|e| e.outbox_message_id()).collect();
        let written: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(ids, written);
        assert_eq!(events[0].downcast_ref::<Deposited>(), Some(&Deposited { amount: 10 }));
        Ok(())
    }

    fn a_failed_commit_writes_no_event_and_the_retry_writes_it_once(db) {
        create_outbox(&mut db);
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        uow.commit(&mut db.conn)?;
        uow.get_mut(&ann)?.balance = -5; // breaks the CHECK
        uow.record_outbox_event(&ann, Deposited { amount: -15 })?;
        let error = uow.commit(&mut db.conn).expect_err("the CHECK refuses the balance");
        assert!(matches!(error, uow::Error::Statement { .. }), "{error}");
        assert!(read_outbox!(&mut db.conn).is_empty(), "no event of a rolled back commit");
        assert!(uow.take_events().is_empty(), "not handed out either");

        uow.get_mut(&ann)?.balance = 5;
        uow.commit(&mut db.conn)?;
        let rows = read_outbox!(&mut db.conn);
        assert_eq!(rows.len(), 1, "kept for the retry, written once");
        assert_eq!(rows[0].4, r#"{"amount":-15}"#);
        assert_eq!(uow.take_events()[0].outbox_message_id(), Some(rows[0].0.as_str()));
        Ok(())
    }

    fn a_scope_that_rolls_back_drops_the_events_recorded_in_it(db) {
        create_outbox(&mut db);
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        uow.record_outbox_event(&ann, Deposited { amount: 10 })?;
        let failed: Result<(), uow::Error> = uow.transaction(&mut db.conn, |scope| {
            scope.get_mut(&ann)?.balance = 30;
            scope.record_outbox_event(&ann, Deposited { amount: 20 })?;
            scope.flush()?;
            Err(uow::Error::NoTransaction) // any error: the scope rolls back
        });
        assert!(failed.is_err());
        assert!(read_outbox!(&mut db.conn).is_empty());
        uow.transaction(&mut db.conn, |scope| {
            scope.record_outbox_event(&ann, Deposited { amount: 5 })?;
            Ok::<_, uow::Error>(())
        })?;
        let payloads: Vec<String> = read_outbox!(&mut db.conn).into_iter().map(|r| r.4).collect();
        assert_eq!(payloads, [r#"{"amount":10}"#, r#"{"amount":5}"#], "the scope's own event gone");
        Ok(())
    }

    fn an_event_on_an_unchanged_entity_is_written_in_a_transaction_of_its_own(db) {
        create_outbox(&mut db);
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        uow.commit(&mut db.conn)?;
        uow.record_outbox_event(&ann, Deposited { amount: 0 })?;
        let log = db.record();
        let report = uow.commit(&mut db.conn)?;
        assert_eq!(report.inserted("uow_outbox"), 1);
        let all = log.all();
        assert!(all.iter().any(|s| s.to_ascii_uppercase().starts_with("BEGIN") || s.starts_with("START")), "{all:?}");
        assert_eq!(read_outbox!(&mut db.conn).len(), 1);
        Ok(())
    }

    fn the_events_of_a_refreshed_entity_are_not_written(db) {
        create_outbox(&mut db);
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        uow.commit(&mut db.conn)?;
        uow.get_mut(&ann)?.balance = 50;
        uow.record_outbox_event(&ann, Deposited { amount: 40 })?;
        uow.refresh(&mut db.conn, &ann)?; // the change and its event are discarded
        uow.commit(&mut db.conn)?;
        assert!(read_outbox!(&mut db.conn).is_empty());
        Ok(())
    }

    fn an_event_serde_cannot_write_is_refused_when_recorded(db) {
        create_outbox(&mut db);
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        let map = std::collections::HashMap::from([((1, 2), 3)]);
        let error = uow.record_outbox_event(&ann, Unserializable(map)).expect_err("not JSON");
        assert!(matches!(error, uow::Error::EventNotSerializable { event_type: "Unserializable", .. }), "{error}");
        assert!(error.to_string().contains("Serialize"), "{error}");
        uow.commit(&mut db.conn)?;
        assert!(read_outbox!(&mut db.conn).is_empty(), "nothing was recorded");
        Ok(())
    }
}

// The inbox: a message handled once, its record committed with the handler's changes.
// `handle_once` is the synchronous driver's; the async scope's `first_delivery` is below.
sync_backend_tests! {
    fn a_message_is_handled_once_and_a_failed_handler_can_handle_it_again(db) {
        create_outbox(&mut db);
        let mut uow = UnitOfWork::<Conn>::new();
        let failed = uow::outbox::handle_once(&mut uow, &mut db.conn, "m-1", |scope| {
            scope.register_new(account("ann", -1))?; // breaks the CHECK at COMMIT
            Ok::<_, uow::Error>(())
        });
        assert!(failed.is_err(), "the handler's changes failed");
        let inbox: i64 = uow::outbox::schema::uow_inbox::table.count().get_result(&mut db.conn)?;
        assert_eq!(inbox, 0, "the message is not recorded as handled");

        let mut handled = 0;
        for _ in 0..3 {
            let outcome = uow::outbox::handle_once(&mut uow, &mut db.conn, "m-1", |scope| {
                scope.register_new(account("ann", 10))?;
                Ok::<_, uow::Error>("deposited")
            })?;
            handled += usize::from(outcome == Some("deposited"));
        }
        assert_eq!(handled, 1, "delivered three times, handled once");
        assert_eq!(account_rows(&mut db.conn).len(), 1);
        Ok(())
    }

    fn two_consumers_handling_one_message_at_once_handle_it_once(db) {
        create_outbox(&mut db);
        let handled = std::sync::atomic::AtomicUsize::new(0);
        let consume = |mut conn: Conn, pause: u64| {
            let mut uow = UnitOfWork::<Conn>::new();
            let outcome = uow::outbox::handle_once(&mut uow, &mut conn, "m-2", |scope| {
                scope.register_new(account("ann", 10))?;
                // Hold the transaction open while the other consumer arrives.
                std::thread::sleep(std::time::Duration::from_millis(pause));
                Ok::<_, uow::Error>(())
            });
            match outcome {
                Ok(Some(())) => {
                    handled.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                Ok(None) => {}
                Err(e) => panic!("{e}"),
            }
        };
        std::thread::scope(|threads| {
            let (first, second) = (db.connect(), db.connect());
            threads.spawn(|| consume(first, 300));
            std::thread::sleep(std::time::Duration::from_millis(100));
            threads.spawn(|| consume(second, 0));
        });
        assert_eq!(handled.into_inner(), 1, "the second waited for the first, then skipped it");
        assert_eq!(account_rows(&mut db.conn).len(), 1);
        Ok(())
    }
}

/// An event of about `size` bytes of JSON, numbered.
#[derive(serde::Serialize)]
struct Large {
    body: String,
}

impl OutboxEvent for Large {
    const EVENT_TYPE: &'static str = "Large";
}

fn large(number: usize, size: usize) -> Large {
    let mut body = format!("{number:04}:");
    body.push_str(&"x".repeat(size.saturating_sub(body.len())));
    Large { body }
}

// MySQL/MariaDB only: a statement larger than `max_allowed_packet` makes the server drop the
// connection, so the outbox's INSERT is cut by bytes as well as by rows.
backend_tests_on! { mysql: mysql_outbox_packet, mysql_outbox_packet_async;
    fn events_larger_in_bytes_than_one_packet_are_written_in_several_statements(db) {
        // 24 MiB of events in one commit: more than MariaDB's default packet (16 MiB).
        create_outbox(&mut db);
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        for number in 0..24 {
            uow.record_outbox_event(&ann, large(number, 1 << 20))?;
        }
        let log = db.record();
        let report = uow.commit(&mut db.conn)?;
        assert_eq!(report.inserted("uow_outbox"), 24);
        let inserts = log.writes().iter().filter(|s| s.contains("uow_outbox")).count();
        assert!(inserts >= 2, "24 MiB cannot go in one MySQL packet: {inserts} INSERT(s)");
        let rows = read_outbox!(&mut db.conn);
        assert_eq!(rows.len(), 24);
        for (number, row) in rows.iter().enumerate() {
            assert!(row.4.starts_with(&format!(r#"{{"body":"{number:04}:"#)), "row {number} out of order");
            assert!(row.4.len() > 1 << 20);
        }
        Ok(())
    }

    fn an_event_larger_than_one_packet_is_refused_and_nothing_is_written(db) {
        create_outbox(&mut db);
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 10))?;
        uow.record_outbox_event(&ann, large(0, 17 << 20))?;
        let error = uow.commit(&mut db.conn).expect_err("larger than max_allowed_packet");
        assert!(error.to_string().contains("max_allowed_packet"), "{error}");
        assert!(read_outbox!(&mut db.conn).is_empty());
        let accounts: i64 = accounts::table.count().get_result(&mut db.conn)?;
        assert_eq!(accounts, 0, "the commit was rolled back, the account with it");
        assert_eq!(uow.get(&ann)?.id, 0, "memory as before the commit");
        Ok(())
    }
}

#[cfg(feature = "async")]
mod relay {
    use super::*;
    use std::sync::{Arc, Mutex};
    use uow::outbox::{OutboxMessage, PublishError, Publisher};

    /// A publisher keeping what it was given, shared with the test.
    #[derive(Clone, Default)]
    pub struct InMemory(pub Arc<Mutex<Vec<OutboxMessage>>>);

    impl InMemory {
        pub fn sequences(&self) -> Vec<i64> {
            self.messages().iter().map(|m| m.sequence).collect()
        }

        pub fn messages(&self) -> Vec<OutboxMessage> {
            match self.0.lock() {
                Ok(m) => m.clone(),
                Err(p) => p.into_inner().clone(),
            }
        }
    }

    impl Publisher for InMemory {
        const NAME: &'static str = "memory";
        async fn publish(&mut self, messages: &[OutboxMessage]) -> Result<(), PublishError> {
            match self.0.lock() {
                Ok(mut m) => m.extend_from_slice(messages),
                Err(p) => p.into_inner().extend_from_slice(messages),
            }
            Ok(())
        }
    }

    /// A broker that is down.
    pub struct Down;

    impl Publisher for Down {
        const NAME: &'static str = "a broker that is down";
        async fn publish(&mut self, _: &[OutboxMessage]) -> Result<(), PublishError> {
            Err("connection refused".into())
        }
    }

    /// Runs `$body` (an async block using `$conn`, a diesel-async connection to `$db`'s
    /// database, set up as the test's connections are) on the tests' runtime.
    macro_rules! with_async_conn {
        ($db:expr, |$($conn:ident),+| $body:expr) => {{
            let target = $db.target.clone();
            match <Conn as TestBackend>::KIND {
                #[cfg(feature = "sqlite")]
                Kind::Sqlite => common::on_async::wait(async {
                    type C = diesel_async::sync_connection_wrapper::SyncConnectionWrapper<
                        diesel::SqliteConnection,
                    >;
                    $(let mut $conn = relay::connect::<C>(&target).await;)+
                    $body.await
                }),
                #[cfg(feature = "postgres")]
                Kind::Postgres => common::on_async::wait(async {
                    $(let mut $conn = relay::connect::<diesel_async::AsyncPgConnection>(&target).await;)+
                    $body.await
                }),
                #[cfg(feature = "mysql")]
                Kind::Mysql => common::on_async::wait(async {
                    $(let mut $conn = relay::connect::<diesel_async::AsyncMysqlConnection>(&target).await;)+
                    $body.await
                }),
                #[allow(unreachable_patterns)]
                kind => panic!("{kind:?} is not enabled"),
            }
        }};
    }
    pub(crate) use with_async_conn;

    /// Opens a transaction on `conn` through its transaction manager, as Diesel's
    /// `transaction` does.
    pub async fn begin<C: diesel_async::AsyncConnection>(conn: &mut C) -> Result<(), uow::Error> {
        use diesel_async::TransactionManager;
        C::TransactionManager::begin_transaction(conn).await?;
        Ok(())
    }

    pub async fn connect<C>(target: &Target) -> C
    where
        C: diesel_async::AsyncConnection + diesel_async::SimpleAsyncConnection,
    {
        let mut conn = match C::establish(&target.url).await {
            Ok(conn) => conn,
            Err(e) => panic!("cannot connect to {}: {e}", target.url),
        };
        for statement in &target.setup {
            if let Err(e) = conn.batch_execute(statement).await {
                panic!("connection setup failed: {e}");
            }
        }
        conn
    }

    /// Commits `events` deposits, round robin over `accounts` new accounts, one commit per
    /// event: the aggregates' events interleave in the outbox.
    pub fn commit_events<C>(conn: &mut C, accounts: usize, events: usize) -> Vec<i32>
    where
        C: Connection + diesel::connection::LoadConnection + Send + 'static,
        C::Backend: uow::Dialect,
        Account: Persist<C::Backend> + uow::Load<C::Backend>,
    {
        let mut uow = uow::UnitOfWork::<C>::new();
        let handles: Vec<_> = (0..accounts)
            .map(|n| uow.register_new(account(&format!("a{n}"), 0)))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}"));
        if let Err(e) = uow.commit(conn) {
            panic!("{e}");
        }
        for n in 0..events {
            let handle = &handles[n % accounts];
            let result = (|| {
                uow.get_mut(handle)?.balance += 1;
                uow.record_outbox_event(handle, Deposited { amount: n as i64 })?;
                uow.commit(conn).map(|_| ())
            })();
            if let Err(e) = result {
                panic!("{e}");
            }
        }
        handles
            .iter()
            .map(|h| uow.get(h).map(|a| a.id).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    }
}

/// The relay on every backend (the events committed through the synchronous driver; the
/// relay runs on a diesel-async connection to the same database).
#[cfg(feature = "async")]
mod relaying {
    use super::relay::{commit_events, with_async_conn, Down, InMemory};
    use super::*;
    use uow::outbox::Relay;

    sync_backend_tests! {
        fn each_event_is_published_once_in_sequence_order(db) {
            create_outbox(&mut db);
            commit_events(&mut db.conn, 3, 10);
            let memory = InMemory::default();
            let mut relay = Relay::new(memory.clone()).batch_size(4);
            let batches: Vec<usize> = with_async_conn!(db, |conn| async {
                let mut batches = Vec::new();
                loop {
                    let published = relay.relay_once(&mut conn).await?;
                    batches.push(published);
                    if published == 0 {
                        return Ok::<_, uow::Error>(batches);
                    }
                }
            })?;
            assert_eq!(batches, [4, 4, 2, 0]);
            let sequences = memory.sequences();
            let mut sorted = sequences.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sequences, sorted, "each once, in order");
            assert_eq!(sequences.len(), 10);
            let rows = read_outbox!(&mut db.conn);
            assert!(rows.iter().all(|r| r.5.is_some()), "every row marked published");
            let payloads: Vec<String> = memory.messages().into_iter().map(|m| m.payload).collect();
            let recorded: Vec<String> = (0..10).map(|n| format!(r#"{{"amount":{n}}}"#)).collect();
            assert_eq!(payloads, recorded);
            Ok(())
        }

        fn a_broker_that_fails_leaves_every_row_to_publish_again(db) {
            create_outbox(&mut db);
            commit_events(&mut db.conn, 2, 3);
            let error = with_async_conn!(db, |conn| async {
                Relay::new(Down).relay_once(&mut conn).await
            })
            .expect_err("the broker is down");
            assert!(matches!(error, uow::Error::Publish { publisher: "a broker that is down", .. }), "{error}");
            assert!(error.to_string().contains("relay sends them again"), "{error}");
            assert!(read_outbox!(&mut db.conn).iter().all(|r| r.5.is_none()), "nothing marked");

            let memory = InMemory::default();
            let published = with_async_conn!(db, |conn| async {
                Relay::new(memory.clone()).relay_once(&mut conn).await
            })?;
            assert_eq!(published, 3);
            Ok(())
        }

        fn the_relay_refuses_a_connection_inside_a_transaction(db) {
            create_outbox(&mut db);
            let error = with_async_conn!(db, |conn| async {
                super::relay::begin(&mut conn).await?;
                Relay::new(InMemory::default()).relay_once(&mut conn).await
            })
            .expect_err("a batch must be its own transaction");
            assert!(matches!(error, uow::Error::RelayInTransaction), "{error}");
            Ok(())
        }

        fn an_async_scope_records_a_delivery_once(db) {
            create_outbox(&mut db);
            let outcomes = with_async_conn!(db, |conn| async {
                use uow::ScopedFutureExt;
                let mut uow = uow::AsyncUnitOfWork::new();
                let mut outcomes = Vec::new();
                for _ in 0..2 {
                    let first = uow
                        .transaction(&mut conn, |scope| {
                            async move {
                                let first = scope.first_delivery("m-9").await?;
                                if first {
                                    scope.register_new(account("ann", 5))?;
                                }
                                Ok::<_, uow::Error>(first)
                            }
                            .scope_boxed()
                        })
                        .await?;
                    outcomes.push(first);
                }
                Ok::<_, uow::Error>(outcomes)
            })?;
            assert_eq!(outcomes, [true, false]);
            assert_eq!(account_rows(&mut db.conn).len(), 1);
            Ok(())
        }

        fn an_aggregate_keeps_its_order_when_another_relay_holds_its_first_row(db) {
            create_outbox(&mut db);
            let ids = commit_events(&mut db.conn, 2, 4); // rows 1..4: a0 a1 a0 a1
            if <Conn as TestBackend>::KIND == Kind::Sqlite {
                // No row locks: relays take turns (BEGIN IMMEDIATE); see the module docs.
                return Ok(());
            }
            let _ = ids;
            let sequences: Vec<i64> = read_sequences!(&mut db.conn);
            let [first, second, third, fourth] = sequences[..] else {
                panic!("four rows: {sequences:?}");
            };
            let memory = InMemory::default();
            with_async_conn!(db, |holder, other| async {
                use diesel_async::SimpleAsyncConnection;
                use uow::outbox::schema::uow_outbox::dsl as o;
                // Another relay's open batch holds a0's first row, as if publishing slowly.
                holder.batch_execute("BEGIN").await?;
                // An UPDATE, which locks the row as FOR UPDATE does (and compiles for SQLite too).
                let lock = diesel::update(o::uow_outbox.filter(o::sequence.eq(first)))
                    .set(o::event_type.eq(o::event_type));
                let held = diesel_async::RunQueryDsl::execute(lock, &mut holder).await?;
                assert_eq!(held, 1);
                let mut relay = Relay::new(memory.clone());
                let published = relay.relay_once(&mut other).await?;
                assert_eq!(published, 2);
                assert_eq!(memory.sequences(), [second, fourth], "a1's rows; a0's wait behind the held one");

                holder.batch_execute("ROLLBACK").await?;
                assert_eq!(relay.relay_once(&mut other).await?, 2);
                assert_eq!(memory.sequences(), [second, fourth, first, third]);
                Ok::<_, Box<dyn std::error::Error>>(())
            })?;
            Ok(())
        }
    }
}
