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

fn main() {
    // Call sites as a user writes them: a mistake in the derive must not be reported here too.
    use diesel::Connection;
    let mut conn = diesel::SqliteConnection::establish(":memory:").unwrap();
    let mut uow = UnitOfWork::new();
    let edition = uow.load::<Edition>(&mut conn, Default::default()).unwrap();
    let _ = uow.get_mut(&edition).unwrap();
    uow.register_removed(&edition).unwrap();
    let print_run = uow.load::<PrintRun>(&mut conn, Default::default()).unwrap();
    let _ = uow.get_mut(&print_run).unwrap();
    uow.register_removed(&print_run).unwrap();
    uow.commit(&mut conn).unwrap();
}
