//! The bank's transfers published to RabbitMQ through the transactional outbox, and a consumer
//! keeping a read model in a database of its own, each message handled once.
//!
//! ```text
//! cargo run --example outbox_bank --features rabbitmq   # RabbitMQ on 127.0.0.1:5672
//! ```
//!
//! 1. The bank (a unit of work on an SQLite file) records `Debited` / `Credited` events with
//!    `record_outbox_event`; each commit writes them to `uow_outbox` with the balances. A
//!    transfer refused by the database (a `CHECK` on the balance) writes neither.
//! 2. The relay publishes the outbox to a RabbitMQ queue with publisher confirms, and marks each
//!    row published once the broker confirmed it. A relay that dies between the confirm and
//!    its UPDATE publishes the row again: the example simulates that.
//! 3. The consumer reads the queue and updates the read model (money in and out per account)
//!    with `uow::outbox::handle_once`, which records each message id in its `uow_inbox` in the
//!    same transaction: the duplicate is skipped.
//!
//! The broker is at `$UOW_AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`); the
//! example declares a queue of its own and deletes it at the end.

use std::error::Error;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::AsyncConnection;
use uow::outbox::lapin::options::{
    BasicAckOptions, BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use uow::outbox::lapin::types::FieldTable;
use uow::outbox::lapin::{Connection as AmqpConnection, ConnectionProperties};
use uow::outbox::{OutboxEvent, RabbitMqPublisher, Relay};
use uow::prelude::*;

diesel::table! { accounts (id) { id -> Integer, owner -> Text, balance -> BigInt, version -> Integer } }
diesel::table! { statements (account) { account -> Text, credited -> BigInt, debited -> BigInt } }

/// The bank's account: a generated key, a balance the database keeps non-negative.
#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = accounts)]
struct Account {
    #[tracked(generated)]
    id: i32,
    owner: String,
    balance: i64,
    #[tracked(version)]
    version: i32,
}

/// The read model, in the consumer's own database: money in and out per account.
#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = statements)]
struct Statement {
    #[tracked(primary_key)]
    account: String,
    credited: i64,
    debited: i64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Debited {
    amount: i64,
}

impl OutboxEvent for Debited {
    const EVENT_TYPE: &'static str = "Debited";
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Credited {
    amount: i64,
}

impl OutboxEvent for Credited {
    const EVENT_TYPE: &'static str = "Credited";
}

/// Moves `amount` between two accounts, recording an event on each; the commit writes the
/// balances and the events together, or neither.
fn transfer(
    uow: &mut UnitOfWork<SqliteConnection>,
    conn: &mut SqliteConnection,
    from: &Handle<Account>,
    to: &Handle<Account>,
    amount: i64,
) -> uow::Result<()> {
    uow.get_mut(from)?.balance -= amount;
    uow.get_mut(to)?.balance += amount;
    uow.record_outbox_event(from, Debited { amount })?;
    uow.record_outbox_event(to, Credited { amount })?;
    match uow.commit(conn) {
        Ok(_) => Ok(()),
        Err(error) => {
            // The commit changed nothing: undo the transfer in memory too, events included.
            uow.refresh(conn, from)?;
            uow.refresh(conn, to)?;
            Err(error)
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::temp_dir().join(format!("uow_outbox_bank_{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let bank_db = dir.join("bank.db").to_string_lossy().into_owned();
    let read_db = dir.join("read_model.db").to_string_lossy().into_owned();
    let outcome = run(&bank_db, &read_db).await;
    std::fs::remove_dir_all(&dir)?;
    outcome
}

async fn run(bank_db: &str, read_db: &str) -> Result<(), Box<dyn Error>> {
    // ------------------------------------------------------------------ the bank
    let mut bank = SqliteConnection::establish(bank_db)?;
    bank.batch_execute(
        "PRAGMA busy_timeout = 5000;
         CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT NOT NULL,
             balance BIGINT NOT NULL CHECK (balance >= 0), version INTEGER NOT NULL);",
    )?;
    for statement in uow::outbox::SQLITE_SCHEMA {
        bank.batch_execute(statement)?;
    }
    let mut uow = UnitOfWork::new();
    let ann = uow.register_new(Account {
        id: 0,
        owner: "ann".into(),
        balance: 100,
        version: 1,
    })?;
    let bob = uow.register_new(Account {
        id: 0,
        owner: "bob".into(),
        balance: 20,
        version: 1,
    })?;
    uow.commit(&mut bank)?;
    transfer(&mut uow, &mut bank, &ann, &bob, 30)?;
    transfer(&mut uow, &mut bank, &bob, &ann, 5)?;
    let refused = transfer(&mut uow, &mut bank, &bob, &ann, 1_000);
    println!(
        "bank: ann {} and bob {}; a transfer of 1000 from bob was refused ({})",
        uow.get(&ann)?.balance,
        uow.get(&bob)?.balance,
        if refused.is_err() {
            "no event written"
        } else {
            "unexpectedly accepted"
        }
    );
    assert!(refused.is_err());
    let outbox: i64 = uow::outbox::schema::uow_outbox::table
        .count()
        .get_result(&mut bank)?;
    assert_eq!(
        outbox, 4,
        "two events per accepted transfer, none for the refused one"
    );

    // ------------------------------------------------------------------ the relay
    let url = std::env::var("UOW_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let queue = format!("uow-example-bank-{}", std::process::id());
    let amqp = AmqpConnection::connect(&url, ConnectionProperties::default())
        .await
        .map_err(|e| {
            format!("RabbitMQ at {url} cannot be reached ({e}): start it, or set UOW_AMQP_URL")
        })?;
    let channel = amqp.create_channel().await?;
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let routed_to = queue.clone();
    // The default exchange routes each message to the queue named by its routing key.
    let publisher = RabbitMqPublisher::connect(&url, "")
        .await?
        .routing_key(move |_| routed_to.clone());
    let mut relay = Relay::new(publisher).batch_size(3);
    let mut relay_conn = SyncConnectionWrapper::<SqliteConnection>::establish(bank_db).await?;
    let mut published = 0;
    loop {
        match relay.relay_once(&mut relay_conn).await? {
            0 => break,
            n => published += n,
        }
    }
    // A relay killed after the broker's confirm and before its UPDATE leaves the row
    // unpublished: the next relay publishes it again.
    diesel::update(
        uow::outbox::schema::uow_outbox::table
            .filter(uow::outbox::schema::uow_outbox::sequence.eq(1)),
    )
    .set(uow::outbox::schema::uow_outbox::published_at.eq(None::<i64>))
    .execute(&mut bank)?;
    let republished = relay.relay_once(&mut relay_conn).await?;
    println!("relay: {published} events published to RabbitMQ, {republished} published again");

    // ------------------------------------------------------------------ the consumer
    let mut reads = SqliteConnection::establish(read_db)?;
    reads.batch_execute(
        "PRAGMA busy_timeout = 5000;
         CREATE TABLE statements (account TEXT PRIMARY KEY, credited BIGINT NOT NULL,
             debited BIGINT NOT NULL);",
    )?;
    for statement in uow::outbox::SQLITE_SCHEMA {
        reads.batch_execute(statement)?; // its uow_inbox
    }
    let mut read_model = UnitOfWork::new();
    let (mut handled, mut skipped) = (0, 0);
    while let Some(message) = channel
        .basic_get(queue.as_str().into(), BasicGetOptions::default())
        .await?
    {
        let delivery = message.delivery;
        let id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default();
        let kind = delivery
            .properties
            .kind()
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default();
        let account = header(&delivery.properties, "aggregate_key");
        let outcome = uow::outbox::handle_once(&mut read_model, &mut reads, &id, |scope| {
            let statement = match scope.find::<Statement>(&account) {
                Some(held) => held,
                None => match statements::table
                    .find(&account)
                    .select((statements::credited, statements::debited))
                    .first::<(i64, i64)>(scope.connection())
                    .optional()?
                {
                    Some((credited, debited)) => scope.attach(Statement {
                        account: account.clone(),
                        credited,
                        debited,
                    }),
                    None => scope.register_new(Statement {
                        account: account.clone(),
                        credited: 0,
                        debited: 0,
                    })?,
                },
            };
            let row = scope.get_mut(&statement)?;
            match kind.as_str() {
                "Credited" => {
                    row.credited += serde_json::from_slice::<Credited>(&delivery.data)?.amount
                }
                "Debited" => {
                    row.debited += serde_json::from_slice::<Debited>(&delivery.data)?.amount
                }
                other => return Err(format!("unknown event type {other}").into()),
            }
            Ok::<_, Box<dyn Error>>(())
        })?;
        match outcome {
            Some(()) => handled += 1,
            None => skipped += 1,
        }
        delivery.ack(BasicAckOptions::default()).await?;
    }
    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    println!("consumer: {handled} messages handled, {skipped} duplicate skipped");

    let mut rows = statements::table
        .order(statements::account)
        .load::<(String, i64, i64)>(&mut reads)?;
    rows.sort();
    for (account, credited, debited) in &rows {
        println!("read model: account {account}: in {credited}, out {debited}");
    }
    let (ann_id, bob_id) = (uow.get(&ann)?.id.to_string(), uow.get(&bob)?.id.to_string());
    assert_eq!((handled, skipped), (4, 1));
    assert!(
        rows.contains(&(ann_id, 5, 30)) && rows.contains(&(bob_id, 30, 5)),
        "{rows:?}"
    );
    Ok(())
}

/// A text header of a message (the relay sets `aggregate_type`, `aggregate_key`, `sequence`,
/// `created_at`).
fn header(properties: &uow::outbox::lapin::BasicProperties, name: &str) -> String {
    use uow::outbox::lapin::types::AMQPValue;
    let value = properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(name).cloned());
    match value {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        Some(AMQPValue::ShortString(s)) => s.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}
