//! The relay (features `outbox` and `async`): claims unpublished outbox rows, publishes them
//! through a [`Publisher`], and marks them published once the broker confirmed, all in one
//! transaction per batch.

use std::future::Future;
use std::time::Duration;

use diesel_async::AsyncConnection;

use crate::error::{Error, Result};
use crate::exec::{outbox, transaction, Async, Dialect};
use crate::transaction_mode::TransactionMode;

use super::{now_micros, Publisher};

/// Publishes the outbox: at least once, in order per aggregate, with several relays side by
/// side where the backend locks rows (see [`uow::outbox`](crate::outbox)).
///
/// One batch is one transaction: claim up to [`batch_size`](Self::batch_size) rows, publish
/// them, wait for the broker's confirms, mark them published, COMMIT. A relay that stops
/// anywhere before its COMMIT (killed, its connection lost, its future dropped) leaves its
/// rows unpublished, and they are published again.
///
/// ```
/// # #[cfg(feature = "sqlite")] fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use uow::prelude::*;
/// use diesel_async::{sync_connection_wrapper::SyncConnectionWrapper, AsyncConnection, SimpleAsyncConnection};
/// use uow::outbox::{OutboxEvent, OutboxMessage, PublishError, Publisher, Relay};
/// diesel::table! { notes (id) { id -> Integer, body -> Text } }
/// #[derive(Tracked, Clone, Debug, PartialEq)]
/// #[tracked(table = notes)]
/// struct Note { id: i32, body: String }
/// #[derive(serde::Serialize)]
/// struct NoteWritten { body: String }
/// impl OutboxEvent for NoteWritten { const EVENT_TYPE: &'static str = "NoteWritten"; }
///
/// #[derive(Default)]
/// struct InMemory(Vec<OutboxMessage>);
/// impl Publisher for InMemory {
///     const NAME: &'static str = "memory";
///     async fn publish(&mut self, messages: &[OutboxMessage]) -> Result<(), PublishError> {
///         self.0.extend_from_slice(messages);
///         Ok(())
///     }
/// }
///
/// tokio::runtime::Runtime::new()?.block_on(async {
///     let mut conn = SyncConnectionWrapper::<diesel::SqliteConnection>::establish(":memory:").await?;
///     conn.batch_execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)").await?;
///     for sql in uow::outbox::SQLITE_SCHEMA { conn.batch_execute(sql).await?; }
///
///     let mut uow = uow::AsyncUnitOfWork::new();
///     let note = uow.register_new(Note { id: 1, body: "hi".into() })?;
///     uow.record_outbox_event(&note, NoteWritten { body: "hi".into() })?;
///     uow.commit(&mut conn).await?;
///
///     let mut relay = Relay::new(InMemory::default());
///     assert_eq!(relay.relay_once(&mut conn).await?, 1);
///     assert_eq!(relay.relay_once(&mut conn).await?, 0, "published once");
///     let sent = &relay.publisher().0;
///     assert_eq!((sent[0].aggregate(), sent[0].payload.as_str()), (("Note", "1"), r#"{"body":"hi"}"#));
///     Ok(())
/// })
/// # }
/// # #[cfg(not(feature = "sqlite"))] fn main() {}
/// ```
#[derive(Debug)]
pub struct Relay<P> {
    publisher: P,
    batch_size: i64,
    idle: Duration,
    max_backoff: Duration,
    between_batches: Duration,
}

impl<P: Publisher> Relay<P> {
    /// A relay publishing through `publisher`, 100 rows per batch, polling every 100 ms when
    /// the outbox is empty, backing off up to 10 s while the broker fails.
    ///
    /// ```
    /// # use uow::outbox::{OutboxMessage, PublishError, Publisher, Relay};
    /// # struct Nowhere;
    /// # impl Publisher for Nowhere {
    /// #     const NAME: &'static str = "nowhere";
    /// #     async fn publish(&mut self, _: &[OutboxMessage]) -> Result<(), PublishError> { Ok(()) }
    /// # }
    /// let relay = Relay::new(Nowhere);
    /// assert_eq!(relay.batch_size_limit(), 100);
    /// ```
    pub fn new(publisher: P) -> Self {
        Relay {
            publisher,
            batch_size: 100,
            idle: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            between_batches: Duration::ZERO,
        }
    }

