//! What the touched entities of a store need written, checked before anything is sent.

use crate::entity::Entity;
use crate::error::{Error, Result};
use crate::plan::{Change, ChangeKind};
use crate::tracking::Lifecycle;

use super::{key_text, Store};

/// A field's value printed with its `Debug` form.
pub(crate) struct FieldValue<'a, T>(pub &'a T, pub usize);

impl<T: Entity> std::fmt::Debug for FieldValue<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt_field(self.1, f)
    }
}

impl<T: Entity> Store<T> {
    /// Lists what every touched entity needs written as `Change`s of store `store`, checking
    /// first what must not be written: a new entity whose key collides with a held one
    /// (`DuplicateKey`), a persisted entity whose key changed (`KeyChanged`) or whose version
    /// was changed by hand (`VersionChanged`: trusting it could make the version go back).
    pub fn changes(&self, store: usize, out: &mut Vec<Change>) -> Result<()> {
        self.check_moves(&self.moved_new_keys())?;
        for (slot, tracked) in self.touched() {
            let kind = match tracked.lifecycle() {
                Lifecycle::New => ChangeKind::Insert,
                Lifecycle::Persisted | Lifecycle::Removed => {
                    let persisted = tracked.persisted_value();
                    let (before, after) = (persisted.key(), tracked.value().key());
                    if before != after {
                        return Err(Error::KeyChanged {
                            entity: T::ENTITY_NAME,
                            before: key_text(&before),
                            after: key_text(&after),
                        });
                    }
                    if tracked.value().version_differs(persisted) {
                        let version = T::version_field().unwrap_or_default();
                        return Err(Error::VersionChanged {
                            entity: T::ENTITY_NAME,
                            key: key_text(&before),
                            persisted: format!("{:?}", FieldValue(persisted, version)),
                            current: format!("{:?}", FieldValue(tracked.value(), version)),
                        });
                    }
                    if tracked.lifecycle() == Lifecycle::Removed {
                        ChangeKind::Delete
                    } else {
                        let mut fields = tracked.changed_fields();
                        if let Some(version) = T::version_field() {
                            if !fields.is_empty() || tracked.version_forced() {
                                fields.insert(version);
                            }
                        }
                        ChangeKind::Update(fields)
                    }
                }
            };
            out.push(Change { store, slot, kind });
        }
        Ok(())
    }
}
