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

fn main() {}
