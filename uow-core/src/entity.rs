//! The entity layer: what `#[derive(Tracked)]` implements for a struct.
//!
//! Two traits split what is backend-neutral from what needs a Diesel backend:
//! [`Entity`] describes the struct (table, key, persisted fields, field-level diff) and
//! [`Persist`] binds its values into statements for one backend. The derive writes both; the
//! rest of the crate only ever talks to entities through them.

use std::fmt::Debug;
use std::hash::Hash;

pub use crate::fields::{FieldInfo, FieldSet, MAX_FIELDS};

use diesel::backend::Backend;
use diesel::query_builder::AstPass;
use diesel::row::{NamedRow, Row};
use diesel::serialize::ToSql;
use diesel::sql_types::HasSqlType;
use diesel::QueryResult;

/// A struct whose changes a [`UnitOfWork`](crate::UnitOfWork) tracks. Implemented by
/// `#[derive(Tracked)]`; implementing it by hand is possible but not needed.
///
/// ```
/// # use uow::prelude::*;
/// diesel::table! { notes (id) { id -> Integer, body -> Text } }
///
/// #[derive(Tracked, Clone, Debug, PartialEq)]
/// #[tracked(table = notes)]
/// struct Note { #[tracked(generated)] id: i32, body: String }
///
/// assert_eq!(Note::TABLE_NAME, "notes");
/// assert_eq!(Note::FIELDS.iter().map(|f| f.column).collect::<Vec<_>>(), ["id", "body"]);
/// let before = Note { id: 1, body: "a".into() };
/// let mut after = before.clone();
/// after.body.push('b');
/// assert_eq!(after.changed_fields(&before).iter().collect::<Vec<_>>(), vec![1]);
/// ```
pub trait Entity: Clone + Send + Sync + 'static {
    /// The Diesel table (`table!`) the entity is stored in.
    type Table: diesel::Table + Default;
    /// The primary key: the key field's type, or a tuple for a composite key.
    type Key: Clone + Eq + Hash + Debug + Send + Sync + 'static;
    /// The values the database assigns on insert, as a tuple in field order (`()` if none).
    type Generated: Clone + Send + 'static;

    /// The struct's name, for messages.
    const ENTITY_NAME: &'static str;
    /// The table's name as written in `#[tracked(table = ...)]`, for messages and reports.
    const TABLE_NAME: &'static str;
    /// Persisted fields in declaration order; indexes into this slice are field indexes.
    const FIELDS: &'static [FieldInfo];

    /// Whether the key is assigned by the database (a `#[tracked(generated)]` key field). The
    /// derive states it; the default works it out from [`FIELDS`](Self::FIELDS) at compile time.
    const KEY_GENERATED: bool = key_generated(Self::FIELDS);

    /// Whether any field is assigned by the database on insert (stated by the derive, like
    /// [`KEY_GENERATED`](Self::KEY_GENERATED)).
    const HAS_GENERATED: bool = any_generated(Self::FIELDS);

    /// The entity's primary key.
    fn key(&self) -> Self::Key;

    /// Writes the `Debug` form of persisted field `field` (for plan previews and messages).
    fn fmt_field(&self, field: usize, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result;

    /// The persisted fields whose value differs between `self` and `baseline`.
    fn changed_fields(&self, baseline: &Self) -> FieldSet;

    /// Copies the generated fields' values out of the entity.
    fn generated(&self) -> Self::Generated;

    /// Writes values the database generated into the entity.
    fn set_generated(&mut self, values: Self::Generated);

    /// Advances the `#[tracked(version)]` field by one (no-op without one).
    fn bump_version(&mut self) {}

    /// Whether the `#[tracked(version)]` fields of `self` and `other` differ (`false` without
    /// one). The version is not part of [`changed_fields`](Self::changed_fields): the unit of
    /// work checks it and advances it, and a version changed by hand is refused.
    fn version_differs(&self, other: &Self) -> bool {
        let _ = other;
        false
    }

    /// Index of the `#[tracked(version)]` field in [`FIELDS`](Self::FIELDS), if any.
    fn version_field() -> Option<usize> {
        Self::FIELDS.iter().position(|f| f.version)
    }

    /// The key the entity will have once `generated` is written into it.
    fn key_with_generated(&self, generated: &Self::Generated) -> Self::Key {
        let mut copy = self.clone_columns();
        copy.set_generated(generated.clone());
        copy.key()
    }

    /// Calls `visitor` once per `#[tracked(belongs_to(...))]` relation, with its index.
    fn visit_relations<V: RelationVisitor<Self>>(visitor: &mut V) {
        let _ = visitor;
    }

    /// Whether the struct has `#[tracked(children)]` collections: it is the root (or an inner
    /// node) of an aggregate whose members the unit of work writes with it.
    const HAS_CHILDREN: bool = false;

    /// The names of the `#[tracked(children)]` fields, in declaration order; the `field`
    /// numbers the children visitors get index into it.
    const CHILDREN: &'static [&'static str] = &[];

    /// How many levels of `#[tracked(children)]` hang below this type (0 without children).
    /// The derive evaluates it where the struct is declared, so that aggregates that contain
    /// one another fail to compile. Not public API.
    #[doc(hidden)]
    const AGGREGATE_DEPTH: usize = 0;

    /// A copy of the entity without its child collections (empty): what a unit of work keeps
    /// of an aggregate's root as its persisted values, and of a member, whose own members the
    /// tree holds. A plain `clone` for an entity without `#[tracked(children)]` fields.
    fn clone_columns(&self) -> Self {
        self.clone()
    }

    /// Calls `visitor` once per `#[tracked(children)]` field, with its elements.
    fn visit_children<V: ChildrenVisitor<Self>>(&self, visitor: &mut V) {
        let _ = visitor;
    }

    /// Calls `visitor` once per `#[tracked(children)]` field, with the collection to change.
    fn visit_children_mut<V: ChildrenVisitorMut<Self>>(&mut self, visitor: &mut V) {
        let _ = visitor;
    }

    /// Moves every persisted field of `fresh` into `self`, keeping `self`'s skipped fields
    /// and child collections (used by `refresh`, and to write what a commit stored into the
    /// members of an aggregate).
    fn assign_persisted(&mut self, fresh: Self);

    /// For an entity whose only generated field is an integer key: the generated values for
    /// the auto-increment id `id` (MySQL's `LAST_INSERT_ID`). `None` otherwise.
    fn generated_from_insert_id(id: u64) -> Option<Self::Generated>;
}

