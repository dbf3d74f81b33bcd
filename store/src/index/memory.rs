//! How the graph's arrays meet the memory system: software prefetch of the rows a
//! walk will read next, transparent huge pages for large arrays, and the visited
//! marks reused across queries. Kept apart from the graph logic because each is a
//! measured, platform-specific tweak with its own safety argument.

use std::cell::RefCell;

/// Cache lines asked for per prefetch: small vectors whole, large ones their
/// start (the hardware prefetcher follows a sequential run).
const PREFETCH_LINES: usize = 4;

/// Hints the CPU to load the cache lines `data` spans, at most [`PREFETCH_LINES`]
/// of them (a no-op for `None` or where there is no prefetch instruction). Counted
/// from the line the data starts in, so an unaligned row's last line is not missed.
#[inline(always)]
pub(super) fn prefetch<T>(data: Option<&[T]>) {
    #[cfg(target_arch = "x86_64")]
    if let Some(data) = data {
        let start = data.as_ptr() as usize;
        let first_line = start & !63;
        let end = (start + std::mem::size_of_val(data)).min(first_line + PREFETCH_LINES * 64);
        for line in (first_line..end).step_by(64) {
            // SAFETY: prefetching is a hint and never faults, whatever the address.
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                _mm_prefetch::<_MM_HINT_T0>(line as *const i8);
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// Buffers smaller than this keep ordinary pages.
const HUGE_PAGES_FROM: usize = 4 << 20;

/// Asks Linux to back a large buffer with transparent huge pages (where they are
/// enabled in `madvise` mode, the default of many distributions). A search touches
/// a few hundred vectors spread over the whole graph; with 4 KiB pages nearly every
/// one of them also misses the TLB, with 2 MiB pages few do. Advice only: failure
/// changes nothing, and memory already touched is collapsed later by the kernel.
pub(super) fn advise_huge_pages<T>(buffer: &Vec<T>) {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let bytes = buffer.capacity() * std::mem::size_of::<T>();
        if bytes < HUGE_PAGES_FROM {
            return;
        }
        let start = buffer.as_ptr() as usize;
        let aligned = start.next_multiple_of(PAGE);
        let len = (start + bytes).saturating_sub(aligned) / PAGE * PAGE;
        // SAFETY: the range lies inside the buffer's allocation (rounded inwards to
        // whole pages); MADV_HUGEPAGE changes how pages are backed, never contents.
        unsafe {
            libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buffer;
}

/// Marks visited nodes with a per-query generation, so clearing is free. Marks
/// are `u16` so the array of a large graph stays in the L2 cache (half the bytes
/// of `u32`); the generation wraps every 65,535 searches, when it is cleared.
pub(super) struct Visited {
    marks: Vec<u16>,
    generation: u16,
}

impl Visited {
    #[inline]
    pub(super) fn reset(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.marks.iter_mut().for_each(|m| *m = 0);
            self.generation = 1;
        }
    }

    /// True the first time a node is seen in this query. Inlined into the walk,
    /// which lives in another module (and may be compiled in another unit).
    #[inline(always)]
    pub(super) fn insert(&mut self, node: u32) -> bool {
        let m = &mut self.marks[node as usize];
        if *m == self.generation {
            false
        } else {
            *m = self.generation;
            true
        }
    }
}

thread_local! {
    pub(super) static VISITED: RefCell<Visited> = const { RefCell::new(Visited { marks: Vec::new(), generation: 0 }) };
}
