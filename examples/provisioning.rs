//! Provisioning: a cloud server and its inventory row are created together or not at all.
//!
//! The server is a participant of the unit of work: it is created in `prepare` (before the
//! database commits), marked active in `commit` (after it did), and destroyed in `compensate`
//! when anything else in the commit fails, so nobody pays for a server the inventory does not
//! know about.
//!
//! Run with `cargo run --example provisioning` (embedded SQLite, nothing to install).

use std::error::Error;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The value behind a mutex shared with a participant (a poisoned lock still holds it).
fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

use diesel::{Connection, QueryDsl, Queryable, RunQueryDsl, SqliteConnection};
use uow::prelude::*;
use uow::{Participant, ParticipantError};

diesel::table! {
    servers (id) { id -> Integer, hostname -> Text, size -> Text, cents_per_hour -> Integer }
}

/// The inventory's record of a server. The hostname is what the inventory and the cloud share:
/// the row is written in the same commit that creates the server, before the cloud's instance
/// id could be known to it.
#[derive(Tracked, Queryable, Clone, Debug, PartialEq)]
#[tracked(table = servers)]
struct ServerRecord {
    #[tracked(generated)]
    id: i32,
    hostname: String,
    size: String,
    cents_per_hour: i32,
}

/// A stand-in for a cloud provider's API: instances, a quota, and an audit log of the calls
/// made, so the output shows what really happened at the provider.
struct Cloud {
    state: Mutex<CloudState>,
}

struct CloudState {
    next_id: u32,
    quota: usize,
    /// Every instance ever created; destroyed ones stay listed, like in a cloud console.
    instances: Vec<Instance>,
    calls: Vec<String>,
}

#[derive(Clone, Debug)]
struct Instance {
    id: u32,
    hostname: String,
    cents_per_hour: i32,
    status: Status,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Status {
    /// Created by a commit that has not finished; a janitor could reap instances left pending
    /// by a crash between `prepare` and `commit`.
    Pending,
    Active,
    Destroyed,
}

impl Cloud {
    fn new(quota: usize) -> Arc<Self> {
        Arc::new(Cloud {
            state: Mutex::new(CloudState {
                next_id: 101,
                quota,
                instances: Vec::new(),
                calls: Vec::new(),
            }),
        })
    }

    fn create(&self, hostname: &str, size: Size) -> Result<u32, String> {
        let mut s = locked(&self.state);
        let running = s.instances.iter().filter(|i| i.status != Status::Destroyed);
        if running.count() >= s.quota {
            let refusal = format!("create {hostname}: refused, quota of {} reached", s.quota);
            s.calls.push(refusal.clone());
            return Err(refusal);
        }
        let id = s.next_id;
        s.next_id += 1;
        s.instances.push(Instance {
            id,
            hostname: hostname.into(),
            cents_per_hour: size.cents_per_hour(),
            status: Status::Pending,
        });
        s.calls
            .push(format!("create i-{id} ({hostname}, {size:?})"));
        Ok(id)
    }

    fn set_status(&self, id: u32, status: Status, call: &str) -> Result<(), String> {
        let mut s = locked(&self.state);
        let instance = s.instances.iter_mut().find(|i| i.id == id);
        instance.ok_or(format!("no instance i-{id}"))?.status = status;
        s.calls.push(format!("{call} i-{id}"));
        Ok(())
    }

    /// The instances that exist and cost money (pending or active).
    fn running(&self) -> Vec<Instance> {
        let s = locked(&self.state);
        let running = s.instances.iter().filter(|i| i.status != Status::Destroyed);
        running.cloned().collect()
    }

    fn status(&self, id: u32) -> Option<Status> {
        let s = locked(&self.state);
        s.instances.iter().find(|i| i.id == id).map(|i| i.status)
    }

    /// What the account pays per hour right now: running instances only.
    fn hourly_bill(&self) -> i32 {
        self.running().iter().map(|i| i.cents_per_hour).sum()
    }

    fn billed_for(&self, id: u32) -> i32 {
        let running = self.running();
        let instance = running.iter().find(|i| i.id == id);
        instance.map_or(0, |i| i.cents_per_hour)
    }

