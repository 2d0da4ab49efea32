//! The impls emitted beside the errors of a derive that failed, as thiserror does: the struct
//! still implements `Entity`, `Persist`, `Load` and `ChildOf`, so `load::<T>`, `get_mut` and
//! a parent's `Vec<T>` compile, and the derive's own error is the only one the user reads.
//! They name the runtime's fallback table and are never run: the crate does not compile.

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

/// `Entity`, `Persist<DB>`, `Load<DB>` and `ChildOf<P>` for `input`, whatever its shape (an
/// enum or a tuple struct too), with its own generics. `krate` is `#[tracked(crate = ...)]`
/// when it could be read.
pub fn fallback_impls(input: &DeriveInput, krate: Option<&syn::Path>) -> TokenStream {
    let private = super::private_path(krate);
    let p = quote!(__uow);
    let ident = &input.ident;
    let name = ident.to_string();
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let mut predicates: Vec<TokenStream> = where_clause
        .map(|w| w.predicates.iter().map(|p| quote!(#p)).collect())
        .unwrap_or_default();
    // The supertraits of `Entity` as bounds: a struct that lacks one (not `Clone`) gets that
    // error, which is a mistake of its own, and no other.
    predicates.push(quote!(Self: #p::Clone + #p::Send + #p::Sync + 'static));
    let params = input.generics.params.iter();
    let params_db = quote!(#(#params,)* __DB: #p::Backend);
    let params = input.generics.params.iter();
    let params_parent = quote!(#(#params,)* __P: ?Sized);
    quote! {
        #[doc(hidden)]
        #[allow(unused_qualifications, clippy::all)]
        const _: () = {
            use #private as __uow;

            #[automatically_derived]
            impl #impl_generics #p::Entity for #ident #ty_generics where #(#predicates,)* {
                type Table = #p::FallbackTable;
                type Key = ();
                type Generated = ();
                const ENTITY_NAME: &'static str = #name;
                const TABLE_NAME: &'static str = "";
                const FIELDS: &'static [#p::FieldInfo] = &[];
                fn key(&self) {}
                fn fmt_field(
                    &self,
                    _: usize,
                    _: &mut ::std::fmt::Formatter<'_>,
                ) -> ::std::fmt::Result {
                    #p::Result::Ok(())
                }
                fn changed_fields(&self, _: &Self) -> #p::FieldSet {
                    #p::FieldSet::EMPTY
                }
                fn generated(&self) {}
                fn set_generated(&mut self, _: ()) {}
                fn assign_persisted(&mut self, _: Self) {}
                fn generated_from_insert_id(_: u64) -> #p::Option<()> {
                    #p::Option::None
                }
            }

            #[automatically_derived]
            impl<#params_db> #p::Persist<__DB> for #ident #ty_generics
            where #(#predicates,)*
            {
                fn walk_table(_: #p::AstPass<'_, '_, __DB>) -> #p::QueryResult<()> {
                    #p::Result::Err(#p::diesel::result::Error::QueryBuilderError(
                        #p::FALLBACK_MESSAGE.into(),
                    ))
                }
                fn walk_field<'__b>(
                    &'__b self,
                    _: usize,
                    _: #p::AstPass<'_, '__b, __DB>,
                ) -> #p::QueryResult<()> {
                    #p::Result::Err(#p::diesel::result::Error::QueryBuilderError(
                        #p::FALLBACK_MESSAGE.into(),
                    ))
                }
                fn walk_key<'__b>(
                    _: &'__b (),
                    _: usize,
                    _: #p::AstPass<'_, '__b, __DB>,
                ) -> #p::QueryResult<()> {
                    #p::Result::Err(#p::diesel::result::Error::QueryBuilderError(
                        #p::FALLBACK_MESSAGE.into(),
                    ))
                }
                fn read_generated<'__a>(
                    _: &impl #p::NamedRow<'__a, __DB>,
                ) -> #p::DeserializeResult<()> {
                    #p::Result::Err(#p::FALLBACK_MESSAGE.into())
                }
            }

            #[automatically_derived]
            impl<#params_db> #p::Load<__DB> for #ident #ty_generics where #(#predicates,)* {
                fn from_row<'__a>(
                    _: &impl #p::Row<'__a, __DB>,
                ) -> #p::DeserializeResult<Self> {
                    #p::Result::Err(#p::FALLBACK_MESSAGE.into())
                }
            }

            #[automatically_derived]
            impl<#params_parent> #p::ChildOf<__P> for #ident #ty_generics
            where #(#predicates,)*
            {
            }
        };
    }
}
