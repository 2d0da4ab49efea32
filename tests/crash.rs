//! Crash safety of a commit that updates a database row and replaces a file together.
//!
//! A child process commits in a loop (the row's version and checksum, and the file through
//! `AtomicFile`); the parent kills it with SIGKILL at random moments, 200 times, once with a
//! child on the synchronous driver and (feature `async`) once with a child committing through
//! `AsyncUnitOfWork` on a tokio runtime. After every
//! kill the file holds the complete old or the complete new content, never a mix; after the
//! repair a real program runs at start, the row and the file agree.
//!
//! The one window where they disagree: the database has committed but the staged file was not
//! renamed yet (the process died between the two). The staged file is complete then (it and its
//! directory entry were fsynced before the database commit), and `AtomicFile::recover` finishes
//! the rename when its content matches the row; a staged file that does not match belongs to a
//! commit that never reached the database and is removed. The child widens that window on
//! purpose (a participant committed before the file pauses), so that the kills land in it and
//! the test sees the repair work, not only the easy cases.
#![cfg(all(unix, feature = "sqlite"))]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use diesel::prelude::*;
use diesel::SqliteConnection;
use uow::prelude::*;
use uow::{AtomicFile, Handle, Participant, ParticipantError};

diesel::table! {
    documents (id) {
        id -> Integer,
        version -> BigInt,
        checksum -> BigInt,
    }
}

#[derive(Tracked, Queryable, Selectable, Clone, Debug, PartialEq)]
#[tracked(table = documents)]
#[diesel(table_name = documents)]
struct Document {
    id: i32,
    version: i64,
    checksum: i64,
}

const CHILD_VAR: &str = "UOW_CRASH_CHILD_DIR";
const FILE_SIZE: usize = 256 * 1024;

/// The full content of version `n`: a header naming the version, a body, a footer.
fn content(n: i64) -> Vec<u8> {
    let mut bytes = format!("version {n}\n").into_bytes();
    let line = format!("{n:>20} the quick brown fox\n");
    while bytes.len() < FILE_SIZE {
        bytes.extend_from_slice(line.as_bytes());
    }
    bytes.extend_from_slice(format!("end {n}\n").as_bytes());
    bytes
}

/// FNV-1a, kept in the row so a staged file can be matched to it.
fn checksum(bytes: &[u8]) -> i64 {
    let mut hash: u64 = 0xcbf29ce484222325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    hash as i64
}

/// The version whose complete content `bytes` is, or `None` if it is no complete version.
fn complete_version(bytes: &[u8]) -> Option<i64> {
    let header = bytes.split(|b| *b == b'\n').next()?;
    let n: i64 = std::str::from_utf8(header)
        .ok()?
        .strip_prefix("version ")?
        .parse()
        .ok()?;
    (content(n) == bytes).then_some(n)
}

fn paths(dir: &Path) -> (String, PathBuf) {
    (
        dir.join("crash.db").to_string_lossy().into_owned(),
        dir.join("document.txt"),
    )
}

fn connect(db: &str) -> SqliteConnection {
    match SqliteConnection::establish(db) {
        Ok(mut conn) => {
            if let Err(e) = diesel::sql_query("PRAGMA busy_timeout = 5000").execute(&mut conn) {
                panic!("{e}");
            }
            conn
        }
        Err(e) => panic!("{e}"),
    }
}

/// Committed before the file in the child: keeps the database committed and the file not yet
/// renamed for a moment, so that kills land in that window too.
struct Pause;

impl Participant for Pause {
    fn name(&self) -> String {
        "pause".into()
    }
    fn prepare(&mut self) -> Result<(), ParticipantError> {
        Ok(())
    }
    fn commit(&mut self) -> Result<(), ParticipantError> {
        std::thread::sleep(Duration::from_millis(3));
        Ok(())
    }
    fn compensate(&mut self) -> Result<(), ParticipantError> {
        Ok(())
    }
}

/// The change every commit of a child makes: the next version in the row and in the file.
fn next_version<C: uow::Driver<Backend = diesel::sqlite::Sqlite>>(
    uow: &mut UnitOfWork<C>,
    doc: &Handle<Document>,
    file: &Path,
) -> uow::Result<()> {
    let next = uow.get(doc)?.version + 1;
    let bytes = content(next);
    {
        let d = uow.get_mut(doc)?;
        d.version = next;
        d.checksum = checksum(&bytes);
    }
    uow.enlist(Pause);
    uow.enlist(AtomicFile::new(file, bytes));
    Ok(())
}

/// Started by `kill_a_committing_process_200_times` as a child process: commits forever.
#[test]
#[ignore = "the child process of kill_a_committing_process_200_times; does nothing on its own"]
fn crash_child() -> Result<(), Box<dyn std::error::Error>> {
    let Ok(dir) = std::env::var(CHILD_VAR) else {
        return Ok(());
    };
    let (db, file) = paths(Path::new(&dir));
    let mut conn = connect(&db);
    loop {
        let mut uow = UnitOfWork::<SqliteConnection>::new();
        let doc = uow.load::<Document>(&mut conn, 1)?;
        next_version(&mut uow, &doc, &file)?;
        uow.commit(&mut conn)?;
    }
}

