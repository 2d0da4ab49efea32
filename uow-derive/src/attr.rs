//! Parsing of `#[tracked(...)]` on the struct and on its fields. Only syntax is checked here;
//! rules that involve several attributes or fields live in `valid.rs`.

use proc_macro2::{Ident, Span};
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned as _;
use syn::{Attribute, Expr, Lit, Token};

use crate::ctxt::Ctxt;

/// Keys accepted on the struct.
pub const CONTAINER_KEYS: &str = "`table`, `crate`";
/// Keys accepted on a field.
pub const FIELD_KEYS: &str = "`primary_key`, `generated`, `skip`, `column`";

/// An attribute value with the span of the key that introduced it.
pub struct Spanned<T> {
    pub key: Ident,
    pub value: T,
}

/// `#[tracked(...)]` on the struct.
#[derive(Default)]
pub struct ContainerAttrs {
    pub table: Option<Spanned<syn::Path>>,
    pub krate: Option<Spanned<syn::Path>>,
}

/// `#[tracked(...)]` on a field.
#[derive(Default)]
pub struct FieldAttrs {
    pub primary_key: Option<Ident>,
    pub generated: Option<Ident>,
    pub skip: Option<Ident>,
    pub column: Option<Spanned<Ident>>,
}

fn key_ident(meta: &ParseNestedMeta) -> Ident {
    match meta.path.get_ident() {
        Some(ident) => ident.clone(),
        None => Ident::new("__path", meta.path.span()),
    }
}

/// Consumes whatever follows an unknown or malformed key (`= expr` or `(...)`), so parsing can
/// go on and report later errors too.
fn skip_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let _content;
        syn::parenthesized!(_content in meta.input);
        let _: proc_macro2::TokenStream = _content.parse()?;
    }
    Ok(())
}

fn tracked_lists<'a>(cx: &mut Ctxt, attrs: &'a [Attribute], example: &str) -> Vec<&'a Attribute> {
    let mut lists = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("tracked")) {
        match &attr.meta {
            syn::Meta::List(_) => lists.push(attr),
            other => cx.error(
                other,
                "`tracked` attribute needs its arguments in parentheses",
                format!("write it like `{example}`"),
            ),
        }
    }
    lists
}

fn set_once<T>(
    cx: &mut Ctxt,
    slot: &mut Option<T>,
    key: &Ident,
    first: impl Fn(&T) -> Span,
    value: T,
) {
    match slot {
        Some(existing) => {
            cx.error_at(
                first(existing),
                format!("duplicate `{key}` attribute: first given here"),
                format!("keep one `{key}`"),
            );
            cx.error(
                key,
                format!("duplicate `{key}` attribute: given again here"),
                format!("keep one `{key}`"),
            );
        }
        None => *slot = Some(value),
    }
}

/// Parses a `= path` value; a string literal gets a specific error.
fn parse_path(
    cx: &mut Ctxt,
    meta: &ParseNestedMeta,
    key: &Ident,
    example: &str,
) -> syn::Result<Option<syn::Path>> {
    if !meta.input.peek(Token![=]) {
        cx.error(
            key,
            format!("`{key}` needs a value"),
            format!("write `{example}`"),
        );
        skip_value(meta)?;
        return Ok(None);
    }
    let expr: Expr = meta.value()?.parse()?;
    match expr {
        Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => Ok(Some(p.path)),
        Expr::Lit(lit) if matches!(lit.lit, Lit::Str(_)) => {
            cx.error(
                &lit,
                format!("`{key}` takes a Rust path, not a string"),
                format!("remove the quotes: `{example}`"),
            );
            Ok(None)
        }
        other => {
            cx.error(
                &other,
                format!("`{key}` takes a Rust path"),
                format!("write `{example}`"),
            );
            Ok(None)
        }
    }
}

/// Parses the struct's `#[tracked(...)]` attributes.
pub fn container(cx: &mut Ctxt, attrs: &[Attribute]) -> ContainerAttrs {
    let mut out = ContainerAttrs::default();
    for attr in tracked_lists(cx, attrs, "#[tracked(table = accounts)]") {
        let result = attr.parse_nested_meta(|meta| {
            let key = key_ident(&meta);
            if meta.path.is_ident("table") {
                if let Some(path) = parse_path(cx, &meta, &key, "table = accounts")? {
                    set_once(cx, &mut out.table, &key, |s| s.key.span(), Spanned { key: key.clone(), value: path });
                }
            } else if meta.path.is_ident("crate") {
                if let Some(path) = parse_path(cx, &meta, &key, "crate = my_reexport::uow")? {
                    set_once(cx, &mut out.krate, &key, |s| s.key.span(), Spanned { key: key.clone(), value: path });
                }
            } else {
                cx.error(
                    &meta.path,
                    format!("unknown `tracked` attribute `{}` on a struct", path_text(&meta.path)),
                    format!("the struct attributes are {CONTAINER_KEYS}; field attributes ({FIELD_KEYS}) go on fields"),
                );
                skip_value(&meta)?;
            }
            Ok(())
        });
        if let Err(error) = result {
            cx.syn_error(error);
        }
    }
    out
}

fn flag(
    cx: &mut Ctxt,
    meta: &ParseNestedMeta,
    key: &Ident,
    slot: &mut Option<Ident>,
) -> syn::Result<()> {
    if meta.input.peek(Token![=]) || meta.input.peek(syn::token::Paren) {
        cx.error(
            key,
            format!("`{key}` takes no value"),
            format!("write `#[tracked({key})]`"),
        );
        skip_value(meta)?;
        return Ok(());
    }
    set_once(cx, slot, key, |k| k.span(), key.clone());
    Ok(())
}

/// Parses a field's `#[tracked(...)]` attributes.
pub fn field(cx: &mut Ctxt, attrs: &[Attribute]) -> FieldAttrs {
    let mut out = FieldAttrs::default();
    for attr in tracked_lists(cx, attrs, "#[tracked(primary_key)]") {
        let result = attr.parse_nested_meta(|meta| {
            let key = key_ident(&meta);
            if meta.path.is_ident("primary_key") {
                flag(cx, &meta, &key, &mut out.primary_key)?;
            } else if meta.path.is_ident("generated") {
                flag(cx, &meta, &key, &mut out.generated)?;
            } else if meta.path.is_ident("skip") {
                flag(cx, &meta, &key, &mut out.skip)?;
            } else if meta.path.is_ident("column") {
                if let Some(path) = parse_path(cx, &meta, &key, "column = column_name")? {
                    match path.get_ident() {
                        Some(column) => set_once(
                            cx,
                            &mut out.column,
                            &key,
                            |s| s.key.span(),
                            Spanned { key: key.clone(), value: column.clone() },
                        ),
                        None => cx.error(
                            &path,
                            "`column` takes the bare column name from the `table!` declaration",
                            "write `column = column_name`, without the table path",
                        ),
                    }
                }
            } else {
                cx.error(
                    &meta.path,
                    format!("unknown `tracked` attribute `{}` on a field", path_text(&meta.path)),
                    format!("the field attributes are {FIELD_KEYS}; struct attributes ({CONTAINER_KEYS}) go on the struct"),
                );
                skip_value(&meta)?;
            }
            Ok(())
        });
        if let Err(error) = result {
            cx.syn_error(error);
        }
    }
    out
}

fn path_text(path: &syn::Path) -> String {
    path.segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}
