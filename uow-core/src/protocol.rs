//! The commit protocol, once, for [`UnitOfWork::commit`] and the end of an outermost
//! [`transaction`](crate::transaction) scope; and `flush`.
//!
//! [`UnitOfWork::finish`] runs it: before-commit hooks; refusing participants inside a
//! transaction opened outside the unit of work; preparing participants (before the write for
//! a commit, right before COMMIT for a scope: [`PrepareAt`]); planning and sending every
//! pending change, what the statements produce kept aside in the stores; COMMIT. Then, on
//! success: the save point kept, the kept-aside values applied (entities settle), events
//! released, participants committed, after-commit hooks. On failure or panic: the database
//! rolled back to where the unit of work found it, what the write produced dropped, prepared
//! participants compensated, the save point undone (memory as before), after-rollback hooks.
//!
//! The protocol is `async` over the [`Driver`]: the synchronous methods (`commit`, `flush`)
//! run it to the end at once ([`block`]); the async ones (`asynchronous.rs`) await it. A
//! future dropped before the end (an async write cancelled) is undone by [`Write`]'s `Drop`:
//! memory as before, prepared participants compensated, and the connection marked broken,
//! since a transaction of ours may be open on it with statements sent.

use std::any::Any;
use std::future::Future;
use std::panic::{resume_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::task::Poll;

use diesel::connection::LoadConnection;
use diesel::Connection;

use crate::error::{Error, Result};
use crate::exec::driver::block;
use crate::exec::{self, transaction, Dialect, Driver};
use crate::plan::{Plan, TableInfo};
use crate::planning;
use crate::preview::PlanPreview;
use crate::report::CommitReport;
use crate::unit_of_work::UnitOfWork;

/// When participants prepare: the one thing a commit and a scope do in a different order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrepareAt {
    /// Before the database transaction begins (`commit`): no lock is held while they work.
    BeforeWrite,
    /// After the last flush, right before COMMIT (a scope, whose transaction is open already).
    BeforeCommit,
}

/// How one run of the protocol goes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Finish {
    pub prepare: PrepareAt,
    /// `commit` begins (and commits) a transaction of its own; a scope commits its own, open
    /// since the scope began.
    pub begin: bool,
    /// The depth of the transactions open on the connection before the unit of work's own
    /// began: `Some` means a transaction opened elsewhere encloses it.
    pub depth_before: Option<u32>,
    /// The save point to close: a scope's level (`true`), or the one a commit or flush opens
    /// around its hooks and the members its aggregates bring in line, if it opened one
    /// (`save_point`).
    pub scope: bool,
    pub save_point: bool,
}

/// Polls `future`, catching a panic in any poll: the protocol undoes what it began, then lets
/// the panic continue.
pub(crate) async fn catch_unwind<F: Future>(
    future: F,
) -> std::result::Result<F::Output, Box<dyn Any + Send>> {
    let mut future = pin!(future);
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    })
    .await
}

/// One run of the protocol in progress. Until [`Write::disarm`] (after its last `.await`),
/// dropping it means the run was cancelled half way, and `Drop` undoes it: the write's
/// results dropped and the save point undone (memory as before the call), prepared
/// participants compensated, after-rollback hooks run, and the connection marked broken.
struct Write<'w, C: Driver> {
    uow: &'w mut UnitOfWork<C>,
    conn: &'w mut C::Conn,
    how: Finish,
    /// Whether the run ends a commit or scope (after-rollback hooks run when it fails), not a
    /// flush.
    ends_commit: bool,
    armed: bool,
}

