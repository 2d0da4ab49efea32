// Correct structs whose table, columns and `uow` crate are named in every way the derive
// accepts: none of them may trigger the hints for a name that does not resolve
// (`field_not_a_column.rs`, `unknown_table.rs`, `wrong_crate_path.rs`). The only error is the
// type mismatch at the end, there so that this case is checked like the others (without
// building and running it): any other error in the snapshot is one that correct code caused.
// (Not a `compile_error!`: rustc leaves unresolved names unreported after a macro's error.)

use uow::Entity;

pub mod schema {
    diesel::table! {
        accounts (id) {
            id -> Integer,
            owner -> Text,
            // Named like crates and prelude items that field types mention.
            core -> Integer,
            std -> Text,
            #[sql_name = "type"]
            r#type -> Text,
        }
    }

    diesel::table! {
        tags (code) {
            code -> Text,
            label -> Text,
        }
    }
}

/// `uow` re-exported under another path, for `crate = ..`.
mod reexports {
    pub use uow;
}

/// The table by its whole path; fields whose column names are also crate names their types
/// use, and a raw identifier.
#[derive(uow::Tracked, Clone)]
#[tracked(table = crate::schema::accounts)]
struct ByPath {
    id: i32,
    owner: ::std::string::String,
    core: core::primitive::i32,
    std: std::string::String,
    r#type: String,
}

/// The table path ending in `::table`, the crate re-exported, a renamed column.
#[derive(uow::Tracked, Clone)]
#[tracked(table = schema::accounts::table, crate = crate::reexports::uow)]
struct Renamed {
    id: i32,
    #[tracked(column = owner)]
    holder: String,
    #[diesel(column_name = r#type)]
    kind: String,
    #[tracked(skip)]
    table: Vec<u8>,
}

mod nested {
    use crate::schema::accounts;
    use crate::schema::*;

    /// The table in scope through a `use` (and a glob) in a nested module; two derives in one
    /// module; a generic struct.
    #[derive(uow::Tracked, Clone)]
    #[tracked(table = accounts)]
    pub struct Imported<T: Clone + Send + Sync + 'static> {
        pub id: i32,
        pub owner: String,
        #[tracked(skip)]
        pub accounts: Option<T>,
    }

    #[derive(uow::Tracked, Clone)]
    #[tracked(table = tags)]
    pub struct Tag {
        #[tracked(primary_key)]
        pub code: String,
        pub label: String,
    }

    pub mod deeper {
        /// The table through `super::`, Diesel's attribute.
        #[derive(uow::Tracked, Clone)]
        #[diesel(table_name = super::super::schema::tags)]
        pub struct Label {
            #[tracked(primary_key)]
            pub code: String,
            pub label: String,
        }
    }
}

fn main() {
    // A table and a struct declared in a function body.
    diesel::table! {
        local (id) {
            id -> BigInt,
        }
    }

    #[derive(uow::Tracked, Clone)]
    #[tracked(table = local)]
    struct Local {
        id: i64,
    }

    // Call sites as a user writes them.
    use diesel::Connection;
    let mut conn = diesel::SqliteConnection::establish(":memory:").unwrap();
    let mut uow = uow::UnitOfWork::new();
    let _ = uow.load::<ByPath>(&mut conn, Default::default());
    let _ = uow.load::<Renamed>(&mut conn, Default::default());
    let _ = uow.load::<nested::Imported<u8>>(&mut conn, Default::default());
    let _ = uow.load::<nested::Tag>(&mut conn, Default::default());
    let _ = uow.load::<nested::deeper::Label>(&mut conn, Default::default());
    let _ = uow.load::<Local>(&mut conn, Default::default());
    let _ = <Local as Entity>::FIELDS;
}

const THE_ONLY_ERROR_OF_THIS_CASE: () = "everything above compiles";
