//! Code generation: `Entity` and `Persist` impls inside `const _: () = { ... };`, referring to
//! the runtime only through `::uow::__private` (or `#[tracked(crate = ...)]`).

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{DeriveInput, GenericParam, Lifetime, Type};

use crate::ast::{Field, Input};
use crate::ctxt::Ctxt;
use crate::valid;

#[cfg(test)]
mod tests;

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

/// The predicate `ty: path rest`, spanned so that rustc reports it on the field's type.
///
/// rustc reports an unsatisfied bound on its trait path, from its first to its last token. A
/// path that starts with a token of the derive cannot be joined with the user's tokens, and the
/// error would land on the whole `#[derive(Tracked)]`; so the tokens of `path` take the span of
/// the first token of the field's type, and the last token of the bound (the closing `>`, or
/// the trait's name) that of its last token. The other tokens of `rest` keep their spans: an
/// unknown column in the SQL type is still reported where it was written. `ty` is the field's
/// type as used in the impl.
fn field_bound(field: &Field, ty: &Type, path: TokenStream, rest: TokenStream) -> TokenStream {
    let Some((first, last)) = type_spans(field) else {
        return quote!(#ty: #path #rest);
    };
    let mut path: Vec<TokenTree> = respan(path, first).into_iter().collect();
    let mut rest: Vec<TokenTree> = rest.into_iter().collect();
    if let Some(end) = rest.last_mut().or(path.last_mut()) {
        end.set_span(last);
    }
    quote!(#ty: #(#path)* #(#rest)*)
}

/// The qualified path `<ty as trait_path<arg>>`, spanned like `field_bound` so that a type that
/// does not implement the trait is reported on the field's type. `arg` keeps its spans: an
/// unknown parent in `belongs_to(...)` is still reported where it was written.
///
/// Used in method bodies rather than as a where-clause bound: a bound on the `Relation` impl
/// would also fail where `visit_relations` names the relation type, a second error that only
/// the derive's tokens could carry.
fn field_path(field: &Field, ty: &Type, trait_path: TokenStream, arg: TokenStream) -> TokenStream {
    let Some((first, last)) = type_spans(field) else {
        return quote!(<#ty as #trait_path<#arg>>);
    };
    let open = respan(quote!(<), first);
    let trait_path = respan(quote!(as #trait_path<), first);
    let close = respan(quote!(>>), last);
    quote!(#open #ty #trait_path #arg #close)
}

/// The spans of the first and last tokens of the field's type as written.
fn type_spans(field: &Field) -> Option<(Span, Span)> {
    spans_of(field.ty)
}

/// The spans of the first and last tokens of `tokens`.
fn spans_of(tokens: &impl ToTokens) -> Option<(Span, Span)> {
    let mut tokens = tokens.to_token_stream().into_iter();
    let first = tokens.next()?.span();
    Some((first, tokens.last().map_or(first, |t| t.span())))
}

fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            token.set_span(span);
            token
        })
        .collect()
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
    let version_flags: Vec<bool> = persisted.iter().map(|f| f.version()).collect();
    // The version is not diffed: the unit of work owns it (checked and advanced on update).
    let diffed: Vec<(&syn::Ident, usize)> = persisted
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.version())
        .map(|(i, f)| (f.ident, i))
        .collect();
    let diffed_names: Vec<&syn::Ident> = diffed.iter().map(|(n, _)| *n).collect();
    let diffed_indexes: Vec<usize> = diffed.iter().map(|(_, i)| *i).collect();
    let version_differs = match persisted.iter().find(|f| f.version()) {
        Some(field) => {
            let name = field.ident;
            quote!(#p::PartialEq::ne(&self.#name, &__other.#name))
        }
        None => quote!(false),
    };
    let bump_version = match persisted.iter().find(|f| f.version()) {
        Some(field) => {
            let name = field.ident;
            let ty = field_ty(field);
            let span = field.ty.span();
            quote_spanned!(span=> self.#name = <#ty as #p::VersionField>::next(&self.#name);)
        }
        None => quote!(),
    };
    let indexes: Vec<usize> = (0..persisted.len()).collect();

    // Entity-level checks that need no backend, spanned on the field type so a mismatch with
    // the column points at the field.
    let mut entity_predicates = where_predicates.clone();
    // Entities are `Clone` (the baseline is a copy); for generic structs `derive(Clone)` only
    // gives that under bounds of its own, so require it rather than restate them.
    entity_predicates.push(quote!(#self_ty: #p::Clone));
    // A unit of work moves between threads with its entities (`UnitOfWork: Send`).
    entity_predicates.push(quote!(#self_ty: #p::Send));
    for ((field, ty), sql_type) in persisted.iter().zip(&tys).zip(&sql_types) {
        entity_predicates.push(field_bound(field, ty, quote!(#p::PartialEq), quote!()));
        // Previews and messages print field values (Diesel's `ToSql` requires it as well).
        entity_predicates.push(field_bound(field, ty, quote!(#p::Debug), quote!()));
        entity_predicates.push(field_bound(
            field,
            ty,
            quote!(__UowColumnType<),
            quote!(#sql_type>),
        ));
        if field.key || field.generated() {
            entity_predicates.push(field_bound(field, ty, quote!(#p::Clone), quote!()));
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
    for ((field, ty), sql_type) in persisted.iter().zip(&tys).zip(&sql_types) {
        let bound = field_bound(field, ty, quote!(#p::ToSql<), quote!(#sql_type, __DB>));
        persist_predicates.push(bound);
        persist_predicates.push(quote!(__DB: #p::HasSqlType<#sql_type>));
    }
    for ((g, ty), sql_type) in generated
        .iter()
        .zip(&generated_tys)
        .zip(&generated_sql_types)
    {
        let bound = field_bound(g.field, ty, quote!(#p::FromSql<), quote!(#sql_type, __DB>));
        persist_predicates.push(bound);
    }
    // `Load` reads every persisted field and defaults the skipped ones.
    let skipped: Vec<&Field> = input.fields.iter().filter(|f| !f.persisted()).collect();
    let skipped_names: Vec<&syn::Ident> = skipped.iter().map(|f| f.ident).collect();
    let skipped_tys: Vec<Type> = skipped.iter().map(|f| field_ty(f)).collect();
    let mut load_predicates = persist_predicates.clone();
    for ((field, ty), sql_type) in persisted.iter().zip(&tys).zip(&sql_types) {
        let bound = field_bound(field, ty, quote!(#p::FromSql<), quote!(#sql_type, __DB>));
        load_predicates.push(bound);
    }
    for field in &skipped {
        // Through `__DB`, so that a skipped field without `Default` only makes `load` and
        // `refresh` unavailable instead of failing the whole derive.
        let ty = field_ty(field);
        load_predicates.push(field_bound(
            field,
            &ty,
            quote!(#p::SkippedDefault<),
            quote!(__DB>),
        ));
    }

    let impl_params = &impl_generics.params;
    // Relations: one private type per `belongs_to`, implementing `Relation<Self>`.
    let relation_types: Vec<syn::Ident> = (0..input.attrs.belongs_to.len())
        .map(|i| format_ident!("__UowRelation{}", i))
        .collect();
    let relation_indexes: Vec<usize> = (0..relation_types.len()).collect();
    let relation_impls: Vec<TokenStream> = input
        .attrs
        .belongs_to
        .iter()
        .zip(&relation_types)
        .filter_map(|(relation, rel_ty)| {
            let (index, field) = persisted
                .iter()
                .enumerate()
                .find(|(_, f)| *f.ident == relation.foreign_key)?;
            let parent = &relation.parent;
            let fk = field.ident;
            let fk_ty = field_ty(field);
            // A parent that is not an entity fails wherever its key is named, and rustc reports
            // it on the tokens that name it: so those of the derive take the span of the
            // parent's path, and the error lands in `belongs_to(...)`, not on the derive.
            let parent_span = spans_of(parent).map(|(first, _)| first);
            let on_parent = |tokens: TokenStream| match parent_span {
                Some(span) => respan(tokens, span),
                None => tokens,
            };
            let parent_key = {
                let open = on_parent(quote!(<));
                let close = on_parent(quote!(as #p::Entity>::Key));
                quote!(#open #parent #close)
            };
            let foreign_key = field_path(field, &fk_ty, quote!(#p::ForeignKey), parent_key.clone());
            // Also the methods' own tokens (`respan` leaves what is inside their parentheses and
            // braces alone): rustc checks their signatures against the trait's, where the key is
            // `<Self::Parent as Entity>::Key`, and reports a failure there on the whole method.
            let methods = on_parent(quote! {
                #[inline]
                fn parent_key(__child: &#self_ty) -> #p::Option<#parent_key> {
                    #foreign_key::get(&__child.#fk)
                }

                #[inline]
                fn set_parent_key(__child: &mut #self_ty, __key: #parent_key) {
                    #foreign_key::set(&mut __child.#fk, __key)
                }
            });
            Some(quote! {
                #[doc(hidden)]
                pub struct #rel_ty;

                #[automatically_derived]
                impl<#impl_params> #p::Relation<#self_ty> for #rel_ty
                where #(#entity_predicates,)*
                {
                    type Parent = #parent;
                    const FIELD: usize = #index;

                    #methods
                }
            })
        })
        .collect();
    let visit_relations = if relation_types.is_empty() {
        quote!()
    } else {
        quote! {
            #[inline]
            fn visit_relations<__V: #p::RelationVisitor<Self>>(__visitor: &mut __V) {
                #(__visitor.visit::<#relation_types>(#relation_indexes);)*
            }
        }
    };
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
            // Diesel's `AsExpression` under a name of our own: rustc words an unsatisfied bound
            // with the `on_unimplemented` of the trait it names, and Diesel's trait has none.
            // `do_not_recommend` keeps rustc from blaming the blanket impl (the derive's tokens)
            // and from falling back to `AsExpression`'s generic message.
            #[diagnostic::on_unimplemented(
                message = "field type `{Self}` does not map to its column's SQL type `{__ST}`",
                label = "this field's type does not match its column in `table!`",
                note = "use a Rust type Diesel converts to `{__ST}` (its documentation lists them; a `Nullable<_>` column takes `Option<_>`), or correct the column's type in `table!`"
            )]
            pub trait __UowColumnType<__ST> {}

            #[diagnostic::do_not_recommend]
            impl<__T, __ST> __UowColumnType<__ST> for __T
            where
                __T: #p::diesel::expression::AsExpression<__ST>,
                __ST: #p::diesel::sql_types::SqlType + #p::diesel::expression::TypedExpressionType,
            {
            }

            #(#relation_impls)*

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
                        version: #version_flags,
                    },)*
                ];

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

                #[inline]
                fn key(&self) -> Self::Key {
                    #key_expr
                }

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

                #[inline]
                fn bump_version(&mut self) {
                    #bump_version
                }

                fn version_differs(&self, __other: &Self) -> bool {
                    #version_differs
                }

                #[inline]
                fn generated(&self) -> Self::Generated {
                    (#(#p::Clone::clone(&self.#generated_idents),)*)
                }

                #[inline]
                fn set_generated(&mut self, __values: Self::Generated) {
                    #set_generated
                }

                #visit_relations

                #[inline]
                fn assign_persisted(&mut self, __fresh: Self) {
                    #(self.#names = __fresh.#names;)*
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

            #[automatically_derived]
            impl<#persist_params> #p::Load<#db> for #self_ty
            where #(#load_predicates,)*
            {
                fn from_row<'__a>(
                    __row: &impl #p::NamedRow<'__a, #db>,
                ) -> #p::DeserializeResult<Self> {
                    #p::Result::Ok(Self {
                        #(#names: #p::NamedRow::get::<#sql_types, #tys>(
                            __row,
                            <#columns as #p::Column>::NAME,
                        )?,)*
                        #(#skipped_names: <#skipped_tys as #p::SkippedDefault<#db>>::skipped_default(),)*
                    })
                }
            }
        };
    }
}
