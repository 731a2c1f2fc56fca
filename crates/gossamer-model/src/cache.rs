//! Per-sequence key/value cache. Full-attention layers keep every position; sliding-window
//! layers keep only the `window − 1` positions a future query can still see.

use gossamer_checkpoint::{AttentionKind, ModelConfig};

/// A sequence's keys and values held by an [`Accelerator`](crate::Accelerator) (device
/// memory), owned by the [`KvCache`] so that dropping the cache frees them.
pub trait DeviceCache: Send + Sync + std::any::Any {
    /// A copy of this sequence's state (a fork); `None` when the device has no room.
    fn fork(&self) -> Option<Box<dyn DeviceCache>>;
    /// Device bytes held.
    fn bytes(&self) -> usize;
    /// For the accelerator that made it, to reach its own type.
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
}

#[derive(Clone)]
pub(crate) struct LayerKv {
    /// Rows of `[kv_heads · head_dim]`, positions `first_pos..first_pos + rows`.
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    pub first_pos: usize,
    /// `Some(w)` on sliding-window layers.
    pub window: Option<usize>,
}

/// Cloning copies the cached keys and values (a fork of the sequence).
pub struct KvCache {
    pub(crate) layers: Vec<LayerKv>,
    pub(crate) kv_dim: usize,
    /// Number of positions already processed (the position of the next token).
    pub(crate) len: usize,
    /// The keys and values when an accelerator runs the model (`layers` then stay empty).
    pub(crate) device: Option<Box<dyn DeviceCache>>,
    /// Set on a clone whose device copy could not be made: using it is an error, not a
    /// silent restart from nothing.
    pub(crate) device_lost: bool,
}

impl Clone for KvCache {
    fn clone(&self) -> KvCache {
        let device = self.device.as_ref().map(|d| d.fork());
        KvCache {
            layers: self.layers.clone(),
            kv_dim: self.kv_dim,
            len: self.len,
            device_lost: self.device_lost || matches!(device, Some(None)),
            device: device.flatten(),
        }
    }
}

impl KvCache {
    pub fn new(cfg: &ModelConfig) -> KvCache {
        KvCache {
            layers: cfg
                .layer_types
                .iter()
                .map(|kind| LayerKv {
                    k: Vec::new(),
                    v: Vec::new(),
                    first_pos: 0,
                    window: match kind {
                        AttentionKind::Sliding => Some(cfg.sliding_window),
                        AttentionKind::Full => None,
                    },
                })
                .collect(),
            kv_dim: cfg.kv_dim(),
            len: 0,
            device: None,
            device_lost: false,
        }
    }

    /// The accelerator's state for this sequence, for the accelerator (`None` until its
    /// first step).
    pub fn device_mut(&mut self) -> &mut Option<Box<dyn DeviceCache>> {
        &mut self.device
    }

    /// Positions processed so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets everything (a new conversation).
    pub fn clear(&mut self) {
        for l in &mut self.layers {
            l.k.clear();
            l.v.clear();
            l.first_pos = 0;
        }
        self.device = None;
        self.device_lost = false;
        self.len = 0;
    }

    /// Bytes held by cached keys and values.
    pub fn bytes(&self) -> usize {
        let host: usize = self
            .layers
            .iter()
            .map(|l| (l.k.len() + l.v.len()) * 4)
            .sum();
        host + self.device.as_ref().map_or(0, |d| d.bytes())
    }
}

impl LayerKv {
    pub fn append(&mut self, k: &[f32], v: &[f32]) {
        self.k.extend_from_slice(k);
        self.v.extend_from_slice(v);
    }

    /// After a step, sliding layers drop every row older than the last `window − 1`.
    pub fn trim(&mut self, kv_dim: usize) {
        if let Some(w) = self.window {
            let rows = self.k.len() / kv_dim;
            let keep = w.saturating_sub(1).min(rows);
            let drop = rows - keep;
            if drop > 0 {
                self.k.drain(..drop * kv_dim);
                self.v.drain(..drop * kv_dim);
                self.first_pos += drop;
            }
        }
    }
}
