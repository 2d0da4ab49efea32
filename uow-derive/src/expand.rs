//! Code generation: `Entity` and `Persist` impls inside `const _: () = { ... };`, referring to
//! the runtime only through `::uow::__private` (or `#[tracked(crate = ...)]`).
//!
//! `expand` computes what every impl needs once (`Context`, `Fields`) and asks one function per
//! part of the output: `names` (the table, its columns and the crate path, each named once,
//! with a hint in uow's words when one does not resolve), `generics` (lifetimes made
//! `'static`), `entity` (`impl Entity`), `key` and `generated` (the key and generated fields,
//! which `Entity` and `Persist` both describe),
//! `relations` (one `Relation` impl per `belongs_to`), `children` (`#[tracked(children)]`
//! collections, and `ChildOf` per parent type), `persist` (`impl Persist` and `impl Load`). `spans` makes rustc report a failed requirement on the field that causes it.

use proc_macro2::{Ident, TokenStream};
use quote::quote;
use syn::{DeriveInput, Type};

use crate::ast::{Field, Input};
use crate::ctxt::Ctxt;
use crate::valid;

mod children;
mod entity;
mod fallback;
mod generated;
mod generics;
mod key;
mod names;
mod persist;
mod relations;
mod spans;

#[cfg(test)]
mod tests;

use generics::ImplGenerics;

/// The whole derive: parse, validate, expand, or every error found.
pub fn derive(input: &DeriveInput) -> TokenStream {
    let mut cx = Ctxt::default();
    let Some(mut parsed) = Input::from_syn(&mut cx, input) else {
        return failed(cx, input, None);
    };
    valid::check(&mut cx, &mut parsed);
    if cx.has_errors() {
        let krate = parsed.attrs.krate.as_ref().map(|k| &k.value);
        return failed(cx, input, krate);
    }
    expand(&parsed)
}

/// The errors, and impls that keep them the only ones (see `fallback`).
fn failed(cx: Ctxt, input: &DeriveInput, krate: Option<&syn::Path>) -> TokenStream {
    let mut tokens = cx.into_compile_errors();
    tokens.extend(fallback::fallback_impls(input, krate));
    tokens
}

/// The expansion of a valid input. The where clauses extend one another as the traits do:
/// `Relation<Self>` and `Persist<DB>` need `Self: Entity`, and `Load<DB>` needs `Persist<DB>`.
fn expand(input: &Input) -> TokenStream {
    let Some(cx) = Context::new(input) else {
        return TokenStream::new(); // no table: reported by valid.rs
    };
    let entity_predicates = entity::entity_predicates(&cx);
    let persist_predicates = persist::persist_predicates(&cx, &entity_predicates);
    let load_predicates = persist::load_predicates(&cx, &persist_predicates);
    wrap_in_const(
        &private_path(input.attrs.krate.as_ref().map(|k| &k.value)),
        [
            // First: rustc stops at the first `__uow::` trait that does not resolve.
            names::crate_hint(&cx),
            names::schema_trait(&cx),
            names::schema_impl(&cx),
            column_type_trait(&cx),
            column_checks(&cx),
            children::depth_check(&cx),
            children::child_of_impls(&cx, &entity_predicates),
            relations::relation_impls(&cx, &entity_predicates),
            entity::entity_impl(&cx, &entity_predicates),
            persist::persist_impl(&cx, &persist_predicates),
            persist::load_impl(&cx, &load_predicates),
        ],
    )
}

/// What the impls share about the struct, computed once.
struct Context<'a> {
    input: &'a Input<'a>,
    /// `__uow`, the name `wrap_in_const` gives `::uow::__private` (or `path::__private` with
    /// `#[tracked(crate = path)]`): generated code names every runtime item through it
    /// (ARCHITECTURE.md, "Why `__private` inside `const _`"), and a wrong `crate =` path is one
    /// error, at that `use`, followed by `names::crate_hint`'s.
    p: TokenStream,
    /// The module of the Diesel `table!`, where the columns are, as written: only
    /// `names::schema_impl` resolves it; the impls name the table through `names::table_type`.
    table_module: syn::Path,
    generics: ImplGenerics,
    fields: Fields<'a>,
}

impl<'a> Context<'a> {
    /// `None` when the struct names no table.
    fn new(input: &'a Input<'a>) -> Option<Self> {
        let table_module = table_module(&input.attrs.table.as_ref()?.value);
        let p = quote!(__uow);
        let generics = ImplGenerics::new(input);
        let fields = Fields::new(input, &generics, &p);
        Some(Context {
            input,
            p,
            table_module,
            generics,
            fields,
        })
    }
}

/// The module that `table = accounts` and `table = accounts::table` both name: `accounts`.
fn table_module(table: &syn::Path) -> syn::Path {
    let mut module = table.clone();
    if module.segments.len() > 1 && module.segments.last().is_some_and(|s| s.ident == "table") {
        module.segments.pop();
        module.segments.pop_punct();
    }
    module
}

