//! Rules that span several attributes or fields. Each violation is reported on the token that
//! breaks it, with a `help:` line; all of them are collected.
//!
//! One function per rule, in serde's `check.rs` style. The per-field rules run inside one loop
//! per group (skip and generated, foreign keys, versions) rather than one loop each, so that the
//! errors come out field by field, in the order the user reads them.

use proc_macro2::Ident;
use quote::ToTokens as _;

use crate::ast::{Field, Input};
use crate::attr::{BelongsTo, Spanned};
use crate::ctxt::Ctxt;

/// The most persisted fields an entity may have (`uow_core::MAX_FIELDS`).
const MAX_FIELDS: usize = 128;

/// Checks `input` and decides which fields form the key.
pub fn check(cx: &mut Ctxt, input: &mut Input) {
    merge_diesel_table(cx, input);
    merge_diesel_columns(cx, input);
    merge_diesel_primary_key(cx, input);
    merge_diesel_belongs_to(input);
    check_table_present(cx, input);
    check_no_lifetimes(cx, input);
    choose_key_fields(input);
    check_key_present(cx, input);

    let composite = input.keys().count() > 1;
    for field in &input.fields {
        check_skip_excludes_key(cx, field);
        check_skip_excludes_generated(cx, field);
        check_skip_excludes_column(cx, field);
        check_generated_not_in_composite_key(cx, field, composite);
        check_children_is_a_vec(cx, field);
        check_children_is_only_children(cx, field);
        check_persisted_field_owns_its_value(cx, field);
    }

    for relation in &input.attrs.belongs_to {
        for foreign_key in &relation.foreign_keys {
            check_foreign_key_is_persisted(cx, input, foreign_key);
        }
    }

    let first_version = input.fields.iter().find(|f| f.version());
    for field in &input.fields {
        let Some(version) = &field.attrs.version else {
            continue;
        };
        check_one_version(cx, field, version, first_version);
        check_version_not_key_skip_or_generated(cx, field, version);
    }

    check_field_count(cx, input);
}

/// uow reads Diesel's `table_name`; a `#[tracked(table = ..)]` naming another table
/// contradicts it (`accounts` and `accounts::table` name the same one).
fn merge_diesel_table(cx: &mut Ctxt, input: &mut Input) {
    let Some((span, path)) = input.diesel.table_name.clone() else {
        return;
    };
    match &input.attrs.table {
        Some(table) if table_text(&table.value) != table_text(&path) => cx.error(
            &table.value,
            format!(
                "`#[tracked(table = {})]` contradicts `#[diesel(table_name = {})]`",
                table_text(&table.value),
                table_text(&path)
            ),
            "remove `table` from `#[tracked(...)]`: uow reads Diesel's `table_name`",
        ),
        Some(_) => {}
        None => {
            input.attrs.table = Some(Spanned {
                key: Ident::new("table_name", span),
                value: path,
            })
        }
    }
}

/// A table path as text, without a last `::table` segment.
fn table_text(path: &syn::Path) -> String {
    let text = path.to_token_stream().to_string().replace(' ', "");
    match text.strip_suffix("::table") {
        Some(module) => module.to_string(),
        None => text,
    }
}

/// uow reads Diesel's `column_name`; a `#[tracked(column = ..)]` naming another column
/// contradicts it.
fn merge_diesel_columns(cx: &mut Ctxt, input: &mut Input) {
    for field in &mut input.fields {
        let Some((span, column)) = field.diesel_column.clone() else {
            continue;
        };
        match &field.attrs.column {
            Some(own) if own.value != column => cx.error(
                &own.value,
                format!(
                    "`#[tracked(column = {})]` contradicts `#[diesel(column_name = {column})]` on field `{}`",
                    own.value, field.ident
                ),
                "remove `column` from `#[tracked(...)]`: uow reads Diesel's `column_name`",
            ),
            Some(_) => {}
            None => {
                field.attrs.column = Some(Spanned {
                    key: Ident::new("column_name", span),
                    value: column,
                })
            }
        }
    }
}

