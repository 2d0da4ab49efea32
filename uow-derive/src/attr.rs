//! Parsing of `#[tracked(...)]` on the struct and on its fields. Only syntax is checked here;
//! rules that involve several attributes or fields live in `valid.rs`.

use proc_macro2::{Ident, Span, TokenStream};
use quote::ToTokens as _;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned as _;
use syn::{Attribute, Expr, Lit, Token};

use crate::ctxt::Ctxt;

/// Keys accepted on the struct.
pub const CONTAINER_KEYS: &[&str] = &["table", "belongs_to", "crate"];
/// Keys accepted on a field.
pub const FIELD_KEYS: &[&str] = &[
    "primary_key",
    "generated",
    "version",
    "skip",
    "column",
    "children",
];

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
    /// A `table` was given but could not be read, or something that likely meant one (a bare
    /// `#[tracked]`, a misspelt key); that error is already reported, so a missing table is not
    /// reported again.
    pub table_reported: bool,
    /// `belongs_to(Parent, foreign_key = field)`, in declaration order.
    pub belongs_to: Vec<BelongsTo>,
}

/// One `belongs_to(Parent, foreign_key = field)`, or `foreign_key = (a, b)` for a parent
/// with a composite key.
pub struct BelongsTo {
    pub parent: syn::Path,
    /// The foreign key fields, in the order of the parent's key; never empty.
    pub foreign_keys: Vec<Ident>,
}

/// `#[tracked(...)]` on a field.
#[derive(Default)]
pub struct FieldAttrs {
    pub primary_key: Option<Ident>,
    pub generated: Option<Ident>,
    pub version: Option<Ident>,
    pub skip: Option<Ident>,
    pub column: Option<Spanned<Ident>>,
    /// `children`: a `Vec` of the entities of an aggregate that belong to this one.
    pub children: Option<Ident>,
}

fn key_ident(meta: &ParseNestedMeta) -> Ident {
    match meta.path.get_ident() {
        Some(ident) => ident.clone(),
        None => Ident::new("__path", meta.path.span()),
    }
}

