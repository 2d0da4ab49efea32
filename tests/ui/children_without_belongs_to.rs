use uow::prelude::*;

diesel::table! { products (id) { id -> Integer, sku -> Text } }
diesel::table! { batches (id) { id -> Integer, product_id -> Integer } }

// No `belongs_to(Product, ..)`: nothing says which field holds the product's key.
#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = batches)]
struct Batch {
    id: i32,
    product_id: i32,
}

#[derive(Tracked, Clone, Debug, PartialEq)]
#[tracked(table = products)]
struct Product {
    id: i32,
    sku: String,
    #[tracked(children)]
    batches: Vec<Batch>,
}

fn main() {}
