//! `impl Entity`: the entity's table, key, fields, change detection and version, independent of
//! the backend.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::generated::{from_insert_id, generated_methods, generated_type};
use super::key::{key_expr, key_type};
use super::relations::visit_relations;
use super::spans::field_bound;
use super::{at, Context};

/// The where-predicates of `impl Entity`, which `Relation`, `Persist` and `Load` extend. They
/// need no backend; those on a field are spanned on its type (`field_bound`), so that a field
/// that does not fit its column is reported there.
pub(super) fn entity_predicates(cx: &Context) -> Vec<TokenStream> {
    let p = &cx.p;
    let self_ty = &cx.generics.self_ty;
    let mut predicates = cx.generics.where_predicates.clone();
    // Entities are `Clone` (the baseline is a copy); for generic structs `derive(Clone)` only
    // gives that under bounds of its own, so require it rather than restate them.
    // A unit of work moves between threads with its entities (`UnitOfWork: Send`), and an
    // async write holds them borrowed across `.await` (futures that are `Send`). A struct
    // without parameters is checked by the trait's own supertraits, once, at the derive: a
    // bound here would be reported again at every call site.
    if !cx.generics.params.is_empty() {
        predicates.push(quote!(#self_ty: #p::Clone));
        predicates.push(quote!(#self_ty: #p::Send + #p::Sync));
    }
    // Bounds on a field whose type names no parameter of the struct are checked once where
    // the struct is declared (by the bodies, and `column_checks`), not here.
    for (field, ty, sql_type) in cx.fields.typed() {
        if !cx.generics.mentions_params(ty) {
            continue;
        }
        predicates.push(field_bound(field, ty, quote!(#p::PartialEq), quote!()));
        // Previews and messages print field values (Diesel's `ToSql` requires it as well).
        predicates.push(field_bound(field, ty, quote!(#p::Debug), quote!()));
        predicates.push(field_bound(
            field,
            ty,
            quote!(__UowColumnType<),
            quote!(#sql_type>),
        ));
        // `key` and `generated` return clones.
        if field.key || field.generated() {
            predicates.push(field_bound(field, ty, quote!(#p::Clone), quote!()));
        }
    }
    predicates.extend(super::children::entity_predicates(cx));
    predicates
}

/// `impl Entity for Self`.
pub(super) fn entity_impl(cx: &Context, predicates: &[TokenStream]) -> TokenStream {
    let p = &cx.p;
    let impl_params = &cx.generics.params;
    let self_ty = &cx.generics.self_ty;
    let table_module = &cx.table_module;
    let table = super::names::table_type();
    let entity_name = cx.input.ident.to_string();
    let table_name = table_module
        .segments
        .last()
        .map(|s| s.ident.to_string())
        .unwrap_or_default();
    let key_ty = key_type(cx);
    let key_expr = key_expr(cx);
    let generated_ty = generated_type(cx);
    let field_infos = field_infos(cx);
    let fmt_field = fmt_field(cx);
    let changed_fields = changed_fields(cx);
    let version_methods = version_methods(cx);
    let generated_methods = generated_methods(cx);
    let visit_relations = visit_relations(cx);
    let from_insert_id = from_insert_id(cx);
    let children = super::children::entity_items(cx);
    let names = &cx.fields.names;
    // Facts the runtime would otherwise work out from `FIELDS` again and again.
    let key_generated = cx.input.persisted().any(|f| f.key && f.generated());
    let has_generated = cx.input.persisted().any(|f| f.generated());
    quote! {
        #[automatically_derived]
        impl<#impl_params> #p::Entity for #self_ty
        where #(#predicates,)*
        {
            type Table = #table;
            type Key = #key_ty;
            type Generated = #generated_ty;

            const ENTITY_NAME: &'static str = #entity_name;
            const TABLE_NAME: &'static str = #table_name;
            const KEY_GENERATED: bool = #key_generated;
            const HAS_GENERATED: bool = #has_generated;
            #field_infos

            #fmt_field

            #[inline]
            fn key(&self) -> Self::Key {
                #key_expr
            }

            #changed_fields

            #version_methods

            #generated_methods

            #visit_relations

            #children

            #[inline]
            fn assign_persisted(&mut self, __fresh: Self) {
                #(self.#names = __fresh.#names;)*
            }

            #from_insert_id
        }
    }
}

/// `Entity::FIELDS`: name, column name and role of each persisted field. Column names come from
/// Diesel's `Column::NAME`, so a misspelt column is a compile error at the column.
fn field_infos(cx: &Context) -> TokenStream {
    let p = &cx.p;
    let fields = &cx.fields;
    let name_texts = fields.names.iter().map(|n| n.to_string());
    let columns = &fields.columns;
    let key_flags = fields.persisted.iter().map(|f| f.key);
    let generated_flags = fields.persisted.iter().map(|f| f.generated());
    let version_flags = fields.persisted.iter().map(|f| f.version());
    quote! {
        const FIELDS: &'static [#p::FieldInfo] = &[
            #(#p::FieldInfo {
                name: #name_texts,
                column: <#columns as #p::Column>::NAME,
                key: #key_flags,
                generated: #generated_flags,
                version: #version_flags,
            },)*
        ];
    }
}

/// `Entity::fmt_field`: a persisted field's value by index, through `Debug`, for previews and
/// messages; an index out of range prints nothing.
fn fmt_field(cx: &Context) -> TokenStream {
    let names = &cx.fields.names;
    let indexes = 0..names.len();
    quote! {
        fn fmt_field(
            &self,
            __field: usize,
            __f: &mut ::std::fmt::Formatter<'_>,
        ) -> ::std::fmt::Result {
            match __field {
                #(#indexes => ::std::fmt::Debug::fmt(&self.#names, __f),)*
                _ => ::std::result::Result::Ok(()),
            }
        }
    }
}

/// `Entity::changed_fields`: the indexes of the fields that differ from the baseline. The
/// version is not diffed: the unit of work owns it (checked and advanced on update).
fn changed_fields(cx: &Context) -> TokenStream {
    let p = &cx.p;
    let fields = &cx.fields;
    let diffed_indexes: Vec<usize> = (0..fields.persisted.len())
        .filter(|&i| !fields.persisted[i].version())
        .collect();
    let diffed_names = at(&fields.names, &diffed_indexes);
    quote! {
        #[inline]
        fn changed_fields(&self, __baseline: &Self) -> #p::FieldSet {
            // Floats by bits (NaN is then the same as NaN), everything else by
            // `PartialEq`: the trait is chosen by method lookup on the field's type.
            #[allow(unused_imports)]
            use #p::{SameBits as _, SameByEq as _};
            let mut __set = #p::FieldSet::EMPTY;
            #(
                if !(&#p::FieldPair(&self.#diffed_names, &__baseline.#diffed_names)).same() {
                    __set.insert(#diffed_indexes);
                }
            )*
            __set
        }
    }
}

/// `Entity::bump_version` and `Entity::version_differs`; without a version field, nothing to
/// bump and never a difference. The bump is spanned on the version's type, so that a version
/// that is not an integer (`VersionField`) is reported there.
fn version_methods(cx: &Context) -> TokenStream {
    let p = &cx.p;
    let (bump_version, version_differs) = match cx.fields.version {
        Some(i) => {
            let field = cx.fields.persisted[i];
            let name = field.ident;
            let ty = &cx.fields.tys[i];
            let span = field.ty.span();
            (
                quote_spanned!(span=> self.#name = <#ty as #p::VersionField>::next(&self.#name);),
                quote!(#p::PartialEq::ne(&self.#name, &__other.#name)),
            )
        }
        None => (quote!(), quote!(false)),
    };
    quote! {
        #[inline]
        fn bump_version(&mut self) {
            #bump_version
        }

        fn version_differs(&self, __other: &Self) -> bool {
            #version_differs
        }
    }
}
