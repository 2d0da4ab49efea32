//! The struct as the rest of the derive sees it: its fields with their parsed attributes.

use proc_macro2::Ident;
use syn::{Data, DeriveInput, Fields, Generics, Type};

use crate::attr::{self, ContainerAttrs, FieldAttrs};
use crate::ctxt::Ctxt;
use crate::diesel_attr::{self, DieselContainer};

/// A struct deriving `Tracked`.
pub struct Input<'a> {
    pub ident: &'a Ident,
    pub generics: &'a Generics,
    pub attrs: ContainerAttrs,
    /// What the struct's `#[diesel(...)]` says; `valid.rs` merges it into `attrs`.
    pub diesel: DieselContainer,
    /// Every named field, skipped ones included, in declaration order.
    pub fields: Vec<Field<'a>>,
}

/// One named field.
pub struct Field<'a> {
    pub ident: &'a Ident,
    pub ty: &'a Type,
    pub attrs: FieldAttrs,
    /// `#[diesel(column_name = ..)]`; `valid.rs` merges it into `attrs.column`.
    pub diesel_column: Option<(proc_macro2::Span, Ident)>,
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

    /// Stored in a column of its own: not `skip`, not a `children` collection.
    pub fn persisted(&self) -> bool {
        self.attrs.skip.is_none() && self.attrs.children.is_none()
    }

    /// The element type of a `#[tracked(children)]` field (`Batch` in `Vec<Batch>`); `None`
    /// for other fields, and for a `children` field that is not a `Vec` (valid.rs reports it).
    pub fn children_element(&self) -> Option<&Type> {
        self.attrs.children.as_ref()?;
        vec_element(self.ty)
    }

    pub fn generated(&self) -> bool {
        self.attrs.generated.is_some()
    }

    pub fn version(&self) -> bool {
        self.attrs.version.is_some()
    }
}

/// `T` in `Vec<T>` (also `std::vec::Vec<T>`, `alloc::vec::Vec<T>`).
pub fn vec_element(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else {
        return None;
    };
    let last = path.path.segments.last()?;
    if path.qself.is_some() || last.ident != "Vec" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first() {
        Some(syn::GenericArgument::Type(element)) if args.args.len() == 1 => Some(element),
        _ => None,
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
                    diesel_column: diesel_attr::column_name(&field.attrs),
                    key: false,
                })
            })
            .collect();
        Some(Input {
            ident: &input.ident,
            generics: &input.generics,
            attrs,
            diesel: diesel_attr::container(&input.attrs),
            fields,
        })
    }

    /// The persisted fields (not `skip`), in declaration order: their positions are the field
    /// indexes of `Entity::FIELDS`.
    pub fn persisted(&self) -> impl Iterator<Item = &Field<'a>> {
        self.fields.iter().filter(|f| f.persisted())
    }

    /// The `#[tracked(children)]` fields with their element types, in declaration order: their
    /// positions are the field numbers of `Entity::CHILDREN`.
    pub fn children(&self) -> impl Iterator<Item = (&Field<'a>, &Type)> {
        self.fields
            .iter()
            .filter_map(|f| Some((f, f.children_element()?)))
    }

    pub fn keys(&self) -> impl Iterator<Item = &Field<'a>> {
        self.fields.iter().filter(|f| f.key)
    }
}
