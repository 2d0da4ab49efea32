use uow::prelude::*;

diesel::table! {
    memberships (user_id, group_id) {
        user_id -> Integer,
        group_id -> Integer,
        role -> Text,
    }
}

#[derive(Tracked)]
#[tracked(table = memberships)]
struct Membership {
    #[tracked(primary_key, generated)]
    user_id: i32,
    #[tracked(primary_key)]
    group_id: i32,
    role: String,
}

fn main() {}
