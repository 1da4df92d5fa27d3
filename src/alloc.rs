//! An allocator for programs that compress with baler: the system's, except that blocks of
//! 2 MiB and more are mapped on their own, aligned to 2 MiB and advised onto transparent huge
//! pages. The `baler` command line and the Python module install it (`#[global_allocator]`);
//! a program using the library may do the same:
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOCATOR: baler::alloc::HugePages = baler::alloc::HugePages;
//! ```
//!
//! A compression worker's first chunk writes its scratch for the first time (the codes, the
//! reconstruction, the level-wise tries: five times the chunk), and the reader fills fresh
//! chunk buffers: on the small files users compress one by one, most chunks are a worker's
//! first. In 4 KiB pages that is a page fault every 4 KiB (about 12,000 for the 8 MiB telescope
//! image); in 2 MiB pages, one per 2 MiB. Linux gives huge pages to anonymous memory only where
//! asked (`madvise`, the usual setting) and only on aligned 2 MiB ranges, which the system
//! allocator's blocks rarely cover whole. Where huge pages are off, the advice is ignored and
//! the blocks are plain mappings. A freed block is kept mapped (up to eight, 64 MiB in all)
//! for the next block of its length, whose pages are then not faulted and zeroed again: a
//! program compressing arrays one after another (a Python loop, `baler bench`) maps the same
//! few sizes at every call. Nothing else changes: smaller blocks, and every block on other
//! systems, go to the system allocator.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// The allocator (see the [module docs](self)).
#[derive(Debug, Clone, Copy, Default)]
pub struct HugePages;

#[cfg(target_os = "linux")]
mod huge {
    /// A transparent huge page.
    pub const PAGE: usize = 2 << 20;

    /// The length mapped for a block of `size` bytes: whole huge pages.
    pub fn mapped(size: usize) -> usize {
        size.div_ceil(PAGE) * PAGE
    }

    /// Maps `len` bytes (whole huge pages) at a huge-page boundary and advises huge pages for
    /// them; null where the system has no memory to map.
    pub fn map(len: usize) -> *mut u8 {
        // Over-map by a page, then unmap what lies outside the aligned range.
        let Some(over) = len.checked_add(PAGE) else {
            return std::ptr::null_mut();
        };
        // SAFETY: an anonymous private mapping at an address the kernel chooses.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                over,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return std::ptr::null_mut();
        }
        let base = p as usize;
        let start = base.next_multiple_of(PAGE);
        let (head, tail) = (start - base, base + over - (start + len));
        // SAFETY: both ranges lie in the mapping just made and outside the block returned.
        unsafe {
            if head > 0 {
                libc::munmap(p, head);
            }
            if tail > 0 {
                libc::munmap((start + len) as *mut libc::c_void, tail);
            }
            // Advice only: where huge pages are off or refused the mapping stays as it is.
            libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
        start as *mut u8
    }

    /// Moves a block [`map`] returned for `len` bytes to `new_len` bytes (whole huge pages),
    /// its contents kept; null where the system has no memory to map (the block is then as
    /// it was).
    ///
    /// # Safety
    /// `p` and `len` must be those of a block from [`map`] or `remap`, not used after unless
    /// this returns null.
    pub unsafe fn remap(p: *mut u8, len: usize, new_len: usize) -> *mut u8 {
        // SAFETY: the caller's contract; the kernel moves the pages, their advice with them.
        let q = unsafe { libc::mremap(p.cast(), len, new_len, libc::MREMAP_MAYMOVE) };
        if q == libc::MAP_FAILED {
            return std::ptr::null_mut();
        }
        q.cast()
    }

    /// Unmaps a block [`map`] returned for `len` bytes.
    ///
    /// # Safety
    /// `p` and `len` must be those of a block from [`map`], not used after.
    pub unsafe fn unmap(p: *mut u8, len: usize) {
        // SAFETY: the caller's contract.
        unsafe {
            libc::munmap(p.cast(), len);
        }
    }

    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Blocks freed and kept mapped for the next block of the same length, each slot a
    /// block's address (4 KiB-aligned) with its length in huge pages in the low 12 bits, 0
    /// when empty. A program that compresses arrays one after another maps and unmaps the same
    /// few sizes at every call (a worker's scratch, a chunk's buffers), and the kernel zeroes a
    /// fresh mapping's pages at first touch: a tenth of a 5 MB table's decoding. Lock-free, so
    /// a process forked while another thread frees a block has nothing left locked.
    static KEPT: [AtomicUsize; KEEP] = [const { AtomicUsize::new(0) }; KEEP];
    /// Bytes of the blocks kept.
    static KEPT_BYTES: AtomicUsize = AtomicUsize::new(0);
    /// At most this many blocks kept…
    const KEEP: usize = 8;
    /// …of at most this many bytes in all.
    pub const KEEP_BYTES: usize = 64 << 20;

