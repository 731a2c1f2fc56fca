//! The forward pass, written once for every weight format.

use gossamer_checkpoint::{Checkpoint, ExpertMatrix, Linear, ModelConfig, Weights};
use gossamer_kernels::attention::{attention, AttentionShape, KvView};
pub use gossamer_kernels::gemm::Precision;
use gossamer_kernels::linear::{linear_many, linear_with, Epilogue, Matrix, Product};
use gossamer_kernels::rope::{Rope, YarnParams};
use gossamer_kernels::{bf16, moe, norm};
use rayon::prelude::*;

use std::sync::Arc;

use crate::cache::KvCache;
use crate::profile::{timed, Op, Profile};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("token id {id} is outside the vocabulary (0..{vocab})")]
    TokenOutOfRange { id: u32, vocab: usize },
    #[error("context full: {needed} positions requested, the model supports {max}")]
    ContextFull { needed: usize, max: usize },
    #[error("no tokens to process")]
    Empty,
    #[error("the KV cache belongs to a model of a different shape")]
    CacheMismatch,
    #[error("the KV cache was copied but its device state could not be (the device is full)")]
    CacheLost,
    #[error("{0}")]
    Device(String),
}

/// A device that runs the whole forward pass in place of the CPU kernels (the CUDA backend
/// in `gossamer-cuda`). [`GptOss::forward_batch`] validates the steps, calls it, and then
/// advances each cache's length, so a backend only computes.
pub trait Accelerator: Send + Sync {
    /// What runs the model, for logs and benchmarks ("cuda:0 (NVIDIA H200)").
    fn describe(&self) -> String;
    /// One batched step, with [`GptOss::forward_batch`]'s contract. Each sequence continues
    /// at `steps[i].cache.len()`; the backend keeps its keys and values in
    /// [`KvCache::device_mut`] and must leave `len` alone. On error nothing may have changed
    /// that a retry would see twice.
    fn forward_batch(&self, steps: &mut [Step]) -> Result<Vec<Vec<f32>>, ModelError>;
}

/// Which positions need logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// Only the last token's (generation).
    Last,
    /// Every token's (scoring).
    All,
    /// None (a prompt chunk that is not the last).
    None,
}

/// One sequence's share of a [`GptOss::forward_batch`] step: its new tokens, its cache (which
/// the step extends), and which of its positions need logits.
pub struct Step<'a> {
    pub tokens: &'a [u32],
    pub cache: &'a mut KvCache,
    pub logits: Logits,
}

/// Tokens per unembedding call when every position needs logits: bounds the scratch memory
/// (tokens × vocab floats) while still reusing each weight row across tokens.
const UNEMBED_CHUNK: usize = 32;

pub struct GptOss {
    cfg: ModelConfig,
    w: Weights,
    rope: Rope,
    /// Per layer, widened once: tiny, and read by every attention head.
    sinks: Vec<Vec<f32>>,
    /// Arithmetic of multi-token products (prefill); exact unless asked.
    precision: Precision,
    /// Time per kind of operation, when asked for.
    profile: Option<Arc<Profile>>,
    /// Every product through the batched kernels, even for one token (see
    /// [`GptOss::set_batch_invariant`]).
    batch_invariant: bool,
    /// Runs the forward pass instead of the CPU kernels, when set.
    accelerator: Option<Arc<dyn Accelerator>>,
}

impl GptOss {
    pub fn new(ckpt: &Checkpoint) -> GptOss {
        let cfg = ckpt.config.clone();
        let rope = rope_for(&cfg);
        let sinks = ckpt
            .weights
            .layers
            .iter()
            .map(|l| bf16::to_f32_vec(l.sinks.as_u16()))
            .collect();
        GptOss {
            cfg,
            w: ckpt.weights.clone(),
            rope,
            sinks,
            precision: Precision::Exact,
            profile: None,
            batch_invariant: false,
            accelerator: None,
        }
    }

    /// Runs every later step on `accelerator` (a GPU) instead of the CPU kernels. Caches
    /// made before keep CPU state and must not be used after.
    pub fn set_accelerator(&mut self, accelerator: Arc<dyn Accelerator>) {
        self.accelerator = Some(accelerator);
    }

    /// What runs the forward pass: the accelerator's description, or "cpu".
    pub fn device(&self) -> String {
        self.accelerator
            .as_ref()
            .map_or_else(|| "cpu".to_string(), |a| a.describe())
    }

    /// Starts charging the time of every operation to its kind; returns the totals' owner.
    pub fn enable_profile(&mut self) -> Arc<Profile> {
        self.profile.get_or_insert_with(Default::default).clone()
    }

