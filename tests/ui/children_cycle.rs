use uow::prelude::*;

diesel::table! { products (id) { id -> Integer, batch_id -> Integer } }
diesel::table! { batches (id) { id -> Integer, product_id -> Integer } }

// Each is the other's child: an aggregate would contain itself.
#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = products, belongs_to(Batch, foreign_key = batch_id))]
struct Product {
    id: i32,
    batch_id: i32,
    #[tracked(children)]
    batches: Vec<Batch>,
}

#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = batches, belongs_to(Product, foreign_key = product_id))]
struct Batch {
    id: i32,
    product_id: i32,
    #[tracked(children)]
    products: Vec<Product>,
}

fn main() {
    // Call sites as a user writes them: a mistake in the derive must not be reported here too.
    use diesel::Connection;
    let mut conn = diesel::SqliteConnection::establish(":memory:").unwrap();
    let mut uow = UnitOfWork::new();
    let product = uow.load::<Product>(&mut conn, Default::default()).unwrap();
    let _ = uow.get_mut(&product).unwrap();
    uow.register_removed(&product).unwrap();
    let batch = uow.load::<Batch>(&mut conn, Default::default()).unwrap();
    let _ = uow.get_mut(&batch).unwrap();
    uow.register_removed(&batch).unwrap();
    uow.commit(&mut conn).unwrap();
}
