//! `tracing` spans for commit, flush and rollback (feature `tracing`); no-ops without it.
//!
//! - `uow.write` (fields `operation` = commit or flush, `inserted`, `updated`, `deleted`,
//!   `statements`, `examined`: the entities the write looked at): one per commit or flush that
//!   sends anything, entered while its statements run, so events of the application's own
//!   during the write nest under it;
//! - `uow.rollback` (fields `scope` = commit, flush or scope, the same counts, and `error`):
//!   the rows that were sent and then rolled back, when a write fails or a scope rolls back;
//! - `uow.scope` (fields `outcome` = commit, and the counts of every flush of the scope): an
//!   outermost or nested scope that committed.

use crate::error::Error;
use crate::report::CommitReport;

#[cfg(feature = "tracing")]
pub(crate) type Span = tracing::Span;
/// Without the feature, a span is nothing at all.
#[cfg(not(feature = "tracing"))]
pub(crate) struct Span;

#[cfg(feature = "tracing")]
fn totals(report: &CommitReport) -> (usize, usize, usize) {
    report.tables().iter().fold((0, 0, 0), |(i, u, d), t| {
        (i + t.inserted, u + t.updated, d + t.deleted)
    })
}

/// A span for one commit or flush; counts are recorded when it ends.
pub(crate) fn write_span(what: &'static str) -> Span {
    #[cfg(feature = "tracing")]
    {
        tracing::info_span!(
            "uow.write",
            operation = what,
            inserted = tracing::field::Empty,
            updated = tracing::field::Empty,
            deleted = tracing::field::Empty,
            statements = tracing::field::Empty,
            examined = tracing::field::Empty,
        )
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = what;
        Span
    }
}

/// Runs `future` with `span` as the current span whenever it is polled (an entered span
/// held across an `.await` would follow the task to other threads).
pub(crate) fn in_span<F: std::future::Future>(
    span: &Span,
    future: F,
) -> impl std::future::Future<Output = F::Output> {
    #[cfg(feature = "tracing")]
    {
        tracing::Instrument::instrument(future, span.clone())
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = span;
        future
    }
}

pub(crate) fn write_done(span: &Span, report: &CommitReport) {
    #[cfg(feature = "tracing")]
    {
        let (inserted, updated, deleted) = totals(report);
        span.record("inserted", inserted);
        span.record("updated", updated);
        span.record("deleted", deleted);
        span.record("statements", report.statements());
        span.record("examined", report.examined());
        span.in_scope(|| tracing::info!(%report, "written"));
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = (span, report);
    }
}

/// A write failed: `sent` is what its statements had written before the failure, all of it
/// rolled back now.
pub(crate) fn write_failed(span: &Span, what: &'static str, sent: &CommitReport, error: &Error) {
    #[cfg(feature = "tracing")]
    span.in_scope(|| rollback(what, sent, Some(error)));
    #[cfg(not(feature = "tracing"))]
    {
        let _ = (span, what, sent, error);
    }
}

#[cfg(feature = "tracing")]
fn rollback(what: &'static str, undone: &CommitReport, error: Option<&Error>) {
    let (inserted, updated, deleted) = totals(undone);
    let span = tracing::warn_span!(
        "uow.rollback",
        scope = what,
        inserted,
        updated,
        deleted,
        statements = undone.statements(),
        error = tracing::field::Empty,
    );
    if let Some(error) = error {
        span.record("error", tracing::field::display(error));
    }
    span.in_scope(|| tracing::warn!("rolled back; entities restored"));
}

/// The end of a transaction scope: committed, or rolled back with memory restored; `report`
/// holds the rows its flushes wrote (kept or undone).
pub(crate) fn scope_end(committed: bool, report: &CommitReport) {
    #[cfg(feature = "tracing")]
    {
        if committed {
            let (inserted, updated, deleted) = totals(report);
            tracing::info_span!(
                "uow.scope",
                outcome = "commit",
                inserted,
                updated,
                deleted,
                statements = report.statements(),
            )
            .in_scope(|| tracing::info!("scope committed"));
        } else {
            rollback("scope", report, None);
        }
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = (committed, report);
    }
}

/// Participants whose compensation failed while a panic was unwinding: the panic goes to the
/// caller, so this is the only place they can be reported.
pub(crate) fn not_undone_after_panic(not_undone: &[(String, String)]) {
    #[cfg(feature = "tracing")]
    for (participant, error) in not_undone {
        tracing::error!(%participant, %error, "could not be undone after a panic");
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = not_undone;
    }
}
