//! `#[derive(Tracked)]` for the [`uow`](https://docs.rs/uow) crate.
//!
//! This crate is an implementation detail of `uow`; depend on `uow` and use
//! `uow::prelude::*` (or `uow::Tracked`). The pipeline is `attr` (parse `#[tracked(...)]`) ->
//! `ast` (the struct as the rest of the derive sees it) -> `valid` (cross-field rules) ->
//! `expand` (code generation). Every error is collected and spanned on the offending token.
#![warn(missing_docs)]

mod ast;
mod attr;
mod ctxt;
mod expand;
mod valid;

use proc_macro::TokenStream;

/// Derives `uow::Entity` and `uow::Persist` for a struct with named fields.
///
/// Container attributes: `#[tracked(table = path::to::table)]` (required) names the Diesel
/// `table!`; `#[tracked(belongs_to(Parent, foreign_key = field))]` declares a foreign key to
/// another entity (several allowed; `foreign_key = (a, b)` for a parent with a composite key,
/// the fields in the order of its key); `#[tracked(crate = path)]` when `uow` is re-exported under
/// another name.
///
/// Field attributes: `#[tracked(primary_key)]` (the key; defaults to the field `id`; several
/// make a composite key), `#[tracked(generated)]` (assigned by the database on insert),
/// `#[tracked(version)]` (optimistic concurrency: checked and advanced on update),
/// `#[tracked(skip)]` (not persisted, not tracked), `#[tracked(column = name)]` (the column
/// when it is named differently from the field), `#[tracked(children)]` on a `Vec<Child>` (an
/// aggregate's collection: `Child` is `Tracked` and `belongs_to` this type; written, loaded
/// and versioned with the root).
///
/// The crate docs of `uow` and its README show it in use.
#[proc_macro_derive(Tracked, attributes(tracked))]
pub fn derive_tracked(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::derive(&input).into()
}