impl<C: Driver> Write<'_, C> {
    fn disarm(&mut self) {
        self.armed = false;
    }

    /// Everything up to and including COMMIT: before-commit hooks, participants prepared
    /// (where `how` says), the plan sent (`sent` collects its rows, `span` gets the write's
    /// span if anything is sent).
    async fn send_all(
        &mut self,
        sent: &mut CommitReport,
        span: &mut Option<crate::trace::Span>,
    ) -> Result<()> {
        let how = self.how;
        let uow = &mut *self.uow;
        uow.run_before_commit_hooks()?;
        if how.depth_before.is_some() && !uow.state.participants.is_empty() {
            // Participants become final when our COMMIT returns, which must then be the
            // real one, not a savepoint's release inside somebody else's transaction.
            return Err(Error::ParticipantsInOuterTransaction);
        }
        if how.prepare == PrepareAt::BeforeWrite {
            uow.state.participants.prepare()?;
        }
        let plan = uow.plan_write()?;
        sent.examined_by(plan.examined);
        #[cfg(feature = "outbox")]
        let outbox = uow.state.events.has_outbox_rows();
        #[cfg(not(feature = "outbox"))]
        let outbox = false;
        let begin = how.begin && (!plan.is_empty() || outbox);
        if begin {
            let mode = how.depth_before.is_none().then_some(uow.transaction_mode);
            transaction::begin::<C>(self.conn, mode).await?;
        }
        if !plan.is_empty() {
            let what = if how.scope { "flush" } else { "commit" };
            let span = span.insert(crate::trace::write_span(what));
            crate::trace::in_span(span, uow.send_plan(self.conn, &plan, sent)).await?;
        }
        #[cfg(feature = "outbox")]
        if outbox {
            // After the entities' rows, so the keys the database assigned are known.
            let rows = uow.state.events.outbox_rows(&uow.state.stores);
            exec::outbox::insert_rows::<C>(self.conn, &rows, sent).await?;
        }
        if how.prepare == PrepareAt::BeforeCommit {
            uow.state.participants.prepare()?;
        }
        if begin || !how.begin {
            transaction::commit::<C>(self.conn, how.depth_before.is_none()).await?;
        }
        Ok(())
    }
}

impl<C: Driver> Drop for Write<'_, C> {
    fn drop(&mut self) {
        if self.armed {
            transaction::mark_broken::<C>(self.conn);
            self.uow.state.end_write(false);
            self.uow.state.participants.compensate_after_panic();
            self.uow.close_level(self.how, false);
            if self.ends_commit {
                self.uow.hooks.after_rollback(None);
            }
        }
    }
}