/// Two values of one field, compared for change detection by generated code (see
/// [`SameBits`] and [`SameByEq`]). Not public API.
#[doc(hidden)]
pub struct FieldPair<'a, T: ?Sized>(pub &'a T, pub &'a T);

/// Change detection for floating-point fields: two values are the same when their bits are.
///
/// `PartialEq` says `NaN != NaN`, which would leave a field holding NaN dirty forever; bits
/// make NaN equal to the same NaN, and make `0.0 -> -0.0` a change (the database stores the
/// sign). Generated code calls `(&FieldPair(a, b)).same()`: for `f32`, `f64` and `Option` of
/// them this trait's method is found first (no auto-reference needed), for every other type
/// [`SameByEq`]'s.
#[doc(hidden)]
pub trait SameBits {
    /// Whether the two values are the same.
    fn same(&self) -> bool;
}

/// Change detection for every other field type: `PartialEq`.
#[doc(hidden)]
pub trait SameByEq {
    /// Whether the two values are the same.
    fn same(&self) -> bool;
}

impl<T: PartialEq + ?Sized> SameByEq for &FieldPair<'_, T> {
    #[inline]
    fn same(&self) -> bool {
        self.0 == self.1
    }
}

macro_rules! same_bits {
    ($($ty:ty),*) => {$(
        impl SameBits for FieldPair<'_, $ty> {
            #[inline]
            fn same(&self) -> bool {
                self.0.to_bits() == self.1.to_bits()
            }
        }

        impl SameBits for FieldPair<'_, Option<$ty>> {
            #[inline]
            fn same(&self) -> bool {
                match (self.0, self.1) {
                    (Some(a), Some(b)) => a.to_bits() == b.to_bits(),
                    (None, None) => true,
                    _ => false,
                }
            }
        }
    )*};
}
same_bits!(f32, f64);

const fn key_generated(fields: &[FieldInfo]) -> bool {
    let mut i = 0;
    while i < fields.len() {
        if fields[i].key && fields[i].generated {
            return true;
        }
        i += 1;
    }
    false
}

const fn any_generated(fields: &[FieldInfo]) -> bool {
    let mut i = 0;
    while i < fields.len() {
        if fields[i].generated {
            return true;
        }
        i += 1;
    }
    false
}

/// Binding an [`Entity`]'s values into statements for the Diesel backend `DB`.
///
/// The derive implements it for every backend whose types fit the fields (through Diesel's
/// `ToSql`/`FromSql` bounds), so generated code never depends on cargo features.
pub trait Persist<DB: Backend>: Entity {
    /// Writes the (quoted, possibly schema-qualified) table name.
    fn walk_table(out: AstPass<'_, '_, DB>) -> QueryResult<()>;

