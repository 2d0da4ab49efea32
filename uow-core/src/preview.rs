//! What a commit would send, printed: [`PlanPreview`] (like EF Core's `DebugView`), and the
//! names of entities in cycle errors. A new entity may have no key yet: it is named by the
//! values set in Rust, and a foreign key a new parent fills in reads `key of new Parent`.

use std::fmt;

use crate::entity::{Entity, FieldInfo};
use crate::error::Operation;
use crate::plan::{ChangeKind, Step};
use crate::store::{key_text, FieldValue, Store};
use crate::tracking::Tracked;

/// A plan with names, ready to print: see [`UnitOfWork::plan`](crate::UnitOfWork::plan).
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
/// let preview: uow::PlanPreview = uow.plan()?;
/// assert_eq!(preview.statement_count(), 1);
/// assert_eq!(preview.to_string(), "UPDATE notes (Note): 1 row(s) in 1 statement(s)\n  key 7: body: \"a\" -> \"b\"\n");
/// # Ok::<(), uow::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanPreview {
    pub(crate) lines: Vec<PreviewStep>,
    pub(crate) examined: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PreviewStep {
    pub operation: Operation,
    pub table: &'static str,
    pub entity: &'static str,
    /// One line per row: the key, and for updates `column: old -> new`.
    pub rows: Vec<String>,
    pub statements: usize,
}

impl PlanPreview {
    /// How many statements the commit would send.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// for id in 1..=3 {
    ///     uow.register_new(Note { id, body: "new".into() })?;
    /// }
    /// let old = uow.attach(Note { id: 9, body: "old".into() });
    /// uow.register_removed(&old)?;
    /// let preview = uow.plan()?;
    /// assert_eq!(preview.statement_count(), 2); // one DELETE, one INSERT of 3 rows
    /// # Ok::<(), uow::Error>(())
    /// ```
    pub fn statement_count(&self) -> usize {
        self.lines.iter().map(|s| s.statements).sum()
    }

    /// How many entities the commit would look at to find what to write (see
    /// [`CommitReport::examined`](crate::CommitReport::examined)): the ones touched since the
    /// last commit, not every one held.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// let notes = uow.attach_all((1..=1_000).map(|id| Note { id, body: "a".into() }));
    /// assert_eq!(uow.plan()?.examined(), 0);
    /// uow.get_mut(&notes[0])?.body = "b".into();
    /// assert_eq!(uow.plan()?.examined(), 1);
    /// # Ok::<(), uow::Error>(())
    /// ```
    pub fn examined(&self) -> usize {
        self.examined
    }

    /// Whether the commit would send nothing.
    ///
    /// ```
    /// # use uow::prelude::*;
    /// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
    /// # #[derive(Tracked, Clone, Debug, PartialEq)]
    /// # #[tracked(table = notes)]
    /// # struct Note { id: i32, body: String }
    /// let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    /// let note = uow.attach(Note { id: 1, body: "a".into() });
    /// assert!(uow.plan()?.is_empty());
    /// assert_eq!(uow.plan()?.to_string(), "nothing to commit\n");
    /// uow.get_mut(&note)?.body = "b".into();
    /// assert!(!uow.plan()?.is_empty());
    /// # Ok::<(), uow::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

impl fmt::Display for PlanPreview {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lines.is_empty() {
            return writeln!(f, "nothing to commit");
        }
        for step in &self.lines {
            writeln!(
                f,
                "{} {} ({}): {} row(s) in {} statement(s)",
                step.operation,
                step.table,
                step.entity,
                step.rows.len(),
                step.statements
            )?;
            for row in &step.rows {
                writeln!(f, "  {row}")?;
            }
        }
        Ok(())
    }
}

/// The parent type whose key a pending `set_parent` link writes into field `field`, if any.
fn linked_parent<T: Entity>(
    store: &Store<T>,
    tracked: &Tracked<T>,
    field: usize,
) -> Option<&'static str> {
    tracked
        .links()
        .iter()
        .find(|l| l.fields.contains(&field))
        .and_then(|l| store.relations().get(l.relation))
        .map(|r| r.parent_name)
}

