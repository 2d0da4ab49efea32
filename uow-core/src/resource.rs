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

use crate::error::Error;

mod atomic_file;

pub use atomic_file::AtomicFile;

/// What a participant's step may fail with.
///
/// ```
/// use uow::ParticipantError;
///
/// fn reserve(free_bytes: u64) -> Result<(), ParticipantError> {
///     if free_bytes < 1024 {
///         return Err(format!("only {free_bytes} bytes free").into()); // a message
///     }
///     std::fs::metadata(std::env::temp_dir())?; // or any error type, through `?`
///     Ok(())
/// }
/// assert_eq!(reserve(10).unwrap_err().to_string(), "only 10 bytes free");
/// assert!(reserve(4096).is_ok());
/// ```
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
pub trait Participant: Send {
    /// A name for messages ("server web-1", "file /srv/data.json").
    ///
    /// ```
    /// use uow::Participant;
    /// let file = uow::AtomicFile::new("/srv/settings.json", "{}");
    /// assert_eq!(file.name(), "file /srv/settings.json"); // how errors name it
    /// ```
    fn name(&self) -> String;

    /// Does everything that can fail, in a way that can be undone (stage a file, create a
    /// server). Runs before the database transaction commits. A `prepare` that fails must
    /// leave nothing behind: it is not compensated (only the participants prepared before it
    /// are).
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # use diesel::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// # let mut conn = SqliteConnection::establish(":memory:")?;
    /// # diesel::sql_query("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)").execute(&mut conn)?;
    /// use uow::{Participant, ParticipantError};
    ///
    /// struct Quota;
    /// impl Participant for Quota {
    ///     fn name(&self) -> String { "quota".into() }
    ///     fn prepare(&mut self) -> Result<(), ParticipantError> { Err("quota exceeded".into()) }
    ///     fn commit(&mut self) -> Result<(), ParticipantError> { Ok(()) }
    ///     fn compensate(&mut self) -> Result<(), ParticipantError> { Ok(()) }
    /// }
    ///
    /// let mut uow = UnitOfWork::new();
    /// uow.register_new(Note { id: 1, body: "a".into() })?;
    /// uow.enlist(Quota);
    /// let error = uow.commit(&mut conn).unwrap_err();
    /// assert!(matches!(&error, uow::Error::Participant { participant, .. } if participant == "quota"));
    /// let count: i64 = notes::table.count().get_result(&mut conn)?;
    /// assert_eq!(count, 0, "prepared before BEGIN: nothing was written");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn prepare(&mut self) -> Result<(), ParticipantError>;

    /// Makes the prepared work final, after the database committed. It should not fail in
    /// normal operation (a rename, marking something active): the database cannot be rolled
    /// back any more, so a failure here is reported as [`Error::Finalize`].
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # use diesel::prelude::*;
    /// # use std::sync::{Arc, Mutex};
    /// # use uow::{Participant, ParticipantError};
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// # let mut conn = SqliteConnection::establish(":memory:")?;
    /// # diesel::sql_query("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL CHECK (body <> ''))").execute(&mut conn)?;
    /// /// Writes each step it is asked to take into a shared log.
    /// struct Step(&'static str, Arc<Mutex<Vec<String>>>);
    /// impl Participant for Step {
    ///     fn name(&self) -> String { self.0.into() }
    ///     fn prepare(&mut self) -> Result<(), ParticipantError> { self.log("prepare") }
    ///     fn commit(&mut self) -> Result<(), ParticipantError> { self.log("commit") }
    ///     fn compensate(&mut self) -> Result<(), ParticipantError> { self.log("compensate") }
    /// }
    /// impl Step {
    ///     fn log(&self, what: &str) -> Result<(), ParticipantError> {
    ///         self.1.lock().unwrap().push(format!("{what} {}", self.0));
    ///         Ok(())
    ///     }
    /// }
    /// let log = Arc::new(Mutex::new(Vec::new()));
    /// let mut uow = UnitOfWork::new();
    /// uow.register_new(Note { id: 1, body: "a".into() })?;
    /// uow.enlist(Step("a", log.clone()));
    /// uow.enlist(Step("b", log.clone()));
    /// uow.commit(&mut conn)?;
    /// assert_eq!(*log.lock().unwrap(), ["prepare a", "prepare b", "commit a", "commit b"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn commit(&mut self) -> Result<(), ParticipantError>;

