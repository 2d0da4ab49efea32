//! `tracing` spans for commit, flush and rollback (feature `tracing`); no-ops without it.

use crate::error::Error;
use crate::report::CommitReport;

#[cfg(feature = "tracing")]
pub(crate) type Span = tracing::Span;
/// Without the feature, a span is nothing at all.
#[cfg(not(feature = "tracing"))]
pub(crate) struct Span;

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
        )
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = what;
        Span
    }
}

pub(crate) fn write_done(span: &Span, report: &CommitReport) {
    #[cfg(feature = "tracing")]
    {
        let sum = |f: fn(&crate::report::TableReport) -> usize| -> usize {
            report.tables().iter().map(f).sum()
        };
        span.record("inserted", sum(|t| t.inserted));
        span.record("updated", sum(|t| t.updated));
        span.record("deleted", sum(|t| t.deleted));
        span.record("statements", report.statements());
        span.in_scope(|| tracing::info!(%report, "written"));
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = (span, report);
    }
}

pub(crate) fn write_failed(span: &Span, error: &Error) {
    #[cfg(feature = "tracing")]
    span.in_scope(|| tracing::warn!(%error, "rolled back"));
    #[cfg(not(feature = "tracing"))]
    {
        let _ = (span, error);
    }
}

/// The end of a transaction scope: committed, or rolled back with memory restored.
pub(crate) fn scope_end(committed: bool) {
    #[cfg(feature = "tracing")]
    {
        if committed {
            tracing::info_span!("uow.scope", outcome = "commit").in_scope(|| {});
        } else {
            tracing::info_span!("uow.rollback")
                .in_scope(|| tracing::info!("scope rolled back; entities restored"));
        }
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = committed;
    }
}
