//! Every entity of a store for plain Rust mutation in one pass (`EntitiesMut::iter_mut`):
//! the checks `mutate` makes per handle (unit, bounds, generation) have nothing to check when
//! the store hands out its own slots, so a loop over all of them pays only the tracking.

use std::slice::IterMut;

use crate::entity::Entity;
use crate::tracking::Tracked;

use super::{Slot, Store};

impl<T: Entity> Store<T> {
    /// Every held entity but the members of aggregates (as `mutate` refuses them), each
    /// tracked as `mutate` tracks it when the iterator yields it: on the touched list, its
    /// persisted values kept.
    ///
    /// Inside a save point every held slot is saved and listed first, here: the iterator
    /// borrows the slots and the touched list only, so it cannot reach the save point's log.
    /// Outside save points (the usual case) nothing is done up front.
    pub fn values_mut(&mut self) -> ValuesMut<'_, T> {
        if !self.levels.is_empty() {
            self.touch_all();
        }
        let total = self.slots.len();
        ValuesMut {
            slots: self.slots.iter_mut(),
            total,
            touched: &mut self.touched,
        }
    }

    #[inline(never)]
    fn touch_all(&mut self) {
        for slot in 0..self.slots.len() {
            if self.slots[slot].tracked.is_some() {
                // Slots are indexed by u32 (`insert` hands out `len() as u32`).
                self.touch(slot as u32);
            }
        }
    }
}

/// The iterator of [`Store::values_mut`].
pub(crate) struct ValuesMut<'s, T: Entity> {
    slots: IterMut<'s, Slot<T>>,
    /// How many slots there are: the index of a slot is found from how many are left, out of
    /// line, rather than counted in the loop.
    total: usize,
    touched: &'s mut Vec<u32>,
}

impl<'s, T: Entity> Iterator for ValuesMut<'s, T> {
    type Item = &'s mut T;

    /// The loop body a `for` over every entity runs: in the steady state (each entity
    /// borrowed since the last commit) an occupancy test and the tests of `mutate`'s fast path
    /// but the handle's, falling through; empty slots and first borrows are out of line.
    #[inline]
    fn next(&mut self) -> Option<&'s mut T> {
        loop {
            let s = self.slots.next()?;
            if let Some(tracked) = s.tracked.as_mut() {
                if tracked.is_member() {
                    continue; // changed through its root's tree only
                }
                if !(s.listed && tracked.ready_for_change()) {
                    // Slots are indexed by u32 (`insert` hands out `len() as u32`).
                    let slot = (self.total - self.slots.len() - 1) as u32;
                    start_tracking(&mut s.listed, tracked, self.touched, slot);
                }
                return Some(tracked.change());
            }
            // Past the empty slots (entities removed and committed): counted out of line, so
            // the iterator stays in registers.
            let empty = empty_slots(self.slots.as_slice());
            if let Some(last_empty) = empty.checked_sub(1) {
                self.slots.nth(last_empty);
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, self.slots.size_hint().1)
    }
}

/// How many slots at the start of `slots` are empty.
#[cold]
#[inline(never)]
fn empty_slots<T: Entity>(slots: &[Slot<T>]) -> usize {
    slots.iter().take_while(|s| s.tracked.is_none()).count()
}

/// The first borrow of `s` since the last commit: what `touch` does outside save points (inside
/// one, `values_mut` did it for every slot), and the persisted values kept. Out of line, so the
/// steady state's loop stays short.
#[cold]
#[inline(never)]
fn start_tracking<T: Entity>(
    listed: &mut bool,
    tracked: &mut Tracked<T>,
    touched: &mut Vec<u32>,
    slot: u32,
) {
    if !*listed {
        *listed = true;
        touched.push(slot);
    }
    tracked.change();
}
