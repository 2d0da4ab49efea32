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

fn main() {}
