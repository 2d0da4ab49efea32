//! Compile-fail tests for `#[derive(Tracked)]`: every misuse must be rejected with an error on
//! the offending token and a `help:` line saying how to fix it.

/// Runs every `tests/ui/*.rs` case and compares the compiler output with its `.stderr`.
///
/// The snapshots are made with the toolchain pinned in `rust-toolchain.toml` (1.95.0); after a
/// deliberate change to a diagnostic, regenerate them with
/// `TRYBUILD=overwrite cargo test --test compile_fail` and review the diff.
///
/// rustc lists "other types that implement the trait" in some messages, and that list grows
/// with Diesel's backend features; the snapshots are made for the default features (SQLite),
/// so the suite runs there (`cargo test --workspace`, the README's command and CI's first run).
#[cfg(not(any(feature = "postgres", feature = "mysql")))]
#[test]
fn ui() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
