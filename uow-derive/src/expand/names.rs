//! The names the expansion takes from the user's scope: the table module, its columns, and the
//! path of the `uow` crate. Each is resolved in one place, and one that does not resolve gets,
//! beside rustc's error, a second error in uow's words saying what to check.
//!
//! rustc's errors for an unresolved name cannot be worded by a derive, so the hints come from
//! name resolution itself: a block declares a fallback item under the name, an inner block
//! glob-imports the module the real item lives in, and a name written in the inner block
//! resolves to the real item when there is one (an inner glob import shadows an outer item)
//! and to the fallback otherwise. The fallbacks are not `Send`; a check on that name, through
//! a trait of the expansion whose `#[diagnostic::on_unimplemented]` is the hint, fails only on a
//! fallback. The checks (a call in a function nobody calls, an empty impl) touch nothing else,
//! so a correct struct never sees them and a wrong one gets one hint per wrong name.
//!
//! The table and its columns are named once, in `schema_impl`: every other part names them
//! as `<__UowSchema as __UowColumns>::Table` and `::ColumnN`. A path that does not resolve
//! there makes those types unknown to rustc, which then reports nothing more about them: one
//! rustc error (an unresolved `use` of the table, or a column missing from it) and uow's hint.
//! `tests/ui/correct_names_give_no_hint.rs` holds the ways of naming them that must stay quiet.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote};
use syn::ext::IdentExt as _;

use super::spans::{respan, spans_of};
use super::Context;
use crate::ast::Field;

/// The items of the table module that are not columns (Diesel's `table!`): a field of one of
/// these names gets rustc's error alone, since the name resolves to something that is no
/// fallback.
const NOT_COLUMNS: [&str; 7] = [
    "table",
    "star",
    "dsl",
    "columns",
    "all_columns",
    "SqlType",
    "BoxedQuery",
];

/// `<__UowSchema as __UowColumns>::Table`, the table's type.
pub(super) fn table_type() -> TokenStream {
    quote!(<__UowSchema as __UowColumns>::Table)
}

/// `<__UowSchema as __UowColumns>::TABLE`, the table's value: a constant, so that a reference
/// to it lives as long as the query it is written into.
pub(super) fn table_value() -> TokenStream {
    quote!(<__UowSchema as __UowColumns>::TABLE)
}

