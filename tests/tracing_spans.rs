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
            uow.register_new(account("ann", 1))?;
            uow.register_new(account("bob", 2))?;
            uow.commit(&mut db.conn)?;
            let _: Result<(), uow::Error> = uow.transaction(&mut db.conn, |scope| {
                scope.register_new(account("cy", 3))?;
                scope.flush()?;
                Err(uow::Error::NoTransaction)
            });
            Ok(())
        })?;
        let text = captured.text();
        assert!(text.contains("uow.write"), "{text}");
        assert!(text.contains("operation=\"commit\"") && text.contains("inserted=2"), "{text}");
        assert!(text.contains("operation=\"flush\"") && text.contains("inserted=1"), "{text}");
        assert!(text.contains("uow.rollback"), "{text}");
        Ok(())
    }
}
