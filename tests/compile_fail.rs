//! Compile-fail tests for `#[derive(Tracked)]`: every misuse must be rejected with an error on
//! the offending token and a `help:` line saying how to fix it. One case is no misuse:
//! `correct_names_give_no_hint.rs` names tables, columns and the crate in every accepted way,
//! and its only error is a deliberate one, so that anything else in its snapshot is an error
//! that correct code caused.

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

/// The most errors one mistake may cause: rustc's own "one mistake, one error" with room for a
/// note-like second error (Diesel's derives give 3 for a wrong field type).
#[cfg(not(any(feature = "postgres", feature = "mysql")))]
const MAX_ERRORS_PER_CASE: usize = 3;

/// Every case in `tests/ui` reports at most [`MAX_ERRORS_PER_CASE`] errors, call sites
/// included: each case uses its entities as an application does (`load`, `get_mut`,
/// `register_removed`, `commit`), and a mistake in the derive must not be repeated at them.
#[cfg(not(any(feature = "postgres", feature = "mysql")))]
#[test]
fn one_mistake_gives_at_most_three_errors() {
    let mut cases = 0;
    let mut too_many = Vec::new();
    for entry in std::fs::read_dir("tests/ui").expect("tests/ui exists") {
        let path = entry.expect("tests/ui is readable").path();
        if path.extension().is_some_and(|ext| ext == "stderr") {
            cases += 1;
            let stderr = std::fs::read_to_string(&path).expect("a .stderr snapshot is readable");
            let errors = stderr.lines().filter(|l| l.starts_with("error")).count();
            if errors > MAX_ERRORS_PER_CASE {
                too_many.push(format!("{} ({errors} errors)", path.display()));
            }
        }
    }
    assert!(
        cases >= 45,
        "the compile-fail suite has {cases} cases, fewer than 45"
    );
    assert!(
        too_many.is_empty(),
        "more than {MAX_ERRORS_PER_CASE} errors: {too_many:#?}"
    );
}