    /// Binds the current value of persisted field `field` as a parameter.
    fn walk_field<'b>(&'b self, field: usize, out: AstPass<'_, 'b, DB>) -> QueryResult<()>;

    /// Binds part `part` of a key value (0 for a single-column key).
    fn walk_key<'b>(key: &'b Self::Key, part: usize, out: AstPass<'_, 'b, DB>) -> QueryResult<()>;

    /// Reads the generated fields, by column name, from a row returned by an INSERT or SELECT.
    fn read_generated<'a>(
        row: &impl NamedRow<'a, DB>,
    ) -> diesel::deserialize::Result<Self::Generated>;

    /// Calls `visitor` once per persisted field, in declaration order, with the field's SQL
    /// type and a function reading it: what a backend needs to bind one field of many rows
    /// as one value (PostgreSQL's arrays). Generated code implements it; the default visits
    /// nothing.
    #[doc(hidden)]
    fn visit_columns<V: ColumnVisitor<Self, DB>>(visitor: &mut V) {
        let _ = visitor;
    }

    /// Calls `visitor` once per `#[tracked(children)]` field, with the element type: the unit
    /// of work prepares the stores of an aggregate's member types when it first meets its root.
    fn visit_child_types<V: ChildTypeVisitor<DB>>(visitor: &mut V) {
        let _ = visitor;
    }
}

/// Receives the persisted fields of an entity with their types (see
/// [`Persist::visit_columns`]). Not public API.
#[doc(hidden)]
pub trait ColumnVisitor<T: ?Sized, DB: Backend> {
    /// Field number `field`, of SQL type `ST` and Rust type `F`, read by `get`.
    fn visit<ST: 'static, F>(&mut self, field: usize, get: fn(&T) -> &F)
    where
        DB: HasSqlType<ST>,
        F: ToSql<ST, DB>;
}

/// One `#[tracked(belongs_to(Parent, foreign_key = field))]` relation of `Child` (or
/// `foreign_key = (a, b)` for a parent with a composite key), generated by the derive as a
/// private type.
pub trait Relation<Child: Entity>: 'static {
    /// The entity the foreign key points at.
    type Parent: Entity;
    /// Indexes of the foreign key fields in `Child::FIELDS`, in the order of the parent's key.
    const FIELDS: &'static [usize];
    /// The parent key the child points at (`None` for a null foreign key).
    fn parent_key(child: &Child) -> Option<<Self::Parent as Entity>::Key>;
    /// Points the child at the parent with key `key`.
    fn set_parent_key(child: &mut Child, key: <Self::Parent as Entity>::Key);
}

/// Receives the `#[tracked(children)]` collections of an entity (see
/// [`Entity::visit_children`]).
pub trait ChildrenVisitor<Parent: ?Sized> {
    /// Children field number `field` (an index into [`Entity::CHILDREN`]) and its elements.
    fn visit<Child: Entity + ChildOf<Parent>>(&mut self, field: usize, children: &[Child]);
}

/// Receives the `#[tracked(children)]` collections of an entity for changing them (see
/// [`Entity::visit_children_mut`]).
pub trait ChildrenVisitorMut<Parent: ?Sized> {
    /// Children field number `field` (an index into [`Entity::CHILDREN`]) and its collection.
    fn visit<Child: Entity>(&mut self, field: usize, children: &mut Vec<Child>);
}

/// Receives the entity types of the `#[tracked(children)]` collections of an entity, with
/// what the backend `DB` needs of them (see [`Persist::visit_child_types`]).
pub trait ChildTypeVisitor<DB: Backend> {
    /// One child entity type.
    fn visit<Child: Persist<DB>>(&mut self);
}

/// A type that `belongs_to` `Parent`: what an element of a `#[tracked(children)]` collection
/// must be. The derive implements it once per parent type named in `belongs_to`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a child of `{Parent}`: it is not a `#[derive(Tracked)]` struct with a `belongs_to({Parent}, ..)` relation",
    label = "the elements of a `#[tracked(children)]` collection",
    note = "the unit of work fills each child's foreign key from its parent: derive `Tracked` for \
            `{Self}` and add `#[tracked(belongs_to({Parent}, foreign_key = ..))]` to it"
)]
pub trait ChildOf<Parent: ?Sized>: Entity {}

