use uow::prelude::*;

diesel::table! { documents (id) { id -> Integer, body -> Text } }

#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = documents)]
struct Document {
    #[tracked(version)]
    id: i32,
    body: String,
}

fn main() {
    // Call sites as a user writes them: a mistake in the derive must not be reported here too.
    use diesel::Connection;
    let mut conn = diesel::SqliteConnection::establish(":memory:").unwrap();
    let mut uow = UnitOfWork::new();
    let document = uow.load::<Document>(&mut conn, Default::default()).unwrap();
    let _ = uow.get_mut(&document).unwrap();
    uow.register_removed(&document).unwrap();
    uow.commit(&mut conn).unwrap();
}
