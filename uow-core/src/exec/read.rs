//! Reading one entity's row by key, for `load` and `refresh`.

use std::future::Future;
use std::pin::Pin;

use super::driver::Driver;
use super::statements::{LoadedRow, SelectByKey};
use crate::entity::Load;
use crate::error::{Error, Operation, Result};
use crate::store::key_text;

/// The row of `T` with key `key`, read on `conn`; `NotFound` when there is none.
///
/// Boxed, so that the future is checked for `Send` here, where its lifetimes are known: left to
/// its callers, the check meets rustc's limitation with lifetimes inside futures (issue
/// #100013) and a `load` inside a spawned task would not compile.
pub(crate) fn select<'a, T, D>(
    conn: &'a mut D::Conn,
    key: &'a T::Key,
) -> Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>
where
    D: Driver,
    T: Load<D::Backend>,
{
    Box::pin(select_row::<T, D>(conn, key))
}

async fn select_row<T, D>(conn: &mut D::Conn, key: &T::Key) -> Result<T>
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
