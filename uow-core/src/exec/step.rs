//! One step of a plan, typed: its rows from the store, its statements, the row counts checked,
//! what it produced handed back to the store.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;

use super::dialect::{Dialect, Session};
use super::driver::Driver;
use super::statements::DeleteRows;
use crate::entity::{Entity, Persist};
use crate::error::{Error, Operation, Result};
use crate::plan::Step;
use crate::report::CommitReport;
use crate::store::{key_text, StepRows, Store};
use crate::stores::AnyStore;

/// What sending a step returns: boxed, as the function that sends it is reached through a
/// pointer ([`TableIo`](super::TableIo)) that hides the entity type.
pub(super) type StepFuture<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// Sends `step` of the store of `T`.
pub(super) fn send_step<'a, T, D>(
    conn: &'a mut D::Conn,
    session: &'a mut Session,
    store: &'a mut dyn AnyStore,
    step: &'a Step,
    report: &'a mut CommitReport,
) -> StepFuture<'a>
where
    D: Driver,
    T: Persist<D::Backend>,
{
    Box::pin(send_typed_step::<T, D>(conn, session, store, step, report))
}

async fn send_typed_step<T, D>(
    conn: &mut D::Conn,
    session: &mut Session,
    store: &mut dyn AnyStore,
    step: &Step,
    report: &mut CommitReport,
) -> Result<()>
where
    D: Driver,
    T: Persist<D::Backend>,
{
    let store: &mut dyn Any = store;
    let Some(store) = store.downcast_mut::<Store<T>>() else {
        return Err(Error::UnknownEntity {
            entity: T::ENTITY_NAME,
        });
    };
    let statement_error = |source| Error::Statement {
        operation: step.kind.operation(),
        table: T::TABLE_NAME,
        source,
    };
    let (operation, rows, statements) = match store.step_rows(step) {
        StepRows::Insert(rows) => {
            let count = rows.len();
            let generated_keys = |returned| Error::GeneratedKeys {
                entity: T::ENTITY_NAME,
                table: T::TABLE_NAME,
                expected: count,
                returned,
            };
            if T::HAS_GENERATED {
                let inserted = D::Backend::insert_returning::<D, T>(conn, session, &rows)
                    .await
                    .map_err(statement_error)?;
                if inserted.generated.len() != count {
                    return Err(generated_keys(inserted.generated.len()));
                }
                store.keep_generated(&step.slots, inserted.generated);
                (Operation::Insert, count, inserted.statements)
            } else {
                let sent = D::Backend::insert_rows::<D, T>(conn, session, &rows)
                    .await
                    .map_err(statement_error)?;
                if sent.rows != count {
                    return Err(generated_keys(sent.rows));
                }
                store.keep_inserted_keys(&step.slots);
                (Operation::Insert, count, sent.statements)
            }
        }
        StepRows::Update(rows, fields) => {
            // Versioned rows: a row whose version moved on is found before anything is written
            // (afterwards a concurrent writer's next version can equal ours, and the row would
            // look updated). A single row needs no search: the count says it is the one.
            let versioned = T::version_field().is_some() && rows.len() > 1;
            if versioned {
                let persisted: Vec<(&T, &T)> = rows.iter().map(|(_, p)| (*p, *p)).collect();
                if let Some(row) = D::Backend::first_missing::<D, T>(conn, &persisted)
                    .await
                    .map_err(statement_error)?
                {
                    return Err(conflict_at(Operation::Update, &rows, Some(row)));
                }
            }
            let sent = D::Backend::update_rows::<D, T>(conn, session, &rows, fields)
                .await
                .map_err(statement_error)?;
            if sent.rows != rows.len() {
                return Err(match (rows.len(), versioned) {
                    (1, _) => conflict_at(Operation::Update, &rows, Some(0)),
                    // Changed between the search and the UPDATE.
                    (_, true) => conflict_at(Operation::Update, &rows, None),
                    // Without a version a missed row is one that is gone: found by its key.
                    (_, false) => conflict::<T, D>(conn, Operation::Update, &rows).await,
                });
            }
            (Operation::Update, rows.len(), sent.statements)
        }
        StepRows::Delete(rows) => {
            // Rows whose version is checked: find a row that no longer matches before deleting
            // any, so a conflict names its row (the DELETE cannot tell which one it missed).
            let versioned = T::version_field().is_some() && rows.len() > 1;
            let pairs: Vec<(&T, &T)> = rows.iter().map(|r| (*r, *r)).collect();
            if versioned {
                if let Some(row) = D::Backend::first_missing::<D, T>(conn, &pairs)
                    .await
                    .map_err(statement_error)?
                {
                    return Err(conflict_at(Operation::Delete, &pairs, Some(row)));
                }
            }
            let deleted = D::execute(conn, DeleteRows(&rows))
                .await
                .map_err(statement_error)?;
            if deleted != rows.len() {
                // A single row is the one; in a batch the rows it deleted are gone, so the
                // missing one cannot be told apart any more.
                let row = (rows.len() == 1).then_some(0);
                return Err(conflict_at(Operation::Delete, &pairs, row));
            }
            (Operation::Delete, rows.len(), 1)
        }
    };
    report.record(T::ENTITY_NAME, T::TABLE_NAME, operation, rows, statements);
    Ok(())
}

/// After a short UPDATE of rows without a version: the row it missed (deleted by someone else
/// since it was read), found by its key with one more query in the same transaction.
async fn conflict<T, D>(conn: &mut D::Conn, operation: Operation, rows: &[(&T, &T)]) -> Error
where
    D: Driver,
    T: Persist<D::Backend>,
{
    match D::Backend::first_missing::<D, T>(conn, rows).await {
        Ok(row) => conflict_at(operation, rows, row),
        Err(source) => Error::Statement {
            operation: Operation::Select,
            table: T::TABLE_NAME,
            source,
        },
    }
}

/// `Conflict` naming the key of row `row` of the batch, or the batch when no row is known.
fn conflict_at<T: Entity>(operation: Operation, rows: &[(&T, &T)], row: Option<usize>) -> Error {
    let key = |r: &(&T, &T)| key_text(&r.1.key());
    let key = match row.and_then(|n| rows.get(n)) {
        Some(found) => key(found),
        None => format!(
            "among {} keys starting at {}",
            rows.len(),
            rows.first().map(key).unwrap_or_default()
        ),
    };
    Error::Conflict {
        operation,
        entity: T::ENTITY_NAME,
        table: T::TABLE_NAME,
        key,
    }
}
