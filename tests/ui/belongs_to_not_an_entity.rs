use uow::prelude::*;

diesel::table! { authors (id) { id -> Integer, name -> Text } }
diesel::table! { books (id) { id -> Integer, author_id -> Integer, title -> Text } }

#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = authors)]
struct Author {
    #[tracked(generated)]
    id: i32,
    name: String,
}

#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = books, belongs_to(String, foreign_key = author_id))]
struct Book {
    #[tracked(generated)]
    id: i32,
    author_id: i32,
    title: String,
}

fn main() {}
