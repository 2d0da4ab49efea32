//! The bank service example (`examples/bank_service`) over real HTTP: each test serves the
//! app on 127.0.0.1 (a free port) in its own tokio runtime with its own SQLite file, and talks
//! to it with reqwest.
#![cfg(all(feature = "async", feature = "sqlite"))]

#[path = "../examples/bank_service/app.rs"]
mod app;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::{QueryDsl, SelectableHelper};
use diesel_async::{AsyncConnection, SimpleAsyncConnection};
use reqwest::Method;
use serde_json::{json, Value};

use app::{accounts, Account, AppState, CommitGate, Conn};

/// A directory of its own per test, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "uow-web-{}-{name}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The app served on a free port, with its database.
struct Server {
    base: String,
    database_url: String,
    state: AppState,
    client: reqwest::Client,
    _dir: TempDir,
}

impl Server {
    async fn start(name: &str, gate: Option<Arc<CommitGate>>) -> Server {
        let dir = TempDir::new(name);
        let database_url = dir
            .0
            .join("bank.db")
            .to_str()
            .expect("utf-8 path")
            .to_owned();
        let mut state = AppState::open(&database_url, 8)
            .await
            .expect("open the database");
        state.gate = gate;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let router = app::router(state.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
        Server {
            base,
            database_url,
            state,
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    /// One request; the status and the JSON body (every answer of the service has one).
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        call(&self.client, &self.base, method, path, body).await
    }

    /// The rows as a connection of its own (not from the service's pool) reads them.
    async fn rows(&self) -> Vec<Account> {
        // Only here: diesel-async's `RunQueryDsl` is implemented for every type, and its
        // `load(self, conn)` would shadow `AtomicUsize::load` and `AsyncUnitOfWork::load`.
        use diesel_async::RunQueryDsl;
        let mut conn = Conn::establish(&self.database_url).await.expect("connect");
        // A connection closing (the cancelled request's) may hold the file for a moment.
        conn.batch_execute("PRAGMA busy_timeout = 5000")
            .await
            .expect("busy timeout");
        accounts::table
            .order(accounts::id)
            .select(Account::as_select())
            .load(&mut conn)
            .await
            .expect("read accounts")
    }

    async fn create(&self, owner: &str, balance: i64) -> Account {
        let (status, body) = self
            .call(
                Method::POST,
                "/accounts",
                Some(json!({ "owner": owner, "balance": balance })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        serde_json::from_value(body).expect("an account")
    }
}

async fn call(
    client: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method, format!("{base}{path}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the service answers");
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").cloned();
    let text = response.text().await.expect("a body");
    let body = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("{status}: not JSON ({e}, content-type {content_type:?}): {text:?}")
    });
    (status, body)
}

/// An error answer: `{"error": "<message>"}`; the message.
fn error_message(body: &Value) -> &str {
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("an object: {body}"));
    assert_eq!(object.len(), 1, "only `error`: {body}");
    object["error"]
        .as_str()
        .unwrap_or_else(|| panic!("a message: {body}"))
}

fn account(id: i32, owner: &str, balance: i64, version: i32) -> Value {
    json!({ "id": id, "owner": owner, "balance": balance, "version": version })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_get_list_patch_and_transfer_round_trip() {
    let server = Server::start("round-trip", None).await;

    let (status, ann) = server
        .call(
            Method::POST,
            "/accounts",
            Some(json!({ "owner": "ann", "balance": 100 })),
        )
        .await;
    assert_eq!((status, &ann), (201, &account(1, "ann", 100, 1)));
    let (status, bob) = server
        .call(
            Method::POST,
            "/accounts",
            Some(json!({ "owner": "bob", "balance": 20 })),
        )
        .await;
    assert_eq!((status, &bob), (201, &account(2, "bob", 20, 1)));

    assert_eq!(
        server.call(Method::GET, "/accounts/1", None).await,
        (200, ann.clone())
    );
    assert_eq!(
        server.call(Method::GET, "/accounts", None).await,
        (200, json!([ann, bob]))
    );

    let (status, patched) = server
        .call(
            Method::PATCH,
            "/accounts/1",
            Some(json!({ "owner": "Ann", "version": 1 })),
        )
        .await;
    assert_eq!((status, &patched), (200, &account(1, "Ann", 100, 2)));
    assert_eq!(
        server.call(Method::GET, "/accounts/1", None).await,
        (200, patched)
    );

    let (status, moved) = server
        .call(
            Method::POST,
            "/transfers",
            Some(json!({ "from": 1, "to": 2, "amount": 30 })),
        )
        .await;
    assert_eq!(
        (status, &moved),
        (
            200,
            &json!({ "from": account(1, "Ann", 70, 3), "to": account(2, "bob", 50, 2) })
        )
    );

    // Errors: a status and {"error": ...}, and nothing written.
    let (status, body) = server
        .call(
            Method::POST,
            "/transfers",
            Some(json!({ "from": 2, "to": 1, "amount": 1000 })),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        error_message(&body).contains("insufficient funds"),
        "{body}"
    );
    let (status, body) = server.call(Method::GET, "/accounts/99", None).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        error_message(&body).contains("no account with id 99"),
        "{body}"
    );
    let (status, body) = server
        .call(
            Method::PATCH,
            "/accounts/99",
            Some(json!({ "owner": "x", "version": 1 })),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    error_message(&body);
    let (status, body) = server
        .call(
            Method::POST,
            "/transfers",
            Some(json!({ "from": 1, "to": 99, "amount": 1 })),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    error_message(&body);
    let (status, body) = server
        .call(
            Method::POST,
            "/transfers",
            Some(json!({ "from": 1, "to": 2, "amount": 0 })),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    error_message(&body);
    let (status, body) = server
        .call(
            Method::POST,
            "/accounts",
            Some(json!({ "owner": "cy", "balance": -1 })),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    error_message(&body);
    let (status, body) = server
        .call(Method::POST, "/accounts", Some(json!({ "owner": "cy" })))
        .await;
    assert_eq!(status, 422, "a field missing: {body}");
    error_message(&body);
    let (status, body) = server.call(Method::GET, "/accounts/abc", None).await;
    assert_eq!(status, 400, "{body}");
    error_message(&body);
    let (status, body) = server.call(Method::GET, "/nowhere", None).await;
    assert_eq!(status, 404, "{body}");
    error_message(&body);
    let (status, body) = server.call(Method::DELETE, "/accounts/1", None).await;
    assert_eq!(status, 405, "{body}");
    error_message(&body);

    let rows = server.rows().await;
    let expected: Vec<Account> = vec![
        Account {
            id: 1,
            owner: "Ann".into(),
            balance: 70,
            version: 3,
        },
        Account {
            id: 2,
            owner: "bob".into(),
            balance: 50,
            version: 2,
        },
    ];
    assert_eq!(rows, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_patch_based_on_a_stale_version_is_409_and_changes_nothing() {
    let server = Server::start("stale-patch", None).await;
    let ann = server.create("ann", 10).await;
    assert_eq!(ann.version, 1);

    // Two clients read version 1; the first one's change wins.
    let (status, body) = server
        .call(
            Method::PATCH,
            "/accounts/1",
            Some(json!({ "owner": "first", "version": 1 })),
        )
        .await;
    assert_eq!((status, &body), (200, &account(1, "first", 10, 2)));
    let (status, body) = server
        .call(
            Method::PATCH,
            "/accounts/1",
            Some(json!({ "owner": "second", "version": 1 })),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(error_message(&body).contains("version 2"), "{body}");

    assert_eq!(
        server.call(Method::GET, "/accounts/1", None).await,
        (200, account(1, "first", 10, 2))
    );
    assert_eq!(
        server.rows().await,
        [Account {
            id: 1,
            owner: "first".into(),
            balance: 10,
            version: 2
        }]
    );
}

/// A tiny xorshift generator: no dependency for random pairs and amounts.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transfers_lose_no_money_and_no_update() {
    const ACCOUNTS: i32 = 10;
    const CLIENTS: u64 = 10;
    const TRANSFERS_EACH: usize = 5;

    let server = Arc::new(Server::start("concurrent", None).await);
    for i in 0..ACCOUNTS {
        server.create(&format!("owner{i}"), 100).await;
    }
    let seed = std::env::var("UOW_WEB_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("seed {seed} (UOW_WEB_SEED to rerun)");

    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let server = server.clone();
        let mut random = Random((seed ^ (c + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1);
        clients.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for _ in 0..TRANSFERS_EACH {
                let from = 1 + random.below(ACCOUNTS as u64) as i32;
                let to = 1 + (from as u64 + random.below(ACCOUNTS as u64 - 1)) as i32 % ACCOUNTS;
                let amount = 1 + random.below(60) as i64;
                let (status, body) = server
                    .call(
                        Method::POST,
                        "/transfers",
                        Some(json!({ "from": from, "to": to, "amount": amount })),
                    )
                    .await;
                outcomes.push((from, to, amount, status, body));
            }
            outcomes
        }));
    }

    let mut expected = vec![100_i64; ACCOUNTS as usize];
    let (mut done, mut conflicts, mut refused) = (0, 0, 0);
    for client in clients {
        for (from, to, amount, status, body) in client.await.expect("client task") {
            assert_ne!(from, to);
            match status {
                200 => {
                    done += 1;
                    expected[from as usize - 1] -= amount;
                    expected[to as usize - 1] += amount;
                    assert_eq!(
                        (body["from"]["id"].as_i64(), body["to"]["id"].as_i64()),
                        (Some(from.into()), Some(to.into()))
                    );
                }
                409 => {
                    conflicts += 1;
                    error_message(&body);
                }
                // Random amounts overdraw now and then: refused before anything is written.
                422 => {
                    refused += 1;
                    assert!(
                        error_message(&body).contains("insufficient funds"),
                        "{body}"
                    );
                }
                _ => panic!("transfer {from} -> {to} of {amount}: {status} {body}"),
            }
        }
    }
    let failed = &server.state.failed_runs;
    let (lost_races, busy) = (
        failed.conflicts.load(Ordering::Relaxed),
        failed.transient.load(Ordering::Relaxed),
    );
    println!(
        "{done} transfers done, {conflicts} answered 409, {refused} refused (insufficient \
         funds); runs failed and rerun: {lost_races} on a version conflict, {busy} on a busy database"
    );
    // The version checks did their job: concurrent transfers of the same account conflicted.
    assert!(
        lost_races > 0,
        "no transfer lost a race: the test did not exercise the version check"
    );
    assert_eq!(
        done + conflicts + refused,
        CLIENTS as usize * TRANSFERS_EACH
    );
    assert!(done > 0);

    let rows = server.rows().await;
    assert_eq!(rows.len(), ACCOUNTS as usize);
    assert_eq!(
        rows.iter().map(|a| a.balance).sum::<i64>(),
        100 * ACCOUNTS as i64,
        "{rows:?}"
    );
    assert!(rows.iter().all(|a| a.balance >= 0), "{rows:?}");
    // Every transfer answered 200 is in the balances, and nothing else is: no lost update.
    assert_eq!(
        rows.iter().map(|a| a.balance).collect::<Vec<_>>(),
        expected,
        "{rows:?}"
    );
    let (status, listed) = server.call(Method::GET, "/accounts", None).await;
    assert_eq!(
        (status, listed),
        (200, serde_json::to_value(&rows).unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transfer_cancelled_inside_its_transaction_writes_nothing() {
    let gate = Arc::new(CommitGate::default());
    let server = Server::start("cancelled", Some(gate.clone())).await;
    server.create("ann", 100).await;
    server.create("bob", 20).await;
    let before = server.rows().await;
    // Two idle connections in the pool: the next request after the cancelled one gets the
    // other, and would wait on the write lock if the cancelled one's stayed in the pool.
    let (first, second) = (
        server.state.pool.get().await.unwrap(),
        server.state.pool.get().await.unwrap(),
    );
    drop((first, second));
    let pool_size = server.state.pool.status().size;
    assert_eq!(pool_size, 2);

    // A client starts a transfer; the handler loads both accounts, sends both UPDATEs inside
    // its transaction and waits at the gate, before the COMMIT.
    let client = server.client.clone();
    let url = format!("{}/transfers", server.base);
    let request = tokio::spawn(async move {
        client
            .post(url)
            .json(&json!({ "from": 1, "to": 2, "amount": 30 }))
            .send()
            .await
    });
    tokio::time::timeout(Duration::from_secs(10), gate.entered())
        .await
        .expect("the transfer reaches the gate, its UPDATEs sent");
    assert_eq!(
        server.rows().await,
        before,
        "uncommitted writes are not visible to others"
    );

    // The client goes away: its request future is dropped and its connection closed.
    request.abort();
    assert!(request.await.expect_err("aborted").is_cancelled());
    // hyper sees the closed connection and drops the handler's future, at the gate.
    tokio::time::timeout(Duration::from_secs(10), gate.abandoned())
        .await
        .expect("the server dropped the handler's future when the client went away");

    // The connection that held the open transaction left the pool (closing it rolled back).
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.state.pool.status().size != pool_size - 1 {
        assert!(
            Instant::now() < deadline,
            "the broken connection leaves the pool: {:?}",
            server.state.pool.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        server.rows().await,
        before,
        "nothing of the cancelled transfer was committed"
    );

    // And it did so at once: another connection can take the write lock now (without the
    // app's `PooledConn`, the broken connection would wait idle in the pool, its transaction
    // open and the lock held, until the pool next handed it out and discarded it).
    let mut probe = Conn::establish(&server.database_url)
        .await
        .expect("connect");
    probe
        .batch_execute("PRAGMA busy_timeout = 1000; BEGIN IMMEDIATE; ROLLBACK")
        .await
        .expect("the write lock is free: the cancelled transaction was rolled back");
    drop(probe);

    // The service goes on: the next transfer passes the gate (released beforehand) and
    // commits at once, without waiting for a write lock the cancelled one held.
    gate.release();
    let started = Instant::now();
    let (status, body) = server
        .call(
            Method::POST,
            "/transfers",
            Some(json!({ "from": 1, "to": 2, "amount": 30 })),
        )
        .await;
    assert_eq!(
        (status, &body),
        (
            200,
            &json!({ "from": account(1, "ann", 70, 2), "to": account(2, "bob", 50, 2) })
        )
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no wait on a lock: {:?}",
        started.elapsed()
    );
    let after = [
        Account {
            id: 1,
            owner: "ann".into(),
            balance: 70,
            version: 2,
        },
        Account {
            id: 2,
            owner: "bob".into(),
            balance: 50,
            version: 2,
        },
    ];
    assert_eq!(server.rows().await, after);
    assert_eq!(
        server.call(Method::GET, "/accounts", None).await,
        (200, serde_json::to_value(&after).unwrap())
    );
}
