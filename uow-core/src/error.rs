//! The crate's one error type.

use std::fmt;

mod connection_lost;
pub(crate) use connection_lost::is_connection_lost;

/// Which statement kind an error or a report line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// An INSERT of new entities.
    Insert,
    /// An UPDATE of changed columns.
    Update,
    /// A DELETE of removed entities.
    Delete,
    /// A SELECT reading entities (`load`, `refresh`).
    Select,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Insert => "INSERT",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Select => "SELECT",
        })
    }
}

/// Everything that can go wrong in a unit of work.
///
/// Every failing call leaves the unit of work and its entities as they were before the call, so
/// after fixing the cause the same call can simply be made again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A statement failed in the database, or the connection did (constraint violation, lost
    /// connection, read-only database, missing table). The transaction was rolled back and every
    /// entity is as it was before `commit`.
    #[error(
        "{operation} on table `{table}` failed: {source}; the transaction was rolled back and \
         every entity is as before the commit: fix the cause and commit again"
    )]
    Statement {
        /// The kind of statement that failed.
        operation: Operation,
        /// The table it was written for.
        table: &'static str,
        /// Diesel's error.
        #[source]
        source: diesel::result::Error,
    },

    /// uow's own transaction control failed: the BEGIN (or SAVEPOINT), COMMIT (or RELEASE
    /// SAVEPOINT) or ROLLBACK it sent for a commit or a scope, for example a deferred
    /// constraint checked at COMMIT, or a serialization failure reported there. Nothing was
    /// written and every entity is as it was before the call. A statement of your own that
    /// fails is [`Error::Query`], not this.
    #[error(
        "the database transaction failed: {0}; nothing was written and every entity is as \
         before the call: check the connection and try again"
    )]
    Transaction(#[source] diesel::result::Error),

    /// A statement of your own failed, not one uow sent: a Diesel error turned into this
    /// error by `?` (`From<diesel::result::Error>`), typically from a query on
    /// [`Scope::connection`](crate::Scope::connection). Returned from a scope's closure, it
    /// rolled the scope back, database and memory, like any error. The database error is its
    /// [`source`](std::error::Error::source) and [`database_error`](Error::database_error),
    /// so [`is_transient`](Error::is_transient) sees a serialization failure or a deadlock of
    /// your statement, and [`retry`](crate::retry) runs the work again.
    #[error(
        "a statement of your own (not one uow sent) failed: {0}; returned from a scope, it \
         rolled the scope back and every entity is as when the scope began: fix the \
         statement or the data it met and run the scope again"
    )]
    Query(#[source] diesel::result::Error),

    /// An UPDATE or DELETE matched fewer rows than it should: the row was deleted, or its key
    /// changed, by someone else since it was loaded. The commit was rolled back.
    #[error(
        "{operation} of {entity} with key {key} matched no row in `{table}`: since it was loaded \
         the row was deleted, or changed by someone else (its version moved on); the commit was \
         rolled back: reload the entity (`refresh`) and try again"
    )]
    Conflict {
        /// The statement kind.
        operation: Operation,
        /// The entity type.
        entity: &'static str,
        /// Its table.
        table: &'static str,
        /// The key, as `Debug` prints it.
        key: String,
    },

    /// A handle was used with a unit of work that does not hold its entity: it belongs to
    /// another unit of work, or its entity was removed and committed, or discarded.
    #[error(
        "this unit of work holds no {entity} for the handle given: the handle belongs to another \
         unit of work, or its entity was removed and committed; register or load the entity in \
         this unit of work first"
    )]
    UnknownEntity {
        /// The entity type of the handle.
        entity: &'static str,
    },

    /// An entity was registered while the unit of work already holds another instance with the
    /// same primary key (one row, one instance).
    #[error(
        "this unit of work already holds a {entity} with key {key}: use the handle it returned \
         (for example from `find`) instead of registering a second instance; a new child whose \
         key holds a placeholder for a new parent's generated key is filed when the commit \
         knows it: `set_parent` it before registering the next one with the same placeholder{hint}"
    )]
    DuplicateKey {
        /// The entity type.
        entity: &'static str,
        /// The key, as `Debug` prints it.
        key: String,
        /// For a second new entity whose key the database does not assign: the likely cause,
        /// a database-assigned key not marked `#[tracked(generated)]` (empty otherwise).
        hint: &'static str,
    },

    /// The primary key of an entity that is already in the database was changed in memory.
    /// Nothing was written.
    #[error(
        "the key of {entity} changed from {before} to {after} after it was persisted: keys \
         identify rows and cannot be updated; restore the key, or remove this entity and \
         register a new one with the new key"
    )]
    KeyChanged {
        /// The entity type.
        entity: &'static str,
        /// The persisted key.
        before: String,
        /// The key found in memory.
        after: String,
    },

    /// `set_parent` on a persisted entity whose foreign key is part of its primary key:
    /// pointing it at a parent would change a persisted row's key. Nothing was changed.
    #[error(
        "set_parent cannot re-point {entity} with key {key}: its foreign key `{field}` is part \
         of its primary key, and a persisted row's key does not change; register_removed it \
         and register_new a copy, then set_parent the copy"
    )]
    ParentInKey {
        /// The child's entity type.
        entity: &'static str,
        /// Its key, as `Debug` prints it.
        key: String,
        /// The foreign key field, part of the primary key.
        field: &'static str,
    },

    /// The `#[tracked(version)]` field of a persisted entity was changed in memory. The unit
    /// of work owns it: it checks the persisted value and writes the next one. Nothing was
    /// written.
    #[error(
        "the version of {entity} with key {key} was changed by hand from {persisted} to \
         {current}: the unit of work checks and advances it itself; restore it (to advance it \
         without changing a column, call `force_version_increment`; to check against a \
         version a client sent, compare it before changing the entity, or `register_dirty` an \
         entity built with that version)"
    )]
    VersionChanged {
        /// The entity type.
        entity: &'static str,
        /// Its key, as `Debug` prints it.
        key: String,
        /// The version the database row has, as far as this unit of work knows.
        persisted: String,
        /// The version found in memory.
        current: String,
    },

    /// [`force_version_increment`](crate::UnitOfWork::force_version_increment) on an entity
    /// type that has no version. Nothing was changed.
    #[error(
        "{entity} has no `#[tracked(version)]` field, so there is no version to advance: add \
         an integer column marked `#[tracked(version)]` (the unit of work checks and advances \
         it at every write of the row)"
    )]
    NoVersion {
        /// The entity type.
        entity: &'static str,
    },

    /// An entity is registered for removal twice, or a removed entity is used as if present.
    #[error(
        "{entity} with key {key} is already registered for removal; commit, or `unremove` it \
         to keep it"
    )]
    AlreadyRemoved {
        /// The entity type.
        entity: &'static str,
        /// The key, as `Debug` prints it.
        key: String,
    },

    /// `load` or `refresh` found no row with the key.
    #[error(
        "no row of `{table}` has key {key} for {entity}: it does not exist or was deleted; \
         check the key, or `register_new` the entity to create it"
    )]
    NotFound {
        /// The entity type.
        entity: &'static str,
        /// Its table.
        table: &'static str,
        /// The key, as `Debug` prints it.
        key: String,
    },

    /// `flush` was called on a connection with no open transaction: flushed changes could not
    /// be rolled back later.
    #[error(
        "flush needs an open transaction, and the connection has none: run it inside \
         `uow.transaction(&mut conn, |uow| ...)` (or `uow::transaction`), or call `commit` to \
         write and commit at once"
    )]
    NoTransaction,

    /// `commit` was called inside a scope, which owns the transaction: the scope commits when
    /// its closure returns `Ok`.
    #[error(
        "commit was called inside `transaction(...)`, which owns the transaction: return `Ok` \
         from the closure to commit, or call `flush` to send pending changes now"
    )]
    CommitInScope,

    /// A scope was opened on a unit of work that is already inside a scope on another
    /// connection; a unit of work follows one transaction at a time.
    #[error(
        "this unit of work is already inside a transaction scope on another connection: nest \
         with `scope.nested(|inner| ...)`, which uses the scope's own connection"
    )]
    ScopeOnOtherConnection,

    /// `UnitOfWork::flush(&mut conn)` was called inside a scope (through the scope's
    /// `Deref`): the scope owns the transaction, and a flush on any other connection could not
    /// be rolled back with it.
    #[error(
        "flush(&mut conn) was called inside `transaction(...)`: call the scope's own \
         `flush()`, which writes inside the scope's transaction"
    )]
    FlushInScope,

    /// A scope ended with a transaction level opened inside it still open, or with its own
    /// level closed by hand (`TransactionManager::begin_transaction` without a matching
    /// commit, or a panic caught inside the closure). Committing would have committed the
    /// wrong level, so everything the scope did was rolled back.
    #[error(
        "a transaction or savepoint opened inside the scope was not closed (or the scope's own \
         was closed by hand) when the scope ended; everything the scope did was rolled back: \
         close every transaction you open on `scope.connection()` (prefer \
         `conn.transaction(|c| ...)` or `scope.nested(...)`)"
    )]
    TransactionLeftOpen,

    /// A commit with participants (files, remote resources) ran inside a transaction opened
    /// outside the unit of work. The participants would become final when that commit returns,
    /// although the outer transaction could still roll back. Nothing was prepared or written.
    #[error(
        "participants (files, remote resources) were enlisted, but this commit runs inside a \
         transaction opened outside the unit of work, which could still roll back after the \
         participants were made final; nothing was written: commit on a connection with no \
         open transaction, or make `uow.transaction(&mut conn, ...)` the outermost transaction"
    )]
    ParticipantsInOuterTransaction,

    /// An event given to `record_outbox_event` could not be serialized to JSON (its
    /// `Serialize` implementation failed, for example a map with keys that are not strings).
    /// Nothing was recorded.
    #[error(
        "the event `{event_type}` could not be serialized to JSON for the outbox: {reason}; \
         nothing was recorded: fix its `Serialize` implementation and record it again"
    )]
    EventNotSerializable {
        /// The event's `OutboxEvent::EVENT_TYPE`.
        event_type: &'static str,
        /// serde_json's message.
        reason: String,
    },

    /// The outbox relay's publisher could not hand messages to its broker, or the broker did
    /// not confirm them. The relay marked none of them published: they stay in the outbox and
    /// are sent again (consumers drop duplicates through the inbox).
    #[error(
        "publishing outbox messages to {publisher} failed: {source}; they stay unpublished in \
         the outbox and the relay sends them again: check that the broker is reachable"
    )]
    Publish {
        /// The publisher's name (`Publisher::NAME`).
        publisher: &'static str,
        /// The broker client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The outbox relay was given a connection with a transaction open: a batch must be its
    /// own transaction, committed only after the broker confirmed it.
    #[error(
        "the outbox relay needs a connection with no open transaction, so that each batch is \
         committed on its own once the broker confirmed it: give it a connection of its own"
    )]
    RelayInTransaction,

    /// The connection to the database server was lost (the server closed it or was
    /// restarted, a network failure, a statement too large for MySQL's `max_allowed_packet`).
    /// A server discards the open transaction of a connection it loses, so nothing of the call
    /// was written, unless the connection was lost while committing (`during_commit`): the
    /// COMMIT may then have been applied or not. Either way every entity is as before the
    /// call, and the connection cannot be used again.
    #[error(
        "the connection to the database was lost{}: {}; every entity is as before the call: {}",
        if *during_commit { " while committing" } else { "" },
        source.to_string().trim_end(),
        if *during_commit {
            "the COMMIT may or may not have been applied, so open a new connection and check \
             whether the changes are there (for example with `refresh`) before committing again"
        } else {
            "the server discarded the transaction, so nothing was written; open a new \
             connection and run the unit of work again"
        }
    )]
    ConnectionLost {
        /// Whether the connection was lost while the transaction was being committed (its
        /// outcome is then unknown).
        during_commit: bool,
        /// Diesel's error.
        #[source]
        source: diesel::result::Error,
    },

    /// The connection's transaction manager is broken (an earlier COMMIT or ROLLBACK failed),
    /// so nothing can be written safely on it.
    #[error(
        "the connection's transaction is broken (an earlier COMMIT or ROLLBACK failed): \
         discard this connection, open a new one and run the unit of work again"
    )]
    TransactionBroken,

    /// The backend cannot open a transaction in the mode set with
    /// [`set_transaction_mode`](crate::UnitOfWork::set_transaction_mode) (SQLite has no
    /// read-only transactions). Nothing was sent.
    #[error(
        "{backend} cannot open a transaction in mode {mode}: {reason}; nothing was sent: \
         set a mode this backend has (see `TransactionMode`)"
    )]
    TransactionModeUnsupported {
        /// The backend's name.
        backend: &'static str,
        /// The mode asked for.
        mode: crate::TransactionMode,
        /// What the backend lacks.
        reason: &'static str,
    },

    /// A transaction mode is set, but the commit or scope runs inside a transaction opened
    /// outside the unit of work, whose isolation level and access mode were fixed when it
    /// began. Nothing was sent.
    #[error(
        "this unit of work asks for transactions in mode {mode}, but the connection is already \
         in a transaction opened outside it, which keeps the mode it began with; nothing was \
         sent: set the mode where that transaction begins and leave this unit of work's mode \
         unset, or commit on a connection with no open transaction"
    )]
    TransactionModeInOuterTransaction {
        /// The mode asked for.
        mode: crate::TransactionMode,
    },

    /// Two entity types stored in one table change the same row in one commit: the second
    /// write would silently overwrite the first. Nothing was written.
    #[error(
        "{first} and {second} both change the row of `{table}` with key {key} in this commit, \
         and the second write would silently overwrite the first; nothing was written: change \
         that row through one entity type, or commit the two changes separately"
    )]
    TwoTypesOneRow {
        /// The table both types are stored in.
        table: &'static str,
        /// The row's key, as `Debug` prints it.
        key: String,
        /// The entity type whose change was planned first.
        first: &'static str,
        /// The other entity type.
        second: &'static str,
    },

    /// The pending changes depend on each other in a circle (for example two new rows whose
    /// foreign keys point at each other while both keys are generated), so no order can write
    /// them. Nothing was written.
    #[error(
        "the pending changes form a cycle through foreign keys: {}; nothing was written: \
         break the cycle, e.g. commit one entity first and point the other at it afterwards, \
         or make one foreign key nullable and set it in a second commit",
        entities.join(" -> ")
    )]
    Cycle {
        /// The entities on or behind the cycle.
        entities: Vec<String>,
    },

    /// A child is linked with `set_parent` to a new parent that was removed
    /// (`register_removed`) before it was ever committed, so its foreign key would point at no
    /// row. Nothing was written.
    #[error(
        "{child} is linked with `set_parent` to a new {parent} that was removed before it was \
         committed, so its foreign key would point at no row; nothing was written: link it to \
         another parent with `set_parent`, or remove it too"
    )]
    ParentRemoved {
        /// The child entity type.
        child: &'static str,
        /// The parent entity type.
        parent: &'static str,
    },

    /// `set_parent` named a parent type the child has no `belongs_to` relation with.
    #[error(
        "{child} has no `belongs_to` relation with {parent}: add \
         `#[tracked(belongs_to({parent}, foreign_key = ...))]` to {child}"
    )]
    NoRelation {
        /// The child entity type.
        child: &'static str,
        /// The parent entity type.
        parent: &'static str,
    },

    /// `set_parent` found several relations from the child to the parent type.
    #[error(
        "{child} has several `belongs_to` relations with {parent} (foreign keys {}): name the \
         one to set with `set_parent_via(&child, \"field\", &parent)`",
        fields.join(", ")
    )]
    AmbiguousRelation {
        /// The child entity type.
        child: &'static str,
        /// The parent entity type.
        parent: &'static str,
        /// The foreign key fields to choose from.
        fields: Vec<&'static str>,
    },

    /// The elements of a `#[tracked(children)]` collection have several `belongs_to`
    /// relations with the parent type, so which foreign key the collection fills is unclear.
    #[error(
        "{parent}.{field} holds {child} values, and {child} has several `belongs_to` relations \
         with {parent}: keep one `belongs_to({parent}, ..)` on {child} for the collection, and \
         link other relations with `set_parent_via`"
    )]
    AmbiguousChildren {
        /// The parent entity type.
        parent: &'static str,
        /// The children field.
        field: &'static str,
        /// The child entity type.
        child: &'static str,
    },

    /// A tree read for an aggregate (`load`, `attach_aggregates`, `register_clean`) holds a
    /// row whose key a new entity registered on its own has: the row exists, so that entity's
    /// INSERT could only fail. Nothing was attached.
    #[error(
        "the tree of {root} holds a row of {entity} with key {key}, which this unit of work \
         holds as a new entity (registered, not written yet): the row exists already, so its \
         INSERT would fail; take the new one back with `register_removed` (it was never \
         written) and read the tree again, then change the row through the tree"
    )]
    RowHeldAsNew {
        /// The element's entity type.
        entity: &'static str,
        /// The element's key, as `Debug` prints it.
        key: String,
        /// The root whose tree holds the row, as `Product with key 7`.
        root: String,
    },

    /// A handle to a member of an aggregate (an element of a root's `#[tracked(children)]`
    /// collection, found with `find` or `load` by its own key) was used to change it. A member
    /// changes through its root's tree, where the commit writes it and advances the root's
    /// version; a change through its own handle would skip the version and leave the tree
    /// stale. Reading it with `get` is allowed.
    #[error(
        "{entity} {key} is a member of an aggregate: change it in its root's tree \
         (`get_mut(&root)` and the element in its collection), so that the commit writes it \
         with the root's version; its own handle only reads it"
    )]
    MemberOfAggregate {
        /// The member's entity type.
        entity: &'static str,
        /// Its primary key, formatted with `Debug`.
        key: String,
    },

    /// A participant outside the database failed to prepare; the participants prepared before
    /// it were compensated and nothing was written to the database.
    #[error(
        "{participant} failed to prepare: {source}; nothing was written and the participants \
         prepared before it were undone: fix the cause and commit again"
    )]
    Participant {
        /// The participant's name.
        participant: String,
        /// Its error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A commit failed (`cause`) and some prepared participants could not be undone: what
    /// they did outside the database is still there and needs attention.
    #[error(
        "{cause}; and these could NOT be undone and need manual cleanup: {}",
        not_undone.iter().map(|(p, e)| format!("{p} ({e})")).collect::<Vec<_>>().join(", ")
    )]
    Compensation {
        /// Why the commit failed.
        #[source]
        cause: Box<Error>,
        /// Each participant whose compensation failed, with its error.
        not_undone: Vec<(String, String)>,
    },

    /// The database committed, but some participants failed to make their work final (for
    /// example a rename failed). The database changes stand; the participants named here did
    /// not finish.
    #[error(
        "the database committed, but these participants could not finish: {}; their prepared \
         work is still staged: finish or remove it (see `AtomicFile::recover`)",
        failed.iter().map(|(p, e)| format!("{p} ({e})")).collect::<Vec<_>>().join(", ")
    )]
    Finalize {
        /// Each participant that failed, with its error.
        failed: Vec<(String, String)>,
    },

    /// A before-commit hook refused the commit; nothing was written.
    #[error("a before-commit hook stopped the commit: {0}; nothing was written")]
    Hook(#[source] Box<dyn std::error::Error + Send + Sync>),

    /// An INSERT returned a different number of generated keys than rows it inserted, or keys
    /// that could not be matched to the rows; nothing was written.
    #[error(
        "INSERT into `{table}` returned {returned} generated row(s) for {expected} new {entity}; \
         the commit was rolled back: check that the table's key is assigned by the database \
         (SERIAL, AUTOINCREMENT, AUTO_INCREMENT) and that no trigger changes the row count"
    )]
    GeneratedKeys {
        /// The entity type.
        entity: &'static str,
        /// Its table.
        table: &'static str,
        /// Rows inserted.
        expected: usize,
        /// Rows the database returned.
        returned: usize,
    },
}

impl Error {
    /// The database error beneath this one, if it came from the database.
    ///
    /// ```
    /// let err = uow_core::Error::Transaction(diesel::result::Error::RollbackTransaction);
    /// assert!(err.database_error().is_some());
    /// ```
    pub fn database_error(&self) -> Option<&diesel::result::Error> {
        match self {
            Error::Statement { source, .. }
            | Error::Transaction(source)
            | Error::Query(source)
            | Error::ConnectionLost { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A Diesel error of the caller's own statement, met by `?` in code returning this crate's
/// error (a scope's closure above all): [`Error::Query`]. uow never converts its own errors
/// this way: a statement it sends fails as [`Error::Statement`], its BEGIN, COMMIT or
/// ROLLBACK as [`Error::Transaction`], a lost connection as [`Error::ConnectionLost`].
impl From<diesel::result::Error> for Error {
    fn from(error: diesel::result::Error) -> Self {
        Error::Query(error)
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