    /// The API calls made since the last look, oldest first.
    fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut locked(&self.state).calls)
    }
}

#[derive(Clone, Copy, Debug)]
enum Size {
    Small,
    Large,
}

impl Size {
    fn cents_per_hour(self) -> i32 {
        match self {
            Size::Small => 9,
            Size::Large => 36,
        }
    }
}

/// A server to create as part of a unit of work.
struct Provision {
    cloud: Arc<Cloud>,
    hostname: String,
    size: Size,
    /// The instance `prepare` created and `compensate` has not destroyed yet.
    prepared: Option<u32>,
    /// The instance id, for the caller (the participant itself moves into the unit of work).
    created: Arc<Mutex<Option<u32>>>,
}

impl Participant for Provision {
    fn name(&self) -> String {
        format!("server {}", self.hostname)
    }

    fn prepare(&mut self) -> Result<(), ParticipantError> {
        let id = self.cloud.create(&self.hostname, self.size)?;
        self.prepared = Some(id);
        *locked(&self.created) = Some(id);
        Ok(())
    }

    fn commit(&mut self) -> Result<(), ParticipantError> {
        let id = self
            .prepared
            .ok_or("committed without a prepared instance")?;
        Ok(self.cloud.set_status(id, Status::Active, "activate")?)
    }

    fn compensate(&mut self) -> Result<(), ParticipantError> {
        match self.prepared.take() {
            Some(id) => Ok(self.cloud.set_status(id, Status::Destroyed, "destroy")?),
            None => Ok(()),
        }
    }
}

/// Registers the inventory row and enlists the server that goes with it; the caller commits.
fn provision(
    uow: &mut UnitOfWork<SqliteConnection>,
    cloud: &Arc<Cloud>,
    hostname: &str,
    size: Size,
) -> Result<Arc<Mutex<Option<u32>>>, uow::Error> {
    uow.register_new(ServerRecord {
        id: 0, // generated: left out of the INSERT, written back by the commit
        hostname: hostname.into(),
        size: format!("{size:?}").to_lowercase(),
        cents_per_hour: size.cents_per_hour(),
    })?;
    let created = Arc::new(Mutex::new(None));
    uow.enlist(Provision {
        cloud: Arc::clone(cloud),
        hostname: hostname.into(),
        size,
        prepared: None,
        created: Arc::clone(&created),
    });
    Ok(created)
}

