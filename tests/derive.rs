//! What `#[derive(Tracked)]` accepts beyond the plain case: renamed columns, skipped fields,
//! generic structs, `Cow<'static, str>` fields, Diesel's own attributes, and no imports needed at the use site.

mod common;

use std::borrow::Cow;

use common::{accounts, tags};
use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};
use uow::prelude::*;
use uow::RelationVisitor as RelationVisitorFor;

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

/// Borrowed-or-owned text that lives as long as the unit of work: `Cow<'static, str>` (a
/// lifetime parameter is a derive error, `tests/ui/lifetime_param.rs`).
#[derive(uow::Tracked, Clone, Debug, PartialEq)]
#[tracked(table = tags)]
struct Label {
    #[tracked(primary_key)]
    code: Cow<'static, str>,
    label: Cow<'static, str>,
}

/// Declared once for Diesel and uow: Diesel's own attributes name the table and the parent.
#[derive(uow::Tracked, diesel::Queryable, diesel::Identifiable, Clone, Debug, PartialEq)]
#[diesel(table_name = common::authors)]
struct DieselAuthor {
    #[tracked(generated)]
    id: i32,
    name: String,
}

/// A renamed column and a parent read from `#[diesel(..)]`; `#[tracked]` only for what Diesel
/// has no word for (`generated`).
#[derive(
    uow::Tracked,
    diesel::Queryable,
    diesel::Identifiable,
    diesel::Associations,
    Clone,
    Debug,
    PartialEq,
)]
#[diesel(table_name = common::books, belongs_to(DieselAuthor, foreign_key = author_id))]
struct DieselBook {
    #[tracked(generated)]
    id: i32,
    author_id: i32,
    #[diesel(column_name = title)]
    heading: String,
}

/// A composite key from `#[diesel(primary_key(..))]`.
#[derive(uow::Tracked, diesel::Queryable, diesel::Identifiable, Clone, Debug, PartialEq)]
#[diesel(table_name = common::memberships, primary_key(user_id, group_id))]
struct DieselMembership {
    user_id: i32,
    group_id: i32,
    role: String,
}

/// A second entity type on `accounts`: a narrow view of the same rows.
#[derive(uow::Tracked, Clone, Debug, PartialEq)]
#[tracked(table = accounts)]
struct AccountBalance {
    #[tracked(generated)]
    id: i32,
    balance: i64,
}

/// `id` is assigned by the database, but `generated` was forgotten.
#[derive(uow::Tracked, Clone, Debug, PartialEq)]
#[tracked(table = accounts)]
struct Forgetful {
    id: i32,
    owner: String,
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
    assert_eq!(<Label as Entity>::ENTITY_NAME, "Label");
    assert_eq!(<no_imports::Bare as Entity>::FIELDS.len(), 2);
}

#[test]
fn a_forgotten_generated_is_named_when_two_new_entities_share_the_default_key() {
    let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    uow.register_new(Forgetful {
        id: 0,
        owner: "ann".into(),
    })
    .expect("the first is held");
    let error = uow
        .register_new(Forgetful {
            id: 0,
            owner: "bob".into(),
        })
        .expect_err("the same key twice");
    assert!(
        matches!(
            &error,
            uow::Error::DuplicateKey {
                entity: "Forgetful",
                ..
            }
        ),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("mark the field `#[tracked(generated)]`"),
        "{message}"
    );

    // A held entity registered again is the usual duplicate: no hint about `generated`.
    let mut uow = UnitOfWork::<diesel::SqliteConnection>::new();
    uow.attach(Forgetful {
        id: 1,
        owner: "ann".into(),
    });
    let error = uow
        .register_clean(Forgetful {
            id: 1,
            owner: "ann".into(),
        })
        .expect_err("held already");
    assert!(!error.to_string().contains("mark the field"), "{error}");
}

#[test]
fn diesel_attributes_are_read() {
    assert_eq!(<DieselBook as Entity>::TABLE_NAME, "books");
    let columns: Vec<_> = <DieselBook as Entity>::FIELDS
        .iter()
        .map(|f| (f.name, f.column))
        .collect();
    assert_eq!(
        columns,
        [
            ("id", "id"),
            ("author_id", "author_id"),
            ("heading", "title")
        ]
    );
    let keys: Vec<_> = <DieselMembership as Entity>::FIELDS
        .iter()
        .filter(|f| f.key)
        .map(|f| f.name)
        .collect();
    assert_eq!(keys, ["user_id", "group_id"]);
    let mut relations = 0;
    struct Count<'a>(&'a mut usize);
    impl RelationVisitorFor<DieselBook> for Count<'_> {
        fn visit<R: uow::Relation<DieselBook>>(&mut self, _: usize) {
            *self.0 += 1;
        }
    }
    <DieselBook as Entity>::visit_relations(&mut Count(&mut relations));
    assert_eq!(
        relations, 1,
        "belongs_to(DieselAuthor) read from #[diesel(..)]"
    );
}

