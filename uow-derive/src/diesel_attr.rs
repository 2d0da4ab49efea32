//! Reading Diesel's own `#[diesel(...)]` attributes, so that a struct that also derives
//! Diesel's traits says its table, columns, key and parents once: `table_name`,
//! `column_name`, `primary_key(..)` and `belongs_to(..)`. Every other Diesel key is Diesel's
//! business and is passed over. Malformed Diesel attributes are left for Diesel's derives to
//! report; what is read here is merged with `#[tracked(...)]` in `ast.rs`, and contradictions
//! between the two are reported by `valid.rs`.

use proc_macro2::{Ident, Span, TokenTree};
use syn::meta::ParseNestedMeta;
use syn::parse::ParseStream;
use syn::spanned::Spanned as _;
use syn::{Attribute, Lit, Token};

/// What `#[diesel(...)]` on the struct says that uow uses.
#[derive(Default)]
pub struct DieselContainer {
    /// `table_name = path`, with the span of `table_name`.
    pub table_name: Option<(Span, syn::Path)>,
    /// `primary_key(a, b)`: the key fields, with the span of `primary_key`.
    pub primary_key: Option<(Span, Vec<Ident>)>,
    /// `belongs_to(Parent)` or `belongs_to(Parent, foreign_key = field)`; Diesel's default
    /// foreign key is `parent_id` (the parent's name in snake case, then `_id`).
    pub belongs_to: Vec<(syn::Path, Ident)>,
}

/// `column_name = name` on a field (an identifier or a string), with the span of
/// `column_name`.
pub fn column_name(attrs: &[Attribute]) -> Option<(Span, Ident)> {
    let mut found = None;
    for attr in diesel_lists(attrs) {
        let _ = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("column_name") {
                let span = meta.path.span();
                if let Some(name) = ident_or_string(&meta)? {
                    found = Some((span, name));
                }
                return Ok(());
            }
            skip_rest(meta.input)
        });
    }
    found
}

/// What the struct's `#[diesel(...)]` attributes say about its table, key and parents.
pub fn container(attrs: &[Attribute]) -> DieselContainer {
    let mut out = DieselContainer::default();
    for attr in diesel_lists(attrs) {
        let _ = attr.parse_nested_meta(|meta| {
            let span = meta.path.span();
            if meta.path.is_ident("table_name") {
                let path: syn::Path = meta.value()?.parse()?;
                out.table_name = Some((span, path));
            } else if meta.path.is_ident("primary_key") {
                let mut fields = Vec::new();
                meta.parse_nested_meta(|field| {
                    if let Some(ident) = field.path.get_ident() {
                        fields.push(ident.clone());
                    }
                    Ok(())
                })?;
                out.primary_key = Some((span, fields));
            } else if meta.path.is_ident("belongs_to") {
                out.belongs_to.push(belongs_to(&meta)?);
            } else {
                skip_rest(meta.input)?;
            }
            Ok(())
        });
    }
    out
}

/// The `#[diesel(...)]` attributes with arguments.
fn diesel_lists(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("diesel") && matches!(a.meta, syn::Meta::List(_)))
}

/// `belongs_to(Parent)` or `belongs_to(Parent, foreign_key = field)`.
fn belongs_to(meta: &ParseNestedMeta) -> syn::Result<(syn::Path, Ident)> {
    let content;
    syn::parenthesized!(content in meta.input);
    let parent: syn::Path = content.parse()?;
    let mut foreign_key = None;
    while content.peek(Token![,]) {
        content.parse::<Token![,]>()?;
        if content.is_empty() {
            break;
        }
        let key: Ident = content.parse()?;
        content.parse::<Token![=]>()?;
        let value: Ident = content.parse()?;
        if key == "foreign_key" {
            foreign_key = Some(value);
        }
    }
    let foreign_key = match foreign_key {
        Some(field) => field,
        None => default_foreign_key(&parent),
    };
    Ok((parent, foreign_key))
}

