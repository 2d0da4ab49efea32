//! `impl Persist<__DB>` (writing the entity) and `impl Load<__DB>` (reading it), generic over
//! the backend: which backends exist is decided by Diesel's and `uow-core`'s features, and a
//! backend fits when the field types do (one `FitsColumn` bound per field: written and read).

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote};

use super::key::walk_key_arms;
use super::spans::field_bound;
use super::Context;

/// The backend parameter of `Persist` and `Load`.
fn backend() -> Ident {
    format_ident!("__DB", span = Span::call_site())
}

/// The where-predicates of `impl Persist`: the entity's, then a backend that can write the
/// table and every field and read back the generated ones.
pub(super) fn persist_predicates(
    cx: &Context,
    entity_predicates: &[TokenStream],
) -> Vec<TokenStream> {
    let p = &cx.p;
    let table = super::names::table_type();
    let self_ty = &cx.generics.self_ty;
    let mut predicates = entity_predicates.to_vec();
    // Assumed rather than checked again: a struct that is not `Clone` is then one error (at
    // `impl Entity`), not one more per impl. Only without parameters: on a generic struct the
    // bound would hide the impl's associated types (`Key`) from the bodies.
    if cx.generics.params.is_empty() {
        predicates.push(quote!(#self_ty: #p::Entity));
    }
    predicates.push(quote!(__DB: #p::Backend));
    predicates.push(quote!(#table: #p::QueryFragment<__DB>));
    // One bound per field, written and read (`FitsColumn`): a field that does not fit its
    // column is one message where the entity is used, with the one at the field
    // (`column_checks`).
    for (field, ty, sql_type) in cx.fields.typed() {
        predicates.push(field_bound(
            field,
            ty,
            quote!(#p::FitsColumn<),
            quote!(#sql_type, __DB>),
        ));
        predicates.push(quote!(__DB: #p::HasSqlType<#sql_type>));
    }
    predicates.extend(super::children::persist_predicates(cx));
    predicates
}

/// The where-predicates of `impl Load`: `Persist`'s, then a backend that can read every persisted
/// field, and a default for every skipped one.
pub(super) fn load_predicates(
    cx: &Context,
    persist_predicates: &[TokenStream],
) -> Vec<TokenStream> {
    let p = &cx.p;
    let self_ty = &cx.generics.self_ty;
    let mut predicates = persist_predicates.to_vec();
    if cx.generics.params.is_empty() {
        predicates.push(quote!(#self_ty: #p::Persist<__DB>));
    }
    for (field, ty) in &cx.fields.skipped {
        // A skipped field whose type names no parameter of the struct is checked by
        // `from_row`'s body, once, at the derive.
        if cx.generics.mentions_params(ty) {
            predicates.push(field_bound(
                field,
                ty,
                quote!(#p::SkippedDefault<),
                quote!(__DB>),
            ));
        }
    }
    predicates.extend(super::children::load_predicates(cx));
    predicates
}

/// `impl<__DB> Persist<__DB> for Self`: the table, each field and each key part as bind
/// parameters, and the generated values read back from a row.
pub(super) fn persist_impl(cx: &Context, predicates: &[TokenStream]) -> TokenStream {
    let p = &cx.p;
    let db = backend();
    let table = super::names::table_value();
    let fields = &cx.fields;
    let indexes = 0..fields.persisted.len();
    let visit_indexes = 0..fields.persisted.len();
    let (names, tys, sql_types) = (&fields.names, &fields.tys, &fields.sql_types);
    let field_out_of_range = out_of_range(cx, quote!("field index out of range"));
    let walk_key_arms = walk_key_arms(cx);
    let key_out_of_range = out_of_range(cx, quote!("key part out of range"));
    let read_generated = fields.generated.iter().map(|&i| read_column(cx, i));
    let child_types = super::children::persist_items(cx);
    let items = quote! {
        #[inline]
        fn walk_table(__out: #p::AstPass<'_, '_, #db>) -> #p::QueryResult<()> {
            #p::QueryFragment::<#db>::walk_ast(&#table, __out)
        }

        #[inline]
        fn walk_field<'__b>(
            &'__b self,
            __field: usize,
            mut __out: #p::AstPass<'_, '__b, #db>,
        ) -> #p::QueryResult<()> {
            match __field {
                #(#indexes => __out.push_bind_param::<#sql_types, #tys>(&self.#names),)*
                #field_out_of_range
            }
        }

        #[inline]
        fn walk_key<'__b>(
            __key: &'__b Self::Key,
            __part: usize,
            mut __out: #p::AstPass<'_, '__b, #db>,
        ) -> #p::QueryResult<()> {
            match __part {
                #(#walk_key_arms)*
                #key_out_of_range
            }
        }

        #[inline]
        fn read_generated<'__a>(
            __row: &impl #p::NamedRow<'__a, #db>,
        ) -> #p::DeserializeResult<Self::Generated> {
            let _ = __row;
            #p::Result::Ok((
                #(#read_generated,)*
            ))
        }

        #[inline]
        fn visit_columns<__V: #p::ColumnVisitor<Self, #db>>(__visitor: &mut __V) {
            #(__visitor.visit::<#sql_types, #tys>(#visit_indexes, |__e: &Self| &__e.#names);)*
        }

        #child_types
    };
    backend_impl(cx, format_ident!("Persist"), predicates, items)
}

/// `impl<__DB> Load<__DB> for Self`: every persisted field read from a row by its position in
/// `FIELDS`, every skipped field defaulted.
pub(super) fn load_impl(cx: &Context, predicates: &[TokenStream]) -> TokenStream {
    let p = &cx.p;
    let db = backend();
    let fields = &cx.fields;
    let names = &fields.names;
    let read_persisted = (0..fields.persisted.len()).map(|i| read_position(cx, i));
    let skipped_names = fields.skipped.iter().map(|(field, _)| field.ident);
    let skipped_tys = fields.skipped.iter().map(|(_, ty)| ty);
    let child_loads = super::children::load_items(cx);
    let items = quote! {
        fn from_row<'__a>(
            __row: &impl #p::Row<'__a, #db>,
        ) -> #p::DeserializeResult<Self> {
            #p::Result::Ok(Self {
                #(#names: #read_persisted,)*
                #(#skipped_names: <#skipped_tys as #p::SkippedDefault<#db>>::skipped_default(),)*
            })
        }

        #child_loads
    };
    backend_impl(cx, format_ident!("Load"), predicates, items)
}

