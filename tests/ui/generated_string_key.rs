use uow::prelude::*;

diesel::table! {
    tags (id) {
        id -> Text,
        label -> Text,
    }
}

#[derive(Tracked, Clone)]
#[tracked(table = tags)]
struct Tag {
    #[tracked(generated)]
    id: String,
    label: String,
}

fn main() {}
