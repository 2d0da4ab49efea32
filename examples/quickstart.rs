//! Quickstart: register, mutate with plain Rust, commit; then watch a failed commit leave the
//! database and the entities in memory exactly as they were, and a retry succeed.
//!
//! Run with `cargo run --example quickstart` (embedded SQLite, nothing to install).

use std::error::Error;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use diesel::connection::InstrumentationEvent;
use diesel::{Connection, QueryDsl, Queryable, RunQueryDsl, SqliteConnection};
use uow::prelude::*;

diesel::table! { accounts (id) { id -> Integer, owner -> Text, balance -> BigInt } }

#[derive(Tracked, Queryable, Clone, Debug, PartialEq)]
#[tracked(table = accounts)]
struct Account {
    #[tracked(generated)] // SQLite assigns it; commit writes it back into the struct
    id: i32,
    owner: String,
    balance: i64,
}

/// Deletes the database file however `main` ends, so reruns and CI start from nothing.
struct TempDb(PathBuf);
impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    // A file rather than `:memory:` so a second connection can read back what was really
    // committed, as any other reader of the database would see it.
    let db = TempDb(std::env::temp_dir().join(format!("uow-quickstart-{}.db", std::process::id())));
    let url = db.0.to_str().ok_or("temp dir path is not UTF-8")?;
    let mut conn = SqliteConnection::establish(url)?;
    let mut reader = SqliteConnection::establish(url)?;
    // The CHECK is what makes the failing commit below fail inside the database.
    diesel::sql_query(
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL, \
         balance BIGINT NOT NULL CHECK (balance >= 0))",
    )
    .execute(&mut conn)?;

    // Record every statement Diesel sends, so the output shows the SQL itself, not a claim.
    let sent = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = Arc::clone(&sent);
    conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            log.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(query.to_string());
        }
    });
    // Only writes are interesting here; BEGIN/COMMIT/ROLLBACK would drown them.
    let writes = || -> Vec<String> {
        let mut all = sent.lock().unwrap_or_else(PoisonError::into_inner);
        let is_write = |q: &String| {
            ["INSERT", "UPDATE", "DELETE"]
                .iter()
                .any(|w| q.starts_with(w))
        };
        std::mem::take(&mut *all)
            .into_iter()
            .filter(is_write)
            .collect()
    };
    let mut database = move || {
        accounts::table
            .order(accounts::id)
            .load::<Account>(&mut reader)
    };

    println!("== 1. register two new accounts and commit");
    let mut uow = UnitOfWork::new();
    let ann = uow.register_new(account("ann", 10))?;
    let bob = uow.register_new(account("bob", 5))?;
    println!("report: {}", uow.commit(&mut conn)?);
    println!("sql:    {}", writes().join("\n        "));
    let (ann_id, bob_id) = (uow.get(&ann)?.id, uow.get(&bob)?.id);
    println!("keys:   ann = {ann_id}, bob = {bob_id}");

    println!("\n== 2. plain mutation; only the changed column is written");
    uow.get_mut(&ann)?.balance += 5;
    let changed = uow.changed_columns(&ann)?;
    println!("changed: {changed:?}, state: {:?}", uow.state(&ann)?);
    println!("report: {}", uow.commit(&mut conn)?);
    println!("sql:    {}", writes().join("\n        "));

    println!("\n== 3. a transfer bob cannot afford: the CHECK constraint refuses it");
    uow.get_mut(&ann)?.balance += 20;
    uow.get_mut(&bob)?.balance -= 20;
    match uow.commit(&mut conn) {
        Ok(report) => return Err(format!("the CHECK should have refused: {report}").into()),
        Err(error) => println!("commit failed: {error}"),
    }
    // ann's UPDATE was sent before bob's failed; the rollback took it back.
    println!("sql:    {}", writes().join("\n        "));
    let rows = database()?;
    println!("database: {rows:?}");
    let committed = [
        Account {
            id: ann_id,
            ..account("ann", 15)
        },
        Account {
            id: bob_id,
            ..account("bob", 5)
        },
    ];
    ensure(rows == committed, "the database rows are unchanged")?;
    for h in [ann, bob] {
        let (a, state, changed) = (uow.get(&h)?, uow.state(&h)?, uow.changed_columns(&h)?);
        println!(
            "memory:   {} balance {}, {state:?}, changed {changed:?}",
            a.owner, a.balance
        );
        let pending = state == EntityState::Dirty && changed == ["balance"];
        ensure(pending, "each entity is still dirty in `balance` alone")?;
    }
    let kept = (uow.get(&ann)?.balance, uow.get(&bob)?.balance) == (35, -15);
    ensure(kept, "memory kept the pending changes")?;

    println!("\n== 4. fix the cause (transfer only what bob has) and commit again");
    uow.get_mut(&ann)?.balance -= 15;
    uow.get_mut(&bob)?.balance += 15;
    print!("plan:\n{}", uow.plan()?);
    println!("report: {}", uow.commit(&mut conn)?);
    println!("sql:    {}", writes().join("\n        "));
    let rows = database()?;
    println!("database: {rows:?}");
    ensure(balances(&rows) == [20, 0], "the retry wrote it once")?;
    let states = (uow.state(&ann)?, uow.state(&bob)?);
    println!("state:    {states:?}");

    println!("\n== 5. nothing pending: commit sends nothing, not even BEGIN");
    let report = uow.commit(&mut conn)?;
    let count = sent.lock().unwrap_or_else(PoisonError::into_inner).len();
    println!("report: {report}; statements sent: {count}");
    ensure(count == 0, "an empty commit sends no statement")
}

fn account(owner: &str, balance: i64) -> Account {
    // `id` is a placeholder: it is generated, so the INSERT leaves it out.
    Account {
        id: 0,
        owner: owner.into(),
        balance,
    }
}

fn balances(rows: &[Account]) -> Vec<i64> {
    rows.iter().map(|a| a.balance).collect()
}

/// CI runs this example, so it checks what it prints instead of only printing it.
fn ensure(ok: bool, what: &str) -> Result<(), Box<dyn Error>> {
    if ok {
        Ok(())
    } else {
        Err(format!("quickstart expectation failed: {what}").into())
    }
}
