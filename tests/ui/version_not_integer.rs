use uow::prelude::*;

diesel::table! { documents (id) { id -> Integer, body -> Text, version -> Text } }

#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = documents)]
struct Document {
    id: i32,
    body: String,
    #[tracked(version)]
    version: String,
}

fn main() {}
