//! Reading entities: [`UnitOfWork::load`] through the identity map, and
//! [`UnitOfWork::refresh`]; the row itself is read by the execution layer (`exec/read.rs`).

use diesel::connection::LoadConnection;
use diesel::Connection;

use crate::entity::Load;
use crate::error::{Error, Result};
use crate::exec::driver::block;
use crate::exec::{read::select, Dialect, Driver};
use crate::handle::Handle;
use crate::scope::Scope;
use crate::store::key_text;
use crate::unit_of_work::UnitOfWork;

impl<C> UnitOfWork<C>
where
    C: Connection + LoadConnection + Send + 'static,
    C::Backend: Dialect,
{
    /// The entity with primary key `key`: the instance already held (no query), or the row
    /// read from the database and tracked as clean (identity map: one row, one instance).
    ///
    /// Fails with [`Error::NotFound`] when no row has the key.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # use diesel::{Connection, RunQueryDsl, SqliteConnection};
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// let mut conn = SqliteConnection::establish(":memory:")?;
    /// diesel::sql_query("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)").execute(&mut conn)?;
    /// diesel::sql_query("INSERT INTO notes VALUES (1, 'hello')").execute(&mut conn)?;
    /// let mut uow = UnitOfWork::new();
    /// let note = uow.load::<Note>(&mut conn, 1)?;
    /// assert_eq!(uow.load::<Note>(&mut conn, 1)?, note, "one row, one instance");
    /// assert!(matches!(uow.load::<Note>(&mut conn, 2), Err(uow::Error::NotFound { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load<T: Load<C::Backend>>(&mut self, conn: &mut C, key: T::Key) -> Result<Handle<T>> {
        block(self.find_or_read(conn, key))
    }

    /// Discards the local changes of one entity and reads its row again; it is clean after.
    /// A removal registered for it is taken back, and the domain events recorded for it and not
    /// committed yet are dropped (they described the discarded changes). Fields marked `skip`
    /// keep their values. Participants are not tied to entities and stay enlisted.
    pub fn refresh<T: Load<C::Backend>>(&mut self, conn: &mut C, handle: &Handle<T>) -> Result<()> {
        block(self.reread(conn, handle))
    }
}

impl<C: Driver> UnitOfWork<C> {
    /// `load`, on either driver.
    pub(crate) async fn find_or_read<T: Load<C::Backend>>(
        &mut self,
        conn: &mut C::Conn,
        key: T::Key,
    ) -> Result<Handle<T>> {
        if let Some(handle) = self.find::<T>(&key) {
            return Ok(handle);
        }
        let entity = select::<T, C>(conn, &key).await?;
        Ok(self.attach(entity))
    }

    /// `refresh`, on either driver.
    pub(crate) async fn reread<T: Load<C::Backend>>(
        &mut self,
        conn: &mut C::Conn,
        handle: &Handle<T>,
    ) -> Result<()> {
        let tracked = self.tracked(handle)?;
        if tracked.is_new() {
            return Err(Error::NotFound {
                entity: T::ENTITY_NAME,
                table: T::TABLE_NAME,
                key: format!(
                    "{} (a new entity, not in the database yet)",
                    key_text(&tracked.value().key())
                ),
            });
        }
        let key = tracked.persisted_value().key();
        let fresh = select::<T, C>(conn, &key).await?;
        self.tracked_mut(handle)?.refresh(fresh);
        Ok(())
    }
}

impl<C> Scope<'_, C>
where
    C: Connection + LoadConnection + Send + 'static,
    C::Backend: Dialect,
{
    /// The held instance for `key`, or the row read and tracked (see [`UnitOfWork::load`]).
    pub fn load<T: Load<C::Backend>>(&mut self, key: T::Key) -> Result<Handle<T>> {
        let (uow, conn) = self.parts();
        block(uow.find_or_read(conn, key))
    }

    /// Discards local changes of one entity and reads it again (see [`UnitOfWork::refresh`]).
    pub fn refresh<T: Load<C::Backend>>(&mut self, handle: &Handle<T>) -> Result<()> {
        let (uow, conn) = self.parts();
        block(uow.reread(conn, handle))
    }
}