/// Consumes whatever follows an unknown or malformed key (`= expr` or `(...)`), so parsing can
/// go on and report later errors too; returns the consumed tokens (for spans).
fn skip_value(meta: &ParseNestedMeta) -> syn::Result<TokenStream> {
    if meta.input.peek(Token![=]) {
        let eq: Token![=] = meta.input.parse()?;
        let value: Expr = meta.input.parse()?;
        Ok(quote::quote!(#eq #value))
    } else if meta.input.peek(syn::token::Paren) {
        let group: proc_macro2::Group = meta.input.parse()?;
        Ok(group.into_token_stream())
    } else {
        Ok(TokenStream::new())
    }
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

/// The expression after `=`; `None` (reported) when the key has no value.
fn value_expr(
    cx: &mut Ctxt,
    meta: &ParseNestedMeta,
    key: &Ident,
    example: &str,
) -> syn::Result<Option<Expr>> {
    if !meta.input.peek(Token![=]) {
        cx.error(
            key,
            format!("`{key}` needs a value"),
            format!("write `{example}`"),
        );
        skip_value(meta)?;
        return Ok(None);
    }
    Ok(Some(meta.value()?.parse()?))
}

/// Parses a `= path` value; a string literal gets a specific error.
fn parse_path(
    cx: &mut Ctxt,
    meta: &ParseNestedMeta,
    key: &Ident,
    example: &str,
) -> syn::Result<Option<syn::Path>> {
    let Some(expr) = value_expr(cx, meta, key, example)? else {
        return Ok(None);
    };
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
    let lists = tracked_lists(cx, attrs, "#[tracked(table = accounts)]");
    // A bare `#[tracked]` was reported with a help that names `table`.
    let all = attrs.iter().filter(|a| a.path().is_ident("tracked"));
    out.table_reported = all.count() > lists.len();
    for attr in lists {
        let result = attr.parse_nested_meta(|meta| {
            let key = key_ident(&meta);
            if meta.path.is_ident("table") {
                match parse_path(cx, &meta, &key, "table = accounts")? {
                    Some(path) => {
                        let value = Spanned {
                            key: key.clone(),
                            value: path,
                        };
                        set_once(cx, &mut out.table, &key, |s| s.key.span(), value);
                    }
                    None => out.table_reported = true,
                }
            } else if meta.path.is_ident("belongs_to") {
                if let Some(relation) = belongs_to(cx, &meta, &key)? {
                    out.belongs_to.push(relation);
                }
            } else if meta.path.is_ident("crate") {
                if let Some(path) = parse_path(cx, &meta, &key, "crate = my_reexport::uow")? {
                    set_once(
                        cx,
                        &mut out.krate,
                        &key,
                        |s| s.key.span(),
                        Spanned {
                            key: key.clone(),
                            value: path,
                        },
                    );
                }
            } else {
                if unknown_key(cx, &meta, Place::Struct)? == Some("table") {
                    out.table_reported = true;
                }
            }
            Ok(())
        });
        if let Err(error) = result {
            out.table_reported = true;
            cx.syn_error(error, "write it like `#[tracked(table = accounts)]`");
        }
    }
    out
}

const BELONGS_TO_EXAMPLE: &str = "belongs_to(Author, foreign_key = author_id)";

/// Parses `belongs_to(Parent, foreign_key = field)`.
fn belongs_to(
    cx: &mut Ctxt,
    meta: &ParseNestedMeta,
    key: &Ident,
) -> syn::Result<Option<BelongsTo>> {
    if !meta.input.peek(syn::token::Paren) {
        let value = skip_value(meta)?;
        cx.error(
            quote::quote!(#key #value),
            "`belongs_to` takes the parent entity and the foreign key in parentheses",
            format!("write `{BELONGS_TO_EXAMPLE}`"),
        );
        return Ok(None);
    }
    let mut parent: Option<syn::Path> = None;
    let mut foreign_key: Option<Vec<Ident>> = None;
    // A `foreign_key` given but malformed is reported where it is, not again as missing.
    let mut foreign_key_given = false;
    meta.parse_nested_meta(|inner| {
        let inner_key = key_ident(&inner);
        if inner.path.is_ident("foreign_key") {
            foreign_key_given = true;
            if let Some(fields) = foreign_key_fields(cx, &inner, &inner_key)? {
                if foreign_key.is_none() {
                    foreign_key = Some(fields);
                } else {
                    cx.error(
                        &inner_key,
                        "duplicate `foreign_key` in one `belongs_to`",
                        "keep one `foreign_key`; a second relation is a second `belongs_to`",
                    );
                }
            }
        } else if inner.input.peek(Token![=]) || inner.input.peek(syn::token::Paren) {
            let value = skip_value(&inner)?;
            cx.error(
                quote::quote!(#inner_key #value),
                format!("unknown `belongs_to` argument `{}`", path_text(&inner.path)),
                format!("`belongs_to` takes the parent and `foreign_key`: `{BELONGS_TO_EXAMPLE}`"),
            );
        } else if parent.is_some() {
            cx.error(
                &inner.path,
                "`belongs_to` names one parent entity",
                "write one `belongs_to(...)` per relation",
            );
        } else {
            parent = Some(inner.path.clone());
        }
        Ok(())
    })?;
    match (parent, foreign_key) {
        (Some(parent), Some(foreign_keys)) => Ok(Some(BelongsTo {
            parent,
            foreign_keys,
        })),
        (None, _) => {
            cx.error(
                key,
                "`belongs_to` names no parent entity",
                format!("write `{BELONGS_TO_EXAMPLE}`"),
            );
            Ok(None)
        }
        (Some(_), None) if foreign_key_given => Ok(None),
        (Some(_), None) => {
            cx.error(
                key,
                "`belongs_to` needs `foreign_key = field`: the field holding the parent's key",
                format!("write `{BELONGS_TO_EXAMPLE}`"),
            );
            Ok(None)
        }
    }
}

/// The value of `foreign_key`: a field (`foreign_key = author_id`), or a parenthesized list of
/// fields in the order of the parent's composite key (`foreign_key = (book_id, edition)`).
fn foreign_key_fields(
    cx: &mut Ctxt,
    meta: &ParseNestedMeta,
    key: &Ident,
) -> syn::Result<Option<Vec<Ident>>> {
    let Some(expr) = value_expr(cx, meta, key, "foreign_key = author_id")? else {
        return Ok(None);
    };
    let parts: Vec<&Expr> = match &expr {
        Expr::Tuple(tuple) if tuple.attrs.is_empty() => tuple.elems.iter().collect(),
        Expr::Paren(paren) if paren.attrs.is_empty() => vec![&*paren.expr],
        other => vec![other],
    };
    let mut fields = Vec::new();
    let mut malformed = false;
    for part in parts {
        match part {
            Expr::Path(p)
                if p.qself.is_none() && p.attrs.is_empty() && p.path.get_ident().is_some() =>
            {
                fields.extend(p.path.get_ident().cloned());
            }
            other => {
                malformed = true;
                cx.error(
                other,
                "`foreign_key` takes the name of a field of this struct, or several in parentheses \
                 for a parent with a composite key",
                "write `foreign_key = author_id`, or `foreign_key = (book_id, edition)`",
                );
            }
        }
    }
    // A relation with some of its fields would only add a second error (the key's arity).
    Ok((!malformed && !fields.is_empty()).then_some(fields))
}

fn flag(
    cx: &mut Ctxt,
    meta: &ParseNestedMeta,
    key: &Ident,
    slot: &mut Option<Ident>,
) -> syn::Result<()> {
    if meta.input.peek(Token![=]) || meta.input.peek(syn::token::Paren) {
        // Spanned from the key to the end of the value: `primary_key = true` as a whole.
        let value = skip_value(meta)?;
        cx.error(
            quote::quote!(#key #value),
            format!("`{key}` is a flag and takes no value"),
            format!("write just `{key}`, as in `#[tracked({key})]`"),
        );
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
            } else if meta.path.is_ident("version") {
                flag(cx, &meta, &key, &mut out.version)?;
            } else if meta.path.is_ident("skip") {
                flag(cx, &meta, &key, &mut out.skip)?;
            } else if meta.path.is_ident("children") {
                flag(cx, &meta, &key, &mut out.children)?;
            } else if meta.path.is_ident("column") {
                if let Some(path) = parse_path(cx, &meta, &key, "column = column_name")? {
                    match path.get_ident() {
                        Some(column) => set_once(
                            cx,
                            &mut out.column,
                            &key,
                            |s| s.key.span(),
                            Spanned {
                                key: key.clone(),
                                value: column.clone(),
                            },
                        ),
                        None => cx.error(
                            &path,
                            "`column` takes the bare column name from the `table!` declaration",
                            "write `column = column_name`, without the table path",
                        ),
                    }
                }
            } else {
                unknown_key(cx, &meta, Place::Field)?;
            }
            Ok(())
        });
        if let Err(error) = result {
            cx.syn_error(
                error,
                "write the field attributes like `#[tracked(primary_key, column = name)]`",
            );
        }
    }
    out
}

/// Where a `#[tracked(...)]` attribute is.
#[derive(Clone, Copy)]
enum Place {
    Struct,
    Field,
}

/// Reports a key that is not valid at `place`, listing the valid keys (and suggesting the
/// likely intended one, which it returns), then skips its value.
fn unknown_key(
    cx: &mut Ctxt,
    meta: &ParseNestedMeta,
    place: Place,
) -> syn::Result<Option<&'static str>> {
    let (here, keys, there, others) = match place {
        Place::Struct => ("struct", CONTAINER_KEYS, "field", FIELD_KEYS),
        Place::Field => ("field", FIELD_KEYS, "struct", CONTAINER_KEYS),
    };
    let name = path_text(&meta.path);
    let intended = intended_key(&name, keys);
    let help = if others.contains(&name.as_str()) {
        format!(
            "`{name}` is a {there} attribute: move it to the {there}; the {here} attributes are {}",
            list(keys)
        )
    } else {
        format!(
            "{}the {here} attributes are {}; the {there} attributes are {}",
            intended.map_or(String::new(), |key| format!("did you mean `{key}`? ")),
            list(keys),
            list(others)
        )
    };
    cx.error(
        &meta.path,
        format!("unknown `tracked` attribute `{name}` on a {here}"),
        help,
    );
    skip_value(meta)?;
    Ok(intended)
}

fn path_text(path: &syn::Path) -> String {
    path.segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}

/// `` `a`, `b`, `c` ``.
fn list(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Names other derives use for our keys.
const ALIASES: &[(&str, &str)] = &[
    ("table_name", "table"),
    ("rename", "column"),
    ("column_name", "column"),
    ("name", "column"),
    ("id", "primary_key"),
    ("key", "primary_key"),
    ("pk", "primary_key"),
    ("auto_increment", "generated"),
    ("autoincrement", "generated"),
    ("serial", "generated"),
    ("ignore", "skip"),
    ("transient", "skip"),
];

/// The key of `keys` that `unknown` likely means: a name other derives use for it, or a typo.
fn intended_key(unknown: &str, keys: &[&'static str]) -> Option<&'static str> {
    let alias = ALIASES
        .iter()
        .find(|(alias, key)| *alias == unknown && keys.contains(key));
    if let Some((_, key)) = alias {
        return Some(key);
    }
    keys.iter()
        .map(|key| (edit_distance(unknown, key), *key))
        .filter(|(distance, key)| *distance <= (key.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, key)| key)
}

/// Edit distance counting a swap of two adjacent characters as one edit (`tabel` -> `table`).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}
