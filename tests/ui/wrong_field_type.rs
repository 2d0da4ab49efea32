use uow::prelude::*;

diesel::table! {
    accounts (id) {
        id -> Integer,
        owner -> Text,
        balance -> BigInt,
    }
}

#[derive(Tracked, Clone)]
#[tracked(table = accounts)]
struct Account {
    id: i32,
    owner: String,
    balance: String,
}

fn main() {}