/// Deletes the database file however `main` ends, so reruns and CI start from nothing.
struct TempDb(PathBuf);
impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let db = TempDb(std::env::temp_dir().join(format!("uow-provision-{}.db", std::process::id())));
    let url = db.0.to_str().ok_or("temp dir path is not UTF-8")?;
    let mut conn = SqliteConnection::establish(url)?;
    // UNIQUE(hostname) is what refuses the second server below, inside the database.
    diesel::sql_query(
        "CREATE TABLE servers (id INTEGER PRIMARY KEY AUTOINCREMENT, \
         hostname TEXT NOT NULL UNIQUE, size TEXT NOT NULL, cents_per_hour INTEGER NOT NULL)",
    )
    .execute(&mut conn)?;
    // Two instances at most, so step 3 can run out of quota.
    let cloud = Cloud::new(2);

    println!("== 1. provision web-1: one commit creates the server and inserts its record");
    let mut uow = UnitOfWork::new();
    let web1 = provision(&mut uow, &cloud, "web-1", Size::Small)?;
    println!("report: {}", uow.commit(&mut conn)?);
    println!("cloud:  {}", cloud.take_calls().join(", "));
    let web1 = locked(&web1).ok_or("web-1 got no instance")?;
    println!("billed: i-{web1} at {}c/h", cloud.billed_for(web1));
    ensure(
        cloud.status(web1) == Some(Status::Active),
        "web-1 is active",
    )?;
    agree(&cloud, &mut conn, &["web-1"])?;

    println!("\n== 2. provision web-1 again by mistake: the cloud says yes, UNIQUE(hostname) no");
    let mut uow = UnitOfWork::new();
    let twin = provision(&mut uow, &cloud, "web-1", Size::Large)?;
    match uow.commit(&mut conn) {
        Ok(report) => return Err(format!("UNIQUE should have refused: {report}").into()),
        Err(error) => println!("commit failed: {error}"),
    }
    // The server was created before the INSERT failed, and destroyed after it.
    let calls = cloud.take_calls();
    println!("cloud:  {}", calls.join(", "));
    let twin = locked(&twin).ok_or("the cloud never created the twin")?;
    ensure(
        calls.last() == Some(&format!("destroy i-{twin}")),
        "the twin was destroyed by the compensation",
    )?;
    let left = cloud.billed_for(twin);
    println!("billed: i-{twin} destroyed, nothing left billed for it ({left}c/h)");
    ensure(
        cloud.status(twin) == Some(Status::Destroyed),
        "the twin is gone",
    )?;
    ensure(left == 0, "the destroyed twin accrues nothing")?;
    agree(&cloud, &mut conn, &["web-1"])?;

    println!("\n== 3. web-2 and web-3 in one commit: the quota refuses web-3 before any INSERT");
    let mut uow = UnitOfWork::new();
    let web2 = provision(&mut uow, &cloud, "web-2", Size::Small)?;
    let web3 = provision(&mut uow, &cloud, "web-3", Size::Small)?;
    match uow.commit(&mut conn) {
        Ok(report) => return Err(format!("the quota should have refused: {report}").into()),
        Err(error) => println!("commit failed: {error}"),
    }
    // web-2 was prepared before web-3 failed, so it was compensated; nothing reached SQLite.
    println!("cloud:  {}", cloud.take_calls().join(", "));
    let web2 = locked(&web2).ok_or("web-2 was never created")?;
    ensure(
        cloud.status(web2) == Some(Status::Destroyed),
        "web-2 was undone",
    )?;
    ensure(locked(&web3).is_none(), "web-3 was never created")?;
    agree(&cloud, &mut conn, &["web-1"])?;

    println!("\n== the cloud and the inventory agree");
    for i in cloud.running() {
        let (host, status, cents) = (&i.hostname, i.status, i.cents_per_hour);
        println!("cloud:     i-{} {host} {status:?} {cents}c/h", i.id);
    }
    for row in servers::table
        .order(servers::id)
        .load::<ServerRecord>(&mut conn)?
    {
        let (host, size, cents) = (&row.hostname, &row.size, row.cents_per_hour);
        println!("inventory: #{} {host} {size} {cents}c/h", row.id);
    }
    println!("hourly bill: {}c", cloud.hourly_bill());
    Ok(())
}

/// Checks that the servers running at the cloud are exactly the inventory's rows, that each
/// is active (none left pending), and that the bill is what the inventory says it should be.
fn agree(
    cloud: &Cloud,
    conn: &mut SqliteConnection,
    expected: &[&str],
) -> Result<(), Box<dyn Error>> {
    let rows = servers::table
        .order(servers::hostname)
        .load::<ServerRecord>(conn)?;
    let mut running = cloud.running();
    running.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    let inventory: Vec<&str> = rows.iter().map(|r| r.hostname.as_str()).collect();
    let at_cloud: Vec<&str> = running.iter().map(|i| i.hostname.as_str()).collect();
    println!("check:  cloud runs {at_cloud:?}, inventory lists {inventory:?}");
    ensure(
        inventory == expected,
        "the inventory holds the expected rows",
    )?;
    ensure(
        at_cloud == inventory,
        "the cloud runs exactly the inventory's servers",
    )?;
    ensure(
        running.iter().all(|i| i.status == Status::Active),
        "no instance is left pending",
    )?;
    let expected_bill: i32 = rows.iter().map(|r| r.cents_per_hour).sum();
    ensure(
        cloud.hourly_bill() == expected_bill,
        "the bill matches the inventory",
    )
}

/// CI runs this example, so it checks what it prints instead of only printing it.
fn ensure(ok: bool, what: &str) -> Result<(), Box<dyn Error>> {
    if ok {
        Ok(())
    } else {
        Err(format!("provisioning expectation failed: {what}").into())
    }
}
