//! The process's allocator: mimalloc 2, holding freed memory for a second before it goes back
//! to the kernel, in pages of 4 KiB.
//!
//! A training step allocates and frees hundreds of MiB of activations and gradients on every
//! micro-batch. glibc's malloc maps large blocks fresh and unmaps them when freed, so each
//! step's outputs land on new pages that the kernel faults in and clears: over a million page
//! faults in four bench-d512 updates. mimalloc reuses the same memory, provided that:
//! - it waits longer than its default 10 ms before purging freed memory (handing it back), as
//!   a micro-batch's frees and the next one's allocations are further apart than that;
//! - it does not ask for transparent huge pages (the `no_thp` feature): purging part of a huge
//!   page and touching it again makes the kernel clear whole 2 MiB pages, which cost more
//!   kernel time than glibc's faults.
//!
//! Measured against glibc, mimalloc 3, jemalloc and tcmalloc in docs/PERFORMANCE.md ("Memory
//! reused, and attention's probabilities recomputed").

use libmimalloc_sys::{mi_option_set, mi_option_t};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 2's `mimalloc.h`, which libmimalloc-sys does not name.
const PURGE_DELAY: mi_option_t = 15;

/// How long freed memory stays mapped before mimalloc purges it: mimalloc 2's default is
/// 10 ms, shorter than the gap between a step's frees and the next micro-batch's allocations;
/// mimalloc 3's is this. An idle process still gives its memory back.
const PURGE_DELAY_MS: std::ffi::c_long = 1000;

/// Sets the purge delay, unless `MIMALLOC_PURGE_DELAY` gives one. mimalloc reads its options
/// from the environment when the process loads, so a default set in `main` would come too late.
pub fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: a plain option setter; any value is valid.
        unsafe { mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libmimalloc_sys::mi_option_get;

    #[test]
    fn freed_memory_is_kept_for_a_second_unless_the_environment_says_otherwise() {
        keep_freed_memory();
        // SAFETY: a plain option getter.
        assert_eq!(unsafe { mi_option_get(PURGE_DELAY) }, PURGE_DELAY_MS);
        // A process started with MIMALLOC_PURGE_DELAY: mimalloc reads it into the option this
        // module sets, which shows that the option is the purge delay, and it is left as given.
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "allocator::tests::report_purge_delay"])
            .args(["--ignored", "--nocapture", "--test-threads=1"])
            .env("MIMALLOC_PURGE_DELAY", "1234")
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&child.stdout);
        assert!(out.contains("purge delay 1234 ms"), "{out}");
    }

    #[test]
    #[ignore = "run by the test above, in a process of its own"]
    fn report_purge_delay() {
        keep_freed_memory();
        // SAFETY: a plain option getter.
        println!("purge delay {} ms", unsafe { mi_option_get(PURGE_DELAY) });
    }
}
