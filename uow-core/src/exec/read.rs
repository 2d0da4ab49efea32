//! Reading one entity's row by key, for `load` and `refresh`.

use super::driver::Driver;
use super::statements::{LoadedRow, SelectByKey};
use crate::entity::Load;
use crate::error::{Error, Operation, Result};
use crate::store::key_text;

/// The row of `T` with key `key`, read on `conn`; `NotFound` when there is none.
pub(crate) async fn select<T, D>(conn: &mut D::Conn, key: &T::Key) -> Result<T>
where
    D: Driver,
    T: Load<D::Backend>,
{
    let found: std::result::Result<Vec<LoadedRow<T>>, _> =
        D::load(conn, SelectByKey::<T>(key)).await;
    match found {
        Ok(mut rows) => rows.pop().map(|r| r.0).ok_or_else(|| Error::NotFound {
            entity: T::ENTITY_NAME,
            table: T::TABLE_NAME,
            key: key_text(key),
        }),
        Err(source) => Err(Error::Statement {
            operation: Operation::Select,
            table: T::TABLE_NAME,
            source,
        }
        .or_connection_lost(false)),
    }
}
