//! A small bank as a web service: axum, one `uow::AsyncUnitOfWork` per request, a deadpool of
//! SQLite connections through diesel-async's `SyncConnectionWrapper`.
//!
//! ```text
//! cargo run --example bank_service --features async
//! DATABASE_URL=/tmp/my-bank.db PORT=8080 cargo run --example bank_service --features async
//! ```
//!
//! The database is `$DATABASE_URL` (an SQLite file name), else `bank.db` in the temp
//! directory; the schema is created if missing. It listens on 127.0.0.1:3000 (or `$PORT`).
//!
//! ```text
//! curl -i -X POST localhost:3000/accounts -H 'content-type: application/json' \
//!      -d '{"owner": "ann", "balance": 100}'          # 201 {"id":1,"owner":"ann","balance":100,"version":1}
//! curl -i -X POST localhost:3000/accounts -H 'content-type: application/json' \
//!      -d '{"owner": "bob", "balance": 20}'           # 201 {"id":2,...}
//! curl -i localhost:3000/accounts                     # 200 [...]
//! curl -i localhost:3000/accounts/1                   # 200 {...}; 404 {"error": ...} if unknown
//! curl -i -X PATCH localhost:3000/accounts/1 -H 'content-type: application/json' \
//!      -d '{"owner": "Ann", "version": 1}'            # 200; 409 if the account is not at version 1
//! curl -i -X POST localhost:3000/transfers -H 'content-type: application/json' \
//!      -d '{"from": 1, "to": 2, "amount": 30}'        # 200 {"from":{...},"to":{...}}
//! curl -i -X POST localhost:3000/transfers -H 'content-type: application/json' \
//!      -d '{"from": 2, "to": 1, "amount": 1000}'      # 422 insufficient funds
//! ```
//!
//! Every error is answered with `{"error": "..."}`: 404 for an unknown account, 409 for a stale
//! version (or a transfer that lost its race on every retry), 422 for an overdraft or a bad
//! amount, 503 when the database stays busy.

mod app;

use std::error::Error;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let database_url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        std::env::temp_dir()
            .join("bank.db")
            .to_string_lossy()
            .into_owned()
    });
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse().map_err(|e| format!("PORT={port}: {e}"))?,
        Err(_) => 3000,
    };
    let state = app::AppState::open(&database_url, 8).await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "bank service on http://{} (database {database_url})",
        listener.local_addr()?
    );
    axum::serve(listener, app::router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
