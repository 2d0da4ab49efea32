use uow::prelude::*;

diesel::table! {
    memberships (user_id, group_id) {
        user_id -> Integer,
        group_id -> Integer,
        role -> Text,
    }
}

diesel::table! {
    roles (user_id, group_id) {
        user_id -> Integer,
        group_id -> Integer,
        role -> Text,
    }
}

#[derive(Tracked, Clone)]
#[diesel(table_name = memberships, primary_key(user_id, group_id))]
struct Membership {
    user_id: i32,
    group_id: i32,
    #[diesel(column_name = role)]
    #[tracked(column = user_id)]
    title: String,
}

fn main() {
    // Call sites as a user writes them: a mistake in the derive must not be reported here too.
    use diesel::Connection;
    let mut conn = diesel::SqliteConnection::establish(":memory:").unwrap();
    let mut uow = UnitOfWork::new();
    let membership = uow.load::<Membership>(&mut conn, Default::default()).unwrap();
    let _ = uow.get_mut(&membership).unwrap();
    uow.register_removed(&membership).unwrap();
    uow.commit(&mut conn).unwrap();
}
