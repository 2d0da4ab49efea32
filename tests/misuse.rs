//! Misuse is an error with a message that says what to do, never a panic or a partial write
//! (README promise 8), and the identity map holds one instance per key (promise 5).

mod common;

use common::*;
use diesel::prelude::*;
use uow::prelude::*;

diesel::table! {
    loans (book_id, card_no) {
        book_id -> Integer,
        card_no -> Text,
    }
}

/// A child whose foreign key is part of its primary key.
#[derive(Tracked, diesel::Queryable, diesel::Selectable, Clone, Debug, PartialEq)]
#[tracked(table = loans, belongs_to(Book, foreign_key = book_id))]
#[diesel(table_name = loans)]
struct Loan {
    #[tracked(primary_key)]
    book_id: i32,
    #[tracked(primary_key)]
    card_no: String,
}

/// The `loans` table, keyed by a book and a card number.
fn create_loans<C>(db: &mut TestDb<C>)
where
    C: diesel::Connection + diesel::connection::LoadConnection + 'static,
{
    db.exec(
        "CREATE TABLE loans (book_id INTEGER NOT NULL REFERENCES books (id), \
         card_no VARCHAR(32) NOT NULL, PRIMARY KEY (book_id, card_no))",
    );
}

backend_tests! {
    fn new_children_with_one_placeholder_in_their_keys_each_get_their_new_parents_key(db) {
        create_loans(&mut db);
        let mut uow = UnitOfWork::<Conn>::new();
        let author = uow.register_new(Author { id: 0, name: "Le Guin".into() })?;
        let books: Vec<_> = ["Earthsea", "Lathe"]
            .into_iter()
            .map(|title| {
                let book = uow.register_new(Book { id: 0, author_id: 0, title: title.into() })?;
                uow.set_parent(&book, &author)?;
                Ok::<_, uow::Error>(book)
            })
            .collect::<Result<_, _>>()?;
        // The same card borrows both new books: keys (?, "C-1") and (?, "C-1") until the books
        // have theirs.
        let mut loans = Vec::new();
        for book in &books {
            let loan = uow.register_new(Loan { book_id: 0, card_no: "C-1".into() })?;
            uow.set_parent(&loan, book)?;
            loans.push(loan);
        }
        // A failed commit first: memory as before, the loans still waiting for their keys.
        let broke = uow.register_new(account("broke", -1))?;
        assert!(uow.commit(&mut db.conn).is_err());
        assert!(loans.iter().all(|l| uow.get(l).is_ok_and(|l| l.book_id == 0)));
        uow.register_removed(&broke)?;
        uow.commit(&mut db.conn)?;
        for (loan, book) in loans.iter().zip(&books) {
            let book_id = uow.get(book)?.id;
            assert_eq!(uow.get(loan)?.book_id, book_id, "each loan points at its own book");
            let key = (book_id, "C-1".to_string());
            assert_eq!(uow.find::<Loan>(&key).as_ref(), Some(loan), "filed under its key after the commit");
        }
        let mut rows: Vec<(i32, String)> = loans::table.select((loans::book_id, loans::card_no)).load(&mut db.conn)?;
        rows.sort();
        let mut expected: Vec<(i32, String)> = books.iter().map(|b| Ok((uow.get(b)?.id, "C-1".to_string()))).collect::<Result<_, uow::Error>>()?;
        expected.sort();
        assert_eq!(rows, expected);
        Ok(())
    }

    fn set_parent_refuses_to_re_point_a_persisted_child_whose_foreign_key_is_in_its_key(db) {
        create_loans(&mut db);
        let mut uow = UnitOfWork::<Conn>::new();
        let author = uow.register_new(Author { id: 0, name: "Le Guin".into() })?;
        let first = uow.register_new(Book { id: 0, author_id: 0, title: "Earthsea".into() })?;
        uow.set_parent(&first, &author)?;
        let loan = uow.register_new(Loan { book_id: 0, card_no: "C-1".into() })?;
        uow.set_parent(&loan, &first)?;
        uow.commit(&mut db.conn)?;
        let first_id = uow.get(&first)?.id;
        assert_eq!(uow.get(&loan)?.book_id, first_id);

        let second = uow.register_new(Book { id: 0, author_id: 0, title: "Lathe".into() })?;
        uow.set_parent(&second, &author)?;
        let error = uow.set_parent(&loan, &second).expect_err("the loan's key would change");
        assert!(matches!(&error, uow::Error::ParentInKey { entity: "Loan", field: "book_id", .. }), "{error}");
        assert!(error.to_string().contains("register_removed"), "{error}");
        assert_eq!(uow.get(&loan)?.book_id, first_id, "the key is unchanged in memory");
        assert_eq!(uow.state(&loan)?, EntityState::Clean);
        // The rest of the unit of work commits as if nothing had been asked.
        uow.commit(&mut db.conn)?;
        assert_eq!(uow.get(&loan)?.book_id, first_id);
        Ok(())
    }

    fn removing_an_entity_the_unit_of_work_does_not_hold(db) {
        let mut other = UnitOfWork::<Conn>::new();
        let foreign = other.register_new(account("ann", 1))?;
        let mut uow = UnitOfWork::<Conn>::new();
        let error = uow.register_removed(&foreign).expect_err("not held here");
        assert!(matches!(error, uow::Error::UnknownEntity { entity: "Account" }));
        assert!(error.to_string().contains("register or load the entity in this unit of work"), "{error}");
        assert!(uow.get(&foreign).is_err());
        assert!(uow.get_mut(&foreign).is_err());
        assert!(uow.commit(&mut db.conn)?.is_empty());
        Ok(())
    }

    fn a_handle_goes_stale_when_its_entity_is_removed_and_committed(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 1))?;
        uow.commit(&mut db.conn)?;
        uow.register_removed(&ann)?;
        let error = uow.register_removed(&ann).expect_err("twice");
        assert!(matches!(error, uow::Error::AlreadyRemoved { .. }), "{error}");
        uow.commit(&mut db.conn)?;
        // The slot is reused by a new entity; the old handle must not reach it.
        let bob = uow.register_new(account("bob", 2))?;
        assert!(matches!(uow.get(&ann), Err(uow::Error::UnknownEntity { .. })));
        assert!(matches!(uow.register_removed(&ann), Err(uow::Error::UnknownEntity { .. })));
        assert_eq!(uow.get(&bob)?.owner, "bob");
        Ok(())
    }

    fn registering_a_second_instance_for_a_held_key(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let a = uow.register_new(Tag { code: "a".into(), label: "Alpha".into() })?;
        let error = uow.register_new(Tag { code: "a".into(), label: "Other".into() }).expect_err("duplicate");
        assert!(matches!(&error, uow::Error::DuplicateKey { entity: "Tag", key, .. } if key == "\"a\""), "{error}");
        assert!(uow.register_clean(Tag { code: "a".into(), label: "x".into() }).is_err());
        assert!(uow.register_dirty(Tag { code: "a".into(), label: "x".into() }).is_err());
        // attach reuses the held instance instead, and never overwrites it.
        assert_eq!(uow.attach(Tag { code: "a".into(), label: "stale".into() }), a);
        assert_eq!(uow.get(&a)?.label, "Alpha");
        assert_eq!(uow.len(), 1);

        uow.commit(&mut db.conn)?;
        let mut fresh = UnitOfWork::<Conn>::new();
        let ann = fresh.register_clean(account_with_id(7))?;
        assert!(matches!(fresh.register_clean(account_with_id(7)), Err(uow::Error::DuplicateKey { .. })));
        assert_eq!(fresh.find::<Account>(&7), Some(ann));
        Ok(())
    }

    fn a_new_entity_whose_key_is_changed_to_a_held_one(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        uow.register_new(Tag { code: "a".into(), label: "Alpha".into() })?;
        let b = uow.register_new(Tag { code: "b".into(), label: "Beta".into() })?;
        uow.get_mut(&b)?.code = "a".into();
        let log = db.record();
        let error = uow.commit(&mut db.conn).expect_err("duplicate key");
        assert!(matches!(error, uow::Error::DuplicateKey { .. }), "{error}");
        assert!(log.all().is_empty(), "nothing sent");
        uow.get_mut(&b)?.code = "c".into();
        uow.commit(&mut db.conn)?;
        assert_eq!(uow.find::<Tag>(&"c".to_string()), Some(b));
        assert_eq!(uow.find::<Tag>(&"b".to_string()), None);
        Ok(())
    }

    fn changing_the_primary_key_of_a_persisted_entity(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 1))?;
        let bob = uow.register_new(account("bob", 2))?;
        uow.commit(&mut db.conn)?;
        let id = uow.get(&ann)?.id;
        uow.get_mut(&bob)?.balance = 3;
        uow.get_mut(&ann)?.id = id + 100;
        let before = (observe(&uow, &ann), observe(&uow, &bob));
        let log = db.record();
        let error = uow.commit(&mut db.conn).expect_err("key changed");
        assert!(matches!(&error, uow::Error::KeyChanged { entity: "Account", .. }), "{error}");
        assert!(error.to_string().contains("restore the key"), "{error}");
        assert!(log.all().is_empty(), "nothing sent, not even bob's update");
        assert_eq!((observe(&uow, &ann), observe(&uow, &bob)), before);
        uow.get_mut(&ann)?.id = id;
        uow.commit(&mut db.conn)?;
        assert_eq!(account_rows(&mut db.conn)[1].balance, 3);
        Ok(())
    }

    fn committing_on_a_connection_that_fails(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 1))?;
        uow.commit(&mut db.conn)?;
        uow.get_mut(&ann)?.balance = 5;
        let new = uow.register_new(account("bob", 2))?;
        let before = (observe(&uow, &ann), observe(&uow, &new));

        let mut broken = db.connect();
        break_connection(&mut db, &mut broken);
        let error = uow.commit(&mut broken).expect_err("the connection is gone");
        assert!(error.database_error().is_some(), "{error:?}");
        assert_eq!((observe(&uow, &ann), observe(&uow, &new)), before);
        // A working connection commits the same work.
        uow.commit(&mut db.conn)?;
        let rows = account_rows(&mut db.conn);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].balance, 5);
        Ok(())
    }

    fn a_unit_of_work_on_a_broken_transaction_refuses_to_write(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 1))?;
        uow.commit(&mut db.conn)?;
        let mut victim = db.connect();
        let session = backend_specific::session_id(&mut victim);
        let result: Result<(), uow::Error> = uow.transaction(&mut victim, |scope| {
            scope.get_mut(&ann)?.balance = 2;
            scope.flush()?;
            // The transaction dies under the scope: SQLite's is ended behind Diesel's back,
            // a server's session is killed. The scope's ROLLBACK then fails.
            match <Conn as TestBackend>::KIND {
                Kind::Sqlite => {
                    use diesel::connection::SimpleConnection;
                    scope.connection().batch_execute("COMMIT").map_err(uow::Error::Query)?;
                }
                _ => backend_specific::end_session(&mut db, session),
            }
            Err(uow::Error::NoTransaction)
        });
        assert!(result.is_err());
        assert_eq!(uow.get(&ann)?.balance, 1, "memory restored even so");
        assert_eq!(uow.state(&ann)?, EntityState::Clean);
        uow.get_mut(&ann)?.balance = 3;
        if <Conn as TestBackend>::KIND == Kind::Sqlite {
            // SQLite answers the ROLLBACK with "no transaction is active", which Diesel
            // recognises: its transaction manager is consistent again and writing is safe.
            uow.commit(&mut victim)?;
            uow.get_mut(&ann)?.balance = 4;
        } else {
            // The failed ROLLBACK left Diesel's transaction manager broken; the server closed
            // the connection, and the error says so rather than "transaction broken".
            let error = uow.commit(&mut victim).expect_err("broken");
            assert!(matches!(error, uow::Error::ConnectionLost { during_commit: false, .. }), "{error}");
            assert!(error.to_string().contains("open a new connection"), "{error}");
            let scoped: Result<(), uow::Error> = uow.transaction(&mut victim, |_| Ok(()));
            assert!(matches!(scoped, Err(uow::Error::ConnectionLost { .. })), "{scoped:?}");
            assert_eq!(uow.state(&ann)?, EntityState::Dirty, "the change is still pending");
        }
        // A fresh connection works.
        uow.commit(&mut db.conn)?;
        let expected = if <Conn as TestBackend>::KIND == Kind::Sqlite { 4 } else { 3 };
        assert_eq!(account_rows(&mut db.conn)[0].balance, expected);
        Ok(())
    }

    fn a_row_deleted_behind_the_unit_of_works_back_is_a_conflict(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let ann = uow.register_new(account("ann", 1))?;
        let bob = uow.register_new(account("bob", 1))?;
        uow.commit(&mut db.conn)?;
        let id = uow.get(&ann)?.id;
        {
            use diesel::prelude::*;
            diesel::delete(accounts::table.find(id)).execute(&mut db.conn)?;
        }
        // One UPDATE for both: it writes bob's row and finds no row for ann's, so the
        // rollback below undoes a write that succeeded; the conflict names ann's key.
        uow.get_mut(&bob)?.balance = 9;
        uow.get_mut(&ann)?.balance = 9;
        let log = db.record();
        let error = uow.commit(&mut db.conn).expect_err("row is gone");
        assert!(matches!(&error, uow::Error::Conflict { operation: uow::Operation::Update, entity: "Account", key, .. } if *key == id.to_string()), "{error}");
        assert_eq!(log.writes().len(), 1, "one UPDATE for both rows: {:?}", log.writes());
        assert_eq!(account_rows(&mut db.conn)[0].balance, 1, "bob's update rolled back");
        assert_eq!(uow.state(&bob)?, EntityState::Dirty);
        Ok(())
    }
}

