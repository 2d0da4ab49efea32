//! Every entity of a store for plain Rust mutation in one pass (`EntitiesMut::iter_mut`):
//! the checks `mutate` makes per handle (unit, bounds, generation) have nothing to check when
//! the store hands out its own slots, so a loop over all of them pays only the tracking.

use std::iter::Enumerate;
use std::slice::IterMut;

use crate::entity::Entity;
use crate::tracking::Tracked;

use super::{Slot, Store};

impl<T: Entity> Store<T> {
    /// Every held entity, each tracked as `mutate` tracks it when the iterator yields it: on
    /// the touched list, its persisted values kept.
    ///
    /// Inside a save point every held slot is saved and listed first, here: the iterator
    /// borrows the slots and the touched list only, so it cannot reach the save point's log.
    /// Outside save points (the usual case) nothing is done up front.
    pub fn values_mut(&mut self) -> ValuesMut<'_, T> {
        if !self.levels.is_empty() {
            self.touch_all();
        }
        ValuesMut {
            slots: self.slots.iter_mut().enumerate(),
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
    slots: Enumerate<IterMut<'s, Slot<T>>>,
    touched: &'s mut Vec<u32>,
}

impl<'s, T: Entity> Iterator for ValuesMut<'s, T> {
    type Item = &'s mut T;

    /// The loop body a `for` over every entity runs: in the steady state (each entity
    /// borrowed since the last commit) one occupancy test and one flag test, falling through.
    #[inline]
    fn next(&mut self) -> Option<&'s mut T> {
        for (slot, s) in self.slots.by_ref() {
            let ready = match &s.tracked {
                Some(tracked) => s.listed && tracked.ready_for_change(),
                None => continue,
            };
            if !ready {
                start_tracking(s, self.touched, slot);
            }
            return s.tracked.as_mut().map(Tracked::change);
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, self.slots.size_hint().1)
    }
}

/// The first borrow of `s` since the last commit: what `touch` does outside save points (inside
/// one, `values_mut` did it for every slot), and the persisted values kept. Out of line, so the
/// steady state's loop stays short.
#[cold]
#[inline(never)]
fn start_tracking<T: Entity>(s: &mut Slot<T>, touched: &mut Vec<u32>, slot: usize) {
    if !s.listed {
        s.listed = true;
        // Slots are indexed by u32 (`insert` hands out `len() as u32`).
        touched.push(slot as u32);
    }
    if let Some(tracked) = s.tracked.as_mut() {
        tracked.change();
    }
}
