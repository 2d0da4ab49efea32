use uow::prelude::*;

diesel::table! {
    users (id) {
        id -> Integer,
        name -> Text,
    }
}

#[derive(Tracked, Clone)]
#[tracked(table = users)]
struct User {
    id: i32,
    #[tracked(column = nme)]
    full_name: String,
}

fn main() {}
