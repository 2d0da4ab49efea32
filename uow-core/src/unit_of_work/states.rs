//! Changing what the next commit does with a held entity rather than its values:
//! [`register_removed`](UnitOfWork::register_removed), [`unremove`](UnitOfWork::unremove) and
//! [`force_version_increment`](UnitOfWork::force_version_increment).

use crate::aggregates;
use crate::entity::Entity;
use crate::error::{Error, Result};
use crate::exec::Driver;
use crate::handle::Handle;
use crate::store::key_text;
use crate::tracking::Lifecycle;

use super::UnitOfWork;

impl<C: Driver> UnitOfWork<C> {
    /// Makes the next commit check and advance the entity's `#[tracked(version)]` even if
    /// none of its columns changed (Hibernate's `OPTIMISTIC_FORCE_INCREMENT`): for a root
    /// whose version guards rows it does not hold itself, so two writers that change only
    /// those rows still conflict. The UPDATE sets only the version, and a concurrent change
    /// is [`Error::Conflict`]. A new or removed entity is written with its version anyway.
    ///
    /// Fails with [`Error::NoVersion`] when `T` has no version field.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # diesel::table! { carts (id) { id -> Integer, version -> Integer } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = carts)]
    /// # struct Cart { id: i32, #[tracked(version)] version: i32 }
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// let cart = uow.attach(Cart { id: 1, version: 3 });
    /// uow.force_version_increment(&cart)?;
    /// assert_eq!(uow.state(&cart)?, EntityState::Dirty);
    /// assert_eq!(uow.plan()?.statement_count(), 1); // UPDATE carts SET version = 4 ..
    /// # Ok::<(), uow::Error>(())
    /// ```
    pub fn force_version_increment<T: Entity>(&mut self, handle: &Handle<T>) -> Result<()> {
        if T::version_field().is_none() {
            return Err(Error::NoVersion {
                entity: T::ENTITY_NAME,
            });
        }
        self.tracked_mut(handle)?.force_version();
        Ok(())
    }

    /// Registers a held entity for removal: the next commit DELETEs its row (the classic
    /// `registerRemoved`). A new entity that was never committed is simply dropped, and its
    /// handle goes stale.
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
    /// # diesel::sql_query("INSERT INTO notes VALUES (1, 'a')").execute(&mut conn)?;
    /// let mut uow = UnitOfWork::new();
    /// let note = uow.load::<Note>(&mut conn, 1)?;
    /// uow.register_removed(&note)?;
    /// assert_eq!(uow.state(&note)?, EntityState::Removed);
    /// assert_eq!(uow.commit(&mut conn)?.deleted("notes"), 1);
    /// assert!(uow.get(&note).is_err(), "removed and committed: the handle is stale");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn register_removed<T: Entity>(&mut self, handle: &Handle<T>) -> Result<()> {
        let tracked = self.tracked_mut(handle)?;
        match tracked.lifecycle() {
            Lifecycle::Removed => Err(Error::AlreadyRemoved {
                entity: T::ENTITY_NAME,
                key: key_text(&tracked.value().key()),
            }),
            Lifecycle::Persisted => {
                tracked.mark_removed();
                Ok(())
            }
            Lifecycle::New => {
                if T::HAS_CHILDREN {
                    let (slot, generation) = handle.id();
                    let index = handle.store as usize;
                    aggregates::release_members::<T>(
                        &mut self.state.stores,
                        index,
                        slot,
                        generation,
                    );
                }
                if let Some(store) = self.store_of_mut(handle) {
                    store.release(handle.slot);
                }
                Ok(())
            }
        }
    }

    /// Takes back a [`register_removed`](Self::register_removed) that was not committed yet.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// let note = uow.attach(Note { id: 1, body: "a".into() });
    /// uow.register_removed(&note)?;
    /// uow.unremove(&note)?;
    /// assert_eq!(uow.state(&note)?, EntityState::Clean);
    /// assert!(!uow.has_changes());
    /// # Ok::<(), uow::Error>(())
    /// ```
    pub fn unremove<T: Entity>(&mut self, handle: &Handle<T>) -> Result<()> {
        self.tracked_mut(handle)?.unremove();
        Ok(())
    }
}