/// What the INSERT of a new entity writes, field by field, printed: each value's `Debug` form,
/// or `key of new Parent` for a foreign key that a parent inserted earlier in the same commit
/// fills in (it holds a placeholder until then).
fn inserted_values<'t, T: Entity>(
    store: &Store<T>,
    tracked: &'t Tracked<T>,
) -> impl Iterator<Item = (&'static FieldInfo, String)> + 't {
    let parents: Vec<Option<&'static str>> = (0..T::FIELDS.len())
        .map(|i| linked_parent(store, tracked, i))
        .collect();
    T::FIELDS
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.generated)
        .map(move |(i, f)| {
            let value = match parents[i] {
                Some(parent) => format!("key of new {parent}"),
                None => format!("{:?}", FieldValue(tracked.value(), i)),
            };
            (f, value)
        })
}

/// Cuts a value printed into an error message to a readable length (a field may hold a
/// document or a blob).
fn clip(mut text: String) -> String {
    const MAX_CHARS: usize = 60;
    if let Some((end, _)) = text.char_indices().nth(MAX_CHARS) {
        text.truncate(end);
        text.push_str("...");
    }
    text
}

impl<T: Entity> Store<T> {
    /// The rows of `step`, printed: `new: col = value, ..` for an INSERT, `key K` for a
    /// DELETE, `key K: col: old -> new, ..` for an UPDATE (with the next version, and `key of
    /// new Parent` for a foreign key a parent inserted by the same commit fills in).
    pub fn preview<'p>(&self, step: &Step, path: impl Fn(u32) -> Option<&'p str>) -> PreviewStep {
        let rows = step
            .slots
            .iter()
            .filter_map(|&slot| Some((slot, self.at_slot(slot)?)))
            .map(|(slot, tracked)| {
                (
                    slot,
                    match step.kind {
                        ChangeKind::Insert => {
                            let values: Vec<String> = inserted_values(self, tracked)
                                .map(|(field, value)| format!("{} = {value}", field.column))
                                .collect();
                            format!("new: {}", values.join(", "))
                        }
                        ChangeKind::Delete => format!("key {}", key_text(&tracked.value().key())),
                        ChangeKind::Update(fields) => {
                            let mut next = tracked.value().clone_columns();
                            next.bump_version();
                            let changes: Vec<String> = fields
                                .iter()
                                .map(|i| {
                                    let column = T::FIELDS.get(i).map_or("?", |f| f.column);
                                    let old = FieldValue(tracked.persisted_value(), i);
                                    match linked_parent(self, tracked, i) {
                                        Some(parent) => {
                                            format!("{column}: {old:?} -> key of new {parent}")
                                        }
                                        None => format!(
                                            "{column}: {old:?} -> {:?}",
                                            FieldValue(&next, i)
                                        ),
                                    }
                                })
                                .collect();
                            format!(
                                "key {}: {}",
                                key_text(&tracked.value().key()),
                                changes.join(", ")
                            )
                        }
                    },
                )
            })
            .map(|(slot, row)| match path(slot) {
                Some(path) => format!("{row} (at {path})"),
                None => row,
            })
            .collect();
        PreviewStep {
            operation: step.kind.operation(),
            table: T::TABLE_NAME,
            entity: T::ENTITY_NAME,
            statements: step.statements,
            rows,
        }
    }

    /// One line naming the entity in `slot`: a persisted one by its key, a new one by the
    /// values set in Rust (each clipped), since it may have no key yet.
    pub fn describe(&self, slot: u32) -> String {
        match self.at_slot(slot) {
            Some(t) if t.is_new() => {
                let fields: Vec<String> = inserted_values(self, t)
                    .map(|(field, value)| format!("{}: {}", field.name, clip(value)))
                    .collect();
                if fields.is_empty() {
                    format!("new {} (slot {slot})", T::ENTITY_NAME)
                } else {
                    format!("new {} {{ {} }}", T::ENTITY_NAME, fields.join(", "))
                }
            }
            Some(t) => format!("{} with key {}", T::ENTITY_NAME, key_text(&t.value().key())),
            None => T::ENTITY_NAME.to_string(),
        }
    }
}
