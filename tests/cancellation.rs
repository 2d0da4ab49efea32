//! The async driver: a commit whose future is dropped half way (a timeout, a client that went
//! away) leaves the database as before and every entity as before the commit; the connection
//! it ran on is refused afterwards, and the same work commits on another one.
#![cfg(feature = "async")]

mod common;

use std::time::Duration;

use common::on_async::wait;
use common::*;
use diesel::connection::SimpleConnection;
use uow::prelude::*;

async_backend_tests! {
    fn a_commit_dropped_while_it_waits_on_a_lock_changes_nothing(db) {
        let mut uow = uow::AsyncUnitOfWork::new();
        let ann = uow.register_new(account("ann", 10))?;
        wait(uow.commit(db.conn.inner()))?;
        let id = uow.get(&ann)?.id;

        // Another session holds the row (SQLite: the whole database) until we let it go.
        let mut blocker = db.connect();
        match <Conn as TestBackend>::KIND {
            Kind::Sqlite => blocker.batch_execute("BEGIN IMMEDIATE")?,
            _ => blocker.batch_execute(&format!(
                "BEGIN; UPDATE accounts SET balance = balance WHERE id = {id}"
            ))?,
        }

        uow.get_mut(&ann)?.balance = 20;
        let bob = uow.register_new(account("bob", 5))?;
        let before = (observe(&uow, &ann), observe(&uow, &bob), uow.len());

        let mut victim = db.connect();
        let outcome = wait(async {
            tokio::time::timeout(Duration::from_millis(300), uow.commit(victim.inner())).await
        });
        // SQLite's wrapper finishes its blocking call before the future can go (its busy
        // timeout ends it with "database is locked"); the servers' statements are cut short.
        match outcome {
            Err(_elapsed) => {}
            Ok(result) => assert!(result.is_err(), "the row is locked: {result:?}"),
        }
        assert_eq!((observe(&uow, &ann), observe(&uow, &bob), uow.len()), before, "memory as before the commit");

        blocker.batch_execute(match <Conn as TestBackend>::KIND {
            Kind::Sqlite | Kind::Postgres | Kind::Mysql => "ROLLBACK",
        })?;
        let rows = account_rows(&mut db.connect());
        assert_eq!(rows.len(), 1, "bob was not inserted: {rows:?}");
        assert_eq!(rows[0].balance, 10, "ann's change was not committed");

        // The cancelled commit's connection may hold its open transaction: uow refuses it.
        let mut tried = uow::AsyncUnitOfWork::new();
        tried.register_new(account("cy", 1))?;
        assert!(wait(tried.commit(victim.inner())).is_err(), "a cancelled connection is not written on");
        drop(victim);

        // The same work commits on another connection, once.
        wait(uow.commit(db.conn.inner()))?;
        let rows = account_rows(&mut db.conn);
        assert_eq!(rows.iter().map(|r| (r.owner.as_str(), r.balance)).collect::<Vec<_>>(), [("ann", 20), ("bob", 5)]);
        assert_eq!(uow.state(&bob)?, EntityState::Clean);
        Ok(())
    }

    fn a_scope_dropped_half_way_rolls_back_database_and_memory(db) {
        let mut uow = uow::AsyncUnitOfWork::new();
        let ann = uow.register_new(account("ann", 10))?;
        wait(uow.commit(db.conn.inner()))?;
        let before = (observe(&uow, &ann), uow.len());
        let mut victim = db.connect();
        let outcome = wait(async {
            tokio::time::timeout(Duration::from_millis(200), uow.transaction(victim.inner(), |scope| {
                async move {
                    scope.get_mut(&ann)?.balance = 99;
                    scope.register_new(account("bob", 1))?;
                    scope.flush().await?; // sent, inside the scope's transaction
                    std::future::pending::<()>().await; // the client goes away here
                    Ok::<_, uow::Error>(())
                }
                .scope_boxed()
            }))
            .await
        });
        assert!(outcome.is_err(), "the scope never ends by itself");
        assert_eq!((observe(&uow, &ann), uow.len()), before, "memory as when the scope began");
        let rows = account_rows(&mut db.connect());
        assert_eq!((rows.len(), rows[0].balance), (1, 10), "nothing the scope flushed is visible");
        let mut tried = uow::AsyncUnitOfWork::new();
        tried.register_new(account("cy", 1))?;
        assert!(wait(tried.commit(victim.inner())).is_err(), "a cancelled connection is not written on");
        Ok(())
    }
}
