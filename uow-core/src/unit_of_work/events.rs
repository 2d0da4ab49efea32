//! Recording domain events on a unit of work and taking them after a commit: an event belongs
//! to a held entity, and is dropped with that entity's changes when a commit fails or the
//! entity is refreshed.

use std::any::{Any, TypeId};

use crate::entity::Entity;
use crate::error::Result;
use crate::events::{DomainEvent, EventSource};
use crate::exec::Driver;
use crate::handle::Handle;

use super::UnitOfWork;

impl<C: Driver> UnitOfWork<C> {
    /// Records a domain event for an entity. It is handed out by
    /// [`take_events`](Self::take_events) once the changes are committed; a scope that rolls
    /// back drops the events recorded inside it; a failed commit keeps them for the retry.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # use diesel::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// # let mut conn = SqliteConnection::establish(":memory:")?;
    /// # diesel::sql_query("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)").execute(&mut conn)?;
    /// let mut uow = UnitOfWork::new();
    /// let note = uow.register_new(Note { id: 1, body: "a".into() })?;
    /// uow.record_event(&note, "created")?;
    /// let failed: Result<(), Box<dyn std::error::Error>> = uow.transaction(&mut conn, |scope| {
    ///     scope.record_event(&note, "lost")?;
    ///     Err("changed my mind".into()) // the scope rolls back, and drops its events
    /// });
    /// assert!(failed.is_err());
    /// uow.commit(&mut conn)?;
    /// let events: Vec<&str> = uow.take_events().into_iter().filter_map(|e| e.downcast().ok()).collect();
    /// assert_eq!(events, ["created"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn record_event<T: Entity>(
        &mut self,
        handle: &Handle<T>,
        event: impl Any + Send,
    ) -> Result<()> {
        #[cfg(not(feature = "outbox"))]
        return self.record_event_with(handle, event);
        #[cfg(feature = "outbox")]
        self.record_event_with(handle, event, None)
    }

    /// `record_event`, with what the event is written as in the outbox if it is written there.
    pub(crate) fn record_event_with<T: Entity>(
        &mut self,
        handle: &Handle<T>,
        event: impl Any + Send,
        #[cfg(feature = "outbox")] outbox: Option<crate::events::OutboxRecord>,
    ) -> Result<()> {
        let revision = self.tracked(handle)?.revision();
        let event = DomainEvent::new(
            T::ENTITY_NAME,
            Box::new(event),
            EventSource {
                entity_type: TypeId::of::<T>(),
                slot: handle.slot,
                generation: handle.generation,
                revision,
            },
        );
        #[cfg(feature = "outbox")]
        let event = match outbox {
            Some(record) => event.with_outbox(record),
            None => event,
        };
        self.state.events.record(event);
        Ok(())
    }

    /// The events of committed changes, in the order they were recorded; each is handed out
    /// once.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # use diesel::{Connection, RunQueryDsl, SqliteConnection};
    /// # diesel::table! { orders (id) { id -> Integer, total -> BigInt } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = orders)]
    /// # struct Order { #[tracked(generated)] id: i32, total: i64 }
    /// #[derive(Debug, PartialEq)]
    /// struct OrderPlaced(i64);
    ///
    /// let mut conn = SqliteConnection::establish(":memory:")?;
    /// diesel::sql_query("CREATE TABLE orders (id INTEGER PRIMARY KEY, total BIGINT NOT NULL)").execute(&mut conn)?;
    /// let mut uow = UnitOfWork::new();
    /// let order = uow.register_new(Order { id: 0, total: 42 })?;
    /// uow.record_event(&order, OrderPlaced(42))?;
    /// assert!(uow.take_events().is_empty(), "not committed yet");
    /// uow.commit(&mut conn)?;
    /// let events = uow.take_events();
    /// assert_eq!(events[0].downcast_ref::<OrderPlaced>(), Some(&OrderPlaced(42)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn take_events(&mut self) -> Vec<DomainEvent> {
        self.state.events.take()
    }
}
