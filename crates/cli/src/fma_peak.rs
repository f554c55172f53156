//! The CPU's f32 fused-multiply-add peak: every thread of the pool at once runs a loop of
//! independent FMAs that never leaves the registers, at the widest vector width the CPU has.
//! MFU against it is MFU against the hardware; MFU against the GEMM peak (gemm_peak.rs) is
//! against the library the step calls, which may itself fall short of the hardware.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// The measured peak and what produced it.
pub struct FmaPeak {
    /// FLOP/s of all threads together (an FMA counts as two FLOPs).
    pub flops: f64,
    /// The instruction set the loop ran on: `avx512f`, `avx2+fma`, `neon` or `scalar`.
    pub isa: &'static str,
    pub threads: usize,
}

/// Independent accumulators per thread: more than an FMA's latency times the FMA ports (4 x 2 on
/// current x86 cores), so the loop is bound by throughput, not by the dependency chains.
const CHAINS: usize = 12;
/// Loop trips per timed window: about a millisecond at a few GHz.
const TRIPS: u64 = 1 << 18;

/// Best FLOP/s over about `budget`, each thread timing its own windows; the threads' best rates
/// are summed (they run on separate cores, so their windows overlap).
pub fn measure(budget: Duration) -> FmaPeak {
    let kernel = Kernel::detect();
    let rates = rayon::broadcast(|_| {
        let start = Instant::now();
        let mut best = 0.0f64;
        while start.elapsed() < budget || best == 0.0 {
            let t = Instant::now();
            black_box(kernel.run(black_box(TRIPS)));
            let seconds = t.elapsed().as_secs_f64().max(1e-12);
            best = best.max(kernel.flops_per_trip() * TRIPS as f64 / seconds);
        }
        best
    });
    FmaPeak {
        flops: rates.iter().sum(),
        isa: kernel.name(),
        threads: rates.len(),
    }
}

#[derive(Clone, Copy)]
enum Kernel {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "aarch64")]
    Neon,
    #[allow(dead_code)] // the fallback on CPUs without a vector FMA
    Scalar,
}

impl Kernel {
    fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                return Kernel::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Kernel::Avx2;
            }
        }
        #[cfg(target_arch = "aarch64")]
        return Kernel::Neon;
        #[allow(unreachable_code)]
        Kernel::Scalar
    }

    fn name(self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => "avx512f",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => "avx2+fma",
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => "neon",
            Kernel::Scalar => "scalar",
        }
    }

    /// FLOPs of one trip of the loop: every chain does one multiply-add on every lane.
    fn flops_per_trip(self) -> f64 {
        let lanes = match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => 16,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => 8,
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => 4,
            Kernel::Scalar => 1,
        };
        (2 * CHAINS * lanes) as f64
    }

    fn run(self, trips: u64) -> f32 {
        match self {
            // SAFETY: detect() chose these only where the CPU reports the features.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { x86::avx512(trips) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { x86::avx2(trips) },
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => neon(trips),
            Kernel::Scalar => scalar(trips),
        }
    }
}

// Each chain runs x <- x * A + B, which converges to B / (1 - A) = 0.1: no overflow and no
// subnormals, whatever the number of trips.
const A: f32 = 0.999;
const B: f32 = 1e-4;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{A, B, CHAINS};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    pub unsafe fn avx512(trips: u64) -> f32 {
        let (a, b) = (_mm512_set1_ps(A), _mm512_set1_ps(B));
        let mut acc = [_mm512_setzero_ps(); CHAINS];
        for _ in 0..trips {
            for x in acc.iter_mut() {
                *x = _mm512_fmadd_ps(*x, a, b);
            }
        }
        acc.iter().map(|&x| _mm512_reduce_add_ps(x)).sum()
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2(trips: u64) -> f32 {
        let (a, b) = (_mm256_set1_ps(A), _mm256_set1_ps(B));
        let mut acc = [_mm256_setzero_ps(); CHAINS];
        for _ in 0..trips {
            for x in acc.iter_mut() {
                *x = _mm256_fmadd_ps(*x, a, b);
            }
        }
        let mut lanes = [0.0f32; 8];
        let mut sum = 0.0;
        for x in acc {
            _mm256_storeu_ps(lanes.as_mut_ptr(), x);
            sum += lanes.iter().sum::<f32>();
        }
        sum
    }
}

#[cfg(target_arch = "aarch64")]
fn neon(trips: u64) -> f32 {
    use std::arch::aarch64::*;
    // SAFETY: NEON is part of the aarch64 baseline.
    unsafe {
        let (a, b) = (vdupq_n_f32(A), vdupq_n_f32(B));
        let mut acc = [vdupq_n_f32(0.0); CHAINS];
        for _ in 0..trips {
            for x in acc.iter_mut() {
                *x = vfmaq_f32(b, *x, a);
            }
        }
        acc.iter().map(|&x| vaddvq_f32(x)).sum()
    }
}

fn scalar(trips: u64) -> f32 {
    let mut acc = [0.0f32; CHAINS];
    for _ in 0..trips {
        for x in acc.iter_mut() {
            *x = *x * A + B;
        }
    }
    acc.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel computes the same fixed point, so the timed loop does the work it counts.
    #[test]
    fn the_loop_converges_to_its_fixed_point_on_every_lane() {
        let kernel = Kernel::detect();
        let lanes = (kernel.flops_per_trip() / (2 * CHAINS) as f64) as f32;
        let fixed_point = B / (1.0 - A);
        let want = fixed_point * lanes * CHAINS as f32;
        let got = kernel.run(20_000);
        assert!((got - want).abs() < 1e-3 * want, "{got} vs {want}");
        assert!((scalar(20_000) - fixed_point * CHAINS as f32).abs() < 1e-3);
    }

    #[test]
    fn the_peak_is_positive_and_counts_the_pool() {
        let peak = measure(Duration::from_millis(20));
        assert!(peak.flops > 1e8, "{} FLOP/s", peak.flops);
        assert_eq!(peak.threads, rayon::current_num_threads());
    }
}