/// uow reads Diesel's `primary_key(..)`: its fields form the key, and `#[tracked(primary_key)]`
/// on another set of fields contradicts it.
fn merge_diesel_primary_key(cx: &mut Ctxt, input: &mut Input) {
    let Some((span, keys)) = input.diesel.primary_key.clone() else {
        return;
    };
    for key in &keys {
        if !input.fields.iter().any(|f| f.ident == key) {
            cx.error(
                key,
                format!(
                    "`#[diesel(primary_key(..))]` names `{key}`, which is not a field of `{}`",
                    input.ident
                ),
                "name the key fields as they are declared in the struct",
            );
        }
    }
    let tracked: Vec<&Field> = input
        .fields
        .iter()
        .filter(|f| f.attrs.primary_key.is_some())
        .collect();
    if let Some(first) = tracked.first() {
        let same = tracked.len() == keys.len() && tracked.iter().all(|f| keys.contains(f.ident));
        if !same {
            cx.error(
                first.attrs.primary_key.as_ref().unwrap_or(first.ident),
                format!(
                    "`#[tracked(primary_key)]` on `{}` contradicts `#[diesel(primary_key({}))]`",
                    tracked
                        .iter()
                        .map(|f| f.ident.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    keys.iter()
                        .map(|k| k.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "remove `primary_key` from `#[tracked(...)]`: uow reads Diesel's `primary_key`",
            );
        }
        return;
    }
    for field in &mut input.fields {
        if keys.contains(field.ident) {
            field.attrs.primary_key = Some(Ident::new("primary_key", span));
        }
    }
}

/// uow reads Diesel's `belongs_to(Parent)` (foreign key `parent_id`) and
/// `belongs_to(Parent, foreign_key = field)`; one also given in `#[tracked(belongs_to(..))]`
/// with the same foreign key is one relation.
fn merge_diesel_belongs_to(input: &mut Input) {
    for (parent, foreign_key) in std::mem::take(&mut input.diesel.belongs_to) {
        let parent_text = parent.to_token_stream().to_string();
        let known = input.attrs.belongs_to.iter().any(|relation| {
            relation.parent.to_token_stream().to_string() == parent_text
                && relation.foreign_keys.len() == 1
                && relation.foreign_keys[0] == foreign_key
        });
        if !known {
            input.attrs.belongs_to.push(BelongsTo {
                parent,
                foreign_keys: vec![foreign_key],
            });
        }
    }
}

/// Entities own their data: a unit of work holds them from one call to the next, past any
/// borrow, and builds them from rows, which cannot lend a `&str`.
fn check_no_lifetimes(cx: &mut Ctxt, input: &Input) {
    for param in input.generics.lifetimes() {
        cx.error(
            &param.lifetime,
            format!(
                "`{}` borrows data (`{}`): a unit of work holds entities past any borrow",
                input.ident, param.lifetime
            ),
            "make the fields own their values (`String` for `&str`, `Vec<T>` for `&[T]`) and remove the lifetime",
        );
    }
}

/// A persisted field is read back from rows, which cannot lend it a reference.
fn check_persisted_field_owns_its_value(cx: &mut Ctxt, field: &Field) {
    if let syn::Type::Reference(reference) = field.ty {
        if field.persisted() {
            cx.error(
                reference,
                format!(
                    "field `{}` is a reference: an entity read from a row must own its values",
                    field.ident
                ),
                "use an owned type (`String` for `&str`, `Vec<u8>` for `&[u8]`)",
            );
        }
    }
}

/// A table is required, unless a malformed or misspelt `table` was already reported (a second
/// error for the same mistake would only add noise).
fn check_table_present(cx: &mut Ctxt, input: &Input) {
    if input.attrs.table.is_none() && !input.attrs.table_reported {
        cx.error(
            input.ident,
            format!("`{}` derives `Tracked` but names no table", input.ident),
            "add `#[tracked(table = your_table)]` (or Diesel's `#[diesel(table_name = your_table)]`) naming the Diesel `table!` the struct is stored in",
        );
    }
}

/// Marks the key fields: those marked `primary_key` if any is, else the field named `id`.
fn choose_key_fields(input: &mut Input) {
    let explicit_keys = input.fields.iter().any(|f| f.attrs.primary_key.is_some());
    for field in &mut input.fields {
        field.key = if explicit_keys {
            field.attrs.primary_key.is_some()
        } else {
            field.ident == "id"
        };
    }
}

/// An entity is found and written by its key, so it must have one.
fn check_key_present(cx: &mut Ctxt, input: &Input) {
    if !input.fields.iter().any(|f| f.key) {
        cx.error(
            input.ident,
            format!("`{}` has no primary key: no field is named `id` and none is marked `#[tracked(primary_key)]`", input.ident),
            "mark the key field (or every field of a composite key) with `#[tracked(primary_key)]`",
        );
    }
}

/// A key field cannot be `skip`: the key identifies the row.
fn check_skip_excludes_key(cx: &mut Ctxt, field: &Field) {
    let Some(skip) = &field.attrs.skip else {
        return;
    };
    if field.key {
        cx.error(
            skip,
            format!(
                "key field `{}` cannot be skipped: the key identifies the row",
                field.ident
            ),
            "remove `skip`, or choose another key field with `#[tracked(primary_key)]`",
        );
    }
}

/// A `skip` field cannot be `generated`: it is not stored, so the database cannot fill it.
fn check_skip_excludes_generated(cx: &mut Ctxt, field: &Field) {
    if let (Some(_), Some(generated)) = (&field.attrs.skip, &field.attrs.generated) {
        cx.error(
            generated,
            format!("field `{}` is both `skip` and `generated`: a skipped field is not stored, so the database cannot generate it", field.ident),
            "remove one of `skip` and `generated`",
        );
    }
}

/// A `skip` field cannot name a `column`: it has none.
fn check_skip_excludes_column(cx: &mut Ctxt, field: &Field) {
    if let (Some(_), Some(column)) = (&field.attrs.skip, &field.attrs.column) {
        cx.error(
            &column.key,
            format!(
                "field `{}` is both `skip` and `column`: a skipped field has no column",
                field.ident
            ),
            "remove one of `skip` and `column`",
        );
    }
}

/// A generated key cannot be part of a composite key: it is an integer the database assigns,
/// read back as the insert id and sorted to match a multi-row INSERT's rows to their entities,
/// which works only when it is the whole key.
fn check_generated_not_in_composite_key(cx: &mut Ctxt, field: &Field, composite: bool) {
    let Some(generated) = &field.attrs.generated else {
        return;
    };
    if field.key && composite {
        cx.error(
            generated,
            format!(
                "`{}` is part of a composite key and cannot be `generated`",
                field.ident
            ),
            "generate the key in Rust, or make the generated field the only key field",
        );
    }
}

/// A `children` field holds the aggregate's members: a `Vec` of an entity type.
fn check_children_is_a_vec(cx: &mut Ctxt, field: &Field) {
    if field.attrs.children.is_some() && crate::ast::vec_element(field.ty).is_none() {
        cx.error(
            field.ty,
            format!(
                "`children` field `{}` must be a `Vec` of a `Tracked` entity type",
                field.ident
            ),
            "write it as `Vec<Child>`, where `Child` derives `Tracked` with \
             `belongs_to(ThisStruct, foreign_key = ..)`",
        );
    }
}

/// A `children` field has no column of its own: it cannot be a key, a version, generated,
/// skipped or renamed.
fn check_children_is_only_children(cx: &mut Ctxt, field: &Field) {
    let Some(children) = &field.attrs.children else {
        return;
    };
    let others = [
        ("primary_key", field.attrs.primary_key.as_ref()),
        ("generated", field.attrs.generated.as_ref()),
        ("version", field.attrs.version.as_ref()),
        ("skip", field.attrs.skip.as_ref()),
        ("column", field.attrs.column.as_ref().map(|c| &c.key)),
    ];
    for (name, other) in others {
        if let Some(other) = other {
            cx.error(
                other,
                format!(
                    "`children` field `{}` cannot be `{name}`: its elements are rows of their own table, it has no column",
                    field.ident
                ),
                format!("remove `{name}`"),
            );
        }
    }
    if field.key && field.attrs.primary_key.is_none() {
        cx.error(
            children,
            format!(
                "`{}` is the key by its name, and cannot be `children`",
                field.ident
            ),
            "rename the collection, or mark the key field with `#[tracked(primary_key)]`",
        );
    }
}

/// A `belongs_to` foreign key must be a field, and a persisted one: the unit of work writes the
/// parent's key into it.
fn check_foreign_key_is_persisted(cx: &mut Ctxt, input: &Input, foreign_key: &Ident) {
    let field = input.fields.iter().find(|f| *f.ident == *foreign_key);
    match field {
        None => cx.error(
            foreign_key,
            format!(
                "foreign key `{}` is not a field of `{}`",
                foreign_key, input.ident
            ),
            format!(
                "name the field that holds the parent's key; the fields are: {}",
                input
                    .fields
                    .iter()
                    .map(|f| format!("`{}`", f.ident))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Some(field) if !field.persisted() => cx.error(
            foreign_key,
            format!("foreign key `{foreign_key}` is marked `skip`, so it is not stored"),
            "remove `skip` from the foreign key field",
        ),
        Some(_) => {}
    }
}

/// At most one `version` field: `version` on any field after `first` is reported.
fn check_one_version(cx: &mut Ctxt, field: &Field, version: &Ident, first: Option<&Field>) {
    let Some(first) = first.filter(|first| !std::ptr::eq(*first, field)) else {
        return;
    };
    cx.error(
        version,
        format!(
            "a second version field, `{}`: `{}` is the version already",
            field.ident, first.ident
        ),
        "keep one `#[tracked(version)]` per struct",
    );
}

/// The version changes on every update and is set by the unit of work, so it can be neither a
/// key (which never changes), nor `skip` (it would never be checked), nor `generated`.
fn check_version_not_key_skip_or_generated(cx: &mut Ctxt, field: &Field, version: &Ident) {
    if field.key {
        cx.error(
            version,
            format!("key field `{}` cannot be the version: a key never changes, a version changes on every update", field.ident),
            "put `version` on a separate integer field",
        );
    }
    if field.attrs.skip.is_some() {
        cx.error(
            version,
            format!(
                "version field `{}` is marked `skip`, so it would never be checked",
                field.ident
            ),
            "remove `skip` or `version`",
        );
    }
    if field.attrs.generated.is_some() {
        cx.error(
            version,
            format!("version field `{}` cannot be `generated`: the unit of work sets it on insert and advances it on update", field.ident),
            "remove `generated`; give new entities their initial version (e.g. 1)",
        );
    }
}

/// At most `MAX_FIELDS` persisted fields: changed fields are tracked in a fixed-size bit set.
fn check_field_count(cx: &mut Ctxt, input: &Input) {
    let persisted = input.persisted().count();
    if persisted > MAX_FIELDS {
        cx.error(
            input.ident,
            format!(
                "`{}` has {persisted} persisted fields; at most {MAX_FIELDS} are supported",
                input.ident
            ),
            "mark fields that are not columns with `#[tracked(skip)]`, or split the table",
        );
    }
}