backend_tests! {
    fn an_entity_declared_with_diesels_attributes_is_written_and_loaded(db) {
        let mut uow = UnitOfWork::<Conn>::new();
        let author = uow.register_new(DieselAuthor { id: 0, name: "Le Guin".into() })?;
        let book = uow.register_new(DieselBook { id: 0, author_id: 0, heading: "Earthsea".into() })?;
        uow.set_parent(&book, &author)?; // the relation comes from `#[diesel(belongs_to(..))]`
        uow.register_new(DieselMembership { user_id: 1, group_id: 2, role: "owner".into() })?;
        uow.commit(&mut db.conn)?;
        let author_id = uow.get(&author)?.id;
        assert_eq!(uow.get(&book)?.author_id, author_id);

        let mut fresh = UnitOfWork::<Conn>::new();
        let book_id = uow.get(&book)?.id;
        let loaded = fresh.load::<DieselBook>(&mut db.conn, book_id)?;
        assert_eq!(fresh.get(&loaded)?.heading, "Earthsea", "`heading` is read from `title`");
        let member = fresh.load::<DieselMembership>(&mut db.conn, (1, 2))?;
        fresh.get_mut(&member)?.role = "admin".into();
        fresh.commit(&mut db.conn)?;
        // Diesel's own derives see the same declarations.
        use diesel::BelongingToDsl;
        let parent = DieselAuthor { id: author_id, name: String::new() };
        let books: Vec<DieselBook> = DieselBook::belonging_to(&parent).load(&mut db.conn)?;
        assert_eq!(books.len(), 1);
        let role: String = common::memberships::table
            .select(common::memberships::role)
            .first(&mut db.conn)?;
        assert_eq!(role, "admin");
        Ok(())
    }

    fn two_entity_types_changing_one_row_in_one_commit_are_refused_before_anything_is_sent(db) {
        let mut setup = UnitOfWork::<Conn>::new();
        let a = setup.register_new(common::account("ann", 1))?;
        let b = setup.register_new(common::account("bob", 2))?;
        setup.commit(&mut db.conn)?;
        let (ann, bob) = (setup.get(&a)?.id, setup.get(&b)?.id);

        let mut uow = UnitOfWork::<Conn>::new();
        let full = uow.load::<common::Account>(&mut db.conn, ann)?;
        let narrow = uow.load::<AccountBalance>(&mut db.conn, ann)?;
        uow.get_mut(&full)?.owner = "anne".into();
        uow.get_mut(&narrow)?.balance = 5;
        let log = db.record();
        match uow.commit(&mut db.conn) {
            Err(uow::Error::TwoTypesOneRow { table, key, first, second }) => {
                assert_eq!(table, "accounts");
                assert_eq!(key, ann.to_string());
                let mut types = [first, second];
                types.sort();
                assert_eq!(types, ["Account", "AccountBalance"]);
            }
            other => panic!("expected TwoTypesOneRow, got {other:?}"),
        }
        assert_eq!(log.all(), Vec::<String>::new(), "refused before anything was sent");
        assert_eq!(uow.get(&full)?.owner, "anne", "memory as before the commit");
        assert_eq!(uow.state(&narrow)?, EntityState::Dirty);

        // Different rows of one table through two types are fine.
        let mut fresh = UnitOfWork::<Conn>::new();
        let full = fresh.load::<common::Account>(&mut db.conn, ann)?;
        let narrow = fresh.load::<AccountBalance>(&mut db.conn, bob)?;
        fresh.get_mut(&full)?.owner = "anne".into();
        fresh.get_mut(&narrow)?.balance = 7;
        fresh.commit(&mut db.conn)?;
        let rows = common::account_rows(&mut db.conn);
        assert_eq!((rows[0].owner.as_str(), rows[0].balance), ("anne", 1));
        assert_eq!((rows[1].owner.as_str(), rows[1].balance), ("bob", 7));
        Ok(())
    }

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

    fn cow_static_fields(db) {
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
        assert_eq!(uow.find::<Label>(&Cow::Borrowed("a")), Some(l));
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