/// The type of the column of persisted field `index`, spanned on the column's name (the field,
/// or `column = ..`).
pub(super) fn column_type(index: usize, column: &Ident) -> TokenStream {
    let name = column_assoc(index);
    respan(quote!(<__UowSchema as __UowColumns>::#name), column.span())
}

/// `ColumnN`, the associated type of `__UowColumns` naming the column of persisted field `N`.
fn column_assoc(index: usize) -> Ident {
    format_ident!("Column{}", index)
}

/// `__UowSchema` and the trait `__UowColumns`, which `schema_impl` implements with the user's
/// table and columns.
pub(super) fn schema_trait(cx: &Context) -> TokenStream {
    let columns = (0..cx.fields.persisted.len()).map(column_assoc);
    quote! {
        #[doc(hidden)]
        pub struct __UowSchema;

        // The table and the column of each persisted field, as `schema_impl` resolves them.
        #[doc(hidden)]
        pub trait __UowColumns {
            type Table;
            const TABLE: Self::Table;
            #(type #columns;)*
        }
    }
}

/// `impl __UowColumns for __UowSchema`, in a block that imports the table module under its
/// own name (so that rustc's "cannot find type `x` in module `accounts`" reads as the user
/// wrote it), and the hints for the table and the columns.
pub(super) fn schema_impl(cx: &Context) -> TokenStream {
    let module_path = &cx.table_module;
    let Some(module) = module_path.segments.last().map(|s| &s.ident) else {
        return TokenStream::new();
    };
    let columns = cx
        .fields
        .persisted
        .iter()
        .enumerate()
        .map(|(index, field)| {
            let name = column_assoc(index);
            let column = field.column();
            quote!(type #name = #module::#column;)
        });
    let hints = table_and_column_hints(cx, module);
    quote! {
        #[allow(unused_imports)]
        const _: () = {
            use #module_path;

            impl __UowColumns for __UowSchema {
                type Table = #module::table;
                // Not `#module::table` again: one path that can fail, one error.
                const TABLE: Self::Table = Self::Table {};
                #(#columns)*
            }

            #hints
        };
    }
}

/// The hints for `table = ..` and for each column: fallbacks named `table` and after each
/// column, shadowed by `use module::*`.
fn table_and_column_hints(cx: &Context, module: &Ident) -> TokenStream {
    let table_text = path_text(&cx.table_module);
    let (key, written) = match &cx.input.attrs.table {
        Some(table) => (table.key.to_string(), path_text(&table.value)),
        None => ("table".to_string(), table_text.clone()),
    };
    let table_span = spans_of(&cx.table_module);
    let table = with_spans(quote!(table), quote!(<>), table_span);
    let table_hint = hint_trait(
        &format_ident!("__UowTableFound"),
        false,
        &format!("`{key} = {written}` does not name a Diesel `table!` in scope"),
        "not the module of a `table!`",
        &format!(
            "`{key} =` is the path of the module `diesel::table!` declares, as it is reachable \
             where the struct is declared: check its spelling, import it (`use crate::schema::{module};`) \
             or write its whole path (`{key} = crate::schema::{module}`)",
            module = module.unraw(),
        ),
    );

    let mut fallbacks: Vec<Ident> = vec![format_ident!("table")];
    let mut column_hints = TokenStream::new();
    let mut checks = TokenStream::new();
    for (index, field) in cx.fields.persisted.iter().enumerate() {
        let column = field.column();
        let name = column.unraw().to_string();
        if NOT_COLUMNS.contains(&name.as_str()) || module.unraw() == name {
            continue;
        }
        if !fallbacks.iter().any(|f| f.unraw() == name) {
            fallbacks.push(column.clone());
        }
        let trait_name = format_ident!("__UowColumnFound{}", index);
        let (message, label, note) = column_hint(field, &table_text, &name);
        column_hints.extend(hint_trait(&trait_name, true, &message, &label, &note));
        let check = respan(quote!(<#column), column.span());
        let table_ty = table_type();
        checks.extend(quote! {
            #check as #trait_name<#table_ty>>::__uow_found();
        });
    }
    let fallbacks = fallbacks.iter().map(fallback_struct);
    quote! {
        #[allow(dead_code, non_camel_case_types)]
        const _: () = {
            #(#fallbacks)*
            #table_hint
            #column_hints

            const _: () = {
                use #module::*;

                fn __uow_names() {
                    <#table as __UowTableFound>::__uow_found();
                    #checks
                }
            };
        };
    }
}

/// The message, label and note of the hint for a field whose column is not in the table.
fn column_hint(field: &Field, table: &str, column: &str) -> (String, String, String) {
    let label = format!("not in the `table!` of `{table}`");
    match &field.attrs.column {
        Some(named) => (
            format!(
                "`{key} = {column}` is not a column of `{table}`",
                key = named.key
            ),
            label,
            format!(
                "`{key} =` names a column as the `table!` of `{table}` declares it (its Rust \
                 name, which `#[sql_name]` may set apart from the SQL one); add \
                 `#[tracked(skip)]` instead if field `{field}` is not stored",
                key = named.key,
                field = field.ident.unraw(),
            ),
        ),
        None => (
            format!("field `{column}` is not a column of `{table}`"),
            label,
            "add `#[tracked(skip)]` if the field is not stored, or name its column: \
             `#[tracked(column = ..)]` (or Diesel's `#[diesel(column_name = ..)]`)"
                .to_string(),
        ),
    }
}

/// The hint for `#[tracked(crate = ..)]`: `FallbackTable`, which `__private` declares, looked
/// up through `use __uow::*`, with a fallback of that name outside.
///
/// A wrong crate path leaves every `__uow::` trait of the expansion unresolved, and rustc stops
/// at the first of them, before it type-checks any function body. So this check is an impl
/// (`impl __UowCrateCheck for FallbackTable`, whose supertrait is the hint), which rustc checks
/// with the items' signatures, in order: it must come before the first `__uow::` trait.
pub(super) fn crate_hint(cx: &Context) -> TokenStream {
    let krate = cx.input.attrs.krate.as_ref();
    let (message, label, note, spans) = match krate {
        Some(krate) => (
            format!(
                "`crate = {}` is not the path of the `uow` crate",
                path_text(&krate.value)
            ),
            "check `crate = ..`",
            "`crate =` is the path under which the `uow` crate is reachable where the struct \
             is declared (`my_app::reexports::uow` when it is re-exported); leave it out when \
             `uow` is a dependency of this crate",
            spans_of(&krate.value),
        ),
        None => (
            "the `uow` crate is not reachable as `::uow` here".to_string(),
            "add `#[tracked(crate = path::to::uow)]`",
            "when `uow` is a dependency under another name, or re-exported by another crate, \
             give its path: `#[tracked(crate = path::to::uow)]`",
            None,
        ),
    };
    let fallback_table = with_spans(quote!(FallbackTable), quote!(<>), spans);
    let hint = hint_trait(
        &format_ident!("__UowCrateFound"),
        false,
        &message,
        label,
        note,
    );
    let fallback = fallback_struct(&format_ident!("FallbackTable"));
    quote! {
        #[allow(dead_code, non_camel_case_types)]
        const _: () = {
            #fallback
            #hint
            trait __UowCrateCheck: __UowCrateFound {}

            const _: () = {
                use __uow::*;

                impl __UowCrateCheck for #fallback_table {}
            };
        };
    }
}

/// A fallback: a struct named `name` that is not `Send`.
fn fallback_struct(name: &Ident) -> TokenStream {
    let mut ident = name.clone();
    ident.set_span(Span::call_site());
    quote! {
        struct #ident {
            _not_send: *const (),
        }
    }
}

/// A trait whose `on_unimplemented` is the hint, implemented by every `Send` type (not by the
/// fallbacks), with `__uow_found` to call it by. A `table` trait has a parameter for the table
/// (`<__UowSchema as __UowColumns>::Table`): when the table itself is unknown, rustc reports
/// nothing about a bound that names it, so the columns' hints stay quiet behind the table's.
fn hint_trait(name: &Ident, table: bool, message: &str, label: &str, note: &str) -> TokenStream {
    let (params, impl_params, trait_args) = if table {
        (
            quote!(<__T: ?Sized>),
            quote!(<__S: ::std::marker::Send, __T: ?Sized>),
            quote!(<__T>),
        )
    } else {
        (quote!(), quote!(<__S: ::std::marker::Send>), quote!())
    };
    quote! {
        #[diagnostic::on_unimplemented(message = #message, label = #label, note = #note)]
        trait #name #params {
            fn __uow_found() {}
        }

        #[diagnostic::do_not_recommend]
        impl #impl_params #name #trait_args for __S {}
    }
}

/// `head tail` with `head` spanned on the first of `spans` and `tail` on the last, so that an
/// error on the type they form covers the tokens those spans came from (`tail` is `<>`: empty
/// generic arguments, for a path whose own tokens cannot carry two spans).
fn with_spans(head: TokenStream, tail: TokenStream, spans: Option<(Span, Span)>) -> TokenStream {
    match spans {
        Some((first, last)) => {
            let head = respan(head, first);
            let tail = respan(tail, last);
            quote!(#head #tail)
        }
        None => quote!(#head #tail),
    }
}

/// A path as written, for messages: `crate::schema::accounts`.
fn path_text(path: &syn::Path) -> String {
    let segments: Vec<String> = path
        .segments
        .iter()
        .map(|s| s.ident.unraw().to_string())
        .collect();
    let leading = if path.leading_colon.is_some() {
        "::"
    } else {
        ""
    };
    format!("{leading}{}", segments.join("::"))
}
