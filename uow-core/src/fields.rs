//! The persisted fields of an entity: [`FieldInfo`] describes one, [`FieldSet`] is a set of
//! them by index that never allocates.

use std::fmt::Debug;

/// Description of one persisted field, in declaration order.
///
/// Fields marked `#[tracked(skip)]` have no `FieldInfo`: they are neither written nor tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldInfo {
    /// The Rust field name.
    pub name: &'static str,
    /// The SQL column name, taken from the Diesel `table!` column.
    pub column: &'static str,
    /// Part of the primary key.
    pub key: bool,
    /// Assigned by the database on insert (left out of the INSERT, read back after it).
    pub generated: bool,
    /// The `#[tracked(version)]` field: checked by UPDATE and DELETE, advanced on UPDATE.
    pub version: bool,
}

/// The most persisted fields (columns) one entity may have.
///
/// Field sets are fixed-size bit sets so that diffing an entity never allocates; 128 matches
/// Diesel's largest tables (`128-column-tables`).
pub const MAX_FIELDS: usize = 128;

/// A set of persisted fields, by index into [`Entity::FIELDS`](crate::Entity::FIELDS).
///
/// The set does not know the entity, so it accepts any index below [`MAX_FIELDS`]; a
/// [`Changes`](crate::Changes) built from indexes past `FIELDS` lists no column for them and
/// refuses to be written (a `QueryBuilderError`) rather than send a partial UPDATE.
///
/// ```
/// use uow_core::FieldSet;
/// let mut set = FieldSet::EMPTY;
/// set.insert(2);
/// set.insert(70);
/// assert!(set.contains(2) && set.contains(70) && !set.contains(3));
/// assert_eq!(set.iter().collect::<Vec<_>>(), vec![2, 70]);
/// assert_eq!(set.len(), 2);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FieldSet([u64; 2]);

impl FieldSet {
    /// The set with no field.
    pub const EMPTY: FieldSet = FieldSet([0, 0]);

    /// Adds field `index` (below [`MAX_FIELDS`]; larger indexes are ignored, and the derive
    /// refuses structs with more fields).
    #[inline]
    pub fn insert(&mut self, index: usize) {
        if index < MAX_FIELDS {
            self.0[index / 64] |= 1 << (index % 64);
        }
    }

    /// Removes field `index`.
    #[inline]
    pub fn remove(&mut self, index: usize) {
        if index < MAX_FIELDS {
            self.0[index / 64] &= !(1 << (index % 64));
        }
    }

    /// Whether field `index` is in the set.
    #[inline]
    pub fn contains(&self, index: usize) -> bool {
        index < MAX_FIELDS && self.0[index / 64] & (1 << (index % 64)) != 0
    }

    /// Whether the set is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0 == [0, 0]
    }

    /// How many fields are in the set.
    #[inline]
    pub fn len(&self) -> usize {
        (self.0[0].count_ones() + self.0[1].count_ones()) as usize
    }

    /// The fields in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..MAX_FIELDS).filter(move |i| self.contains(*i))
    }

    /// Every field of `fields` a caller may change (not the key, not the version).
    pub fn all_updatable(fields: &[FieldInfo]) -> FieldSet {
        let mut set = FieldSet::EMPTY;
        for (index, field) in fields.iter().enumerate() {
            if !field.key && !field.version {
                set.insert(index);
            }
        }
        set
    }
}

impl Debug for FieldSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}
