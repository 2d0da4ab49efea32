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
mod diesel_attr;
mod expand;
mod valid;

use proc_macro::TokenStream;

/// Derives `uow::Entity`, `uow::Persist` and `uow::Load` for a struct with named fields.
///
/// The `uow` crate's documentation of `Tracked` shows it in use.
///
/// Container attributes: `#[tracked(table = path::to::table)]` names the Diesel `table!`;
/// `#[tracked(belongs_to(Parent, foreign_key = field))]` declares a foreign key to another
/// entity (several allowed; `foreign_key = (a, b)` for a parent with a composite key, the fields
/// in the order of its key); `#[tracked(crate = path)]` when `uow` is re-exported under another
/// name.
///
/// Field attributes: `#[tracked(primary_key)]` (the key; defaults to the field `id`; several
/// make a composite key, a tuple in field order), `#[tracked(generated)]` (assigned by the
/// database on insert), `#[tracked(version)]` (optimistic concurrency: checked and advanced on
/// update), `#[tracked(skip)]` (not persisted, not tracked; its type must be `Default`),
/// `#[tracked(column = name)]` (the column when it is named differently from the field),
/// `#[tracked(children)]` on a `Vec<Child>` (an aggregate's collection: `Child` is `Tracked`
/// and `belongs_to` this type; written, loaded and versioned with the root).
///
/// **Diesel's attributes are read too**, so a struct that also derives Diesel's traits says
/// things once: `#[diesel(table_name = ..)]`, `#[diesel(column_name = ..)]`,
/// `#[diesel(primary_key(..))]` and `#[diesel(belongs_to(Parent))]` (foreign key `parent_id`)
/// or `belongs_to(Parent, foreign_key = field)`. `#[tracked]` is needed only for what Diesel
/// has no word for (`generated`, `version`, `skip`, `children`); a `#[tracked]` table, column
/// or key that contradicts Diesel's is a compile error.
///
/// Entities own their data: a lifetime parameter or a reference field is refused (a unit of
/// work keeps entities past any borrow, and rows cannot lend); `Cow<'static, str>` is fine.
///
/// **Reading the errors.** Every mistake is reported where it was made, once, with a `help:`;
/// call sites (`load`, `get_mut`, ...) stay quiet. Three mistakes are names that do not
/// resolve: rustc reports them in its own words, which a derive cannot change, and the derive
/// adds a second error on the same token saying what to check:
///
/// - a field that is not a column: "cannot find type `x` in module `accounts`", then "field
///   `x` is not a column of `accounts`" (mark it `skip`, or name its column with `column = ..`
///   or Diesel's `column_name`);
/// - `table = ..` that names no `table!`: "unresolved import `acounts`", then "`table =
///   acounts` does not name a Diesel `table!` in scope" (a typo, or the module not in scope:
///   import it or write its path);
/// - `crate = ..` that does not lead to `uow`: "unresolved import `uwo`", then "`crate = uwo`
///   is not the path of the `uow` crate".
///
/// A field whose type does not fit its column ("field type `String` does not map to its
/// column's SQL type `BigInt`") is reported on the field, and once more at each `load`,
/// `register_new` or `attach` of the entity (rustc checks the backend there).
#[proc_macro_derive(Tracked, attributes(tracked, diesel))]
pub fn derive_tracked(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::derive(&input).into()
}
