//! Code generation: `Entity` and `Persist` impls inside `const _: () = { ... };`, referring to
//! the runtime only through `::uow::__private` (or `#[tracked(crate = ...)]`).

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{DeriveInput, GenericParam, Lifetime, Type};

use crate::ast::{Field, Input};
use crate::ctxt::Ctxt;
use crate::valid;

/// The whole derive: parse, validate, expand, or every error found.
pub fn derive(input: &DeriveInput) -> TokenStream {
    let mut cx = Ctxt::default();
    let Some(mut parsed) = Input::from_syn(&mut cx, input) else {
        return cx.into_compile_errors();
    };
    valid::check(&mut cx, &mut parsed);
    if cx.has_errors() {
        return cx.into_compile_errors();
    }
    expand(&parsed)
}

/// Replaces the struct's own lifetimes with `'static`: a unit of work keeps entities between
/// calls, so it holds them with owned (`'static`) data.
struct StaticLifetimes<'a>(&'a [Lifetime]);

impl VisitMut for StaticLifetimes<'_> {
    fn visit_lifetime_mut(&mut self, lifetime: &mut Lifetime) {
        if self.0.iter().any(|l| l.ident == lifetime.ident) {
            *lifetime = Lifetime::new("'static", lifetime.span());
        }
    }
}

struct Generated<'a> {
    index: usize,
    field: &'a Field<'a>,
}

