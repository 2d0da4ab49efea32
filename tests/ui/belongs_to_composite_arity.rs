use uow::prelude::*;

diesel::table! { editions (book_id, number) { book_id -> Integer, number -> Integer } }
diesel::table! { print_runs (id) { id -> Integer, book_id -> Integer, edition_no -> Integer, copies -> Integer } }

#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = editions)]
struct Edition {
    #[tracked(primary_key)]
    book_id: i32,
    #[tracked(primary_key)]
    number: i32,
}

// The parent's key has two fields; the foreign key names one.
#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = print_runs, belongs_to(Edition, foreign_key = edition_no))]
struct PrintRun {
    #[tracked(generated)]
    id: i32,
    book_id: i32,
    edition_no: i32,
    copies: i32,
}

fn main() {}
