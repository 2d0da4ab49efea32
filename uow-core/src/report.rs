//! What a commit wrote.

use std::fmt;

use crate::error::Operation;

/// Rows written to one table by a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    /// The entity type.
    pub entity: &'static str,
    /// The table.
    pub table: &'static str,
    /// Rows inserted.
    pub inserted: usize,
    /// Rows updated.
    pub updated: usize,
    /// Rows deleted.
    pub deleted: usize,
}

/// What a successful commit wrote, per table, in the order tables were first written.
///
/// ```
/// # use uow::prelude::*;
/// # diesel::table! { notes (id) { id -> Integer, body -> Text } }
/// # #[derive(Tracked, Clone, Debug, PartialEq)]
/// # #[tracked(table = notes)]
/// # struct Note { id: i32, body: String }
/// # use diesel::{Connection, RunQueryDsl};
/// let mut conn = diesel::SqliteConnection::establish(":memory:")?;
/// diesel::sql_query("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)").execute(&mut conn)?;
/// let mut uow = UnitOfWork::new();
/// uow.register_new(Note { id: 1, body: "a".into() })?;
/// uow.register_new(Note { id: 2, body: "b".into() })?;
/// let report = uow.commit(&mut conn)?;
/// assert_eq!(report.inserted("notes"), 2);
/// assert_eq!(report.statements(), 1);
/// assert_eq!(report.to_string(), "notes: 2 inserted, 0 updated, 0 deleted (1 statement(s))");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitReport {
    tables: Vec<TableReport>,
    statements: usize,
    examined: usize,
}

impl CommitReport {
    pub(crate) fn record(
        &mut self,
        entity: &'static str,
        table: &'static str,
        operation: Operation,
        rows: usize,
        statements: usize,
    ) {
        self.statements += statements;
        let index = match self.tables.iter().position(|t| t.entity == entity) {
            Some(index) => index,
            None => {
                self.tables.push(TableReport {
                    entity,
                    table,
                    inserted: 0,
                    updated: 0,
                    deleted: 0,
                });
                self.tables.len() - 1
            }
        };
        let line = &mut self.tables[index];
        match operation {
            Operation::Insert => line.inserted += rows,
            Operation::Update => line.updated += rows,
            Operation::Delete => line.deleted += rows,
            Operation::Select => {}
        }
    }

    /// Counts the entities a write's plan looked at.
    pub(crate) fn examined_by(&mut self, examined: usize) {
        self.examined += examined;
    }

    /// Adds the rows, statements and entities examined of `other` (several flushes of one
    /// scope).
    pub(crate) fn absorb(&mut self, other: &CommitReport) {
        for t in &other.tables {
            self.record(t.entity, t.table, Operation::Insert, t.inserted, 0);
            self.record(t.entity, t.table, Operation::Update, t.updated, 0);
            self.record(t.entity, t.table, Operation::Delete, t.deleted, 0);
        }
        self.statements += other.statements;
        self.examined += other.examined;
    }

