//! The CUDA backend against the reference goldens and against the CPU model.
//!
//! These need an NVIDIA GPU with the driver, NVRTC and cuBLAS libraries; elsewhere each test
//! prints why it is skipped and passes (CI has no GPU). `kernels_compile` needs only
//! libnvrtc (`LD_LIBRARY_PATH` pointing at a CUDA toolkit, or the `nvidia-cuda-nvrtc`
//! wheel's `lib` folder).
//!
//! Tolerances. The GPU's decode path (≤ 8 tokens per step) computes like the CPU, f32
//! activations against bf16/MXFP4 weights, so token-by-token logits must match the f32
//! reference within `DECODE_TOLERANCE` and its greedy continuation exactly. The batched path
//! (prefill) rounds the activations to bf16 for the tensor cores, so, like the CPU's fast
//! mode, its mean |Δlogit| over the reference's top-k entries must stay below that of the
//! reference's own bf16 run.

use std::sync::Arc;

use gossamer_checkpoint::synth::{Preset, SynthOptions};
use gossamer_checkpoint::Checkpoint;
use gossamer_cuda::{CudaBackend, CudaOptions};
use gossamer_model::{GptOss, Logits, ModelError, Step};

#[path = "../../../tests/support/golden.rs"]
mod golden;

const DECODE_TOLERANCE: f32 = 2e-3;

