//! A unit of work is `Send` whenever its entities are: it can be built in one thread (a request
//! handler) and committed in another (`spawn_blocking`, a pool's `interact`). Checked at
//! compile time for every backend's unit of work and scope, and once at run time.

mod common;

use common::*;
use uow::prelude::*;

fn assert_send<T: Send>() {}

#[test]
fn units_of_work_scopes_and_handles_are_send_on_every_backend() {
    #[cfg(feature = "sqlite")]
    {
        assert_send::<UnitOfWork<diesel::SqliteConnection>>();
        assert_send::<uow::Scope<'static, diesel::SqliteConnection>>();
    }
    #[cfg(feature = "postgres")]
    {
        assert_send::<UnitOfWork<diesel::PgConnection>>();
        assert_send::<uow::Scope<'static, diesel::PgConnection>>();
    }
    #[cfg(feature = "mysql")]
    {
        assert_send::<UnitOfWork<diesel::MysqlConnection>>();
        assert_send::<uow::Scope<'static, diesel::MysqlConnection>>();
    }
    assert_send::<Handle<Account>>();
    assert_send::<uow::DomainEvent>();
    assert_send::<uow::Error>();
}

backend_tests! {
    fn a_unit_of_work_built_in_one_thread_commits_in_another(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 1))?;
        uow.on_after_commit(|report| assert_eq!(report.inserted("accounts"), 1));
        uow.record_event(&ann, "opened")?;
        let conn = &mut db.conn;
        let (uow, id) = std::thread::scope(|threads| {
            threads
                .spawn(move || -> Result<_, uow::Error> {
                    uow.commit(conn)?;
                    let id = uow.get(&ann)?.id;
                    Ok((uow, id))
                })
                .join()
        })
        .map_err(|_| "the committing thread panicked")??;
        assert_ne!(id, 0);
        assert_eq!(uow.state(&ann)?, EntityState::Clean);
        assert_eq!(account_rows(&mut db.conn)[0].owner, "ann");
        Ok(())
    }
}

/// The async unit of work, its scopes, and the futures of every call are `Send`: a handler on
/// a multi-threaded runtime can hold them across `.await`.
#[cfg(feature = "async")]
mod on_async {
    use super::*;
    use diesel_async::AsyncConnection;
    use uow::{AsyncUnitOfWork, Dialect, ScopedFutureExt};

    fn assert_send<T: Send>(_: &T) {}

    /// Compiled, never run: each call's future checked for `Send`, for any async connection.
    #[allow(dead_code)]
    fn every_future_is_send<C>(uow: &mut AsyncUnitOfWork<C>, conn: &mut C, ann: Handle<Account>)
    where
        C: AsyncConnection + 'static,
        C::Backend: Dialect,
        Account: uow::Load<C::Backend>,
    {
        assert_send(&*uow);
        assert_send(&uow.commit(conn));
        assert_send(&uow.flush(conn));
        assert_send(&uow.load::<Account>(conn, 1));
        assert_send(&uow.refresh(conn, &ann));
        assert_send(&uow.attach_aggregates::<Account>(conn, Vec::new()));
        assert_send(&uow.transaction(conn, |scope| {
            async move {
                scope.flush().await?;
                scope.load::<Account>(1).await?;
                scope.refresh(&ann).await?;
                scope.attach_aggregates::<Account>(Vec::new()).await?;
                scope
                    .nested(|inner| async move { inner.flush().await.map(|_| ()) }.scope_boxed())
                    .await?;
                Ok::<_, uow::Error>(())
            }
            .scope_boxed()
        }));
        assert_send(&uow::transaction_async(conn, |scope| {
            async move { scope.flush().await.map(|_| ()) }.scope_boxed()
        }));
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn a_unit_of_work_held_across_await_commits_in_a_task_of_a_multi_threaded_runtime() -> TestResult
    {
        use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
        use diesel_async::SimpleAsyncConnection;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let dir = std::env::temp_dir().join(format!("uow_send_{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("send.db").to_string_lossy().into_owned();
        let outcome = runtime.block_on(async move {
            let mut conn =
                SyncConnectionWrapper::<diesel::SqliteConnection>::establish(&path).await?;
            conn.batch_execute(
                "CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, \
                 balance BIGINT NOT NULL, note TEXT)",
            )
            .await?;
            let task = tokio::spawn(async move {
                let mut uow = AsyncUnitOfWork::new();
                let ann = uow.register_new(account("ann", 1))?;
                tokio::task::yield_now().await; // held across an await, maybe moved to another worker
                uow.commit(&mut conn).await?;
                uow.get_mut(&ann)?.balance = 2;
                tokio::task::yield_now().await;
                uow.commit(&mut conn).await?;
                let id = uow.get(&ann)?.id;
                // A whole unit of work per attempt, borrowing the connection, without blocking.
                let balance = uow::retry_async(
                    &uow::RetryPolicy::default(),
                    tokio::time::sleep,
                    async move |_| {
                        let mut again = AsyncUnitOfWork::new();
                        let ann = again.load::<Account>(&mut conn, id).await?;
                        again.get_mut(&ann)?.balance += 1;
                        again.commit(&mut conn).await?;
                        Ok::<_, uow::Error>(again.get(&ann)?.balance)
                    },
                )
                .await?;
                Ok::<_, uow::Error>((uow.get(&ann)?.balance, balance))
            });
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(task.await??)
        });
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(outcome.map_err(|e| e.to_string())?, (2, 3));
        Ok(())
    }
}
