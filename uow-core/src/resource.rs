//! The resource layer: participants outside the database (a file, a provisioned server) that
//! take part in a unit of work's commit with a prepare / commit / compensate protocol.
//!
//! Order of [`commit`](crate::UnitOfWork::commit) with participants: every participant is
//! prepared (in registration order); then the database transaction runs and commits; then every
//! participant is committed (made final). In a [`transaction`](crate::transaction) scope the
//! participants are prepared at the scope's end, after its last flush and right before COMMIT
//! (while the transaction holds its locks: keep a scope's `prepare` quick). If a prepare, a statement or the database COMMIT fails, the participants already
//! prepared are compensated in reverse order, the database is rolled back and memory is as
//! before. A compensation that fails is reported in [`Error::Compensation`], never swallowed.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// What a participant's step may fail with.
pub type ParticipantError = Box<dyn std::error::Error + Send + Sync>;

/// A non-database participant in a unit of work: enlist it with
/// [`UnitOfWork::enlist`](crate::UnitOfWork::enlist).
///
/// ```
/// use uow::{Participant, ParticipantError};
///
/// /// A server from some cloud API: created in `prepare`, deleted if the commit fails.
/// struct Server { id: Option<u32> }
///
/// impl Participant for Server {
///     fn name(&self) -> String { "server".into() }
///     fn prepare(&mut self) -> Result<(), ParticipantError> { self.id = Some(7); Ok(()) }
///     fn commit(&mut self) -> Result<(), ParticipantError> { Ok(()) }
///     fn compensate(&mut self) -> Result<(), ParticipantError> { self.id = None; Ok(()) }
/// }
/// ```
pub trait Participant {
    /// A name for messages ("server web-1", "file /srv/data.json").
    fn name(&self) -> String;

    /// Does everything that can fail, in a way that can be undone (stage a file, create a
    /// server). Runs before the database transaction commits. A `prepare` that fails must
    /// leave nothing behind: it is not compensated (only the participants prepared before it
    /// are).
    fn prepare(&mut self) -> Result<(), ParticipantError>;

    /// Makes the prepared work final, after the database committed. It should not fail in
    /// normal operation (a rename, marking something active): the database cannot be rolled
    /// back any more, so a failure here is reported as [`Error::Finalize`].
    fn commit(&mut self) -> Result<(), ParticipantError>;

    /// Undoes a successful `prepare`, after something else in the commit failed.
    fn compensate(&mut self) -> Result<(), ParticipantError>;
}

/// The participants enlisted for the next commit, and the protocol over them.
#[derive(Default)]
pub(crate) struct Participants {
    list: Vec<Box<dyn Participant>>,
}

