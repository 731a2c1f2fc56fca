//! The process-wide compute pool, and the read bandwidth it gets from memory.

use std::time::Instant;

use rayon::prelude::*;

/// Sizes rayon's global pool once. `None` uses every core. With `pin`, worker `i` is bound to
/// the `i`-th core the process may run on (fewer migrations and warmer caches on a quiet
/// machine; leave it off when other work shares the cores). Later calls are ignored (the pool
/// can only be built once per process); the size actually in use is returned.
pub fn init(threads: Option<usize>, pin: bool) -> usize {
    let mut builder = rayon::ThreadPoolBuilder::new().thread_name(|i| format!("gossamer-{i}"));
    if let Some(n) = threads {
        builder = builder.num_threads(n.max(1));
    }
    if pin {
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        if cores.is_empty() {
            tracing::warn!("thread pinning asked for, but the cores cannot be listed; not pinning");
        } else {
            builder = builder.start_handler(move |i| {
                let core = cores[i % cores.len()];
                if !core_affinity::set_for_current(core) {
                    tracing::warn!("could not pin compute thread {i} to core {}", core.id);
                }
            });
        }
    }
    let _ = builder.build_global();
    rayon::current_num_threads()
}

/// The machine's read bandwidth in GB/s with the compute pool's threads: the best of
/// `passes` reads of a `bytes`-sized buffer (far larger than any cache), split evenly between
/// the threads, each summing its share. It is the decode ceiling a decode benchmark is
/// compared with: decoding reads every active weight once per token and does little else.
pub fn read_bandwidth(bytes: usize, passes: usize) -> f64 {
    let words: Vec<u64> = (0..(bytes / 8) as u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9))
        .collect();
    let share = words.len().div_ceil(rayon::current_num_threads().max(1));
    let mut best = f64::MAX;
    for _ in 0..passes.max(1) {
        let t = Instant::now();
        let sum = words
            .par_chunks(share)
            .map(|c| {
                // Eight independent lanes, so the sum vectorises and never waits on itself.
                let mut lanes = [0u64; 8];
                for w in c.chunks_exact(8) {
                    for (lane, &v) in lanes.iter_mut().zip(w) {
                        *lane = lane.wrapping_add(v);
                    }
                }
                lanes.iter().fold(0u64, |a, &b| a.wrapping_add(b))
            })
            .reduce(|| 0, u64::wrapping_add);
        best = best.min(t.elapsed().as_secs_f64());
        std::hint::black_box(sum);
    }
    (words.len() * 8) as f64 / best / 1e9
}

#[cfg(test)]
mod tests {
    #[test]
    fn read_bandwidth_is_a_positive_rate() {
        let gb_s = super::read_bandwidth(1 << 20, 2);
        assert!(gb_s.is_finite() && gb_s > 0.0, "{gb_s}");
    }
}
