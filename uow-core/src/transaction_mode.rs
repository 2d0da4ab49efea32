//! [`TransactionMode`]: the isolation level and access mode of the transactions a unit of work
//! opens. Only data: the execution layer's dialects turn it into each backend's BEGIN.

use std::fmt;

/// How strongly a transaction is kept apart from the transactions running beside it, from the
/// weakest to the strongest. A backend may run a stronger level than asked (the SQL standard
/// allows it): SQLite runs every transaction serializably.
///
/// What each level guards against, beyond the one before it:
///
/// - [`ReadCommitted`](Isolation::ReadCommitted): no dirty reads (you never see another
///   transaction's uncommitted rows). Each statement sees the rows committed when it began, so
///   two reads of one row may differ. PostgreSQL's default.
/// - [`RepeatableRead`](Isolation::RepeatableRead): a row read twice reads the same. On
///   PostgreSQL the whole transaction sees one snapshot, and an UPDATE of a row changed since
///   fails with a serialization failure; MySQL and MariaDB (their default) instead read the
///   newest committed row version when writing, so a read-modify-write needs a version column
///   (uow's `#[tracked(version)]` catches that lost update as [`Error::Conflict`](crate::Error::Conflict)).
/// - [`Serializable`](Isolation::Serializable): the outcome is as if the transactions ran
///   one after another: no write skew (two transactions each checking a rule against rows the
///   other changes). Transactions that would break it fail with a serialization failure or a
///   deadlock, which [`Error::is_transient`](crate::Error::is_transient) recognises, so
///   [`retry`](crate::retry) reruns them.
///
/// ```
/// use uow::{Isolation, TransactionMode};
/// assert_eq!(Isolation::RepeatableRead.to_string(), "REPEATABLE READ");
/// let mode = TransactionMode::new().isolation(Isolation::Serializable);
/// assert_eq!(mode.level(), Some(Isolation::Serializable));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Isolation {
    /// `READ COMMITTED`.
    ReadCommitted,
    /// `REPEATABLE READ`.
    RepeatableRead,
    /// `SERIALIZABLE`.
    Serializable,
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Isolation::ReadCommitted => "READ COMMITTED",
            Isolation::RepeatableRead => "REPEATABLE READ",
            Isolation::Serializable => "SERIALIZABLE",
        })
    }
}

/// How the transactions a unit of work opens begin: an isolation level (the server's default
/// when none is set) and whether they are read-only. Set it with
/// [`UnitOfWork::set_transaction_mode`](crate::UnitOfWork::set_transaction_mode); it applies
/// to the transaction of every `commit` and of every outermost scope, whose nested scopes
/// share it.
///
/// | backend | isolation levels | read-only |
/// |---|---|---|
/// | PostgreSQL | all three, `BEGIN ISOLATION LEVEL ..` | `BEGIN .. READ ONLY` |
/// | MySQL, MariaDB | all three, `SET TRANSACTION ISOLATION LEVEL ..` sent with the `START TRANSACTION` | `START TRANSACTION READ ONLY` |
/// | SQLite | all three: SQLite always runs serializably | refused ([`Error::TransactionModeUnsupported`](crate::Error::TransactionModeUnsupported)) |
///
/// On SQLite every transaction uow opens is `BEGIN IMMEDIATE`, whatever the mode: it takes the
/// write lock when it begins, so a second writer waits for it (up to the busy timeout) instead
/// of failing when a read lock cannot be upgraded.
///
/// A mode cannot reach a transaction opened outside the unit of work: a commit or scope inside
/// one, with a mode set, fails with
/// [`Error::TransactionModeInOuterTransaction`](crate::Error::TransactionModeInOuterTransaction).
///
/// ```
/// use uow::{Isolation, TransactionMode};
/// let mode = TransactionMode::new().isolation(Isolation::Serializable).read_only();
/// assert_eq!(mode.level(), Some(Isolation::Serializable));
/// assert!(mode.is_read_only());
/// assert_eq!(mode.to_string(), "SERIALIZABLE, READ ONLY");
/// assert!(TransactionMode::new().is_default());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TransactionMode {
    isolation: Option<Isolation>,
    read_only: bool,
}

impl TransactionMode {
    /// The server's default level, read-write.
    ///
    /// ```
    /// use uow::TransactionMode;
    /// let mode = TransactionMode::new();
    /// assert_eq!(mode, TransactionMode::default());
    /// assert_eq!(mode.level(), None);
    /// assert!(!mode.is_read_only());
    /// assert_eq!(mode.to_string(), "the server's default, read-write");
    /// ```
    pub const fn new() -> Self {
        TransactionMode {
            isolation: None,
            read_only: false,
        }
    }

    /// The same mode at isolation level `level`.
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
    /// use uow::{Isolation, TransactionMode};
    /// let mut uow = UnitOfWork::new();
    /// uow.set_transaction_mode(TransactionMode::new().isolation(Isolation::Serializable));
    /// uow.register_new(Note { id: 1, body: "a".into() })?;
    /// // SQLite runs every transaction serializably: any level is accepted.
    /// assert_eq!(uow.commit(&mut conn)?.inserted("notes"), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub const fn isolation(mut self, level: Isolation) -> Self {
        self.isolation = Some(level);
        self
    }

    /// The same mode, read-only: the database refuses every write in it.
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
    /// use uow::TransactionMode;
    /// let mut uow = UnitOfWork::new();
    /// uow.set_transaction_mode(TransactionMode::new().read_only());
    /// let note = uow.register_new(Note { id: 1, body: "a".into() })?;
    /// // PostgreSQL and MySQL begin `READ ONLY` and refuse the INSERT; SQLite has no such mode.
    /// let error = uow.commit(&mut conn).unwrap_err();
    /// assert!(matches!(error, uow::Error::TransactionModeUnsupported { .. }));
    /// assert_eq!(uow.state(&note)?, EntityState::New, "nothing changed in memory either");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub const fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// The isolation level asked for, if any.
    ///
    /// ```
    /// use uow::{Isolation, TransactionMode};
    /// assert_eq!(TransactionMode::new().level(), None); // the server's default
    /// assert_eq!(
    ///     TransactionMode::new().isolation(Isolation::ReadCommitted).level(),
    ///     Some(Isolation::ReadCommitted)
    /// );
    /// ```
    pub const fn level(&self) -> Option<Isolation> {
        self.isolation
    }

    /// Whether the transactions are read-only.
    ///
    /// ```
    /// use uow::TransactionMode;
    /// assert!(!TransactionMode::new().is_read_only());
    /// assert!(TransactionMode::new().read_only().is_read_only());
    /// ```
    pub const fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Whether nothing is asked beyond a plain BEGIN.
    ///
    /// ```
    /// use uow::{Isolation, TransactionMode};
    /// assert!(TransactionMode::new().is_default());
    /// assert!(!TransactionMode::new().isolation(Isolation::Serializable).is_default());
    /// assert!(!TransactionMode::new().read_only().is_default());
    /// ```
    pub const fn is_default(&self) -> bool {
        self.isolation.is_none() && !self.read_only
    }
}

impl fmt::Display for TransactionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.isolation, self.read_only) {
            (None, false) => f.write_str("the server's default, read-write"),
            (None, true) => f.write_str("READ ONLY"),
            (Some(level), false) => write!(f, "{level}"),
            (Some(level), true) => write!(f, "{level}, READ ONLY"),
        }
    }
}
