//! `#[tracked(children)]` collections: `Entity::visit_children` and `visit_children_mut`,
//! `Persist::visit_child_types`, the bounds they need (each spanned on the field's type), and
//! `ChildOf<Parent>` for every parent named in `belongs_to`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::Type;

use super::spans::{field_bound, field_path};
use super::Context;
use crate::ast::Field;

/// The children fields with their element types (lifetimes `'static`).
fn children<'a>(cx: &'a Context) -> Vec<(&'a Field<'a>, Type)> {
    cx.input
        .children()
        .map(|(field, element)| (field, cx.generics.field_ty(element)))
        .collect()
}

/// The children fields with their element types as every body and bound names them:
/// `<Element as IsChildOf<Self>>::Child`, spanned on the field's type. An element that is not
/// a child of this struct is then one error there; the other uses see an unknown type.
fn checked_children<'a>(cx: &'a Context) -> Vec<(&'a Field<'a>, TokenStream)> {
    let p = &cx.p;
    children(cx)
        .into_iter()
        .map(|(field, element)| {
            let path = field_path(field, &element, quote!(#p::IsChildOf), quote!(Self));
            (field, quote!(#path::Child))
        })
        .collect()
}

/// `Element: ChildOf<Self>` per children field whose element type names a parameter of the
/// struct, for `impl Entity`; other element types are checked by `visit_children`'s body.
pub(super) fn entity_predicates(cx: &Context) -> Vec<TokenStream> {
    let p = &cx.p;
    let self_ty = &cx.generics.self_ty;
    children(cx)
        .iter()
        .filter(|(_, element)| cx.generics.mentions_params(element))
        .map(|(field, element)| {
            field_bound(field, element, quote!(#p::ChildOf<), quote!(#self_ty>))
        })
        .collect()
}

/// `Element: Persist<__DB>` per children field, for `impl Persist`.
pub(super) fn persist_predicates(cx: &Context) -> Vec<TokenStream> {
    let p = &cx.p;
    children(cx)
        .iter()
        .map(|(field, element)| field_bound(field, element, quote!(#p::Persist<), quote!(__DB>)))
        .collect()
}

/// `Element: Load<__DB>` per children field, for `impl Load`: loading a root loads its tree.
pub(super) fn load_predicates(cx: &Context) -> Vec<TokenStream> {
    let p = &cx.p;
    children(cx)
        .iter()
        .map(|(field, element)| field_bound(field, element, quote!(#p::Load<), quote!(__DB>)))
        .collect()
}

/// `Load::visit_child_loads`; nothing without children fields.
pub(super) fn load_items(cx: &Context) -> TokenStream {
    let p = &cx.p;
    let children = checked_children(cx);
    if children.is_empty() {
        return quote!();
    }
    let names = children.iter().map(|(field, _)| field.ident);
    let elements = children.iter().map(|(_, element)| element);
    let numbers = 0..children.len();
    quote! {
        fn visit_child_loads<__V: #p::ChildLoadVisitor<Self, __DB>>(__visitor: &mut __V) {
            #(__visitor.visit::<#elements>(#numbers, |__parent: &mut Self| &mut __parent.#names);)*
        }
    }
}

/// `HAS_CHILDREN`, `CHILDREN`, `visit_children` and `visit_children_mut`; nothing (the trait's
/// defaults) without children fields.
pub(super) fn entity_items(cx: &Context) -> TokenStream {
    let p = &cx.p;
    let children = checked_children(cx);
    if children.is_empty() {
        return quote!();
    }
    let names: Vec<_> = children.iter().map(|(field, _)| field.ident).collect();
    let texts = names.iter().map(|n| n.to_string());
    let elements: Vec<_> = children.iter().map(|(_, element)| element).collect();
    let numbers: Vec<usize> = (0..children.len()).collect();
    let columns = cx
        .input
        .fields
        .iter()
        .filter(|f| f.attrs.children.is_none())
        .map(|f| f.ident);
    quote! {
        const HAS_CHILDREN: bool = true;

        const AGGREGATE_DEPTH: usize = {
            let mut __depth = 0;
            #(
                if <#elements as #p::Entity>::AGGREGATE_DEPTH + 1 > __depth {
                    __depth = <#elements as #p::Entity>::AGGREGATE_DEPTH + 1;
                }
            )*
            __depth
        };

        fn clone_columns(&self) -> Self {
            Self {
                #(#columns: #p::Clone::clone(&self.#columns),)*
                #(#names: ::std::vec::Vec::new(),)*
            }
        }
        const CHILDREN: &'static [&'static str] = &[#(#texts),*];

        fn visit_children<__V: #p::ChildrenVisitor<Self>>(&self, __visitor: &mut __V) {
            #(__visitor.visit::<#elements>(#numbers, &self.#names);)*
        }

        fn visit_children_mut<__V: #p::ChildrenVisitorMut<Self>>(&mut self, __visitor: &mut __V) {
            #(__visitor.visit::<#elements>(#numbers, &mut self.#names);)*
        }
    }
}

/// `Persist::visit_child_types`; nothing without children fields.
pub(super) fn persist_items(cx: &Context) -> TokenStream {
    let p = &cx.p;
    let children = checked_children(cx);
    if children.is_empty() {
        return quote!();
    }
    let elements = children.iter().map(|(_, element)| element);
    quote! {
        fn visit_child_types<__V: #p::ChildTypeVisitor<__DB>>(__visitor: &mut __V) {
            #(__visitor.visit::<#elements>();)*
        }
    }
}

/// `impl ChildOf<Parent> for Self` once per parent type named in `belongs_to` (two relations
/// to one parent give one impl), under the entity's where clause.
pub(super) fn child_of_impls(cx: &Context, predicates: &[TokenStream]) -> TokenStream {
    let p = &cx.p;
    let impl_params = &cx.generics.params;
    let self_ty = &cx.generics.self_ty;
    let mut seen: Vec<String> = Vec::new();
    let mut impls = TokenStream::new();
    for relation in &cx.input.attrs.belongs_to {
        let parent = &relation.parent;
        let text = quote!(#parent).to_string();
        if seen.contains(&text) {
            continue;
        }
        seen.push(text);
        impls.extend(quote! {
            #[automatically_derived]
            impl<#impl_params> #p::ChildOf<#parent> for #self_ty
            where #(#predicates,)*
            {
            }
        });
    }
    impls
}

/// For a struct with children fields and no parameters: `AGGREGATE_DEPTH` evaluated where the
/// struct is declared, so that aggregates that contain one another (`Product` holds `Batch`es
/// that hold `Product`s) are one error, a cycle in that constant, instead of a unit of work
/// recursing without end.
pub(super) fn depth_check(cx: &Context) -> TokenStream {
    let p = &cx.p;
    if !cx.input.children().any(|_| true) || !cx.generics.params.is_empty() {
        return quote!();
    }
    let self_ty = &cx.generics.self_ty;
    quote! {
        // An aggregate may not contain itself: a cycle here is a cycle of `children`.
        const _: usize = <#self_ty as #p::Entity>::AGGREGATE_DEPTH;
    }
}
