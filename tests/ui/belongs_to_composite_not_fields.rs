use uow::prelude::*;

diesel::table! { editions (book_id, number) { book_id -> Integer, number -> Integer } }
diesel::table! { print_runs (id) { id -> Integer, book_id -> Integer, edition_no -> Integer } }

#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = editions)]
struct Edition {
    #[tracked(primary_key)]
    book_id: i32,
    #[tracked(primary_key)]
    number: i32,
}

// A foreign key lists fields, not strings: one error, on the string.
#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = print_runs, belongs_to(Edition, foreign_key = ("book_id", edition)))]
struct PrintRun {
    #[tracked(generated)]
    id: i32,
    book_id: i32,
    edition_no: i32,
}

fn main() {}
