//! A small bank as a command-line app: customers, accounts and a ledger in an SQLite file.
//!
//! ```text
//! cargo run --example bank                                  # a short demo on a fresh database
//! cargo run --example bank -- --db bank.db open ann 100     # account #1
//! cargo run --example bank -- --db bank.db open bob 20      # account #2
//! cargo run --example bank -- --db bank.db deposit 2 30.50
//! cargo run --example bank -- --db bank.db transfer 1 2 45
//! cargo run --example bank -- --db bank.db list
//! cargo run --example bank -- --db bank.db history 2
//! ```
//!
//! Every command is one unit of work. Balances carry a `#[tracked(version)]`, so a change
//! based on a stale read is refused instead of overwriting someone else's; a transfer is one
//! transaction scope that is rerun when it loses such a race.

use std::error::Error;
use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;

use diesel::{
    Connection, ExpressionMethods, OptionalExtension, QueryDsl, Queryable, RunQueryDsl, Selectable,
    SelectableHelper, SqliteConnection,
};
use uow::prelude::*;
use uow::{RetryPolicy, Scope};

diesel::table! { customers (id) { id -> Integer, name -> Text } }
diesel::table! {
    accounts (id) { id -> Integer, customer_id -> Integer, balance -> BigInt, version -> Integer }
}
diesel::table! {
    entries (id) {
        id -> Integer, account_id -> Integer, amount -> BigInt, balance_after -> BigInt,
        memo -> Text,
    }
}
diesel::joinable!(accounts -> customers (customer_id));
diesel::joinable!(entries -> accounts (account_id));
diesel::allow_tables_to_appear_in_same_query!(customers, accounts, entries);

#[derive(Tracked, Queryable, Selectable, Clone, Debug, PartialEq)]
#[tracked(table = customers)]
#[diesel(table_name = customers)]
struct Customer {
    #[tracked(generated)]
    id: i32,
    name: String,
}

/// Money is kept in cents: integers add up exactly.
#[derive(Tracked, Queryable, Selectable, Clone, Debug, PartialEq)]
#[tracked(table = accounts, belongs_to(Customer, foreign_key = customer_id))]
#[diesel(table_name = accounts)]
struct Account {
    #[tracked(generated)]
    id: i32,
    customer_id: i32,
    balance: i64,
    #[tracked(version)]
    version: i32,
}

/// One line of an account's ledger; the ledger of an account always sums to its balance.
#[derive(Tracked, Queryable, Selectable, Clone, Debug, PartialEq)]
#[tracked(table = entries, belongs_to(Account, foreign_key = account_id))]
#[diesel(table_name = entries)]
struct Entry {
    #[tracked(generated)]
    id: i32,
    account_id: i32,
    amount: i64,
    balance_after: i64,
    memo: String,
}

/// The domain event a transfer records; printed once the transfer is committed.
#[derive(Debug, Clone, PartialEq)]
struct MoneyMoved {
    from: i32,
    to: i32,
    amount: i64,
    from_balance: i64,
    to_balance: i64,
}

impl fmt::Display for MoneyMoved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (from, to) = (self.from, self.to);
        write!(
            f,
            "MoneyMoved {} from #{from} to #{to} (#{from} now {}, #{to} now {})",
            money(self.amount),
            money(self.from_balance),
            money(self.to_balance)
        )
    }
}

const USAGE: &str = "\
usage: bank [--db PATH] COMMAND
  open <customer> <initial>       open an account (and the customer, if new)
  deposit <account> <amount>      put money into an account
  transfer <from> <to> <amount>   move money between accounts
  list                            every account with its owner and balance
  history <account>               an account's ledger
With no arguments: a short demo on a fresh database. The database is --db PATH, else
$BANK_DB, else uow-bank.db in the temp directory. Amounts look like 12 or 12.50.";

#[derive(Debug)]
enum BankError {
    Usage(String),
    NoAccount(i32),
    Refused {
        account: i32,
        available: i64,
        amount: i64,
    },
    Uow(uow::Error),
    Database(diesel::result::Error),
    Connection(diesel::ConnectionError),
    Check(String),
}

