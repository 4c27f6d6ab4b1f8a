//! A global allocator that zeroizes every block before it is freed or moved.
//!
//! Frame buffers are zeroized explicitly, but libraries (image processing, the Y4M header
//! parser) make short-lived allocations of their own from derived data. With this allocator no
//! freed heap block of the counter keeps what it held.

use std::alloc::{GlobalAlloc, Layout};

/// Wraps an allocator; zeroizes on `dealloc` and before `realloc` moves a block.
pub struct ZeroingAlloc<A>(pub A);

fn wipe(ptr: *mut u8, len: usize) {
    // SAFETY: the caller owns `len` bytes at `ptr` until it frees them.
    let s = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
    zeroize::Zeroize::zeroize(s);
}

// SAFETY: delegates to the inner allocator; only writes inside blocks it is about to free.
unsafe impl<A: GlobalAlloc> GlobalAlloc for ZeroingAlloc<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { self.0.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        wipe(ptr, layout.size());
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Allocate, copy, wipe the old block: a realloc in place could leave a tail behind.
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        let new = unsafe { self.0.alloc(new_layout) };
        if !new.is_null() {
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            wipe(ptr, layout.size());
            unsafe { self.0.dealloc(ptr, layout) };
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Records, at each free, whether the block was all zero.
    struct Checking {
        freed_dirty: AtomicUsize,
        freed: AtomicUsize,
    }

    unsafe impl GlobalAlloc for Checking {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            unsafe { System.alloc(l) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            let s = unsafe { std::slice::from_raw_parts(p, l.size()) };
            if s.iter().any(|&b| b != 0) {
                self.freed_dirty.fetch_add(1, Ordering::SeqCst);
            }
            self.freed.fetch_add(1, Ordering::SeqCst);
            unsafe { System.dealloc(p, l) }
        }
    }

    #[test]
    fn every_freed_or_moved_block_is_zero_when_it_is_freed() {
        let a = ZeroingAlloc(Checking {
            freed_dirty: AtomicUsize::new(0),
            freed: AtomicUsize::new(0),
        });
        let l = Layout::from_size_align(4096, 8).unwrap();
        unsafe {
            let p = a.alloc(l);
            std::ptr::write_bytes(p, 0xAB, 4096);
            let q = a.realloc(p, l, 8192);
            assert_eq!(*q.add(4095), 0xAB, "contents move with the block");
            std::ptr::write_bytes(q, 0xCD, 8192);
            a.dealloc(q, Layout::from_size_align(8192, 8).unwrap());
        }
        assert_eq!(a.0.freed.load(Ordering::SeqCst), 2);
        assert_eq!(a.0.freed_dirty.load(Ordering::SeqCst), 0);
    }
}
