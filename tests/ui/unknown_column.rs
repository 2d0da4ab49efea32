use uow::prelude::*;

diesel::table! {
    users (id) {
        id -> Integer,
        name -> Text,
    }
}

#[derive(Tracked, Clone)]
#[tracked(table = users)]
struct User {
    id: i32,
    #[tracked(column = nme)]
    full_name: String,
}

fn main() {
    // Call sites as a user writes them: a mistake in the derive must not be reported here too.
    use diesel::Connection;
    let mut conn = diesel::SqliteConnection::establish(":memory:").unwrap();
    let mut uow = UnitOfWork::new();
    let user = uow.load::<User>(&mut conn, Default::default()).unwrap();
    let _ = uow.get_mut(&user).unwrap();
    uow.register_removed(&user).unwrap();
    uow.commit(&mut conn).unwrap();
}