impl fmt::Display for BankError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BankError::Usage(what) => write!(f, "{what} (`bank help` lists the commands)"),
            BankError::NoAccount(id) => write!(f, "there is no account #{id}"),
            BankError::Refused {
                account,
                available,
                amount,
            } => write!(
                f,
                "refused: account #{account} has {}, cannot send {}; nothing was written",
                money(*available),
                money(*amount)
            ),
            BankError::Uow(e) => write!(f, "{e}"),
            BankError::Database(e) => write!(f, "database: {e}"),
            BankError::Connection(e) => write!(f, "cannot open the database: {e}"),
            BankError::Check(what) => write!(f, "check failed: {what}"),
        }
    }
}

impl Error for BankError {}

impl From<uow::Error> for BankError {
    fn from(e: uow::Error) -> Self {
        BankError::Uow(e)
    }
}
impl From<diesel::result::Error> for BankError {
    fn from(e: diesel::result::Error) -> Self {
        BankError::Database(e)
    }
}
impl From<diesel::ConnectionError> for BankError {
    fn from(e: diesel::ConnectionError) -> Self {
        BankError::Connection(e)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = if args.is_empty() { demo() } else { cli(args) };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(usage @ BankError::Usage(_)) => {
            eprintln!("bank: {usage}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("bank: {error}");
            ExitCode::FAILURE
        }
    }
}

fn cli(mut args: Vec<String>) -> Result<(), BankError> {
    let mut db = std::env::var_os("BANK_DB").map(PathBuf::from);
    if let Some(i) = args.iter().position(|a| a == "--db") {
        args.remove(i);
        if i >= args.len() {
            return Err(BankError::Usage("--db needs a path".into()));
        }
        db = Some(PathBuf::from(args.remove(i)));
    }
    if matches!(
        args.first().map(String::as_str),
        Some("help" | "-h" | "--help")
    ) {
        println!("{USAGE}");
        return Ok(());
    }
    let db = db.unwrap_or_else(|| std::env::temp_dir().join("uow-bank.db"));
    let mut conn = connect(&db)?;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&mut conn, &args)
}

/// Opens the database and creates the tables on first use.
fn connect(path: &std::path::Path) -> Result<SqliteConnection, BankError> {
    let url = path
        .to_str()
        .ok_or_else(|| BankError::Usage(format!("{} is not UTF-8", path.display())))?;
    let mut conn = SqliteConnection::establish(url)?;
    // SQLite checks foreign keys only when asked, per connection. The busy timeout lets two
    // commands running at once wait for each other instead of failing at the first lock.
    diesel::sql_query("PRAGMA foreign_keys = ON").execute(&mut conn)?;
    diesel::sql_query("PRAGMA busy_timeout = 5000").execute(&mut conn)?;
    diesel::sql_query(
        "CREATE TABLE IF NOT EXISTS customers (id INTEGER PRIMARY KEY AUTOINCREMENT, \
         name TEXT NOT NULL UNIQUE)",
    )
    .execute(&mut conn)?;
    // The CHECK is a backstop: `transfer` refuses an overdraft before it gets this far.
    diesel::sql_query(
        "CREATE TABLE IF NOT EXISTS accounts (id INTEGER PRIMARY KEY AUTOINCREMENT, \
         customer_id INTEGER NOT NULL REFERENCES customers (id), \
         balance BIGINT NOT NULL CHECK (balance >= 0), version INTEGER NOT NULL)",
    )
    .execute(&mut conn)?;
    diesel::sql_query(
        "CREATE TABLE IF NOT EXISTS entries (id INTEGER PRIMARY KEY AUTOINCREMENT, \
         account_id INTEGER NOT NULL REFERENCES accounts (id), amount BIGINT NOT NULL, \
         balance_after BIGINT NOT NULL, memo TEXT NOT NULL)",
    )
    .execute(&mut conn)?;
    Ok(conn)
}

