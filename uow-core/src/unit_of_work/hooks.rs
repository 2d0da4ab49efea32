//! What runs around a commit besides the statements: participants outside the database
//! (`enlist`), and hooks before every commit (may still register changes, or stop the
//! commit), after a commit (with its report), after a rollback (with its error).

use crate::error::{Error, Result};
use crate::exec::Driver;
use crate::hooks::{HookError, Hooks};
use crate::report::CommitReport;
use crate::resource::Participant;

use super::UnitOfWork;

impl<C: Driver> UnitOfWork<C> {
    /// Enlists a participant outside the database (an [`AtomicFile`](crate::AtomicFile), a
    /// provisioned server...) in the next commit: it is prepared before the database commits,
    /// committed after, and compensated if anything fails. After a failed commit it stays
    /// enlisted for the retry; after a successful one it is done.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # use diesel::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// # let mut conn = SqliteConnection::establish(":memory:")?;
    /// # diesel::sql_query("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL CHECK (body <> ''))").execute(&mut conn)?;
    /// let dir = std::env::temp_dir().join(format!("uow-enlist-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let export = dir.join("notes.csv");
    /// let mut uow = UnitOfWork::new();
    /// let note = uow.register_new(Note { id: 1, body: "".into() })?; // the CHECK refuses it
    /// uow.enlist(uow::AtomicFile::new(&export, "1,hello\n"));
    /// assert!(uow.commit(&mut conn).is_err());
    /// assert!(!export.exists(), "staged, then compensated: no file");
    /// uow.get_mut(&note)?.body = "hello".into();
    /// uow.commit(&mut conn)?; // still enlisted for the retry
    /// assert_eq!(std::fs::read_to_string(&export)?, "1,hello\n");
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn enlist(&mut self, participant: impl Participant + 'static) {
        self.state.participants.push(Box::new(participant));
    }

    /// Runs `hook` before every commit (and at the end of every outermost scope), before
    /// anything is written; it may still register changes. An error stops the commit.
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
    /// let mut uow = UnitOfWork::new();
    /// uow.on_before_commit(|uow| {
    ///     if uow.len() > 1 {
    ///         return Err("one note per commit".into());
    ///     }
    ///     Ok(())
    /// });
    /// uow.register_new(Note { id: 1, body: "a".into() })?;
    /// uow.register_new(Note { id: 2, body: "b".into() })?;
    /// assert!(matches!(uow.commit(&mut conn), Err(uow::Error::Hook(_))));
    /// let count: i64 = notes::table.count().get_result(&mut conn)?;
    /// assert_eq!(count, 0, "nothing was written");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_before_commit(
        &mut self,
        hook: impl FnMut(&mut UnitOfWork<C>) -> Result<(), HookError> + Send + 'static,
    ) {
        self.hooks.push_before_commit(Box::new(hook));
    }

    /// Runs `hook` after every successful commit (and outermost scope), with what was written.
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
    /// use std::sync::{Arc, Mutex};
    /// let log = Arc::new(Mutex::new(Vec::new()));
    /// let mut uow = UnitOfWork::new();
    /// let seen = log.clone();
    /// uow.on_after_commit(move |report| seen.lock().unwrap().push(report.to_string()));
    /// uow.register_new(Note { id: 1, body: "a".into() })?;
    /// uow.commit(&mut conn)?;
    /// assert_eq!(*log.lock().unwrap(), ["notes: 1 inserted, 0 updated, 0 deleted (1 statement(s))"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_after_commit(&mut self, hook: impl FnMut(&CommitReport) + Send + 'static) {
        self.hooks.push_after_commit(Box::new(hook));
    }

    /// Runs `hook` after every failed commit or rolled-back outermost scope: with the error for
    /// a failed `commit`, with `None` for a scope (its error, or panic, goes to the caller).
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # use diesel::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// # let mut conn = SqliteConnection::establish(":memory:")?;
    /// # diesel::sql_query("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL CHECK (body <> ''))").execute(&mut conn)?;
    /// use std::sync::{Arc, Mutex};
    /// let log = Arc::new(Mutex::new(Vec::new()));
    /// let mut uow = UnitOfWork::new();
    /// let seen = log.clone();
    /// uow.on_after_rollback(move |error| seen.lock().unwrap().push(error.is_some()));
    /// uow.register_new(Note { id: 1, body: "".into() })?; // the CHECK refuses it
    /// assert!(uow.commit(&mut conn).is_err());
    /// let _ = uow.transaction(&mut conn, |_| Err::<(), Box<dyn std::error::Error>>("no".into()));
    /// assert_eq!(*log.lock().unwrap(), [true, false]); // a failed commit, then a scope
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_after_rollback(&mut self, hook: impl FnMut(Option<&Error>) + Send + 'static) {
        self.hooks.push_after_rollback(Box::new(hook));
    }

    pub(crate) fn run_before_commit_hooks(&mut self) -> Result<()> {
        Hooks::run_before_commit(self, |uow| &mut uow.hooks)
    }
}
