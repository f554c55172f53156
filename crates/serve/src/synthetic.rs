//! Deterministic values in [-1, 1) for tests, benchmarks and random-weight models: xorshift32
//! from a seed, so the same seed gives the same values on every machine and a caller that wants
//! many independent streams (rows filled in parallel, one per tensor) just uses many seeds.

pub fn uniform(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}
