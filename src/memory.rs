//! Memory given back after a peak. The C library's allocator keeps the pages of freed memory for reuse: after a
//! relist (every watch lists its objects again while the old cache still stands) or after thousands of nodes were
//! released, a process would hold its peak for good. Asking the allocator to return its free pages to the kernel
//! now and then keeps the resident memory near what is in use.

use std::time::{Duration, Instant};

/// The least time between two trims.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Gives memory back after the loop's passes, at most once per [`INTERVAL`], and once more when a pass came too
/// soon after the last trim (the caller waits until [`Trimmer::due`] and calls [`Trimmer::after_pass`] again).
#[derive(Debug, Default)]
pub struct Trimmer {
    last: Option<Instant>,
    due: Option<Instant>,
}

impl Trimmer {
    /// After a pass: trims now, or marks a trim due when the last one is too recent.
    pub fn after_pass(&mut self, now: Instant) {
        match self.last {
            Some(last) if now < last + INTERVAL => self.due = Some(last + INTERVAL),
            _ => {
                give_back();
                self.last = Some(now);
                self.due = None;
            }
        }
    }

    /// When a trim that was put off is due.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }
}

/// Returns free heap pages to the kernel now.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; 0 keeps no extra padding.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_soon_after_a_trim_puts_the_next_off_until_the_interval_is_over() {
        let mut trimmer = Trimmer::default();
        let start = Instant::now();
        trimmer.after_pass(start);
        assert_eq!(trimmer.due(), None);
        trimmer.after_pass(start + Duration::from_secs(1));
        assert_eq!(trimmer.due(), Some(start + INTERVAL));
        trimmer.after_pass(start + INTERVAL);
        assert_eq!(trimmer.due(), None);
    }

    #[test]
    fn freed_memory_goes_back_to_the_kernel() {
        let resident = || -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").expect("readable");
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
                .expect("VmRSS")
        };
        // Many small blocks, as a cache of objects is, and one in 64 still in use afterwards: the free pages lie
        // between used ones, where the allocator's own trimming of its heap's top never reaches.
        let mut blocks: Vec<Vec<u8>> = (0..200_000).map(|i| vec![(i % 251) as u8; 512]).collect();
        let full = resident();
        let kept: Vec<Vec<u8>> = blocks.iter_mut().step_by(64).map(std::mem::take).collect();
        drop(blocks);
        let freed = resident();
        give_back();
        let after = resident();
        assert_eq!(kept.len(), 3125);
        assert!(
            after + 50_000 < freed.min(full),
            "{full} KiB in use, {freed} KiB after freeing, {after} KiB after giving back"
        );
    }
}