    /// At most `rows` rows per batch (at least 1): one transaction, one wait for the broker's
    /// confirms. Smaller batches hold locks for less time (on SQLite, the database's write
    /// lock).
    ///
    /// ```
    /// # use uow::outbox::{OutboxMessage, PublishError, Publisher, Relay};
    /// # struct Nowhere;
    /// # impl Publisher for Nowhere {
    /// #     const NAME: &'static str = "nowhere";
    /// #     async fn publish(&mut self, _: &[OutboxMessage]) -> Result<(), PublishError> { Ok(()) }
    /// # }
    /// let relay = Relay::new(Nowhere).batch_size(500);
    /// assert_eq!(relay.batch_size_limit(), 500);
    /// ```
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch_size = i64::try_from(rows.max(1)).unwrap_or(i64::MAX);
        self
    }

    /// How long [`run`](Self::run) waits before looking again when the outbox had nothing to
    /// publish.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use uow::outbox::{OutboxMessage, PublishError, Publisher, Relay};
    /// # struct Nowhere;
    /// # impl Publisher for Nowhere {
    /// #     const NAME: &'static str = "nowhere";
    /// #     async fn publish(&mut self, _: &[OutboxMessage]) -> Result<(), PublishError> { Ok(()) }
    /// # }
    /// let relay = Relay::new(Nowhere).idle_interval(Duration::from_millis(20));
    /// ```
    pub fn idle_interval(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self
    }

    /// The longest [`run`](Self::run) waits between attempts while publishing fails (it
    /// starts at the idle interval and doubles).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use uow::outbox::{OutboxMessage, PublishError, Publisher, Relay};
    /// # struct Nowhere;
    /// # impl Publisher for Nowhere {
    /// #     const NAME: &'static str = "nowhere";
    /// #     async fn publish(&mut self, _: &[OutboxMessage]) -> Result<(), PublishError> { Ok(()) }
    /// # }
    /// let relay = Relay::new(Nowhere).max_backoff(Duration::from_secs(1));
    /// ```
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = max;
        self
    }

    /// How long [`run`](Self::run) waits after a full batch before the next (none by
    /// default). On SQLite a batch holds the database's write lock, and a relay that starts
    /// the next batch at once leaves the application's writers (and other relays) hardly a
    /// moment to take it: give them one, longer than SQLite's first busy-handler sleeps (10 ms
    /// is plenty).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use uow::outbox::{OutboxMessage, PublishError, Publisher, Relay};
    /// # struct Nowhere;
    /// # impl Publisher for Nowhere {
    /// #     const NAME: &'static str = "nowhere";
    /// #     async fn publish(&mut self, _: &[OutboxMessage]) -> Result<(), PublishError> { Ok(()) }
    /// # }
    /// let relay = Relay::new(Nowhere).pause_between_batches(Duration::from_millis(10));
    /// ```
    pub fn pause_between_batches(mut self, pause: Duration) -> Self {
        self.between_batches = pause;
        self
    }

    /// The most rows one batch claims.
    ///
    /// ```
    /// # use uow::outbox::{OutboxMessage, PublishError, Publisher, Relay};
    /// # struct Nowhere;
    /// # impl Publisher for Nowhere {
    /// #     const NAME: &'static str = "nowhere";
    /// #     async fn publish(&mut self, _: &[OutboxMessage]) -> Result<(), PublishError> { Ok(()) }
    /// # }
    /// assert_eq!(Relay::new(Nowhere).batch_size(0).batch_size_limit(), 1);
    /// ```
    pub fn batch_size_limit(&self) -> usize {
        usize::try_from(self.batch_size).unwrap_or(usize::MAX)
    }

    /// The publisher.
    ///
    /// ```
    /// # use uow::outbox::{OutboxMessage, PublishError, Publisher, Relay};
    /// # struct Nowhere;
    /// # impl Publisher for Nowhere {
    /// #     const NAME: &'static str = "nowhere";
    /// #     async fn publish(&mut self, _: &[OutboxMessage]) -> Result<(), PublishError> { Ok(()) }
    /// # }
    /// let relay = Relay::new(Nowhere);
    /// let _: &Nowhere = relay.publisher();
    /// ```
    pub fn publisher(&self) -> &P {
        &self.publisher
    }

    /// The publisher, mutably.
    ///
    /// ```
    /// # use uow::outbox::{OutboxMessage, PublishError, Publisher, Relay};
    /// # struct Counting(usize);
    /// # impl Publisher for Counting {
    /// #     const NAME: &'static str = "counting";
    /// #     async fn publish(&mut self, m: &[OutboxMessage]) -> Result<(), PublishError> { self.0 += m.len(); Ok(()) }
    /// # }
    /// let mut relay = Relay::new(Counting(0));
    /// relay.publisher_mut().0 = 0;
    /// ```
    pub fn publisher_mut(&mut self) -> &mut P {
        &mut self.publisher
    }

    /// Publishes one batch and returns how many rows it published (0: nothing to publish,
    /// or every unpublished row waits behind an earlier row of its aggregate that another
    /// relay holds). `conn` must have no open transaction.
    ///
    /// On an error nothing is marked published: [`Error::Publish`] when the broker failed,
    /// a database error otherwise. The rows are claimed again by the next call.
    ///
    /// Dropping the future before it completes leaves the connection marked broken (its
    /// transaction may be open): establish a new one, or let the pool discard it.
    pub async fn relay_once<C>(&mut self, conn: &mut C) -> Result<usize>
    where
        C: AsyncConnection + 'static,
        C::Backend: Dialect,
    {
        type D<C> = Async<C>;
        if transaction::depth::<D<C>>(conn).await?.is_some() {
            return Err(Error::RelayInTransaction);
        }
        let mut batch = Batch { conn, open: false };
        transaction::begin::<D<C>>(batch.conn, Some(TransactionMode::default())).await?;
        batch.open = true;
        let published = async {
            let claimed = outbox::claim::<D<C>>(batch.conn, self.batch_size).await?;
            let rows = outbox::publishable::<D<C>>(batch.conn, claimed).await?;
            if rows.is_empty() {
                return Ok(0);
            }
            self.publisher
                .publish(&rows)
                .await
                .map_err(|source| Error::Publish {
                    publisher: P::NAME,
                    source,
                })?;
            let sequences = rows.iter().map(|m| m.sequence).collect();
            outbox::mark_published::<D<C>>(batch.conn, sequences, now_micros()).await
        }
        .await;
        let outcome = match published {
            Ok(count) => transaction::commit::<D<C>>(batch.conn, true)
                .await
                .map(|()| count),
            Err(error) => {
                transaction::roll_back_to::<D<C>>(batch.conn, None).await;
                Err(error)
            }
        };
        batch.open = false;
        outcome
    }

    /// Publishes for as long as it is polled: a batch after another while there are rows, a
    /// pause of the idle interval when there are none, a growing pause (up to the maximum
    /// backoff) while publishing or the database fails with an error that may pass. It
    /// returns only on an error that will not pass on this connection (it is lost, or its
    /// transaction manager broken): make a new connection and call it again. `sleep` waits
    /// without blocking the runtime (`tokio::time::sleep`), so the relay depends on no
    /// runtime. Stop it by dropping its future (`tokio::select!` with a shutdown signal).
    ///
    /// ```no_run
    /// # #[cfg(feature = "postgres")] async fn relay() -> Result<(), Box<dyn std::error::Error>> {
    /// # use uow::outbox::{OutboxMessage, PublishError, Publisher, Relay};
    /// # struct Broker;
    /// # impl Publisher for Broker {
    /// #     const NAME: &'static str = "broker";
    /// #     async fn publish(&mut self, _: &[OutboxMessage]) -> Result<(), PublishError> { Ok(()) }
    /// # }
    /// use diesel_async::{AsyncConnection, AsyncPgConnection};
    /// let mut conn = AsyncPgConnection::establish("postgres://localhost/app").await?;
    /// let mut relay = Relay::new(Broker);
    /// tokio::select! {
    ///     failed = relay.run(&mut conn, tokio::time::sleep) => failed?,
    ///     _ = tokio::signal::ctrl_c() => {}
    /// }
    /// # Ok(()) }
    /// # fn main() {}
    /// ```
    pub async fn run<C, S>(
        &mut self,
        conn: &mut C,
        mut sleep: impl FnMut(Duration) -> S,
    ) -> Result<()>
    where
        C: AsyncConnection + 'static,
        C::Backend: Dialect,
        S: Future<Output = ()>,
    {
        let mut backoff = self.idle;
        loop {
            match self.relay_once(conn).await {
                Ok(published) => {
                    backoff = self.idle;
                    if published < self.batch_size_limit() {
                        sleep(self.idle).await;
                    } else if !self.between_batches.is_zero() {
                        sleep(self.between_batches).await;
                    }
                }
                Err(error @ (Error::ConnectionLost { .. } | Error::TransactionBroken)) => {
                    return Err(error)
                }
                Err(Error::RelayInTransaction) => return Err(Error::RelayInTransaction),
                Err(_) => {
                    sleep(backoff).await;
                    backoff = (backoff * 2).min(self.max_backoff);
                }
            }
        }
    }
}

/// A relay's transaction on its connection: dropped while open (the future cancelled), the
/// connection is marked broken, since its transaction is still open with rows claimed.
struct Batch<'c, C: AsyncConnection + 'static>
where
    C::Backend: Dialect,
{
    conn: &'c mut C,
    open: bool,
}

impl<C: AsyncConnection + 'static> Drop for Batch<'_, C>
where
    C::Backend: Dialect,
{
    fn drop(&mut self) {
        if self.open {
            transaction::mark_broken::<Async<C>>(self.conn);
        }
    }
}