/// Started by `kill_an_async_committing_process_200_times`: commits forever through the async
/// driver, from a task on a multi-threaded tokio runtime.
#[cfg(feature = "async")]
#[test]
#[ignore = "the child process of kill_an_async_committing_process_200_times; does nothing on its own"]
fn crash_child_async() -> Result<(), Box<dyn std::error::Error>> {
    use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
    use uow::AsyncUnitOfWork;

    let Ok(dir) = std::env::var(CHILD_VAR) else {
        return Ok(());
    };
    let (db, file) = paths(Path::new(&dir));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let committing = runtime.spawn(async move {
        let mut conn = SyncConnectionWrapper::new(connect(&db));
        loop {
            let mut uow = AsyncUnitOfWork::<SyncConnectionWrapper<SqliteConnection>>::new();
            let doc = uow.load::<Document>(&mut conn, 1).await?;
            next_version(&mut uow, &doc, &file)?;
            uow.commit(&mut conn).await?;
        }
        #[allow(unreachable_code)]
        Ok::<(), uow::Error>(())
    });
    runtime.block_on(committing)??;
    Ok(())
}

/// What a program does at start: finish or discard a staged file.
fn repair(conn: &mut SqliteConnection, file: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let row: Document = documents::table.select(Document::as_select()).first(conn)?;
    AtomicFile::recover(file, |staged| checksum(staged) == row.checksum)?;
    Ok(())
}

#[test]
fn kill_a_committing_process_200_times() -> Result<(), Box<dyn std::error::Error>> {
    kill_200_times("crash_child")
}

#[cfg(feature = "async")]
#[test]
fn kill_an_async_committing_process_200_times() -> Result<(), Box<dyn std::error::Error>> {
    kill_200_times("crash_child_async")
}

/// Kills the child test `child` 200 times at random moments, checking the row and the file
/// after each kill.
fn kill_200_times(child: &str) -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("uow-crash-{}-{child}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let (db, file) = paths(&dir);
    let mut conn = connect(&db);
    diesel::sql_query("PRAGMA journal_mode = WAL").execute(&mut conn)?;
    diesel::sql_query(
        "CREATE TABLE documents (id INTEGER PRIMARY KEY, version BIGINT NOT NULL, checksum BIGINT NOT NULL)",
    )
    .execute(&mut conn)?;
    let initial = content(0);
    std::fs::write(&file, &initial)?;
    diesel::insert_into(documents::table)
        .values((
            documents::id.eq(1),
            documents::version.eq(0),
            documents::checksum.eq(checksum(&initial)),
        ))
        .execute(&mut conn)?;

    let exe = std::env::current_exe()?;
    let mut seed: u64 = 0x2545F4914F6CDD1D ^ u64::from(std::process::id());
    let mut windows = 0;
    let mut staged_found = 0;
    let mut last_version = 0;
    for round in 0..200 {
        let mut child = Command::new(&exe)
            .args(["--exact", child, "--ignored", "--test-threads=1"])
            .env(CHILD_VAR, &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(30 + seed % 100));
        child.kill()?; // SIGKILL
        let status = child.wait()?;
        assert!(
            !status.success(),
            "round {round}: the child was killed, it did not finish"
        );

        // Before any repair: the file is a complete version, never partial.
        let on_disk = std::fs::read(&file)?;
        let file_version = complete_version(&on_disk)
            .ok_or_else(|| format!("round {round}: the file is not a complete version"))?;
        let row: Document = documents::table
            .select(Document::as_select())
            .first(&mut conn)?;
        if row.version != file_version {
            // The window: committed in the database, not renamed yet.
            assert_eq!(
                row.version,
                file_version + 1,
                "round {round}: at most one commit apart"
            );
            windows += 1;
        }
        if !AtomicFile::staged_files(&file)?.is_empty() {
            staged_found += 1;
        }
        repair(&mut conn, &file)?;
        let repaired =
            complete_version(&std::fs::read(&file)?).ok_or("repair left a partial file")?;
        assert_eq!(
            repaired, row.version,
            "round {round}: row and file agree after repair"
        );
        assert!(
            AtomicFile::staged_files(&file)?.is_empty(),
            "round {round}: no staged file left"
        );
        assert!(row.version >= last_version, "versions never go back");
        last_version = row.version;
    }
    eprintln!(
        "{child}: 200 kills: reached version {last_version}; {staged_found} left a staged file, {windows} of \
         them between the database commit and the rename (rolled forward)"
    );
    assert!(last_version > 0, "the child committed at least once");
    // Each kill has about a one in three chance of landing in the widened window; 200 kills
    // that all miss it would mean the window or its repair is not what this test exercises.
    assert!(
        windows > 0,
        "no kill landed between the database commit and the rename"
    );
    assert!(staged_found >= windows, "every window left a staged file");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
