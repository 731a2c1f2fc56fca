//! One forward step on the GPU (see the crate docs for the two paths).

use std::sync::{Arc, Mutex};

use gossamer_checkpoint::{AttentionKind, Checkpoint, ModelConfig};
use gossamer_model::{Accelerator, Logits, ModelError, Step};

use crate::device::{Arg, Buf, Gpu};
use crate::kv::{KvPool, SeqKv};
use crate::weights::{DeviceWeights, ExpertWeights};
use crate::CudaError;

use Arg::{F, I, P};

/// Tokens up to which a step takes the small-batch kernels (`NT_MAX` in kernels.cu).
const NT_MAX: usize = 8;
/// Column splits of the router's small product (it has only 32 rows).
const ROUTER_SPLITS: usize = 16;
/// Logit rows per unembedding product (bounds the logits buffer).
const LOGIT_CHUNK: usize = 256;
/// Key-range splits of decode attention: enough blocks to keep the GPU busy at one
/// sequence with a long context (empty splits of short contexts exit at once).
const ATTN_SPLITS: usize = 16;
/// Threads (and warps) per block of the batch-1 kernels: small blocks, so that their large
/// register footprint still leaves several blocks resident per multiprocessor.
const B1_THREADS: u32 = 128;
const B1_WARPS: usize = 4;
/// No L2 prefetch for the next kernel.
const NO_PREFETCH: (u64, usize) = (0, 0);
/// No prepared input for the tensor-core expert kernels.
const NO_PREP: (u64, u64) = (0, 0);

#[derive(Clone, Debug, Default)]
pub struct CudaOptions {
    /// Which GPU (`cuda:N`).
    pub ordinal: usize,
    /// Bytes for the paged KV cache; `None`: half the memory left after the weights, at
    /// most 64 GiB.
    pub kv_cache_bytes: Option<usize>,
}

/// Per-step device buffers, grown to the largest step seen (in powers of two).
struct Scratch {
    tokens: usize,
    meta: Buf,
    meta_len: usize,
    x: Buf,
    xn: Buf,
    xb: Buf,
    qkv: Buf,
    q: Buf,
    attn: Buf,
    attn_partial: Buf,
    /// "Last block" counters of attention_decode and moe1_down (zero between launches).
    attn_counters: Buf,
    moe_counters: Buf,
    partial: Buf,
    rmeta: Buf,
    pair_expert: Buf,
    pair_weight: Buf,
    act: Buf,
    /// The tensor-core expert kernels' prepared inputs (f16 hi/lo pairs, see kernels.cu):
    /// the normalised token, 2^14/σ for it, and the routed experts' activations.
    prep: Buf,
    prep_unscale: Buf,
    act_prep: Buf,
    ypairs: Buf,
    xs_sorted: Buf,
    gate_up: Buf,
    act_b: Buf,
    ys: Buf,
    rows: Buf,
}

/// A captured decode step, replayed while the step's shape and buffers stay the same.
struct Graph(cudarc::driver::CudaGraph);
// SAFETY: a CUDA graph may be launched from any thread when calls are serialised; graphs
// are only touched under the backend's state lock.
unsafe impl Send for Graph {}

struct State {
    scratch: Option<Scratch>,
    /// Decode steps by (plan, logit rows); cleared whenever a buffer they use moves.
    graphs: std::collections::HashMap<(Plan, usize), Graph>,
    /// One expert's matrix widened to bf16 (the batched path with MXFP4 experts).
    widened: Option<Buf>,
    logits: Option<Buf>,
    logits_b: Option<Buf>,
}

pub struct CudaBackend {
    gpu: Arc<Gpu>,
    cfg: ModelConfig,
    w: DeviceWeights,
    pool: Arc<KvPool>,
    inv_freq: Buf,
    concentration: f32,
    /// Replay decode steps as CUDA graphs (off with `GOSSAMER_CUDA_NO_GRAPHS=1`, to compare).
    use_graphs: bool,
    /// The batch-1 kernels fit this model (MXFP4 experts, inputs ≤ 3072 wide, q ≤ 4096).
    batch1: bool,
    /// How the batch-1 experts run on tensor cores; `None`: the SIMT kernels.
    tc: Option<TensorCoreExperts>,
    /// Which batch-1 kernels ask L2 for the next kernel's weights.
    l2_prefetch: L2Prefetch,

    state: Mutex<State>,
}

impl CudaBackend {
    /// Opens `cuda:{ordinal}`, compiles the kernels, uploads the weights (`progress(done,
    /// total)` in bytes) and sets aside the KV pool.
    pub fn new(
        ck: &Checkpoint,
        opts: &CudaOptions,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Arc<CudaBackend>, CudaError> {
        let cfg = ck.config.clone();
        crate::weights::check_shapes(&cfg)?;
        let gpu = Arc::new(Gpu::open(opts.ordinal)?);
        let w = DeviceWeights::upload(&gpu, ck, progress)?;
        let rope = gossamer_model::rope_for(&cfg);
        let inv_freq = gpu.upload(&f32_bytes(&rope.inv_freq))?;
        let layers = cfg.num_hidden_layers;
        let block_bytes = layers * 2 * crate::kv::PAGE * cfg.kv_dim() * 4;
        let budget = match opts.kv_cache_bytes {
            Some(b) => b,
            None => {
                let (free, _) = gpu.ctx.mem_get_info().map_err(CudaError::driver)?;
                (free / 2).min(64 << 30)
            }
        };
        let blocks = (budget / block_bytes).max(1);
        let pool = KvPool::new(gpu.clone(), layers, cfg.kv_dim(), blocks)?;
        tracing::info!(
            device = %gpu.name,
            weights_gib = w.bytes as f64 / (1u64 << 30) as f64,
            kv_blocks = blocks,
            kv_positions = blocks * crate::kv::PAGE,
            "CUDA backend ready"
        );
        let batch1 = std::env::var_os("GOSSAMER_CUDA_NO_BATCH1").is_none()
            && matches!(
                w.layers.first().map(|l| &l.gate_up),
                Some(ExpertWeights::Mxfp4 { .. })
            )
            && cfg.hidden_size <= 3072
            && cfg.intermediate_size <= 3072
            && cfg.q_dim() <= 4096;
        let tc = if batch1 {
            TensorCoreExperts::plan(&cfg, gpu.sms as usize)
        } else {
            None
        };
        Ok(Arc::new(CudaBackend {
            gpu,
            cfg,
            w,
            pool,
            inv_freq,
            concentration: rope.concentration,
            use_graphs: std::env::var_os("GOSSAMER_CUDA_NO_GRAPHS").is_none(),
            batch1,
            tc,
            l2_prefetch: L2Prefetch::from_env(),

            state: Mutex::new(State {
                scratch: None,
                graphs: Default::default(),
                widened: None,
                logits: None,
                logits_b: None,
            }),
        }))
    }

    /// Device-to-device copy bandwidth in bytes per second (bytes read plus bytes written),
    /// the ceiling decode is measured against: `bytes` copied `reps` times, the best rep.
    pub fn copy_bandwidth(&self, bytes: usize, reps: usize) -> Result<f64, CudaError> {
        let _guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.gpu.ctx.bind_to_thread().map_err(CudaError::driver)?;
        let bytes = bytes / 16 * 16;
        let src = self.gpu.alloc(bytes)?;
        let dst = self.gpu.alloc(bytes)?;
        let count = (bytes / 16) as u64;
        let grid = self.gpu.sms * 8;
        let mut best = f64::INFINITY;
        for _ in 0..reps.max(2) + 1 {
            self.gpu.sync()?;
            let t = std::time::Instant::now();
            self.gpu.launch(
                &self.gpu.k.copy16,
                (grid, 1, 1),
                (256, 1, 1),
                0,
                &[P(src.ptr), P(dst.ptr), Arg::U(count)],
            )?;
            self.gpu.sync()?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok(2.0 * bytes as f64 / best)
    }

    fn seq_kv<'a>(&self, step: &'a mut Step) -> Result<&'a mut SeqKv, CudaError> {
        let slot = step.cache.device_mut();
        if slot.is_none() {
            *slot = Some(Box::new(SeqKv::new(self.pool.clone())));
        }
        slot.as_mut()
            .expect("just set")
            .as_any_mut()
            .downcast_mut::<SeqKv>()
            .filter(|s| Arc::ptr_eq(&s.pool, &self.pool))
            .ok_or(CudaError::ForeignCache)
    }

