//! The async driver: a commit whose future is dropped half way (a timeout, a client that went
//! away) leaves the database as before and every entity as before the commit; the connection
//! it ran on is refused afterwards, and the same work commits on another one. The commit and
//! the scope are also dropped at each of their `.await`s in turn.
#![cfg(feature = "async")]

mod common;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use common::on_async::wait;
use common::*;
use diesel::connection::SimpleConnection;
use diesel::Connection as _;
use uow::prelude::*;
use uow::{Participant, ParticipantError};

diesel::table! {
    carts (id) {
        id -> Integer,
        owner -> Text,
        version -> Integer,
    }
}

diesel::table! {
    cart_items (id) {
        id -> Integer,
        cart_id -> Integer,
        sku -> Text,
        qty -> Integer,
    }
}

/// An aggregate: a cart and its items, written as one, its version advanced by any change.
#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = carts)]
struct Cart {
    #[tracked(generated)]
    id: i32,
    owner: String,
    #[tracked(version)]
    version: i32,
    #[tracked(children)]
    items: Vec<CartItem>,
}

#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = cart_items, belongs_to(Cart, foreign_key = cart_id))]
struct CartItem {
    #[tracked(generated)]
    id: i32,
    cart_id: i32,
    sku: String,
    qty: i32,
}

fn item(sku: &str, qty: i32) -> CartItem {
    CartItem {
        id: 0,
        cart_id: 0,
        sku: sku.into(),
        qty,
    }
}

fn create_cart_tables<C: TestBackend>(db: &mut TestDb<C>) {
    let serial = match C::KIND {
        Kind::Sqlite => "INTEGER PRIMARY KEY",
        Kind::Postgres => "SERIAL PRIMARY KEY",
        Kind::Mysql => "INTEGER AUTO_INCREMENT PRIMARY KEY",
    };
    db.exec(&format!(
        "CREATE TABLE carts (id {serial}, owner VARCHAR(50) NOT NULL, version INTEGER NOT NULL)"
    ));
    db.exec(&format!(
        "CREATE TABLE cart_items (id {serial}, cart_id INTEGER NOT NULL REFERENCES carts (id), \
         sku VARCHAR(50) NOT NULL, qty INTEGER NOT NULL)"
    ));
}

/// Polls `future` until it is ready, or drops it once it has returned `Pending` `budget` times
/// and is waited for again: a timeout or a client that goes away at that `.await`. `Err`
/// holds how many statements `log` held when it was dropped.
async fn cut_after<F: Future>(
    budget: usize,
    log: &StatementLog,
    future: F,
) -> Result<F::Output, usize> {
    let mut future = std::pin::pin!(future);
    let mut left = budget;
    std::future::poll_fn(move |cx| match future.as_mut().poll(cx) {
        Poll::Ready(output) => Poll::Ready(Ok(output)),
        Poll::Pending if left == 0 => Poll::Ready(Err(log.all().len())),
        Poll::Pending => {
            left -= 1;
            Poll::Pending
        }
    })
    .await
}