    fn timed<T>(&self, op: Op, f: impl FnOnce() -> T) -> T {
        timed(self.profile.as_deref(), op, f)
    }

    /// Chooses the arithmetic of prefill products (see [`Precision`]).
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Makes a sequence's logits independent of the batch it runs in, bit for bit: every
    /// product uses one arithmetic per weight format whatever the number of tokens (see
    /// `linear_with`: in the fast precision on AVX512-BF16 the one-token kernels' own, so a
    /// lone decode token runs as fast as without this; elsewhere the batched GEMM's, even
    /// for a lone token), and expert outputs are summed in routing order. A server sets
    /// this so that a request gives the same tokens alone or among others.
    pub fn set_batch_invariant(&mut self, on: bool) {
        self.batch_invariant = on;
    }

    /// Reads one byte of every page of every weight, so the first tokens do not pay for
    /// page faults (benchmarks; servers that want steady latency). Resident memory becomes
    /// the size of the mapped weights, which is what decoding touches anyway.
    pub fn prefault(&self) {
        const PAGE: usize = 4096;
        let sum: u64 = self
            .w
            .tensors()
            .par_iter()
            .map(|t| {
                t.as_bytes()
                    .iter()
                    .step_by(PAGE)
                    .map(|&b| b as u64)
                    .sum::<u64>()
            })
            .sum();
        std::hint::black_box(sum);
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(&self.cfg)
    }

    /// Runs `tokens` (continuing the sequence in `cache`) and returns logits, `[rows, vocab]`
    /// row-major, for the last token or for every token.
    pub fn forward(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        want: Logits,
    ) -> Result<Vec<f32>, ModelError> {
        let mut steps = [Step {
            tokens,
            cache,
            logits: want,
        }];
        Ok(self
            .forward_batch(&mut steps)?
            .pop()
            .expect("one step, one result"))
    }

    /// One step for several sequences at once (continuous batching): every sequence's new
    /// tokens go through each weight matrix together, so a matrix is read once per step for
    /// all of them (and each expert once for all the tokens routed to it); only attention
    /// runs per sequence, against its own cache. Returns each step's logits as
    /// [`forward`](Self::forward) would. Nothing is changed when an error is returned.
    ///
    /// With [`set_batch_invariant`](Self::set_batch_invariant), a sequence's results do not
    /// depend on what else is in the batch, bit for bit.
    pub fn forward_batch(&self, steps: &mut [Step]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.validate(steps)?;
        if let Some(acc) = &self.accelerator {
            if steps.iter().any(|s| s.cache.device_lost) {
                return Err(ModelError::CacheLost);
            }
            let out = acc.forward_batch(steps)?;
            for s in steps.iter_mut() {
                s.cache.len += s.tokens.len();
            }
            return Ok(out);
        }
        // The whole step on one of the pool's threads: its parallel regions (a few hundred
        // per decoded token) then start on that thread's own queue, where the other threads
        // steal them, instead of each being injected into the pool from outside and the
        // caller woken up after it.
        rayon::scope(|_| self.forward_batch_in_pool(steps))
    }

