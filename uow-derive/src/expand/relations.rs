//! Relations: one hidden type per `belongs_to`, `__UowRelationN`, implementing
//! `Relation<Self>`, and `Entity::visit_relations`, which hands them to the unit of work.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

use super::spans::{field_path, respan, spans_of};
use super::Context;
use crate::attr::BelongsTo;

/// The type of relation number `index`, in declaration order.
fn relation_type(index: usize) -> Ident {
    format_ident!("__UowRelation{}", index)
}

/// The `Relation` types and impls of every `belongs_to`.
pub(super) fn relation_impls(cx: &Context, predicates: &[TokenStream]) -> TokenStream {
    cx.input
        .attrs
        .belongs_to
        .iter()
        .enumerate()
        .filter_map(|(index, relation)| relation_impl(cx, predicates, index, relation))
        .collect()
}

/// `__UowRelationN` and its `impl Relation<Self>`, under the entity's where clause (a relation
/// of an entity needs the entity). `None` when a foreign key is not a persisted field, which
/// valid.rs has reported.
///
/// A parent that is not an entity fails wherever its key is named, and rustc reports it on the
/// tokens that name it: so those of the derive take the span of the parent's path, and the
/// error lands in `belongs_to(...)`, not on the derive.
fn relation_impl(
    cx: &Context,
    predicates: &[TokenStream],
    index: usize,
    relation: &BelongsTo,
) -> Option<TokenStream> {
    let p = &cx.p;
    let impl_params = &cx.generics.params;
    let self_ty = &cx.generics.self_ty;
    let rel_ty = relation_type(index);
    let field_indexes = relation
        .foreign_keys
        .iter()
        .map(|name| cx.fields.persisted.iter().position(|f| *f.ident == *name))
        .collect::<Option<Vec<usize>>>()?;
    let parent = &relation.parent;
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
    let (get, set) = match field_indexes.as_slice() {
        [single] => single_key_access(cx, *single, &parent_key),
        several => composite_key_access(cx, several),
    };
    // Also the methods' own tokens (`respan` leaves what is inside their parentheses and
    // braces alone): rustc checks their signatures against the trait's, where the key is
    // `<Self::Parent as Entity>::Key`, and reports a failure there on the whole method.
    let methods = on_parent(quote! {
        #[inline]
        fn parent_key(__child: &#self_ty) -> #p::Option<#parent_key> {
            #get
        }

        #[inline]
        fn set_parent_key(__child: &mut #self_ty, __key: #parent_key) {
            #set
        }
    });
    Some(quote! {
        #[doc(hidden)]
        pub struct #rel_ty;

        #[automatically_derived]
        impl<#impl_params> #p::Relation<#self_ty> for #rel_ty
        where #(#predicates,)*
        {
            type Parent = #parent;
            const FIELDS: &'static [usize] = &[#(#field_indexes),*];

            #methods
        }
    })
}

/// The bodies of `parent_key` and `set_parent_key` for a foreign key of one field, through
/// `ForeignKey<ParentKey>` on the field's type (so a mismatch is reported on that type).
fn single_key_access(
    cx: &Context,
    field_index: usize,
    parent_key: &TokenStream,
) -> (TokenStream, TokenStream) {
    let p = &cx.p;
    let field = cx.fields.persisted[field_index];
    let fk = field.ident;
    let fk_ty = &cx.fields.tys[field_index];
    let foreign_key = field_path(field, fk_ty, quote!(#p::ForeignKey), parent_key.clone());
    (
        quote!(#foreign_key::get(&__child.#fk)),
        quote!(#foreign_key::set(&mut __child.#fk, __key)),
    )
}

/// The bodies of `parent_key` and `set_parent_key` for a composite key: the tuple of the
/// fields' values (each through `ForeignKey`, so `Option` fields make the key `None` when one
/// is null), and the tuple taken apart into them. A number of fields that is not the parent
/// key's is a type mismatch on the tuple.
fn composite_key_access(cx: &Context, field_indexes: &[usize]) -> (TokenStream, TokenStream) {
    let p = &cx.p;
    let parts: Vec<(&Ident, TokenStream)> = field_indexes
        .iter()
        .map(|&i| {
            let field = cx.fields.persisted[i];
            let fk_ty = &cx.fields.tys[i];
            let access = field_path(field, fk_ty, quote!(#p::ForeignKey), quote!(_));
            (field.ident, access)
        })
        .collect();
    let gets = parts
        .iter()
        .map(|(fk, access)| quote!(#access::get(&__child.#fk)?));
    let names: Vec<Ident> = (0..parts.len())
        .map(|n| format_ident!("__part{}", n))
        .collect();
    let sets = parts
        .iter()
        .zip(&names)
        .map(|((fk, access), name)| quote!(#access::set(&mut __child.#fk, #name);));
    (
        quote!(#p::Option::Some((#(#gets,)*))),
        quote! {
            let (#(#names,)*) = __key;
            #(#sets)*
        },
    )
}

/// `Entity::visit_relations`, which visits each relation type with its index; left to the
/// trait's default (no relation) when there is no `belongs_to`.
pub(super) fn visit_relations(cx: &Context) -> TokenStream {
    let p = &cx.p;
    let count = cx.input.attrs.belongs_to.len();
    if count == 0 {
        return quote!();
    }
    let relation_types = (0..count).map(relation_type);
    let relation_indexes = 0..count;
    quote! {
        #[inline]
        fn visit_relations<__V: #p::RelationVisitor<Self>>(__visitor: &mut __V) {
            #(__visitor.visit::<#relation_types>(#relation_indexes);)*
        }
    }
}