    fn step(&self, steps: &mut [Step]) -> Result<Vec<Vec<f32>>, CudaError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.gpu.ctx.bind_to_thread().map_err(CudaError::driver)?;
        // Room in the KV pool for every new position; undone if any sequence cannot grow.
        let lens: Vec<usize> = steps.iter().map(|s| s.cache.len()).collect();
        let mut tables: Vec<Vec<u32>> = Vec::with_capacity(steps.len());
        for i in 0..steps.len() {
            let need = lens[i] + steps[i].tokens.len();
            let grown = self.seq_kv(&mut steps[i]).and_then(|kv| {
                kv.reserve(need)?;
                Ok(kv.blocks.clone())
            });
            match grown {
                Ok(t) => tables.push(t),
                Err(e) => {
                    for (j, s) in steps.iter_mut().enumerate().take(i + 1) {
                        if let Ok(kv) = self.seq_kv(s) {
                            kv.truncate(lens[j]);
                        }
                    }
                    return Err(e);
                }
            }
        }
        let out = self.run(&mut state, steps, &lens, &tables);
        if out.is_err() {
            for (j, s) in steps.iter_mut().enumerate() {
                if let Ok(kv) = self.seq_kv(s) {
                    kv.truncate(lens[j]);
                }
            }
        }
        out
    }

    fn run(
        &self,
        state: &mut State,
        steps: &[Step],
        lens: &[usize],
        tables: &[Vec<u32>],
    ) -> Result<Vec<Vec<f32>>, CudaError> {
        let cfg = &self.cfg;
        let shape: Vec<(&[u32], Logits)> = steps.iter().map(|s| (s.tokens, s.logits)).collect();
        let StepMeta {
            ints: meta,
            n,
            m,
            counts,
        } = StepMeta::pack(&shape, lens, tables);
        self.ensure_scratch(state, n, meta.len())?;
        self.ensure_logits(state, m)?;
        let sc = state.scratch.as_ref().expect("ensured");
        self.gpu.write(&sc.meta, &meta)?;
        let at = |k: usize| sc.meta.ptr + 4 * (k as u64);
        let d = StepPointers {
            tokens: at(0),
            pos: at(n),
            table_at: at(2 * n),
            wanted: at(3 * n),
            tables: at(3 * n + m),
        };
        let vocab = cfg.vocab_size;
        // Each step's logits, filled in row order straight from the staging buffer.
        let mut out: Vec<Vec<f32>> = counts
            .iter()
            .map(|&c| Vec::with_capacity(c * vocab))
            .collect();
        let mut fill = |rows: &[f32]| {
            let mut rows = rows;
            for (o, &c) in out.iter_mut().zip(&counts) {
                let room = c * vocab - o.len();
                let take = room.min(rows.len());
                o.extend_from_slice(&rows[..take]);
                rows = &rows[take..];
            }
        };
        let profiler = self.gpu.profiler.as_ref();
        if let Some(p) = profiler {
            p.begin_step(&self.gpu.ctx, &self.gpu.stream);
        }
        let plan = Plan {
            n,
            small: n <= NT_MAX,
            single: n <= NT_MAX && steps.iter().all(|s| s.tokens.len() == 1),
            one: n == 1 && self.batch1,
        };
        if plan.small && self.use_graphs && profiler.is_none() {
            // Decode: the whole step (logits included: m ≤ n ≤ NT_MAX, one chunk) is one
            // graph, captured the first time this shape is seen.
            let key = (plan, m);
            if !state.graphs.contains_key(&key) {
                let graph = self.capture(state, &plan, m, &d)?;
                state.graphs.insert(key, Graph(graph));
            }
            state.graphs[&key].0.launch().map_err(CudaError::driver)?;
            if m > 0 {
                self.read_logits(state, m * vocab, &mut fill)?;
            }
        } else {
            self.enqueue_layers(state, &plan, &d)?;
            let mut start = 0;
            while start < m {
                let c = (m - start).min(LOGIT_CHUNK);
                self.enqueue_unembed(state, &plan, start, c, &d)?;
                self.read_logits(state, c * vocab, &mut fill)?;
                start += c;
            }
        }
        if let Some(p) = profiler {
            self.gpu.sync()?;
            p.end_step();
        }
        Ok(out)
    }

    /// Records a decode step of `n` tokens and `m` logit rows as a graph.
    fn capture(
        &self,
        state: &mut State,
        plan: &Plan,
        m: usize,
        d: &StepPointers,
    ) -> Result<cudarc::driver::CudaGraph, CudaError> {
        use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
        let stream = &self.gpu.stream;
        stream
            .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .map_err(CudaError::driver)?;
        let queued = self.enqueue_layers(state, plan, d).and_then(|()| {
            if m > 0 {
                self.enqueue_unembed(state, plan, 0, m, d)
            } else {
                Ok(())
            }
        });
        // Capture always ends, also after a failed launch, so the stream is usable again.
        let graph = stream
            .end_capture(CUgraphInstantiate_flags(0))
            .map_err(CudaError::driver);
        queued?;
        graph?.ok_or_else(|| CudaError::Driver("the captured decode step is empty".into()))
    }

    /// The embedding and every layer, queued on the stream.
    fn enqueue_layers(
        &self,
        state: &mut State,
        plan: &Plan,
        d: &StepPointers,
    ) -> Result<(), CudaError> {
        let n = plan.n;
        let cfg = &self.cfg;
        let g = &self.gpu;
        let sc = state.scratch.as_ref().expect("ensured");
        g.launch(
            &g.k.embed,
            (n as u32, 1, 1),
            (256, 1, 1),
            0,
            &[
                P(self.w.embedding.ptr),
                P(d.tokens),
                P(sc.x.ptr),
                I(cfg.hidden_size as i32),
            ],
        )?;
        for l in 0..cfg.num_hidden_layers {
            self.attention_block(sc, l, plan, d)?;
            if plan.one {
                self.experts_one(sc, l)?;
            } else if plan.small {
                self.experts_small(sc, l, n)?;
            } else {
                self.experts_batched(&mut state.widened, sc, l, n)?;
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn attention_block(
        &self,
        sc: &Scratch,
        l: usize,
        plan: &Plan,
        d: &StepPointers,
    ) -> Result<(), CudaError> {
        let (n, small) = (plan.n, plan.small);
        let cfg = &self.cfg;
        let (g, kk, lw) = (&self.gpu, &self.gpu.k, &self.w.layers[l]);
        let (h, qd, kvd) = (cfg.hidden_size, cfg.q_dim(), cfg.kv_dim());
        let qkvd = qd + 2 * kvd;
        let (heads, kv_heads) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        if plan.one {
            self.gemv1(
                lw.qkv.ptr,
                lw.qkv_bias.ptr,
                sc.x.ptr,
                lw.attn_norm.ptr,
                sc.qkv.ptr,
                qkvd,
                h,
                false,
                NO_PREFETCH,
                NO_PREP,
            )?;
        } else if small {
            self.gemv_small(
                lw.qkv.ptr,
                lw.qkv_bias.ptr,
                sc.x.ptr,
                lw.attn_norm.ptr,
                sc.qkv.ptr,
                (qkvd, h, n),
                GemvMode::Store,
            )?;
        } else {
            self.rmsnorm(sc.x.ptr, lw.attn_norm.ptr, n, 0, sc.xb.ptr)?;
            self.add_bias(sc.qkv.ptr, lw.qkv_bias.ptr, n, qkvd, false)?;
            g.gemm_bf16(lw.qkv.ptr, sc.xb.ptr, sc.qkv.ptr, qkvd, h, n, 1.0)?;
        }
        let window = match cfg.layer_types[l] {
            AttentionKind::Sliding => cfg.sliding_window as i32,
            AttentionKind::Full => 0,
        };
        if plan.single {
            let o_prefetch = self.prefetch(self.l2_prefetch.attention, (lw.o.ptr, lw.o.bytes()));
            g.launch(
                &kk.attention_decode,
                (n as u32, kv_heads as u32, ATTN_SPLITS as u32),
                (32 * (heads / kv_heads) as u32, 1, 1),
                0,
                &[
                    P(sc.qkv.ptr),
                    P(self.pool.buf.ptr),
                    P(d.pos),
                    P(d.table_at),
                    P(d.tables),
                    P(lw.sinks.ptr),
                    P(self.inv_freq.ptr),
                    F(self.concentration),
                    P(sc.attn.ptr),
                    P(sc.attn_partial.ptr),
                    P(sc.attn_counters.ptr),
                    I(l as i32),
                    I(cfg.num_hidden_layers as i32),
                    I(heads as i32),
                    I(kv_heads as i32),
                    I(window),
                    F(1.0 / (cfg.head_dim as f32).sqrt()),
                    // The output projection's weights, next.
                    P(o_prefetch.0),
                    Arg::U(o_prefetch.1 as u64),
                ],
            )?;
        } else {
            self.attention_split(sc, l, plan, d, window)?;
        }
        if plan.one {
            self.gemv1(
                lw.o.ptr,
                lw.o_bias.ptr,
                sc.attn.ptr,
                0,
                sc.x.ptr,
                h,
                qd,
                true,
                (lw.router.ptr, lw.router.bytes()),
                NO_PREP,
            )?;
        } else if small {
            self.gemv_small(
                lw.o.ptr,
                lw.o_bias.ptr,
                sc.attn.ptr,
                0,
                sc.x.ptr,
                (h, qd, n),
                GemvMode::Accumulate,
            )?;
        } else {
            self.to_bf16(sc.attn.ptr, sc.xb.ptr, n * qd)?;
            self.add_bias(sc.x.ptr, lw.o_bias.ptr, n, h, true)?;
            g.gemm_bf16(lw.o.ptr, sc.xb.ptr, sc.x.ptr, h, qd, n, 1.0)?;
        }
        Ok(())
    }

    /// RoPE and the KV write, then attention (split over key ranges for small steps).
    fn attention_split(
        &self,
        sc: &Scratch,
        l: usize,
        plan: &Plan,
        d: &StepPointers,
        window: i32,
    ) -> Result<(), CudaError> {
        let cfg = &self.cfg;
        let (g, kk, lw) = (&self.gpu, &self.gpu.k, &self.w.layers[l]);
        let (n, small) = (plan.n, plan.small);
        let (heads, kv_heads) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        g.launch(
            &kk.rope_store,
            (n as u32, 1, 1),
            (256, 1, 1),
            0,
            &[
                P(sc.qkv.ptr),
                P(d.pos),
                P(d.table_at),
                P(d.tables),
                P(self.pool.buf.ptr),
                P(self.inv_freq.ptr),
                F(self.concentration),
                I(l as i32),
                I(cfg.num_hidden_layers as i32),
                I(heads as i32),
                I(kv_heads as i32),
                P(sc.q.ptr),
            ],
        )?;
        let splits = if small { ATTN_SPLITS } else { 1 };
        g.launch(
            &kk.attention,
            (n as u32, kv_heads as u32, splits as u32),
            (32 * (heads / kv_heads) as u32, 1, 1),
            0,
            &[
                P(sc.q.ptr),
                P(self.pool.buf.ptr),
                P(d.pos),
                P(d.table_at),
                P(d.tables),
                P(lw.sinks.ptr),
                P(sc.attn.ptr),
                P(sc.attn_partial.ptr),
                I(l as i32),
                I(cfg.num_hidden_layers as i32),
                I(heads as i32),
                I(kv_heads as i32),
                I(window),
                F(1.0 / (cfg.head_dim as f32).sqrt()),
            ],
        )?;
        if splits > 1 {
            g.launch(
                &kk.attention_combine,
                (n as u32, heads as u32, 1),
                (64, 1, 1),
                0,
                &[
                    P(sc.attn_partial.ptr),
                    P(lw.sinks.ptr),
                    P(sc.attn.ptr),
                    I(heads as i32),
                    I(splits as i32),
                ],
            )?;
        }
        Ok(())
    }

    /// `what` (address, bytes), or nothing when L2 prefetching is off.
    fn prefetch(&self, on: bool, what: (u64, usize)) -> (u64, usize) {
        if on {
            what
        } else {
            NO_PREFETCH
        }
    }

    /// What layer `l`'s batch-1 expert kernels fetch into L2, as switched on: the down
    /// matrix (blocks, scales; the gate/up kernel takes the routed experts' rows of it, null
    /// for none) and the next layer's q/k/v (the down kernel).
    fn expert_prefetches(&self, l: usize) -> ((u64, u64), (u64, usize)) {
        let down = match self.l2_prefetch.down {
            true => {
                let (_, blocks, scales) = self.w.layers[l].down.kernel_args();
                (blocks, scales)
            }
            false => (0, 0),
        };
        let next_qkv = self.w.layers.get(l + 1).map_or(NO_PREFETCH, |n| {
            self.prefetch(self.l2_prefetch.qkv, (n.qkv.ptr, n.qkv.bytes()))
        });
        (down, next_qkv)
    }

    /// Rows per warp so that one wave of `f`'s blocks (as many as fit on the device at
    /// once) shares `rows`: no second, partial wave.
    fn rows_per_warp(&self, f: &cudarc::driver::CudaFunction, smem: usize, rows: usize) -> usize {
        let per_sm = f
            .occupancy_max_active_blocks_per_multiprocessor(B1_THREADS, smem, None)
            .unwrap_or(1)
            .max(1) as usize;
        let warps = self.gpu.sms as usize * per_sm * B1_WARPS;
        rows.div_ceil(warps).max(1)
    }

    /// `y = W·x (+ bias)` (or `+=`) for one token with the batch-1 kernel; `gain` (0 for
    /// none) normalises x first. W bf16 `[rows, cols]`, cols ≤ 4096. `prefetch` (address,
    /// bytes): what the next kernel reads, fetched into L2 meanwhile.
    #[allow(clippy::too_many_arguments)]
    fn gemv1(
        &self,
        w: u64,
        bias: u64,
        x: u64,
        gain: u64,
        y: u64,
        rows: usize,
        cols: usize,
        accumulate: bool,
        prefetch: (u64, usize),
        prep: (u64, u64),
    ) -> Result<(), CudaError> {
        let g = &self.gpu;
        let prefetch = self.prefetch(self.l2_prefetch.router, prefetch);
        let f = if cols <= 12 * 256 {
            &g.k.gemv1_bf16_12
        } else {
            &g.k.gemv1_bf16_16
        };
        let rpw = self.rows_per_warp(f, cols * 4, rows);
        g.launch(
            f,
            (rows.div_ceil(B1_WARPS * rpw) as u32, 1, 1),
            (B1_THREADS, 1, 1),
            cols * 4,
            &[
                P(w),
                P(bias),
                P(x),
                P(gain),
                F(self.cfg.rms_norm_eps as f32),
                P(y),
                I(rows as i32),
                I(cols as i32),
                I(accumulate as i32),
                I(rpw as i32),
                P(prefetch.0),
                Arg::U(prefetch.1 as u64),
                P(prep.0),
                P(prep.1),
            ],
        )
    }

    /// The experts of one token with the batch-1 kernels: router logits, gate/up with the
    /// SwiGLU, down with the weighted sum into the residual.
    fn experts_one(&self, sc: &Scratch, l: usize) -> Result<(), CudaError> {
        let cfg = &self.cfg;
        let (g, kk, lw) = (&self.gpu, &self.gpu.k, &self.w.layers[l]);
        let (h, inter, e, k) = (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.num_local_experts,
            cfg.num_experts_per_tok,
        );
        let eps = cfg.rms_norm_eps as f32;
        let logits = sc.partial.ptr;
        self.gemv1(
            lw.router.ptr,
            lw.router_bias.ptr,
            sc.x.ptr,
            lw.mlp_norm.ptr,
            logits,
            e,
            h,
            false,
            NO_PREFETCH,
            match self.tc {
                Some(_) => (sc.prep.ptr, sc.prep_unscale.ptr),
                None => NO_PREP,
            },
        )?;
        if let Some(tc) = &self.tc {
            return self.experts_one_tc(tc, sc, l);
        }
        let (_, blocks, scales) = lw.gate_up.kernel_args();
        let (gate_up, down) = (&kk.moe1_gate_up, &kk.moe1_down);
        let ((pf_blocks, pf_scales), next_qkv) = self.expert_prefetches(l);
        let ppw = self.rows_per_warp(gate_up, expert_smem(h), inter * k);
        g.launch(
            gate_up,
            (inter.div_ceil(B1_WARPS * ppw) as u32, k as u32, 1),
            (B1_THREADS, 1, 1),
            expert_smem(h),
            &[
                P(blocks),
                P(scales),
                P(lw.gate_up_bias.ptr),
                P(sc.x.ptr),
                P(lw.mlp_norm.ptr),
                F(eps),
                P(logits),
                I(e as i32),
                I(k as i32),
                P(sc.act.ptr),
                I(h as i32),
                I(inter as i32),
                F(cfg.swiglu_limit),
                I(ppw as i32),
                P(pf_blocks),
                P(pf_scales),
            ],
        )?;
        let (_, blocks, scales) = lw.down.kernel_args();
        let rpw = self.rows_per_warp(down, expert_smem(inter), h * k);
        g.launch(
            down,
            (h.div_ceil(B1_WARPS * rpw) as u32, k as u32, 1),
            (B1_THREADS, 1, 1),
            expert_smem(inter),
            &[
                P(blocks),
                P(scales),
                P(lw.down_bias.ptr),
                P(sc.act.ptr),
                P(logits),
                I(e as i32),
                I(k as i32),
                P(sc.ypairs.ptr),
                P(sc.x.ptr),
                P(sc.moe_counters.ptr),
                I(h as i32),
                I(inter as i32),
                I(rpw as i32),
                // The next layer's q/k/v weights, next.
                P(next_qkv.0),
                Arg::U(next_qkv.1 as u64),
            ],
        )
    }

    /// Gate/up and down of one token's experts on tensor cores (the router's product has
    /// written the prepared input).
    fn experts_one_tc(
        &self,
        tc: &TensorCoreExperts,
        sc: &Scratch,
        l: usize,
    ) -> Result<(), CudaError> {
        let cfg = &self.cfg;
        let (g, kk, lw) = (&self.gpu, &self.gpu.k, &self.w.layers[l]);
        let (h, inter, e, k) = (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.num_local_experts,
            cfg.num_experts_per_tok,
        );
        let (_, blocks, scales) = lw.gate_up.kernel_args();
        let (_, down_blocks, down_scales) = lw.down.kernel_args();
        let ((pf_blocks, pf_scales), next_qkv) = self.expert_prefetches(l);
        g.launch(
            &kk.moe1_tc_gate_up,
            ((2 * inter / 16) as u32, k as u32, 1),
            (32 * tc.gate_up_splits as u32, 1, 1),
            TensorCoreExperts::smem(h, tc.gate_up_splits),
            &[
                P(blocks),
                P(scales),
                P(lw.gate_up_bias.ptr),
                P(sc.prep.ptr),
                P(sc.prep_unscale.ptr),
                P(sc.partial.ptr),
                I(e as i32),
                I(k as i32),
                P(sc.act_prep.ptr),
                I(h as i32),
                I(inter as i32),
                F(cfg.swiglu_limit),
                F(tc.act_sigma),
                P(pf_blocks),
                P(pf_scales),
            ],
        )?;
        g.launch(
            &kk.moe1_tc_down,
            ((h / 16) as u32, k as u32, 1),
            (32 * tc.down_splits as u32, 1, 1),
            TensorCoreExperts::smem(inter, tc.down_splits),
            &[
                P(down_blocks),
                P(down_scales),
                P(lw.down_bias.ptr),
                P(sc.act_prep.ptr),
                F(1.0 / tc.act_sigma * 16384.0),
                P(sc.partial.ptr),
                I(e as i32),
                I(k as i32),
                P(sc.ypairs.ptr),
                P(sc.x.ptr),
                P(sc.moe_counters.ptr),
                I(h as i32),
                I(inter as i32),
                P(next_qkv.0),
                Arg::U(next_qkv.1 as u64),
            ],
        )
    }

    /// `y = W·x` for `n ≤ NT_MAX` tokens with `gemv_bf16` (a thread per row); `shape` is
    /// (rows, cols, n); `gain` (0 for none) normalises x first.
    #[allow(clippy::too_many_arguments)]
    fn gemv_small(
        &self,
        w: u64,
        bias: u64,
        x: u64,
        gain: u64,
        y: u64,
        (rows, cols, n): (usize, usize, usize),
        mode: GemvMode,
    ) -> Result<(), CudaError> {
        let (splits, mode) = match mode {
            GemvMode::Store => (1, 0),
            GemvMode::Accumulate => (1, 1),
            GemvMode::Partial { splits } => (splits, 2),
        };
        let g = &self.gpu;
        g.launch(
            &g.k.gemv_bf16,
            (rows.div_ceil(32) as u32, splits as u32, 1),
            (256, 1, 1),
            n * cols * 4,
            &[
                P(w),
                P(bias),
                P(x),
                P(gain),
                F(self.cfg.rms_norm_eps as f32),
                P(y),
                I(rows as i32),
                I(cols as i32),
                I(n as i32),
                I(mode),
            ],
        )
    }

    fn experts_small(&self, sc: &Scratch, l: usize, n: usize) -> Result<(), CudaError> {
        let cfg = &self.cfg;
        let (g, kk, lw) = (&self.gpu, &self.gpu.k, &self.w.layers[l]);
        let (h, inter, e, k) = (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.num_local_experts,
            cfg.num_experts_per_tok,
        );
        let eps = cfg.rms_norm_eps as f32;
        let splits = ROUTER_SPLITS.min(h / 16);
        self.gemv_small(
            lw.router.ptr,
            0,
            sc.x.ptr,
            lw.mlp_norm.ptr,
            sc.partial.ptr,
            (e, h, n),
            GemvMode::Partial { splits },
        )?;
        self.route(sc, lw.router_bias.ptr, sc.partial.ptr, splits, n)?;
        let active = e.min(n * k) as u32;
        let (fmt, blocks, scales) = lw.gate_up.kernel_args();
        g.launch(
            &kk.moe_gate_up,
            ((2 * inter).div_ceil(32) as u32, active, 1),
            (256, 1, 1),
            n * h * 4,
            &[
                I(fmt),
                P(blocks),
                P(scales),
                P(lw.gate_up_bias.ptr),
                P(sc.x.ptr),
                P(lw.mlp_norm.ptr),
                F(eps),
                P(sc.rmeta.ptr),
                P(sc.act.ptr),
                I(h as i32),
                I(inter as i32),
                I(e as i32),
                I(k as i32),
                I(n as i32),
                F(cfg.swiglu_limit),
            ],
        )?;
        let (fmt, blocks, scales) = lw.down.kernel_args();
        g.launch(
            &kk.moe_down,
            (h.div_ceil(32) as u32, active, 1),
            (256, 1, 1),
            n * inter * 4,
            &[
                I(fmt),
                P(blocks),
                P(scales),
                P(lw.down_bias.ptr),
                P(sc.act.ptr),
                P(sc.rmeta.ptr),
                P(sc.ypairs.ptr),
                I(h as i32),
                I(inter as i32),
                I(e as i32),
            ],
        )?;
        g.launch(
            &kk.moe_combine,
            (n as u32, 1, 1),
            (256, 1, 1),
            0,
            &[
                P(sc.x.ptr),
                P(sc.ypairs.ptr),
                P(0),
                P(0),
                P(sc.pair_expert.ptr),
                P(sc.pair_weight.ptr),
                I(h as i32),
                I(k as i32),
            ],
        )
    }

    fn experts_batched(
        &self,
        widened: &mut Option<Buf>,
        sc: &Scratch,
        l: usize,
        n: usize,
    ) -> Result<(), CudaError> {
        let cfg = &self.cfg;
        let (g, kk, lw) = (&self.gpu, &self.gpu.k, &self.w.layers[l]);
        let (h, inter, e, k) = (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.num_local_experts,
            cfg.num_experts_per_tok,
        );
        let nk = n * k;
        self.rmsnorm(sc.x.ptr, lw.mlp_norm.ptr, n, sc.xn.ptr, sc.xb.ptr)?;
        g.gemm_f32(lw.router_f32.ptr, sc.xn.ptr, sc.partial.ptr, e, h, n)?;
        self.route(sc, lw.router_bias.ptr, sc.partial.ptr, 1, n)?;
        // Which experts have how many pairs: the host sizes each product from it.
        let mut head = vec![0i32; 1 + 3 * e];
        g.read(sc.rmeta.ptr, &mut head)?;
        let count = &head[1 + e..1 + 2 * e];
        let first = &head[1 + 2 * e..1 + 3 * e];
        g.launch(
            &kk.gather_pairs_bf16,
            (nk as u32, 1, 1),
            (256, 1, 1),
            0,
            &[
                P(sc.xb.ptr),
                P(sc.rmeta.ptr),
                P(sc.xs_sorted.ptr),
                I(h as i32),
                I(e as i32),
                I(k as i32),
            ],
        )?;
        let matrix = |m: &ExpertWeights,
                      ex: usize,
                      rows: usize,
                      cols: usize,
                      widened: &mut Option<Buf>|
         -> Result<u64, CudaError> {
            match m {
                ExpertWeights::Bf16 { weight } => Ok(weight.ptr + (ex * rows * cols * 2) as u64),
                ExpertWeights::Mxfp4 { blocks, scales } => {
                    let need = rows * cols * 2;
                    if widened.as_ref().is_none_or(|b| b.bytes() < need) {
                        *widened = Some(g.alloc(2 * inter * h * 2)?);
                    }
                    let out = widened.as_ref().expect("allocated").ptr;
                    let bytes = rows * cols / 2;
                    g.launch(
                        &kk.mxfp4_to_bf16,
                        (bytes.div_ceil(256) as u32, 1, 1),
                        (256, 1, 1),
                        0,
                        &[
                            P(blocks.ptr + (ex * bytes) as u64),
                            P(scales.ptr + (ex * rows * cols / 32) as u64),
                            P(out),
                            Arg::U((rows * cols) as u64),
                        ],
                    )?;
                    Ok(out)
                }
            }
        };
        for ex in 0..e {
            let (c, f) = (count[ex] as usize, first[ex] as usize);
            if c == 0 {
                continue;
            }
            let wt = matrix(&lw.gate_up, ex, 2 * inter, h, widened)?;
            g.gemm_bf16(
                wt,
                sc.xs_sorted.ptr + (f * h * 2) as u64,
                sc.gate_up.ptr + (f * 2 * inter * 4) as u64,
                2 * inter,
                h,
                c,
                0.0,
            )?;
        }
        g.launch(
            &kk.swiglu_sorted,
            (nk as u32, 1, 1),
            (256, 1, 1),
            0,
            &[
                P(sc.gate_up.ptr),
                P(lw.gate_up_bias.ptr),
                P(sc.rmeta.ptr),
                P(sc.pair_expert.ptr),
                P(sc.act_b.ptr),
                I(inter as i32),
                I(e as i32),
                F(cfg.swiglu_limit),
            ],
        )?;
        for ex in 0..e {
            let (c, f) = (count[ex] as usize, first[ex] as usize);
            if c == 0 {
                continue;
            }
            let wt = matrix(&lw.down, ex, h, inter, widened)?;
            g.gemm_bf16(
                wt,
                sc.act_b.ptr + (f * inter * 2) as u64,
                sc.ys.ptr + (f * h * 4) as u64,
                h,
                inter,
                c,
                0.0,
            )?;
        }
        let where_ = sc.rmeta.ptr + 4 * (1 + 3 * e + nk) as u64;
        g.launch(
            &kk.moe_combine,
            (n as u32, 1, 1),
            (256, 1, 1),
            0,
            &[
                P(sc.x.ptr),
                P(sc.ys.ptr),
                P(where_),
                P(lw.down_bias.ptr),
                P(sc.pair_expert.ptr),
                P(sc.pair_weight.ptr),
                I(h as i32),
                I(k as i32),
            ],
        )
    }

    fn route(
        &self,
        sc: &Scratch,
        bias: u64,
        partial: u64,
        splits: usize,
        n: usize,
    ) -> Result<(), CudaError> {
        let cfg = &self.cfg;
        self.gpu.launch(
            &self.gpu.k.route,
            (1, 1, 1),
            (1024, 1, 1),
            0,
            &[
                P(partial),
                I(splits as i32),
                P(bias),
                I(n as i32),
                I(cfg.num_local_experts as i32),
                I(cfg.num_experts_per_tok as i32),
                P(sc.rmeta.ptr),
                P(sc.pair_expert.ptr),
                P(sc.pair_weight.ptr),
            ],
        )
    }

    /// The logits buffers for `m` wanted rows (reallocation drops the captured graphs).
    fn ensure_logits(&self, state: &mut State, m: usize) -> Result<(), CudaError> {
        let (h, vocab) = (self.cfg.hidden_size, self.cfg.vocab_size);
        let rows = m.clamp(1, LOGIT_CHUNK).next_power_of_two().min(LOGIT_CHUNK);
        if state
            .logits
            .as_ref()
            .is_none_or(|b| b.bytes() < rows * vocab * 4)
        {
            state.graphs.clear();
            state.logits = None;
            state.logits = Some(self.gpu.alloc(rows * vocab * 4)?);
        }
        if m > NT_MAX && state.logits_b.is_none() {
            state.logits_b = Some(self.gpu.alloc(LOGIT_CHUNK * h * 2)?);
        }
        Ok(())
    }

    /// Wanted rows `start..start + c` normalised and through the unembedding into the logits
    /// buffer (the gather of every wanted row is queued with the first chunk).
    fn enqueue_unembed(
        &self,
        state: &State,
        plan: &Plan,
        start: usize,
        c: usize,
        d: &StepPointers,
    ) -> Result<(), CudaError> {
        let cfg = &self.cfg;
        let (h, vocab) = (cfg.hidden_size, cfg.vocab_size);
        let g = &self.gpu;
        let sc = state.scratch.as_ref().expect("ensured");
        let logits = state.logits.as_ref().expect("ensured").ptr;
        if plan.one {
            // One token, its logits wanted: the row is x itself.
            return self.gemv1(
                self.w.unembedding.ptr,
                0,
                sc.x.ptr,
                self.w.final_norm.ptr,
                logits,
                vocab,
                h,
                false,
                NO_PREFETCH,
                NO_PREP,
            );
        }
        if start == 0 {
            g.launch(
                &g.k.gather_rows,
                (d.wanted_count() as u32, 1, 1),
                (256, 1, 1),
                0,
                &[P(sc.x.ptr), P(d.wanted), P(sc.rows.ptr), I(h as i32)],
            )?;
        }
        let rows = sc.rows.ptr + (start * h * 4) as u64;
        if c <= NT_MAX {
            self.gemv_small(
                self.w.unembedding.ptr,
                0,
                rows,
                self.w.final_norm.ptr,
                logits,
                (vocab, h, c),
                GemvMode::Store,
            )
        } else {
            let xb = state.logits_b.as_ref().expect("ensured").ptr;
            self.rmsnorm(rows, self.w.final_norm.ptr, c, 0, xb)?;
            g.gemm_bf16(self.w.unembedding.ptr, xb, logits, vocab, h, c, 0.0)
        }
    }

    fn read_logits(
        &self,
        state: &State,
        count: usize,
        fill: &mut dyn FnMut(&[f32]),
    ) -> Result<(), CudaError> {
        self.gpu
            .read_staged(state.logits.as_ref().expect("ensured").ptr, count, fill)
    }

    fn rmsnorm(
        &self,
        x: u64,
        gain: u64,
        n: usize,
        out_f: u64,
        out_b: u64,
    ) -> Result<(), CudaError> {
        self.gpu.launch(
            &self.gpu.k.rmsnorm,
            (n as u32, 1, 1),
            (256, 1, 1),
            0,
            &[
                P(x),
                P(gain),
                F(self.cfg.rms_norm_eps as f32),
                I(self.cfg.hidden_size as i32),
                P(out_f),
                P(out_b),
            ],
        )
    }

    fn add_bias(
        &self,
        y: u64,
        bias: u64,
        n: usize,
        rows: usize,
        accumulate: bool,
    ) -> Result<(), CudaError> {
        let total = n * rows;
        self.gpu.launch(
            &self.gpu.k.add_bias,
            (total.div_ceil(256) as u32, 1, 1),
            (256, 1, 1),
            0,
            &[
                P(y),
                P(bias),
                I(n as i32),
                I(rows as i32),
                I(accumulate as i32),
            ],
        )
    }

    fn to_bf16(&self, x: u64, out: u64, count: usize) -> Result<(), CudaError> {
        self.gpu.launch(
            &self.gpu.k.f32_to_bf16,
            (count.div_ceil(256) as u32, 1, 1),
            (256, 1, 1),
            0,
            &[P(x), P(out), Arg::U(count as u64)],
        )
    }

    fn ensure_scratch(
        &self,
        state: &mut State,
        n: usize,
        meta_len: usize,
    ) -> Result<(), CudaError> {
        if let Some(sc) = &state.scratch {
            if sc.tokens >= n && sc.meta_len >= meta_len {
                return Ok(());
            }
        }
        let cfg = &self.cfg;
        let cap = n.next_power_of_two().max(NT_MAX);
        let meta_cap = meta_len.next_power_of_two().max(1024);
        let (h, qd, kvd, inter, e, k) = (
            cfg.hidden_size,
            cfg.q_dim(),
            cfg.kv_dim(),
            cfg.intermediate_size,
            cfg.num_local_experts,
            cfg.num_experts_per_tok,
        );
        let nk = cap * k;
        // Free the old buffers first: the new ones are larger. Graphs point at the old ones.
        state.graphs.clear();
        state.scratch = None;
        let g = &self.gpu;
        state.scratch = Some(Scratch {
            tokens: cap,
            meta: g.alloc(meta_cap * 4)?,
            meta_len: meta_cap,
            x: g.alloc(cap * h * 4)?,
            xn: g.alloc(cap * h * 4)?,
            xb: g.alloc(cap * h.max(qd) * 2)?,
            qkv: g.alloc(cap * (qd + 2 * kvd) * 4)?,
            q: g.alloc(cap * qd * 4)?,
            attn: g.alloc(cap * qd * 4)?,
            attn_partial: g.alloc(NT_MAX * cfg.num_attention_heads * ATTN_SPLITS * 66 * 4)?,
            attn_counters: g.alloc(NT_MAX * cfg.num_key_value_heads * 4)?,
            moe_counters: g.alloc(h.div_ceil(B1_WARPS) * 4)?,
            partial: g.alloc((ROUTER_SPLITS * NT_MAX).max(cap) * e * 4)?,
            rmeta: g.alloc((1 + 3 * e + 2 * nk) * 4)?,
            pair_expert: g.alloc(nk * 4)?,
            pair_weight: g.alloc(nk * 4)?,
            act: g.alloc(NT_MAX * k * inter * 4)?,
            prep: g.alloc(h * 4)?,
            prep_unscale: g.alloc(16)?,
            act_prep: g.alloc(k * inter * 4)?,
            ypairs: g.alloc(NT_MAX * k * h * 4)?,
            xs_sorted: g.alloc(nk * h * 2)?,
            gate_up: g.alloc(nk * 2 * inter * 4)?,
            act_b: g.alloc(nk * inter * 2)?,
            ys: g.alloc(nk * h * 4)?,
            rows: g.alloc(cap * h * 4)?,
        });
        Ok(())
    }
}

/// Warps that may split one tile of the tensor-core expert kernels (`TC_MAX_SPLITS` in
/// kernels.cu: the size of their reduction buffer).
const TC_MAX_SPLITS: usize = 8;

/// The batch-1 experts on tensor cores (`moe1_tc_*` in kernels.cu): how many warps split
/// each 16-row tile, and the fixed power-of-two scale of the activations fed to `down`.
#[derive(Clone, Copy, Debug)]
struct TensorCoreExperts {
    gate_up_splits: usize,
    down_splits: usize,
    /// σ with |act|·σ < 2^15 for every activation (|act| ≤ limit·(limit + 1)), so that the
    /// f16 hi/lo pair of each activation is in range.
    act_sigma: f32,
}

impl TensorCoreExperts {
    /// Dynamic shared memory of a kernel over `cols` inputs with `splits` warps: the tile's
    /// scales, then each warp's ring (`TC_STAGES` stages of 16 rows × (`TC_S` blocks + 16
    /// bytes of padding), kernels.cu).
    fn smem(cols: usize, splits: usize) -> usize {
        const TC_STAGES: usize = 4;
        const TC_STAGE: usize = 16 * (4 * 16 + 16);
        (16 * (cols / 32)).next_multiple_of(16) + splits * TC_STAGES * TC_STAGE
    }

    /// `None` where the shapes or the SwiGLU clamp do not fit the kernels (or
    /// `GOSSAMER_CUDA_MOE_SIMT=1` asks for the SIMT kernels).
    fn plan(cfg: &ModelConfig, sms: usize) -> Option<TensorCoreExperts> {
        let (h, inter, k) = (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.num_experts_per_tok,
        );
        let bound = cfg.swiglu_limit as f64 * (cfg.swiglu_limit as f64 + 1.0);
        if std::env::var_os("GOSSAMER_CUDA_MOE_SIMT").is_some()
            || h % 32 != 0
            || inter % 32 != 0
            || !(bound.is_finite() && bound > 0.0)
        {
            return None;
        }
        let act_sigma = (30000.0 / bound).log2().floor().clamp(-60.0, 60.0).exp2() as f32;
        // Enough warps for about `per_sm` resident per multiprocessor: loads in flight hide
        // memory latency, and no tile is split finer than a few blocks per warp.
        let per_sm: usize = std::env::var("GOSSAMER_CUDA_TC_WARPS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(16);
        let splits = |tiles: usize, blocks: usize| {
            (sms * per_sm)
                .div_ceil(tiles)
                .clamp(1, TC_MAX_SPLITS)
                .min(blocks.div_ceil(8).max(1))
        };
        Some(TensorCoreExperts {
            gate_up_splits: splits(2 * inter / 16 * k, h / 32),
            down_splits: splits(h / 16 * k, inter / 32),
            act_sigma,
        })
    }
}

/// Which batch-1 kernels fetch the next kernel's weights into L2 while they run (Hopper's
/// bulk prefetch). It pays while a kernel waits on latency rather than on memory: attention
/// fetching the output projection; a kernel that streams its own weights only competes.
/// `GOSSAMER_CUDA_PREFETCH=attention,router,down,qkv` (any subset, or `none`) overrides.
#[derive(Clone, Copy, Debug)]
struct L2Prefetch {
    /// Attention fetches the output projection.
    attention: bool,
    /// The output projection fetches the router.
    router: bool,
    /// The experts' gate/up fetches the routed experts' down rows.
    down: bool,
    /// The experts' down fetches the next layer's q/k/v.
    qkv: bool,
}

impl L2Prefetch {
    fn from_env() -> L2Prefetch {
        match std::env::var("GOSSAMER_CUDA_PREFETCH") {
            Ok(list) => L2Prefetch {
                attention: list.contains("attention"),
                router: list.contains("router"),
                down: list.contains("down"),
                qkv: list.contains("qkv"),
            },
            // Measured on an H200 (BENCHMARKS.md): off is fastest with the tensor-core
            // experts, 431 tok/s against 426 with attention and router fetching.
            Err(_) => L2Prefetch {
                attention: false,
                router: false,
                down: false,
                qkv: false,
            },
        }
    }
}

/// What `gemv_bf16` does with its sums (`mode` in kernels.cu).
#[derive(Clone, Copy)]
enum GemvMode {
    /// `y = W·x + bias`.
    Store,
    /// `y += W·x + bias` (a residual).
    Accumulate,
    /// Partial sums over `splits` column ranges, no bias (the router, summed by `route`).
    Partial { splits: usize },
}

/// Which kernels a step takes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Plan {
    n: usize,
    /// At most NT_MAX tokens: hand-written products instead of cuBLAS.
    small: bool,
    /// Every sequence adds one token: attention with RoPE, the KV write and the split
    /// merge folded in.
    single: bool,
    /// One token and a model the batch-1 kernels fit: the full-width decode kernels.
    one: bool,
}

/// A step's integers, uploaded at once: tokens `[n]`, positions `[n]`, each token's offset
/// into the block tables `[n]`, the rows that need logits `[m]`, then every sequence's block
/// table. The kernels read them through [`StepPointers`].
#[derive(Debug, PartialEq, Eq)]
struct StepMeta {
    ints: Vec<i32>,
    n: usize,
    m: usize,
    /// Logit rows per sequence.
    counts: Vec<usize>,
}

impl StepMeta {
    /// `steps`: each sequence's new tokens and which logits it wants; `lens`: its cached
    /// positions; `tables`: its blocks.
    fn pack(steps: &[(&[u32], Logits)], lens: &[usize], tables: &[Vec<u32>]) -> StepMeta {
        let n: usize = steps.iter().map(|s| s.0.len()).sum();
        let mut ints: Vec<i32> =
            Vec::with_capacity(4 * n + tables.iter().map(Vec::len).sum::<usize>());
        let mut pos = Vec::with_capacity(n);
        let mut table_at = Vec::with_capacity(n);
        let mut wanted = Vec::new();
        let mut counts = Vec::with_capacity(steps.len());
        let (mut table_offset, mut row) = (0usize, 0usize);
        for (i, (tokens, logits)) in steps.iter().enumerate() {
            ints.extend(tokens.iter().map(|&t| t as i32));
            let len = tokens.len();
            for j in 0..len {
                pos.push((lens[i] + j) as i32);
                table_at.push(table_offset as i32);
            }
            let rows = match logits {
                Logits::Last => row + len - 1..row + len,
                Logits::All => row..row + len,
                Logits::None => row..row,
            };
            counts.push(rows.len());
            wanted.extend(rows.map(|r| r as i32));
            row += len;
            table_offset += tables[i].len();
        }
        let m = wanted.len();
        ints.extend(&pos);
        ints.extend(&table_at);
        ints.extend(&wanted);
        for t in tables {
            ints.extend(t.iter().map(|&b| b as i32));
        }
        StepMeta { ints, n, m, counts }
    }
}

/// Where this step's integers sit in the uploaded metadata.
struct StepPointers {
    tokens: u64,
    pos: u64,
    table_at: u64,
    wanted: u64,
    tables: u64,
}

impl StepPointers {
    /// Rows wanted: the metadata lays them between `wanted` and `tables`.
    fn wanted_count(&self) -> usize {
        ((self.tables - self.wanted) / 4) as usize
    }
}

/// Dynamic shared memory of the batch-1 expert kernels for an input `cols` wide.
fn expert_smem(cols: usize) -> usize {
    cols * 4
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl Drop for CudaBackend {
    fn drop(&mut self) {
        if let Some(p) = &self.gpu.profiler {
            eprintln!("{}", p.report());
        }
    }
}

impl Accelerator for CudaBackend {
    fn describe(&self) -> String {
        format!("cuda:{} ({})", self.gpu.ordinal, self.gpu.name)
    }

    fn forward_batch(&self, steps: &mut [Step]) -> Result<Vec<Vec<f32>>, ModelError> {
        Ok(self.step(steps)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout `rope_store`, `attention*` and `gather_rows` read: two sequences, one
    /// continuing at position 40 with two tokens (all logits), one new with three (last).
    #[test]
    fn step_metadata_layout() {
        let a: &[u32] = &[7, 8];
        let b: &[u32] = &[1, 2, 3];
        let meta = StepMeta::pack(
            &[(a, Logits::All), (b, Logits::Last)],
            &[40, 0],
            &[vec![5, 9], vec![2]],
        );
        assert_eq!((meta.n, meta.m), (5, 3));
        assert_eq!(meta.counts, [2, 1]);
        #[rustfmt::skip]
        let want = [
            7, 8, 1, 2, 3,      // tokens
            40, 41, 0, 1, 2,    // positions
            0, 0, 2, 2, 2,      // block-table offsets
            0, 1, 4,            // rows with logits
            5, 9, 2,            // block tables
        ];
        assert_eq!(meta.ints, want);
        // A prefill chunk that needs no logits adds no rows.
        let none = StepMeta::pack(&[(b, Logits::None)], &[0], &[vec![0]]);
        assert_eq!((none.m, none.counts.as_slice()), (0, &[0][..]));
    }
}
