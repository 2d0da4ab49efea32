//! Model-based (stateful property) test: random sequences of operations run against the public
//! API of the unit of work and, side by side, against a shadow model in plain Rust. After every
//! step the model and the unit of work must agree on every held entity (`get`, `state`,
//! `changed_columns`, `original`; stale handles stay stale; `len`, `has_changes`); after every
//! commit, flush and scope the model and the database must agree row by row (read back with
//! plain Diesel), the commit report must count each change once, and `plan()` must have
//! announced as many statements as were sent.
//!
//! The entities: `Owner`, a parent whose key is a text chosen in Rust, with a UNIQUE name and a
//! version; `Shelter`, a parent with a generated key; `Pet`, a child of both (a NOT NULL foreign
//! key to `Owner`, a nullable one to `Shelter`), declared as real FOREIGN KEYs.
//!
//! The operations: `register_new` of each; `set_parent` to new and persisted parents; changes
//! through `get_mut`, `entities_mut` and its `iter_mut` (values set back to the persisted ones
//! included); new keys for new owners after children were linked to them (also two new owners
//! swapping their keys): a child's foreign key must be its parent's key as it is at commit time;
//! `register_removed` / `unremove`; `refresh`; `load` of held and missing keys; a fresh unit of
//! work loaded with `attach_all`, `load` and `register_dirty`; `commit`; scopes
//! (`uow.transaction`) with flushes, nested scopes (`scope.nested`), `Err` or `Ok`; commits made
//! to fail on purpose (a duplicate name, a removed parent that still has children, a changed
//! key or version), after which memory and database must be exactly as before and the next
//! successful commit must write each change once.
//!
//! The model predicts the outcome of every write: it fails exactly when the rows it would leave
//! break a constraint (a duplicate name, a pet whose owner or shelter is gone), and must then
//! change nothing, in memory or in the database. Where the library promises no order (a name
//! handed from one surviving row to another in one commit) either outcome is accepted, but it
//! must be all or nothing. What the documentation leaves open is not asserted and not
//! generated: a plain assignment to a foreign key that has a pending `set_parent` link, dropping
//! a new parent while a child is linked to it, and, before the commit, the foreign key a child
//! shows for a new parent whose key is generated or was changed after `set_parent`.
//!
//! Environment:
//! - `UOW_MODEL_SEED`: the seed (default: derived from the time; printed on failure);
//! - `UOW_MODEL_STEPS` (default 1500) and `UOW_MODEL_SECONDS` (default 8): per backend, the run
//!   stops at whichever comes first;
//! - `UOW_MODEL_SHRINK_SECONDS` (default 10, 0 to disable): after a failure, time spent looking
//!   for a shorter sequence of operations that fails the same way (printed with the failure);
//! - `UOW_MODEL_VERBOSE`: print the whole log of a run that passed.
//!
//! Replay a failure with the command it prints, e.g.
//! `UOW_MODEL_SEED=<seed> cargo test --test model -- sqlite::` (with `--features postgres` /
//! `--features mysql` and `postgres::` / `mysql::` for the servers).

mod common;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use diesel::prelude::*;
use uow::prelude::*;
use uow::Scope;

diesel::table! {
    m_owners (code) {
        code -> Text,
        name -> Text,
        score -> Integer,
        version -> Integer,
    }
}

diesel::table! {
    m_shelters (id) {
        id -> Integer,
        name -> Text,
        capacity -> Integer,
    }
}

diesel::table! {
    m_pets (id) {
        id -> Integer,
        owner_code -> Text,
        shelter_id -> Nullable<Integer>,
        name -> Text,
        weight -> Integer,
    }
}

/// A parent whose key is chosen in Rust, with a UNIQUE name and a version.
#[derive(Tracked, Queryable, Selectable, Clone, Debug, PartialEq)]
#[tracked(table = m_owners)]
#[diesel(table_name = m_owners)]
struct Owner {
    #[tracked(primary_key)]
    code: String,
    name: String,
    score: i32,
    #[tracked(version)]
    version: i32,
}

/// A parent with a generated key.
#[derive(Tracked, Queryable, Selectable, Clone, Debug, PartialEq)]
#[tracked(table = m_shelters)]
#[diesel(table_name = m_shelters)]
struct Shelter {
    #[tracked(generated)]
    id: i32,
    name: String,
    capacity: i32,
}

/// A child of both: a NOT NULL foreign key to `Owner`, a nullable one to `Shelter`.
#[derive(Tracked, Queryable, Selectable, Clone, Debug, PartialEq)]
#[tracked(
    table = m_pets,
    belongs_to(Owner, foreign_key = owner_code),
    belongs_to(Shelter, foreign_key = shelter_id)
)]
#[diesel(table_name = m_pets)]
struct Pet {
    #[tracked(generated)]
    id: i32,
    owner_code: String,
    shelter_id: Option<i32>,
    name: String,
    weight: i32,
}

// ---------------------------------------------------------------------------------------------
// Schema and reading rows back with plain Diesel
// ---------------------------------------------------------------------------------------------

fn create_tables<C: TestBackend>(conn: &mut C) -> Result<(), String> {
    // On SQLite a plain `INTEGER PRIMARY KEY` hands the largest id of a row deleted by a commit
    // to a row inserted later in the same commit, so a pet still pointing at a removed shelter
    // would silently point at a new one: shelters (which pets point at) never reuse ids, pets
    // (which nothing points at) do, which the identity map must cope with.
    let (serial, parent_serial, key, text) = match C::KIND {
        Kind::Sqlite => (
            "INTEGER PRIMARY KEY",
            "INTEGER PRIMARY KEY AUTOINCREMENT",
            "TEXT",
            "TEXT",
        ),
        Kind::Postgres => ("SERIAL PRIMARY KEY", "SERIAL PRIMARY KEY", "TEXT", "TEXT"),
        Kind::Mysql => (
            "INTEGER AUTO_INCREMENT PRIMARY KEY",
            "INTEGER AUTO_INCREMENT PRIMARY KEY",
            "VARCHAR(100)",
            "VARCHAR(100)",
        ),
    };
    let statements = [
        "DROP TABLE IF EXISTS m_pets".to_string(),
        "DROP TABLE IF EXISTS m_shelters".to_string(),
        "DROP TABLE IF EXISTS m_owners".to_string(),
        format!(
            "CREATE TABLE m_owners (code {key} PRIMARY KEY, name {text} NOT NULL UNIQUE, \
             score INTEGER NOT NULL, version INTEGER NOT NULL)"
        ),
        format!("CREATE TABLE m_shelters (id {parent_serial}, name {text} NOT NULL, capacity INTEGER NOT NULL)"),
        format!(
            "CREATE TABLE m_pets (id {serial}, owner_code {key} NOT NULL, shelter_id INTEGER, \
             name {text} NOT NULL, weight INTEGER NOT NULL, \
             FOREIGN KEY (owner_code) REFERENCES m_owners (code), \
             FOREIGN KEY (shelter_id) REFERENCES m_shelters (id))"
        ),
    ];
    for sql in &statements {
        conn.batch_execute(sql)
            .map_err(|e| format!("setup statement failed: {e}\n{sql}"))?;
    }
    // The model's predictions rest on the database enforcing the foreign keys.
    if conn
        .batch_execute("INSERT INTO m_pets (owner_code, name, weight) VALUES ('nobody', 'x', 1)")
        .is_ok()
    {
        return Err("the database accepted a pet without an owner: foreign keys are off".into());
    }
    Ok(())
}

#[derive(Debug, Default, PartialEq)]
struct Rows {
    owners: Vec<Owner>,
    shelters: Vec<Shelter>,
    pets: Vec<Pet>,
}

/// Every row of the model's tables, sorted by key (in Rust: collations differ).
trait ModelRows {
    fn model_rows(&mut self) -> Result<Rows, String>;
}

macro_rules! model_rows_for {
    ($($feature:literal => $conn:ty),*) => {$(
        #[cfg(feature = $feature)]
        impl ModelRows for $conn {
            fn model_rows(&mut self) -> Result<Rows, String> {
                let mut owners: Vec<Owner> = m_owners::table
                    .select(Owner::as_select())
                    .load(self)
                    .map_err(|e| format!("reading m_owners failed: {e}"))?;
                let mut shelters: Vec<Shelter> = m_shelters::table
                    .select(Shelter::as_select())
                    .load(self)
                    .map_err(|e| format!("reading m_shelters failed: {e}"))?;
                let mut pets: Vec<Pet> = m_pets::table
                    .select(Pet::as_select())
                    .load(self)
                    .map_err(|e| format!("reading m_pets failed: {e}"))?;
                owners.sort_by(|a, b| a.code.cmp(&b.code));
                shelters.sort_by_key(|s| s.id);
                pets.sort_by_key(|p| p.id);
                Ok(Rows { owners, shelters, pets })
            }
        }
    )*};
}
model_rows_for!("sqlite" => diesel::SqliteConnection, "postgres" => diesel::PgConnection, "mysql" => diesel::MysqlConnection);
#[cfg(feature = "async")]
model_rows_for!(
    "sqlite" => common::on_async::AsyncConnectionWrapper<
        diesel_async::sync_connection_wrapper::SyncConnectionWrapper<diesel::SqliteConnection>,
    >,
    "postgres" => common::on_async::AsyncConnectionWrapper<diesel_async::AsyncPgConnection>,
    "mysql" => common::on_async::AsyncConnectionWrapper<diesel_async::AsyncMysqlConnection>,
    "sqlite" => common::on_async::AsyncConnectionWrapper<
        &'_ mut diesel_async::sync_connection_wrapper::SyncConnectionWrapper<diesel::SqliteConnection>,
    >,
    "postgres" => common::on_async::AsyncConnectionWrapper<&'_ mut diesel_async::AsyncPgConnection>,
    "mysql" => common::on_async::AsyncConnectionWrapper<&'_ mut diesel_async::AsyncMysqlConnection>
);

// ---------------------------------------------------------------------------------------------
// Seeded randomness and configuration
// ---------------------------------------------------------------------------------------------

/// splitmix64.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick(&mut self) -> u32 {
        self.next_u64() as u32
    }

    fn range(&mut self, low: i32, high: i32) -> i32 {
        low + self.below((high - low + 1) as u64) as i32
    }
}

struct Config {
    seed: u64,
    steps: usize,
    time: Duration,
    shrink_time: Duration,
}

fn env_var<T: std::str::FromStr>(name: &str) -> Option<T> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse() {
        Ok(v) => Some(v),
        Err(_) => panic!("{name}={value:?} is not a valid number"),
    }
}

