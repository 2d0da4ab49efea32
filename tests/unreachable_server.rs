//! An enabled backend whose server cannot be reached fails the tests, naming the variable to
//! set; it is never skipped. Each case reruns this test binary as a child process with the URL
//! variable pointing at a closed port (changing the variable in this process would break the
//! tests running beside it) and checks that the child fails, and why.
#![cfg(any(feature = "postgres", feature = "mysql"))]

mod common;

use std::process::Command;

/// Runs the ignored test `name` of this binary with `var` set to `url`; returns its status
/// and everything it printed.
fn run_child(name: &str, var: &str, url: &str) -> (bool, String) {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => panic!("cannot find the test binary: {e}"),
    };
    let output = match Command::new(exe)
        .args(["--exact", name, "--ignored", "--test-threads=1"])
        .env(var, url)
        .output()
    {
        Ok(output) => output,
        Err(e) => panic!("cannot run the child test: {e}"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[cfg(feature = "postgres")]
#[test]
#[ignore = "run by an_unreachable_postgres_fails_naming_its_variable, with a closed port"]
fn open_postgres() {
    let _db = <diesel::PgConnection as common::TestBackend>::open_isolated();
}

#[cfg(feature = "postgres")]
#[test]
fn an_unreachable_postgres_fails_naming_its_variable() {
    let var = common::POSTGRES_URL_VAR;
    let (passed, text) = run_child("open_postgres", var, "postgres://postgres@127.0.0.1:1/test");
    assert!(
        !passed,
        "a PostgreSQL that cannot be reached must fail the test:\n{text}"
    );
    assert!(
        text.contains(var) && text.contains("cannot be reached"),
        "{text}"
    );
}

#[cfg(feature = "mysql")]
#[test]
#[ignore = "run by an_unreachable_mysql_fails_naming_its_variable, with a closed port"]
fn open_mysql() {
    let _db = <diesel::MysqlConnection as common::TestBackend>::open_isolated();
}

#[cfg(feature = "mysql")]
#[test]
fn an_unreachable_mysql_fails_naming_its_variable() {
    let var = common::MYSQL_URL_VAR;
    let (passed, text) = run_child("open_mysql", var, "mysql://root@127.0.0.1:1/test");
    assert!(
        !passed,
        "a MySQL that cannot be reached must fail the test:\n{text}"
    );
    assert!(
        text.contains(var) && text.contains("cannot be reached"),
        "{text}"
    );
}