fn account_with_id(id: i32) -> Account {
    Account {
        id,
        ..account("x", 1)
    }
}

/// Makes `broken` unusable: SQLite's connection turns read-only; a server kills the session.
fn break_connection<C: TestBackend>(db: &mut TestDb<C>, broken: &mut C) {
    match C::KIND {
        Kind::Sqlite => {
            if let Err(e) = broken.batch_execute("PRAGMA query_only = ON") {
                panic!("{e}");
            }
        }
        Kind::Postgres | Kind::Mysql => backend_specific::kill(db, broken),
    }
}

mod backend_specific {
    use super::*;

    /// The server's id of a connection's session, and how to end it from another one.
    #[allow(dead_code)] // unused when only SQLite is on
    pub trait Session: 'static {
        fn id(&mut self) -> u64;
        fn end(admin: &mut Self, id: u64);
    }

    /// The session id of `victim` (`None` on SQLite, which has no session to end).
    pub fn session_id<C: TestBackend>(victim: &mut C) -> Option<u64> {
        let victim: &mut dyn std::any::Any = victim;
        macro_rules! try_as {
            ($($feature:literal => $conn:ty),*) => {$(
                #[cfg(feature = $feature)]
                if let Some(v) = victim.downcast_mut::<$conn>() {
                    return Some(Session::id(v));
                }
            )*};
        }
        sessions!(try_as);
        let _ = victim;
        None
    }

    /// Ends session `id` from `db`'s own connection (nothing for `None`).
    pub fn end_session<C: TestBackend>(db: &mut TestDb<C>, id: Option<u64>) {
        let Some(id) = id else { return };
        let admin: &mut dyn std::any::Any = &mut db.conn;
        macro_rules! try_as {
            ($($feature:literal => $conn:ty),*) => {$(
                #[cfg(feature = $feature)]
                if let Some(a) = admin.downcast_mut::<$conn>() {
                    return <$conn as Session>::end(a, id);
                }
            )*};
        }
        sessions!(try_as);
        let _ = (admin, id);
        panic!("no way to end a session on {}", std::any::type_name::<C>());
    }

    pub fn kill<C: TestBackend>(db: &mut TestDb<C>, victim: &mut C) {
        let id = session_id(victim);
        end_session(db, id);
    }

    #[allow(unused_macros)] // unused when only SQLite is on
    macro_rules! pg_session {
        ($conn:ty) => {
            impl Session for $conn {
                fn id(&mut self) -> u64 {
                    use diesel::prelude::*;
                    let pid = diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
                        "pg_backend_pid()",
                    ))
                    .get_result::<i32>(self);
                    match pid {
                        Ok(pid) => pid as u64,
                        Err(e) => panic!("{e}"),
                    }
                }
                fn end(admin: &mut Self, id: u64) {
                    use diesel::prelude::*;
                    diesel::define_sql_function! { fn pg_terminate_backend(pid: diesel::sql_types::Integer) -> diesel::sql_types::Bool; }
                    if let Err(e) = diesel::select(pg_terminate_backend(id as i32)).get_result::<bool>(admin) {
                        panic!("{e}");
                    }
                }
            }
        };
    }

    #[allow(unused_macros)] // unused when only SQLite is on
    macro_rules! mysql_session {
        ($conn:ty) => {
            impl Session for $conn {
                fn id(&mut self) -> u64 {
                    use diesel::prelude::*;
                    let id = diesel::select(diesel::dsl::sql::<
                        diesel::sql_types::Unsigned<diesel::sql_types::BigInt>,
                    >("CONNECTION_ID()"))
                    .get_result::<u64>(self);
                    match id {
                        Ok(id) => id,
                        Err(e) => panic!("{e}"),
                    }
                }
                fn end(admin: &mut Self, id: u64) {
                    use diesel::connection::SimpleConnection;
                    // KILL takes no bind parameter; the id is a number the server gave us.
                    if let Err(e) = admin.batch_execute(&format!("KILL {id}")) {
                        panic!("{e}");
                    }
                }
            }
        };
    }

    #[cfg(feature = "postgres")]
    pg_session!(diesel::PgConnection);
    #[cfg(feature = "mysql")]
    mysql_session!(diesel::MysqlConnection);
    #[cfg(all(feature = "async", feature = "postgres"))]
    pg_session!(common::on_async::AsyncConnectionWrapper<diesel_async::AsyncPgConnection>);
    #[cfg(all(feature = "async", feature = "mysql"))]
    mysql_session!(common::on_async::AsyncConnectionWrapper<diesel_async::AsyncMysqlConnection>);
}

