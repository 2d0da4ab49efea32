//! Domain events: recorded for an entity, handed out once the changes they describe are
//! committed.

use std::any::{Any, TypeId};
use std::fmt;

use crate::stores::StoreSet;

/// An event an entity recorded (see [`UnitOfWork::record_event`](crate::UnitOfWork::record_event)),
/// handed out by [`UnitOfWork::take_events`](crate::UnitOfWork::take_events) once the changes it
/// describes are committed. The payload is `Send`, like the unit of work that holds it.
///
/// ```
/// # use uow::prelude::*;
/// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
/// # #[derive(Tracked, Clone, Debug, PartialEq)]
/// # #[tracked(table = notes)]
/// # struct Note { id: i32, body: String }
/// # use diesel::{Connection, RunQueryDsl};
/// # let mut conn = diesel::SqliteConnection::establish(":memory:")?;
/// # diesel::sql_query("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)").execute(&mut conn)?;
/// let mut uow = UnitOfWork::new();
/// let note = uow.register_new(Note { id: 1, body: "hi".into() })?;
/// uow.record_event(&note, "note written")?;
/// uow.commit(&mut conn)?;
/// let event: uow::DomainEvent = uow.take_events().remove(0);
/// assert_eq!(event.entity(), "Note");
/// assert_eq!(event.downcast_ref::<&str>(), Some(&"note written"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DomainEvent {
    entity: &'static str,
    payload: Box<dyn Any + Send>,
    source: EventSource,
    /// The row it is written as in the outbox, if it was recorded for it.
    #[cfg(feature = "outbox")]
    outbox: Option<Box<OutboxRecord>>,
}

/// What an event recorded for the outbox is written as, serialized when it was recorded (so a
/// payload that cannot be serialized is refused then, not at commit).
#[cfg(feature = "outbox")]
pub(crate) struct OutboxRecord {
    pub message_id: String,
    pub event_type: &'static str,
    pub payload: String,
    /// Microseconds since the Unix epoch.
    pub created_at: i64,
    /// The entity's key as JSON when the event was recorded (a key the database assigns is
    /// read at the commit instead, through `key_at_commit`).
    pub key: String,
    /// The entity's key as JSON once the write under way succeeds: `None` if it is no longer
    /// held.
    pub key_at_commit: fn(&StoreSet, &EventSource) -> Option<String>,
}

/// One outbox row, as the commit inserts it.
#[cfg(feature = "outbox")]
#[doc(hidden)]
pub struct NewOutboxRow<'a> {
    pub message_id: &'a str,
    pub aggregate_type: &'static str,
    pub aggregate_key: String,
    pub event_type: &'static str,
    pub payload: &'a str,
    pub created_at: i64,
}

/// The entity an event was recorded for, and its revision then (see `Tracked::revision`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventSource {
    pub entity_type: TypeId,
    pub slot: u32,
    pub generation: u32,
    pub revision: u32,
}

impl DomainEvent {
    pub(crate) fn new(
        entity: &'static str,
        payload: Box<dyn Any + Send>,
        source: EventSource,
    ) -> Self {
        DomainEvent {
            entity,
            payload,
            source,
            #[cfg(feature = "outbox")]
            outbox: None,
        }
    }

    /// The event, to be written to the outbox too.
    #[cfg(feature = "outbox")]
    pub(crate) fn with_outbox(mut self, record: OutboxRecord) -> Self {
        self.outbox = Some(Box::new(record));
        self
    }

    /// The id of the outbox message this event was written as (the broker's message id, the
    /// inbox's key), if it was recorded with
    /// [`record_outbox_event`](crate::UnitOfWork::record_outbox_event).
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
    /// # for sql in uow::outbox::SQLITE_SCHEMA { diesel::sql_query(*sql).execute(&mut conn)?; }
    /// #[derive(serde::Serialize)]
    /// struct NoteWritten { id: i32 }
    /// impl uow::outbox::OutboxEvent for NoteWritten { const EVENT_TYPE: &'static str = "NoteWritten"; }
    ///
    /// let mut uow = UnitOfWork::new();
    /// let note = uow.register_new(Note { id: 1, body: "a".into() })?;
    /// uow.record_outbox_event(&note, NoteWritten { id: 1 })?;
    /// uow.record_event(&note, "only in memory")?;
    /// uow.commit(&mut conn)?;
    /// let events = uow.take_events();
    /// assert_eq!(events[0].outbox_message_id().map(str::len), Some(36));
    /// assert_eq!(events[1].outbox_message_id(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "outbox")]
    pub fn outbox_message_id(&self) -> Option<&str> {
        self.outbox.as_deref().map(|r| r.message_id.as_str())
    }

