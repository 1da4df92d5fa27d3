//! A slice that several threads write at once, each at places no other thread touches.
//!
//! The interpolation's walk ([`crate::predict::Interp`]) visits a block's points pass by pass
//! (a level and an axis), and the points of one pass read none of each other: each reads only
//! points given their values in earlier passes. So a pass splits into parts that run at the
//! same time on different cores, each writing its own points and reading only points no part
//! writes. Those places interleave in memory (every other point of a row, every other row),
//! so the block cannot be cut into `&mut` sub-slices; a [`Disjoint`] hands each task a copy of
//! the same pointer, and its `unsafe` accessors state what the caller must uphold.
//!
//! Slices are checked against the bounds as they are taken; single elements are checked a
//! loop at a time ([`Disjoint::check`] on the first and last place a loop touches), so a
//! mistake in the walk panics rather than reaching outside the block.
#![allow(unsafe_code)]

use std::marker::PhantomData;

/// A mutable slice shared by tasks that touch disjoint places of it (see the module).
#[derive(Debug)]
pub(crate) struct Disjoint<'a, T> {
    ptr: *mut T,
    len: usize,
    _slice: PhantomData<&'a mut [T]>,
}

impl<T> Clone for Disjoint<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Disjoint<'_, T> {}

// SAFETY: a `Disjoint` is a `&mut [T]` split among threads; sending it, or sharing it, is
// sending `T`s between threads (each accessor's contract keeps the accesses apart).
unsafe impl<T: Send> Send for Disjoint<'_, T> {}
unsafe impl<T: Send> Sync for Disjoint<'_, T> {}

impl<'a, T: Copy> Disjoint<'a, T> {
    /// Shares `slice` for as long as it is borrowed.
    pub(crate) fn new(slice: &'a mut [T]) -> Self {
        Disjoint {
            ptr: slice.as_mut_ptr(),
            len: slice.len(),
            _slice: PhantomData,
        }
    }

    /// Panics unless the elements from `lo` to `hi` (inclusive) lie in the slice: a loop
    /// checks the ends of the places it reads and writes once, then accesses each through
    /// [`get`](Self::get) and [`slot`](Self::slot).
    #[inline(always)]
    pub(crate) fn check(self, lo: usize, hi: usize) {
        if lo > hi || hi >= self.len {
            outside(lo, hi.wrapping_sub(lo).wrapping_add(1), self.len);
        }
    }

    /// The element at `i`.
    ///
    /// # Safety
    /// `i` must lie in the slice ([`check`](Self::check)), and no other thread may write
    /// element `i` while this reads it, nor hold a `&mut` to it.
    #[inline(always)]
    pub(crate) unsafe fn get(self, i: usize) -> T {
        debug_assert!(i < self.len);
        // SAFETY: in bounds, and no write races this read (the caller's contract).
        unsafe { self.ptr.add(i).read() }
    }

    /// Element `i`, to write.
    ///
    /// # Safety
    /// `i` must lie in the slice ([`check`](Self::check)), and while the reference lives no
    /// other access to element `i` may happen, on this thread or another.
    #[inline(always)]
    pub(crate) unsafe fn slot<'b>(self, i: usize) -> &'b mut T {
        debug_assert!(i < self.len);
        // SAFETY: in bounds, and the reference is the only access while it lives (the
        // caller's contract).
        unsafe { &mut *self.ptr.add(i) }
    }

    /// The `n` elements from `from`, to read.
    ///
    /// # Safety
    /// While the slice lives, no thread may write any of its elements or hold a `&mut` to one.
    #[inline(always)]
    pub(crate) unsafe fn slice<'b>(self, from: usize, n: usize) -> &'b [T] {
        if from > self.len || n > self.len - from {
            outside(from, n, self.len);
        }
        // SAFETY: in bounds (checked); nothing writes them while the slice lives (the caller's
        // contract).
        unsafe { std::slice::from_raw_parts(self.ptr.add(from), n) }
    }

    /// The `n` elements from `from`, to write.
    ///
    /// # Safety
    /// While the slice lives, no other access to any of its elements may happen, on this
    /// thread or another.
    #[inline(always)]
    pub(crate) unsafe fn slice_mut<'b>(self, from: usize, n: usize) -> &'b mut [T] {
        if from > self.len || n > self.len - from {
            outside(from, n, self.len);
        }
        // SAFETY: in bounds (checked); the slice is the only access to them while it lives
        // (the caller's contract).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(from), n) }
    }
}

/// Panics for an access to `n` elements from `from` in a slice of `len`, as indexing does (out
/// of the way of the accessors' hot loops).
#[cold]
#[inline(never)]
#[track_caller]
fn outside(from: usize, n: usize, len: usize) -> ! {
    panic!("{n} elements from {from} outside a block of {len}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threads;

    #[test]
    fn tasks_write_interleaved_places_and_read_others() {
        // Even places hold values; two tasks give each odd place the sum of its neighbours,
        // one task the first half of the odd places, the other the second.
        let mut v: Vec<u32> = (0..1001).map(|i| if i % 2 == 0 { i } else { 0 }).collect();
        let d = Disjoint::new(&mut v);
        threads::scope(|s| {
            for half in 0..2usize {
                s.spawn(move || {
                    d.check(0, 1000);
                    for i in (1..1000).step_by(2).filter(|i| (i / 500) == half) {
                        // SAFETY: in bounds (checked); odd places are written by one task
                        // each, even ones by none.
                        unsafe { *d.slot(i) = d.get(i - 1) + d.get(i + 1) };
                    }
                });
            }
        });
        for i in (1..1000).step_by(2) {
            assert_eq!(v[i], 2 * i as u32);
        }
    }

    #[test]
    #[should_panic(expected = "outside a block")]
    fn accesses_outside_panic() {
        let mut v = [0u8; 4];
        let d = Disjoint::new(&mut v);
        // SAFETY: one thread.
        let _ = unsafe { d.slice(2, 3) };
    }

    #[test]
    #[should_panic(expected = "outside a block")]
    fn loops_reaching_outside_panic() {
        let mut v = [0u8; 4];
        Disjoint::new(&mut v).check(1, 4);
    }
}