/// A participant that writes its steps into a shared list.
struct Steps(Arc<Mutex<Vec<&'static str>>>);

impl Steps {
    fn push(&self, step: &'static str) -> Result<(), ParticipantError> {
        match self.0.lock() {
            Ok(mut steps) => steps.push(step),
            Err(poisoned) => poisoned.into_inner().push(step),
        }
        Ok(())
    }
}

impl Participant for Steps {
    fn name(&self) -> String {
        "steps".into()
    }
    fn prepare(&mut self) -> Result<(), ParticipantError> {
        self.push("prepare")
    }
    fn commit(&mut self) -> Result<(), ParticipantError> {
        self.push("commit")
    }
    fn compensate(&mut self) -> Result<(), ParticipantError> {
        self.push("compensate")
    }
}

/// Whether `sent` holds a COMMIT: from then on the server may commit whatever becomes of the
/// future (the one window README names), so the database may be either side.
fn commit_sent(sent: &[String]) -> bool {
    sent.iter()
        .any(|s| s.trim_start().to_ascii_uppercase().starts_with("COMMIT"))
}

/// After a cut: lets the connection finish what it had begun, and returns what it sent. The
/// statement in flight may still run to its end (SQLite's wrapper finishes each call on a
/// blocking thread, the future dropped or not; the next call waits for it), but nothing after
/// it may start once the future is gone.
fn settle<C: TestBackend + SimpleConnection>(
    victim: &mut C,
    log: &StatementLog,
    at_cut: usize,
) -> Vec<String> {
    let mut sent = log.all();
    if C::KIND == Kind::Sqlite {
        let _ = victim.batch_execute("SELECT 1");
        sent = log.all();
        sent.pop();
    }
    assert!(
        sent.len() <= at_cut + 1,
        "statements started after the future was dropped: {:?}",
        &sent[at_cut.min(sent.len())..]
    );
    sent
}

/// Makes every write to `tables` take a while (SQLite: a trigger counting to 100,000; the
/// servers: a trigger sleeping 20 ms), so that each write is still running when its future is
/// first polled and a cut can land on it, however the machine schedules the test's thread.
/// Without it a statement can finish before it is first waited for: SQLite's wrapper runs it
/// on another thread, and a server's answer can be read at once.
fn slow_writes<C: TestBackend>(db: &mut TestDb<C>, tables: &[&str]) {
    if C::KIND == Kind::Postgres {
        db.exec(
            "CREATE FUNCTION slow_write() RETURNS trigger AS $$ \
             BEGIN PERFORM pg_sleep(0.02); RETURN NULL; END $$ LANGUAGE plpgsql",
        );
    }
    for table in tables {
        for event in ["INSERT", "UPDATE", "DELETE"] {
            let name = format!("slow_{table}_{event}");
            db.exec(&match C::KIND {
                Kind::Sqlite => format!(
                    "CREATE TRIGGER {name} AFTER {event} ON {table} BEGIN \
                     SELECT count(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL \
                     SELECT x + 1 FROM c WHERE x < 100000) SELECT x FROM c); END"
                ),
                Kind::Postgres => format!(
                    "CREATE TRIGGER {name} AFTER {event} ON {table} \
                     FOR EACH STATEMENT EXECUTE FUNCTION slow_write()"
                ),
                Kind::Mysql => format!(
                    "CREATE TRIGGER {name} AFTER {event} ON {table} \
                     FOR EACH ROW SET @uow_slow = SLEEP(0.02)"
                ),
            });
        }
    }
}

/// Whether `sent` holds an INSERT, UPDATE or DELETE and no COMMIT: a cut that rolled back
/// something written.
fn wrote_before_commit(sent: &[String]) -> bool {
    let upper: Vec<String> = sent.iter().map(|s| s.to_ascii_uppercase()).collect();
    upper
        .iter()
        .any(|s| s.contains("INSERT INTO") || s.starts_with("UPDATE") || s.starts_with("DELETE"))
        && !upper.iter().any(|s| s.trim_start().starts_with("COMMIT"))
}

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

    fn a_commit_dropped_at_any_of_its_awaits_changes_nothing(db) {
        let mut uow = uow::AsyncUnitOfWork::new();
        let ann = uow.register_new(account("ann", 10))?;
        let cy = uow.register_new(account("cy", 3))?;
        wait(uow.commit(db.conn.inner()))?;
        slow_writes(&mut db, &["accounts"]);
        // An UPDATE, an INSERT and a DELETE, a participant, and hooks.
        uow.get_mut(&ann)?.balance = 20;
        let bob = uow.register_new(account("bob", 5))?;
        uow.register_removed(&cy)?;
        let steps = Arc::new(Mutex::new(Vec::new()));
        uow.enlist(Steps(steps.clone()));
        let hooks = Arc::new(Mutex::new(Vec::new()));
        let (on_commit, on_rollback) = (hooks.clone(), hooks.clone());
        uow.on_after_commit(move |_| on_commit.lock().map_or((), |mut h| h.push("after commit")));
        uow.on_after_rollback(move |_| on_rollback.lock().map_or((), |mut h| h.push("after rollback")));
        let before = (observe(&uow, &ann), observe(&uow, &bob), observe(&uow, &cy), uow.len());
        let rows_before = account_rows(&mut db.connect());

        let (mut cuts, mut rolled_back_writes) = (0, false);
        let in_doubt = loop {
            let mut victim = db.connect();
            let log = StatementLog::default();
            victim.set_instrumentation(log.clone());
            let at_cut = match wait(cut_after(cuts, &log, uow.commit(victim.inner()))) {
                Ok(result) => {
                    result?;
                    break false;
                }
                Err(at_cut) => at_cut,
            };
            let sent = settle(&mut victim, &log, at_cut);
            let at = format!("dropped after {cuts} waits, having sent {sent:?}");
            assert_eq!((observe(&uow, &ann), observe(&uow, &bob), observe(&uow, &cy), uow.len()), before, "memory as before the commit, {at}");
            let taken = std::mem::take(&mut *steps.lock().map_err(|_| "poisoned")?);
            assert!(taken.is_empty() || taken == ["prepare", "compensate"], "the participant undone, never made final, {at}: {taken:?}");
            let ran = std::mem::take(&mut *hooks.lock().map_err(|_| "poisoned")?);
            if sent.is_empty() {
                assert!(ran.is_empty() || ran == ["after rollback"], "no after-commit hook, {at}: {ran:?}");
            } else {
                assert_eq!(ran, ["after rollback"], "the after-rollback hook once, {at}");
            }
            if commit_sent(&sent) {
                break true;
            }
            assert_eq!(account_rows(&mut db.connect()), rows_before, "nothing written, {at}");
            rolled_back_writes |= wrote_before_commit(&sent);
            let mut tried = uow::AsyncUnitOfWork::new();
            tried.register_new(account("dee", 1))?;
            if !sent.is_empty() {
                assert!(wait(tried.commit(victim.inner())).is_err(), "a cancelled connection is not written on, {at}");
            }
            drop(victim);
            cuts += 1;
        };
        assert!(rolled_back_writes, "no cut landed between a write and the COMMIT ({cuts} cuts)");

        let rows = account_rows(&mut db.connect());
        let mut expected = vec![("ann".to_string(), 20), ("bob".to_string(), 5)];
        let mut got: Vec<_> = rows.iter().map(|r| (r.owner.clone(), r.balance)).collect();
        got.sort();
        expected.sort();
        if in_doubt {
            // Dropped while its COMMIT was in flight: all or nothing, never half.
            assert!(rows == rows_before || got == expected, "all or nothing after a COMMIT in doubt: {rows:?}");
        } else {
            assert_eq!(got, expected);
            assert_eq!(uow.state(&bob)?, EntityState::Clean);
            assert_eq!(*steps.lock().map_err(|_| "poisoned")?, ["prepare", "commit"]);
            assert_eq!(*hooks.lock().map_err(|_| "poisoned")?, ["after commit"]);
        }
        Ok(())
    }

    fn a_scope_dropped_at_any_of_its_awaits_changes_nothing(db) {
        let mut uow = uow::AsyncUnitOfWork::new();
        let ann = uow.register_new(account("ann", 10))?;
        let cy = uow.register_new(account("cy", 3))?;
        wait(uow.commit(db.conn.inner()))?;
        slow_writes(&mut db, &["accounts"]);
        let before = (observe(&uow, &ann), observe(&uow, &cy), uow.len());
        let rows_before = account_rows(&mut db.connect());

        let (mut cuts, mut rolled_back_writes) = (0, false);
        let in_doubt = loop {
            let mut victim = db.connect();
            let log = StatementLog::default();
            victim.set_instrumentation(log.clone());
            let scope = uow.transaction(victim.inner(), move |scope| {
                async move {
                    scope.get_mut(&ann)?.balance = 99;
                    scope.register_new(account("bob", 1))?;
                    scope.flush().await?;
                    scope.nested(move |inner| {
                        async move {
                            inner.register_removed(&cy)?;
                            inner.flush().await
                        }
                        .scope_boxed()
                    })
                    .await?;
                    scope.register_new(account("dee", 2))?;
                    Ok::<_, uow::Error>(())
                }
                .scope_boxed()
            });
            let at_cut = match wait(cut_after(cuts, &log, scope)) {
                Ok(result) => {
                    result?;
                    break false;
                }
                Err(at_cut) => at_cut,
            };
            let sent = settle(&mut victim, &log, at_cut);
            let at = format!("dropped after {cuts} waits, having sent {sent:?}");
            assert_eq!((observe(&uow, &ann), observe(&uow, &cy), uow.len()), before, "memory as when the scope began, {at}");
            if commit_sent(&sent) {
                break true;
            }
            assert_eq!(account_rows(&mut db.connect()), rows_before, "nothing written, {at}");
            rolled_back_writes |= wrote_before_commit(&sent);
            drop(victim);
            cuts += 1;
        };
        assert!(rolled_back_writes, "no cut landed between a write and the COMMIT ({cuts} cuts)");

        let rows = account_rows(&mut db.connect());
        let mut got: Vec<_> = rows.iter().map(|r| (r.owner.clone(), r.balance)).collect();
        got.sort();
        let expected = [("ann".to_string(), 99), ("bob".to_string(), 1), ("dee".to_string(), 2)];
        if in_doubt {
            assert!(rows == rows_before || got == expected, "all or nothing after a COMMIT in doubt: {rows:?}");
        } else {
            assert_eq!(got, expected);
        }
        Ok(())
    }

    fn an_aggregate_commit_dropped_at_any_of_its_awaits_changes_nothing(db) {
        use diesel::prelude::*;
        create_cart_tables(&mut db);
        type Rows = (Vec<(i32, String, i32)>, Vec<(i32, i32, String, i32)>);
        let read = |conn: &mut Conn| -> Result<Rows, diesel::result::Error> {
            let carts = carts::table.select((carts::id, carts::owner, carts::version)).order(carts::id).load(conn)?;
            let items = cart_items::table
                .select((cart_items::id, cart_items::cart_id, cart_items::sku, cart_items::qty))
                .order(cart_items::id)
                .load(conn)?;
            Ok((carts, items))
        };
        let mut uow = uow::AsyncUnitOfWork::new();
        let cart = uow.register_new(Cart { id: 0, owner: "ann".into(), version: 1, items: vec![item("a", 1), item("b", 2), item("c", 3)] })?;
        wait(uow.commit(db.conn.inner()))?;
        slow_writes(&mut db, &["carts", "cart_items"]);
        // An item changed, one removed, one added: an UPDATE, a DELETE, an INSERT and the
        // root's version.
        {
            let tree = uow.get_mut(&cart)?;
            tree.items[0].qty = 10;
            tree.items.remove(1);
            tree.items.push(item("d", 4));
        }
        let members = |uow: &uow::AsyncUnitOfWork<<Conn as common::on_async::Wrapped>::Inner>| -> Vec<Option<EntityState>> {
            (1..=3).map(|id| uow.find::<CartItem>(&id).and_then(|h| uow.state(&h).ok())).collect()
        };
        let before = (observe(&uow, &cart), members(&uow), uow.len());
        let rows_before = read(&mut db.connect())?;

        let (mut cuts, mut rolled_back_writes) = (0, false);
        let in_doubt = loop {
            let mut victim = db.connect();
            let log = StatementLog::default();
            victim.set_instrumentation(log.clone());
            let at_cut = match wait(cut_after(cuts, &log, uow.commit(victim.inner()))) {
                Ok(result) => {
                    result?;
                    break false;
                }
                Err(at_cut) => at_cut,
            };
            let sent = settle(&mut victim, &log, at_cut);
            let at = format!("dropped after {cuts} waits, having sent {sent:?}");
            assert_eq!((observe(&uow, &cart), members(&uow), uow.len()), before, "the tree, its members and what is held as before the commit, {at}");
            if commit_sent(&sent) {
                break true;
            }
            assert_eq!(read(&mut db.connect())?, rows_before, "nothing written, {at}");
            rolled_back_writes |= wrote_before_commit(&sent);
            drop(victim);
            cuts += 1;
        };
        assert!(rolled_back_writes, "no cut landed between a write and the COMMIT ({cuts} cuts)");

        let (carts, items) = read(&mut db.connect())?;
        let written = carts.iter().map(|c| c.2).eq([2])
            && items.iter().map(|i| (i.2.as_str(), i.3)).eq([("a", 10), ("c", 3), ("d", 4)]);
        if in_doubt {
            assert!((carts.clone(), items.clone()) == rows_before || written, "all or nothing after a COMMIT in doubt: {carts:?} {items:?}");
        } else {
            assert!(written, "{carts:?} {items:?}");
            let tree = uow.get(&cart)?;
            assert_eq!((tree.version, tree.items.len()), (2, 3));
            assert!(tree.items.iter().all(|i| i.id > 0 && i.cart_id == tree.id), "{tree:?}");
        }
        Ok(())
    }
}
