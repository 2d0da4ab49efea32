//! Spans of the generated where-predicates and paths, so that rustc reports an unsatisfied
//! requirement on the field's type (or inside `belongs_to(...)`) rather than on the whole
//! `#[derive(Tracked)]`. See ARCHITECTURE.md, "Spans: `field_bound` and `field_path`".

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{quote, ToTokens};
use syn::Type;

use crate::ast::Field;

/// The predicate `ty: path rest`, spanned so that rustc reports it on the field's type.
///
/// rustc reports an unsatisfied bound on its trait path, from its first to its last token. A
/// path that starts with a token of the derive cannot be joined with the user's tokens, and the
/// error would land on the whole `#[derive(Tracked)]`; so the tokens of `path` take the span of
/// the first token of the field's type, and the last token of the bound (the closing `>`, or
/// the trait's name) that of its last token. The other tokens of `rest` keep their spans: an
/// unknown column in the SQL type is still reported where it was written. `ty` is the field's
/// type as used in the impl.
pub(super) fn field_bound(
    field: &Field,
    ty: &Type,
    path: TokenStream,
    rest: TokenStream,
) -> TokenStream {
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
pub(super) fn field_path(
    field: &Field,
    ty: &Type,
    trait_path: TokenStream,
    arg: TokenStream,
) -> TokenStream {
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
pub(super) fn spans_of(tokens: &impl ToTokens) -> Option<(Span, Span)> {
    let mut tokens = tokens.to_token_stream().into_iter();
    let first = tokens.next()?.span();
    Some((first, tokens.last().map_or(first, |t| t.span())))
}

/// `tokens`, each given `span`. A group's own span is that of its delimiters, so what is inside
/// parentheses and braces keeps its spans.
pub(super) fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            token.set_span(span);
            token
        })
        .collect()
}
