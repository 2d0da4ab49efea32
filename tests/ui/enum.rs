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
enum Account {
    Open { id: i32 },
    Closed { id: i32 },
}

fn main() {}