/// The persisted fields as the impls name them. A persisted field's position is its index in
/// `Entity::FIELDS` (and in `walk_field`, `FieldSet`, ...); every vector here is indexed by it,
/// and `keys`, `generated` and `version` hold positions.
struct Fields<'a> {
    /// The persisted fields (not `skip`), in declaration order.
    persisted: Vec<&'a Field<'a>>,
    names: Vec<&'a Ident>,
    /// The fields' types, their lifetimes `'static`.
    tys: Vec<Type>,
    /// The columns, as `names::column_type` names them.
    columns: Vec<TokenStream>,
    /// The columns' SQL types, `<column as Expression>::SqlType`.
    sql_types: Vec<TokenStream>,
    /// The key fields, in declaration order: a composite key is a tuple in that order.
    keys: Vec<usize>,
    /// The generated fields, in declaration order: `Entity::Generated` is a tuple in that order.
    generated: Vec<usize>,
    version: Option<usize>,
    /// The skipped fields with their types (lifetimes `'static`): `Load` defaults them.
    skipped: Vec<(&'a Field<'a>, Type)>,
}

impl<'a> Fields<'a> {
    fn new(input: &'a Input<'a>, generics: &ImplGenerics, p: &TokenStream) -> Self {
        let persisted: Vec<&Field> = input.persisted().collect();
        let columns: Vec<TokenStream> = persisted
            .iter()
            .enumerate()
            .map(|(index, f)| names::column_type(index, f.column()))
            .collect();
        let sql_types = columns
            .iter()
            .map(|c| quote!(<#c as #p::Expression>::SqlType))
            .collect();
        let positions = |keep: fn(&Field) -> bool| -> Vec<usize> {
            (0..persisted.len())
                .filter(|&i| keep(persisted[i]))
                .collect()
        };
        Fields {
            names: persisted.iter().map(|f| f.ident).collect(),
            tys: persisted.iter().map(|f| generics.field_ty(f.ty)).collect(),
            keys: positions(|f| f.key),
            generated: positions(|f| f.generated()),
            version: persisted.iter().position(|f| f.version()),
            skipped: input
                .fields
                .iter()
                .filter(|f| !f.persisted())
                .map(|f| (f, generics.field_ty(f.ty)))
                .collect(),
            columns,
            sql_types,
            persisted,
        }
    }

    /// Each persisted field with its type and its column's SQL type, for the per-field
    /// where-predicates.
    fn typed(&self) -> impl Iterator<Item = (&'a Field<'a>, &Type, &TokenStream)> {
        self.persisted
            .iter()
            .zip(&self.tys)
            .zip(&self.sql_types)
            .map(|((field, ty), sql_type)| (*field, ty, sql_type))
    }
}

/// The elements of `values` at `positions`, e.g. the types of the key fields.
fn at<'v, T>(values: &'v [T], positions: &[usize]) -> Vec<&'v T> {
    positions.iter().map(|&i| &values[i]).collect()
}

/// The hidden `__UowColumnType<ST>`: Diesel's `AsExpression<ST>` under a name of our own, so
/// that a field whose type does not fit its column gets a message of ours (see ARCHITECTURE.md,
/// "Spans").
fn column_type_trait(cx: &Context) -> TokenStream {
    let p = &cx.p;
    quote! {
        // Diesel's `AsExpression` under a name of our own: rustc words an unsatisfied bound
        // with the `on_unimplemented` of the trait it names, and Diesel's trait has none.
        // `do_not_recommend` keeps rustc from blaming the blanket impl (the derive's tokens)
        // and from falling back to `AsExpression`'s generic message.
        #[diagnostic::on_unimplemented(
            message = "field type `{Self}` does not map to its column's SQL type `{__ST}`",
            label = "this field's type does not match its column in `table!`",
            note = "use a Rust type Diesel converts to and from `{__ST}` (its documentation lists them; a `Nullable<_>` column takes `Option<_>`), or correct the column's type in `table!`"
        )]
        pub trait __UowColumnType<__ST> {}

        #[diagnostic::do_not_recommend]
        impl<__T, __ST> __UowColumnType<__ST> for __T
        where
            __T: #p::diesel::expression::AsExpression<__ST>
                + #p::NullFits<<__ST as #p::SqlType>::IsNull>,
            __ST: #p::diesel::sql_types::SqlType + #p::diesel::expression::TypedExpressionType,
        {
        }
    }
}

/// `__UowColumnType` checked once for every field whose type names no parameter of the struct
/// (the others are bounds of `impl Entity`): a call in a function nobody calls, spanned on the
/// field's type, so that a field that does not fit its column is reported there, once, and
/// not again where the entity is used.
fn column_checks(cx: &Context) -> TokenStream {
    let checks = cx.fields.typed().filter_map(|(field, ty, sql_type)| {
        if cx.generics.mentions_params(ty) {
            return None;
        }
        let (first, last) = spans::spans_of(field.ty)?;
        let open = spans::respan(quote!(__uow_fits_column::<), first);
        let close = spans::respan(quote!(>), last);
        Some(quote!(#open #ty, #sql_type #close();))
    });
    quote! {
        #[allow(dead_code)]
        fn __uow_column_checks() {
            fn __uow_fits_column<__T: ?Sized + __UowColumnType<__ST>, __ST>() {}
            #(#checks)*
        }
    }
}

/// `items` inside an anonymous `const`: nothing the expansion declares is visible in, or
/// collides with, the user's module (several derives in one module are fine).
fn wrap_in_const(private: &TokenStream, items: [TokenStream; 11]) -> TokenStream {
    quote! {
        #[doc(hidden)]
        #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
        const _: () = {
            use #private as __uow;
            #(#items)*
        };
    }
}

/// The runtime's hidden module: `::uow::__private`, or `path::__private` with
/// `#[tracked(crate = path)]`.
pub(crate) fn private_path(krate: Option<&syn::Path>) -> TokenStream {
    match krate {
        Some(path) => quote!(#path::__private),
        None => quote!(::uow::__private),
    }
}
