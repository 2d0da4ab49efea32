//! [`AtomicFile`]: a file replaced atomically as a participant of a unit of work (stage and
//! fsync in `prepare`, rename in `commit`, remove the staged file in `compensate`), and the
//! recovery of what a crash left staged.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Participant, ParticipantError};

/// Replaces a file atomically as part of a unit of work: the new content is written to a
/// staging file next to the target, fsynced, and its directory entry fsynced, in `prepare`; it
/// is renamed over the target (and the directory fsynced) only in `commit`, after the database
/// committed; `compensate` removes the staging file. Readers see the complete old or the
/// complete new content, never a mix.
///
/// Each `AtomicFile` stages under a name of its own (`.<name>.<process>-<n>.uow-staged`), so
/// two of them for one target, in one unit of work or in two processes, never write into each
/// other's staging file: the one renamed last wins, as with any two writers of a file.
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
/// assert!(uow::AtomicFile::staged_files(&path)?.is_empty());
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct AtomicFile {
    target: PathBuf,
    contents: Vec<u8>,
    /// The staging file while prepared.
    staged: Option<PathBuf>,
}

const STAGED_SUFFIX: &str = ".uow-staged";

/// Makes staging names unique within the process; the process id makes them unique across.
static NEXT_STAGING: AtomicU64 = AtomicU64::new(0);

impl AtomicFile {
    /// Replace `target` with `contents` when the unit of work commits.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # use diesel::{Connection, SqliteConnection};
    /// let dir = std::env::temp_dir().join(format!("uow-atomic-new-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("report.txt"); // need not exist yet
    /// let mut conn = SqliteConnection::establish(":memory:")?;
    /// let mut uow = UnitOfWork::<SqliteConnection>::new();
    /// uow.enlist(uow::AtomicFile::new(&path, b"total: 3".to_vec()));
    /// assert!(!path.exists(), "nothing happens before the commit");
    /// uow.commit(&mut conn)?;
    /// assert_eq!(std::fs::read(&path)?, b"total: 3");
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(target: impl AsRef<Path>, contents: impl Into<Vec<u8>>) -> Self {
        AtomicFile {
            target: target.as_ref().to_path_buf(),
            contents: contents.into(),
            staged: None,
        }
    }

    /// The file name of `target`, the start of every staging name for it (`.<name>.`).
    fn staging_prefix(target: &Path) -> String {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!(".{name}.")
    }

    /// A new staging path for `target`: a hidden file in the same directory, so the rename
    /// never crosses file systems.
    fn new_staging_path(target: &Path) -> PathBuf {
        let n = NEXT_STAGING.fetch_add(1, Ordering::Relaxed);
        let prefix = Self::staging_prefix(target);
        target.with_file_name(format!("{prefix}{}-{n}{STAGED_SUFFIX}", std::process::id()))
    }

    /// The staging files of `target` in its directory, oldest first: content prepared for it
    /// and not renamed (yet, or ever: after a crash). Empty when there are none.
    ///
    /// ```
    /// use uow::{AtomicFile, Participant};
    /// let dir = std::env::temp_dir().join(format!("uow-staged-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("data.json");
    /// let mut file = AtomicFile::new(&path, "new");
    /// file.prepare()?; // the first step of a commit: staged next to the target
    /// let staged = AtomicFile::staged_files(&path)?;
    /// assert_eq!(staged.len(), 1);
    /// assert_eq!(std::fs::read_to_string(&staged[0])?, "new");
    /// file.compensate()?; // the commit failed: the staged file is removed
    /// assert!(AtomicFile::staged_files(&path)?.is_empty());
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), uow::ParticipantError>(())
    /// ```
    pub fn staged_files(target: impl AsRef<Path>) -> std::io::Result<Vec<PathBuf>> {
        let target = target.as_ref();
        let prefix = Self::staging_prefix(target);
        let dir = parent_dir(target);
        let mut found = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Some(middle) = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(STAGED_SUFFIX))
            else {
                continue;
            };
            // `<process>-<n>`: a target named like another's staging file is not mistaken.
            let is_staging = middle
                .split_once('-')
                .is_some_and(|(p, n)| is_number(p) && is_number(n));
            if is_staging {
                let modified = entry.metadata()?.modified()?;
                found.push((modified, entry.path()));
            }
        }
        found.sort();
        Ok(found.into_iter().map(|(_, path)| path).collect())
    }

    /// After a crash, at start, before anything else writes `target`: for each staged file
    /// of `target` (oldest first), `keep` decides from its content whether the commit it
    /// belonged to reached the database (`true`: it is renamed over the target) or not
    /// (`false`: it is removed). Returns how many staged files were found.
    ///
    /// Run it only while no other process is committing to `target`: a staged file of a
    /// commit still under way looks exactly like one left by a crash.
    ///
    /// ```
    /// use uow::{AtomicFile, Participant};
    /// let dir = std::env::temp_dir().join(format!("uow-recover-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("data.json");
    /// std::fs::write(&path, r#"{"version":1}"#)?;
    /// // A commit staged version 2, then the process died before the rename.
    /// AtomicFile::new(&path, r#"{"version":2}"#).prepare()?;
    ///
    /// // At the next start: keep what the database committed (here, version 2).
    /// let committed_version = 2;
    /// let found = AtomicFile::recover(&path, |staged| {
    ///     staged == format!(r#"{{"version":{committed_version}}}"#).as_bytes()
    /// })?;
    /// assert_eq!(found, 1);
    /// assert_eq!(std::fs::read_to_string(&path)?, r#"{"version":2}"#);
    /// assert!(AtomicFile::staged_files(&path)?.is_empty());
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), uow::ParticipantError>(())
    /// ```
    pub fn recover(
        target: impl AsRef<Path>,
        mut keep: impl FnMut(&[u8]) -> bool,
    ) -> std::io::Result<usize> {
        let target = target.as_ref();
        let staged = Self::staged_files(target)?;
        for path in &staged {
            let contents = fs::read(path)?;
            if keep(&contents) {
                fs::rename(path, target)?;
            } else {
                fs::remove_file(path)?;
            }
        }
        if !staged.is_empty() {
            sync_dir(parent_dir(target))?;
        }
        Ok(staged.len())
    }
}

