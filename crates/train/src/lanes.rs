//! Micro-batches at once: on the CPU, an update's micro-batches can run side by side, each on
//! its own share of the threads (a lane), instead of one after another with every kernel split
//! over all the threads.
//!
//! Why: at MiniCPM's small shapes a product split over two cores runs well below the speed of
//! two products each on one core (the threads meet at every product, and share the caches), and
//! the step is mostly products (docs/PERFORMANCE.md, "Micro-batches at once"). Two lanes of one
//! thread each keep both cores on whole products of their own.
//!
//! Each lane runs in its own rayon pool, so every kernel it calls (the `gemm` crate with
//! `Parallelism::Rayon(0)`, the fused kernels' parallel loops, burn-flex's) sees only the
//! lane's threads. Lanes past the first train a fork of the model: the same parameters under new
//! autodiff nodes, so each lane's pass has a graph of its own and burn's per-graph lock does not
//! serialise them. The step adds the lanes' gradients in micro-batch order, so an update's
//! gradient and loss are bit-identical whatever the number of lanes.

use rayon::{ThreadPool, ThreadPoolBuilder};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// How many lanes to run and the pools they run in: at most `lanes`, at most one per thread of
/// the caller's pool and at most `work` (the micro-batches of a round). `None` when one lane
/// would do, so the caller runs its micro-batches on its own pool as before.
pub fn pools(lanes: usize, work: usize) -> Option<Vec<Arc<ThreadPool>>> {
    let threads = rayon::current_num_threads();
    let lanes = lanes.min(threads).min(work);
    if lanes < 2 {
        return None;
    }
    // Threads left over by an uneven split go to the first lanes.
    let sizes: Vec<usize> = (0..lanes)
        .map(|i| threads / lanes + usize::from(i < threads % lanes))
        .collect();
    static POOLS: OnceLock<Mutex<HashMap<Vec<usize>, Vec<Arc<ThreadPool>>>>> = OnceLock::new();
    let mut cache = POOLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let pools = cache.entry(sizes.clone()).or_insert_with(|| {
        sizes
            .iter()
            .enumerate()
            .map(|(lane, &n)| {
                Arc::new(
                    ThreadPoolBuilder::new()
                        .num_threads(n)
                        .thread_name(move |i| format!("lane-{lane}-{i}"))
                        .build()
                        .expect("the OS can start a lane's threads"),
                )
            })
            .collect()
    });
    Some(pools.clone())
}

/// Runs `work[i]` in `pools[i]`, all at once, and returns the results in order. A panic in a
/// lane resumes on the caller.
pub fn run_each<T: Sync, R: Send>(
    pools: &[Arc<ThreadPool>],
    work: &[T],
    f: impl Fn(usize, &T) -> R + Sync,
) -> Vec<R> {
    assert_eq!(pools.len(), work.len(), "one pool per lane");
    let f = &f;
    std::thread::scope(|s| {
        let others: Vec<_> = (1..work.len())
            .map(|i| {
                let pool = &pools[i];
                let item = &work[i];
                s.spawn(move || pool.install(|| f(i, item)))
            })
            .collect();
        let first = pools[0].install(|| f(0, &work[0]));
        std::iter::once(first)
            .chain(others.into_iter().map(|h| match h.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_split_the_threads_and_run_in_their_own_pools() {
        let outer = ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        outer.install(|| {
            assert!(pools(1, 4).is_none(), "one lane asked");
            assert!(pools(4, 1).is_none(), "one micro-batch");
            let p = pools(2, 4).expect("two lanes");
            assert_eq!(
                p.iter()
                    .map(|p| p.current_num_threads())
                    .collect::<Vec<_>>(),
                [2, 1]
            );
            assert_eq!(pools(8, 8).unwrap().len(), 3, "no more lanes than threads");
            let seen = run_each(&p, &[10, 20], |i, x| (i, x + rayon::current_num_threads()));
            assert_eq!(seen, [(0, 12), (1, 21)]);
        });
    }
}
