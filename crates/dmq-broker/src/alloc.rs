//! The process allocator every binary that decodes Kafka requests must install.
//!
//! `kafka-protocol` pre-allocates arrays with the element count the request claims
//! (`Vec::with_capacity(n)`). A 22-byte frame claiming 2³¹ elements asks for hundreds of GiB; the
//! system allocator refuses, and Rust *aborts* the process on allocation failure — one malformed
//! request would kill the broker. This allocator serves very large requests with an
//! `MAP_NORESERVE` anonymous mapping instead: address space only, no commit charge, so the
//! allocation succeeds, the decoder runs out of bytes after a few elements and returns an error,
//! and the mapping is unmapped. Pages are committed only when touched, which a legitimate large
//! allocation does anyway. Everything below [`HUGE`] goes to the system allocator unchanged.
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: dmq_broker::alloc::NoReserveHuge = dmq_broker::alloc::NoReserveHuge;
//! ```

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations of at least this many bytes are reserved lazily.
pub const HUGE: usize = 1 << 30;
const PAGE: usize = 4096;

pub struct NoReserveHuge;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= PAGE
}

// SAFETY: every pointer handed out is either the system allocator's (freed by it) or a fresh
// page-aligned anonymous mapping of at least `layout.size()` bytes (unmapped with the same
// size); `is_huge` depends only on the layout, so `dealloc` always takes the matching path.
unsafe impl GlobalAlloc for NoReserveHuge {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_huge(&layout) {
            return unsafe { System.alloc(layout) };
        }
        // SAFETY: an anonymous private mapping; no file descriptor or existing memory involved.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                layout.size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            p.cast()
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // Fresh anonymous mappings are zero-filled.
            unsafe { self.alloc(layout) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            // SAFETY: `ptr` came from our mmap of `layout.size()` bytes.
            unsafe {
                libc::munmap(ptr.cast(), layout.size());
            }
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY (all branches): the caller guarantees `ptr`/`layout` describe a live block and
        // that `new_size` with `layout.align()` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static ALLOC: NoReserveHuge = NoReserveHuge;

    #[test]
    fn absurd_capacities_are_address_space_not_memory() {
        // ~200 GiB: the system allocator would refuse and the process would abort.
        let mut v: Vec<[u8; 96]> = Vec::with_capacity(1 << 31);
        v.push([1; 96]);
        assert_eq!(v.len(), 1);
        let mut grown: Vec<u8> = Vec::with_capacity(HUGE);
        grown.extend_from_slice(b"abc");
        grown.reserve(HUGE * 2);
        assert_eq!(&grown[..], b"abc");
        let mut small: Vec<u8> = Vec::with_capacity(100);
        small.resize(100, 7);
        assert_eq!(small.iter().map(|b| *b as usize).sum::<usize>(), 700);
    }
}
