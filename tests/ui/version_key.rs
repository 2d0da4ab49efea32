use uow::prelude::*;

diesel::table! { documents (id) { id -> Integer, body -> Text } }

#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = documents)]
struct Document {
    #[tracked(version)]
    id: i32,
    body: String,
}

fn main() {}