impl Participants {
    pub fn push(&mut self, participant: Box<dyn Participant>) {
        self.list.push(participant);
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Drops participants enlisted after the first `len` (a nested scope that failed).
    pub fn truncate(&mut self, len: usize) {
        self.list.truncate(len);
    }

    /// Prepares every participant; on the first failure compensates those already prepared
    /// and returns the error.
    pub fn prepare(&mut self) -> Result<(), Error> {
        for index in 0..self.list.len() {
            if let Err(source) = self.list[index].prepare() {
                let error = Error::Participant {
                    participant: self.list[index].name(),
                    source,
                };
                return Err(self.compensate(index, error));
            }
        }
        Ok(())
    }

    /// Compensates the first `prepared` participants in reverse order after `cause`; returns
    /// `cause`, or [`Error::Compensation`] when some could not be undone.
    pub fn compensate(&mut self, prepared: usize, cause: Error) -> Error {
        let mut failed = Vec::new();
        let prepared = prepared.min(self.list.len());
        for participant in self.list[..prepared].iter_mut().rev() {
            if let Err(error) = participant.compensate() {
                failed.push((participant.name(), error.to_string()));
            }
        }
        if failed.is_empty() {
            cause
        } else {
            Error::Compensation {
                cause: Box::new(cause),
                not_undone: failed,
            }
        }
    }

    /// Compensates every participant (all were prepared).
    pub fn compensate_all(&mut self, cause: Error) -> Error {
        let prepared = self.list.len();
        self.compensate(prepared, cause)
    }

    /// Commits every participant after the database committed, then forgets them all. Every
    /// participant is committed even if one fails; the failures are reported together.
    pub fn commit(&mut self) -> Result<(), Error> {
        let mut failed = Vec::new();
        for mut participant in self.list.drain(..) {
            if let Err(error) = participant.commit() {
                failed.push((participant.name(), error.to_string()));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(Error::Finalize { failed })
        }
    }
}

/// Replaces a file atomically as part of a unit of work: the new content is written to a
/// staging file next to the target and fsynced in `prepare`; it is renamed over the target
/// (and the directory fsynced) only in `commit`, after the database committed; `compensate`
/// removes the staging file. Readers see the complete old or the complete new content, never
/// a mix.
///
/// A crash between the database COMMIT and the rename leaves the new content staged next to
/// the old file; [`AtomicFile::recover`] finishes or discards it on the next start.
///
/// ```
/// # use uow::prelude::*;
/// # use diesel::{Connection, SqliteConnection};
/// let dir = std::env::temp_dir().join(format!("uow-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("settings.json");
/// std::fs::write(&path, "{\"v\":1}")?;
///
/// let mut conn = SqliteConnection::establish(":memory:")?;
/// let mut uow = UnitOfWork::<SqliteConnection>::new();
/// uow.enlist(uow::AtomicFile::new(&path, "{\"v\":2}"));
/// uow.commit(&mut conn)?;
/// assert_eq!(std::fs::read_to_string(&path)?, "{\"v\":2}");
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct AtomicFile {
    target: PathBuf,
    contents: Vec<u8>,
    staged: bool,
}

impl AtomicFile {
    /// Replace `target` with `contents` when the unit of work commits.
    pub fn new(target: impl AsRef<Path>, contents: impl Into<Vec<u8>>) -> Self {
        AtomicFile {
            target: target.as_ref().to_path_buf(),
            contents: contents.into(),
            staged: false,
        }
    }

    /// Where the new content of `target` waits between `prepare` and `commit`: a hidden file
    /// in the same directory, so the rename never crosses file systems.
    pub fn staging_path(target: impl AsRef<Path>) -> PathBuf {
        let target = target.as_ref();
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        target.with_file_name(format!(".{name}.uow-staged"))
    }

    /// After a crash: if content for `target` is still staged, `keep` decides from it whether
    /// the commit it belonged to reached the database (`true`: the staged content is renamed
    /// over the target) or not (`false`: it is removed). Returns whether a staged file was
    /// found.
    pub fn recover(
        target: impl AsRef<Path>,
        keep: impl FnOnce(&[u8]) -> bool,
    ) -> std::io::Result<bool> {
        let target = target.as_ref();
        let staged = Self::staging_path(target);
        let contents = match fs::read(&staged) {
            Ok(contents) => contents,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if keep(&contents) {
            fs::rename(&staged, target)?;
            sync_parent(target)?;
        } else {
            fs::remove_file(&staged)?;
        }
        Ok(true)
    }
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

impl Participant for AtomicFile {
    fn name(&self) -> String {
        format!("file {}", self.target.display())
    }

    fn prepare(&mut self) -> Result<(), ParticipantError> {
        let staged = Self::staging_path(&self.target);
        let written = File::create(&staged).and_then(|mut file| {
            file.write_all(&self.contents)?;
            file.sync_all()
        });
        match written {
            Ok(()) => {
                self.staged = true;
                Ok(())
            }
            Err(error) => {
                // A failed prepare is not compensated: leave no partial staging file behind.
                let _ = fs::remove_file(&staged);
                Err(error.into())
            }
        }
    }

    fn commit(&mut self) -> Result<(), ParticipantError> {
        fs::rename(Self::staging_path(&self.target), &self.target)?;
        self.staged = false;
        sync_parent(&self.target)?;
        Ok(())
    }

    fn compensate(&mut self) -> Result<(), ParticipantError> {
        if self.staged {
            match fs::remove_file(Self::staging_path(&self.target)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            self.staged = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("uow-resource-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)
            .map(|_| dir)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_staged_file_is_renamed_only_on_commit() -> Result<(), ParticipantError> {
        let dir = dir("commit");
        let target = dir.join("data.txt");
        fs::write(&target, "old")?;
        let mut file = AtomicFile::new(&target, "new");
        file.prepare()?;
        assert_eq!(fs::read_to_string(&target)?, "old");
        assert_eq!(
            fs::read_to_string(AtomicFile::staging_path(&target))?,
            "new"
        );
        file.commit()?;
        assert_eq!(fs::read_to_string(&target)?, "new");
        assert!(!AtomicFile::staging_path(&target).exists());
        fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[test]
    fn compensation_removes_the_staged_file_and_keeps_the_target() -> Result<(), ParticipantError> {
        let dir = dir("compensate");
        let target = dir.join("data.txt");
        fs::write(&target, "old")?;
        let mut file = AtomicFile::new(&target, "new");
        file.prepare()?;
        file.compensate()?;
        assert_eq!(fs::read_to_string(&target)?, "old");
        assert!(!AtomicFile::staging_path(&target).exists());
        fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[test]
    fn a_prepare_that_cannot_stage_fails_and_leaves_the_target_alone(
    ) -> Result<(), ParticipantError> {
        let dir = dir("failed-prepare");
        // The staging path is taken by a directory, so writing the staged file fails.
        let target = dir.join("data.txt");
        fs::create_dir_all(AtomicFile::staging_path(&target).join("blocker"))?;
        let mut file = AtomicFile::new(&target, "new");
        assert!(file.prepare().is_err());
        assert!(!target.exists());
        fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[test]
    fn recover_rolls_forward_or_discards() -> Result<(), ParticipantError> {
        let dir = dir("recover");
        let target = dir.join("data.txt");
        fs::write(&target, "old")?;
        assert!(!AtomicFile::recover(&target, |_| true)?);
        fs::write(AtomicFile::staging_path(&target), "new")?;
        assert!(AtomicFile::recover(&target, |staged| staged == b"new")?);
        assert_eq!(fs::read_to_string(&target)?, "new");
        fs::write(AtomicFile::staging_path(&target), "newer")?;
        assert!(AtomicFile::recover(&target, |_| false)?);
        assert_eq!(fs::read_to_string(&target)?, "new");
        assert!(!AtomicFile::staging_path(&target).exists());
        fs::remove_dir_all(dir)?;
        Ok(())
    }
}
