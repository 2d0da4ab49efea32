//! File sync: each local file and its metadata row (size, checksum, version) change together.
//!
//! The content is replaced with `AtomicFile`: staged next to the target in `prepare`, renamed
//! over it only after the database committed. A download that breaks mid-transfer fails the
//! whole commit: the files on disk keep their old bytes, no staged copy is left behind, the
//! rows keep their old values; committing again lands everything.
//!
//! Run with `cargo run --example file_sync` (embedded SQLite, nothing to install).

use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The value behind a mutex shared with the participants (a poisoned lock still holds it).
fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

use diesel::{Connection, QueryDsl, Queryable, RunQueryDsl, SqliteConnection};
use uow::prelude::*;
use uow::{AtomicFile, Participant, ParticipantError};

diesel::table! {
    files (path) { path -> Text, size -> BigInt, checksum -> Text, version -> Integer }
}

/// What the database knows about one synced file.
#[derive(Tracked, Queryable, Clone, Debug, PartialEq)]
#[tracked(table = files)]
struct FileMeta {
    #[tracked(primary_key)]
    path: String,
    size: i64,
    checksum: String,
    /// Checked and advanced by every UPDATE: two devices syncing the same row cannot both win.
    #[tracked(version)]
    version: i32,
}

/// The bytes a download receives at a time.
const CHUNK: usize = 16;

/// A stand-in for the file server and the network between us: it serves files chunk by chunk
/// and can be told to drop the connection once, in the middle of a given file.
struct Link {
    published: BTreeMap<String, Vec<u8>>,
    drop_at: Mutex<Option<(String, usize)>>,
    log: Mutex<Vec<String>>,
}

impl Link {
    fn note(&self, line: String) {
        locked(&self.log).push(line);
    }

    fn receive(&self, path: &str) -> Result<Vec<u8>, String> {
        let content = self.published.get(path).ok_or(format!("404 {path}"))?;
        let total = content.len().div_ceil(CHUNK);
        let mut received = Vec::new();
        for (index, chunk) in content.chunks(CHUNK).enumerate() {
            let flicker = locked(&self.drop_at).as_ref() == Some(&(path.to_string(), index));
            if flicker {
                *locked(&self.drop_at) = None; // once: the next attempt goes through
                self.note(format!(
                    "{path}: link dropped after {index} of {total} chunks"
                ));
                return Err(format!(
                    "connection reset while receiving {path} ({} of {} bytes)",
                    received.len(),
                    content.len()
                ));
            }
            received.extend_from_slice(chunk);
        }
        self.note(format!("{path}: received {} bytes", received.len()));
        Ok(received)
    }

    fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *locked(&self.log))
    }
}

/// Downloads a file in `prepare` and hands the bytes to an `AtomicFile`, which stages them and
/// does the rename, the fsyncs and the cleanup.
struct Download {
    link: Arc<Link>,
    path: String,
    target: PathBuf,
    /// From the server's listing: what the complete download must hash to.
    checksum: String,
    staged: Option<AtomicFile>,
}

impl Participant for Download {
    fn name(&self) -> String {
        format!("download {}", self.path)
    }

    fn prepare(&mut self) -> Result<(), ParticipantError> {
        let bytes = self.link.receive(&self.path)?;
        if checksum(&bytes) != self.checksum {
            return Err(format!("{} arrived damaged: checksum mismatch", self.path).into());
        }
        let mut file = AtomicFile::new(&self.target, bytes);
        // The unit of work compensates only the participants whose prepare succeeded, so a
        // prepare that fails half-way cleans up after itself.
        if let Err(error) = file.prepare() {
            let _ = file.compensate();
            return Err(error);
        }
        self.link.note(format!("{}: staged", self.path));
        self.staged = Some(file);
        Ok(())
    }

    fn commit(&mut self) -> Result<(), ParticipantError> {
        match self.staged.as_mut() {
            Some(file) => file.commit(),
            None => Err(format!("{} was never staged", self.path).into()),
        }
    }

    fn compensate(&mut self) -> Result<(), ParticipantError> {
        if let Some(mut file) = self.staged.take() {
            file.compensate()?;
            self.link
                .note(format!("{}: staged copy removed", self.path));
        }
        Ok(())
    }
}

