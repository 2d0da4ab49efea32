use uow::prelude::*;

diesel::table! { documents (id) { id -> Integer, body -> Text, version -> Integer, revision -> Integer } }

#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = documents)]
struct Document {
    id: i32,
    body: String,
    #[tracked(version)]
    version: i32,
    #[tracked(version)]
    revision: i32,
}

fn main() {}