    /// The checks every backend relies on: tokens present and in the vocabulary, caches of
    /// this model, room in the context.
    fn validate(&self, steps: &[Step]) -> Result<(), ModelError> {
        let cfg = &self.cfg;
        if steps.is_empty() || steps.iter().any(|s| s.tokens.is_empty()) {
            return Err(ModelError::Empty);
        }
        for s in steps.iter() {
            if s.cache.layers.len() != cfg.num_hidden_layers || s.cache.kv_dim != cfg.kv_dim() {
                return Err(ModelError::CacheMismatch);
            }
            if let Some(&id) = s.tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
                return Err(ModelError::TokenOutOfRange {
                    id,
                    vocab: cfg.vocab_size,
                });
            }
            let needed = s.cache.len + s.tokens.len();
            if needed > cfg.max_position_embeddings {
                return Err(ModelError::ContextFull {
                    needed,
                    max: cfg.max_position_embeddings,
                });
            }
        }
        Ok(())
    }

    fn forward_batch_in_pool(&self, steps: &mut [Step]) -> Result<Vec<Vec<f32>>, ModelError> {
        let cfg = &self.cfg;
        let h = cfg.hidden_size;
        let eps = cfg.rms_norm_eps as f32;
        // Step i's tokens are rows starts[i]..starts[i + 1] of every activation.
        let mut starts = vec![0usize];
        for s in steps.iter() {
            starts.push(starts.last().unwrap() + s.tokens.len());
        }
        let n = *starts.last().unwrap();

        let mut x = self.timed(Op::Embed, || {
            let mut x = vec![0f32; n * h];
            let table = self.w.embedding.as_u16();
            let all = steps.iter().flat_map(|s| s.tokens.iter());
            for (row, &t) in x.chunks_exact_mut(h).zip(all) {
                let t = t as usize;
                for (o, &b) in row.iter_mut().zip(&table[t * h..(t + 1) * h]) {
                    *o = bf16::to_f32(b);
                }
            }
            x
        });

        // cos/sin per new position, shared by every layer.
        let half = cfg.head_dim / 2;
        let mut cos = vec![0f32; n * half];
        let mut sin = vec![0f32; n * half];
        for (i, s) in steps.iter().enumerate() {
            for j in 0..s.tokens.len() {
                let t = starts[i] + j;
                self.rope.cos_sin(
                    s.cache.len + j,
                    &mut cos[t * half..(t + 1) * half],
                    &mut sin[t * half..(t + 1) * half],
                );
            }
        }

        let p = self.precision;
        let invariant = self.batch_invariant;
        let mut normed = vec![0f32; n * h];
        for (l, layer) in self.w.layers.iter().enumerate() {
            // Attention block.
            self.timed(Op::Norm, || {
                norm::rms_norm(&x, layer.attn_norm.as_u16(), eps, &mut normed)
            });
            let (mut q, mut k, v) = self.timed(Op::QkvProjection, || {
                project_qkv([&layer.q, &layer.k, &layer.v], &normed, n, p, invariant)
            });
            self.timed(Op::Rope, || {
                for t in 0..n {
                    let (c, s) = (
                        &cos[t * half..(t + 1) * half],
                        &sin[t * half..(t + 1) * half],
                    );
                    self.rope
                        .apply(&mut q[t * cfg.q_dim()..(t + 1) * cfg.q_dim()], c, s);
                    self.rope
                        .apply(&mut k[t * cfg.kv_dim()..(t + 1) * cfg.kv_dim()], c, s);
                }
            });
            let attn = self.timed(Op::Attention, || {
                let (qd, kvd) = (cfg.q_dim(), cfg.kv_dim());
                let mut attn = vec![0f32; n * qd];
                for (i, s) in steps.iter_mut().enumerate() {
                    let (a, b) = (starts[i], starts[i + 1]);
                    let p0 = s.cache.len;
                    let kv = &mut s.cache.layers[l];
                    kv.append(&k[a * kvd..b * kvd], &v[a * kvd..b * kvd]);
                    attention(
                        AttentionShape {
                            heads: cfg.num_attention_heads,
                            kv_heads: cfg.num_key_value_heads,
                            head_dim: cfg.head_dim,
                            scale: 1.0 / (cfg.head_dim as f32).sqrt(),
                        },
                        &q[a * qd..b * qd],
                        p0,
                        &KvView {
                            k: &kv.k,
                            v: &kv.v,
                            first_pos: kv.first_pos,
                        },
                        kv.window,
                        &self.sinks[l],
                        &mut attn[a * qd..b * qd],
                    );
                    kv.trim(kvd);
                }
                attn
            });
            let o = self.timed(Op::OutProjection, || {
                project(&layer.o, &attn, n, p, invariant)
            });
            add_into(&mut x, &o);

            // Mixture-of-experts block.
            self.timed(Op::Norm, || {
                norm::rms_norm(&x, layer.mlp_norm.as_u16(), eps, &mut normed)
            });
            // The router stays exact: its top-k choice should not flip on activation rounding.
            let router_logits = self.timed(Op::Router, || {
                project(&layer.router, &normed, n, Precision::Exact, invariant)
            });
            let moe_out = self.experts(l, &normed, &router_logits, n);
            add_into(&mut x, &moe_out);
        }
        for s in steps.iter_mut() {
            s.cache.len += s.tokens.len();
        }

        // The rows that need logits, step by step.
        let mut wanted: Vec<usize> = Vec::new();
        let mut counts = Vec::with_capacity(steps.len());
        for (i, s) in steps.iter().enumerate() {
            let rows = match s.logits {
                Logits::Last => starts[i + 1] - 1..starts[i + 1],
                Logits::All => starts[i]..starts[i + 1],
                Logits::None => starts[i]..starts[i],
            };
            counts.push(rows.len());
            wanted.extend(rows);
        }
        let m = wanted.len();
        if m == 0 {
            return Ok(counts.iter().map(|_| Vec::new()).collect());
        }
        let mut rows = vec![0f32; m * h];
        for (dst, &t) in rows.chunks_exact_mut(h).zip(&wanted) {
            dst.copy_from_slice(&x[t * h..(t + 1) * h]);
        }
        let mut normed = vec![0f32; m * h];
        self.timed(Op::Norm, || {
            norm::rms_norm(&rows, self.w.final_norm.as_u16(), eps, &mut normed)
        });
        let vocab = cfg.vocab_size;
        let unembed = Matrix::bf16(self.w.unembedding.weight.as_u16(), vocab, h);
        let mut logits = self.timed(Op::Unembed, || {
            let mut logits = vec![0f32; m * vocab];
            for (xs, ys) in normed
                .chunks(UNEMBED_CHUNK * h)
                .zip(logits.chunks_mut(UNEMBED_CHUNK * vocab))
            {
                linear_with(
                    &unembed,
                    None,
                    xs,
                    xs.len() / h,
                    ys,
                    self.precision,
                    invariant,
                );
            }
            logits
        });
        // Split per step (from the back, so each split is one truncation).
        let mut out = Vec::with_capacity(steps.len());
        for &c in counts.iter().rev() {
            let rest = logits.len() - c * vocab;
            out.push(logits.split_off(rest));
        }
        out.reverse();
        Ok(out)
    }

    /// Routes each token to its top-k experts and sums their weighted outputs. Tokens are
    /// grouped by expert so each expert's weights are read once per step, and all the
    /// experts' products share one parallel region per projection (the SwiGLU applied in
    /// it, on each band of gate/up rows while it is in cache). Each token's expert outputs
    /// are summed in routing order, whatever the batch.
    fn experts(&self, l: usize, x: &[f32], router_logits: &[f32], n: usize) -> Vec<f32> {
        let cfg = &self.cfg;
        let (h, inter, e_count, k) = (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.num_local_experts,
            cfg.num_experts_per_tok,
        );
        let ex = &self.w.layers[l].experts;
        let routes: Vec<Vec<(usize, f32)>> = self.timed(Op::Router, || {
            router_logits
                .chunks_exact(e_count)
                .map(|r| moe::route(r, k))
                .collect()
        });
        // Per expert with work: its (token, routing slot) pairs.
        let users: Vec<(usize, Vec<(usize, usize)>)> = (0..e_count)
            .filter_map(|e| {
                let users: Vec<(usize, usize)> = routes
                    .iter()
                    .enumerate()
                    .filter_map(|(t, r)| r.iter().position(|(ee, _)| *ee == e).map(|j| (t, j)))
                    .collect();
                (!users.is_empty()).then_some((e, users))
            })
            .collect();
        let counts: Vec<usize> = users.iter().map(|(_, u)| u.len()).collect();
        // Their activations, expert after expert, in one buffer (and the products' outputs
        // likewise): a few large allocations per layer rather than three per expert.
        let mut xs = vec![0f32; n * k * h];
        self.timed(Op::ExpertCombine, || {
            split_rows(&mut xs, &counts, h)
                .into_par_iter()
                .zip(&users)
                .for_each(|(dst, (_, u))| {
                    for (row, &(t, _)) in dst.chunks_exact_mut(h).zip(u) {
                        row.copy_from_slice(&x[t * h..(t + 1) * h]);
                    }
                });
        });
        let xs = split_rows(&mut xs, &counts, h);
        let mut acts = vec![0f32; n * k * inter];
        let mut acts = split_rows(&mut acts, &counts, inter);
        self.timed(Op::ExpertGateUp, || {
            let products = expert_products(
                &users,
                &ex.gate_up,
                ex.gate_up_bias.as_u16(),
                2 * inter,
                h,
                &xs,
            );
            linear_many(
                &products,
                &mut acts,
                self.precision,
                self.batch_invariant,
                Epilogue::SwiGlu {
                    limit: cfg.swiglu_limit,
                },
            );
        });
        let mut ys = vec![0f32; n * k * h];
        let mut ys = split_rows(&mut ys, &counts, h);
        self.timed(Op::ExpertDown, || {
            let products =
                expert_products(&users, &ex.down, ex.down_bias.as_u16(), h, inter, &acts);
            linear_many(
                &products,
                &mut ys,
                self.precision,
                self.batch_invariant,
                Epilogue::Store,
            );
        });
        self.timed(Op::ExpertCombine, || {
            // Each token's outputs by routing slot, then summed in routing order.
            let mut of: Vec<&[f32]> = vec![&[]; n * k];
            for ((_, u), y) in users.iter().zip(&ys) {
                for (i, &(t, j)) in u.iter().enumerate() {
                    of[t * k + j] = &y[i * h..(i + 1) * h];
                }
            }
            let mut out = vec![0f32; n * h];
            out.par_chunks_mut(h)
                .zip(&routes)
                .enumerate()
                .for_each(|(t, (out, routed))| {
                    for (j, &(_, w)) in routed.iter().enumerate() {
                        for (o, &v) in out.iter_mut().zip(of[t * k + j]) {
                            *o += w * v;
                        }
                    }
                });
            out
        })
    }
}

