//! Matching a collection's persisted members to its elements, by key, cheaply when the
//! collection kept its order.

use std::collections::HashMap;

use crate::fast_hash::KeyHash;

use crate::tracking::Member;

/// The persisted members of one collection, matched to its elements by key: first at the
/// element's own position (a collection that kept its order), else through a map of the
/// members not matched yet, built the first time a position does not match.
pub(super) struct Matching<K> {
    members: Vec<Option<(K, Member)>>,
    by_key: Option<HashMap<K, usize, KeyHash>>,
}

impl<K: std::hash::Hash + Eq + Clone> Matching<K> {
    pub(super) fn new(members: Vec<(K, Member)>) -> Self {
        Matching {
            members: members.into_iter().map(Some).collect(),
            by_key: None,
        }
    }

    /// The member for the element at `position` with key `key`, taken.
    // Inlined into the walk of each collection of a tree written (one call per element).
    #[inline]
    pub(super) fn take(&mut self, position: usize, key: &K) -> Option<Member> {
        if let Some(slot) = self.members.get_mut(position) {
            if slot.as_ref().is_some_and(|(k, _)| k == key) {
                return slot.take().map(|(_, member)| member);
            }
        }
        let members = &self.members;
        let by_key = self.by_key.get_or_insert_with(|| {
            let unmatched = members.iter().enumerate();
            unmatched
                .filter_map(|(i, m)| m.as_ref().map(|(k, _)| (k.clone(), i)))
                .collect()
        });
        let index = by_key.remove(key)?;
        self.members
            .get_mut(index)?
            .take()
            .map(|(_, member)| member)
    }

    /// The members no element took, in their order.
    pub(super) fn rest(self) -> impl Iterator<Item = Member> {
        self.members.into_iter().flatten().map(|(_, member)| member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(slot: u32) -> Member {
        Member {
            field: 0,
            store: 0,
            slot,
            generation: 0,
        }
    }

    #[test]
    fn members_are_matched_by_position_then_by_key_and_the_rest_kept_in_order() {
        let mut matching = Matching::new(vec![(10, member(0)), (20, member(1)), (30, member(2))]);
        assert_eq!(
            matching.take(0, &10).map(|m| m.slot),
            Some(0),
            "same position"
        );
        assert_eq!(
            matching.take(1, &30).map(|m| m.slot),
            Some(2),
            "moved: by key"
        );
        assert_eq!(matching.take(2, &40), None, "a new element");
        assert_eq!(matching.take(3, &10), None, "taken already");
        let rest: Vec<u32> = matching.rest().map(|m| m.slot).collect();
        assert_eq!(rest, [1], "20 was removed from the collection");
    }
}
