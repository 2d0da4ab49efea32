//! The generated fields, those the database assigns on insert: `Entity::Generated` is the tuple
//! of their types, in declaration order, which the unit of work reads back after an INSERT and
//! writes into the entity.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::{at, Context};

/// `Entity::Generated`: the tuple of the generated fields' types (`()` when there is none).
pub(super) fn generated_type(cx: &Context) -> TokenStream {
    let generated_tys = at(&cx.fields.tys, &cx.fields.generated);
    quote!((#(#generated_tys,)*))
}

/// `Entity::generated` and `Entity::set_generated`: the generated fields as a tuple, and back.
pub(super) fn generated_methods(cx: &Context) -> TokenStream {
    let p = &cx.p;
    let generated_idents = at(&cx.fields.names, &cx.fields.generated);
    let generated_members = (0..generated_idents.len()).map(syn::Index::from);
    let set_generated = if generated_idents.is_empty() {
        quote!(let () = __values;)
    } else {
        quote!(#(self.#generated_idents = __values.#generated_members;)*)
    };
    quote! {
        #[inline]
        fn generated(&self) -> Self::Generated {
            (#(#p::Clone::clone(&self.#generated_idents),)*)
        }

        #[inline]
        fn set_generated(&mut self, __values: Self::Generated) {
            #set_generated
        }
    }
}

/// `Entity::generated_from_insert_id`: when the only generated field is the key, the
/// auto-increment id (MySQL's `LAST_INSERT_ID`) converted to the key's type; otherwise `None`.
/// Spanned on the key's type, so that a generated key that is not an integer
/// (`AutoIncrementKey`) is reported there.
pub(super) fn from_insert_id(cx: &Context) -> TokenStream {
    let p = &cx.p;
    let fields = &cx.fields;
    let body = match fields.generated.as_slice() {
        [i] if fields.persisted[*i].key => {
            let ty = &fields.tys[*i];
            let span = fields.persisted[*i].ty.span();
            quote_spanned!(span=> <#ty as #p::AutoIncrementKey>::from_insert_id(__id).map(|__key| (__key,)))
        }
        _ => quote!({ let _ = __id; #p::Option::None }),
    };
    quote! {
        #[inline]
        fn generated_from_insert_id(__id: u64) -> #p::Option<Self::Generated> {
            #body
        }
    }
}