/// The model's rotary embedding (YaRN-scaled), as every backend computes it.
pub fn rope_for(cfg: &ModelConfig) -> Rope {
    Rope::new(&YarnParams {
        head_dim: cfg.head_dim,
        theta: cfg.rope.theta,
        factor: cfg.rope.factor,
        beta_fast: cfg.rope.beta_fast,
        beta_slow: cfg.rope.beta_slow,
        original_max_position_embeddings: cfg.rope.original_max_position_embeddings,
        truncate: cfg.rope.truncate,
        attention_factor: cfg.rope.attention_factor,
    })
}

fn project(lin: &Linear, x: &[f32], n: usize, precision: Precision, invariant: bool) -> Vec<f32> {
    let m = Matrix::bf16(lin.weight.as_u16(), lin.rows, lin.cols);
    let mut y = vec![0f32; n * lin.rows];
    linear_with(
        &m,
        lin.bias.as_ref().map(|b| b.as_u16()),
        x,
        n,
        &mut y,
        precision,
        invariant,
    );
    y
}

/// The query, key and value projections of `n` tokens in one parallel region (one fork-join
/// instead of three; the threads balance across all their rows, the small key and value
/// matrices included), each computed exactly as [`project`] computes it alone.
fn project_qkv(
    lins: [&Linear; 3],
    x: &[f32],
    n: usize,
    precision: Precision,
    invariant: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let products = lins.map(|lin| Product {
        m: Matrix::bf16(lin.weight.as_u16(), lin.rows, lin.cols),
        bias: lin.bias.as_ref().map(|b| b.as_u16()),
        x,
        n,
    });
    let [mut q, mut k, mut v] = lins.map(|lin| vec![0f32; n * lin.rows]);
    linear_many(
        &products,
        &mut [&mut q[..], &mut k[..], &mut v[..]],
        precision,
        invariant,
        Epilogue::Store,
    );
    (q, k, v)
}