/// Every server connection type of the tests, for `backend_specific`'s dispatch.
macro_rules! sessions {
    ($then:ident) => {
        $then!(
            "postgres" => diesel::PgConnection,
            "mysql" => diesel::MysqlConnection
        );
        #[cfg(feature = "async")]
        $then!(
            "postgres" => common::on_async::AsyncConnectionWrapper<diesel_async::AsyncPgConnection>,
            "mysql" => common::on_async::AsyncConnectionWrapper<diesel_async::AsyncMysqlConnection>
        );
    };
}
use sessions;

// A server connection that dies in the middle of a scope or before a commit (PostgreSQL and
// MySQL/MariaDB: an embedded SQLite database has no connection to lose). The error says the
// connection was lost, on the call that met it and on every later use of that connection.
mod connection_lost {
    use super::*;
    server_backend_tests! {
        fn a_connection_lost_in_the_middle_of_a_scope_is_reported_as_lost(db) {
            let mut uow = UnitOfWork::<Conn>::new();
            let ann = uow.register_new(account("ann", 1))?;
            uow.commit(&mut db.conn)?;
            let mut victim = db.connect();
            let session = backend_specific::session_id(&mut victim);
            let result: Result<(), uow::Error> = uow.transaction(&mut victim, |scope| {
                scope.get_mut(&ann)?.balance = 2;
                scope.flush()?;
                backend_specific::end_session(&mut db, session);
                scope.register_new(account("bob", 1))?;
                Ok(()) // the scope's last flush meets the dead connection
            });
            let error = result.expect_err("the connection is gone");
            assert!(matches!(error, uow::Error::ConnectionLost { .. }), "{error:?}");
            assert!(error.to_string().contains("connection to the database was lost"), "{error}");
            assert!(error.database_error().is_some(), "the driver's error is kept: {error:?}");
            assert!(error.is_transient(), "nothing was committed: rerunning on a new connection is safe");
            assert_eq!(uow.get(&ann)?.balance, 1, "memory as before the scope");
            assert_eq!(uow.state(&ann)?, EntityState::Clean);
            assert_eq!(uow.len(), 1, "bob, registered in the scope, is gone with it");

            // The next unit of work on the dead connection is told the same.
            let mut next = UnitOfWork::<Conn>::new();
            let cy = next.register_new(account("cy", 1))?;
            let error = next.commit(&mut victim).expect_err("still gone");
            assert!(matches!(error, uow::Error::ConnectionLost { .. }), "{error:?}");
            assert_eq!(next.state(&cy)?, EntityState::New);
            let scoped: Result<(), uow::Error> = next.transaction(&mut victim, |_| Ok(()));
            assert!(matches!(scoped, Err(uow::Error::ConnectionLost { .. })), "{scoped:?}");
            // A new connection commits the same work.
            next.commit(&mut db.conn)?;
            let rows = account_rows(&mut db.conn);
            assert_eq!(rows.iter().map(|a| (a.owner.as_str(), a.balance)).collect::<Vec<_>>(), [("ann", 1), ("cy", 1)]);
            Ok(())
        }

        fn a_commit_on_a_connection_the_server_closed_is_reported_as_lost(db) {
            let mut uow = UnitOfWork::<Conn>::new();
            let ann = uow.register_new(account("ann", 1))?;
            let mut victim = db.connect();
            backend_specific::kill(&mut db, &mut victim);
            let error = uow.commit(&mut victim).expect_err("the connection is gone");
            assert!(matches!(error, uow::Error::ConnectionLost { .. }), "{error:?}");
            assert_eq!(uow.state(&ann)?, EntityState::New);
            uow.commit(&mut db.conn)?;
            assert_eq!(account_rows(&mut db.conn).len(), 1);
            Ok(())
        }
    }
}
