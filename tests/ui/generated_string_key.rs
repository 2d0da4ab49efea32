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

fn main() {
    // Call sites as a user writes them: a mistake in the derive must not be reported here too.
    use diesel::Connection;
    let mut conn = diesel::SqliteConnection::establish(":memory:").unwrap();
    let mut uow = UnitOfWork::new();
    let tag = uow.load::<Tag>(&mut conn, Default::default()).unwrap();
    let _ = uow.get_mut(&tag).unwrap();
    uow.register_removed(&tag).unwrap();
    uow.commit(&mut conn).unwrap();
}
