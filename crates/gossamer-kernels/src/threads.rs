//! The process-wide compute pool.

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
