//! Hooks around a commit: before it (they may still change what is written), after it
//! succeeded (with what was written), after it failed. Every hook is `Send`, like the unit of
//! work that holds them. Generic over the holder `U` (the unit of work), which a
//! before-commit hook gets mutably.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use crate::error::{Error, Result};
use crate::report::CommitReport;

/// What a before-commit hook may fail with.
pub(crate) type HookError = Box<dyn std::error::Error + Send + Sync>;

type BeforeCommit<U> = Box<dyn FnMut(&mut U) -> Result<(), HookError> + Send>;
type AfterCommit = Box<dyn FnMut(&CommitReport) + Send>;
type AfterRollback = Box<dyn FnMut(Option<&Error>) + Send>;

pub(crate) struct Hooks<U> {
    before_commit: Vec<BeforeCommit<U>>,
    after_commit: Vec<AfterCommit>,
    after_rollback: Vec<AfterRollback>,
}

impl<U> Default for Hooks<U> {
    fn default() -> Self {
        Hooks {
            before_commit: Vec::new(),
            after_commit: Vec::new(),
            after_rollback: Vec::new(),
        }
    }
}

impl<U> Hooks<U> {
    pub fn push_before_commit(&mut self, hook: BeforeCommit<U>) {
        self.before_commit.push(hook);
    }

    pub fn push_after_commit(&mut self, hook: AfterCommit) {
        self.after_commit.push(hook);
    }

    pub fn push_after_rollback(&mut self, hook: AfterRollback) {
        self.after_rollback.push(hook);
    }

    /// Whether a commit needs a save point: before-commit hooks may change entities.
    pub fn before_commit_any(&self) -> bool {
        !self.before_commit.is_empty()
    }

    /// Runs the before-commit hooks on `holder`, whose hooks `hooks` finds. A hook gets
    /// `&mut holder`, so the hooks are taken out while they run, and put back (with any a hook
    /// registered) even if one panics; the first error stops them (`Error::Hook`).
    pub fn run_before_commit(holder: &mut U, hooks: fn(&mut U) -> &mut Hooks<U>) -> Result<()> {
        if hooks(holder).before_commit.is_empty() {
            return Ok(());
        }
        let mut running = std::mem::take(&mut hooks(holder).before_commit);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            for hook in &mut running {
                hook(holder).map_err(Error::Hook)?;
            }
            Ok(())
        }));
        let added = std::mem::take(&mut hooks(holder).before_commit);
        running.extend(added);
        hooks(holder).before_commit = running;
        outcome.unwrap_or_else(|panic| resume_unwind(panic))
    }

    pub fn after_commit(&mut self, report: &CommitReport) {
        for hook in &mut self.after_commit {
            hook(report);
        }
    }

    pub fn after_rollback(&mut self, error: Option<&Error>) {
        for hook in &mut self.after_rollback {
            hook(error);
        }
    }
}
