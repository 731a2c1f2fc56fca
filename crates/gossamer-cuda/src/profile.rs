//! `GOSSAMER_CUDA_PROFILE=1`: the device time of every kernel and cuBLAS call, measured in
//! place (boost clocks, warm caches, the real sequence) with an event after each launch, and
//! printed per kind when the backend is dropped. Steps then run without graphs (events
//! cannot be timed inside a captured graph), so the totals include the launch gaps a graph
//! would hide; the per-kind split is what it is for.

use std::collections::HashMap;
use std::sync::Mutex;

use cudarc::driver::{sys, CudaContext, CudaEvent, CudaStream};

#[derive(Default)]
struct Pending {
    start: Option<CudaEvent>,
    marks: Vec<(&'static str, CudaEvent)>,
}

#[derive(Default)]
pub(crate) struct Profiler {
    pending: Mutex<Pending>,
    /// Per kind: milliseconds and count.
    totals: Mutex<HashMap<&'static str, (f64, u64)>>,
    steps: Mutex<u64>,
}

fn timed_event(ctx: &std::sync::Arc<CudaContext>) -> Option<CudaEvent> {
    ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
        .ok()
}

impl Profiler {
    pub fn from_env() -> Option<Profiler> {
        std::env::var_os("GOSSAMER_CUDA_PROFILE").map(|_| Profiler::default())
    }

    pub fn begin_step(&self, ctx: &std::sync::Arc<CudaContext>, stream: &CudaStream) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.marks.clear();
        p.start = timed_event(ctx);
        if let Some(e) = &p.start {
            let _ = e.record(stream);
        }
    }

    /// After an operation was queued: its end.
    pub fn mark(&self, ctx: &std::sync::Arc<CudaContext>, stream: &CudaStream, name: &'static str) {
        if let Some(e) = timed_event(ctx) {
            let _ = e.record(stream);
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .marks
                .push((name, e));
        }
    }

    /// After the stream was synchronised: charges each operation the time since the mark
    /// before it.
    pub fn end_step(&self) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut prev) = p.start.take() else {
            return;
        };
        let mut totals = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        for (name, e) in p.marks.drain(..) {
            if let Ok(ms) = prev.elapsed_ms(&e) {
                let t = totals.entry(name).or_default();
                t.0 += ms as f64;
                t.1 += 1;
            }
            prev = e;
        }
        *self.steps.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }

    pub fn report(&self) -> String {
        let totals = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        let steps = *self.steps.lock().unwrap_or_else(|e| e.into_inner());
        let all: f64 = totals.values().map(|t| t.0).sum();
        let mut rows: Vec<_> = totals.iter().collect();
        rows.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
        let mut out = format!(
            "CUDA profile: {steps} steps, {all:.3} ms of device time\n| kind | calls | ms | µs per call | share |\n|---|---|---|---|---|\n"
        );
        for (name, (ms, n)) in rows {
            out += &format!(
                "| {name} | {n} | {ms:.3} | {:.2} | {:.1} % |\n",
                1e3 * ms / *n as f64,
                100.0 * ms / all
            );
        }
        out
    }
}
