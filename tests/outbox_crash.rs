//! The relay killed with SIGKILL a hundred times, on every enabled backend (feature
//! `rabbitmq`): every event is handled exactly once all the same, and each aggregate's events
//! are first delivered in order.
//!
//! The relay is the `outbox_relay` example's code (`examples/outbox_relay.rs`, included
//! below), run in a child process: this test binary started again on the ignored test
//! `relay_child`, as `tests/crash.rs` does, so the child is always the code just built. The
//! test fills the outbox (six wallets' events, interleaved), then a hundred times commits six
//! more events, starts a relay and kills it:
//!
//! - one round in three, right after the broker confirmed a batch and before the relay marked
//!   it (the relay announces each confirm on stdout and, asked to, pauses there; the test
//!   kills it on reading the line): the broker has the batch, the outbox still holds it
//!   unpublished, and the next relay publishes it again;
//! - the other rounds at a random moment (starting up, claiming, publishing, waiting for the
//!   confirms, in the short pause after them, committing).
//!
//! Then one last relay runs until the outbox is empty. A consumer (a thread of the test)
//! reads the queue the whole time and handles each message with `handle_once`, writing a row
//! per message it handles into the same database. At the end: one row per event, none
//! missing; the first deliveries of each wallet's events in order; and the duplicates the
//! broker delivered (the at-least-once path) counted and required.
#![cfg(all(unix, feature = "rabbitmq"))]

mod brokers;
mod common;
#[allow(dead_code)]
#[path = "../examples/outbox_relay.rs"]
mod relay_example;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use brokers::*;
use common::{open_isolated, Kind, Target, TestBackend};
use uow::prelude::*;
use uow::Load;

/// The child's arguments for the example's relay, one per line.
const CHILD_ARGS: &str = "UOW_CRASH_RELAY_ARGS";
/// What the example reads: the pause after each confirm, in milliseconds.
const PAUSE_VAR: &str = "UOW_RELAY_PAUSE_AFTER_CONFIRM_MS";

const KILLS: usize = 100;
const WALLETS: i32 = 6;