/// One command, as typed after `bank`.
fn run(conn: &mut SqliteConnection, args: &[&str]) -> Result<(), BankError> {
    match args {
        ["open", name, initial] => {
            let initial = amount(initial, true)?;
            let (customer, account) = open(conn, name, initial)?;
            let initial = money(initial);
            println!("opened account #{account} for {name} (customer #{customer}) with {initial}");
        }
        ["deposit", account, sum] => {
            let balance = deposit(conn, account_id(account)?, amount(sum, false)?)?;
            println!(
                "deposited {}; balance {}",
                money(amount(sum, false)?),
                money(balance)
            );
        }
        ["transfer", from, to, sum] => {
            let (from, to) = (account_id(from)?, account_id(to)?);
            if from == to {
                return Err(BankError::Usage("a transfer needs two accounts".into()));
            }
            let moved = transfer(conn, from, to, amount(sum, false)?)?;
            println!("event: {moved}");
        }
        ["list"] => list(conn)?,
        ["history", account] => history(conn, account_id(account)?)?,
        [] => return Err(BankError::Usage("no command given".into())),
        other => {
            return Err(BankError::Usage(format!(
                "cannot read `{}`",
                other.join(" ")
            )))
        }
    }
    Ok(())
}

/// Opens an account, creating the customer when the name is new: customer, account and the
/// opening entry go in one commit, parents first, each child's foreign key filled from its
/// parent's generated key.
fn open(conn: &mut SqliteConnection, name: &str, initial: i64) -> Result<(i32, i32), BankError> {
    let mut uow = UnitOfWork::new();
    let known = customers::table
        .filter(customers::name.eq(name))
        .select(Customer::as_select())
        .first(conn)
        .optional()?;
    let customer = match known {
        Some(row) => uow.attach(row),
        None => uow.register_new(Customer {
            id: 0,
            name: name.into(),
        })?,
    };
    let account = uow.register_new(Account {
        id: 0,
        customer_id: 0, // set by the commit, from the customer's key
        balance: initial,
        version: 1,
    })?;
    uow.set_parent(&account, &customer)?;
    if initial > 0 {
        let entry = uow.register_new(Entry {
            id: 0,
            account_id: 0,
            amount: initial,
            balance_after: initial,
            memo: "opening deposit".into(),
        })?;
        uow.set_parent(&entry, &account)?;
    }
    uow.commit(conn)?;
    Ok((uow.get(&customer)?.id, uow.get(&account)?.id))
}

/// The policy for money movements: a rerun reloads both accounts, so conflicts may be rerun.
fn policy() -> RetryPolicy {
    RetryPolicy::default().retry_conflicts(true)
}

fn deposit(conn: &mut SqliteConnection, id: i32, sum: i64) -> Result<i64, BankError> {
    in_retried_scope(conn, |s| {
        let account = load_account(s, id)?;
        let balance = {
            let a = s.get_mut(&account)?;
            a.balance += sum;
            a.balance
        };
        s.register_new(Entry {
            id: 0,
            account_id: id,
            amount: sum,
            balance_after: balance,
            memo: "deposit".into(),
        })?;
        Ok(balance)
    })
    .map(|(balance, _)| balance)
}

/// Moves money in one transaction scope: load both accounts, check the funds, change both
/// balances, write two ledger entries, record the event. Returns the event, read back from
/// the unit of work after the commit.
fn transfer(
    conn: &mut SqliteConnection,
    from: i32,
    to: i32,
    sum: i64,
) -> Result<MoneyMoved, BankError> {
    let (_, events) = in_retried_scope(conn, |s| {
        let source = load_account(s, from)?;
        let target = load_account(s, to)?;
        let available = s.get(&source)?.balance;
        if available < sum {
            // An error from the closure rolls the scope back; nothing was changed anyway.
            return Err(BankError::Refused {
                account: from,
                available,
                amount: sum,
            });
        }
        s.get_mut(&source)?.balance -= sum;
        s.get_mut(&target)?.balance += sum;
        let (from_balance, to_balance) = (s.get(&source)?.balance, s.get(&target)?.balance);
        for (account, amount, balance_after, memo) in [
            (from, -sum, from_balance, format!("transfer to #{to}")),
            (to, sum, to_balance, format!("transfer from #{from}")),
        ] {
            s.register_new(Entry {
                id: 0,
                account_id: account,
                amount,
                balance_after,
                memo,
            })?;
        }
        let event = MoneyMoved {
            from,
            to,
            amount: sum,
            from_balance,
            to_balance,
        };
        s.record_event(&source, event)?;
        Ok(())
    })?;
    // Events are handed out only once their changes are committed.
    events
        .iter()
        .find_map(|e| e.downcast_ref::<MoneyMoved>())
        .cloned()
        .ok_or_else(|| BankError::Check("the transfer recorded no event".into()))
}

