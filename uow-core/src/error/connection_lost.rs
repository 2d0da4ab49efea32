//! Recognising a lost connection in a Diesel error, and turning the error of a statement or
//! of a transaction's control into [`Error::ConnectionLost`] when it says so.

use super::Error;

impl Error {
    /// This error, as [`Error::ConnectionLost`] if the database error beneath it says the
    /// connection is gone; `during_commit` when it happened while committing.
    pub(crate) fn or_connection_lost(self, during_commit: bool) -> Self {
        match self {
            Error::Statement { source, .. } | Error::Transaction(source)
                if is_connection_lost(&source) =>
            {
                Error::ConnectionLost {
                    during_commit,
                    source,
                }
            }
            other => other,
        }
    }
}

/// Whether a Diesel error says the connection to the server is gone. Diesel maps some of these
/// to kinds; the rest are recognised by the client libraries' and servers' messages.
pub(crate) fn is_connection_lost(error: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error as DieselError};
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => true,
        DieselError::DatabaseError(_, info) => {
            let message = info.message().to_ascii_lowercase();
            [
                // libmysqlclient and MariaDB's client (CR_SERVER_GONE_ERROR, CR_SERVER_LOST)
                "server has gone away",
                "lost connection to",
                // libpq and PostgreSQL
                "server closed the connection unexpectedly",
                "terminating connection due to administrator command",
                "no connection to the server",
                "connection to server was lost",
                "could not receive data from server",
                "could not send data to server",
                // tokio-postgres (diesel-async): its socket closed, or failed to read or write
                "connection closed",
                "error communicating with the server",
                // mysql_async (diesel-async)
                "connection to the server is closed",
                "broken pipe",
                "connection reset by peer",
            ]
            .iter()
            .any(|needle| message.contains(needle))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Operation;
    use diesel::result::{DatabaseErrorKind, Error as DieselError};

    fn database(kind: DatabaseErrorKind, message: &str) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(message.to_string()))
    }

    #[test]
    fn a_lost_connection_is_recognised_by_kind_and_by_message() {
        assert!(is_connection_lost(&database(
            DatabaseErrorKind::ClosedConnection,
            "x"
        )));
        assert!(is_connection_lost(&database(
            DatabaseErrorKind::Unknown,
            "MySQL server has gone away"
        )));
        assert!(is_connection_lost(&database(
            DatabaseErrorKind::Unknown,
            "Lost connection to server during query"
        )));
        assert!(is_connection_lost(&database(
            DatabaseErrorKind::Unknown,
            "FATAL: terminating connection due to administrator command"
        )));
        // tokio-postgres reports a failed socket read or write without its cause.
        assert!(is_connection_lost(&database(
            DatabaseErrorKind::UnableToSendCommand,
            "error communicating with the server"
        )));
        assert!(!is_connection_lost(&database(
            DatabaseErrorKind::UniqueViolation,
            "duplicate key"
        )));
        assert!(!is_connection_lost(&DieselError::NotFound));
    }

    #[test]
    fn only_database_errors_that_lost_the_connection_become_connection_lost() {
        let lost = Error::Statement {
            operation: Operation::Insert,
            table: "t",
            source: database(DatabaseErrorKind::Unknown, "Server has gone away"),
        };
        let lost = lost.or_connection_lost(false);
        assert!(matches!(
            lost,
            Error::ConnectionLost {
                during_commit: false,
                ..
            }
        ));
        assert!(lost.to_string().contains("nothing was written"), "{lost}");
        let at_commit = Error::Transaction(database(DatabaseErrorKind::ClosedConnection, "gone"))
            .or_connection_lost(true);
        assert!(
            at_commit
                .to_string()
                .contains("may or may not have been applied"),
            "{at_commit}"
        );
        let other = Error::Transaction(database(DatabaseErrorKind::UniqueViolation, "dup"));
        assert!(matches!(
            other.or_connection_lost(false),
            Error::Transaction(_)
        ));
    }
}