    /// The type of the entity that recorded it.
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
    /// uow.record_event(&note, ())?;
    /// uow.commit(&mut conn)?;
    /// assert_eq!(uow.take_events()[0].entity(), "Note");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn entity(&self) -> &'static str {
        self.entity
    }

    /// The event, if it is an `E`.
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
    /// struct Published { at: u64 }
    ///
    /// let mut uow = UnitOfWork::new();
    /// let note = uow.register_new(Note { id: 1, body: "a".into() })?;
    /// uow.record_event(&note, Published { at: 1_700_000_000 })?;
    /// uow.commit(&mut conn)?;
    /// for event in uow.take_events() {
    ///     if let Some(published) = event.downcast_ref::<Published>() {
    ///         assert_eq!(published.at, 1_700_000_000);
    ///     }
    ///     assert!(event.downcast_ref::<String>().is_none());
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn downcast_ref<E: Any>(&self) -> Option<&E> {
        self.payload.downcast_ref()
    }

    /// The event by value, if it is an `E`.
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
    /// #[derive(Debug, PartialEq)]
    /// struct Renamed { from: String }
    ///
    /// let mut uow = UnitOfWork::new();
    /// let note = uow.register_new(Note { id: 1, body: "a".into() })?;
    /// uow.record_event(&note, Renamed { from: "untitled".into() })?;
    /// uow.commit(&mut conn)?;
    /// let event = uow.take_events().remove(0);
    /// let event = event.downcast::<String>().unwrap_err(); // not a String: handed back
    /// let renamed: Renamed = event.downcast().map_err(|_| "not a Renamed")?;
    /// assert_eq!(renamed.from, "untitled");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn downcast<E: Any>(self) -> std::result::Result<E, DomainEvent> {
        match self.payload.downcast::<E>() {
            Ok(event) => Ok(*event),
            Err(payload) => Err(DomainEvent {
                entity: self.entity,
                payload,
                source: self.source,
                #[cfg(feature = "outbox")]
                outbox: self.outbox,
            }),
        }
    }
}

impl fmt::Debug for DomainEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainEvent")
            .field("entity", &self.entity)
            .finish_non_exhaustive()
    }
}

/// Whether `event` described changes since discarded: its entity was refreshed after it was
/// recorded.
fn discarded(event: &DomainEvent, stores: &StoreSet) -> bool {
    let s = event.source;
    stores
        .index_of(s.entity_type)
        .and_then(|i| stores.dyn_at(i))
        .and_then(|store| store.revision(s.slot, s.generation))
        .is_some_and(|revision| revision != s.revision)
}

/// The events of a unit of work: recorded for changes not committed yet, and committed.
#[derive(Default)]
pub(crate) struct Events {
    pending: Vec<DomainEvent>,
    committed: Vec<DomainEvent>,
}

impl Events {
    pub fn record(&mut self, event: DomainEvent) {
        self.pending.push(event);
    }

    /// How many are pending: a save point's mark.
    pub fn mark(&self) -> usize {
        self.pending.len()
    }

    /// Drops the events recorded after `mark` (a save point undone).
    pub fn truncate(&mut self, mark: usize) {
        self.pending.truncate(mark);
    }

    /// The changes were committed: pending events become available, except those of an
    /// entity refreshed since they were recorded (they described changes that were
    /// discarded). An entity no longer held, removed by this commit, keeps its events.
    pub fn commit(&mut self, stores: &StoreSet) {
        let pending = std::mem::take(&mut self.pending);
        self.committed
            .extend(pending.into_iter().filter(|e| !discarded(e, stores)));
    }

    /// Whether a pending event is to be written to the outbox.
    #[cfg(feature = "outbox")]
    pub fn has_outbox_rows(&self) -> bool {
        self.pending.iter().any(|e| e.outbox.is_some())
    }

    /// The outbox rows of the events the write under way releases, in the order they were
    /// recorded: those [`commit`](Self::commit) will hand out.
    #[cfg(feature = "outbox")]
    pub fn outbox_rows(&self, stores: &StoreSet) -> Vec<NewOutboxRow<'_>> {
        self.pending
            .iter()
            .filter(|e| !discarded(e, stores))
            .filter_map(|e| {
                let record = e.outbox.as_deref()?;
                Some(NewOutboxRow {
                    message_id: &record.message_id,
                    aggregate_type: e.entity,
                    aggregate_key: (record.key_at_commit)(stores, &e.source)
                        .unwrap_or_else(|| record.key.clone()),
                    event_type: record.event_type,
                    payload: &record.payload,
                    created_at: record.created_at,
                })
            })
            .collect()
    }

    /// The committed events, each handed out once.
    pub fn take(&mut self) -> Vec<DomainEvent> {
        std::mem::take(&mut self.committed)
    }
}