impl<C> UnitOfWork<C>
where
    C: Connection + LoadConnection + Send + 'static,
    C::Backend: Dialect,
{
    /// Writes every pending change in one transaction: INSERTs for new entities (generated
    /// values written back), UPDATEs of exactly the changed columns, DELETEs of removed ones.
    ///
    /// On success new and dirty entities become clean with their current values as the new
    /// baseline, and removed ones leave the unit of work. On failure the transaction is rolled
    /// back and every entity is exactly as before the call (values, states, changed fields, no
    /// generated key kept), so fixing the cause and calling `commit` again sends each change
    /// once. With nothing pending no statement is sent, not even `BEGIN`.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # use diesel::{Connection, RunQueryDsl, SqliteConnection};
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { #[tracked(generated)] id: i32, body: String }
    /// let mut conn = SqliteConnection::establish(":memory:")?;
    /// diesel::sql_query("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL CHECK (body <> ''))").execute(&mut conn)?;
    /// let mut uow = UnitOfWork::new();
    /// let note = uow.register_new(Note { id: 0, body: "".into() })?;
    /// assert!(uow.commit(&mut conn).is_err(), "the CHECK refuses the row");
    /// assert_eq!(uow.get(&note)?.id, 0, "nothing kept from the failed commit");
    /// uow.get_mut(&note)?.body = "fixed".into();
    /// let report = uow.commit(&mut conn)?; // the same change, sent once
    /// assert_eq!(report.inserted("notes"), 1);
    /// assert_eq!(uow.get(&note)?.id, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn commit(&mut self, conn: &mut C) -> Result<CommitReport> {
        block(self.commit_on(conn))
    }

    /// Sends every pending change inside the transaction already open on `conn`, so the
    /// database assigns keys now while a later failure can still roll everything back.
    ///
    /// This is the flush for a transaction you opened yourself (`conn.transaction(...)`):
    /// memory cannot follow a later rollback of it, so prefer the scoped form, whose
    /// [`Scope::flush`](crate::Scope::flush) is undone with the scope, database and memory.
    ///
    /// Fails with [`Error::NoTransaction`] when `conn` has no open transaction, and with
    /// [`Error::FlushInScope`] inside a scope (use the scope's own `flush`). The flush itself
    /// runs on a savepoint: if it fails, the database and the entities are as before the flush.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # use diesel::{Connection, RunQueryDsl, SqliteConnection};
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { #[tracked(generated)] id: i32, body: String }
    /// let mut conn = SqliteConnection::establish(":memory:")?;
    /// diesel::sql_query("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)").execute(&mut conn)?;
    /// let mut uow = UnitOfWork::new();
    /// let note = uow.register_new(Note { id: 0, body: "draft".into() })?;
    /// conn.transaction::<_, Box<dyn std::error::Error>, _>(|conn| {
    ///     uow.flush(conn)?; // the key is assigned now, inside your transaction
    ///     assert_eq!(uow.get(&note)?.id, 1);
    ///     Ok(())
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn flush(&mut self, conn: &mut C) -> Result<CommitReport> {
        if self.in_scope() {
            return Err(Error::FlushInScope);
        }
        block(self.flush_on(conn))
    }
}

impl<C: Driver> UnitOfWork<C> {
    /// `commit`, on either driver.
    pub(crate) async fn commit_on(&mut self, conn: &mut C::Conn) -> Result<CommitReport> {
        if self.in_scope() {
            return Err(Error::CommitInScope);
        }
        let depth_before = transaction::depth::<C>(conn).await?;
        transaction::check_mode(self.transaction_mode, depth_before)?;
        // Changes made by before-commit hooks are part of this call: a failed commit undoes
        // them too, and so the members an aggregate's tree brings in line (new ones held, the
        // root's state). Without either, nothing but the commit itself changes memory.
        let hooks = self.hooks.before_commit_any();
        let save_point = hooks || self.state.syncs_aggregates();
        if hooks {
            self.state.save_point();
        } else if save_point {
            self.state.write_point();
        }
        let how = Finish {
            prepare: PrepareAt::BeforeWrite,
            begin: true,
            depth_before,
            scope: false,
            save_point,
        };
        self.finish(conn, how).await
    }

    /// Runs the protocol (see the module documentation).
    pub(crate) async fn finish(&mut self, conn: &mut C::Conn, how: Finish) -> Result<CommitReport> {
        let mut sent = CommitReport::default();
        // Only a write that sends something gets a span.
        let mut span = None;
        let mut write = Write {
            uow: self,
            conn,
            how,
            ends_commit: true,
            armed: true,
        };
        // A panic (in a hook, a participant, a user's `ToSql`) must not leave participants
        // prepared, a transaction open or the save point in place: it is caught, everything
        // undone, and resumed.
        let outcome = catch_unwind(write.send_all(&mut sent, &mut span)).await;
        if outcome.as_ref().is_ok_and(|sent| sent.is_ok()) {
            write.disarm();
        } else {
            transaction::roll_back_to::<C>(write.conn, how.depth_before).await;
            write.disarm();
        }
        let uow = &mut *write.uow;
        match outcome {
            Ok(Ok(())) => {
                if let Some(span) = &span {
                    crate::trace::write_done(span, &sent);
                }
                uow.state.scope_wrote(&sent);
                let report = uow.close_level(how, true).unwrap_or(sent);
                // The level is closed first, so settling saves nothing for it.
                uow.state.end_write(true);
                let finalized = uow.state.committed();
                uow.hooks.after_commit(&report);
                finalized.map(|()| report)
            }
            Ok(Err(error)) => {
                let error = error.or_connection_lost(false);
                uow.state.end_write(false);
                let error = uow.state.participants.compensate(error);
                if let Some(span) = &span {
                    let what = if how.scope { "flush" } else { "commit" };
                    crate::trace::write_failed(span, what, &sent, &error);
                }
                uow.close_level(how, false);
                uow.hooks.after_rollback((!how.scope).then_some(&error));
                Err(error)
            }
            Err(panic) => {
                uow.state.end_write(false);
                uow.state.participants.compensate_after_panic();
                uow.close_level(how, false);
                uow.hooks.after_rollback(None);
                resume_unwind(panic)
            }
        }
    }

    /// Closes the save point `how` says this run holds: the scope's level (returning the rows
    /// of every flush of the scope) or the hooks' save point of a commit.
    fn close_level(&mut self, how: Finish, keep: bool) -> Option<CommitReport> {
        if how.scope {
            return Some(self.state.end_scope(keep));
        }
        if how.save_point {
            self.state.restore_point(keep);
        }
        None
    }

    /// `flush` on a connection the caller vouches for (the scope's own): on a savepoint,
    /// applied to the entities as soon as the savepoint is released (a scope's level can still
    /// undo it).
    pub(crate) async fn flush_on(&mut self, conn: &mut C::Conn) -> Result<CommitReport> {
        let depth_before = transaction::depth::<C>(conn).await?;
        if depth_before.is_none() {
            return Err(Error::NoTransaction);
        }
        transaction::check_mode(self.transaction_mode, depth_before)?;
        // As in `commit_on`: the members a tree brings in line are undone if the flush fails.
        let save_point = self.state.syncs_aggregates();
        if save_point {
            self.state.write_point();
        }
        let plan = match self.plan_write() {
            Ok(plan) => plan,
            Err(error) => {
                self.state.end_write(false);
                if save_point {
                    self.state.restore_point(false);
                }
                return Err(error);
            }
        };
        let mut sent = CommitReport::default();
        sent.examined_by(plan.examined);
        if plan.is_empty() {
            if save_point {
                self.state.restore_point(true);
            }
            self.state.end_write(true);
            self.state.scope_wrote(&sent);
            return Ok(sent);
        }
        let span = crate::trace::write_span("flush");
        let mut write = Write {
            uow: self,
            conn,
            how: Finish {
                prepare: PrepareAt::BeforeWrite,
                begin: false,
                depth_before,
                scope: false,
                save_point,
            },
            ends_commit: false,
            armed: true,
        };
        let flush = async {
            transaction::begin::<C>(write.conn, None).await?;
            let send = write.uow.send_plan(write.conn, &plan, &mut sent);
            crate::trace::in_span(&span, send).await?;
            transaction::commit::<C>(write.conn, false).await
        };
        let outcome = catch_unwind(flush).await;
        if !outcome.as_ref().is_ok_and(|flushed| flushed.is_ok()) {
            transaction::roll_back_to::<C>(write.conn, depth_before).await;
        }
        write.disarm();
        let uow = &mut *write.uow;
        let how = write.how;
        match outcome {
            Ok(Ok(())) => {
                // The level is closed first, so settling saves nothing for it.
                uow.close_level(how, true);
                uow.state.end_write(true);
                crate::trace::write_done(&span, &sent);
                uow.state.scope_wrote(&sent);
                Ok(sent)
            }
            Ok(Err(error)) => {
                let error = error.or_connection_lost(false);
                uow.state.end_write(false);
                uow.close_level(how, false);
                crate::trace::write_failed(&span, "flush", &sent, &error);
                Err(error)
            }
            Err(panic) => {
                uow.state.end_write(false);
                uow.close_level(how, false);
                resume_unwind(panic)
            }
        }
    }

    /// Sends `plan` on the transaction open on `conn` (the execution layer's loop).
    async fn send_plan(
        &mut self,
        conn: &mut C::Conn,
        plan: &Plan,
        sent: &mut CommitReport,
    ) -> Result<()> {
        let session = &mut self.session;
        exec::send_plan::<C>(&mut self.state.stores, &self.io, conn, session, plan, sent).await
    }

    /// The plan of a write about to be sent: new entities whose key was changed in Rust are
    /// refiled first (edges and the identity map find parents by the key they are filed
    /// under).
    fn plan_write(&mut self) -> Result<Plan> {
        self.state.sync_aggregates()?;
        for store in self.state.stores.iter_mut() {
            store.refile_new_keys()?;
        }
        planning::plan(&self.state.stores, &self.tables())
    }

    /// Each store's batch sizes on this backend.
    fn tables(&self) -> Vec<TableInfo> {
        self.io.iter().map(|io| (io.table_info)()).collect()
    }

    /// Whether the next commit would write anything.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// let note = uow.attach(Note { id: 1, body: "a".into() });
    /// assert!(!uow.has_changes());
    /// uow.get_mut(&note)?.body = "b".into();
    /// assert!(uow.has_changes());
    /// uow.get_mut(&note)?.body = "a".into();
    /// assert!(!uow.has_changes(), "set back: nothing to write");
    /// # Ok::<(), uow::Error>(())
    /// ```
    pub fn has_changes(&mut self) -> bool {
        if self.state.sync_aggregates().is_err() {
            return true;
        }
        !matches!(planning::plan(&self.state.stores, &self.tables()), Ok(plan) if plan.is_empty())
    }

    /// What the next commit would send, without sending anything; printable.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// let note = uow.register_clean(Note { id: 7, body: "a".into() })?;
    /// uow.get_mut(&note)?.body = "b".into();
    /// let preview = uow.plan()?;
    /// assert_eq!(preview.statement_count(), 1);
    /// assert!(preview.to_string().contains("UPDATE notes (Note): 1 row(s)"));
    /// # Ok::<(), uow::Error>(())
    /// ```
    pub fn plan(&mut self) -> Result<PlanPreview> {
        self.state.sync_aggregates()?;
        planning::preview(&self.state.stores, &self.tables())
    }
}
