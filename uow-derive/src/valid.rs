//! Rules that span several attributes or fields. Each violation is reported on the token that
//! breaks it, with a `help:` line; all of them are collected.

use crate::ast::Input;
use crate::ctxt::Ctxt;

/// The most persisted fields an entity may have (`uow_core::MAX_FIELDS`).
const MAX_FIELDS: usize = 128;

/// Checks `input` and decides which fields form the key.
pub fn check(cx: &mut Ctxt, input: &mut Input) {
    if input.attrs.table.is_none() && !input.attrs.table_reported {
        cx.error(
            input.ident,
            format!("`{}` derives `Tracked` but names no table", input.ident),
            "add `#[tracked(table = your_table)]` naming the Diesel `table!` the struct is stored in",
        );
    }

    let explicit_keys = input.fields.iter().any(|f| f.attrs.primary_key.is_some());
    for field in &mut input.fields {
        field.key = if explicit_keys {
            field.attrs.primary_key.is_some()
        } else {
            field.ident == "id"
        };
    }
    if !input.fields.iter().any(|f| f.key) {
        cx.error(
            input.ident,
            format!("`{}` has no primary key: no field is named `id` and none is marked `#[tracked(primary_key)]`", input.ident),
            "mark the key field (or every field of a composite key) with `#[tracked(primary_key)]`",
        );
    }

    let composite = input.keys().count() > 1;
    for field in &input.fields {
        if let Some(skip) = &field.attrs.skip {
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
            if let Some(generated) = &field.attrs.generated {
                cx.error(
                    generated,
                    format!("field `{}` is both `skip` and `generated`: a skipped field is not stored, so the database cannot generate it", field.ident),
                    "remove one of `skip` and `generated`",
                );
            }
            if let Some(column) = &field.attrs.column {
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
        if let Some(generated) = &field.attrs.generated {
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
    }

    for relation in &input.attrs.belongs_to {
        let field = input
            .fields
            .iter()
            .find(|f| *f.ident == relation.foreign_key);
        match field {
            None => cx.error(
                &relation.foreign_key,
                format!(
                    "foreign key `{}` is not a field of `{}`",
                    relation.foreign_key, input.ident
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
                &relation.foreign_key,
                format!(
                    "foreign key `{}` is marked `skip`, so it is not stored",
                    relation.foreign_key
                ),
                "remove `skip` from the foreign key field",
            ),
            Some(_) => {}
        }
    }

    let mut first_version: Option<&proc_macro2::Ident> = None;
    for field in &input.fields {
        let Some(version) = &field.attrs.version else {
            continue;
        };
        if let Some(first) = first_version {
            cx.error(
                version,
                format!(
                    "a second version field, `{}`: `{first}` is the version already",
                    field.ident
                ),
                "keep one `#[tracked(version)]` per struct",
            );
        }
        first_version.get_or_insert(field.ident);
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
