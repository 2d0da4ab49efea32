//! What a unit of work can tell about an entity it holds, without changing it: its handle by
//! key, its state, its changed fields and columns, the changes as a Diesel changeset, and the
//! values last persisted. Reads only.

use crate::entity::{Entity, FieldSet};
use crate::error::Result;
use crate::exec::{Changes, Driver};
use crate::handle::Handle;
use crate::tracking::{EntityState, Lifecycle};

use super::UnitOfWork;

impl<C: Driver> UnitOfWork<C> {
    /// The handle of the held entity with primary key `key`, if any.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// let note = uow.attach(Note { id: 7, body: "a".into() });
    /// assert_eq!(uow.find::<Note>(&7), Some(note));
    /// assert_eq!(uow.find::<Note>(&8), None); // `find` never queries: see `load`
    /// ```
    pub fn find<T: Entity>(&self, key: &T::Key) -> Option<Handle<T>> {
        let (index, store) = self.state.stores.get_indexed::<T>()?;
        Some(Handle::new(self.state.id, index, store.find(key)?))
    }

    /// Where the entity stands: new, clean, dirty or removed.
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
    /// assert_eq!(uow.state(&note)?, EntityState::New);
    /// uow.commit(&mut conn)?;
    /// assert_eq!(uow.state(&note)?, EntityState::Clean);
    /// uow.get_mut(&note)?.body = "b".into();
    /// assert_eq!(uow.state(&note)?, EntityState::Dirty);
    /// uow.register_removed(&note)?;
    /// assert_eq!(uow.state(&note)?, EntityState::Removed);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn state<T: Entity>(&self, handle: &Handle<T>) -> Result<EntityState> {
        Ok(self.tracked(handle)?.state())
    }

    /// The fields the next commit would UPDATE (empty for new and removed entities).
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// let note = uow.attach(Note { id: 1, body: "a".into() });
    /// uow.get_mut(&note)?.body = "b".into();
    /// let fields = uow.changed_fields(&note)?;
    /// assert_eq!(fields.iter().map(|i| Note::FIELDS[i].name).collect::<Vec<_>>(), ["body"]);
    /// # Ok::<(), uow::Error>(())
    /// ```
    pub fn changed_fields<T: Entity>(&self, handle: &Handle<T>) -> Result<FieldSet> {
        let tracked = self.tracked(handle)?;
        Ok(match tracked.lifecycle() {
            Lifecycle::Persisted => tracked.changed_fields(),
            _ => FieldSet::EMPTY,
        })
    }

    /// The column names the next commit would UPDATE, in field order.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// diesel::table! { notes (id) { id -> Integer, body -> Text } }
    ///
    /// #[derive(Tracked, Clone, Debug, PartialEq)]
    /// #[tracked(table = notes)]
    /// struct Note { id: i32, #[tracked(column = body)] text: String }
    ///
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// let note = uow.attach(Note { id: 1, text: "a".into() });
    /// assert!(uow.changed_columns(&note)?.is_empty());
    /// uow.get_mut(&note)?.text = "b".into();
    /// assert_eq!(uow.changed_columns(&note)?, ["body"]); // the column, not the field
    /// # Ok::<(), uow::Error>(())
    /// ```
    pub fn changed_columns<T: Entity>(&self, handle: &Handle<T>) -> Result<Vec<&'static str>> {
        Ok(self.changes(handle)?.columns())
    }

    /// The pending changes of one entity as a Diesel [`AsChangeset`](diesel::AsChangeset),
    /// usable in a hand-written `diesel::update(...).set(...)`.
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
    /// uow.get_mut(&note)?.body = "b".into();
    /// // Your own UPDATE, with exactly the pending changes (here `body`):
    /// let updated = diesel::update(notes::table.find(1)).set(uow.changes(&note)?).execute(&mut conn)?;
    /// assert_eq!(updated, 1);
    /// let body: String = notes::table.select(notes::body).first(&mut conn)?;
    /// assert_eq!(body, "b");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn changes<T: Entity>(&self, handle: &Handle<T>) -> Result<Changes<'_, T>> {
        let fields = self.changed_fields(handle)?;
        Ok(Changes::new(self.get(handle)?, fields))
    }

    /// The persisted values of an entity: what the database row holds as far as this unit of
    /// work knows (the current values for a clean entity). Of a changed aggregate root, the
    /// columns only: its child collections are empty.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// let note = uow.attach(Note { id: 1, body: "a".into() });
    /// uow.get_mut(&note)?.body = "b".into();
    /// assert_eq!(uow.original(&note)?.body, "a");
    /// assert_eq!(uow.get(&note)?.body, "b");
    /// # Ok::<(), uow::Error>(())
    /// ```
    pub fn original<T: Entity>(&self, handle: &Handle<T>) -> Result<&T> {
        Ok(self.tracked(handle)?.persisted_value())
    }
}
