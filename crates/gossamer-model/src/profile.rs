//! Where forward passes spend their time, by kind of operation (`gossamer bench --profile`).
//! Off by default; when on, each operation costs two clock reads (tens of nanoseconds against
//! the tens of microseconds the smallest operation takes).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The kinds of work a forward pass does, in pass order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Embed,
    Norm,
    QkvProjection,
    Rope,
    Attention,
    OutProjection,
    Router,
    /// With the SwiGLU, applied in the same pass.
    ExpertGateUp,
    ExpertDown,
    /// Gathering each expert's tokens and adding its weighted outputs back.
    ExpertCombine,
    Unembed,
}

impl Op {
    pub const ALL: [Op; 11] = [
        Op::Embed,
        Op::Norm,
        Op::QkvProjection,
        Op::Rope,
        Op::Attention,
        Op::OutProjection,
        Op::Router,
        Op::ExpertGateUp,
        Op::ExpertDown,
        Op::ExpertCombine,
        Op::Unembed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Embed => "embed",
            Op::Norm => "rms_norm",
            Op::QkvProjection => "qkv_proj",
            Op::Rope => "rope",
            Op::Attention => "attention",
            Op::OutProjection => "out_proj",
            Op::Router => "router",
            Op::ExpertGateUp => "expert_gate_up",
            Op::ExpertDown => "expert_down",
            Op::ExpertCombine => "expert_combine",
            Op::Unembed => "unembed",
        }
    }
}

/// Time and calls per [`Op`], accumulated from any thread.
#[derive(Debug, Default)]
pub struct Profile {
    nanos: [AtomicU64; Op::ALL.len()],
    calls: [AtomicU64; Op::ALL.len()],
}

/// Totals taken out of a [`Profile`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpTimes {
    pub nanos: [u64; Op::ALL.len()],
    pub calls: [u64; Op::ALL.len()],
}

impl OpTimes {
    pub fn add(&mut self, other: &OpTimes) {
        for i in 0..Op::ALL.len() {
            self.nanos[i] += other.nanos[i];
            self.calls[i] += other.calls[i];
        }
    }

    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.nanos.iter().sum())
    }

    /// `(op, time, calls)` for every op that ran, in pass order.
    pub fn rows(&self) -> impl Iterator<Item = (Op, Duration, u64)> + '_ {
        Op::ALL
            .iter()
            .enumerate()
            .filter(|(i, _)| self.calls[*i] > 0)
            .map(|(i, &op)| (op, Duration::from_nanos(self.nanos[i]), self.calls[i]))
    }
}

impl Profile {
    pub fn record(&self, op: Op, elapsed: Duration) {
        let i = op as usize;
        self.nanos[i].fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
        self.calls[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Returns the totals so far and starts again from zero.
    pub fn take(&self) -> OpTimes {
        let mut t = OpTimes::default();
        for i in 0..Op::ALL.len() {
            t.nanos[i] = self.nanos[i].swap(0, Ordering::Relaxed);
            t.calls[i] = self.calls[i].swap(0, Ordering::Relaxed);
        }
        t
    }
}

/// Runs `f`, charging its time to `op` when profiling is on.
#[inline]
pub(crate) fn timed<T>(profile: Option<&Profile>, op: Op, f: impl FnOnce() -> T) -> T {
    match profile {
        None => f(),
        Some(p) => {
            let start = Instant::now();
            let out = f();
            p.record(op, start.elapsed());
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_returns_totals_and_resets() {
        let p = Profile::default();
        p.record(Op::Attention, Duration::from_micros(5));
        p.record(Op::Attention, Duration::from_micros(7));
        p.record(Op::Unembed, Duration::from_micros(1));
        let t = p.take();
        let rows: Vec<_> = t.rows().collect();
        assert_eq!(
            rows,
            vec![
                (Op::Attention, Duration::from_micros(12), 2),
                (Op::Unembed, Duration::from_micros(1), 1)
            ]
        );
        assert_eq!(t.total(), Duration::from_micros(13));
        assert_eq!(p.take(), OpTimes::default());
    }
}
