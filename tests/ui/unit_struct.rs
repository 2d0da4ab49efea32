use uow::prelude::*;

diesel::table! {
    accounts (id) {
        id -> Integer,
        owner -> Text,
        balance -> BigInt,
    }
}

#[derive(Tracked, Clone)]
#[tracked(table = accounts)]
struct Account;

fn main() {
    // Call sites as a user writes them: a mistake in the derive must not be reported here too.
    use diesel::Connection;
    let mut conn = diesel::SqliteConnection::establish(":memory:").unwrap();
    let mut uow = UnitOfWork::new();
    let account = uow.load::<Account>(&mut conn, Default::default()).unwrap();
    let _ = uow.get_mut(&account).unwrap();
    uow.register_removed(&account).unwrap();
    uow.commit(&mut conn).unwrap();
}
