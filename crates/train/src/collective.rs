//! The few collective operations data-parallel training needs (docs/MODEL.md section 14), as a
//! trait the trainer and the step call. The engine behind it is an existing one: Open MPI
//! through the `mpi` crate, in `minicpm` built with `--features mpi` (crates/cli/src/mpi_world.rs).
//! One process training alone has no collective at all.
//!
//! Every rank runs the same program on the same data, so the helpers here also keep the ranks in
//! step: a failure on any rank is agreed on by all of them ([`agree`]) instead of leaving the
//! others waiting in a collective that never completes.

use crate::error::TrainError;
use std::hash::{Hash, Hasher};
use std::ops::Range;

/// A group of processes that train one run together.
pub trait Collective {
    /// This process's rank, 0 to `size() - 1`. Rank 0 writes the run's files.
    fn rank(&self) -> usize;
    /// How many processes train the run.
    fn size(&self) -> usize;
    /// Replaces `buf` by its element-wise sum over the ranks; every rank receives the same sums.
    fn all_reduce_sum(&self, buf: &mut [f32]);
    /// Every rank's `mine`, in rank order; `mine` has the same length on every rank.
    fn all_gather(&self, mine: &[u8]) -> Vec<Vec<u8>>;
    /// Replaces `buf` on every rank by `root`'s `buf` (the same length on every rank).
    fn broadcast(&self, buf: &mut [f32], root: usize);
}

/// Whether this process writes the run's files: rank 0, or a process training alone.
pub fn leads(world: Option<&dyn Collective>) -> bool {
    world.is_none_or(|w| w.rank() == 0)
}

/// The micro-batches of an update (indices `0..micro_batches`) that `rank` computes: a
/// contiguous block, so that rank order is micro-batch order.
pub fn share(micro_batches: usize, rank: usize, size: usize) -> Range<usize> {
    let per = micro_batches / size;
    rank * per..(rank + 1) * per
}

/// Checks that `world`'s ranks can share an update of `micro_batches` micro-batches equally.
pub fn can_share(world: &dyn Collective, micro_batches: u64) -> Result<(), TrainError> {
    let size = world.size() as u64;
    match micro_batches % size {
        0 => Ok(()),
        _ => Err(TrainError::Distribution(format!(
            "{size} ranks cannot share the {micro_batches} micro-batches of an update \
             (train.batch_tokens / (micro_batch x seq_len)): run a number of ranks that divides \
             {micro_batches}"
        ))),
    }
}

/// Messages longer than this are cut when they are gathered from every rank.
const MESSAGE_BYTES: usize = 480;

/// Makes one outcome of a step every rank took: `Ok` on all ranks when it succeeded on all,
/// else the same [`TrainError::OnRank`] on all, naming the lowest rank that failed and its error
/// (rank 0 says it; the others stay silent).
pub fn agree<T, E: std::fmt::Display>(
    world: &dyn Collective,
    mine: Result<T, E>,
) -> Result<T, TrainError> {
    let mut message = vec![0u8; MESSAGE_BYTES + 1];
    if let Err(e) = &mine {
        let text = e.to_string();
        let mut end = text.len().min(MESSAGE_BYTES);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        message[0] = 1;
        message[1..1 + end].copy_from_slice(&text.as_bytes()[..end]);
    }
    let all = world.all_gather(&message);
    let failed = all.iter().position(|m| m[0] == 1);
    let describe = |rank: usize| {
        let text = &all[rank][1..];
        let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
        TrainError::OnRank {
            rank,
            size: world.size(),
            message: String::from_utf8_lossy(&text[..end]).into_owned(),
        }
    };
    match failed {
        Some(rank) => Err(describe(rank)),
        // Nothing failed anywhere, this rank included.
        None => mine.map_err(|_| describe(world.rank())),
    }
}

/// Whether any rank says yes (a stop asked of one rank stops them all after the same update).
pub fn any(world: &dyn Collective, mine: bool) -> bool {
    world.all_gather(&[mine as u8]).iter().any(|m| m[0] == 1)
}

/// Checks that every rank has the same `what` (its fingerprint `mine`); the error names the
/// first rank that differs from rank 0.
pub fn same_everywhere(world: &dyn Collective, what: &str, mine: u64) -> Result<(), TrainError> {
    let all = world.all_gather(&mine.to_le_bytes());
    match all.iter().position(|b| b[..] != all[0][..]) {
        None => Ok(()),
        Some(rank) => Err(TrainError::OnRank {
            rank,
            size: world.size(),
            message: format!("runs a different {what} than rank 0"),
        }),
    }
}