/// `Self` as an element of a `#[tracked(children)]` collection of `Parent`: the derive names
/// element types as `<Element as IsChildOf<Parent>>::Child` everywhere, so that an element
/// that is not a child of `Parent` is one error (the others see an unknown type and stay
/// quiet). Not public API.
#[doc(hidden)]
pub trait IsChildOf<Parent: ?Sized> {
    /// `Self`, known to be a `ChildOf<Parent>`.
    type Child: ChildOf<Parent>;
}

#[diagnostic::do_not_recommend]
impl<C: ChildOf<P>, P: ?Sized> IsChildOf<P> for C {
    type Child = C;
}

/// Receives the relations of an entity type, typed (see [`Entity::visit_relations`]).
pub trait RelationVisitor<Child: Entity> {
    /// Called for relation number `index` (declaration order).
    fn visit<R: Relation<Child>>(&mut self, index: usize);
}

/// A foreign key field's type: the parent's key `K`, or `Option<K>` for a nullable one.
#[diagnostic::on_unimplemented(
    message = "foreign key of type `{Self}` does not match the parent's key type `{K}`",
    label = "this field is the foreign key of a `belongs_to` relation",
    note = "a foreign key has the parent's key type, or `Option` of it when the column is nullable; \
            for a parent with a composite key, name one field per part of it: \
            `foreign_key = (book_id, edition_no)`"
)]
pub trait ForeignKey<K> {
    /// The key pointed at, if any.
    fn get(&self) -> Option<K>;
    /// Points at `key`.
    fn set(&mut self, key: K);
}

impl<K: Clone> ForeignKey<K> for K {
    fn get(&self) -> Option<K> {
        Some(self.clone())
    }
    fn set(&mut self, key: K) {
        *self = key;
    }
}

impl<K: Clone> ForeignKey<K> for Option<K> {
    fn get(&self) -> Option<K> {
        self.clone()
    }
    fn set(&mut self, key: K) {
        *self = Some(key);
    }
}

/// Building an entity from a database row, for [`UnitOfWork::load`](crate::UnitOfWork::load)
/// and [`refresh`](crate::UnitOfWork::refresh).
///
/// The derive implements it where every `#[tracked(skip)]` field is `Default` (a row has no
/// value for it).
pub trait Load<DB: Backend>: Persist<DB> {
    /// Reads every persisted field by position, column `i` holding field `i` of
    /// [`Entity::FIELDS`] (the order of uow's own SELECTs, so no column is looked up by name);
    /// skipped fields get their default.
    fn from_row<'a>(row: &impl Row<'a, DB>) -> diesel::deserialize::Result<Self>;

    /// Calls `visitor` once per `#[tracked(children)]` field, with the element type and the
    /// function reaching the collection: loading an aggregate reads each level for every
    /// parent of that level at once.
    fn visit_child_loads<V: ChildLoadVisitor<Self, DB>>(visitor: &mut V) {
        let _ = visitor;
    }
}

/// Reads the value at `position` of `row`, for [`Load::from_row`]; an error names `column`.
#[doc(hidden)]
#[inline]
pub fn read_field<'a, ST, T, DB, R>(
    row: &R,
    position: usize,
    column: &'static str,
) -> diesel::deserialize::Result<T>
where
    DB: Backend,
    R: Row<'a, DB>,
    T: diesel::deserialize::FromSql<ST, DB>,
{
    row.get_value::<ST, T, usize>(position)
        .map_err(|error| format!("column `{column}`: {error}").into())
}

/// Receives the `#[tracked(children)]` fields of an entity for loading them (see
/// [`Load::visit_child_loads`]).
pub trait ChildLoadVisitor<Parent, DB: Backend> {
    /// Children field number `field`, reached in a parent by `children`.
    fn visit<Child: Load<DB>>(
        &mut self,
        field: usize,
        children: fn(&mut Parent) -> &mut Vec<Child>,
    );
}

/// A field type that can be both written to and read from a column of SQL type `ST` on the
/// backend `DB`: the one bound the derive puts on each field of `impl Persist<DB>`, so that a
/// field that does not fit is one message, not one per Diesel trait. Not public API.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "field type `{Self}` cannot be written to and read from a column of SQL type `{ST}` on `{DB}`",
    label = "this field's type does not match its column in `table!` on this backend",
    note = "use a Rust type Diesel converts to and from `{ST}` (a `Nullable<_>` column takes `Option<_>`), or correct the column's type in `table!`"
)]
pub trait FitsColumn<ST, DB: Backend>:
    ToSql<ST, DB> + diesel::deserialize::FromSql<ST, DB>
{
}

#[diagnostic::do_not_recommend]
impl<T, ST, DB> FitsColumn<ST, DB> for T
where
    DB: Backend,
    T: ToSql<ST, DB> + diesel::deserialize::FromSql<ST, DB>,
{
}