/// Started by the tests below as a child process: the example's relay, until it is killed
/// (or, with `--once`, until the outbox is empty).
#[test]
#[ignore = "the child process of the outbox crash tests; does nothing on its own"]
fn relay_child() -> Result<(), BoxError> {
    let Ok(args) = std::env::var(CHILD_ARGS) else {
        return Ok(());
    };
    let Some(config) = relay_example::Config::parse(args.lines().map(str::to_owned))? else {
        return Err("no database given".into());
    };
    runtime().block_on(relay_example::run(&config))
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_every_event_handled_once_through_100_killed_relays() -> Result<(), BoxError> {
    kill_the_relay::<diesel::SqliteConnection>()
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_every_event_handled_once_through_100_killed_relays() -> Result<(), BoxError> {
    kill_the_relay::<diesel::PgConnection>()
}

#[cfg(feature = "mysql")]
#[test]
fn mysql_every_event_handled_once_through_100_killed_relays() -> Result<(), BoxError> {
    kill_the_relay::<diesel::MysqlConnection>()
}

/// The database as the example takes it: a URL (PostgreSQL: the test's schema first on the
/// search path) or an SQLite file.
fn database_url<C: TestBackend>(target: &Target) -> String {
    if C::KIND != Kind::Postgres {
        return target.url.clone();
    }
    let schema = target
        .setup
        .iter()
        .find_map(|s| s.strip_prefix("SET search_path TO "))
        .unwrap_or_else(|| panic!("no schema in {:?}", target.setup));
    let joint = if target.url.contains('?') { '&' } else { '?' };
    format!("{}{joint}options=-csearch_path%3D{schema}", target.url)
}

/// A relay started as a child process, its stdout's lines coming through a channel.
struct RelayProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl RelayProcess {
    fn start(args: &[String], pause: Option<Duration>) -> RelayProcess {
        let exe = match std::env::current_exe() {
            Ok(exe) => exe,
            Err(e) => panic!("cannot find the test binary: {e}"),
        };
        let mut command = Command::new(exe);
        command
            .args([
                "--exact",
                "relay_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ARGS, args.join("\n"))
            .env_remove(PAUSE_VAR)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(pause) = pause {
            command.env(PAUSE_VAR, pause.as_millis().to_string());
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => panic!("cannot start the relay: {e}"),
        };
        let (send, lines) = mpsc::channel();
        let outputs: [Box<dyn std::io::Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("piped stdout")),
            Box::new(child.stderr.take().expect("piped stderr")),
        ];
        for output in outputs {
            let send = send.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(output).lines().map_while(Result::ok) {
                    if send.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        RelayProcess { child, lines }
    }

    /// Waits up to `limit` for a line with `text` (the test harness of the child may print
    /// before it on the same line); whether it came.
    fn wait_for_line(&self, text: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// SIGKILL, and waits for the process to be gone.
    fn kill(mut self) {
        if let Err(e) = self.child.kill() {
            panic!("cannot kill the relay: {e}");
        }
        match self.child.wait() {
            Ok(status) => assert!(!status.success(), "the relay was killed, it did not finish"),
            Err(e) => panic!("cannot wait for the relay: {e}"),
        }
    }

    /// Waits up to `limit` for the process to exit; its success, and what it printed.
    fn finish(mut self, limit: Duration) -> (bool, Vec<String>) {
        let deadline = Instant::now() + limit;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    let printed: Vec<String> = self.lines.try_iter().collect();
                    panic!(
                        "the last relay did not finish within {limit:?}:\n{}",
                        printed.join("\n")
                    );
                }
                Err(e) => panic!("cannot wait for the relay: {e}"),
            }
        };
        std::thread::sleep(Duration::from_millis(50));
        (status.success(), self.lines.try_iter().collect())
    }
}

/// What the consumer saw.
#[derive(Default)]
struct Consumed {
    deliveries: usize,
    redelivered_by_broker: usize,
    duplicates: usize,
    /// (wallet, n) of each message it handled, in the order it handled them.
    first: Vec<(i32, i64)>,
}

fn kill_the_relay<C: RelayDb>() -> Result<(), BoxError>
where
    Wallet: Persist<C::Backend> + Load<C::Backend>,
    Handled: Persist<C::Backend>,
{
    let started = Instant::now();
    let mut db = open_isolated::<C>();
    create_tables(&mut db);
    let mut seed = seed();
    eprintln!(
        "{:?}: seed {seed} (UOW_TEST_SEED={seed} replays the same choices)",
        C::KIND
    );
    let mut counts = open_wallets(&mut db.conn, WALLETS);
    deposit_rounds(&mut db.conn, &mut counts, 20, &mut seed);

    let runtime = runtime();
    let mut rabbit = runtime.block_on(Rabbit::connect());
    let queue = runtime.block_on(rabbit.queue("crash", &[]));
    let url = database_url::<C>(&db.target);
    let relay_args = |batch: u64, once: bool| {
        let mut args = vec![
            url.clone(),
            "--amqp".into(),
            amqp_url(),
            "--queue".into(),
            queue.clone(),
        ];
        args.extend(["--batch".into(), batch.to_string()]);
        if once {
            args.push("--once".into());
        }
        args
    };

    let stop = AtomicBool::new(false);
    let handled = AtomicUsize::new(0);
    let mut consumer_conn = db.connect();
    let (mut windows, mut random_kills) = (0, 0);
    let consumed = std::thread::scope(|s| {
        let consumer = s.spawn(|| {
            let channel = runtime.block_on(rabbit.channel());
            let mut seen = Consumed::default();
            loop {
                match runtime.block_on(next(&channel, &queue)) {
                    Some(message) => {
                        seen.deliveries += 1;
                        if message.metadata["redelivered"] == "true" {
                            seen.redelivered_by_broker += 1;
                        }
                        if handle(&mut consumer_conn, &message, 0) {
                            seen.first.push((message.wallet, message.n));
                            handled.fetch_add(1, Ordering::SeqCst);
                        } else {
                            seen.duplicates += 1;
                        }
                    }
                    None if stop.load(Ordering::SeqCst) => return seen,
                    None => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });

        for round in 0..KILLS {
            // The application goes on committing while relays come and go.
            deposit_rounds(&mut db.conn, &mut counts, 1, &mut seed);
            let batch = 1 + next_random(&mut seed) % 6;
            if round % 3 == 0 {
                // Killed between the broker's confirm and the relay's COMMIT.
                let relay =
                    RelayProcess::start(&relay_args(batch, false), Some(Duration::from_secs(5)));
                if relay.wait_for_line("confirmed ", Duration::from_secs(10)) {
                    windows += 1;
                }
                relay.kill();
            } else {
                let relay =
                    RelayProcess::start(&relay_args(batch, false), Some(Duration::from_millis(15)));
                std::thread::sleep(Duration::from_millis(next_random(&mut seed) % 250));
                relay.kill();
                random_kills += 1;
            }
        }

        let left = C::outbox_rows(&mut db.conn)
            .iter()
            .filter(|(_, published)| !published)
            .count();
        // One last relay, left to finish.
        let (finished, printed) =
            RelayProcess::start(&relay_args(50, true), None).finish(Duration::from_secs(60));
        assert!(finished, "the last relay failed:\n{}", printed.join("\n"));
        let total: i64 = counts.values().sum();
        let deadline = Instant::now() + Duration::from_secs(60);
        while (handled.load(Ordering::SeqCst) as i64) < total && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Anything still in the queue is read before the consumer stops.
        stop.store(true, Ordering::SeqCst);
        let consumed = consumer
            .join()
            .unwrap_or_else(|_| panic!("the consumer panicked"));
        (consumed, left)
    });
    let (consumed, left) = consumed;

    let total: i64 = counts.values().sum();
    let rows = C::outbox_rows(&mut db.conn);
    assert_eq!(rows.len() as i64, total);
    assert!(
        rows.iter().all(|(_, published)| *published),
        "every row published in the end"
    );
    let (per_message, handled_rows) = handled_counts(&mut db.conn);
    assert_eq!(handled_rows, total, "one handled row per event");
    assert!(
        per_message.values().all(|n| *n == 1),
        "no event handled twice"
    );
    let outbox: BTreeSet<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    let handled_ids: BTreeSet<&str> = per_message.keys().map(String::as_str).collect();
    assert_eq!(handled_ids, outbox, "every event handled");
    assert_in_order(&consumed.first, &counts, "first deliveries");
    assert_eq!(consumed.deliveries, total as usize + consumed.duplicates);

    eprintln!(
        "{:?}: {KILLS} relays killed ({windows} right after a confirm, {random_kills} at random), \
         then one published the {left} rows left: {total} events, {} deliveries, {} duplicates dropped by the inbox \
         ({} redelivered by the broker itself), every event handled once, in {:.1} s",
        C::KIND,
        consumed.deliveries,
        consumed.duplicates,
        consumed.redelivered_by_broker,
        started.elapsed().as_secs_f64()
    );
    assert!(
        windows >= KILLS / 3 - 2,
        "the relays reached a confirm in only {windows} of the {} rounds meant to kill them there",
        KILLS.div_ceil(3)
    );
    assert!(
        consumed.duplicates >= windows,
        "each kill after a confirm leaves at least one message to deliver again: {} duplicates, \
         {windows} such kills",
        consumed.duplicates
    );
    drop(rabbit);
    Ok(())
}
