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

fn main() {
    // Call sites as a user writes them: a mistake in the derive must not be reported here too.
    use diesel::Connection;
    let mut conn = diesel::SqliteConnection::establish(":memory:").unwrap();
    let mut uow = UnitOfWork::new();
    let author = uow.load::<Author>(&mut conn, Default::default()).unwrap();
    let _ = uow.get_mut(&author).unwrap();
    uow.register_removed(&author).unwrap();
    let book = uow.load::<Book>(&mut conn, Default::default()).unwrap();
    let _ = uow.get_mut(&book).unwrap();
    uow.register_removed(&book).unwrap();
    uow.commit(&mut conn).unwrap();
}
