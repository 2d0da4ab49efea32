//! One step of a plan, typed: its rows from the store, its statements, the row counts checked,
//! what it produced handed back to the store.

use std::any::Any;

use diesel::connection::LoadConnection;
use diesel::query_dsl::RunQueryDsl;

use super::dialect::{Dialect, Session};
use super::statements::{DeleteRows, UpdateRow};
use crate::entity::Persist;
use crate::error::{Error, Operation, Result};
use crate::plan::Step;
use crate::report::CommitReport;
use crate::store::{key_text, StepRows, Store};
use crate::stores::AnyStore;

/// Sends `step` of the store of `T`.
pub(super) fn send_step<T, C>(
    conn: &mut C,
    session: &mut Session,
    store: &mut dyn AnyStore,
    step: &Step,
    report: &mut CommitReport,
) -> Result<()>
where
    C: LoadConnection,
    C::Backend: Dialect,
    T: Persist<C::Backend>,
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
                let inserted =
                    C::Backend::insert_returning(conn, session, &rows).map_err(statement_error)?;
                if inserted.generated.len() != count {
                    return Err(generated_keys(inserted.generated.len()));
                }
                store.keep_generated(&step.slots, inserted.generated);
                (Operation::Insert, count, inserted.statements)
            } else {
                let sent =
                    C::Backend::insert_rows(conn, session, &rows).map_err(statement_error)?;
                if sent.rows != count {
                    return Err(generated_keys(sent.rows));
                }
                store.keep_inserted_keys(&step.slots);
                (Operation::Insert, count, sent.statements)
            }
        }
        StepRows::Update(rows, fields) => {
            for &(written, persisted) in &rows {
                let updated = UpdateRow::new(written, persisted, fields)
                    .execute(conn)
                    .map_err(statement_error)?;
                if updated != 1 {
                    return Err(Error::Conflict {
                        operation: Operation::Update,
                        entity: T::ENTITY_NAME,
                        table: T::TABLE_NAME,
                        key: key_text(&persisted.key()),
                    });
                }
            }
            (Operation::Update, rows.len(), rows.len())
        }
        StepRows::Delete(rows) => {
            let deleted = DeleteRows(&rows).execute(conn).map_err(statement_error)?;
            if deleted != rows.len() {
                // The batch already removed the rows it found, so the missing one cannot be
                // told apart here; a single-row batch names its key exactly.
                let key = rows.first().map(|e| key_text(&e.key())).unwrap_or_default();
                return Err(Error::Conflict {
                    operation: Operation::Delete,
                    entity: T::ENTITY_NAME,
                    table: T::TABLE_NAME,
                    key: if rows.len() == 1 {
                        key
                    } else {
                        format!("among {} keys starting at {key}", rows.len())
                    },
                });
            }
            (Operation::Delete, rows.len(), 1)
        }
    };
    report.record(T::ENTITY_NAME, T::TABLE_NAME, operation, rows, statements);
    Ok(())
}