fn is_number(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Makes the directory's entries (a created or renamed file) durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Participant for AtomicFile {
    fn name(&self) -> String {
        format!("file {}", self.target.display())
    }

    fn prepare(&mut self) -> Result<(), ParticipantError> {
        let staged = Self::new_staging_path(&self.target);
        // The directory entry too: after the database commits, a power loss must not lose
        // the staged file that `recover` would finish the commit with.
        let written = File::create(&staged)
            .and_then(|mut file| {
                file.write_all(&self.contents)?;
                file.sync_all()
            })
            .and_then(|()| sync_dir(parent_dir(&staged)));
        match written {
            Ok(()) => {
                self.staged = Some(staged);
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
        let Some(staged) = &self.staged else {
            return Err(format!(
                "nothing is staged for {}: commit runs only after a successful prepare",
                self.target.display()
            )
            .into());
        };
        fs::rename(staged, &self.target)?;
        self.staged = None;
        sync_dir(parent_dir(&self.target))?;
        Ok(())
    }

    fn compensate(&mut self) -> Result<(), ParticipantError> {
        if let Some(staged) = &self.staged {
            match fs::remove_file(staged) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            self.staged = None;
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

    fn staged(target: &Path) -> Vec<String> {
        match AtomicFile::staged_files(target) {
            Ok(files) => files
                .iter()
                .map(|f| fs::read_to_string(f).unwrap_or_else(|e| panic!("{e}")))
                .collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_staged_file_is_renamed_only_on_commit() -> Result<(), ParticipantError> {
        let dir = dir("commit");
        let target = dir.join("data.txt");
        fs::write(&target, "old")?;
        let mut file = AtomicFile::new(&target, "new");
        file.prepare()?;
        assert_eq!(fs::read_to_string(&target)?, "old");
        assert_eq!(staged(&target), ["new"]);
        file.commit()?;
        assert_eq!(fs::read_to_string(&target)?, "new");
        assert!(staged(&target).is_empty());
        fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[test]
    fn two_files_for_one_target_stage_apart_and_the_last_renamed_wins(
    ) -> Result<(), ParticipantError> {
        let dir = dir("two");
        let target = dir.join("data.txt");
        fs::write(&target, "old")?;
        let mut first = AtomicFile::new(&target, "first");
        let mut second = AtomicFile::new(&target, "second");
        first.prepare()?;
        second.prepare()?;
        let mut both = staged(&target);
        both.sort();
        assert_eq!(both, ["first", "second"], "neither overwrote the other");
        first.commit()?;
        assert_eq!(fs::read_to_string(&target)?, "first");
        second.commit()?;
        assert_eq!(fs::read_to_string(&target)?, "second");
        assert!(staged(&target).is_empty());
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
        assert!(staged(&target).is_empty());
        fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[test]
    fn a_prepare_that_cannot_stage_fails_and_leaves_the_target_alone(
    ) -> Result<(), ParticipantError> {
        let dir = dir("failed-prepare");
        let target = dir.join("missing").join("data.txt");
        // The target's directory does not exist, so the staging file cannot be created.
        let mut file = AtomicFile::new(&target, "new");
        assert!(file.prepare().is_err());
        assert!(!target.exists());
        assert!(file.compensate().is_ok(), "nothing staged: nothing to undo");
        assert!(file.commit().is_err(), "nothing staged: nothing to rename");
        fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[test]
    fn recover_rolls_forward_or_discards() -> Result<(), ParticipantError> {
        let dir = dir("recover");
        let target = dir.join("data.txt");
        fs::write(&target, "old")?;
        assert_eq!(AtomicFile::recover(&target, |_| true)?, 0);
        // As a crash leaves them: prepared, never renamed.
        let mut crashed = AtomicFile::new(&target, "new");
        crashed.prepare()?;
        assert_eq!(AtomicFile::recover(&target, |staged| staged == b"new")?, 1);
        assert_eq!(fs::read_to_string(&target)?, "new");
        let mut stray = AtomicFile::new(&target, "newer");
        stray.prepare()?;
        assert_eq!(AtomicFile::recover(&target, |_| false)?, 1);
        assert_eq!(fs::read_to_string(&target)?, "new");
        assert!(staged(&target).is_empty());
        fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[test]
    fn only_staging_files_of_the_target_are_recovered() -> Result<(), ParticipantError> {
        let dir = dir("names");
        let target = dir.join("data.txt");
        fs::write(&target, "old")?;
        // Files that merely look alike: another target's staging file, and user files.
        let mut other = AtomicFile::new(dir.join("data.txt.bak"), "other");
        other.prepare()?;
        fs::write(dir.join(".data.txt.notes.uow-staged"), "mine")?;
        fs::write(dir.join(".data.txt.1-x.uow-staged"), "mine too")?;
        assert_eq!(AtomicFile::recover(&target, |_| true)?, 0);
        assert_eq!(fs::read_to_string(&target)?, "old");
        assert_eq!(staged(&dir.join("data.txt.bak")), ["other"]);
        fs::remove_dir_all(dir)?;
        Ok(())
    }
}