/// `impl<..., __DB> trait_name<__DB> for Self where predicates { items }`.
fn backend_impl(
    cx: &Context,
    trait_name: Ident,
    predicates: &[TokenStream],
    items: TokenStream,
) -> TokenStream {
    let p = &cx.p;
    let db = backend();
    let params = cx.generics.params_and(&db);
    let self_ty = &cx.generics.self_ty;
    quote! {
        #[automatically_derived]
        impl<#params> #p::#trait_name<#db> for #self_ty
        where #(#predicates,)*
        {
            #items
        }
    }
}

/// The value of persisted field `i` read from `__row` by its column's name, or `?` on the error.
fn read_column(cx: &Context, i: usize) -> TokenStream {
    let p = &cx.p;
    let (sql_type, ty, column) = (
        &cx.fields.sql_types[i],
        &cx.fields.tys[i],
        &cx.fields.columns[i],
    );
    quote! {
        #p::NamedRow::get::<#sql_type, #ty>(
            __row,
            <#column as #p::Column>::NAME,
        )?
    }
}

/// The value of persisted field `i` read from `__row` at position `i`, or `?` on the error
/// (which names the column).
fn read_position(cx: &Context, i: usize) -> TokenStream {
    let p = &cx.p;
    let db = backend();
    let (sql_type, ty, column) = (
        &cx.fields.sql_types[i],
        &cx.fields.tys[i],
        &cx.fields.columns[i],
    );
    quote! {
        #p::read_field::<#sql_type, #ty, #db, _>(__row, #i, <#column as #p::Column>::NAME)?
    }
}

/// The last arm of `walk_field`'s and `walk_key`'s `match`: an index past the end is returned
/// as a query builder error, not a panic. `message` is a string literal.
fn out_of_range(cx: &Context, message: TokenStream) -> TokenStream {
    let p = &cx.p;
    quote! {
        _ => #p::Result::Err(#p::diesel::result::Error::QueryBuilderError(
            #message.into(),
        )),
    }
}