/// One projection's products for the experts with work: expert `e`'s `[rows, cols]` matrix
/// and bias (`biases` stacked `[experts, rows]`) against its tokens' inputs (`inputs[i]` for
/// `users[i]`).
fn expert_products<'a>(
    users: &[(usize, Vec<(usize, usize)>)],
    m: &'a ExpertMatrix,
    biases: &'a [u16],
    rows: usize,
    cols: usize,
    inputs: &'a [&mut [f32]],
) -> Vec<Product<'a>> {
    users
        .iter()
        .zip(inputs)
        .map(|((e, u), x)| Product {
            m: expert_matrix(m, *e, rows, cols),
            bias: Some(&biases[e * rows..(e + 1) * rows]),
            x,
            n: u.len(),
        })
        .collect()
}

/// Expert `e`'s `[rows, cols]` matrix as a view into the stacked tensor.
fn expert_matrix(m: &ExpertMatrix, e: usize, rows: usize, cols: usize) -> Matrix<'_> {
    match m {
        ExpertMatrix::Mxfp4 { blocks, scales } => {
            let groups = rows * cols / 32;
            Matrix::mxfp4(
                &blocks.as_bytes()[e * groups * 16..(e + 1) * groups * 16],
                &scales.as_bytes()[e * groups..(e + 1) * groups],
                rows,
                cols,
            )
        }
        ExpertMatrix::Bf16InOut { weight } => Matrix::bf16_transposed(
            &weight.as_u16()[e * rows * cols..(e + 1) * rows * cols],
            rows,
            cols,
        ),
    }
}

/// `buf` cut into consecutive pieces of `count × width` values, one per count.
fn split_rows<'a>(mut buf: &'a mut [f32], counts: &[usize], width: usize) -> Vec<&'a mut [f32]> {
    counts
        .iter()
        .map(|&c| {
            let (piece, rest) = std::mem::take(&mut buf).split_at_mut(c * width);
            buf = rest;
            piece
        })
        .collect()
}

fn add_into(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
