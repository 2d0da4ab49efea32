//! Collects every error of one derive invocation, so a user sees all of them at once.

use proc_macro2::TokenStream;
use quote::ToTokens;
use std::fmt::Display;

/// Errors found so far.
#[derive(Default)]
pub struct Ctxt {
    errors: Vec<syn::Error>,
}

impl Ctxt {
    /// Records `message` on `tokens`, with a `help:` line telling how to fix it.
    pub fn error(&mut self, tokens: impl ToTokens, message: impl Display, help: impl Display) {
        self.errors.push(syn::Error::new_spanned(
            tokens,
            format!("{message}\n\n= help: {help}"),
        ));
    }

    /// Records an error at a span.
    pub fn error_at(&mut self, span: proc_macro2::Span, message: impl Display, help: impl Display) {
        self.errors.push(syn::Error::new(
            span,
            format!("{message}\n\n= help: {help}"),
        ));
    }

    /// Records a parse error from syn, with a `help:` line added to each of its messages.
    pub fn syn_error(&mut self, error: syn::Error, help: impl Display) {
        for error in error {
            self.errors.push(syn::Error::new(
                error.span(),
                format!("{error}\n\n= help: {help}"),
            ));
        }
    }

    /// Whether any error was recorded.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// All errors as `compile_error!` invocations.
    pub fn into_compile_errors(self) -> TokenStream {
        self.errors
            .iter()
            .map(syn::Error::to_compile_error)
            .collect()
    }
}
