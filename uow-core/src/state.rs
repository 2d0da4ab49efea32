//! The state of a unit of work, with no connection in sight: its stores, its open save points,
//! its participants and its domain events. Everything here is pure bookkeeping; the protocol
//! (`protocol.rs`, `scope.rs`) decides when, and the execution layer (`exec/`) is the only
//! code that talks to the database.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::events::Events;
use crate::report::CommitReport;
use crate::resource::Participants;
use crate::stores::{StoreSet, SyncedRoot};

static NEXT_UNIT_ID: AtomicU64 = AtomicU64::new(1);

/// A level of the unit of work that can be undone: an open scope, or the save point a commit
/// takes around its before-commit hooks.
struct Level {
    /// Participants and pending events when it began.
    participants: usize,
    events: usize,
}

pub(crate) struct State {
    /// Tells handles of this unit of work from others'.
    pub id: u64,
    pub stores: StoreSet,
    pub participants: Participants,
    pub events: Events,
    /// Open save points, outermost first; stores keep one log per entry.
    levels: Vec<Level>,
    /// Transaction scopes open on this unit of work (nested ones on savepoints).
    scope_depth: usize,
    /// The roots whose members the write under way brought in line with their trees.
    synced_roots: Vec<SyncedRoot>,
    /// Per open scope: the rows its flushes wrote (a nested scope's fold into its parent's
    /// when it succeeds).
    scope_reports: Vec<CommitReport>,
}

impl State {
    pub fn new() -> Self {
        State {
            id: NEXT_UNIT_ID.fetch_add(1, Ordering::Relaxed),
            stores: StoreSet::default(),
            participants: Participants::default(),
            events: Events::default(),
            levels: Vec::new(),
            scope_depth: 0,
            synced_roots: Vec::new(),
            scope_reports: Vec::new(),
        }
    }

    /// Save points open now (a store created now starts with one empty log per level).
    pub fn open_levels(&self) -> usize {
        self.levels.len()
    }

    pub fn in_scope(&self) -> bool {
        self.scope_depth > 0
    }

    /// From here on, changes to entities, participants and events can be undone (one level).
    pub fn save_point(&mut self) {
        self.begin_level(false);
    }

    /// A save point around one commit or flush without hooks: nothing changes a tree while it
    /// is open, so roots are saved without theirs (see `store/levels.rs`).
    pub fn write_point(&mut self) {
        self.begin_level(true);
    }

    fn begin_level(&mut self, trees_kept: bool) {
        self.levels.push(Level {
            participants: self.participants.len(),
            events: self.events.mark(),
        });
        for store in self.stores.iter_mut() {
            store.begin_level(trees_kept);
        }
    }

    /// Keeps or undoes everything since the matching `save_point`.
    pub fn restore_point(&mut self, keep: bool) {
        if let Some(level) = self.levels.pop() {
            if !keep {
                self.participants.truncate(level.participants);
                self.events.truncate(level.events);
            }
        }
        for store in self.stores.iter_mut() {
            store.end_level(keep);
        }
    }

    /// A scope begins: a save point, and a report for its flushes.
    pub fn begin_scope(&mut self) {
        self.scope_depth += 1;
        self.scope_reports.push(CommitReport::default());
        self.save_point();
    }

    /// Closes the innermost scope: keeps its changes, or puts every entity back as it was
    /// when the scope began. Returns the rows its flushes wrote (kept, or rolled back).
    pub fn end_scope(&mut self, keep: bool) -> CommitReport {
        self.scope_depth = self.scope_depth.saturating_sub(1);
        self.restore_point(keep);
        let report = self.scope_reports.pop().unwrap_or_default();
        if keep {
            if let Some(outer) = self.scope_reports.last_mut() {
                outer.absorb(&report);
            }
        }
        crate::trace::scope_end(keep, &report);
        report
    }

    /// Adds what a write sent to the innermost scope's report.
    pub fn scope_wrote(&mut self, sent: &CommitReport) {
        if let Some(level) = self.scope_reports.last_mut() {
            level.absorb(sent);
        }
    }

    /// The write under way committed (`true`: what it produced replaces the entities, which
    /// settle) or failed (what it produced is dropped).
    pub fn end_write(&mut self, committed: bool) {
        for store in self.stores.iter_mut() {
            store.end_write(committed);
        }
        // The members settled; what they stored goes into their roots' trees.
        for root in std::mem::take(&mut self.synced_roots) {
            if committed {
                root.write_back(&mut self.stores);
            }
        }
    }

    /// Whether the next write brings an aggregate in line with its tree (a root was touched):
    /// the members it changes are then to be undone with the write if it fails.
    pub fn syncs_aggregates(&self) -> bool {
        self.stores.iter().any(|s| s.sync_roots().is_some())
    }

    /// Brings every aggregate whose root was touched in line with its tree, before a write is
    /// planned (see `aggregates.rs`).
    pub fn sync_aggregates(&mut self) -> crate::error::Result<()> {
        self.synced_roots.clear();
        for index in 0..self.stores.len() {
            let sync = self.stores.dyn_at(index).and_then(|s| s.sync_roots());
            if let Some(sync) = sync {
                sync(&mut self.stores, index, &mut self.synced_roots)?;
            }
        }
        Ok(())
    }

    /// After the database committed: events become available, participants finish.
    pub fn committed(&mut self) -> crate::error::Result<()> {
        self.events.commit(&self.stores);
        self.participants.commit()
    }
}
