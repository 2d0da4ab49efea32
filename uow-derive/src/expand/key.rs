//! The key: `Entity::Key`, `Entity::key` and the arms of `Persist::walk_key`. A single key
//! field is the key itself; several make a tuple, in declaration order.

use proc_macro2::TokenStream;
use quote::quote;

use super::{at, Context};

/// `Entity::Key`: the key field's type, or the tuple of the key fields' types.
pub(super) fn key_type(cx: &Context) -> TokenStream {
    let key_tys = at(&cx.fields.tys, &cx.fields.keys);
    if let [ty] = key_tys.as_slice() {
        quote!(#ty)
    } else {
        quote!((#(#key_tys,)*))
    }
}

/// The body of `Entity::key`: a clone of the key field, or a tuple of clones.
pub(super) fn key_expr(cx: &Context) -> TokenStream {
    let p = &cx.p;
    let key_idents = at(&cx.fields.names, &cx.fields.keys);
    if let [name] = key_idents.as_slice() {
        quote!(#p::Clone::clone(&self.#name))
    } else {
        quote!((#(#p::Clone::clone(&self.#key_idents),)*))
    }
}

/// The arms of `Persist::walk_key`'s `match __part`: arm `n` binds part `n` of the key (the key
/// itself when it has one field), with its column's SQL type.
pub(super) fn walk_key_arms(cx: &Context) -> Vec<TokenStream> {
    let fields = &cx.fields;
    if let [i] = fields.keys.as_slice() {
        let st = &fields.sql_types[*i];
        let ty = &fields.tys[*i];
        vec![quote!(0 => __out.push_bind_param::<#st, #ty>(__key),)]
    } else {
        fields
            .keys
            .iter()
            .enumerate()
            .map(|(part, &i)| {
                let st = &fields.sql_types[i];
                let ty = &fields.tys[i];
                let member = syn::Index::from(part);
                quote!(#part => __out.push_bind_param::<#st, #ty>(&__key.#member),)
            })
            .collect()
    }
}