/// A field type that can hold what a column of nullability `IsNull` holds: anything for a
/// `NOT NULL` column, only an `Option` for a `Nullable` one (checked at the derive, before
/// any backend is known). Not public API.
#[doc(hidden)]
pub trait NullFits<IsNull> {}

impl<T> NullFits<diesel::sql_types::is_nullable::NotNull> for T {}

impl<T> NullFits<diesel::sql_types::is_nullable::IsNullable> for Option<T> {}

/// The value a `#[tracked(skip)]` field gets when an entity is read from a row (`load`,
/// `refresh`): its `Default`, required where the struct is declared. (Generic over the backend
/// because a field whose type names a parameter of the struct is bounded in `impl Load<DB>`.)
#[diagnostic::on_unimplemented(
    message = "`{Self}` is a `#[tracked(skip)]` field without `Default`, so the entity cannot be read from a row",
    label = "a skipped field gets its `Default` when the entity is loaded",
    note = "implement or derive `Default` for the field's type, or keep the value outside the entity"
)]
pub trait SkippedDefault<DB>: Sized {
    /// The default value.
    fn skipped_default() -> Self;
}

impl<T: Default, DB> SkippedDefault<DB> for T {
    fn skipped_default() -> Self {
        T::default()
    }
}

/// Integer types usable as a `#[tracked(version)]` field.
#[diagnostic::on_unimplemented(
    message = "`#[tracked(version)]` field of type `{Self}` is not an integer",
    label = "a version must be an integer the unit of work can advance",
    note = "use i16, i32, i64, u16, u32 or u64 for the version column"
)]
pub trait VersionField {
    /// The next version (wrapping at the type's maximum).
    fn next(&self) -> Self;
}

macro_rules! version_field {
    ($($ty:ty),*) => {$(
        impl VersionField for $ty {
            #[inline]
            fn next(&self) -> Self {
                self.wrapping_add(1)
            }
        }
    )*};
}
version_field!(i16, i32, i64, u16, u32, u64);

/// Integer types a database can generate as keys (SERIAL, AUTOINCREMENT, AUTO_INCREMENT).
///
/// A `#[tracked(generated)]` key must be one of these: PostgreSQL takes the keys from the key
/// column's sequence, and MySQL reads them with `LAST_INSERT_ID()`, both integers.
#[diagnostic::on_unimplemented(
    message = "`#[tracked(generated)]` key `{Self}` is not an integer type",
    label = "a generated key must be an integer the database assigns from a sequence or AUTO_INCREMENT",
    note = "use i16, i32, i64, u16, u32 or u64 (SERIAL, AUTOINCREMENT, AUTO_INCREMENT columns); assign other keys, such as UUIDs, in Rust and drop `generated`"
)]
pub trait AutoIncrementKey: Copy {
    /// The value from an auto-increment counter, if it fits.
    fn from_insert_id(id: u64) -> Option<Self>;
}

macro_rules! auto_increment_key {
    ($($ty:ty),*) => {$(
        impl AutoIncrementKey for $ty {
            #[inline]
            fn from_insert_id(id: u64) -> Option<Self> {
                <$ty>::try_from(id).ok()
            }
        }
    )*};
}
auto_increment_key!(i16, i32, i64, u16, u32, u64);

// The explicit `&` is what picks the trait (as in generated code), not a needless borrow.
#[cfg(test)]
#[allow(clippy::needless_borrow)]
mod tests {
    use super::{FieldPair, SameBits, SameByEq};

    #[test]
    fn floats_are_the_same_when_their_bits_are() {
        assert!((&FieldPair(&f64::NAN, &f64::NAN)).same());
        assert!(
            !(&FieldPair(&0.0f64, &-0.0f64)).same(),
            "the sign is stored: a change"
        );
        assert!((&FieldPair(&1.5f32, &1.5f32)).same());
        assert!((&FieldPair(&Some(f64::NAN), &Some(f64::NAN))).same());
        assert!(!(&FieldPair(&Some(f32::NAN), &None)).same());
        assert!((&FieldPair(&None::<f64>, &None)).same());
    }

    #[test]
    fn other_types_are_compared_with_partial_eq() {
        assert!((&FieldPair(&"a".to_string(), &"a".to_string())).same());
        assert!(!(&FieldPair(&1i32, &2i32)).same());
        // A type holding floats inside is compared by its own `PartialEq`.
        assert!(!(&FieldPair(&vec![f64::NAN], &vec![f64::NAN])).same());
    }
}