    /// Undoes a successful `prepare`, after something else in the commit failed.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # use diesel::prelude::*;
    /// # use std::sync::{Arc, Mutex};
    /// # use uow::{Participant, ParticipantError};
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// # let mut conn = SqliteConnection::establish(":memory:")?;
    /// # diesel::sql_query("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL CHECK (body <> ''))").execute(&mut conn)?;
    /// /// Writes each step it is asked to take into a shared log.
    /// struct Step(&'static str, Arc<Mutex<Vec<String>>>);
    /// impl Participant for Step {
    ///     fn name(&self) -> String { self.0.into() }
    ///     fn prepare(&mut self) -> Result<(), ParticipantError> { self.log("prepare") }
    ///     fn commit(&mut self) -> Result<(), ParticipantError> { self.log("commit") }
    ///     fn compensate(&mut self) -> Result<(), ParticipantError> { self.log("compensate") }
    /// }
    /// impl Step {
    ///     fn log(&self, what: &str) -> Result<(), ParticipantError> {
    ///         self.1.lock().unwrap().push(format!("{what} {}", self.0));
    ///         Ok(())
    ///     }
    /// }
    /// let log = Arc::new(Mutex::new(Vec::new()));
    /// let mut uow = UnitOfWork::new();
    /// uow.register_new(Note { id: 1, body: "".into() })?; // the database refuses this row
    /// uow.enlist(Step("a", log.clone()));
    /// uow.enlist(Step("b", log.clone()));
    /// assert!(uow.commit(&mut conn).is_err());
    /// assert_eq!(*log.lock().unwrap(), ["prepare a", "prepare b", "compensate b", "compensate a"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn compensate(&mut self) -> Result<(), ParticipantError>;
}

/// The participants enlisted for the next commit, and the protocol over them.
#[derive(Default)]
pub(crate) struct Participants {
    list: Vec<Box<dyn Participant>>,
    /// How many of `list` (from the front) are prepared and not yet committed or compensated:
    /// what a failure, or a panic anywhere in the commit, must compensate.
    prepared: usize,
}

impl Participants {
    pub fn push(&mut self, participant: Box<dyn Participant>) {
        self.list.push(participant);
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Drops participants enlisted after the first `len` (a nested scope that failed).
    pub fn truncate(&mut self, len: usize) {
        self.list.truncate(len);
        self.prepared = self.prepared.min(len);
    }

    /// Prepares every participant; on the first failure compensates those already prepared
    /// and returns the error. If a `prepare` panics, the ones before it stay counted as
    /// prepared, for [`compensate`](Self::compensate) to undo.
    pub fn prepare(&mut self) -> Result<(), Error> {
        while self.prepared < self.list.len() {
            let index = self.prepared;
            if let Err(source) = self.list[index].prepare() {
                let error = Error::Participant {
                    participant: self.list[index].name(),
                    source,
                };
                return Err(self.compensate(error));
            }
            self.prepared += 1;
        }
        Ok(())
    }

    /// Compensates the prepared participants in reverse order after `cause`; returns `cause`,
    /// or [`Error::Compensation`] when some could not be undone. Nothing to do when none is
    /// prepared.
    pub fn compensate(&mut self, cause: Error) -> Error {
        let not_undone = self.undo_prepared();
        if not_undone.is_empty() {
            cause
        } else {
            Error::Compensation {
                cause: Box::new(cause),
                not_undone,
            }
        }
    }

    /// After a panic: compensates the prepared participants. The panic is what the caller
    /// gets, so compensations that fail can only be traced.
    pub fn compensate_after_panic(&mut self) {
        let not_undone = self.undo_prepared();
        crate::trace::not_undone_after_panic(&not_undone);
    }

    /// Compensates the prepared participants, last first; returns those that failed.
    fn undo_prepared(&mut self) -> Vec<(String, String)> {
        let mut failed = Vec::new();
        let prepared = std::mem::take(&mut self.prepared).min(self.list.len());
        for participant in self.list[..prepared].iter_mut().rev() {
            if let Err(error) = participant.compensate() {
                failed.push((participant.name(), error.to_string()));
            }
        }
        failed
    }

    /// Commits every participant after the database committed, then forgets them all. Every
    /// participant is committed even if one fails; the failures are reported together.
    pub fn commit(&mut self) -> Result<(), Error> {
        let mut failed = Vec::new();
        self.prepared = 0;
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