impl Config {
    fn from_env(backend: &str) -> Config {
        let seed = env_var::<u64>("UOW_MODEL_SEED").unwrap_or_else(|| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            let mut mix = nanos ^ ((std::process::id() as u64) << 32);
            for b in backend.bytes() {
                mix = mix.rotate_left(8) ^ b as u64;
            }
            // Short seeds are easier to copy; 48 bits are plenty.
            Rng(mix).next_u64() & 0xFFFF_FFFF_FFFF
        });
        Config {
            seed,
            steps: env_var("UOW_MODEL_STEPS").unwrap_or(1500),
            time: Duration::from_secs_f64(env_var("UOW_MODEL_SECONDS").unwrap_or(8.0)),
            shrink_time: Duration::from_secs_f64(
                env_var("UOW_MODEL_SHRINK_SECONDS").unwrap_or(10.0),
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

/// Targets are `u32` picks, resolved modulo the candidates at the time the operation runs, so
/// that any subsequence of a recorded run is still a valid run (for shrinking).
#[derive(Clone, Debug)]
enum Op {
    NewOwner {
        code: u32,
        name: Name,
        score: i32,
        version: i32,
    },
    RenameOwner {
        owner: u32,
        name: Name,
    },
    /// `None`: back to the persisted score; `typed`: through `entities_mut`; with `every`,
    /// through its `iter_mut`, which borrows every held owner and changes only this one.
    ScoreOwner {
        owner: u32,
        score: Option<i32>,
        typed: bool,
        every: bool,
    },
    /// Changes the key of a new owner (children linked to it must follow at commit).
    /// With `swap`, two new owners exchange their codes instead (each one's children must
    /// follow it, not the code).
    RekeyNewOwner {
        owner: u32,
        code: u32,
        swap: Option<u32>,
    },
    RemoveOwner {
        owner: u32,
    },
    UnremoveOwner {
        owner: u32,
    },
    NewShelter {
        name: u32,
        capacity: i32,
    },
    /// `None`: back to the persisted capacity.
    EditShelter {
        shelter: u32,
        capacity: Option<i32>,
    },
    RemoveShelter {
        shelter: u32,
    },
    UnremoveShelter {
        shelter: u32,
    },
    /// `direct`: with a persisted owner (and shelter), write its key into the field instead of
    /// calling `set_parent`.
    NewPet {
        name: u32,
        weight: i32,
        owner: u32,
        shelter: Option<u32>,
        direct: bool,
        prefer_new: bool,
    },
    /// `prefer_new`: a persisted pet to a new owner, when there are such.
    MovePet {
        pet: u32,
        owner: u32,
        prefer_new: bool,
    },
    /// `prefer_new`: a persisted pet to a new shelter, when there are such.
    ShelterPet {
        pet: u32,
        shelter: u32,
        prefer_new: bool,
    },
    /// `set_parent` of every pet of an owner registered for removal to another owner.
    MoveChildren {
        from: u32,
        to: u32,
        prefer_new: bool,
    },
    UnshelterPet {
        pet: u32,
    },
    /// `weight: None`: back to the persisted weight; `typed`: through `entities_mut`.
    EditPet {
        pet: u32,
        weight: Option<i32>,
        name: Option<u32>,
        typed: bool,
    },
    RemovePet {
        pet: u32,
    },
    UnremovePet {
        pet: u32,
    },
    /// `refresh` of a persisted owner (0), shelter (1) or pet (2): local changes, removal
    /// and pending links are dropped, the row is read again.
    Refresh {
        kind: u8,
        pick: u32,
    },
    /// `load` of a held owner (0) or pet (1): the held handle, no change; of a key no row has
    /// (2): `NotFound`.
    Load {
        kind: u8,
        pick: u32,
    },
    /// `set_parent` to an owner registered for removal: `AlreadyRemoved`, nothing changes.
    LinkToRemoved {
        pet: u32,
        owner: u32,
    },
    /// A change that makes the next commit fail on a constraint.
    Break {
        kind: BreakKind,
        a: u32,
        b: u32,
    },
    /// A persisted key or version changed by hand, a commit (refused), the change undone.
    Misuse {
        kind: MisuseKind,
        owner: u32,
        code: u32,
    },
    /// Undoes whatever makes the next commit fail (or its outcome uncertain).
    Repair {
        choice: u32,
    },
    Commit,
    /// A fresh unit of work, loaded from the database; with an odd `dirty`, some rows are
    /// registered with `register_dirty` instead.
    Reload {
        dirty: u32,
    },
    /// `uow.transaction(..)`: `pre`, a flush, `post`, then `Ok` or `Err`.
    Scope {
        pre: Vec<Op>,
        flush: bool,
        keep_going_after_failed_flush: bool,
        post: Vec<Op>,
        rollback: bool,
    },
    /// `scope.nested(..)` inside a scope.
    Nested {
        ops: Vec<Op>,
        flush: bool,
        rollback: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum NameKind {
    Fresh,
    /// The persisted name (for a rename).
    Back,
    /// The persisted name of an owner registered for removal: freed by the commit's DELETE.
    Freed,
    /// The name another owner has: the commit must fail.
    Taken,
}

#[derive(Clone, Copy, Debug)]
struct Name {
    kind: NameKind,
    fresh: u32,
    pick: u32,
}

#[derive(Clone, Copy, Debug)]
enum BreakKind {
    DuplicateName,
    RemoveOwnerOfPet,
    RemoveShelterOfPet,
}

#[derive(Clone, Copy, Debug)]
enum MisuseKind {
    KeyChange,
    VersionChange,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    Skipped,
    Done,
    WriteOk,
    WriteFailed,
}

/// Generates operations, weighted by what the model holds.
struct Gen {
    rng: Rng,
    fresh: u32,
}

#[derive(Clone, Copy)]
enum K {
    NewOwner,
    RenameOwner,
    ScoreOwner,
    RekeyNewOwner,
    RemoveOwner,
    UnremoveOwner,
    NewShelter,
    EditShelter,
    RemoveShelter,
    UnremoveShelter,
    NewPet,
    MovePet,
    ShelterPet,
    UnshelterPet,
    EditPet,
    RemovePet,
    UnremovePet,
    LinkToRemoved,
    Refresh,
    Load,
    Break,
    Misuse,
    Repair,
    Commit,
    Reload,
    Scope,
    Nested,
}

impl Gen {
    fn fresh(&mut self) -> u32 {
        self.fresh += 1;
        self.fresh
    }

    fn name(&mut self, rename: bool) -> Name {
        let r = self.rng.below(100);
        let kind = if rename {
            match r {
                0..=54 => NameKind::Fresh,
                55..=74 => NameKind::Back,
                75..=94 => NameKind::Freed,
                _ => NameKind::Taken,
            }
        } else {
            match r {
                0..=74 => NameKind::Fresh,
                75..=97 => NameKind::Freed,
                _ => NameKind::Taken,
            }
        };
        Name {
            kind,
            fresh: self.fresh(),
            pick: self.rng.pick(),
        }
    }

    /// A short script for a case that random operations reach too rarely; its operations
    /// are ordinary ones (recorded and replayed like any other).
    fn burst(&mut self) -> Vec<Op> {
        let r = &mut self.rng;
        let (a, b, c) = (r.pick(), r.pick(), r.pick());
        match r.below(3) {
            // Children linked to a new owner whose key then changes (once or twice), or to
            // two new owners that then swap their keys.
            0 => {
                let two = self.rng.chance(35);
                let mut ops = Vec::new();
                for _ in 0..1 + two as usize {
                    let code = self.fresh();
                    ops.push(Op::NewOwner {
                        code,
                        name: self.name(false),
                        score: self.rng.range(0, 99),
                        version: self.rng.range(0, 3),
                    });
                }
                for _ in 0..1 + self.rng.below(3) + 2 * two as u64 {
                    let owner = if two { self.rng.pick() } else { a };
                    ops.push(if self.rng.chance(50) {
                        Op::MovePet {
                            pet: self.rng.pick(),
                            owner,
                            prefer_new: true,
                        }
                    } else {
                        Op::NewPet {
                            name: self.fresh(),
                            weight: self.rng.range(1, 50),
                            owner,
                            shelter: None,
                            direct: false,
                            prefer_new: true,
                        }
                    });
                }
                let rekeys = if two { 1 } else { 1 + self.rng.below(2) };
                for _ in 0..rekeys {
                    ops.push(Op::RekeyNewOwner {
                        owner: b,
                        code: self.fresh(),
                        swap: two.then_some(c),
                    });
                }
                ops.push(Op::Commit);
                ops
            }
            // A removed owner's name taken by another row, its pets moved away.
            1 => {
                let name = Name {
                    kind: NameKind::Freed,
                    fresh: self.fresh(),
                    pick: c,
                };
                let take = if self.rng.chance(50) {
                    Op::RenameOwner { owner: b, name }
                } else {
                    Op::NewOwner {
                        code: self.fresh(),
                        name,
                        score: 1,
                        version: 1,
                    }
                };
                vec![
                    Op::RemoveOwner { owner: a },
                    take,
                    Op::MoveChildren {
                        from: a,
                        to: b,
                        prefer_new: self.rng.chance(50),
                    },
                    Op::Commit,
                ]
            }
            // Persisted pets moved to a new shelter.
            _ => vec![
                Op::NewShelter {
                    name: self.fresh(),
                    capacity: 3,
                },
                Op::ShelterPet {
                    pet: a,
                    shelter: b,
                    prefer_new: true,
                },
                Op::ShelterPet {
                    pet: c,
                    shelter: b,
                    prefer_new: true,
                },
                Op::Commit,
            ],
        }
    }

    /// One operation; `depth` 0 is the top level, 1 inside a scope, 2 inside a nested scope.
    fn op(&mut self, m: &Model, depth: u8) -> Op {
        let owners = m.owners.iter().flatten();
        let live_owners = owners.clone().filter(|o| !o.removed).count();
        let new_owners = owners.clone().filter(|o| o.committed.is_none()).count();
        let removed_owners = owners.filter(|o| o.removed).count();
        let shelters = m.shelters.iter().flatten();
        let live_shelters = shelters.clone().filter(|s| !s.removed).count();
        let removed_shelters = shelters.filter(|s| s.removed).count();
        let pets = m.pets.iter().flatten();
        let live_pets = pets.clone().filter(|p| !p.removed).count();
        let removed_pets = pets.filter(|p| p.removed).count();
        let when = |cond: bool, w: u64| if cond { w } else { 0 };
        let table = [
            (
                match live_owners {
                    0..=3 => 20,
                    4..=24 => 7,
                    _ => 1,
                },
                K::NewOwner,
            ),
            (when(live_owners > 0, 6), K::RenameOwner),
            (when(live_owners > 0, 4), K::ScoreOwner),
            (when(new_owners > 0, 9), K::RekeyNewOwner),
            (when(live_owners > 0, 3), K::RemoveOwner),
            (when(removed_owners > 0, 3), K::UnremoveOwner),
            (
                match live_shelters {
                    0..=1 => 6,
                    2..=9 => 3,
                    _ => 1,
                },
                K::NewShelter,
            ),
            (when(live_shelters > 0, 2), K::EditShelter),
            (when(live_shelters > 0, 2), K::RemoveShelter),
            (when(removed_shelters > 0, 2), K::UnremoveShelter),
            (
                when(live_owners > 0, if live_pets < 40 { 12 } else { 2 }),
                K::NewPet,
            ),
            (when(live_pets > 0, 9), K::MovePet),
            (when(live_pets > 0 && live_shelters > 0, 4), K::ShelterPet),
            (when(live_pets > 0, 2), K::UnshelterPet),
            (when(live_pets > 0, 5), K::EditPet),
            (
                when(live_pets > 0, if live_pets < 40 { 4 } else { 12 }),
                K::RemovePet,
            ),
            (when(removed_pets > 0, 2), K::UnremovePet),
            (
                when(removed_owners > 0 && live_pets > 0, 1),
                K::LinkToRemoved,
            ),
            (2, K::Refresh),
            (2, K::Load),
            (when(depth == 0, 3) + when(depth > 0, 1), K::Break),
            (1, K::Misuse),
            (when(depth == 0, 2), K::Repair),
            (when(depth == 0, 14), K::Commit),
            (when(depth == 0, 2), K::Reload),
            (when(depth == 0, 5), K::Scope),
            (when(depth == 1, 3), K::Nested),
        ];
        let total: u64 = table.iter().map(|(w, _)| w).sum();
        let mut roll = self.rng.below(total);
        let mut kind = K::Commit;
        for (w, k) in table {
            if roll < w {
                kind = k;
                break;
            }
            roll -= w;
        }
        let r = &mut self.rng;
        match kind {
            K::NewOwner => {
                let code = self.fresh();
                let name = self.name(false);
                Op::NewOwner {
                    code,
                    name,
                    score: self.rng.range(0, 99),
                    version: self.rng.range(0, 3),
                }
            }
            K::RenameOwner => Op::RenameOwner {
                owner: r.pick(),
                name: self.name(true),
            },
            K::ScoreOwner => Op::ScoreOwner {
                owner: r.pick(),
                score: (!r.chance(30)).then(|| r.range(0, 99)),
                typed: r.chance(30),
                every: r.chance(50),
            },
            K::RekeyNewOwner => Op::RekeyNewOwner {
                owner: r.pick(),
                swap: r.chance(20).then(|| r.pick()),
                code: self.fresh(),
            },
            K::RemoveOwner => Op::RemoveOwner { owner: r.pick() },
            K::UnremoveOwner => Op::UnremoveOwner { owner: r.pick() },
            K::NewShelter => Op::NewShelter {
                name: self.fresh(),
                capacity: self.rng.range(1, 20),
            },
            K::EditShelter => Op::EditShelter {
                shelter: r.pick(),
                capacity: (!r.chance(30)).then(|| r.range(1, 20)),
            },
            K::RemoveShelter => Op::RemoveShelter { shelter: r.pick() },
            K::UnremoveShelter => Op::UnremoveShelter { shelter: r.pick() },
            K::NewPet => {
                let name = self.fresh();
                let r = &mut self.rng;
                Op::NewPet {
                    name,
                    weight: r.range(1, 50),
                    owner: r.pick(),
                    shelter: r.chance(40).then(|| r.pick()),
                    direct: r.chance(25),
                    prefer_new: r.chance(50),
                }
            }
            K::MovePet => Op::MovePet {
                pet: r.pick(),
                owner: r.pick(),
                prefer_new: r.chance(50),
            },
            K::ShelterPet => Op::ShelterPet {
                pet: r.pick(),
                shelter: r.pick(),
                prefer_new: r.chance(50),
            },
            K::UnshelterPet => Op::UnshelterPet { pet: r.pick() },
            K::EditPet => {
                let pet = r.pick();
                let weight = (!r.chance(30)).then(|| r.range(1, 50));
                let rename = r.chance(30);
                let typed = r.chance(30);
                Op::EditPet {
                    pet,
                    weight,
                    name: rename.then(|| self.fresh()),
                    typed,
                }
            }
            K::RemovePet => Op::RemovePet { pet: r.pick() },
            K::UnremovePet => Op::UnremovePet { pet: r.pick() },
            K::LinkToRemoved => Op::LinkToRemoved {
                pet: r.pick(),
                owner: r.pick(),
            },
            K::Refresh => Op::Refresh {
                kind: r.below(3) as u8,
                pick: r.pick(),
            },
            K::Load => Op::Load {
                kind: r.below(3) as u8,
                pick: r.pick(),
            },
            K::Break => Op::Break {
                kind: match r.below(3) {
                    0 => BreakKind::DuplicateName,
                    1 => BreakKind::RemoveOwnerOfPet,
                    _ => BreakKind::RemoveShelterOfPet,
                },
                a: r.pick(),
                b: r.pick(),
            },
            K::Misuse => Op::Misuse {
                kind: if r.chance(50) {
                    MisuseKind::KeyChange
                } else {
                    MisuseKind::VersionChange
                },
                owner: r.pick(),
                code: self.fresh(),
            },
            K::Repair => Op::Repair { choice: r.pick() },
            K::Commit => Op::Commit,
            K::Reload => Op::Reload { dirty: r.pick() },
            K::Scope => {
                let pre_len = self.rng.below(6);
                let pre = (0..pre_len).map(|_| self.op(m, 1)).collect();
                let flush = self.rng.chance(75);
                let keep_going_after_failed_flush = self.rng.chance(40);
                let post_len = self.rng.below(4);
                let post = (0..post_len).map(|_| self.op(m, 1)).collect();
                Op::Scope {
                    pre,
                    flush,
                    keep_going_after_failed_flush,
                    post,
                    rollback: self.rng.chance(35),
                }
            }
            K::Nested => {
                let len = 1 + self.rng.below(3);
                let ops = (0..len).map(|_| self.op(m, 2)).collect();
                Op::Nested {
                    ops,
                    flush: self.rng.chance(50),
                    rollback: self.rng.chance(50),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct MOwner {
    h: Handle<Owner>,
    /// What `uow.get` must return.
    val: Owner,
    /// The row in the database; `None` while new.
    committed: Option<Owner>,
    removed: bool,
    /// Registered with `register_dirty`: every updatable column is written.
    all: bool,
}

#[derive(Clone, Debug)]
struct MShelter {
    h: Handle<Shelter>,
    val: Shelter,
    committed: Option<Shelter>,
    removed: bool,
    /// Registered with `register_dirty`: every updatable column is written.
    all: bool,
}

#[derive(Clone, Debug)]
struct MPet {
    h: Handle<Pet>,
    /// Name and weight as they must be in memory; the foreign keys follow `owner`/`shelter`.
    val: Pet,
    /// Model index of the owner the pet points at.
    owner: usize,
    /// When linked to a new owner: that owner's code when `set_parent` ran.
    link_code: Option<String>,
    /// Model index of the shelter, if any.
    shelter: Option<usize>,
    committed: Option<Pet>,
    removed: bool,
    /// Registered with `register_dirty`: every updatable column is written.
    all: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum AnyHandle {
    Owner(Handle<Owner>),
    Shelter(Handle<Shelter>),
    Pet(Handle<Pet>),
}

/// Entities by model index (never reused); `None` once deleted by a commit or dropped.
#[derive(Clone, Default)]
struct Model {
    owners: Vec<Option<MOwner>>,
    shelters: Vec<Option<MShelter>>,
    pets: Vec<Option<MPet>>,
    /// Handles that must be stale.
    stale: Vec<AnyHandle>,
}

#[derive(Clone, Debug, PartialEq)]
enum Expect {
    Ok,
    Fail(String),
    Either(String),
}

/// Rows inserted, updated, deleted per table.
#[derive(Debug, PartialEq, Default)]
struct Counts {
    owners: (usize, usize, usize),
    shelters: (usize, usize, usize),
    pets: (usize, usize, usize),
}

/// The candidates for which `preferred` holds, if asked and there are any; else all of them.
fn prefer(asked: bool, candidates: Vec<usize>, preferred: impl Fn(usize) -> bool) -> Vec<usize> {
    if !asked {
        return candidates;
    }
    let narrowed: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&i| preferred(i))
        .collect();
    if narrowed.is_empty() {
        candidates
    } else {
        narrowed
    }
}

fn pick(candidates: &[usize], p: u32) -> Option<usize> {
    if candidates.is_empty() {
        None
    } else {
        Some(candidates[p as usize % candidates.len()])
    }
}

impl Model {
    fn owner(&self, i: usize) -> Option<&MOwner> {
        self.owners.get(i).and_then(Option::as_ref)
    }

    fn shelter(&self, i: usize) -> Option<&MShelter> {
        self.shelters.get(i).and_then(Option::as_ref)
    }

    fn pet(&self, i: usize) -> Option<&MPet> {
        self.pets.get(i).and_then(Option::as_ref)
    }

    fn live_owner(&self, i: usize) -> bool {
        self.owner(i).is_some_and(|o| !o.removed)
    }

    fn live_shelter(&self, i: usize) -> bool {
        self.shelter(i).is_some_and(|s| !s.removed)
    }

    fn owners_where(&self, f: impl Fn(usize, &MOwner) -> bool) -> Vec<usize> {
        (0..self.owners.len())
            .filter(|&i| self.owner(i).is_some_and(|o| f(i, o)))
            .collect()
    }

    fn shelters_where(&self, f: impl Fn(usize, &MShelter) -> bool) -> Vec<usize> {
        (0..self.shelters.len())
            .filter(|&i| self.shelter(i).is_some_and(|s| f(i, s)))
            .collect()
    }

    fn pets_where(&self, f: impl Fn(usize, &MPet) -> bool) -> Vec<usize> {
        (0..self.pets.len())
            .filter(|&i| self.pet(i).is_some_and(|p| f(i, p)))
            .collect()
    }

    /// Whether a pet that is not removed points at owner `i` / shelter `i`.
    fn owner_has_live_pets(&self, i: usize) -> bool {
        self.pets
            .iter()
            .flatten()
            .any(|p| !p.removed && p.owner == i)
    }

    fn shelter_has_live_pets(&self, i: usize) -> bool {
        self.pets
            .iter()
            .flatten()
            .any(|p| !p.removed && p.shelter == Some(i))
    }

    fn all_handles(&self) -> Vec<AnyHandle> {
        let mut out: Vec<AnyHandle> = Vec::new();
        out.extend(self.owners.iter().flatten().map(|o| AnyHandle::Owner(o.h)));
        out.extend(
            self.shelters
                .iter()
                .flatten()
                .map(|s| AnyHandle::Shelter(s.h)),
        );
        out.extend(self.pets.iter().flatten().map(|p| AnyHandle::Pet(p.h)));
        out
    }

    fn held(&self) -> usize {
        self.owners.iter().flatten().count()
            + self.shelters.iter().flatten().count()
            + self.pets.iter().flatten().count()
    }

    fn describe_owner(&self, i: usize) -> String {
        match self.owner(i) {
            Some(o) if o.committed.is_none() => format!("owner#{i}({}, new)", o.val.code),
            Some(o) => format!("owner#{i}({})", o.val.code),
            None => format!("owner#{i}(gone)"),
        }
    }

    fn describe_shelter(&self, i: usize) -> String {
        match self.shelter(i) {
            Some(s) if s.committed.is_none() => format!("shelter#{i}(new)"),
            Some(s) => format!("shelter#{i}(id {})", s.val.id),
            None => format!("shelter#{i}(gone)"),
        }
    }

    fn describe_pet(&self, i: usize) -> String {
        match self.pet(i) {
            Some(p) if p.committed.is_none() => format!("pet#{i}(new)"),
            Some(p) => format!("pet#{i}(id {})", p.val.id),
            None => format!("pet#{i}(gone)"),
        }
    }

    fn owner_changed(&self, o: &MOwner) -> Vec<&'static str> {
        let mut cols = Vec::new();
        if let (Some(c), false) = (&o.committed, o.removed) {
            if o.all {
                return vec!["name", "score"];
            }
            if o.val.name != c.name {
                cols.push("name");
            }
            if o.val.score != c.score {
                cols.push("score");
            }
        }
        cols
    }

    fn shelter_changed(&self, s: &MShelter) -> Vec<&'static str> {
        let mut cols = Vec::new();
        if let (Some(c), false) = (&s.committed, s.removed) {
            if s.all {
                return vec!["name", "capacity"];
            }
            if s.val.name != c.name {
                cols.push("name");
            }
            if s.val.capacity != c.capacity {
                cols.push("capacity");
            }
        }
        cols
    }

    /// The columns the next commit UPDATEs for a persisted pet; a link to a new parent always
    /// changes the foreign key (new keys are never those of persisted rows).
    fn pet_changed(&self, p: &MPet) -> Vec<&'static str> {
        let mut cols = Vec::new();
        if let (Some(c), false) = (&p.committed, p.removed) {
            if p.all {
                return vec!["owner_code", "shelter_id", "name", "weight"];
            }
            let owner_differs = match self.owner(p.owner) {
                Some(o) if o.committed.is_some() => o.val.code != c.owner_code,
                _ => true,
            };
            let shelter_differs = match p.shelter {
                None => c.shelter_id.is_some(),
                Some(s) => match self.shelter(s) {
                    Some(s) if s.committed.is_some() => Some(s.val.id) != c.shelter_id,
                    _ => true,
                },
            };
            if owner_differs {
                cols.push("owner_code");
            }
            if shelter_differs {
                cols.push("shelter_id");
            }
            if p.val.name != c.name {
                cols.push("name");
            }
            if p.val.weight != c.weight {
                cols.push("weight");
            }
        }
        cols
    }

    fn state_of(committed: bool, removed: bool, changed: &[&str]) -> EntityState {
        match (committed, removed) {
            (false, _) => EntityState::New,
            (true, true) => EntityState::Removed,
            (true, false) if changed.is_empty() => EntityState::Clean,
            (true, false) => EntityState::Dirty,
        }
    }

    /// What `uow.get` must return for a pet, and whether each foreign key can be known before
    /// the commit: the key of a new shelter is not, nor the code of a new owner changed since
    /// `set_parent` (what the child holds then is unspecified until the commit).
    fn expected_pet(&self, p: &MPet) -> (Pet, bool, bool) {
        let mut v = p.val.clone();
        let mut owner_known = true;
        let mut shelter_known = true;
        match self.owner(p.owner) {
            Some(o) if o.committed.is_some() => v.owner_code = o.val.code.clone(),
            Some(o) => match &p.link_code {
                Some(code) if *code == o.val.code => v.owner_code = code.clone(),
                _ => owner_known = false,
            },
            None => owner_known = false,
        }
        match p.shelter {
            None => v.shelter_id = None,
            Some(s) => match self.shelter(s) {
                Some(s) if s.committed.is_some() => v.shelter_id = Some(s.val.id),
                _ => shelter_known = false,
            },
        }
        (v, owner_known, shelter_known)
    }

    fn any_pending(&self) -> bool {
        self.owners
            .iter()
            .flatten()
            .any(|o| o.committed.is_none() || o.removed || !self.owner_changed(o).is_empty())
            || self
                .shelters
                .iter()
                .flatten()
                .any(|s| s.committed.is_none() || s.removed || !self.shelter_changed(s).is_empty())
            || self
                .pets
                .iter()
                .flatten()
                .any(|p| p.committed.is_none() || p.removed || !self.pet_changed(p).is_empty())
    }

    fn counts(&self) -> Counts {
        fn count<'a, T: 'a>(
            items: impl Iterator<Item = &'a T> + Clone,
            new: impl Fn(&T) -> bool,
            removed: impl Fn(&T) -> bool,
            dirty: impl Fn(&T) -> bool,
        ) -> (usize, usize, usize) {
            (
                items.clone().filter(|x| new(*x)).count(),
                items
                    .clone()
                    .filter(|x| !new(*x) && !removed(*x) && dirty(*x))
                    .count(),
                items.filter(|x| !new(*x) && removed(*x)).count(),
            )
        }
        Counts {
            owners: count(
                self.owners.iter().flatten(),
                |o| o.committed.is_none(),
                |o| o.removed,
                |o| !self.owner_changed(o).is_empty(),
            ),
            shelters: count(
                self.shelters.iter().flatten(),
                |s| s.committed.is_none(),
                |s| s.removed,
                |s| !self.shelter_changed(s).is_empty(),
            ),
            pets: count(
                self.pets.iter().flatten(),
                |p| p.committed.is_none(),
                |p| p.removed,
                |p| !self.pet_changed(p).is_empty(),
            ),
        }
    }

    /// Whether owner `i` (live) takes a name that a persisted owner registered for removal
    /// frees in this commit.
    fn takes_freed_name(&self, i: usize) -> bool {
        let Some(o) = self.owner(i) else { return false };
        self.owners
            .iter()
            .flatten()
            .any(|s| s.removed && s.committed.as_ref().is_some_and(|c| c.name == o.val.name))
    }

    /// The outcome of writing everything pending now.
    fn predict(&self) -> Expect {
        let live = self.owners_where(|_, o| !o.removed);
        let mut names: HashMap<&str, usize> = HashMap::new();
        for &i in &live {
            let name = self.owners[i].as_ref().map_or("", |o| o.val.name.as_str());
            if let Some(j) = names.insert(name, i) {
                return Expect::Fail(format!(
                    "owners #{j} and #{i} would both be named {name:?} (UNIQUE)"
                ));
            }
        }
        for (i, p) in self.pets.iter().enumerate() {
            let Some(p) = p else { continue };
            if p.removed {
                continue;
            }
            if !self.live_owner(p.owner) {
                return Expect::Fail(format!(
                    "pet #{i} would point at {} which is removed or gone (FOREIGN KEY)",
                    self.describe_owner(p.owner)
                ));
            }
            if let Some(s) = p.shelter {
                if !self.live_shelter(s) {
                    return Expect::Fail(format!(
                        "pet #{i} would point at {} which is removed or gone (FOREIGN KEY)",
                        self.describe_shelter(s)
                    ));
                }
            }
        }
        // Orders the library does not promise: a name handed between two rows that both stay
        // (UPDATE before UPDATE/INSERT), and a DELETE that frees a name for a new owner while
        // waiting for a pet that moves to a new owner taking a freed name (possibly a cycle).
        for &i in &live {
            let Some(o) = self.owner(i) else { continue };
            for &j in &live {
                let Some(other) = self.owner(j) else { continue };
                if j != i
                    && other
                        .committed
                        .as_ref()
                        .is_some_and(|c| c.name == o.val.name)
                    && other.val.name != o.val.name
                {
                    return Expect::Either(format!(
                        "owner #{i} takes the name {:?} that owner #{j} gives up in the same commit",
                        o.val.name
                    ));
                }
            }
        }
        for (i, p) in self.pets.iter().enumerate() {
            let Some(p) = p else { continue };
            let (Some(c), false) = (&p.committed, p.removed) else {
                continue;
            };
            let old_owner_deleted = self.owners.iter().flatten().any(|o| {
                o.removed
                    && o.committed
                        .as_ref()
                        .is_some_and(|oc| oc.code == c.owner_code)
            });
            let new_owner_takes_freed = self.owner(p.owner).is_some_and(|o| o.committed.is_none())
                && self.takes_freed_name(p.owner);
            if old_owner_deleted && new_owner_takes_freed {
                return Expect::Either(format!(
                    "pet #{i} leaves a deleted owner for a new owner that takes a freed name"
                ));
            }
        }
        Expect::Ok
    }

    /// The rows the database must hold (committed values), sorted like `model_rows`.
    fn expected_rows(&self) -> Rows {
        let mut rows = Rows {
            owners: self
                .owners
                .iter()
                .flatten()
                .filter_map(|o| o.committed.clone())
                .collect(),
            shelters: self
                .shelters
                .iter()
                .flatten()
                .filter_map(|s| s.committed.clone())
                .collect(),
            pets: self
                .pets
                .iter()
                .flatten()
                .filter_map(|p| p.committed.clone())
                .collect(),
        };
        rows.owners.sort_by(|a, b| a.code.cmp(&b.code));
        rows.shelters.sort_by_key(|s| s.id);
        rows.pets.sort_by_key(|p| p.id);
        rows
    }
}

/// The runner, expanded in each test module so that `UnitOfWork`, `Scope` and
/// `uow::transaction` are that module's (synchronous, or the async driver's):
/// `$def_bound` is what `UnitOfWork<C>` needs of `C` there, `$use_bound` the same in bounds
/// that also name `C::Backend` (`Sized` where `Connection` says it already).
macro_rules! model_runner {
    () => {
// ---------------------------------------------------------------------------------------------
// Where operations run: the top level (commit) or a scope (flush)
// ---------------------------------------------------------------------------------------------

trait Session<C: UowDef> {
    fn uow(&mut self) -> &mut CoreUow<C>;
    fn uow_ref(&self) -> &CoreUow<C>;
    /// Every row of the model's tables, read on the session's connection.
    fn rows(&mut self) -> Result<Rows, String>;
    /// `commit` at the top level, `flush` inside a scope.
    fn write(&mut self) -> uow::Result<CommitReport>;
    fn refresh_any(&mut self, h: AnyHandle) -> uow::Result<()>;
    fn load_owner(&mut self, code: String) -> uow::Result<Handle<Owner>>;
    fn load_pet(&mut self, id: i32) -> uow::Result<Handle<Pet>>;
}

struct Top<'a, C: UowDef> {
    uow: &'a mut UnitOfWork<C>,
    conn: &'a mut C,
}

impl<C> Session<C> for Top<'_, C>
where
    C: Connection + diesel::connection::LoadConnection + ModelRows + UowConn + 'static,
    <C as Connection>::Backend: uow::Dialect,
    Owner: uow::Load<<C as Connection>::Backend>,
    Shelter: uow::Load<<C as Connection>::Backend>,
    Pet: uow::Load<<C as Connection>::Backend>,
{
    fn uow(&mut self) -> &mut CoreUow<C> {
        self.uow
    }
    fn uow_ref(&self) -> &CoreUow<C> {
        self.uow
    }
    fn rows(&mut self) -> Result<Rows, String> {
        self.conn.model_rows()
    }
    fn write(&mut self) -> uow::Result<CommitReport> {
        self.uow.commit(self.conn)
    }
    fn refresh_any(&mut self, h: AnyHandle) -> uow::Result<()> {
        match h {
            AnyHandle::Owner(h) => self.uow.refresh(self.conn, &h),
            AnyHandle::Shelter(h) => self.uow.refresh(self.conn, &h),
            AnyHandle::Pet(h) => self.uow.refresh(self.conn, &h),
        }
    }
    fn load_owner(&mut self, code: String) -> uow::Result<Handle<Owner>> {
        self.uow.load(self.conn, code)
    }
    fn load_pet(&mut self, id: i32) -> uow::Result<Handle<Pet>> {
        self.uow.load(self.conn, id)
    }
}

impl<C> Session<C> for Scope<'_, C>
where
    C: Connection + diesel::connection::LoadConnection + UowConn + 'static,
    for<'x> Scope<'x, C>: ScopeRows,
    <C as Connection>::Backend: uow::Dialect,
    Owner: uow::Load<<C as Connection>::Backend>,
    Shelter: uow::Load<<C as Connection>::Backend>,
    Pet: uow::Load<<C as Connection>::Backend>,
{
    fn uow(&mut self) -> &mut CoreUow<C> {
        self
    }
    fn uow_ref(&self) -> &CoreUow<C> {
        self
    }
    fn rows(&mut self) -> Result<Rows, String> {
        ScopeRows::rows(self)
    }
    fn write(&mut self) -> uow::Result<CommitReport> {
        self.flush()
    }
    fn refresh_any(&mut self, h: AnyHandle) -> uow::Result<()> {
        match h {
            AnyHandle::Owner(h) => self.refresh(&h),
            AnyHandle::Shelter(h) => self.refresh(&h),
            AnyHandle::Pet(h) => self.refresh(&h),
        }
    }
    fn load_owner(&mut self, code: String) -> uow::Result<Handle<Owner>> {
        self.load(code)
    }
    fn load_pet(&mut self, id: i32) -> uow::Result<Handle<Pet>> {
        self.load(id)
    }
}

/// What a scope closure returns.
enum ScopeErr {
    /// The unit of work failed (the scope's final flush or COMMIT).
    Uow(uow::Error),
    /// The test asks for a rollback.
    Rollback,
    /// A check failed inside the scope.
    Fail(Failure),
}

impl From<uow::Error> for ScopeErr {
    fn from(e: uow::Error) -> Self {
        ScopeErr::Uow(e)
    }
}

#[derive(Clone, Debug)]
struct Failure {
    step: usize,
    kind: String,
    message: String,
}

type Check<T = ()> = Result<T, Failure>;

// ---------------------------------------------------------------------------------------------
// Running operations against the unit of work and the model
// ---------------------------------------------------------------------------------------------

struct Runner<C> {
    model: Model,
    log: Vec<String>,
    /// Operations run so far, inner ones included.
    step: usize,
    depth: usize,
    scope_expect: Option<Expect>,
    /// How often the interesting cases happened in successful writes (printed at the end).
    stats: std::collections::BTreeMap<&'static str, usize>,
    /// Every pet id ever assigned (SQLite reuses the largest id of a deleted row).
    pet_ids: HashSet<i32>,
    _conn: PhantomData<fn() -> C>,
}

impl<C> Runner<C>
where
    C: TestBackend + ModelRows + UowConn,
    for<'x> Scope<'x, C>: ScopeRows,
    <C as Connection>::Backend: uow::Dialect,
    Owner: uow::Load<<C as Connection>::Backend>,
    Shelter: uow::Load<<C as Connection>::Backend>,
    Pet: uow::Load<<C as Connection>::Backend>,
{
    fn new() -> Self {
        Runner {
            model: Model::default(),
            log: Vec::new(),
            step: 0,
            depth: 0,
            scope_expect: None,
            stats: Default::default(),
            pet_ids: HashSet::new(),
            _conn: PhantomData,
        }
    }

    fn note(&mut self, text: impl AsRef<str>) {
        let indent = "  ".repeat(self.depth);
        self.log
            .push(format!("step {:>4}: {indent}{}", self.step, text.as_ref()));
    }

    fn fail(&self, kind: &str, message: impl Into<String>) -> Failure {
        Failure {
            step: self.step,
            kind: kind.to_string(),
            message: message.into(),
        }
    }

    fn ok<T>(&self, result: uow::Result<T>, what: &str) -> Check<T> {
        result.map_err(|e| self.fail("unexpected-error", format!("{what} failed: {e}")))
    }

    // --- dispatch ------------------------------------------------------------------------

    fn apply_top(&mut self, uow: &mut UnitOfWork<C>, conn: &mut C, op: &Op) -> Check<Outcome> {
        self.step += 1;
        match op {
            Op::Scope { .. } => self.run_scope(uow, conn, op),
            Op::Reload { dirty } => self.reload(uow, conn, *dirty),
            Op::Nested { .. } => Ok(Outcome::Skipped),
            _ => self.apply(&mut Top { uow, conn }, op),
        }
    }

    fn apply_scoped(&mut self, s: &mut Scope<'_, C>, op: &Op) -> Check<Outcome> {
        self.step += 1;
        match op {
            Op::Nested { .. } => self.run_nested(s, op),
            Op::Scope { .. } | Op::Reload { .. } | Op::Commit | Op::Repair { .. } => {
                Ok(Outcome::Skipped)
            }
            _ => self.apply(s, op),
        }
    }

    fn apply(&mut self, s: &mut dyn Session<C>, op: &Op) -> Check<Outcome> {
        let outcome = self.apply_inner(s, op)?;
        if outcome != Outcome::Skipped {
            self.check_memory(s.uow())?;
        }
        Ok(outcome)
    }

    fn apply_inner(&mut self, s: &mut dyn Session<C>, op: &Op) -> Check<Outcome> {
        let m = &self.model;
        match *op {
            Op::NewOwner {
                code,
                name,
                score,
                version,
            } => {
                let name = self.resolve_name(&name, None);
                let owner = Owner {
                    code: format!("c{code}"),
                    name,
                    score,
                    version,
                };
                let h = self.ok(s.uow().register_new(owner.clone()), "register_new(Owner)")?;
                self.model.owners.push(Some(MOwner {
                    h,
                    val: owner.clone(),
                    committed: None,
                    removed: false,
                    all: false,
                }));
                self.note(format!(
                    "register_new owner#{} {owner:?}",
                    self.model.owners.len() - 1
                ));
            }
            Op::RenameOwner { owner, name } => {
                let Some(i) = pick(&m.owners_where(|_, _| true), owner) else {
                    return Ok(Outcome::Skipped);
                };
                let name = self.resolve_name(&name, Some(i));
                self.rename_owner(s, i, name)?;
            }
            Op::ScoreOwner {
                owner,
                score,
                typed,
                every,
            } => {
                let Some(i) = pick(&m.owners_where(|_, _| true), owner) else {
                    return Ok(Outcome::Skipped);
                };
                let o = m
                    .owner(i)
                    .ok_or_else(|| self.fail("model", "owner vanished"))?;
                let score = score
                    .or_else(|| o.committed.as_ref().map(|c| c.score))
                    .unwrap_or(0);
                let h = o.h;
                let set = |v: &mut Owner| v.score = score;
                if typed && every {
                    // Found by address: every other owner is borrowed and left as it was.
                    let target: *const Owner = self.ok(s.uow().get(&h), "get(Owner)")?;
                    let mut found = 0;
                    for v in s.uow().entities_mut::<Owner>().iter_mut() {
                        if std::ptr::eq(&*v, target) {
                            set(v);
                            found += 1;
                        }
                    }
                    if found != 1 {
                        return Err(
                            self.fail("iter_mut", format!("yielded the owner {found} times"))
                        );
                    }
                } else if typed {
                    self.ok(
                        s.uow().entities_mut::<Owner>().get_mut(&h).map(set),
                        "entities_mut::<Owner>().get_mut",
                    )?;
                } else {
                    self.ok(s.uow().get_mut(&h).map(set), "get_mut(Owner)")?;
                }
                self.owner_mut(i)?.val.score = score;
                self.note(format!(
                    "{}({}).score = {score}",
                    if typed && every {
                        "entities_mut().iter_mut"
                    } else if typed {
                        "entities_mut().get_mut"
                    } else {
                        "get_mut"
                    },
                    self.model.describe_owner(i)
                ));
            }
            Op::RekeyNewOwner { owner, code, swap } => {
                // Preferably one that pets were linked to.
                let owners = prefer(true, m.owners_where(|_, o| o.committed.is_none()), |i| {
                    m.pets.iter().flatten().any(|p| p.owner == i)
                });
                let Some(i) = pick(&owners, owner) else {
                    return Ok(Outcome::Skipped);
                };
                if let Some(other) = swap {
                    let others = m.owners_where(|j, o| j != i && o.committed.is_none());
                    let Some(j) = pick(&others, other) else {
                        return Ok(Outcome::Skipped);
                    };
                    let (a, b) = (m.owner(i), m.owner(j));
                    let (Some(a), Some(b)) = (a, b) else {
                        return Ok(Outcome::Skipped);
                    };
                    let (ha, hb) = (a.h, b.h);
                    let (code_a, code_b) = (a.val.code.clone(), b.val.code.clone());
                    let described = format!("{} and {}", m.describe_owner(i), m.describe_owner(j));
                    // For a moment both hold the same code; the unit of work refiles at commit.
                    self.ok(
                        s.uow().get_mut(&ha).map(|v| v.code = code_b.clone()),
                        "get_mut(Owner)",
                    )?;
                    self.ok(
                        s.uow().get_mut(&hb).map(|v| v.code = code_a.clone()),
                        "get_mut(Owner)",
                    )?;
                    self.owner_mut(i)?.val.code = code_b;
                    self.owner_mut(j)?.val.code = code_a;
                    self.note(format!("new owners {described} swap their codes"));
                    return Ok(Outcome::Done);
                }
                let code = format!("c{code}");
                let described = m.describe_owner(i);
                let h = self.owner_mut(i)?.h;
                self.ok(
                    s.uow().get_mut(&h).map(|v| v.code = code.clone()),
                    "get_mut(Owner)",
                )?;
                self.owner_mut(i)?.val.code = code.clone();
                self.note(format!("get_mut({described}).code = {code:?} (a new key)"));
            }
            Op::RemoveOwner { owner } => {
                let candidates = m.owners_where(|i, o| {
                    !o.removed && (o.committed.is_some() || !m.owner_has_live_pets(i))
                });
                let Some(i) = pick(&candidates, owner) else {
                    return Ok(Outcome::Skipped);
                };
                self.remove_owner(s, i)?;
            }
            Op::UnremoveOwner { owner } => {
                let Some(i) = pick(&m.owners_where(|_, o| o.removed), owner) else {
                    return Ok(Outcome::Skipped);
                };
                self.unremove_owner(s, i)?;
            }
            Op::NewShelter { name, capacity } => {
                let shelter = Shelter {
                    id: 0,
                    name: format!("s{name}"),
                    capacity,
                };
                let h = self.ok(
                    s.uow().register_new(shelter.clone()),
                    "register_new(Shelter)",
                )?;
                self.model.shelters.push(Some(MShelter {
                    h,
                    val: shelter.clone(),
                    committed: None,
                    removed: false,
                    all: false,
                }));
                self.note(format!(
                    "register_new shelter#{} {shelter:?}",
                    self.model.shelters.len() - 1
                ));
            }
            Op::EditShelter { shelter, capacity } => {
                let Some(i) = pick(&m.shelters_where(|_, _| true), shelter) else {
                    return Ok(Outcome::Skipped);
                };
                let sh = m
                    .shelter(i)
                    .ok_or_else(|| self.fail("model", "shelter vanished"))?;
                let capacity = capacity
                    .or_else(|| sh.committed.as_ref().map(|c| c.capacity))
                    .unwrap_or(1);
                let h = sh.h;
                self.ok(
                    s.uow().get_mut(&h).map(|v| v.capacity = capacity),
                    "get_mut(Shelter)",
                )?;
                self.shelter_mut(i)?.val.capacity = capacity;
                self.note(format!(
                    "get_mut({}).capacity = {capacity}",
                    self.model.describe_shelter(i)
                ));
            }
            Op::RemoveShelter { shelter } => {
                let candidates = m.shelters_where(|i, sh| {
                    !sh.removed && (sh.committed.is_some() || !m.shelter_has_live_pets(i))
                });
                let Some(i) = pick(&candidates, shelter) else {
                    return Ok(Outcome::Skipped);
                };
                self.remove_shelter(s, i)?;
            }
            Op::UnremoveShelter { shelter } => {
                let Some(i) = pick(&m.shelters_where(|_, sh| sh.removed), shelter) else {
                    return Ok(Outcome::Skipped);
                };
                self.unremove_shelter(s, i)?;
            }
            Op::NewPet {
                name,
                weight,
                owner,
                shelter,
                direct,
                prefer_new,
            } => {
                let owners = prefer(prefer_new, m.owners_where(|_, o| !o.removed), |i| {
                    m.owner(i).is_some_and(|o| o.committed.is_none())
                });
                let Some(oi) = pick(&owners, owner) else {
                    return Ok(Outcome::Skipped);
                };
                let shelters = prefer(prefer_new, m.shelters_where(|_, sh| !sh.removed), |i| {
                    m.shelter(i).is_some_and(|sh| sh.committed.is_none())
                });
                let si = shelter.and_then(|p| pick(&shelters, p));
                let o = m
                    .owner(oi)
                    .ok_or_else(|| self.fail("model", "owner vanished"))?;
                let owner_direct = direct && o.committed.is_some();
                let shelter_direct = si
                    .and_then(|si| m.shelter(si))
                    .filter(|sh| direct && sh.committed.is_some())
                    .map(|sh| sh.val.id);
                let pet = Pet {
                    id: 0,
                    owner_code: if owner_direct {
                        o.val.code.clone()
                    } else {
                        String::new()
                    },
                    shelter_id: shelter_direct,
                    name: format!("p{name}"),
                    weight,
                };
                let (owner_h, owner_new, owner_code) =
                    (o.h, o.committed.is_none(), o.val.code.clone());
                let shelter_h = si.and_then(|si| m.shelter(si)).map(|sh| sh.h);
                let h = self.ok(s.uow().register_new(pet.clone()), "register_new(Pet)")?;
                let index = self.model.pets.len();
                self.model.pets.push(Some(MPet {
                    h,
                    val: pet.clone(),
                    owner: oi,
                    link_code: None,
                    shelter: si,
                    committed: None,
                    removed: false,
                    all: false,
                }));
                let mut how = Vec::new();
                if owner_direct {
                    how.push(format!("owner_code = {owner_code:?} written directly"));
                } else {
                    self.ok(s.uow().set_parent(&h, &owner_h), "set_parent(Pet, Owner)")?;
                    if owner_new {
                        self.pet_mut(index)?.link_code = Some(owner_code);
                    }
                    how.push(format!("set_parent -> {}", self.model.describe_owner(oi)));
                }
                if let (Some(si), Some(shelter_h)) = (si, shelter_h) {
                    if shelter_direct.is_some() {
                        how.push(format!("shelter_id = {shelter_direct:?} written directly"));
                    } else {
                        self.ok(
                            s.uow().set_parent(&h, &shelter_h),
                            "set_parent(Pet, Shelter)",
                        )?;
                        how.push(format!("set_parent -> {}", self.model.describe_shelter(si)));
                    }
                }
                self.note(format!(
                    "register_new pet#{index} {:?} weight {}; {}",
                    pet.name,
                    pet.weight,
                    how.join("; ")
                ));
            }
            Op::MovePet {
                pet,
                owner,
                prefer_new,
            } => {
                let pets = prefer(prefer_new, m.pets_where(|_, p| !p.removed), |i| {
                    m.pet(i).is_some_and(|p| p.committed.is_some())
                });
                let Some(pi) = pick(&pets, pet) else {
                    return Ok(Outcome::Skipped);
                };
                let owners = prefer(prefer_new, m.owners_where(|_, o| !o.removed), |i| {
                    m.owner(i).is_some_and(|o| o.committed.is_none())
                });
                let Some(oi) = pick(&owners, owner) else {
                    return Ok(Outcome::Skipped);
                };
                self.move_pet(s, pi, oi)?;
            }
            Op::ShelterPet {
                pet,
                shelter,
                prefer_new,
            } => {
                let pets = prefer(prefer_new, m.pets_where(|_, p| !p.removed), |i| {
                    m.pet(i).is_some_and(|p| p.committed.is_some())
                });
                let Some(pi) = pick(&pets, pet) else {
                    return Ok(Outcome::Skipped);
                };
                let shelters = prefer(prefer_new, m.shelters_where(|_, sh| !sh.removed), |i| {
                    m.shelter(i).is_some_and(|sh| sh.committed.is_none())
                });
                let Some(si) = pick(&shelters, shelter) else {
                    return Ok(Outcome::Skipped);
                };
                self.shelter_pet(s, pi, si)?;
            }
            Op::MoveChildren {
                from,
                to,
                prefer_new,
            } => {
                let Some(from) = pick(&m.owners_where(|_, o| o.removed), from) else {
                    return Ok(Outcome::Skipped);
                };
                let owners = prefer(prefer_new, m.owners_where(|_, o| !o.removed), |i| {
                    m.owner(i).is_some_and(|o| o.committed.is_none())
                });
                let Some(to) = pick(&owners, to) else {
                    return Ok(Outcome::Skipped);
                };
                let pets = m.pets_where(|_, p| !p.removed && p.owner == from);
                self.note(format!(
                    "move the {} pets of {} to {}:",
                    pets.len(),
                    m.describe_owner(from),
                    m.describe_owner(to)
                ));
                for pi in pets {
                    self.move_pet(s, pi, to)?;
                }
            }
            Op::UnshelterPet { pet } => {
                // Not while linked to a new shelter: what a plain assignment does to a pending
                // link is not specified.
                let candidates = m.pets_where(|_, p| {
                    !p.removed
                        && p.shelter
                            .is_none_or(|si| m.shelter(si).is_some_and(|sh| sh.committed.is_some()))
                });
                let Some(pi) = pick(&candidates, pet) else {
                    return Ok(Outcome::Skipped);
                };
                self.unshelter_pet(s, pi)?;
            }
            Op::EditPet {
                pet,
                weight,
                name,
                typed,
            } => {
                let Some(pi) = pick(&m.pets_where(|_, _| true), pet) else {
                    return Ok(Outcome::Skipped);
                };
                let p = m
                    .pet(pi)
                    .ok_or_else(|| self.fail("model", "pet vanished"))?;
                let weight = weight
                    .or_else(|| p.committed.as_ref().map(|c| c.weight))
                    .unwrap_or(p.val.weight);
                let name = name.map(|n| format!("p{n}"));
                let h = p.h;
                let set = |v: &mut Pet| {
                    v.weight = weight;
                    if let Some(name) = &name {
                        v.name = name.clone();
                    }
                };
                if typed {
                    self.ok(
                        s.uow().entities_mut::<Pet>().get_mut(&h).map(set),
                        "entities_mut::<Pet>().get_mut",
                    )?;
                } else {
                    self.ok(s.uow().get_mut(&h).map(set), "get_mut(Pet)")?;
                }
                let p = self.pet_mut(pi)?;
                p.val.weight = weight;
                if let Some(name) = &name {
                    p.val.name = name.clone();
                }
                self.note(format!(
                    "{}({}).weight = {weight}{}",
                    if typed {
                        "entities_mut().get_mut"
                    } else {
                        "get_mut"
                    },
                    self.model.describe_pet(pi),
                    name.map(|n| format!(", .name = {n:?}")).unwrap_or_default()
                ));
            }
            Op::RemovePet { pet } => {
                let Some(pi) = pick(&m.pets_where(|_, p| !p.removed), pet) else {
                    return Ok(Outcome::Skipped);
                };
                self.remove_pet(s, pi)?;
            }
            Op::UnremovePet { pet } => {
                // Not when a parent it points at was dropped: such a link points nowhere.
                let candidates = m.pets_where(|_, p| {
                    p.removed
                        && m.owner(p.owner).is_some()
                        && p.shelter.is_none_or(|si| m.shelter(si).is_some())
                });
                let Some(pi) = pick(&candidates, pet) else {
                    return Ok(Outcome::Skipped);
                };
                let h = self.pet_mut(pi)?.h;
                self.ok(s.uow().unremove(&h), "unremove(Pet)")?;
                self.pet_mut(pi)?.removed = false;
                self.note(format!("unremove({})", self.model.describe_pet(pi)));
            }
            Op::LinkToRemoved { pet, owner } => {
                let Some(pi) = pick(&m.pets_where(|_, p| !p.removed), pet) else {
                    return Ok(Outcome::Skipped);
                };
                let Some(oi) = pick(&m.owners_where(|_, o| o.removed), owner) else {
                    return Ok(Outcome::Skipped);
                };
                let described = format!(
                    "set_parent({}, {}) (removed)",
                    m.describe_pet(pi),
                    m.describe_owner(oi)
                );
                let (ph, oh) = (self.pet_mut(pi)?.h, self.owner_mut(oi)?.h);
                match s.uow().set_parent(&ph, &oh) {
                    Err(uow::Error::AlreadyRemoved { .. }) => {
                        self.note(format!("{described}: AlreadyRemoved, as expected"));
                    }
                    other => {
                        return Err(self.fail(
                            "set-parent-to-removed",
                            format!("{described} returned {other:?}; expected AlreadyRemoved"),
                        ))
                    }
                }
            }
            Op::Refresh { kind, pick } => return self.refresh(s, kind, pick),
            Op::Load { kind, pick } => return self.load(s, kind, pick),
            Op::Break { kind, a, b } => return self.break_commit(s, kind, a, b),
            Op::Misuse { kind, owner, code } => return self.misuse(s, kind, owner, code),
            Op::Repair { choice } => self.repair(s, choice)?,
            Op::Commit => return self.write(s, "commit"),
            Op::Reload { .. } | Op::Scope { .. } | Op::Nested { .. } => {
                return Ok(Outcome::Skipped)
            }
        }
        Ok(Outcome::Done)
    }

    fn owner_mut(&mut self, i: usize) -> Check<&mut MOwner> {
        let f = self.fail("model", format!("owner #{i} is not in the model"));
        self.model
            .owners
            .get_mut(i)
            .and_then(Option::as_mut)
            .ok_or(f)
    }

    fn shelter_mut(&mut self, i: usize) -> Check<&mut MShelter> {
        let f = self.fail("model", format!("shelter #{i} is not in the model"));
        self.model
            .shelters
            .get_mut(i)
            .and_then(Option::as_mut)
            .ok_or(f)
    }

    fn pet_mut(&mut self, i: usize) -> Check<&mut MPet> {
        let f = self.fail("model", format!("pet #{i} is not in the model"));
        self.model.pets.get_mut(i).and_then(Option::as_mut).ok_or(f)
    }

    fn resolve_name(&self, name: &Name, me: Option<usize>) -> String {
        let m = &self.model;
        let fresh = format!("n{}", name.fresh);
        let committed = |i: usize| m.owner(i).and_then(|o| o.committed.as_ref());
        let candidate = match name.kind {
            NameKind::Fresh => None,
            NameKind::Back => me.and_then(committed).map(|c| c.name.clone()),
            NameKind::Freed => {
                let freed = m.owners_where(|i, o| o.removed && Some(i) != me);
                pick(&freed, name.pick)
                    .and_then(committed)
                    .map(|c| c.name.clone())
            }
            NameKind::Taken => {
                let taken = m.owners_where(|i, o| !o.removed && Some(i) != me);
                pick(&taken, name.pick)
                    .and_then(|i| m.owner(i))
                    .map(|o| o.val.name.clone())
            }
        };
        candidate.unwrap_or(fresh)
    }

    // --- single changes, shared by operations and repairs ----------------------------------

    fn rename_owner(&mut self, s: &mut dyn Session<C>, i: usize, name: String) -> Check {
        let h = self.owner_mut(i)?.h;
        self.ok(
            s.uow().get_mut(&h).map(|v| v.name = name.clone()),
            "get_mut(Owner)",
        )?;
        self.owner_mut(i)?.val.name = name.clone();
        self.note(format!(
            "get_mut({}).name = {name:?}",
            self.model.describe_owner(i)
        ));
        Ok(())
    }

    fn remove_owner(&mut self, s: &mut dyn Session<C>, i: usize) -> Check {
        let described = self.model.describe_owner(i);
        let o = self.owner_mut(i)?;
        let h = o.h;
        self.ok(s.uow().register_removed(&h), "register_removed(Owner)")?;
        let o = self.owner_mut(i)?;
        if o.committed.is_some() {
            o.removed = true;
        } else {
            self.model.owners[i] = None;
            self.model.stale.push(AnyHandle::Owner(h));
        }
        self.note(format!("register_removed({described})"));
        Ok(())
    }

    fn unremove_owner(&mut self, s: &mut dyn Session<C>, i: usize) -> Check {
        let h = self.owner_mut(i)?.h;
        self.ok(s.uow().unremove(&h), "unremove(Owner)")?;
        self.owner_mut(i)?.removed = false;
        self.note(format!("unremove({})", self.model.describe_owner(i)));
        Ok(())
    }

    fn remove_shelter(&mut self, s: &mut dyn Session<C>, i: usize) -> Check {
        let described = self.model.describe_shelter(i);
        let h = self.shelter_mut(i)?.h;
        self.ok(s.uow().register_removed(&h), "register_removed(Shelter)")?;
        let sh = self.shelter_mut(i)?;
        if sh.committed.is_some() {
            sh.removed = true;
        } else {
            self.model.shelters[i] = None;
            self.model.stale.push(AnyHandle::Shelter(h));
        }
        self.note(format!("register_removed({described})"));
        Ok(())
    }

    fn unremove_shelter(&mut self, s: &mut dyn Session<C>, i: usize) -> Check {
        let h = self.shelter_mut(i)?.h;
        self.ok(s.uow().unremove(&h), "unremove(Shelter)")?;
        self.shelter_mut(i)?.removed = false;
        self.note(format!("unremove({})", self.model.describe_shelter(i)));
        Ok(())
    }

    fn move_pet(&mut self, s: &mut dyn Session<C>, pi: usize, oi: usize) -> Check {
        let (ph, oh) = (self.pet_mut(pi)?.h, self.owner_mut(oi)?.h);
        self.ok(s.uow().set_parent(&ph, &oh), "set_parent(Pet, Owner)")?;
        let o = self.owner_mut(oi)?;
        let link_code = o.committed.is_none().then(|| o.val.code.clone());
        let p = self.pet_mut(pi)?;
        p.owner = oi;
        p.link_code = link_code;
        self.note(format!(
            "set_parent({}, {})",
            self.model.describe_pet(pi),
            self.model.describe_owner(oi)
        ));
        Ok(())
    }

    fn shelter_pet(&mut self, s: &mut dyn Session<C>, pi: usize, si: usize) -> Check {
        let (ph, sh) = (self.pet_mut(pi)?.h, self.shelter_mut(si)?.h);
        self.ok(s.uow().set_parent(&ph, &sh), "set_parent(Pet, Shelter)")?;
        self.pet_mut(pi)?.shelter = Some(si);
        self.note(format!(
            "set_parent({}, {})",
            self.model.describe_pet(pi),
            self.model.describe_shelter(si)
        ));
        Ok(())
    }

    fn unshelter_pet(&mut self, s: &mut dyn Session<C>, pi: usize) -> Check {
        let h = self.pet_mut(pi)?.h;
        self.ok(
            s.uow().get_mut(&h).map(|v| v.shelter_id = None),
            "get_mut(Pet)",
        )?;
        self.pet_mut(pi)?.shelter = None;
        self.note(format!(
            "get_mut({}).shelter_id = None",
            self.model.describe_pet(pi)
        ));
        Ok(())
    }

    fn remove_pet(&mut self, s: &mut dyn Session<C>, pi: usize) -> Check {
        let described = self.model.describe_pet(pi);
        let h = self.pet_mut(pi)?.h;
        self.ok(s.uow().register_removed(&h), "register_removed(Pet)")?;
        let p = self.pet_mut(pi)?;
        if p.committed.is_some() {
            p.removed = true;
        } else {
            self.model.pets[pi] = None;
            self.model.stale.push(AnyHandle::Pet(h));
        }
        self.note(format!("register_removed({described})"));
        Ok(())
    }

    fn refresh(&mut self, s: &mut dyn Session<C>, kind: u8, pick_: u32) -> Check<Outcome> {
        let m = &self.model;
        let (h, described) = match kind {
            0 => {
                let Some(i) = pick(&m.owners_where(|_, o| o.committed.is_some()), pick_) else {
                    return Ok(Outcome::Skipped);
                };
                let o = self.owner_mut(i)?;
                o.val = o.committed.clone().unwrap_or_else(|| o.val.clone());
                o.removed = false;
                o.all = false;
                (AnyHandle::Owner(o.h), self.model.describe_owner(i))
            }
            1 => {
                let Some(i) = pick(&m.shelters_where(|_, sh| sh.committed.is_some()), pick_) else {
                    return Ok(Outcome::Skipped);
                };
                let sh = self.shelter_mut(i)?;
                sh.val = sh.committed.clone().unwrap_or_else(|| sh.val.clone());
                sh.removed = false;
                sh.all = false;
                (AnyHandle::Shelter(sh.h), self.model.describe_shelter(i))
            }
            _ => {
                let Some(i) = pick(&m.pets_where(|_, p| p.committed.is_some()), pick_) else {
                    return Ok(Outcome::Skipped);
                };
                let Some(c) = m.pet(i).and_then(|p| p.committed.clone()) else {
                    return Ok(Outcome::Skipped);
                };
                // Back to the parents of the row.
                let owner = m.owners_where(|_, o| {
                    o.committed
                        .as_ref()
                        .is_some_and(|oc| oc.code == c.owner_code)
                });
                let shelter = match c.shelter_id {
                    Some(id) => {
                        let found = m.shelters_where(|_, sh| {
                            sh.committed.as_ref().is_some_and(|sc| sc.id == id)
                        });
                        match found.first() {
                            Some(&si) => Some(si),
                            None => {
                                return Err(self.fail(
                                    "model",
                                    format!("pet row {c:?} points at no shelter of the model"),
                                ))
                            }
                        }
                    }
                    None => None,
                };
                let Some(&owner) = owner.first() else {
                    return Err(self.fail(
                        "model",
                        format!("pet row {c:?} points at no owner of the model"),
                    ));
                };
                let p = self.pet_mut(i)?;
                p.val = c;
                p.owner = owner;
                p.shelter = shelter;
                p.link_code = None;
                p.removed = false;
                p.all = false;
                (AnyHandle::Pet(p.h), self.model.describe_pet(i))
            }
        };
        self.ok(s.refresh_any(h), &format!("refresh({described})"))?;
        self.note(format!("refresh({described})"));
        Ok(Outcome::Done)
    }

    fn load(&mut self, s: &mut dyn Session<C>, kind: u8, pick_: u32) -> Check<Outcome> {
        let m = &self.model;
        match kind {
            0 => {
                let Some(i) = pick(&m.owners_where(|_, o| o.committed.is_some()), pick_) else {
                    return Ok(Outcome::Skipped);
                };
                let Some(o) = m.owner(i) else {
                    return Ok(Outcome::Skipped);
                };
                let (h, code, described) = (o.h, o.val.code.clone(), m.describe_owner(i));
                let got = self.ok(
                    s.load_owner(code.clone()),
                    &format!("load::<Owner>({code:?})"),
                )?;
                self.note(format!("load::<Owner>({code:?}) of held {described}"));
                if got != h {
                    return Err(self.fail(
                        "identity-map",
                        format!("load::<Owner>({code:?}) returned {got:?}, not the held {h:?}"),
                    ));
                }
            }
            1 => {
                let Some(i) = pick(&m.pets_where(|_, p| p.committed.is_some()), pick_) else {
                    return Ok(Outcome::Skipped);
                };
                let Some(p) = m.pet(i) else {
                    return Ok(Outcome::Skipped);
                };
                let (h, id, described) = (p.h, p.val.id, m.describe_pet(i));
                let got = self.ok(s.load_pet(id), &format!("load::<Pet>({id})"))?;
                self.note(format!("load::<Pet>({id}) of held {described}"));
                if got != h {
                    return Err(self.fail(
                        "identity-map",
                        format!("load::<Pet>({id}) returned {got:?}, not the held {h:?}"),
                    ));
                }
            }
            _ => {
                let code = format!("missing{pick_}");
                let got = s.load_owner(code.clone());
                self.note(format!("load::<Owner>({code:?}), a key no row has"));
                if !matches!(got, Err(uow::Error::NotFound { .. })) {
                    return Err(self.fail(
                        "load-missing",
                        format!("load::<Owner>({code:?}) returned {got:?}; expected NotFound"),
                    ));
                }
            }
        }
        Ok(Outcome::Done)
    }

    // --- failures on purpose ----------------------------------------------------------------

    fn break_commit(
        &mut self,
        s: &mut dyn Session<C>,
        kind: BreakKind,
        a: u32,
        b: u32,
    ) -> Check<Outcome> {
        let m = &self.model;
        match kind {
            BreakKind::DuplicateName => {
                let live = m.owners_where(|_, o| !o.removed);
                let Some(i) = pick(&live, a) else {
                    return Ok(Outcome::Skipped);
                };
                let others: Vec<usize> = live.iter().copied().filter(|&j| j != i).collect();
                let Some(j) = pick(&others, b) else {
                    return Ok(Outcome::Skipped);
                };
                let name = m.owner(j).map(|o| o.val.name.clone()).unwrap_or_default();
                self.note(format!(
                    "break: {} takes the name of {}",
                    m.describe_owner(i),
                    m.describe_owner(j)
                ));
                self.rename_owner(s, i, name)?;
            }
            BreakKind::RemoveOwnerOfPet => {
                let candidates = m.pets_where(|_, p| {
                    !p.removed
                        && m.owner(p.owner)
                            .is_some_and(|o| !o.removed && o.committed.is_some())
                });
                let Some(pi) = pick(&candidates, a) else {
                    return Ok(Outcome::Skipped);
                };
                let oi = m.pet(pi).map(|p| p.owner).unwrap_or_default();
                self.note(format!("break: remove the owner of {}", m.describe_pet(pi)));
                self.remove_owner(s, oi)?;
            }
            BreakKind::RemoveShelterOfPet => {
                let candidates = m.pets_where(|_, p| {
                    !p.removed
                        && p.shelter
                            .and_then(|si| m.shelter(si))
                            .is_some_and(|sh| !sh.removed && sh.committed.is_some())
                });
                let Some(pi) = pick(&candidates, a) else {
                    return Ok(Outcome::Skipped);
                };
                let si = m.pet(pi).and_then(|p| p.shelter).unwrap_or_default();
                self.note(format!(
                    "break: remove the shelter of {}",
                    m.describe_pet(pi)
                ));
                self.remove_shelter(s, si)?;
            }
        }
        Ok(Outcome::Done)
    }

    fn misuse(
        &mut self,
        s: &mut dyn Session<C>,
        kind: MisuseKind,
        owner: u32,
        code: u32,
    ) -> Check<Outcome> {
        let m = &self.model;
        let candidates = m.owners_where(|_, o| !o.removed && o.committed.is_some());
        let Some(i) = pick(&candidates, owner) else {
            return Ok(Outcome::Skipped);
        };
        let o = m
            .owner(i)
            .ok_or_else(|| self.fail("model", "owner vanished"))?;
        let (h, code_before, version_before) = (o.h, o.val.code.clone(), o.val.version);
        let described = m.describe_owner(i);
        let before = self.observe_all(s.uow_ref());
        let new_code = format!("c{code}");
        self.ok(
            s.uow().get_mut(&h).map(|v| match kind {
                MisuseKind::KeyChange => v.code = new_code.clone(),
                MisuseKind::VersionChange => v.version += 1,
            }),
            "get_mut(Owner)",
        )?;
        let result = s.write();
        let expected = matches!(
            (&kind, &result),
            (MisuseKind::KeyChange, Err(uow::Error::KeyChanged { .. }))
                | (
                    MisuseKind::VersionChange,
                    Err(uow::Error::VersionChanged { .. })
                )
        );
        let shown = match &result {
            Ok(report) => format!("Ok ({} rows)", report.rows()),
            Err(e) => format!("Err({e})"),
        };
        self.note(format!(
            "misuse: {kind:?} on {described}, then write: {shown}; then undone"
        ));
        if !expected {
            return Err(self.fail(
                "misuse-not-refused",
                format!("changing the {kind:?} of persisted {described} and writing gave {shown}"),
            ));
        }
        self.ok(
            s.uow().get_mut(&h).map(|v| {
                v.code = code_before.clone();
                v.version = version_before;
            }),
            "get_mut(Owner)",
        )?;
        self.check_unchanged(s.uow_ref(), &before, "refused-write-changed-memory")?;
        self.check_db(s.rows())?;
        Ok(Outcome::WriteFailed)
    }

    /// Undoes everything that makes the next write fail or its outcome uncertain.
    fn repair(&mut self, s: &mut dyn Session<C>, choice: u32) -> Check {
        let mut rng = Rng(choice as u64);
        self.note("repair:");
        for pi in 0..self.model.pets.len() {
            let m = &self.model;
            let Some(p) = m.pet(pi) else { continue };
            if p.removed {
                continue;
            }
            let owner = p.owner;
            if !m.live_owner(owner) {
                let owner_removed = m.owner(owner).is_some();
                let live = m.owners_where(|_, o| !o.removed);
                match rng.below(3) {
                    0 if owner_removed => self.unremove_owner(s, owner)?,
                    0 | 1 if !live.is_empty() => {
                        let oi = live[rng.below(live.len() as u64) as usize];
                        self.move_pet(s, pi, oi)?;
                    }
                    _ => {
                        self.remove_pet(s, pi)?;
                        continue;
                    }
                }
            }
            let m = &self.model;
            let Some(p) = m.pet(pi) else { continue };
            if let Some(si) = p.shelter {
                if !m.live_shelter(si) {
                    let removed = m.shelter(si).is_some();
                    let live = m.shelters_where(|_, sh| !sh.removed);
                    match rng.below(4) {
                        0 if removed => self.unremove_shelter(s, si)?,
                        1 if removed => self.unshelter_pet(s, pi)?,
                        0..=2 if !live.is_empty() => {
                            let other = live[rng.below(live.len() as u64) as usize];
                            self.shelter_pet(s, pi, other)?;
                        }
                        _ => self.remove_pet(s, pi)?,
                    }
                }
            }
        }
        // Names last: unremoving an owner may bring back a name a new owner took. One owner at
        // a time, until nothing is left to fix.
        for _ in 0..1000 {
            let m = &self.model;
            let live = m.owners_where(|_, o| !o.removed);
            let problem = live.iter().copied().find(|&i| {
                let Some(o) = m.owner(i) else { return false };
                let name = &o.val.name;
                let committed_name = |j: usize| {
                    m.owner(j)
                        .and_then(|x| x.committed.as_ref())
                        .map(|c| &c.name)
                };
                live.iter().any(|&j| {
                    let Some(other) = m.owner(j) else {
                        return false;
                    };
                    if j == i {
                        return false;
                    }
                    // A duplicate: the one that did not hold the name in the database moves.
                    let intruder = other.val.name == *name
                        && (committed_name(j) == Some(name)
                            || (committed_name(i) != Some(name) && i > j));
                    // A name handed between two rows that both stay.
                    let handed = committed_name(j) == Some(name) && other.val.name != *name;
                    intruder || handed
                }) || (o.committed.is_none()
                    && m.takes_freed_name(i)
                    && m.pets.iter().flatten().any(|p| {
                        !p.removed
                            && p.owner == i
                            && p.committed.as_ref().is_some_and(|c| {
                                m.owners.iter().flatten().any(|x| {
                                    x.removed
                                        && x.committed
                                            .as_ref()
                                            .is_some_and(|xc| xc.code == c.owner_code)
                                })
                            })
                    }))
            });
            let Some(i) = problem else { break };
            let fresh = format!("r{}.{i}", self.step);
            self.rename_owner(s, i, fresh)?;
        }
        match self.model.predict() {
            Expect::Ok => Ok(()),
            other => Err(self.fail(
                "model",
                format!("after the repair the model still predicts {other:?}"),
            )),
        }
    }

    // --- writes -----------------------------------------------------------------------------

    fn write(&mut self, s: &mut dyn Session<C>, what: &str) -> Check<Outcome> {
        let expect = self.model.predict();
        let counts = self.model.counts();
        let before = self.observe_all(s.uow_ref());
        // The preview sends nothing and must agree with what the write then does.
        let preview = match s.uow().plan() {
            Ok(preview) => Some(preview),
            Err(e) if expect == Expect::Ok => {
                return Err(self.fail(
                    "plan",
                    format!("plan() failed although the model expects the write to succeed: {e}"),
                ))
            }
            Err(_) => None,
        };
        if let Some(preview) = &preview {
            if preview.is_empty() == self.model.any_pending() {
                return Err(self.fail(
                    "plan",
                    format!(
                        "plan() is {}empty, the model has {}pending changes:\n{preview}",
                        if preview.is_empty() { "" } else { "not " },
                        if self.model.any_pending() { "" } else { "no " }
                    ),
                ));
            }
        }
        let result = s.write();
        match result {
            Ok(report) => {
                self.note(format!(
                    "{what}: Ok, {} rows in {} statements (model: {expect:?})",
                    report.rows(),
                    report.statements()
                ));
                if let Expect::Fail(why) = &expect {
                    // What it wrote, against the rows before it.
                    let rows = match self.check_db(s.rows()) {
                        Ok(()) => "the database is unchanged".to_string(),
                        Err(f) => f.message,
                    };
                    return Err(self.fail(
                        "write-succeeded-unexpectedly",
                        format!(
                            "{what} succeeded although the model expects it to fail: {why}\n\
                             {report}\n{rows}"
                        ),
                    ));
                }
                let got = Counts {
                    owners: (
                        report.inserted("m_owners"),
                        report.updated("m_owners"),
                        report.deleted("m_owners"),
                    ),
                    shelters: (
                        report.inserted("m_shelters"),
                        report.updated("m_shelters"),
                        report.deleted("m_shelters"),
                    ),
                    pets: (
                        report.inserted("m_pets"),
                        report.updated("m_pets"),
                        report.deleted("m_pets"),
                    ),
                };
                if got != counts {
                    return Err(self.fail(
                        "report-counts",
                        format!(
                            "{what} wrote (inserted, updated, deleted) {got:?}; the model expects \
                             {counts:?}\n{report}"
                        ),
                    ));
                }
                if let Some(preview) = preview {
                    if preview.statement_count() != report.statements() {
                        return Err(self.fail(
                            "plan",
                            format!(
                                "plan() announced {} statements, {what} sent {}\n{preview}\n{report}",
                                preview.statement_count(),
                                report.statements()
                            ),
                        ));
                    }
                    if preview.examined() != report.examined() {
                        return Err(self.fail(
                            "plan",
                            format!(
                                "plan() would look at {} entities, {what} looked at {}\n{preview}",
                                preview.examined(),
                                report.examined()
                            ),
                        ));
                    }
                }
                // Every row written is the row of an entity the write looked at.
                if report.examined() < report.rows() {
                    return Err(self.fail(
                        "report-examined",
                        format!(
                            "{what} wrote {} rows but looked at {} entities\n{report}",
                            report.rows(),
                            report.examined()
                        ),
                    ));
                }
                self.tally(expect == Expect::Ok);
                self.settle(s.uow_ref())?;
                self.check_db(s.rows())?;
                self.check_memory(s.uow())?;
                Ok(Outcome::WriteOk)
            }
            Err(e) => {
                self.note(format!("{what}: Err({e}) (model: {expect:?})"));
                if expect == Expect::Ok {
                    return Err(self.fail(
                        "write-failed-unexpectedly",
                        format!("{what} failed although the model expects success: {e}"),
                    ));
                }
                self.check_unchanged(s.uow_ref(), &before, "failed-write-changed-memory")?;
                self.check_db(s.rows())?;
                Ok(Outcome::WriteFailed)
            }
        }
    }

    /// Counts the interesting cases a successful write just went through.
    fn tally(&mut self, promised: bool) {
        let m = &self.model;
        let mut seen: Vec<&'static str> = Vec::new();
        if !promised {
            seen.push("write whose order is not promised succeeded");
        }
        for p in m.pets.iter().flatten().filter(|p| !p.removed) {
            let owner = m.owner(p.owner);
            if owner.is_some_and(|o| o.committed.is_none())
                && p.link_code
                    .as_ref()
                    .is_some_and(|c| owner.is_some_and(|o| o.val.code != *c))
            {
                seen.push("pet linked to a new owner whose code changed after set_parent");
                let swapped =
                    m.owners.iter().flatten().any(|o| {
                        o.committed.is_none() && p.link_code.as_ref() == Some(&o.val.code)
                    });
                if swapped {
                    seen.push("pet linked to a new owner whose code another new owner took");
                }
            }
            if p.committed.is_some() && owner.is_some_and(|o| o.committed.is_none()) {
                seen.push("persisted pet moved to a new owner");
            }
            let shelter = p.shelter.and_then(|si| m.shelter(si));
            if p.committed.is_some() && shelter.is_some_and(|sh| sh.committed.is_none()) {
                seen.push("persisted pet moved to a new shelter");
            }
            if let Some(c) = &p.committed {
                let old_owner_deleted = m.owners.iter().flatten().any(|o| {
                    o.removed
                        && o.committed
                            .as_ref()
                            .is_some_and(|oc| oc.code == c.owner_code)
                });
                if old_owner_deleted {
                    seen.push("pet moved away from an owner deleted in the same write");
                }
            }
        }
        for (i, o) in m.owners.iter().enumerate() {
            let Some(o) = o else { continue };
            if o.removed || !m.takes_freed_name(i) {
                continue;
            }
            seen.push(if o.committed.is_none() {
                "INSERT takes a name freed by a DELETE"
            } else {
                "UPDATE takes a name freed by a DELETE"
            });
        }
        for o in m.owners.iter().flatten() {
            if o.removed
                && m.pets.iter().flatten().any(|p| {
                    p.committed.as_ref().is_some_and(|c| {
                        Some(&c.owner_code) == o.committed.as_ref().map(|oc| &oc.code)
                    })
                })
            {
                seen.push("owner deleted together with or after its pets");
            }
        }
        if m.owners.iter().flatten().any(|o| o.all && !o.removed)
            || m.shelters.iter().flatten().any(|sh| sh.all && !sh.removed)
            || m.pets.iter().flatten().any(|p| p.all && !p.removed)
        {
            seen.push("rows registered dirty written");
        }
        seen.sort();
        seen.dedup();
        for s in seen {
            *self.stats.entry(s).or_default() += 1;
        }
    }

    /// After a successful write: generated keys read from the unit of work, persisted values
    /// become the committed rows, removed entities go.
    fn settle(&mut self, uow: &CoreUow<C>) -> Check {
        let mut gone_owner_codes = Vec::new();
        let mut gone_pet_ids = Vec::new();
        for i in 0..self.model.shelters.len() {
            let Some(sh) = self.model.shelters[i].clone() else {
                continue;
            };
            if sh.removed {
                self.model.shelters[i] = None;
                self.model.stale.push(AnyHandle::Shelter(sh.h));
                continue;
            }
            let mut val = sh.val.clone();
            if sh.committed.is_none() {
                val.id = self.ok(uow.get(&sh.h), "get(Shelter)")?.id;
            }
            let sh = self.shelter_mut(i)?;
            sh.val = val.clone();
            sh.committed = Some(val);
            sh.all = false;
        }
        for i in 0..self.model.owners.len() {
            let Some(o) = self.model.owners[i].clone() else {
                continue;
            };
            if o.removed {
                gone_owner_codes.push(o.val.code.clone());
                self.model.owners[i] = None;
                self.model.stale.push(AnyHandle::Owner(o.h));
                continue;
            }
            let updated = !self.model.owner_changed(&o).is_empty();
            let o = self.owner_mut(i)?;
            if updated {
                o.val.version += 1;
            }
            o.committed = Some(o.val.clone());
            o.all = false;
        }
        for i in 0..self.model.pets.len() {
            let Some(p) = self.model.pets[i].clone() else {
                continue;
            };
            if p.removed {
                if let Some(c) = &p.committed {
                    gone_pet_ids.push(c.id);
                }
                self.model.pets[i] = None;
                self.model.stale.push(AnyHandle::Pet(p.h));
                continue;
            }
            let owner_code = self.model.owner(p.owner).map(|o| o.val.code.clone());
            let shelter_id = p
                .shelter
                .map(|si| self.model.shelter(si).map(|sh| sh.val.id));
            let (Some(owner_code), false) = (owner_code, matches!(shelter_id, Some(None))) else {
                return Err(self.fail(
                    "model",
                    format!("pet #{i} points at a parent that is gone after a successful write"),
                ));
            };
            let mut val = p.val.clone();
            val.owner_code = owner_code;
            val.shelter_id = shelter_id.flatten();
            if p.committed.is_none() {
                val.id = self.ok(uow.get(&p.h), "get(Pet)")?.id;
                if !self.pet_ids.insert(val.id) {
                    *self
                        .stats
                        .entry("pet id of a deleted row reused")
                        .or_default() += 1;
                }
            }
            let p = self.pet_mut(i)?;
            p.val = val.clone();
            p.committed = Some(val);
            p.link_code = None;
            p.all = false;
        }
        // Generated keys: distinct, and the identity map finds every entity by its key.
        let mut ids = HashSet::new();
        for sh in self.model.shelters.iter().flatten() {
            if !ids.insert(sh.val.id) {
                return Err(self.fail(
                    "generated-keys",
                    format!("two shelters hold id {}", sh.val.id),
                ));
            }
            if uow.find::<Shelter>(&sh.val.id) != Some(sh.h) {
                return Err(self.fail(
                    "identity-map",
                    format!("find::<Shelter>({}) does not return its handle", sh.val.id),
                ));
            }
        }
        let mut ids = HashSet::new();
        for p in self.model.pets.iter().flatten() {
            if !ids.insert(p.val.id) {
                return Err(self.fail("generated-keys", format!("two pets hold id {}", p.val.id)));
            }
            if uow.find::<Pet>(&p.val.id) != Some(p.h) {
                return Err(self.fail(
                    "identity-map",
                    format!("find::<Pet>({}) does not return its handle", p.val.id),
                ));
            }
        }
        for o in self.model.owners.iter().flatten() {
            if uow.find::<Owner>(&o.val.code) != Some(o.h) {
                return Err(self.fail(
                    "identity-map",
                    format!("find::<Owner>({:?}) does not return its handle", o.val.code),
                ));
            }
        }
        for code in gone_owner_codes {
            if uow.find::<Owner>(&code).is_some() {
                return Err(self.fail(
                    "identity-map",
                    format!("find::<Owner>({code:?}) finds an owner the commit deleted"),
                ));
            }
        }
        for id in gone_pet_ids {
            if !ids.contains(&id) && uow.find::<Pet>(&id).is_some() {
                return Err(self.fail(
                    "identity-map",
                    format!("find::<Pet>({id}) finds a pet the commit deleted"),
                ));
            }
        }
        if self.depth == 0 && self.model.stale.len() > 200 {
            self.model.stale.drain(..100);
        }
        Ok(())
    }

    fn run_scope(&mut self, uow: &mut UnitOfWork<C>, conn: &mut C, op: &Op) -> Check<Outcome> {
        let Op::Scope {
            pre,
            flush,
            keep_going_after_failed_flush,
            post,
            rollback,
        } = op
        else {
            return Ok(Outcome::Skipped);
        };
        let snapshot = self.model.clone();
        let before = self.observe_all(uow);
        self.note("uow.transaction(|scope| ...) begins");
        self.depth += 1;
        self.scope_expect = None;
        let result = uow.transaction(conn, |s| -> Result<(), ScopeErr> {
            for op in pre {
                self.apply_scoped(s, op).map_err(ScopeErr::Fail)?;
            }
            if *flush {
                let outcome = self.write(s, "scope.flush()").map_err(ScopeErr::Fail)?;
                if outcome == Outcome::WriteFailed && !keep_going_after_failed_flush {
                    self.note("the closure returns Err after the failed flush");
                    return Err(ScopeErr::Rollback);
                }
            }
            for op in post {
                self.apply_scoped(s, op).map_err(ScopeErr::Fail)?;
            }
            if *rollback {
                self.note("the closure returns Err");
                return Err(ScopeErr::Rollback);
            }
            let expect = self.model.predict();
            self.note(format!(
                "the closure returns Ok: final flush and COMMIT (model: {expect:?})"
            ));
            self.scope_expect = Some(expect);
            Ok(())
        });
        self.depth -= 1;
        let expect = self.scope_expect.take();
        match result {
            Ok(()) => {
                self.note("scope committed");
                if let Some(Expect::Fail(why)) = expect {
                    return Err(self.fail(
                        "scope-committed-unexpectedly",
                        format!("the scope committed although the model expects failure: {why}"),
                    ));
                }
                self.tally(expect == Some(Expect::Ok));
                self.settle(uow)?;
                self.check_db(conn.model_rows())?;
                self.check_memory(uow)?;
                Ok(Outcome::WriteOk)
            }
            Err(ScopeErr::Fail(f)) => Err(f),
            Err(ScopeErr::Rollback) => {
                *self.stats.entry("scope rolled back").or_default() += 1;
                self.note("scope rolled back");
                self.restore(snapshot, &mut Top { uow, conn }, &before, "scope-rollback")?;
                Ok(Outcome::Done)
            }
            Err(ScopeErr::Uow(e)) => {
                self.note(format!("scope failed: {e}"));
                match expect {
                    Some(Expect::Ok) => {
                        return Err(self.fail(
                            "scope-commit-failed-unexpectedly",
                            format!(
                                "the scope's final flush or COMMIT failed although the model \
                                 expects success: {e}"
                            ),
                        ))
                    }
                    None => {
                        return Err(self.fail(
                            "unexpected-error",
                            format!("the scope failed before its closure ended: {e}"),
                        ))
                    }
                    _ => {}
                }
                self.restore(snapshot, &mut Top { uow, conn }, &before, "scope-rollback")?;
                Ok(Outcome::WriteFailed)
            }
        }
    }

    fn run_nested(&mut self, s: &mut Scope<'_, C>, op: &Op) -> Check<Outcome> {
        let Op::Nested {
            ops,
            flush,
            rollback,
        } = op
        else {
            return Ok(Outcome::Skipped);
        };
        let snapshot = self.model.clone();
        let before = self.observe_all(s.uow_ref());
        self.note("scope.nested(|inner| ...) begins");
        self.depth += 1;
        let result = s.nested(|inner| -> Result<(), ScopeErr> {
            for op in ops {
                self.apply_scoped(inner, op).map_err(ScopeErr::Fail)?;
            }
            if *flush {
                self.write(inner, "inner.flush()").map_err(ScopeErr::Fail)?;
            }
            if *rollback {
                self.note("the nested closure returns Err");
                return Err(ScopeErr::Rollback);
            }
            Ok(())
        });
        self.depth -= 1;
        match result {
            Ok(()) => {
                self.note("nested scope kept");
                self.check_memory(s.uow())?;
                Ok(Outcome::Done)
            }
            Err(ScopeErr::Rollback) => {
                *self.stats.entry("nested scope rolled back").or_default() += 1;
                self.note("nested scope rolled back");
                self.restore(snapshot, s, &before, "nested-rollback")?;
                Ok(Outcome::Done)
            }
            Err(ScopeErr::Fail(f)) => Err(f),
            Err(ScopeErr::Uow(e)) => {
                Err(self.fail("unexpected-error", format!("the nested scope failed: {e}")))
            }
        }
    }

    /// After a rollback: the model as it was, entities born since stale, memory exactly as
    /// observed then, the database as the model says.
    fn restore(
        &mut self,
        snapshot: Model,
        s: &mut dyn Session<C>,
        before: &[String],
        kind: &str,
    ) -> Check {
        let known: HashSet<AnyHandle> = snapshot
            .all_handles()
            .into_iter()
            .chain(snapshot.stale.iter().copied())
            .collect();
        let born: Vec<AnyHandle> = self
            .model
            .all_handles()
            .into_iter()
            .chain(self.model.stale.iter().copied())
            .filter(|h| !known.contains(h))
            .collect();
        self.model = snapshot;
        self.model.stale.extend(born);
        self.check_unchanged(s.uow_ref(), before, kind)?;
        self.check_db(s.rows())?;
        self.check_memory(s.uow())
    }

    fn reload(&mut self, uow: &mut UnitOfWork<C>, conn: &mut C, dirty: u32) -> Check<Outcome> {
        let rows = conn.model_rows().map_err(|e| self.fail("db-read", e))?;
        let old = self.model.all_handles();
        *uow = UnitOfWork::new();
        // Some rows registered dirty first: `attach_all` must then return their handles.
        let mut choose = Rng(dirty as u64);
        let mut choose = |_: &str| dirty % 2 == 1 && choose.chance(25);
        let mut dirty_owners = HashSet::new();
        for row in &rows.owners {
            if choose("owner") {
                self.ok(uow.register_dirty(row.clone()), "register_dirty(Owner)")?;
                dirty_owners.insert(row.code.clone());
            }
        }
        let mut dirty_shelters = HashSet::new();
        for row in &rows.shelters {
            if choose("shelter") {
                self.ok(uow.register_dirty(row.clone()), "register_dirty(Shelter)")?;
                dirty_shelters.insert(row.id);
            }
        }
        let mut pets_by_id = HashMap::new();
        let mut dirty_pets = HashSet::new();
        for row in &rows.pets {
            if choose("pet") {
                let h = self.ok(uow.register_dirty(row.clone()), "register_dirty(Pet)")?;
                pets_by_id.insert(row.id, h);
                dirty_pets.insert(row.id);
            }
        }
        let owner_handles = uow.attach_all(rows.owners.clone());
        let shelter_handles = uow.attach_all(rows.shelters.clone());
        let by_code: HashMap<&str, Handle<Owner>> = rows
            .owners
            .iter()
            .map(|o| o.code.as_str())
            .zip(owner_handles)
            .collect();
        let by_id: HashMap<i32, Handle<Shelter>> = rows
            .shelters
            .iter()
            .map(|s| s.id)
            .zip(shelter_handles)
            .collect();
        for row in &rows.pets {
            let h = self.ok(uow.load::<Pet>(conn, row.id), "load::<Pet>")?;
            if *pets_by_id.entry(row.id).or_insert(h) != h {
                return Err(self.fail(
                    "identity-map",
                    format!("load::<Pet>({}) did not return the held handle", row.id),
                ));
            }
        }
        let mut model = Model::default();
        let mut owner_index = HashMap::new();
        for (i, o) in self.model.owners.iter().enumerate() {
            let entry = match o.as_ref().and_then(|o| o.committed.clone()) {
                Some(c) => {
                    let h = *by_code.get(c.code.as_str()).ok_or_else(|| {
                        self.fail(
                            "db-mismatch",
                            format!("owner {:?} is not in the database", c.code),
                        )
                    })?;
                    owner_index.insert(c.code.clone(), i);
                    let all = dirty_owners.contains(&c.code);
                    Some(MOwner {
                        h,
                        val: c.clone(),
                        committed: Some(c),
                        removed: false,
                        all,
                    })
                }
                None => None,
            };
            model.owners.push(entry);
        }
        let mut shelter_index = HashMap::new();
        for (i, sh) in self.model.shelters.iter().enumerate() {
            let entry = match sh.as_ref().and_then(|s| s.committed.clone()) {
                Some(c) => {
                    let h = *by_id.get(&c.id).ok_or_else(|| {
                        self.fail(
                            "db-mismatch",
                            format!("shelter {} is not in the database", c.id),
                        )
                    })?;
                    shelter_index.insert(c.id, i);
                    let all = dirty_shelters.contains(&c.id);
                    Some(MShelter {
                        h,
                        val: c.clone(),
                        committed: Some(c),
                        removed: false,
                        all,
                    })
                }
                None => None,
            };
            model.shelters.push(entry);
        }
        for p in &self.model.pets {
            let entry = match p.as_ref().and_then(|p| p.committed.clone()) {
                Some(c) => {
                    let missing = || {
                        self.fail(
                            "db-mismatch",
                            format!("pet row {c:?} has no parent in the model"),
                        )
                    };
                    let h = *pets_by_id.get(&c.id).ok_or_else(missing)?;
                    let owner = *owner_index.get(&c.owner_code).ok_or_else(missing)?;
                    let shelter = match c.shelter_id {
                        Some(id) => Some(*shelter_index.get(&id).ok_or_else(missing)?),
                        None => None,
                    };
                    let all = dirty_pets.contains(&c.id);
                    Some(MPet {
                        h,
                        val: c.clone(),
                        owner,
                        link_code: None,
                        shelter,
                        committed: Some(c),
                        removed: false,
                        all,
                    })
                }
                None => None,
            };
            model.pets.push(entry);
        }
        model.stale = old;
        if model.stale.len() > 100 {
            let extra = model.stale.len() - 100;
            model.stale.drain(..extra);
        }
        self.model = model;
        self.note(format!(
            "reload: a new unit of work; attach_all {} owners and {} shelters, load {} pets; \
             {} rows registered dirty first",
            rows.owners.len(),
            rows.shelters.len(),
            rows.pets.len(),
            dirty_owners.len() + dirty_shelters.len() + dirty_pets.len()
        ));
        self.check_memory(uow)?;
        Ok(Outcome::Done)
    }

    // --- checks -----------------------------------------------------------------------------

    fn check_db(&self, rows: Result<Rows, String>) -> Check {
        let rows = rows.map_err(|e| self.fail("db-read", e))?;
        let expected = self.model.expected_rows();
        fn diff<T: Debug + PartialEq>(table: &str, got: &[T], want: &[T]) -> Option<String> {
            if got == want {
                return None;
            }
            let missing: Vec<&T> = want.iter().filter(|w| !got.contains(w)).collect();
            let extra: Vec<&T> = got.iter().filter(|g| !want.contains(g)).collect();
            Some(format!(
                "{table}: the database has {} rows, the model {}\n  rows the model expects but \
                 the database lacks: {missing:?}\n  rows the database has but the model does not \
                 expect: {extra:?}",
                got.len(),
                want.len()
            ))
        }
        let problems: Vec<String> = [
            diff("m_owners", &rows.owners, &expected.owners),
            diff("m_shelters", &rows.shelters, &expected.shelters),
            diff("m_pets", &rows.pets, &expected.pets),
        ]
        .into_iter()
        .flatten()
        .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(self.fail("db-mismatch", problems.join("\n")))
        }
    }

    /// Everything observable about every held entity, to compare before and after a failure.
    fn observe_all(&self, uow: &CoreUow<C>) -> Vec<String> {
        fn one<C, T>(uow: &CoreUow<C>, label: String, h: &Handle<T>) -> String
        where
            C: TestBackend + UowConn,
            <C as Connection>::Backend: uow::Dialect,
            T: uow::Persist<<C as Connection>::Backend> + Debug,
        {
            match (uow.get(h), uow.state(h), uow.changed_columns(h)) {
                (Ok(v), Ok(s), Ok(c)) => format!("{label}: {v:?} {s:?} {c:?}"),
                (v, _, _) => format!("{label}: not held ({:?})", v.err()),
            }
        }
        let m = &self.model;
        let mut out = Vec::new();
        for (i, o) in m.owners.iter().enumerate() {
            if let Some(o) = o {
                out.push(one::<C, _>(uow, format!("owner#{i}"), &o.h));
            }
        }
        for (i, sh) in m.shelters.iter().enumerate() {
            if let Some(sh) = sh {
                out.push(one::<C, _>(uow, format!("shelter#{i}"), &sh.h));
            }
        }
        for (i, p) in m.pets.iter().enumerate() {
            if let Some(p) = p {
                out.push(one::<C, _>(uow, format!("pet#{i}"), &p.h));
            }
        }
        out
    }

    fn check_unchanged(&self, uow: &CoreUow<C>, before: &[String], kind: &str) -> Check {
        let after = self.observe_all(uow);
        if after.len() != before.len() {
            return Err(self.fail(
                kind,
                format!(
                    "{} entities observed before, {} after",
                    before.len(),
                    after.len()
                ),
            ));
        }
        let changed: Vec<String> = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| b != a)
            .map(|(b, a)| format!("  before: {b}\n  after:  {a}"))
            .collect();
        if changed.is_empty() {
            Ok(())
        } else {
            Err(self.fail(
                kind,
                format!(
                    "memory is not as before (value, state, changed columns):\n{}",
                    changed.join("\n")
                ),
            ))
        }
    }

    /// Every held handle against the model, stale handles, `len`, `has_changes`.
    fn check_memory(&self, uow: &mut CoreUow<C>) -> Check {
        let m = &self.model;
        for (i, o) in m.owners.iter().enumerate() {
            let Some(o) = o else { continue };
            let label = m.describe_owner(i);
            let got = self.ok(uow.get(&o.h), &format!("get({label})"))?;
            if *got != o.val {
                return Err(self.fail(
                    "memory:owner:value",
                    format!("{label}: uow holds {got:?}, the model expects {:?}", o.val),
                ));
            }
            if let Some(c) = &o.committed {
                let original = self.ok(uow.original(&o.h), &format!("original({label})"))?;
                if original != c {
                    return Err(self.fail(
                        "memory:owner:original",
                        format!("{label}: original() is {original:?}, the row is {c:?}"),
                    ));
                }
            }
            let cols = m.owner_changed(o);
            let state = Model::state_of(o.committed.is_some(), o.removed, &cols);
            self.check_state(
                uow.state(&o.h),
                uow.changed_columns(&o.h),
                state,
                &cols,
                &label,
                "owner",
            )?;
        }
        for (i, sh) in m.shelters.iter().enumerate() {
            let Some(sh) = sh else { continue };
            let label = m.describe_shelter(i);
            let got = self.ok(uow.get(&sh.h), &format!("get({label})"))?;
            if *got != sh.val {
                return Err(self.fail(
                    "memory:shelter:value",
                    format!("{label}: uow holds {got:?}, the model expects {:?}", sh.val),
                ));
            }
            if let Some(c) = &sh.committed {
                let original = self.ok(uow.original(&sh.h), &format!("original({label})"))?;
                if original != c {
                    return Err(self.fail(
                        "memory:shelter:original",
                        format!("{label}: original() is {original:?}, the row is {c:?}"),
                    ));
                }
            }
            let cols = m.shelter_changed(sh);
            let state = Model::state_of(sh.committed.is_some(), sh.removed, &cols);
            self.check_state(
                uow.state(&sh.h),
                uow.changed_columns(&sh.h),
                state,
                &cols,
                &label,
                "shelter",
            )?;
        }
        for (i, p) in m.pets.iter().enumerate() {
            let Some(p) = p else { continue };
            let label = m.describe_pet(i);
            let got = self.ok(uow.get(&p.h), &format!("get({label})"))?;
            let (want, owner_known, shelter_known) = m.expected_pet(p);
            let same = got.id == want.id
                && got.name == want.name
                && got.weight == want.weight
                && (!owner_known || got.owner_code == want.owner_code)
                && (!shelter_known || got.shelter_id == want.shelter_id);
            if !same {
                let kind = if owner_known && got.owner_code != want.owner_code {
                    "memory:pet:foreign-key"
                } else {
                    "memory:pet:value"
                };
                return Err(self.fail(
                    kind,
                    format!(
                        "{label}: uow holds {got:?}, the model expects {want:?} (owner_code \
                         checked: {owner_known}, shelter_id checked: {shelter_known}; owner {}, \
                         shelter {})",
                        m.describe_owner(p.owner),
                        p.shelter
                            .map_or_else(|| "none".to_string(), |s| m.describe_shelter(s))
                    ),
                ));
            }
            if let Some(c) = &p.committed {
                let original = self.ok(uow.original(&p.h), &format!("original({label})"))?;
                if original != c {
                    return Err(self.fail(
                        "memory:pet:original",
                        format!("{label}: original() is {original:?}, the row is {c:?}"),
                    ));
                }
            }
            let cols = m.pet_changed(p);
            let state = Model::state_of(p.committed.is_some(), p.removed, &cols);
            self.check_state(
                uow.state(&p.h),
                uow.changed_columns(&p.h),
                state,
                &cols,
                &label,
                "pet",
            )?;
        }
        for h in &m.stale {
            let held = match h {
                AnyHandle::Owner(h) => uow.get(h).is_ok(),
                AnyHandle::Shelter(h) => uow.get(h).is_ok(),
                AnyHandle::Pet(h) => uow.get(h).is_ok(),
            };
            if held {
                return Err(self.fail(
                    "memory:stale-handle",
                    format!("{h:?} should be stale (its entity was removed, dropped or rolled back) but still reaches an entity"),
                ));
            }
        }
        if uow.len() != m.held() {
            return Err(self.fail(
                "memory:len",
                format!("uow.len() is {}, the model holds {}", uow.len(), m.held()),
            ));
        }
        if uow.has_changes() != m.any_pending() {
            return Err(self.fail(
                "memory:has_changes",
                format!(
                    "uow.has_changes() is {}, the model says {}",
                    uow.has_changes(),
                    m.any_pending()
                ),
            ));
        }
        Ok(())
    }

    fn check_state(
        &self,
        state: uow::Result<EntityState>,
        cols: uow::Result<Vec<&'static str>>,
        want_state: EntityState,
        want_cols: &[&str],
        label: &str,
        entity: &str,
    ) -> Check {
        let state = self.ok(state, &format!("state({label})"))?;
        let cols = self.ok(cols, &format!("changed_columns({label})"))?;
        if state != want_state || cols != want_cols {
            let what = if state != want_state {
                "state"
            } else {
                "changed_columns"
            };
            return Err(self.fail(
                &format!("memory:{entity}:{what}"),
                format!(
                    "{label}: uow reports {state:?} {cols:?}, the model expects {want_state:?} \
                     {want_cols:?}"
                ),
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The test: generate, run, and on failure shrink and report
// ---------------------------------------------------------------------------------------------

/// Runs `ops` from an empty schema and a new unit of work; returns the failure (with the index
/// of the top-level operation it happened in) and the log.
fn replay<C>(conn: &mut C, ops: &[Op]) -> (Option<(usize, Failure)>, Vec<String>)
where
    C: TestBackend + ModelRows + UowConn,
    for<'x> Scope<'x, C>: ScopeRows,
    <C as Connection>::Backend: uow::Dialect,
    Owner: uow::Load<<C as Connection>::Backend>,
    Shelter: uow::Load<<C as Connection>::Backend>,
    Pet: uow::Load<<C as Connection>::Backend>,
{
    if let Err(e) = create_tables(conn) {
        let failure = Failure {
            step: 0,
            kind: "setup".into(),
            message: e,
        };
        return (Some((0, failure)), Vec::new());
    }
    let mut runner = Runner::<C>::new();
    let mut uow = UnitOfWork::<C>::new();
    let mut index = 0;
    let outcome = catch_unwind(AssertUnwindSafe(|| -> Check {
        for (i, op) in ops.iter().enumerate() {
            index = i;
            runner.apply_top(&mut uow, conn, op)?;
        }
        Ok(())
    }));
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(f)) => Some((index, f)),
        Err(panic) => Some((index, panic_failure(runner.step, panic))),
    };
    (failure, runner.log)
}

fn panic_failure(step: usize, panic: Box<dyn std::any::Any + Send>) -> Failure {
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic".to_string());
    Failure {
        step,
        kind: "panic".into(),
        message,
    }
}

/// Removes chunks of operations (and operations inside scopes) while the replay still fails
/// with the same kind of failure.
fn shrink<C>(conn: &mut C, ops: Vec<Op>, kind: &str, deadline: Instant) -> (Vec<Op>, usize)
where
    C: TestBackend + ModelRows + UowConn,
    for<'x> Scope<'x, C>: ScopeRows,
    <C as Connection>::Backend: uow::Dialect,
    Owner: uow::Load<<C as Connection>::Backend>,
    Shelter: uow::Load<<C as Connection>::Backend>,
    Pet: uow::Load<<C as Connection>::Backend>,
{
    fn size(ops: &[Op]) -> usize {
        ops.iter()
            .map(|op| match op {
                Op::Scope { pre, post, .. } => 1 + size(pre) + size(post),
                Op::Nested { ops, .. } => 1 + size(ops),
                _ => 1,
            })
            .sum()
    }
    let mut best = ops;
    let mut replays = 0;
    // The failing replay's index: everything after it can go.
    let mut fails = |candidate: &[Op], replays: &mut usize| -> Option<usize> {
        *replays += 1;
        match replay(conn, candidate).0 {
            Some((index, f)) if f.kind == kind => Some(index),
            _ => None,
        }
    };
    let out_of_time = || Instant::now() >= deadline;
    loop {
        let size_before = size(&best);
        // Whole kinds of operations (all renames, all scopes, ...).
        let mut kinds: Vec<String> = best.iter().map(op_kind).collect();
        kinds.sort();
        kinds.dedup();
        for kind in kinds {
            if out_of_time() {
                break;
            }
            let candidate: Vec<Op> = best
                .iter()
                .filter(|op| op_kind(op) != kind)
                .cloned()
                .collect();
            if candidate.len() < best.len() {
                if let Some(index) = fails(&candidate, &mut replays) {
                    best = candidate;
                    best.truncate(index + 1);
                }
            }
        }
        // Chunks, halving their size down to single operations.
        let mut chunk = best.len().div_ceil(2).max(1);
        while !out_of_time() {
            let mut progress = false;
            let mut start = 0;
            while start < best.len() && !out_of_time() {
                let mut candidate = best.clone();
                let end = (start + chunk).min(candidate.len());
                candidate.drain(start..end);
                match fails(&candidate, &mut replays) {
                    Some(index) => {
                        candidate.truncate(index + 1);
                        best = candidate;
                        progress = true;
                    }
                    None => start += chunk,
                }
            }
            if !progress {
                if chunk == 1 {
                    break;
                }
                chunk = chunk.div_ceil(2);
            }
        }
        // Scopes: their operations spliced in place of the scope, or dropped one at a time.
        let mut i = 0;
        while i < best.len() && !out_of_time() {
            if let Op::Scope { pre, post, .. } = &best[i] {
                let mut candidate = best[..i].to_vec();
                candidate.extend(pre.iter().cloned());
                candidate.extend(post.iter().cloned());
                candidate.extend(best[i + 1..].iter().cloned());
                if let Some(index) = fails(&candidate, &mut replays) {
                    candidate.truncate(index + 1);
                    best = candidate;
                    continue;
                }
            }
            let mut j = 0;
            while !out_of_time() {
                let mut candidate = best.clone();
                match &mut candidate[i] {
                    Op::Scope { pre, .. } if j < pre.len() => {
                        pre.remove(j);
                    }
                    Op::Scope { pre, post, .. } if j - pre.len() < post.len() => {
                        post.remove(j - pre.len());
                    }
                    _ => break,
                }
                match fails(&candidate, &mut replays) {
                    Some(_) => best = candidate,
                    None => j += 1,
                }
            }
            i += 1;
        }
        if out_of_time() || size(&best) >= size_before {
            break;
        }
    }
    (best, replays)
}

fn op_kind(op: &Op) -> String {
    let text = format!("{op:?}");
    text.split([' ', '{'])
        .next()
        .unwrap_or_default()
        .to_string()
}

fn run_model<C>(conn: &mut C)
where
    C: TestBackend + ModelRows + UowConn,
    for<'x> Scope<'x, C>: ScopeRows,
    <C as Connection>::Backend: uow::Dialect,
    Owner: uow::Load<<C as Connection>::Backend>,
    Shelter: uow::Load<<C as Connection>::Backend>,
    Pet: uow::Load<<C as Connection>::Backend>,
{
    let backend = format!("{:?}", C::KIND).to_lowercase();
    let cfg = Config::from_env(&backend);
    let features = match C::KIND {
        Kind::Sqlite => "",
        Kind::Postgres => " --features postgres",
        Kind::Mysql => " --features mysql",
    };
    let replay_cmd = format!(
        "UOW_MODEL_SEED={} cargo test --test model{features} -- {backend}::",
        cfg.seed
    );
    eprintln!(
        "model test on {backend}: seed {} (replay: {replay_cmd})",
        cfg.seed
    );
    if let Err(e) = create_tables(conn) {
        panic!("model test on {backend} (seed {}): {e}", cfg.seed);
    }
    let started = Instant::now();
    let mut gen = Gen {
        rng: Rng(cfg.seed),
        fresh: 0,
    };
    let mut runner = Runner::<C>::new();
    let mut uow = UnitOfWork::<C>::new();
    let mut ops: Vec<Op> = Vec::new();
    let mut queue: VecDeque<Op> = VecDeque::new();
    let (mut commits, mut failed_commits, mut scopes) = (0usize, 0usize, 0usize);
    let outcome = catch_unwind(AssertUnwindSafe(|| -> Check {
        while runner.step < cfg.steps && started.elapsed() < cfg.time {
            if queue.is_empty() && gen.rng.chance(4) {
                queue.extend(gen.burst());
            }
            let op = match queue.pop_front() {
                Some(op) => op,
                None => gen.op(&runner.model, 0),
            };
            ops.push(op.clone());
            let outcome = runner.apply_top(&mut uow, conn, &op)?;
            match (&op, outcome) {
                (Op::Break { .. }, Outcome::Done) => queue.push_front(Op::Commit),
                (Op::Commit, Outcome::WriteFailed) => {
                    failed_commits += 1;
                    if gen.rng.chance(80) {
                        queue.push_back(Op::Repair {
                            choice: gen.rng.pick(),
                        });
                        queue.push_back(Op::Commit);
                    }
                }
                (Op::Commit, Outcome::WriteOk) => commits += 1,
                (Op::Scope { .. }, _) => scopes += 1,
                _ => {}
            }
        }
        // The end: make the pending changes valid, commit, and load everything afresh.
        for op in [
            Op::Repair {
                choice: gen.rng.pick(),
            },
            Op::Commit,
            Op::Reload {
                dirty: gen.rng.pick(),
            },
        ] {
            ops.push(op.clone());
            runner.apply_top(&mut uow, conn, &op)?;
        }
        Ok(())
    }));
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(f)) => Some(f),
        Err(panic) => Some(panic_failure(runner.step, panic)),
    };
    let Some(failure) = failure else {
        if std::env::var_os("UOW_MODEL_VERBOSE").is_some() {
            eprintln!("{}", runner.log.join("\n"));
        }
        let stats: Vec<String> = runner
            .stats
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        eprintln!(
            "model test on {backend}: seed {} passed: {} steps ({} top-level operations, {commits} \
             commits, {failed_commits} failed commits, {scopes} scopes) in {:.1} s; {}",
            cfg.seed,
            runner.step,
            ops.len(),
            started.elapsed().as_secs_f64(),
            stats.join(", ")
        );
        return;
    };
    drop(uow);
    let tail: Vec<&String> = runner.log.iter().rev().take(40).rev().collect();
    let mut message = format!(
        "model test FAILED on {backend} with seed {seed} at step {step} (top-level operation \
         {top}): [{kind}] {msg}\n\nreplay: UOW_MODEL_SEED={seed} UOW_MODEL_STEPS={steps} \
         UOW_MODEL_SECONDS=600 cargo test --test model{features} -- {backend}::\n\nthe last {n} \
         operations (of {all} log lines):\n{tail}\nthe operation that failed: {last:?}\n",
        seed = cfg.seed,
        step = failure.step,
        top = ops.len(),
        kind = failure.kind,
        msg = failure.message,
        steps = failure.step,
        n = tail.len(),
        all = runner.log.len(),
        last = ops.last(),
        tail = tail
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    );
    if !cfg.shrink_time.is_zero() {
        let deadline = Instant::now() + cfg.shrink_time;
        let (shrunk, replays) = shrink(conn, ops.clone(), &failure.kind, deadline);
        let (again, log) = replay(conn, &shrunk);
        match again {
            Some((_, f)) if f.kind == failure.kind => {
                message.push_str(&format!(
                    "\nshrunk to {} top-level operations ({replays} replays; same kind of \
                     failure: [{}] {}):\n{}\nthe operation that failed: {:?}\n",
                    shrunk.len(),
                    f.kind,
                    f.message,
                    log.join("\n"),
                    shrunk.last()
                ));
            }
            _ => message
                .push_str("\n(shrinking found no shorter sequence that fails the same way)\n"),
        }
    }
    panic!("{message}");
}

    };
}

/// What a scope's connection reads of the model's tables, on either driver.
trait ScopeRows {
    fn rows(&mut self) -> Result<Rows, String>;
}

impl<C> ScopeRows for uow::Scope<'_, C>
where
    C: TestBackend + ModelRows + Send,
    C::Backend: uow::Dialect,
{
    fn rows(&mut self) -> Result<Rows, String> {
        self.connection().model_rows()
    }
}

/// The async harness's scopes, one impl per connection type (the rows are read through a
/// synchronous wrapper around the scope's own async connection).
#[cfg(feature = "async")]
macro_rules! async_scope_rows {
    ($($feature:literal => $inner:ty),*) => {$(
        #[cfg(feature = $feature)]
        impl ScopeRows for common::on_async::Scope<'_, common::on_async::AsyncConnectionWrapper<$inner>> {
            fn rows(&mut self) -> Result<Rows, String> {
                self.connection().model_rows()
            }
        }
    )*};
}
#[cfg(feature = "async")]
async_scope_rows!(
    "sqlite" => diesel_async::sync_connection_wrapper::SyncConnectionWrapper<diesel::SqliteConnection>,
    "postgres" => diesel_async::AsyncPgConnection,
    "mysql" => diesel_async::AsyncMysqlConnection
);

// The model test on both drivers: the runner is expanded in each module, with that module's
// `UnitOfWork` and `Scope`.
backend_tests! {
    fn random_operations_agree_with_the_model(db) {
        model_runner!();
        run_model(&mut db.conn);
        Ok(())
    }
}
