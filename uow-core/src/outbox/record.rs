//! Recording an event for the outbox on a unit of work: serialized now, written by the commit
//! that releases it.

use serde::Serialize;

use crate::entity::Entity;
use crate::error::{Error, Result};
use crate::events::{EventSource, OutboxRecord};
use crate::exec::Driver;
use crate::handle::Handle;
use crate::stores::StoreSet;
use crate::unit_of_work::UnitOfWork;

use super::{now_micros, OutboxEvent};

impl<C: Driver> UnitOfWork<C> {
    /// Records a domain event for an entity, as [`record_event`](Self::record_event) does,
    /// and writes it to the outbox table `uow_outbox` in the transaction of the commit that
    /// releases it (feature `outbox`; see [`uow::outbox`](crate::outbox)). The event is
    /// serialized to JSON now: [`Error::EventNotSerializable`] if that fails, and nothing is
    /// recorded. `take_events` hands it out after the commit like any other event.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # use diesel::prelude::*;
    /// # diesel::table! { orders (id) { id -> Integer, total -> BigInt } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = orders)]
    /// # struct Order { #[tracked(generated)] id: i32, total: i64 }
    /// # let mut conn = SqliteConnection::establish(":memory:")?;
    /// # diesel::sql_query("CREATE TABLE orders (id INTEGER PRIMARY KEY, total BIGINT NOT NULL CHECK (total > 0))").execute(&mut conn)?;
    /// # for sql in uow::outbox::SQLITE_SCHEMA { diesel::sql_query(*sql).execute(&mut conn)?; }
    /// #[derive(serde::Serialize)]
    /// struct OrderPlaced { total: i64 }
    /// impl uow::outbox::OutboxEvent for OrderPlaced { const EVENT_TYPE: &'static str = "OrderPlaced"; }
    ///
    /// let mut uow = UnitOfWork::new();
    /// let order = uow.register_new(Order { id: 0, total: 0 })?;
    /// uow.record_outbox_event(&order, OrderPlaced { total: 0 })?;
    /// assert!(uow.commit(&mut conn).is_err(), "the CHECK refuses the order");
    /// let rows: i64 = uow::outbox::schema::uow_outbox::table.count().get_result(&mut conn)?;
    /// assert_eq!(rows, 0, "no event of a failed commit");
    ///
    /// uow.get_mut(&order)?.total = 5;
    /// uow.commit(&mut conn)?; // the event is still pending, and written now
    /// let rows: i64 = uow::outbox::schema::uow_outbox::table.count().get_result(&mut conn)?;
    /// assert_eq!(rows, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn record_outbox_event<T, E>(&mut self, handle: &Handle<T>, event: E) -> Result<()>
    where
        T: Entity,
        T::Key: Serialize,
        E: OutboxEvent,
    {
        let key = self.tracked(handle)?.value().key();
        let record = OutboxRecord {
            message_id: uuid::Uuid::new_v4().to_string(),
            event_type: E::EVENT_TYPE,
            payload: to_json(&event, E::EVENT_TYPE)?,
            created_at: now_micros(),
            key: to_json(&key, E::EVENT_TYPE)?,
            key_at_commit: key_at_commit::<T>,
        };
        self.record_event_with(handle, event, Some(record))
    }
}

fn to_json(value: &impl Serialize, event_type: &'static str) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::EventNotSerializable {
        event_type,
        reason: e.to_string(),
    })
}

/// The key of the entity an event was recorded for, once the write under way succeeds (a key
/// the database generated included), as JSON.
fn key_at_commit<T: Entity>(stores: &StoreSet, source: &EventSource) -> Option<String>
where
    T::Key: Serialize,
{
    let key = stores
        .get::<T>()?
        .current_key(source.slot, source.generation)?;
    serde_json::to_string(&key).ok()
}
