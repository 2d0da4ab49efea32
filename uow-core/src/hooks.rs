//! Hooks around a commit: before it (may still change what is written), after it succeeded
//! (with what was written), after it failed. Every hook is `Send`, like the unit of work.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use crate::error::{Error, Result};
use crate::report::CommitReport;
use crate::unit_of_work::UnitOfWork;

/// What a before-commit hook may fail with.
type HookError = Box<dyn std::error::Error + Send + Sync>;

type BeforeCommit<C> = Box<dyn FnMut(&mut UnitOfWork<C>) -> Result<(), HookError> + Send>;
type AfterCommit = Box<dyn FnMut(&CommitReport) + Send>;
type AfterRollback = Box<dyn FnMut(Option<&Error>) + Send>;

pub(crate) struct Hooks<C> {
    before_commit: Vec<BeforeCommit<C>>,
    after_commit: Vec<AfterCommit>,
    after_rollback: Vec<AfterRollback>,
}

impl<C> Default for Hooks<C> {
    fn default() -> Self {
        Hooks {
            before_commit: Vec::new(),
            after_commit: Vec::new(),
            after_rollback: Vec::new(),
        }
    }
}

impl<C> Hooks<C> {
    /// Whether a commit needs a save point: before-commit hooks may change entities.
    pub fn before_commit_any(&self) -> bool {
        !self.before_commit.is_empty()
    }
}

impl<C> UnitOfWork<C> {
    /// Runs `hook` before every commit (and at the end of every outermost scope), before
    /// anything is written; it may still register changes. An error stops the commit.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// uow.on_before_commit(|uow| {
    ///     if uow.len() > 100 {
    ///         return Err("too many entities in one commit".into());
    ///     }
    ///     Ok(())
    /// });
    /// ```
    pub fn on_before_commit(
        &mut self,
        hook: impl FnMut(&mut UnitOfWork<C>) -> Result<(), HookError> + Send + 'static,
    ) {
        self.hooks.before_commit.push(Box::new(hook));
    }

    /// Runs `hook` after every successful commit (and outermost scope), with what was written.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// uow.on_after_commit(|report| println!("committed: {report}"));
    /// ```
    pub fn on_after_commit(&mut self, hook: impl FnMut(&CommitReport) + Send + 'static) {
        self.hooks.after_commit.push(Box::new(hook));
    }

    /// Runs `hook` after every failed commit or rolled-back outermost scope: with the error for
    /// a failed `commit`, with `None` for a scope (its error, or panic, goes to the caller).
    ///
    /// ```
    /// # use uow::prelude::*;
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// uow.on_after_rollback(|error| eprintln!("rolled back: {error:?}"));
    /// ```
    pub fn on_after_rollback(&mut self, hook: impl FnMut(Option<&Error>) + Send + 'static) {
        self.hooks.after_rollback.push(Box::new(hook));
    }

    pub(crate) fn run_before_commit_hooks(&mut self) -> Result<()> {
        if self.hooks.before_commit.is_empty() {
            return Ok(());
        }
        // Taken out while they run (a hook gets `&mut self`), and put back even if one panics.
        let mut hooks = std::mem::take(&mut self.hooks.before_commit);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            for hook in &mut hooks {
                hook(self).map_err(Error::Hook)?;
            }
            Ok(())
        }));
        hooks.append(&mut self.hooks.before_commit);
        self.hooks.before_commit = hooks;
        outcome.unwrap_or_else(|panic| resume_unwind(panic))
    }

    pub(crate) fn run_after_commit_hooks(&mut self, report: &CommitReport) {
        for hook in &mut self.hooks.after_commit {
            hook(report);
        }
    }

    pub(crate) fn run_after_rollback_hooks(&mut self, error: Option<&Error>) {
        for hook in &mut self.hooks.after_rollback {
            hook(error);
        }
    }
}
