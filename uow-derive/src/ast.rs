//! The struct as the rest of the derive sees it: its fields with their parsed attributes.

use proc_macro2::Ident;
use syn::{Data, DeriveInput, Fields, Generics, Type};

use crate::attr::{self, ContainerAttrs, FieldAttrs};
use crate::ctxt::Ctxt;

/// A struct deriving `Tracked`.
pub struct Input<'a> {
    pub ident: &'a Ident,
    pub generics: &'a Generics,
    pub attrs: ContainerAttrs,
    /// Every named field, skipped ones included, in declaration order.
    pub fields: Vec<Field<'a>>,
}

/// One named field.
pub struct Field<'a> {
    pub ident: &'a Ident,
    pub ty: &'a Type,
    pub attrs: FieldAttrs,
    /// Part of the primary key; decided in `valid.rs` (explicit `primary_key`, else `id`).
    pub key: bool,
}

impl Field<'_> {
    /// The column: `#[tracked(column = ...)]`, else the field's own name.
    pub fn column(&self) -> &Ident {
        match &self.attrs.column {
            Some(column) => &column.value,
            None => self.ident,
        }
    }

    pub fn persisted(&self) -> bool {
        self.attrs.skip.is_none()
    }

    pub fn generated(&self) -> bool {
        self.attrs.generated.is_some()
    }

    pub fn version(&self) -> bool {
        self.attrs.version.is_some()
    }
}

impl<'a> Input<'a> {
    /// Reads the struct; `None` when it is not a struct with named fields.
    pub fn from_syn(cx: &mut Ctxt, input: &'a DeriveInput) -> Option<Self> {
        let attrs = attr::container(cx, &input.attrs);
        let named = match &input.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(named) => named,
                Fields::Unnamed(fields) => {
                    cx.error(
                        fields,
                        "`Tracked` needs named fields: each field maps to a column by name",
                        "turn the tuple struct into a struct with named fields, e.g. `struct Account { id: i32, owner: String }`",
                    );
                    return None;
                }
                Fields::Unit => {
                    cx.error(
                        &input.ident,
                        "`Tracked` cannot be derived for a unit struct: it has no fields to store",
                        "add named fields, one per column, e.g. `struct Account { id: i32, owner: String }`",
                    );
                    return None;
                }
            },
            Data::Enum(data) => {
                cx.error(
                    data.enum_token,
                    "`Tracked` can only be derived for structs, not enums",
                    "an entity is one table row: derive `Tracked` on a struct with named fields, and store the enum as a field",
                );
                return None;
            }
            Data::Union(data) => {
                cx.error(
                    data.union_token,
                    "`Tracked` can only be derived for structs, not unions",
                    "derive `Tracked` on a struct with named fields",
                );
                return None;
            }
        };
        let fields = named
            .named
            .iter()
            .filter_map(|field| {
                Some(Field {
                    ident: field.ident.as_ref()?,
                    ty: &field.ty,
                    attrs: attr::field(cx, &field.attrs),
                    key: false,
                })
            })
            .collect();
        Some(Input {
            ident: &input.ident,
            generics: &input.generics,
            attrs,
            fields,
        })
    }

    /// The persisted fields (not `skip`), in declaration order: their positions are the field
    /// indexes of `Entity::FIELDS`.
    pub fn persisted(&self) -> impl Iterator<Item = &Field<'a>> {
        self.fields.iter().filter(|f| f.persisted())
    }

    pub fn keys(&self) -> impl Iterator<Item = &Field<'a>> {
        self.fields.iter().filter(|f| f.key)
    }
}
