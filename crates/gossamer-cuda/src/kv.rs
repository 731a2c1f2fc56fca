//! The paged KV cache: one device pool of fixed-size blocks (`PAGE` positions of every
//! layer's keys and values, f32), handed out to sequences as they grow and returned when a
//! sequence's [`KvCache`](gossamer_model::KvCache) is cleared or dropped. A sequence's block
//! table lives on the host and travels with each step.
//!
//! Sliding-window layers keep their old positions too (their blocks are shared with the
//! full layers'); the kernels' window mask is what hides them.

use std::sync::{Arc, Mutex};

use gossamer_model::DeviceCache;

use crate::device::{Buf, Gpu};
use crate::CudaError;

/// Positions per block (`PAGE` in kernels.cu).
pub(crate) const PAGE: usize = 32;

pub(crate) struct KvPool {
    pub gpu: Arc<Gpu>,
    pub buf: Buf,
    pub blocks: usize,
    /// Bytes of one block (every layer's keys and values for PAGE positions).
    pub block_bytes: usize,
    free: Mutex<Vec<u32>>,
}

impl KvPool {
    pub fn new(
        gpu: Arc<Gpu>,
        layers: usize,
        kv_dim: usize,
        blocks: usize,
    ) -> Result<Arc<KvPool>, CudaError> {
        let block_bytes = layers * 2 * PAGE * kv_dim * 4;
        let buf = gpu.alloc(block_bytes * blocks)?;
        Ok(Arc::new(KvPool {
            gpu,
            buf,
            blocks,
            block_bytes,
            // Popped from the back: low block numbers first.
            free: Mutex::new((0..blocks as u32).rev().collect()),
        }))
    }

    pub fn free_blocks(&self) -> usize {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// `count` blocks, or `None` (and nothing taken) when the pool has fewer free.
    fn take(&self, count: usize) -> Option<Vec<u32>> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < count {
            return None;
        }
        let at = free.len() - count;
        Some(free.split_off(at))
    }

    fn give_back(&self, blocks: &[u32]) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        free.extend_from_slice(blocks);
    }
}

/// One sequence's blocks, in position order.
pub(crate) struct SeqKv {
    pub pool: Arc<KvPool>,
    pub blocks: Vec<u32>,
}

impl SeqKv {
    pub fn new(pool: Arc<KvPool>) -> SeqKv {
        SeqKv {
            pool,
            blocks: Vec::new(),
        }
    }

    /// Grows the table to hold `positions` positions.
    pub fn reserve(&mut self, positions: usize) -> Result<(), CudaError> {
        let need = positions.div_ceil(PAGE).saturating_sub(self.blocks.len());
        if need == 0 {
            return Ok(());
        }
        let got = self.pool.take(need).ok_or(CudaError::KvFull {
            needed: need,
            free: self.pool.free_blocks(),
            total: self.pool.blocks,
        })?;
        self.blocks.extend(got);
        Ok(())
    }

    /// Gives back blocks beyond `positions` (undoing a `reserve` whose step failed).
    pub fn truncate(&mut self, positions: usize) {
        let keep = positions.div_ceil(PAGE);
        if self.blocks.len() > keep {
            let extra = self.blocks.split_off(keep);
            self.pool.give_back(&extra);
        }
    }
}

impl Drop for SeqKv {
    fn drop(&mut self) {
        self.pool.give_back(&self.blocks);
    }
}

impl DeviceCache for SeqKv {
    fn fork(&self) -> Option<Box<dyn DeviceCache>> {
        let blocks = self.pool.take(self.blocks.len())?;
        let bb = self.pool.block_bytes as u64;
        let base = self.pool.buf.ptr;
        for (&dst, &src) in blocks.iter().zip(&self.blocks) {
            if self
                .pool
                .gpu
                .copy_dtod(base + dst as u64 * bb, base + src as u64 * bb, bb as usize)
                .is_err()
            {
                self.pool.give_back(&blocks);
                return None;
            }
        }
        Some(Box::new(SeqKv {
            pool: self.pool.clone(),
            blocks,
        }))
    }

    fn bytes(&self) -> usize {
        self.blocks.len() * self.pool.block_bytes
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
