use uow::prelude::*;

diesel::table! {
    accounts (id) {
        id -> Integer,
        owner -> Text,
        balance -> BigInt,
    }
}

#[derive(Tracked)]
#[tracked(table = accounts)]
struct Account(i32, String, i64);

fn main() {}