/// Diesel's default foreign key for `belongs_to(Parent)`: `parent_id`, the last segment of the
/// parent's path in snake case.
fn default_foreign_key(parent: &syn::Path) -> Ident {
    let (name, span) = match parent.segments.last() {
        Some(segment) => (segment.ident.to_string(), segment.ident.span()),
        None => (String::new(), Span::call_site()),
    };
    let mut snake = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                snake.push('_');
            }
            snake.extend(c.to_lowercase());
        } else {
            snake.push(c);
        }
    }
    Ident::new(&format!("{snake}_id"), span)
}

/// The value after `=`: an identifier, or a string holding one (`column_name = "name"`).
fn ident_or_string(meta: &ParseNestedMeta) -> syn::Result<Option<Ident>> {
    let value = meta.value()?;
    if value.peek(Lit) {
        let Lit::Str(text) = value.parse::<Lit>()? else {
            return Ok(None);
        };
        return Ok(syn::parse_str::<Ident>(&text.value())
            .ok()
            .map(|ident| Ident::new(&ident.to_string(), text.span())));
    }
    Ok(Some(value.parse()?))
}

/// Passes over the value of a key uow does not read (`= value` or `(...)`), up to the next
/// comma outside angle brackets (`sql_type = Array<Nullable<Text>>`).
fn skip_rest(input: ParseStream) -> syn::Result<()> {
    input.step(|cursor| {
        let mut rest = *cursor;
        let mut depth = 0usize;
        while let Some((token, next)) = rest.token_tree() {
            if let TokenTree::Punct(punct) = &token {
                match punct.as_char() {
                    ',' if depth == 0 => return Ok(((), rest)),
                    '<' => depth += 1,
                    '>' => depth = depth.saturating_sub(1),
                    _ => {}
                }
            }
            rest = next;
        }
        Ok(((), rest))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container_of(tokens: proc_macro2::TokenStream) -> DieselContainer {
        let input: syn::DeriveInput = syn::parse2(tokens).expect("a struct");
        container(&input.attrs)
    }

    #[test]
    fn reads_table_key_and_parents_and_passes_over_the_rest() {
        let read = container_of(quote::quote! {
            #[diesel(check_for_backend(diesel::pg::Pg), table_name = schema::loans)]
            #[diesel(primary_key(book_id, card_no), treat_none_as_null = true)]
            #[diesel(belongs_to(Book), belongs_to(LibraryCard, foreign_key = card_no))]
            struct Loan { book_id: i32, card_no: String }
        });
        let table = read.table_name.map(|(_, p)| quote::quote!(#p).to_string());
        assert_eq!(table.as_deref(), Some("schema :: loans"));
        let key: Vec<String> = read
            .primary_key
            .map_or(vec![], |(_, k)| k.iter().map(|i| i.to_string()).collect());
        assert_eq!(key, ["book_id", "card_no"]);
        let parents: Vec<(String, String)> = read
            .belongs_to
            .iter()
            .map(|(p, fk)| (quote::quote!(#p).to_string(), fk.to_string()))
            .collect();
        assert_eq!(
            parents,
            [
                ("Book".to_string(), "book_id".to_string()),
                ("LibraryCard".to_string(), "card_no".to_string())
            ]
        );
    }

    #[test]
    fn default_foreign_key_is_the_parent_in_snake_case() {
        let path: syn::Path = syn::parse_quote!(crate::models::LibraryCard);
        assert_eq!(default_foreign_key(&path), "library_card_id");
    }

    #[test]
    fn column_name_is_an_identifier_or_a_string() {
        let attrs: Vec<Attribute> = vec![
            syn::parse_quote!(#[diesel(sql_type = Nullable<Text>, column_name = "nick")]),
            syn::parse_quote!(#[serde(rename = "n")]),
        ];
        let read = column_name(&attrs).map(|(_, c)| c.to_string());
        assert_eq!(read.as_deref(), Some("nick"));
        let attrs: Vec<Attribute> = vec![syn::parse_quote!(#[diesel(column_name = nick)])];
        let read = column_name(&attrs).map(|(_, c)| c.to_string());
        assert_eq!(read.as_deref(), Some("nick"));
    }
}
