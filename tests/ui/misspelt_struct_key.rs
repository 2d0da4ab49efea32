use uow::prelude::*;

diesel::table! {
    accounts (id) {
        id -> Integer,
        owner -> Text,
        balance -> BigInt,
    }
}

#[derive(Tracked)]
#[tracked(tabel = accounts)]
struct Account {
    id: i32,
    owner: String,
    balance: i64,
}

fn main() {}
