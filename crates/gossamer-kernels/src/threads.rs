//! The process-wide compute pool.

/// Sizes rayon's global pool once. `None` uses every core. Later calls are ignored (the pool
/// can only be built once per process); the size actually in use is returned.
pub fn init(threads: Option<usize>) -> usize {
    let mut builder = rayon::ThreadPoolBuilder::new().thread_name(|i| format!("gossamer-{i}"));
    if let Some(n) = threads {
        builder = builder.num_threads(n.max(1));
    }
    let _ = builder.build_global();
    rayon::current_num_threads()
}