/// Removes the database and the synced files however `main` ends.
struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = TempDir(std::env::temp_dir().join(format!("uow-file-sync-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)?;
    let db = dir.0.join("meta.db");
    let mut conn = SqliteConnection::establish(db.to_str().ok_or("temp dir is not UTF-8")?)?;
    diesel::sql_query(
        "CREATE TABLE files (path TEXT PRIMARY KEY, size BIGINT NOT NULL CHECK (size >= 0), \
         checksum TEXT NOT NULL, version INTEGER NOT NULL)",
    )
    .execute(&mut conn)?;
    let local = |path: &str| dir.0.join(path);

    println!("== 1. first sync: each file written with AtomicFile, its row in the same commit");
    let v1 = [
        ("index.html", b"<h1>Hello</h1>\n".to_vec()),
        ("logo.png", (0u8..48).collect::<Vec<u8>>()),
    ];
    let mut uow = UnitOfWork::new();
    for (path, bytes) in &v1 {
        uow.register_new(FileMeta {
            path: path.to_string(),
            size: i64::try_from(bytes.len())?,
            checksum: checksum(bytes),
            version: 1,
        })?;
        uow.enlist(AtomicFile::new(local(path), bytes.clone()));
    }
    println!("report: {}", uow.commit(&mut conn)?);
    let synced = in_sync(&mut conn, &dir.0)?;
    ensure(
        synced.iter().all(|m| m.version == 1),
        "rows start at version 1",
    )?;

    println!("\n== 2. the server has new versions; the link drops in the middle of logo.png");
    let v2 = BTreeMap::from([
        (
            "index.html".to_string(),
            b"<h1>Hello</h1>\n<img src=logo.png>\n".to_vec(),
        ),
        ("logo.png".to_string(), (0u8..56).rev().collect::<Vec<u8>>()),
    ]);
    let link = Arc::new(Link {
        published: v2.clone(),
        drop_at: Mutex::new(Some(("logo.png".into(), 2))),
        log: Mutex::new(Vec::new()),
    });
    // The bytes of every local file, to compare before and after the failed commit.
    let disk = || -> std::io::Result<Vec<Vec<u8>>> {
        v1.iter().map(|(p, _)| std::fs::read(local(p))).collect()
    };
    let before_disk = disk()?;
    let before_rows = rows(&mut conn)?;
    let mut uow = UnitOfWork::new();
    for (path, bytes) in &v2 {
        let meta = uow.load::<FileMeta>(&mut conn, path.clone())?;
        let new_checksum = checksum(bytes);
        let m = uow.get_mut(&meta)?;
        m.size = i64::try_from(bytes.len())?;
        m.checksum = new_checksum.clone();
        uow.enlist(Download {
            link: Arc::clone(&link),
            path: path.clone(),
            target: local(path),
            checksum: new_checksum,
            staged: None,
        });
    }
    match uow.commit(&mut conn) {
        Ok(report) => return Err(format!("the broken download should fail: {report}").into()),
        Err(error) => println!("commit failed: {error}"),
    }
    let log = link.take_log();
    println!("link:   {}", log.join("\n        "));
    ensure(
        log.iter().any(|l| l == "index.html: staged"),
        "index.html was staged before logo.png broke",
    )?;
    let after_disk = disk()?;
    let mut staged: Vec<PathBuf> = Vec::new();
    for (p, _) in v1.iter() {
        staged.extend(AtomicFile::staged_files(local(p))?);
    }
    println!(
        "disk:   old bytes kept: {}; staged files left: {staged:?}",
        after_disk == before_disk
    );
    ensure(after_disk == before_disk, "the files on disk are untouched")?;
    ensure(staged.is_empty(), "no staged file is left behind")?;
    let after_rows = rows(&mut conn)?;
    println!("rows:   unchanged: {}", after_rows == before_rows);
    ensure(after_rows == before_rows, "the metadata rows are unchanged")?;
    ensure(
        uow.has_changes(),
        "the unit of work still holds the new metadata",
    )?;

    // `uow::retry` reruns database failures a rerun can cure (deadlocks, busy databases); a
    // participant's failure is the caller's to judge. The link is back: commit again. The unit
    // of work still holds the changed rows and the enlisted downloads.
    println!("\n== 3. commit again: both downloads and both rows land");
    println!("report: {}", uow.commit(&mut conn)?);
    println!("link:   {}", link.take_log().join("\n        "));
    let synced = in_sync(&mut conn, &dir.0)?;
    ensure(
        synced.iter().all(|m| m.version == 2),
        "each row advanced to version 2",
    )?;
    for meta in &synced {
        let on_disk = std::fs::read(local(&meta.path))?;
        ensure(
            Some(&on_disk) == v2.get(&meta.path),
            "the disk holds the server's bytes",
        )?;
    }

    println!("\n== 4. after a crash between prepare and commit, AtomicFile::recover cleans up");
    // A staged copy whose checksum no row describes belonged to a commit that never happened.
    let index = local("index.html");
    // What a process killed after `prepare` leaves: a staged copy that was never renamed.
    AtomicFile::new(&index, &b"<h1>Hel"[..])
        .prepare()
        .map_err(|e| -> Box<dyn Error> { e })?;
    let row_checksum = synced[0].checksum.clone();
    let found = AtomicFile::recover(&index, |staged| checksum(staged) == row_checksum)?;
    let left = AtomicFile::staged_files(&index)?.len();
    println!("recover: staged copies found: {found}, left: {left}");
    ensure(
        found == 1 && left == 0,
        "the stray staged copy was discarded",
    )?;
    let kept = std::fs::read(&index)?;
    ensure(
        Some(&kept) == v2.get("index.html"),
        "index.html kept its synced bytes",
    )
}

/// Prints every row next to its file, and checks that they describe each other.
fn in_sync(conn: &mut SqliteConnection, dir: &Path) -> Result<Vec<FileMeta>, Box<dyn Error>> {
    let rows = rows(conn)?;
    for meta in &rows {
        let bytes = std::fs::read(dir.join(&meta.path))?;
        let on_disk = checksum(&bytes);
        println!(
            "synced: {:<10} v{} {:>2} bytes, checksum {} (row) = {on_disk} (disk)",
            meta.path, meta.version, meta.size, meta.checksum
        );
        ensure(on_disk == meta.checksum, "the file's checksum is the row's")?;
        ensure(
            i64::try_from(bytes.len())? == meta.size,
            "the file's size is the row's",
        )?;
    }
    Ok(rows)
}

fn rows(conn: &mut SqliteConnection) -> diesel::QueryResult<Vec<FileMeta>> {
    files::table.order(files::path).load(conn)
}

/// FNV-1a, 64 bits: a stand-in for SHA-256 that keeps the example free of dependencies.
fn checksum(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// CI runs this example, so it checks what it prints instead of only printing it.
fn ensure(ok: bool, what: &str) -> Result<(), Box<dyn Error>> {
    if ok {
        Ok(())
    } else {
        Err(format!("file_sync expectation failed: {what}").into())
    }
}
