//! What `#[derive(Tracked)]` accepts beyond the plain case: renamed columns, skipped fields,
//! generic structs, lifetimes, and no imports needed at the use site.

mod common;

use std::borrow::Cow;

use common::{accounts, tags};
use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};
use uow::prelude::*;

/// Generic over a field that is not persisted, with a renamed column.
#[derive(uow::Tracked, Clone, Debug, PartialEq)]
#[tracked(table = accounts)]
struct Wallet<Cache: Clone + PartialEq + 'static> {
    #[tracked(generated)]
    id: i32,
    #[tracked(column = owner)]
    holder: String,
    balance: i64,
    note: Option<String>,
    #[tracked(skip)]
    cache: Cache,
}

/// Generic over a persisted field's type.
#[derive(uow::Tracked, Clone, Debug, PartialEq)]
#[tracked(table = accounts::table)]
struct Amount<N> {
    #[tracked(generated)]
    id: i32,
    owner: String,
    balance: N,
    note: Option<String>,
}

/// A lifetime: held by a unit of work at `'static`.
#[derive(uow::Tracked, Clone, Debug, PartialEq)]
#[tracked(table = tags)]
struct Label<'a> {
    #[tracked(primary_key)]
    code: Cow<'a, str>,
    label: Cow<'a, str>,
}

mod no_imports {
    // Nothing from uow is imported here: the generated code uses absolute paths only.
    #[derive(::uow::Tracked, Clone, Debug, PartialEq)]
    #[tracked(table = super::tags)]
    pub struct Bare {
        #[tracked(primary_key)]
        pub code: String,
        pub label: String,
    }
}

#[test]
fn field_metadata_follows_the_attributes() {
    let columns: Vec<_> = <Wallet<u8> as Entity>::FIELDS
        .iter()
        .map(|f| (f.name, f.column))
        .collect();
    assert_eq!(
        columns,
        [
            ("id", "id"),
            ("holder", "owner"),
            ("balance", "balance"),
            ("note", "note")
        ]
    );
    assert!(<Wallet<u8> as Entity>::FIELDS[0].generated && <Wallet<u8> as Entity>::FIELDS[0].key);
    assert_eq!(<Wallet<u8> as Entity>::TABLE_NAME, "accounts");
    assert_eq!(
        <Amount<i64> as Entity>::TABLE_NAME,
        "accounts",
        "`accounts::table` names the same table"
    );
    assert_eq!(<Label<'static> as Entity>::ENTITY_NAME, "Label");
    assert_eq!(<no_imports::Bare as Entity>::FIELDS.len(), 2);
}

backend_tests! {
    fn renamed_columns_and_skipped_fields(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let w = uow.register_new(Wallet { id: 0, holder: "ann".into(), balance: 1, note: None, cache: vec![1u8] })?;
        uow.commit(&mut db.conn)?;
        let rows = common::account_rows(&mut db.conn);
        assert_eq!(rows[0].owner, "ann");
        // A skipped field is not tracked: changing it is no change.
        uow.get_mut(&w)?.cache.push(2);
        assert_eq!(uow.state(&w)?, EntityState::Clean);
        uow.get_mut(&w)?.holder = "anne".into();
        assert_eq!(uow.changed_columns(&w)?, ["owner"]);
        uow.commit(&mut db.conn)?;
        assert_eq!(common::account_rows(&mut db.conn)[0].owner, "anne");
        assert_eq!(uow.get(&w)?.cache, [1, 2], "skipped field kept in memory");
        Ok(())
    }

    fn generic_persisted_field(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let a = uow.register_new(Amount::<i64> { id: 0, owner: "ann".into(), balance: 5, note: None })?;
        uow.commit(&mut db.conn)?;
        uow.get_mut(&a)?.balance = 6;
        uow.commit(&mut db.conn)?;
        assert_eq!(common::account_rows(&mut db.conn)[0].balance, 6);
        Ok(())
    }

    fn struct_with_a_lifetime(db) {
        let tag_rows = |conn: &mut Conn| {
            tags::table
                .order(tags::code)
                .load::<(String, String)>(conn)
        };
        let mut uow = UnitOfWork::<Conn>::new();
        let l = uow.register_new(Label { code: Cow::Borrowed("a"), label: Cow::Borrowed("Alpha") })?;
        uow.commit(&mut db.conn)?;
        assert_eq!(tag_rows(&mut db.conn)?, [("a".to_string(), "Alpha".to_string())]);
        uow.get_mut(&l)?.label = Cow::Owned("Alef".to_string());
        uow.commit(&mut db.conn)?;
        assert_eq!(tag_rows(&mut db.conn)?, [("a".to_string(), "Alef".to_string())]);
        assert_eq!(uow.find::<Label<'static>>(&Cow::Borrowed("a")), Some(l));
        let mut check = UnitOfWork::<Conn>::new();
        let bare = check.register_dirty(no_imports::Bare { code: "a".into(), label: "Alef".into() })?;
        assert_eq!(check.changed_columns(&bare)?, ["label"]);
        Ok(())
    }

    fn a_changeset_with_a_field_index_past_the_fields_is_refused(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let a = uow.register_new(common::account("ann", 1))?;
        uow.commit(&mut db.conn)?;
        uow.get_mut(&a)?.balance = 2;
        let id = uow.get(&a)?.id;
        // `Changes::new` and `FieldSet::insert` are public: nothing stops a caller from naming
        // a field the entity does not have.
        let mut fields = uow.changes(&a)?.fields();
        let past = <common::Account as Entity>::FIELDS.len() + 3;
        fields.insert(past);
        let changes = uow::Changes::new(uow.get(&a)?, fields);
        assert_eq!(changes.columns(), ["balance"], "the index names no column");
        let result = diesel::update(accounts::table.filter(accounts::id.eq(id)))
            .set(changes)
            .execute(&mut db.conn);
        match result {
            Err(diesel::result::Error::QueryBuilderError(message)) => {
                let message = message.to_string();
                let expected = format!("field index {past} is out of range for `Account`");
                assert!(message.contains(&expected), "{message}");
                assert!(message.contains("UnitOfWork::changes"), "says what to do: {message}");
            }
            other => panic!("expected a QueryBuilderError, got {other:?}"),
        }
        assert_eq!(common::account_rows(&mut db.conn)[0].balance, 1, "nothing was written");
        Ok(())
    }
}