/// A fingerprint of `bytes` that is the same in every process of one build.
pub fn fingerprint(parts: &[&[u8]]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for p in parts {
        p.hash(&mut h);
    }
    h.finish()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::{Arc, Barrier, Mutex};

    /// Ranks as threads of one process, for testing what the ranks do together: each rank's
    /// contribution is posted, all wait, each reads every contribution.
    pub(crate) struct Threads {
        rank: usize,
        size: usize,
        posted: Arc<Mutex<Vec<Vec<u8>>>>,
        barrier: Arc<Barrier>,
    }

    impl Threads {
        pub(crate) fn world(size: usize) -> Vec<Threads> {
            let posted = Arc::new(Mutex::new(vec![vec![]; size]));
            let barrier = Arc::new(Barrier::new(size));
            (0..size)
                .map(|rank| Threads {
                    rank,
                    size,
                    posted: posted.clone(),
                    barrier: barrier.clone(),
                })
                .collect()
        }

        fn exchange(&self, mine: &[u8]) -> Vec<Vec<u8>> {
            self.posted.lock().unwrap()[self.rank] = mine.to_vec();
            self.barrier.wait();
            let all = self.posted.lock().unwrap().clone();
            self.barrier.wait();
            all
        }
    }

    impl Collective for Threads {
        fn rank(&self) -> usize {
            self.rank
        }
        fn size(&self) -> usize {
            self.size
        }
        fn all_reduce_sum(&self, buf: &mut [f32]) {
            let bytes: Vec<u8> = buf.iter().flat_map(|x| x.to_le_bytes()).collect();
            let all = self.exchange(&bytes);
            for (i, x) in buf.iter_mut().enumerate() {
                // Rank order, as one process adds its micro-batches.
                let mut sum = 0f32;
                for (r, b) in all.iter().enumerate() {
                    let v = f32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap());
                    sum = if r == 0 { v } else { sum + v };
                }
                *x = sum;
            }
        }
        fn all_gather(&self, mine: &[u8]) -> Vec<Vec<u8>> {
            self.exchange(mine)
        }
        fn broadcast(&self, buf: &mut [f32], root: usize) {
            let bytes: Vec<u8> = buf.iter().flat_map(|x| x.to_le_bytes()).collect();
            let all = self.exchange(&bytes);
            for (x, b) in buf.iter_mut().zip(all[root].chunks_exact(4)) {
                *x = f32::from_le_bytes(b.try_into().unwrap());
            }
        }
    }

    /// Runs `f` on every rank of a world of `size` threads; the results in rank order.
    pub(crate) fn on_ranks<T: Send>(size: usize, f: impl Fn(&Threads) -> T + Sync) -> Vec<T> {
        let world = Threads::world(size);
        std::thread::scope(|s| {
            let handles: Vec<_> = world.iter().map(|w| s.spawn(|| f(w))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    #[test]
    fn the_shares_of_the_ranks_cover_the_update_in_order() {
        assert_eq!(share(8, 0, 2), 0..4);
        assert_eq!(share(8, 1, 2), 4..8);
        assert_eq!(share(4, 3, 4), 3..4);
        let all: Vec<usize> = (0..4).flat_map(|r| share(8, r, 4)).collect();
        assert_eq!(all, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn a_failure_on_one_rank_is_the_same_error_on_all() {
        let outcomes = on_ranks(3, |w| {
            let mine: Result<(), TrainError> = match w.rank() {
                1 => Err(TrainError::NoConfig),
                _ => Ok(()),
            };
            agree(w, mine).map_err(|e| e.to_string())
        });
        for o in &outcomes {
            assert_eq!(
                o.as_ref().unwrap_err(),
                "rank 1 of 3: a new run needs --config"
            );
        }
        let fine = on_ranks(2, |w| agree(w, Ok::<_, TrainError>(w.rank())).unwrap());
        assert_eq!(fine, [0, 1]);
    }

    #[test]
    fn a_difference_names_the_first_rank_that_differs() {
        let outcomes = on_ranks(3, |w| {
            let print = if w.rank() == 2 { b"b" } else { b"a" };
            same_everywhere(w, "config", fingerprint(&[print])).map_err(|e| e.to_string())
        });
        for o in outcomes {
            assert_eq!(
                o.unwrap_err(),
                "rank 2 of 3: runs a different config than rank 0"
            );
        }
        assert!(on_ranks(2, |w| any(w, w.rank() == 1)).iter().all(|&a| a));
        assert!(on_ranks(2, |w| !any(w, false)).iter().all(|&a| a));
    }
}
