//! With the `tracing` feature, commit, flush and rollback emit spans with row counts.
#![cfg(feature = "tracing")]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use tracing_subscriber::fmt::format::FmtSpan;
use uow::prelude::*;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.lock() {
            Ok(mut v) => v.extend_from_slice(buf),
            Err(p) => p.into_inner().extend_from_slice(buf),
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        let bytes = match self.0.lock() {
            Ok(v) => v.clone(),
            Err(p) => p.into_inner().clone(),
        };
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

backend_tests! {
    fn commit_flush_and_rollback_are_traced(db) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_span_events(FmtSpan::CLOSE)
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || -> TestResult {
            let mut uow = UnitOfWork::<Conn>::new();
            let ann = uow.register_new(account("ann", 1))?;
            let bob = uow.register_new(account("bob", 2))?;
            uow.commit(&mut db.conn)?;
            let _: Result<(), uow::Error> = uow.transaction(&mut db.conn, |scope| {
                scope.register_new(account("cy", 3))?;
                scope.flush()?;
                Err(uow::Error::NoTransaction)
            });
            uow.transaction(&mut db.conn, |scope| {
                scope.register_new(account("dee", 4))?;
                scope.flush()?;
                scope.register_new(account("eve", 5))?;
                Ok::<_, uow::Error>(())
            })?;
            // The DELETE goes through, then the UPDATE breaks the CHECK: one row rolled back.
            uow.register_removed(&ann)?;
            uow.get_mut(&bob)?.balance = -1;
            assert!(uow.commit(&mut db.conn).is_err());
            Ok(())
        })?;
        let text = captured.text();
        let lines = |name: &str| -> Vec<String> {
            text.lines().filter(|l| l.contains(name)).map(str::to_string).collect()
        };
        let writes = lines("uow.write");
        assert!(writes.iter().any(|l| l.contains("operation=\"commit\"") && l.contains("inserted=2") && l.contains("examined=2")), "{text}");
        assert!(writes.iter().any(|l| l.contains("operation=\"flush\"") && l.contains("inserted=1")), "{text}");
        let rollbacks = lines("uow.rollback");
        assert!(
            rollbacks.iter().any(|l| l.contains("scope=\"scope\"") && l.contains("inserted=1") && l.contains("statements=1")),
            "the rolled-back scope reports the row its flush had written: {text}"
        );
        assert!(
            rollbacks.iter().any(|l| l.contains("scope=\"commit\"") && l.contains("deleted=1") && l.contains("error=")),
            "the failed commit reports what it rolled back, and why: {text}"
        );
        assert!(
            lines("uow.scope").iter().any(|l| l.contains("outcome=\"commit\"") && l.contains("inserted=2")),
            "a committed scope reports the rows of all its flushes: {text}"
        );
        Ok(())
    }
}
