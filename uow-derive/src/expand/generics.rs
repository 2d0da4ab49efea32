//! The impls' generics: the struct's own, with its lifetimes made `'static`.
//!
//! A unit of work keeps entities between calls, so it holds them with owned (`'static`) data:
//! `valid.rs` refuses lifetime parameters before expansion, so the substitution here is a
//! guard that keeps every impl `'static` should that rule change. The generics are rebuilt by hand rather than with
//! `split_for_impl`, to substitute the lifetimes.

use proc_macro2::{Ident, TokenStream};
use quote::{quote, ToTokens};
use syn::punctuated::Punctuated;
use syn::visit_mut::VisitMut;
use syn::{GenericParam, Lifetime, Token, Type};

use crate::ast::Input;

/// Replaces the struct's own lifetimes with `'static`.
struct StaticLifetimes<'a>(&'a [Lifetime]);

impl VisitMut for StaticLifetimes<'_> {
    fn visit_lifetime_mut(&mut self, lifetime: &mut Lifetime) {
        if self.0.iter().any(|l| l.ident == lifetime.ident) {
            *lifetime = Lifetime::new("'static", lifetime.span());
        }
    }
}

/// What every generated impl says about the struct's generics.
pub(super) struct ImplGenerics {
    /// The struct's lifetimes, which the impls replace with `'static`.
    lifetimes: Vec<Lifetime>,
    /// The impl's parameters: the struct's type and const parameters, without its lifetimes.
    pub params: Punctuated<GenericParam, Token![,]>,
    /// The struct's type, its lifetime arguments `'static`: `Account` or `Label<'static, T>`.
    pub self_ty: TokenStream,
    /// The struct's where clause, then `T: 'static` for each type parameter `T`.
    pub where_predicates: Vec<TokenStream>,
}

impl ImplGenerics {
    /// The generics of the impls for `input`.
    pub fn new(input: &Input) -> Self {
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
        let mut where_predicates: Vec<TokenStream> = impl_generics
            .where_clause
            .as_ref()
            .map(|w| w.predicates.iter().map(|p| p.to_token_stream()).collect())
            .unwrap_or_default();
        where_predicates.extend(impl_generics.type_params().map(|t| {
            let t = &t.ident;
            quote!(#t: 'static)
        }));
        ImplGenerics {
            self_ty: self_ty(input),
            params: impl_generics.params,
            where_predicates,
            lifetimes,
        }
    }

    /// A field's type as the impls name it, its lifetimes `'static`.
    pub fn field_ty(&self, ty: &Type) -> Type {
        let mut ty = ty.clone();
        StaticLifetimes(&self.lifetimes).visit_type_mut(&mut ty);
        ty
    }

    /// Whether `ty` names one of the struct's type or const parameters. A bound on a type that
    /// does not is known to hold or fail where the struct is declared: such bounds stay out of
    /// the impls' where clauses (a failed one there would be reported again at every call
    /// site) and are checked once, by the bodies or by `column_checks`.
    pub fn mentions_params(&self, ty: &Type) -> bool {
        let names: Vec<&Ident> = self
            .params
            .iter()
            .filter_map(|param| match param {
                GenericParam::Type(t) => Some(&t.ident),
                GenericParam::Const(c) => Some(&c.ident),
                GenericParam::Lifetime(_) => None,
            })
            .collect();
        !names.is_empty() && names_any(ty.to_token_stream(), &names)
    }

    /// The impl's parameters followed by `extra` (the backend parameter of `Persist` and
    /// `Load`).
    pub fn params_and(&self, extra: &Ident) -> TokenStream {
        let params = &self.params;
        if params.is_empty() {
            quote!(#extra)
        } else {
            quote!(#params, #extra)
        }
    }
}

/// The struct's name with its parameters as arguments, each lifetime `'static`.
fn self_ty(input: &Input) -> TokenStream {
    let ident = input.ident;
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
    if type_args.is_empty() {
        quote!(#ident)
    } else {
        quote!(#ident<#(#type_args),*>)
    }
}

/// Whether `tokens` (at any depth) hold one of `names`.
fn names_any(tokens: TokenStream, names: &[&Ident]) -> bool {
    tokens.into_iter().any(|token| match token {
        proc_macro2::TokenTree::Ident(ident) => names.contains(&&ident),
        proc_macro2::TokenTree::Group(group) => names_any(group.stream(), names),
        _ => false,
    })
}