    /// One line per table written.
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
    /// # diesel::sql_query("INSERT INTO notes VALUES (1, 'a'), (2, 'b')").execute(&mut conn)?;
    /// let mut uow = UnitOfWork::new();
    /// let a = uow.load::<Note>(&mut conn, 1)?;
    /// uow.get_mut(&a)?.body = "changed".into();
    /// uow.register_new(Note { id: 3, body: "c".into() })?;
    /// let report = uow.commit(&mut conn)?;
    /// let line = &report.tables()[0];
    /// assert_eq!((line.entity, line.table), ("Note", "notes"));
    /// assert_eq!((line.inserted, line.updated, line.deleted), (1, 1, 0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tables(&self) -> &[TableReport] {
        &self.tables
    }

    /// INSERT/UPDATE/DELETE statements sent.
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
    /// # diesel::sql_query("INSERT INTO notes VALUES (1, 'a'), (2, 'b')").execute(&mut conn)?;
    /// let mut uow = UnitOfWork::new();
    /// for id in 3..=5 {
    ///     uow.register_new(Note { id, body: "new".into() })?;
    /// }
    /// let old = uow.load::<Note>(&mut conn, 1)?;
    /// uow.register_removed(&old)?;
    /// let report = uow.commit(&mut conn)?;
    /// assert_eq!(report.rows(), 4);
    /// assert_eq!(report.statements(), 2); // one DELETE, one INSERT of 3 rows
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn statements(&self) -> usize {
        self.statements
    }

    /// How many entities the commit looked at to find what to write: the ones registered,
    /// borrowed mutably (`get_mut`, `iter_mut`), removed or taken back since the last commit,
    /// and, of an aggregate whose root was borrowed, the members whose rows changed. An
    /// entity merely held is not looked at, so what a commit costs grows with the entities
    /// touched, never with the number tracked. For a scope: its flushes and its end together.
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
    /// let notes = (1..=1_000)
    ///     .map(|id| uow.register_new(Note { id, body: "new".into() }))
    ///     .collect::<uow::Result<Vec<_>>>()?;
    /// assert_eq!(uow.commit(&mut conn)?.examined(), 1_000);
    ///
    /// uow.get_mut(&notes[7])?.body = "changed".into();
    /// let _ = uow.get_mut(&notes[8])?; // borrowed, left as it was: looked at, not written
    /// let report = uow.commit(&mut conn)?;
    /// assert_eq!((report.examined(), report.updated("notes")), (2, 1));
    /// assert_eq!(uow.commit(&mut conn)?.examined(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn examined(&self) -> usize {
        self.examined
    }

    /// Whether nothing was written.
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
    /// # diesel::sql_query("INSERT INTO notes VALUES (1, 'a'), (2, 'b')").execute(&mut conn)?;
    /// let mut uow = UnitOfWork::new();
    /// let a = uow.load::<Note>(&mut conn, 1)?;
    /// uow.get_mut(&a)?.body = "a".into(); // the value it had: nothing to write
    /// let report = uow.commit(&mut conn)?;
    /// assert!(report.is_empty());
    /// assert_eq!(report.to_string(), "nothing written");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    fn sum(&self, table: &str, pick: fn(&TableReport) -> usize) -> usize {
        self.tables
            .iter()
            .filter(|t| t.table == table)
            .map(pick)
            .sum()
    }

    /// Rows inserted into `table`.
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
    /// # diesel::sql_query("INSERT INTO notes VALUES (1, 'a'), (2, 'b')").execute(&mut conn)?;
    /// let mut uow = UnitOfWork::new();
    /// uow.register_new(Note { id: 3, body: "c".into() })?;
    /// uow.register_new(Note { id: 4, body: "d".into() })?;
    /// let report = uow.commit(&mut conn)?;
    /// assert_eq!(report.inserted("notes"), 2);
    /// assert_eq!(report.inserted("other_table"), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn inserted(&self, table: &str) -> usize {
        self.sum(table, |t| t.inserted)
    }

    /// Rows updated in `table`.
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
    /// # diesel::sql_query("INSERT INTO notes VALUES (1, 'a'), (2, 'b')").execute(&mut conn)?;
    /// let mut uow = UnitOfWork::new();
    /// for id in [1, 2] {
    ///     let note = uow.load::<Note>(&mut conn, id)?;
    ///     uow.get_mut(&note)?.body.push_str(" (edited)");
    /// }
    /// assert_eq!(uow.commit(&mut conn)?.updated("notes"), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn updated(&self, table: &str) -> usize {
        self.sum(table, |t| t.updated)
    }

    /// Rows deleted from `table`.
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
    /// # diesel::sql_query("INSERT INTO notes VALUES (1, 'a'), (2, 'b')").execute(&mut conn)?;
    /// let mut uow = UnitOfWork::new();
    /// let note = uow.load::<Note>(&mut conn, 2)?;
    /// uow.register_removed(&note)?;
    /// assert_eq!(uow.commit(&mut conn)?.deleted("notes"), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn deleted(&self, table: &str) -> usize {
        self.sum(table, |t| t.deleted)
    }

    /// Rows written in all tables.
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
    /// # diesel::sql_query("INSERT INTO notes VALUES (1, 'a'), (2, 'b')").execute(&mut conn)?;
    /// let mut uow = UnitOfWork::new();
    /// let a = uow.load::<Note>(&mut conn, 1)?;
    /// let b = uow.load::<Note>(&mut conn, 2)?;
    /// uow.get_mut(&a)?.body = "changed".into();
    /// uow.register_removed(&b)?;
    /// uow.register_new(Note { id: 3, body: "c".into() })?;
    /// assert_eq!(uow.commit(&mut conn)?.rows(), 3); // 1 inserted + 1 updated + 1 deleted
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rows(&self) -> usize {
        self.tables
            .iter()
            .map(|t| t.inserted + t.updated + t.deleted)
            .sum()
    }
}

impl fmt::Display for CommitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tables.is_empty() {
            return f.write_str("nothing written");
        }
        for (i, t) in self.tables.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(
                f,
                "{}: {} inserted, {} updated, {} deleted",
                t.table, t.inserted, t.updated, t.deleted
            )?;
        }
        write!(f, " ({} statement(s))", self.statements)
    }
}
