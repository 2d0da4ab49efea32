use uow::prelude::*;

diesel::table! { products (id) { id -> Integer, sku -> Text } }
diesel::table! { batches (id) { id -> Integer, product_id -> Integer } }

// (Without `belongs_to(Product, ..)` here: it would name a struct whose derive failed.)
#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = batches)]
struct Batch {
    id: i32,
    product_id: i32,
}

// A collection has no column of its own.
#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = products)]
struct Product {
    id: i32,
    sku: String,
    #[tracked(children, column = batch_list)]
    batches: Vec<Batch>,
}

fn main() {
    // Call sites as a user writes them: a mistake in the derive must not be reported here too.
    use diesel::Connection;
    let mut conn = diesel::SqliteConnection::establish(":memory:").unwrap();
    let mut uow = UnitOfWork::new();
    let batch = uow.load::<Batch>(&mut conn, Default::default()).unwrap();
    let _ = uow.get_mut(&batch).unwrap();
    uow.register_removed(&batch).unwrap();
    let product = uow.load::<Product>(&mut conn, Default::default()).unwrap();
    let _ = uow.get_mut(&product).unwrap();
    uow.register_removed(&product).unwrap();
    uow.commit(&mut conn).unwrap();
}