    /// A kept block of `len` bytes (whole huge pages), if there is one; null otherwise.
    pub fn take(len: usize) -> *mut u8 {
        let pages = len / PAGE;
        for slot in &KEPT {
            let v = slot.load(Ordering::Acquire);
            if v != 0
                && v & 0xfff == pages
                && slot
                    .compare_exchange(v, 0, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                KEPT_BYTES.fetch_sub(len, Ordering::Relaxed);
                return (v & !0xfff) as *mut u8;
            }
        }
        std::ptr::null_mut()
    }

    /// Keeps the block `p` of `len` bytes (whole huge pages) for [`take`], if there is room;
    /// returns whether it did (else the caller unmaps it).
    pub fn keep(p: *mut u8, len: usize) -> bool {
        let pages = len / PAGE;
        if pages == 0 || pages > 0xfff || !(p as usize).is_multiple_of(4096) {
            return false;
        }
        if KEPT_BYTES.fetch_add(len, Ordering::Relaxed) + len > KEEP_BYTES {
            KEPT_BYTES.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        let v = p as usize | pages;
        for slot in &KEPT {
            if slot
                .compare_exchange(0, v, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return true;
            }
        }
        KEPT_BYTES.fetch_sub(len, Ordering::Relaxed);
        false
    }
}

/// Whether a block of this layout is mapped on its own: 2 MiB and more, aligned to at most a
/// 4 KiB page (a moved mapping keeps only that).
#[cfg(target_os = "linux")]
fn own(layout: Layout) -> bool {
    layout.size() >= huge::PAGE && layout.align() <= 4096
}

#[cfg(not(target_os = "linux"))]
fn own(_: Layout) -> bool {
    false
}

// SAFETY: small blocks are the system allocator's; large ones are whole mappings of at least
// their size, page-aligned (so for any `align() <= 4096`), unmapped once on `dealloc` with the
// length they were mapped with (a function of the size, which `dealloc` and `realloc` are
// given as it was allocated), or kept whole for one later block of that same length (taken
// from the slot atomically, so by one caller); `alloc_zeroed` takes a kept one too and fills
// it with zeros (cheaper than the kernel's faults, each of which zeroes a fresh 2 MiB page:
// a new array decoded into at every call, `decompress_to_vec`), or maps a fresh one, which
// reads as zeros.
unsafe impl GlobalAlloc for HugePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        #[cfg(target_os = "linux")]
        if own(layout) {
            let len = huge::mapped(layout.size());
            let kept = huge::take(len);
            return if kept.is_null() { huge::map(len) } else { kept };
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        #[cfg(target_os = "linux")]
        if own(layout) {
            let len = huge::mapped(layout.size());
            let kept = huge::take(len);
            if kept.is_null() {
                // Fresh anonymous memory reads as zeros.
                return huge::map(len);
            }
            // SAFETY: a kept block of `len` ≥ `layout.size()` bytes, now the caller's.
            unsafe { kept.write_bytes(0, layout.size()) };
            return kept;
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        #[cfg(target_os = "linux")]
        if own(layout) {
            let len = huge::mapped(layout.size());
            if !huge::keep(ptr, len) {
                // SAFETY: a block `alloc` mapped for this size, not kept.
                unsafe { huge::unmap(ptr, len) };
            }
            return;
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract: `new_size` is non-zero and, rounded up to the
        // alignment, does not overflow `isize`.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !own(layout) && !own(new) {
            // SAFETY: the caller's contract, passed on.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        #[cfg(target_os = "linux")]
        if own(layout) && own(new) {
            let (len, new_len) = (huge::mapped(layout.size()), huge::mapped(new_size));
            if len == new_len {
                return ptr;
            }
            // SAFETY: a block `alloc` mapped (or this moved) for `layout.size()`.
            return unsafe { huge::remap(ptr, len, new_len) };
        }
        // Across the threshold: a new block and a copy.
        // SAFETY: `new` is a valid layout (above); the copy covers what both blocks hold.
        unsafe {
            let q = self.alloc(new);
            if !q.is_null() {
                std::ptr::copy_nonoverlapping(ptr, q, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            q
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Allocates `size` bytes through [`HugePages`], checks the block, fills it with a pattern.
    fn filled(size: usize, zeroed: bool) -> (*mut u8, Layout) {
        let layout = Layout::from_size_align(size, 64).unwrap();
        // SAFETY: a non-zero size.
        let p = unsafe {
            if zeroed {
                HugePages.alloc_zeroed(layout)
            } else {
                HugePages.alloc(layout)
            }
        };
        assert!(
            !p.is_null() && (p as usize).is_multiple_of(64),
            "{size} bytes at {p:?}"
        );
        // SAFETY: the block holds `size` bytes.
        let block = unsafe { std::slice::from_raw_parts_mut(p, size) };
        if zeroed {
            assert!(block.iter().all(|&b| b == 0), "{size} zeroed bytes");
        }
        for (i, b) in block.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        (p, layout)
    }

    #[test]
    fn blocks_keep_their_contents_across_the_threshold_and_back() {
        let mb = 1 << 20;
        for (from, to) in [
            (100, 3 * mb),
            (3 * mb, 100),
            (mb, 2 * mb),
            (2 * mb, 2 * mb + 1),
            (2 * mb + 1, 4 * mb),
            (5 * mb, 9 * mb),
            (9 * mb, 5 * mb),
            (4 * mb, 4 * mb - 1),
            (6 * mb, 2 * mb - 1),
        ] {
            for zeroed in [false, true] {
                let (p, layout) = filled(from, zeroed);
                // SAFETY: `p` is a live block of `layout`; `to` is non-zero.
                let q = unsafe { HugePages.realloc(p, layout, to) };
                assert!(!q.is_null() && (q as usize).is_multiple_of(64));
                // SAFETY: the moved block holds `to` bytes, the first `from.min(to)` kept.
                let kept = unsafe { std::slice::from_raw_parts(q, from.min(to)) };
                assert!(
                    kept.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8),
                    "{from} -> {to} bytes"
                );
                // SAFETY: the block is live, of `to` bytes at the same alignment.
                unsafe { HugePages.dealloc(q, Layout::from_size_align(to, 64).unwrap()) };
            }
        }
    }

    #[test]
    fn freed_blocks_are_kept_for_the_next_of_their_length_and_no_more() {
        let mb = 1 << 20;
        // A block freed, then one of the same size: a live block either way (kept or fresh),
        // and a zeroed one all zeros even where a kept block holds old contents.
        for _ in 0..3 {
            let (p, layout) = filled(26 * mb - 5, false);
            // SAFETY: a live block of `layout`.
            unsafe { HugePages.dealloc(p, layout) };
            let (q, layout) = filled(26 * mb - 5, false);
            // SAFETY: a live block of `layout`.
            unsafe { HugePages.dealloc(q, layout) };
            let (z, layout) = filled(26 * mb - 5, true);
            // SAFETY: a live block of `layout`.
            unsafe { HugePages.dealloc(z, layout) };
        }
        #[cfg(target_os = "linux")]
        {
            // Kept up to the byte limit: mappings of 13 huge pages (26 MiB) until refused,
            // every one taken back once, of its length only.
            let len = 13 * huge::PAGE;
            let mut kept = Vec::new();
            loop {
                let p = huge::map(len);
                assert!(!p.is_null());
                if !huge::keep(p, len) {
                    // SAFETY: a fresh mapping of `len` bytes, not kept.
                    unsafe { huge::unmap(p, len) };
                    break;
                }
                kept.push(p);
                assert!(kept.len() <= huge::KEEP_BYTES / len, "kept past the limit");
            }
            for _ in 0..kept.len() {
                let p = huge::take(len);
                assert!(!p.is_null(), "a kept block of the length");
                // SAFETY: a block of `len` bytes taken from the kept ones.
                unsafe { huge::unmap(p, len) };
            }
        }
    }

    #[test]
    fn large_blocks_are_whole_huge_pages_on_linux() {
        let (p, layout) = filled(3 << 20, false);
        if cfg!(target_os = "linux") {
            assert_eq!(
                p as usize % (2 << 20),
                0,
                "a fresh large block starts a huge page"
            );
        }
        // SAFETY: a live block of `layout`.
        unsafe { HugePages.dealloc(p, layout) };
    }
}
