//! The relation through which an aggregate's element points at its parent, and the parent
//! keys its elements hold: what syncing members and loading trees (`loading.rs`) both need.

use std::any::TypeId;

use crate::entity::{Entity, Relation, RelationVisitor};
use crate::error::{Error, Result};
use crate::store::RelationMeta;

/// The relation through which `C`, in children field `field` of `P`, points at `P`: its index
/// and foreign key fields.
pub(crate) fn child_relation<P: Entity, C: Entity>(
    field: usize,
) -> Result<(usize, &'static [usize])> {
    let relations = RelationMeta::of::<C>();
    let mut to_parent = relations
        .iter()
        .enumerate()
        .filter(|(_, r)| r.parent == TypeId::of::<P>());
    match (to_parent.next(), to_parent.next()) {
        (Some((index, relation)), None) => Ok((index, relation.fields)),
        (None, _) => Err(Error::NoRelation {
            child: C::ENTITY_NAME,
            parent: P::ENTITY_NAME,
        }),
        (Some(_), Some(_)) => Err(Error::AmbiguousChildren {
            parent: P::ENTITY_NAME,
            field: P::CHILDREN.get(field).copied().unwrap_or("children"),
            child: C::ENTITY_NAME,
        }),
    }
}

/// The key of the `P` each of `children` points at through relation `relation`.
pub(crate) fn parent_keys<P: Entity, C: Entity>(
    children: &[C],
    relation: usize,
) -> Vec<Option<P::Key>> {
    struct Keys<'a, P: Entity, C> {
        children: &'a [C],
        relation: usize,
        keys: Vec<Option<P::Key>>,
    }
    impl<P: Entity, C: Entity> RelationVisitor<C> for Keys<'_, P, C> {
        fn visit<R: Relation<C>>(&mut self, index: usize) {
            if index != self.relation {
                return;
            }
            // `R::Parent` is `P` (the relation was chosen by its parent type).
            self.keys = self
                .children
                .iter()
                .map(|c| {
                    let key = R::parent_key(c)?;
                    (&key as &dyn std::any::Any)
                        .downcast_ref::<P::Key>()
                        .cloned()
                })
                .collect();
        }
    }
    let mut keys = Keys::<P, C> {
        children,
        relation,
        keys: Vec::new(),
    };
    C::visit_relations(&mut keys);
    keys.keys
}