/// Prints past the test harness's capture (`eprintln!` is captured for passing tests), so a
/// skip shows in the run's output.
fn say_skipped(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

fn gpu_or_skip(test: &str) -> bool {
    match gossamer_cuda::unavailable_reason() {
        None => true,
        Some(why) => {
            say_skipped(test, &format!("no usable CUDA GPU here ({why})"));
            false
        }
    }
}

#[test]
fn kernels_compile() {
    if !gossamer_cuda::nvrtc_present() {
        say_skipped(
            "kernels_compile",
            "libnvrtc not found (set LD_LIBRARY_PATH)",
        );
        return;
    }
    for (major, minor) in [(8, 0), (9, 0)] {
        let ptx = gossamer_cuda::compile_kernels(major, minor).unwrap();
        for name in ["gemv_bf16", "moe_gate_up", "moe_down", "attention", "route"] {
            assert!(
                ptx.contains(&format!(".entry {name}")),
                "{name} missing from the PTX"
            );
        }
    }
}

/// A random checkpoint of `preset`'s shapes, MXFP4 experts, in the Hugging Face layout.
fn checkpoint(preset: Preset, seed: u64, layers: Option<usize>) -> (tempfile::TempDir, Checkpoint) {
    let mut o = SynthOptions::new(preset, seed);
    o.layers = layers;
    golden::write_and_open(&o)
}

fn gpu_model(ck: &Checkpoint, opts: &CudaOptions) -> (GptOss, Arc<CudaBackend>) {
    let backend = CudaBackend::new(ck, opts, &mut |_, _| {}).unwrap();
    let mut model = GptOss::new(ck);
    model.set_accelerator(backend.clone());
    (model, backend)
}

fn small_pool() -> CudaOptions {
    CudaOptions {
        ordinal: 0,
        kv_cache_bytes: Some(256 << 20),
    }
}

#[test]
fn goldens_on_gpu() {
    if !gpu_or_skip("goldens_on_gpu") {
        return;
    }
    let mut failures = Vec::new();
    for (path, golden) in golden::all() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let (_dir, ck) = golden::write_and_open(&golden.checkpoint.generator.options());
        let (model, _) = gpu_model(&ck, &small_pool());
        let vocab = ck.config.vocab_size;
        // Batched path: whole prompts.
        let (mut sum, mut count, mut max) = (0f64, 0usize, 0f32);
        for p in &golden.prompts {
            let mut cache = model.new_cache();
            let logits = model.forward(&p.tokens, &mut cache, Logits::All).unwrap();
            for (row, reference) in logits.chunks_exact(vocab).zip(&p.positions) {
                for e in &reference.top {
                    let d = (row[e.id as usize] - e.logit).abs();
                    assert!(d.is_finite(), "{name}: non-finite logit");
                    sum += d as f64;
                    max = max.max(d);
                    count += 1;
                }
            }
        }
        let mean = sum / count as f64;
        let ref_mean = golden.bf16_run["mean_abs_dlogit"].as_f64().unwrap();
        eprintln!(
            "{name}: batched mean |Δlogit| {mean:.2e} (max {max:.2e}); reference bf16 run {ref_mean:.2e}"
        );
        if mean >= ref_mean {
            failures.push(format!("{name}: batched path drifts more than the reference's bf16 run ({mean:.3e} vs {ref_mean:.3e})"));
        }
        // Decode path: each prompt one token at a time, then the greedy continuation.
        let (mut worst, mut sum, mut count) = (0f32, 0f64, 0usize);
        for (pi, p) in golden.prompts.iter().enumerate() {
            let mut cache = model.new_cache();
            let mut row = Vec::new();
            for (&t, reference) in p.tokens.iter().zip(&p.positions) {
                row = model.forward(&[t], &mut cache, Logits::Last).unwrap();
                for e in &reference.top {
                    let d = (row[e.id as usize] - e.logit).abs();
                    worst = worst.max(d);
                    sum += d as f64;
                    count += 1;
                }
            }
            if let Some(why) = p.greedy_mismatch(&model, &mut cache, row) {
                failures.push(format!("{name} prompt {pi}: {why}"));
            }
        }
        eprintln!(
            "{name}: decode path mean |Δlogit| {:.2e}, max {worst:.2e} (tolerance {DECODE_TOLERANCE:.0e})",
            sum / count as f64
        );
        if worst > DECODE_TOLERANCE {
            failures.push(format!(
                "{name}: decode path max |Δlogit| {worst:.3e} over {DECODE_TOLERANCE:.0e}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The batch-1 kernels at the real 20b shapes (2880-wide rows: the tensor-core expert
/// kernels split each row range over several warps and end on a partial stage, which the
/// goldens' small shapes never do): token-by-token logits against the CPU model's f32 path.
#[test]
fn full_shape_decode_matches_the_cpu() {
    if !gpu_or_skip("full_shape_decode_matches_the_cpu") {
        return;
    }
    let (_dir, ck) = checkpoint(Preset::Gpt20b, 5, Some(2));
    let (gpu, _) = gpu_model(&ck, &small_pool());
    let cpu = GptOss::new(&ck);
    let (mut gc, mut cc) = (gpu.new_cache(), cpu.new_cache());
    let mut worst = 0f32;
    for &t in &[200006u32, 17360, 200008, 3575, 11, 1495, 382, 290] {
        let g = gpu.forward(&[t], &mut gc, Logits::Last).unwrap();
        let c = cpu.forward(&[t], &mut cc, Logits::Last).unwrap();
        assert_eq!(
            golden::argmax(&g),
            golden::argmax(&c),
            "greedy token differs"
        );
        for (a, b) in g.iter().zip(&c) {
            assert!(a.is_finite(), "non-finite logit");
            worst = worst.max((a - b).abs());
        }
    }
    eprintln!("20b shapes, 2 layers: GPU decode vs CPU max |Δlogit| {worst:.2e}");
    assert!(worst <= DECODE_TOLERANCE, "max |Δlogit| {worst:.3e}");
}

/// Several sequences in one step (prefill chunks next to decode tokens, both paths) give
/// what each gives alone; and the KV pool running out is an error that changes nothing.
#[test]
fn batches_match_single_sequences_and_kv_exhaustion_is_an_error() {
    if !gpu_or_skip("batches_match_single_sequences_and_kv_exhaustion_is_an_error") {
        return;
    }
    let (_dir, ck) = checkpoint(Preset::SmallVocab, 11, Some(3));
    let (model, _) = gpu_model(&ck, &small_pool());
    let vocab = ck.config.vocab_size;
    let prompts: [Vec<u32>; 3] = [
        (0..40).map(|i| (i * 37 + 5) % vocab as u32).collect(),
        (0..3).map(|i| (i * 101 + 7) % vocab as u32).collect(),
        (0..70).map(|i| (i * 13 + 1) % vocab as u32).collect(),
    ];
    // Alone: prompt, then two decode tokens.
    let alone: Vec<Vec<Vec<f32>>> = prompts
        .iter()
        .map(|p| {
            let mut c = model.new_cache();
            let a = model.forward(p, &mut c, Logits::Last).unwrap();
            let b = model.forward(&[1], &mut c, Logits::Last).unwrap();
            let d = model.forward(&[2], &mut c, Logits::Last).unwrap();
            vec![a, b, d]
        })
        .collect();
    let mut caches: Vec<_> = prompts.iter().map(|_| model.new_cache()).collect();
    let mut got: Vec<Vec<Vec<f32>>> = vec![Vec::new(); 3];
    for round in 0..3 {
        let toks: Vec<Vec<u32>> = match round {
            0 => prompts.to_vec(),
            1 => vec![vec![1]; 3],
            _ => vec![vec![2]; 3],
        };
        let mut steps: Vec<Step> = caches
            .iter_mut()
            .zip(&toks)
            .map(|(c, t)| Step {
                tokens: t,
                cache: c,
                logits: Logits::Last,
            })
            .collect();
        for (i, out) in model
            .forward_batch(&mut steps)
            .unwrap()
            .into_iter()
            .enumerate()
        {
            got[i].push(out);
        }
    }
    let mut worst = 0f32;
    for (a, b) in alone.iter().flatten().zip(got.iter().flatten()) {
        for (x, y) in a.iter().zip(b) {
            worst = worst.max((x - y).abs());
        }
    }
    eprintln!("batched vs alone: max |Δlogit| {worst:.2e}");
    assert!(
        worst < 0.25,
        "batched steps differ from single ones by {worst}"
    );

    // A pool of two blocks: a 100-token prompt cannot fit, and the cache stays usable.
    let tiny = CudaOptions {
        ordinal: 0,
        kv_cache_bytes: Some(2 * 3 * 2 * 32 * ck.config.kv_dim() * 4),
    };
    let (model, _) = gpu_model(&ck, &tiny);
    let mut cache = model.new_cache();
    let long: Vec<u32> = (0..100).collect();
    let err = model.forward(&long, &mut cache, Logits::Last).unwrap_err();
    assert!(
        matches!(err, ModelError::Device(ref m) if m.contains("KV cache is full")),
        "{err}"
    );
    assert_eq!(cache.len(), 0);
    model
        .forward(&long[..40], &mut cache, Logits::Last)
        .unwrap();
    assert_eq!(cache.len(), 40);
    // No room to fork: the copy is marked lost (an error when used), the original goes on.
    let mut fork = cache.clone();
    model.forward(&[9], &mut cache, Logits::Last).unwrap();
    let err = model.forward(&[9], &mut fork, Logits::Last).unwrap_err();
    assert!(matches!(err, ModelError::CacheLost), "{err}");
}

/// A forked cache continues exactly like the original.
#[test]
fn forked_cache_continues_like_the_original() {
    if !gpu_or_skip("forked_cache_continues_like_the_original") {
        return;
    }
    let (_dir, ck) = checkpoint(Preset::Tiny, 2, None);
    let (model, _) = gpu_model(&ck, &small_pool());
    let mut cache = model.new_cache();
    let prompt: Vec<u32> = (0..45).map(|i| i * 7 + 3).collect();
    model.forward(&prompt, &mut cache, Logits::Last).unwrap();
    let mut fork = cache.clone();
    let a = model.forward(&[5, 6], &mut cache, Logits::All).unwrap();
    let b = model.forward(&[5, 6], &mut fork, Logits::All).unwrap();
    assert_eq!(a, b);
}

#[test]
fn missing_device_is_a_clear_error() {
    if !gpu_or_skip("missing_device_is_a_clear_error") {
        return;
    }
    let (_dir, ck) = checkpoint(Preset::Tiny, 1, Some(1));
    let opts = CudaOptions {
        ordinal: 99,
        ..Default::default()
    };
    let err = CudaBackend::new(&ck, &opts, &mut |_, _| {}).err().unwrap();
    assert!(err.to_string().contains("cuda:99 does not exist"), "{err}");
}
