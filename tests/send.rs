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