/// Runs `work` in a transaction scope on a fresh unit of work, rerunning the whole scope when
/// the database gave up on it (a lost race: "database is locked" on SQLite) or a version check
/// failed. Returns the closure's value and the unit of work's committed events.
///
/// `uow::retry` wants a `uow::Error`, so the bank's own refusals travel through it as values
/// and come out as errors again afterwards.
fn in_retried_scope<T>(
    conn: &mut SqliteConnection,
    mut work: impl FnMut(&mut Scope<'_, SqliteConnection>) -> Result<T, BankError>,
) -> Result<(T, Vec<uow::DomainEvent>), BankError> {
    let outcome = uow::retry(&policy(), |attempt| {
        if attempt > 1 {
            eprintln!("(lost a race with another writer: rerunning, attempt {attempt})");
        }
        // A fresh unit of work each time: the rerun must read the rows again.
        let mut uow = UnitOfWork::new();
        match uow.transaction(conn, &mut work) {
            Ok(value) => Ok(Ok((value, uow.take_events()))),
            Err(BankError::Uow(error)) => Err(error),
            Err(refusal) => Ok(Err(refusal)),
        }
    })?;
    outcome
}

fn load_account(
    s: &mut Scope<'_, SqliteConnection>,
    id: i32,
) -> Result<Handle<Account>, BankError> {
    match s.load::<Account>(id) {
        Ok(handle) => Ok(handle),
        Err(uow::Error::NotFound { .. }) => Err(BankError::NoAccount(id)),
        Err(error) => Err(error.into()),
    }
}

fn list(conn: &mut SqliteConnection) -> Result<(), BankError> {
    let rows = accounts::table
        .inner_join(customers::table)
        .select((
            accounts::id,
            customers::name,
            accounts::balance,
            accounts::version,
        ))
        .order(accounts::id)
        .load::<(i32, String, i64, i32)>(conn)?;
    println!("account  customer   balance  version");
    for (id, name, balance, version) in rows {
        println!(
            "{:>7}  {name:<8} {:>9}  {version:>7}",
            format!("#{id}"),
            money(balance)
        );
    }
    Ok(())
}

fn history(conn: &mut SqliteConnection, id: i32) -> Result<(), BankError> {
    let owner = accounts::table
        .inner_join(customers::table)
        .filter(accounts::id.eq(id))
        .select(customers::name)
        .first::<String>(conn)
        .optional()?
        .ok_or(BankError::NoAccount(id))?;
    println!("account #{id} of {owner}");
    for e in ledger(conn, id)? {
        let signed = if e.amount < 0 { "-" } else { "+" };
        let amount = format!("{signed}{}", money(e.amount.abs()));
        println!("  {amount:>9}  = {:>9}  {}", money(e.balance_after), e.memo);
    }
    Ok(())
}

fn ledger(conn: &mut SqliteConnection, id: i32) -> diesel::QueryResult<Vec<Entry>> {
    entries::table
        .filter(entries::account_id.eq(id))
        .order(entries::id)
        .select(Entry::as_select())
        .load(conn)
}

fn account_id(text: &str) -> Result<i32, BankError> {
    let digits = text.strip_prefix('#').unwrap_or(text);
    digits
        .parse()
        .map_err(|_| BankError::Usage(format!("`{text}` is not an account number")))
}

/// Cents from `12`, `12.5` or `12.50`; zero only where `zero_ok`.
fn amount(text: &str, zero_ok: bool) -> Result<i64, BankError> {
    let bad = || BankError::Usage(format!("`{text}` is not an amount like 12 or 12.50"));
    let (units, cents) = text.split_once('.').unwrap_or((text, "0"));
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(units) || !all_digits(cents) || cents.len() > 2 {
        return Err(bad());
    }
    let cents = if cents.len() == 1 {
        cents.parse::<i64>().map_err(|_| bad())? * 10
    } else {
        cents.parse::<i64>().map_err(|_| bad())?
    };
    let units = units.parse::<i64>().map_err(|_| bad())?;
    let total = units
        .checked_mul(100)
        .and_then(|u| u.checked_add(cents))
        .ok_or_else(bad)?;
    if total == 0 && !zero_ok {
        return Err(BankError::Usage("the amount must be more than zero".into()));
    }
    Ok(total)
}

fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

/// Deletes the demo's database file however the demo ends.
struct TempDb(PathBuf);
impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What the demo compares before and after a refused change: every account and entry.
fn snapshot(conn: &mut SqliteConnection) -> diesel::QueryResult<(Vec<Account>, Vec<Entry>)> {
    let accounts = accounts::table
        .order(accounts::id)
        .select(Account::as_select())
        .load(conn)?;
    let entries = entries::table
        .order(entries::id)
        .select(Entry::as_select())
        .load(conn)?;
    Ok((accounts, entries))
}

fn demo() -> Result<(), BankError> {
    let db = TempDb(std::env::temp_dir().join(format!("uow-bank-demo-{}.db", std::process::id())));
    let _ = std::fs::remove_file(&db.0);
    println!(
        "a fresh bank in {} (`bank help` for the commands)",
        db.0.display()
    );
    let mut conn = connect(&db.0)?;
    let bank = |conn: &mut SqliteConnection, line: &str| {
        println!("\n$ bank {line}");
        let args: Vec<&str> = line.split_whitespace().collect();
        run(conn, &args)
    };

    bank(&mut conn, "open ann 100")?;
    bank(&mut conn, "open bob 20")?;
    bank(&mut conn, "deposit 2 30.50")?;
    bank(&mut conn, "transfer 1 2 45")?;
    expect_balances(&mut conn, &[5500, 9550])?;

    let before = snapshot(&mut conn)?;
    let overdraft = bank(&mut conn, "transfer 2 1 500");
    if let Err(refusal) = &overdraft {
        println!("{refusal}");
    }
    let refused = matches!(overdraft, Err(BankError::Refused { .. }));
    ensure(refused, "the overdraft is refused")?;
    ensure(
        snapshot(&mut conn)? == before,
        "the refused transfer wrote nothing",
    )?;

    // A teller's screen read account #1 before the next transfer and saves a fee afterwards:
    // the version check refuses the stale write instead of undoing the transfer.
    println!("\n(a teller loads account #1 to charge a 1.00 fee)");
    let mut teller = UnitOfWork::new();
    let stale = teller.load::<Account>(&mut conn, 1)?;
    bank(&mut conn, "transfer 1 2 5")?;
    teller.get_mut(&stale)?.balance -= 100;
    let before = snapshot(&mut conn)?;
    let fee = teller.commit(&mut conn);
    if let Err(conflict) = &fee {
        println!("teller: {conflict}");
    }
    let conflict = matches!(fee, Err(uow::Error::Conflict { .. }));
    ensure(conflict, "the stale write is a conflict")?;
    ensure(
        snapshot(&mut conn)? == before,
        "the stale fee wrote nothing",
    )?;
    expect_balances(&mut conn, &[5000, 10050])?;

    bank(&mut conn, "list")?;
    bank(&mut conn, "history 2")?;

    // The books balance: no money appeared or vanished, and each ledger sums to its balance.
    let (accounts, entries) = snapshot(&mut conn)?;
    let total: i64 = accounts.iter().map(|a| a.balance).sum();
    let deposited = 10000 + 2000 + 3050; // 100 + 20 + 30.50, in cents
    for a in &accounts {
        let ledger: i64 = entries
            .iter()
            .filter(|e| e.account_id == a.id)
            .map(|e| e.amount)
            .sum();
        ensure(ledger == a.balance, "each account agrees with its ledger")?;
    }
    ensure(total == deposited, "the bank holds what was deposited")?;
    println!(
        "\nchecked: {} held = {} deposited; every ledger sums to its balance",
        money(total),
        money(deposited)
    );
    Ok(())
}

fn expect_balances(conn: &mut SqliteConnection, expected: &[i64]) -> Result<(), BankError> {
    let balances: Vec<i64> = accounts::table
        .order(accounts::id)
        .select(accounts::balance)
        .load(conn)?;
    ensure(balances == expected, "the balances are as expected")
}

/// The demo runs in CI, so it checks what it prints instead of only printing it.
fn ensure(ok: bool, what: &str) -> Result<(), BankError> {
    if ok {
        Ok(())
    } else {
        Err(BankError::Check(what.into()))
    }
}
