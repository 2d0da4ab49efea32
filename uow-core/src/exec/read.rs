//! Reading rows: one entity's by key, for `load` and `refresh`; the children of many parents
//! at once, for loading an aggregate one level at a time.

use std::future::Future;
use std::pin::Pin;

use super::driver::Driver;
use super::statements::{LoadedRow, SelectByKey, SelectChildren};
use crate::entity::{Load, Persist};
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

/// Parents per statement when reading their children: far below every backend's limit on
/// bound values, for a foreign key of up to 32 fields.
const PARENTS_PER_SELECT: usize = 1000;

/// The rows of `C` whose foreign key (`foreign_key`, fields of `C`) holds one of `parents`,
/// in key order: one statement per 1,000 parents.
pub(crate) fn select_children<'a, C, P, D>(
    conn: &'a mut D::Conn,
    foreign_key: &'static [usize],
    parents: &'a [P::Key],
) -> Pin<Box<dyn Future<Output = Result<Vec<C>>> + Send + 'a>>
where
    D: Driver,
    C: Load<D::Backend>,
    P: Persist<D::Backend>,
{
    Box::pin(async move {
        let mut children = Vec::new();
        for chunk in parents.chunks(PARENTS_PER_SELECT) {
            let query = SelectChildren::<C, P> {
                foreign_key,
                parents: chunk,
                child: std::marker::PhantomData,
            };
            let rows: std::result::Result<Vec<LoadedRow<C>>, _> = D::load(conn, query).await;
            match rows {
                Ok(rows) => children.extend(rows.into_iter().map(|r| r.0)),
                Err(source) => {
                    return Err(Error::Statement {
                        operation: Operation::Select,
                        table: C::TABLE_NAME,
                        source,
                    }
                    .or_connection_lost(false))
                }
            }
        }
        Ok(children)
    })
}