fn expand(input: &Input) -> TokenStream {
    let p = match &input.attrs.krate {
        Some(krate) => {
            let path = &krate.value;
            quote!(#path::__private)
        }
        None => quote!(::uow::__private),
    };
    let ident = input.ident;
    let ident_text = ident.to_string();

    // `table = accounts` or `table = accounts::table` both name the module `accounts`.
    let mut table_module = match &input.attrs.table {
        Some(table) => table.value.clone(),
        None => return TokenStream::new(), // reported by valid.rs
    };
    if table_module.segments.len() > 1
        && table_module
            .segments
            .last()
            .is_some_and(|s| s.ident == "table")
    {
        table_module.segments.pop();
        table_module.segments.pop_punct();
    }
    let table_name = table_module
        .segments
        .last()
        .map(|s| s.ident.to_string())
        .unwrap_or_default();

    // Generics, with the struct's lifetimes replaced by 'static.
    let lifetimes: Vec<Lifetime> = input
        .generics
        .lifetimes()
        .map(|l| l.lifetime.clone())
        .collect();
    let mut statics = StaticLifetimes(&lifetimes);
    let mut impl_generics = input.generics.clone();
    impl_generics.params = impl_generics
        .params
        .into_iter()
        .filter(|p| !matches!(p, GenericParam::Lifetime(_)))
        .collect();
    if let Some(where_clause) = impl_generics.where_clause.as_mut() {
        statics.visit_where_clause_mut(where_clause);
    }
    for param in impl_generics.params.iter_mut() {
        statics.visit_generic_param_mut(param);
    }
    let type_args: Vec<TokenStream> = input
        .generics
        .params
        .iter()
        .map(|param| match param {
            GenericParam::Lifetime(_) => quote!('static),
            GenericParam::Type(t) => t.ident.to_token_stream(),
            GenericParam::Const(c) => c.ident.to_token_stream(),
        })
        .collect();
    let self_ty = if type_args.is_empty() {
        quote!(#ident)
    } else {
        quote!(#ident<#(#type_args),*>)
    };
    let type_params: Vec<_> = impl_generics
        .type_params()
        .map(|t| t.ident.clone())
        .collect();
    let mut where_predicates: Vec<TokenStream> = impl_generics
        .where_clause
        .as_ref()
        .map(|w| w.predicates.iter().map(|p| p.to_token_stream()).collect())
        .unwrap_or_default();
    where_predicates.extend(type_params.iter().map(|t| quote!(#t: 'static)));

    let field_ty = |field: &Field| -> Type {
        let mut ty = field.ty.clone();
        StaticLifetimes(&lifetimes).visit_type_mut(&mut ty);
        ty
    };

    let persisted: Vec<&Field> = input.persisted().collect();
    let columns: Vec<TokenStream> = persisted
        .iter()
        .map(|f| {
            let column = f.column();
            quote!(#table_module::#column)
        })
        .collect();
    let sql_types: Vec<TokenStream> = columns
        .iter()
        .map(|c| quote!(<#c as #p::Expression>::SqlType))
        .collect();
    let tys: Vec<Type> = persisted.iter().map(|f| field_ty(f)).collect();
    let names: Vec<&syn::Ident> = persisted.iter().map(|f| f.ident).collect();
    let name_texts: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let key_flags: Vec<bool> = persisted.iter().map(|f| f.key).collect();
    let generated_flags: Vec<bool> = persisted.iter().map(|f| f.generated()).collect();
    let indexes: Vec<usize> = (0..persisted.len()).collect();

    // Entity-level checks that need no backend, spanned on the field type so a mismatch with
    // the column points at the field.
    let mut entity_predicates = where_predicates.clone();
    for ((field, ty), sql_type) in persisted.iter().zip(&tys).zip(&sql_types) {
        let span = field.ty.span();
        entity_predicates.push(quote_spanned!(span=> #ty: #p::PartialEq));
        entity_predicates
            .push(quote_spanned!(span=> #ty: #p::diesel::expression::AsExpression<#sql_type>));
        if field.key || field.generated() {
            entity_predicates.push(quote_spanned!(span=> #ty: #p::Clone));
        }
    }

    // Key.
    let keys: Vec<(usize, &Field)> = persisted
        .iter()
        .enumerate()
        .filter(|(_, f)| f.key)
        .map(|(i, f)| (i, *f))
        .collect();
    let key_tys: Vec<Type> = keys.iter().map(|(_, f)| field_ty(f)).collect();
    let key_idents: Vec<&syn::Ident> = keys.iter().map(|(_, f)| f.ident).collect();
    let (key_ty, key_expr) = if keys.len() == 1 {
        let ty = &key_tys[0];
        let name = key_idents[0];
        (quote!(#ty), quote!(#p::Clone::clone(&self.#name)))
    } else {
        (
            quote!((#(#key_tys,)*)),
            quote!((#(#p::Clone::clone(&self.#key_idents),)*)),
        )
    };
    let walk_key_arms: Vec<TokenStream> = if keys.len() == 1 {
        let (i, _) = keys[0];
        let st = &sql_types[i];
        let ty = &key_tys[0];
        vec![quote!(0 => __out.push_bind_param::<#st, #ty>(__key),)]
    } else {
        keys.iter()
            .enumerate()
            .map(|(part, (i, _))| {
                let st = &sql_types[*i];
                let ty = &key_tys[part];
                let member = syn::Index::from(part);
                quote!(#part => __out.push_bind_param::<#st, #ty>(&__key.#member),)
            })
            .collect()
    };

    // Generated fields.
    let generated: Vec<Generated> = persisted
        .iter()
        .enumerate()
        .filter(|(_, f)| f.generated())
        .map(|(index, field)| Generated { index, field })
        .collect();
    let generated_tys: Vec<Type> = generated.iter().map(|g| field_ty(g.field)).collect();
    let generated_idents: Vec<&syn::Ident> = generated.iter().map(|g| g.field.ident).collect();
    let generated_members: Vec<syn::Index> = (0..generated.len()).map(syn::Index::from).collect();
    let generated_columns: Vec<&TokenStream> =
        generated.iter().map(|g| &columns[g.index]).collect();
    let generated_sql_types: Vec<&TokenStream> =
        generated.iter().map(|g| &sql_types[g.index]).collect();
    let generated_key = generated.iter().position(|g| g.field.key).map(|position| {
        (
            position,
            &generated_tys[position],
            generated[position].field.ty.span(),
        )
    });
    let key_order = match &generated_key {
        Some((position, ty, span)) => {
            let member = syn::Index::from(*position);
            quote_spanned!(*span=> #p::Option::Some(<#ty as #p::AutoIncrementKey>::order(&__values.#member)))
        }
        None => quote!(#p::Option::None),
    };
    let from_insert_id = match &generated_key {
        Some((_, ty, span)) if generated.len() == 1 => {
            quote_spanned!(*span=> <#ty as #p::AutoIncrementKey>::from_insert_id(__id).map(|__key| (__key,)))
        }
        _ => quote!({ let _ = __id; #p::Option::None }),
    };
    let set_generated = if generated.is_empty() {
        quote!(let () = __values;)
    } else {
        quote!(#(self.#generated_idents = __values.#generated_members;)*)
    };

    // Backend bounds for Persist.
    let mut persist_predicates = entity_predicates.clone();
    persist_predicates.push(quote!(__DB: #p::Backend));
    persist_predicates.push(quote!(#table_module::table: #p::QueryFragment<__DB>));
    for (ty, sql_type) in tys.iter().zip(&sql_types) {
        persist_predicates.push(quote!(#ty: #p::ToSql<#sql_type, __DB>));
        persist_predicates.push(quote!(__DB: #p::HasSqlType<#sql_type>));
    }
    for (ty, sql_type) in generated_tys.iter().zip(&generated_sql_types) {
        persist_predicates.push(quote!(#ty: #p::FromSql<#sql_type, __DB>));
    }
    let impl_params = &impl_generics.params;
    let db = format_ident!("__DB", span = Span::call_site());
    let persist_params = if impl_params.is_empty() {
        quote!(#db)
    } else {
        quote!(#impl_params, #db)
    };

    quote! {
        #[doc(hidden)]
        #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
        const _: () = {
            #[automatically_derived]
            impl<#impl_params> #p::Entity for #self_ty
            where #(#entity_predicates,)*
            {
                type Table = #table_module::table;
                type Key = #key_ty;
                type Generated = (#(#generated_tys,)*);

                const ENTITY_NAME: &'static str = #ident_text;
                const TABLE_NAME: &'static str = #table_name;
                const FIELDS: &'static [#p::FieldInfo] = &[
                    #(#p::FieldInfo {
                        name: #name_texts,
                        column: <#columns as #p::Column>::NAME,
                        key: #key_flags,
                        generated: #generated_flags,
                    },)*
                ];

                #[inline]
                fn key(&self) -> Self::Key {
                    #key_expr
                }

                #[inline]
                fn changed_fields(&self, __baseline: &Self) -> #p::FieldSet {
                    let mut __set = #p::FieldSet::EMPTY;
                    #(
                        if #p::PartialEq::ne(&self.#names, &__baseline.#names) {
                            __set.insert(#indexes);
                        }
                    )*
                    __set
                }

                #[inline]
                fn generated(&self) -> Self::Generated {
                    (#(#p::Clone::clone(&self.#generated_idents),)*)
                }

                #[inline]
                fn set_generated(&mut self, __values: Self::Generated) {
                    #set_generated
                }

                #[inline]
                fn generated_key_order(__values: &Self::Generated) -> #p::Option<i128> {
                    let _ = __values;
                    #key_order
                }

                #[inline]
                fn generated_from_insert_id(__id: u64) -> #p::Option<Self::Generated> {
                    #from_insert_id
                }
            }

            #[automatically_derived]
            impl<#persist_params> #p::Persist<#db> for #self_ty
            where #(#persist_predicates,)*
            {
                #[inline]
                fn walk_table(__out: #p::AstPass<'_, '_, #db>) -> #p::QueryResult<()> {
                    #p::QueryFragment::<#db>::walk_ast(&#table_module::table, __out)
                }

                #[inline]
                fn walk_field<'__b>(
                    &'__b self,
                    __field: usize,
                    mut __out: #p::AstPass<'_, '__b, #db>,
                ) -> #p::QueryResult<()> {
                    match __field {
                        #(#indexes => __out.push_bind_param::<#sql_types, #tys>(&self.#names),)*
                        _ => #p::Result::Err(#p::diesel::result::Error::QueryBuilderError(
                            "field index out of range".into(),
                        )),
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
                        _ => #p::Result::Err(#p::diesel::result::Error::QueryBuilderError(
                            "key part out of range".into(),
                        )),
                    }
                }

                #[inline]
                fn read_generated<'__a>(
                    __row: &impl #p::NamedRow<'__a, #db>,
                ) -> #p::DeserializeResult<Self::Generated> {
                    let _ = __row;
                    #p::Result::Ok((
                        #(#p::NamedRow::get::<#generated_sql_types, #generated_tys>(
                            __row,
                            <#generated_columns as #p::Column>::NAME,
                        )?,)*
                    ))
                }
            }
        };
    }
}
