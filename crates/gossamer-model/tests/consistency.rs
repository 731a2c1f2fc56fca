//! Properties of the forward pass that need no reference implementation: the KV cache, the
//! two layouts, sharding and the two expert formats must all compute the same logits.

use gossamer_checkpoint::synth::{write_checkpoint, Preset, SynthOptions};
use gossamer_checkpoint::{Checkpoint, ExpertFormat, Layout};
use gossamer_model::{GptOss, Logits};

fn build(opts: &SynthOptions) -> (tempfile::TempDir, Checkpoint) {
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(opts, dir.path(), &mut |_, _| {}).unwrap();
    let ck = Checkpoint::open(dir.path()).unwrap();
    (dir, ck)
}

fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % vocab as u64) as u32
        })
        .collect()
}

fn full_logits(ck: &Checkpoint, toks: &[u32]) -> Vec<f32> {
    let model = GptOss::new(ck);
    let mut cache = model.new_cache();
    model.forward(toks, &mut cache, Logits::All).unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Small enough for debug builds, with a window of 8 so the cache trims many times.
fn small_opts(seed: u64) -> SynthOptions {
    let mut o = SynthOptions::new(Preset::SmallVocab, seed);
    o.layers = Some(4);
    o.sliding_window = Some(8);
    o
}

#[test]
fn incremental_decoding_matches_full_recompute() {
    let (_dir, ck) = build(&small_opts(3));
    let vocab = ck.config.vocab_size;
    let toks = tokens(45, vocab, 1);
    let full = full_logits(&ck, &toks);

    let model = GptOss::new(&ck);
    let mut cache = model.new_cache();
    let mut incremental = Vec::new();
    // Uneven chunks: a prefill longer than the window, single tokens, and a chunk that
    // crosses the window boundary.
    let mut at = 0;
    for chunk in [11, 1, 1, 3, 9, 1, 19] {
        let part = &toks[at..at + chunk];
        incremental.extend(model.forward(part, &mut cache, Logits::All).unwrap());
        at += chunk;
    }
    assert_eq!(at, toks.len());
    assert_eq!(cache.len(), toks.len());
    let diff = max_abs_diff(&full, &incremental);
    assert!(
        diff < 1e-4,
        "incremental logits differ from full recompute by {diff}"
    );

    // `Logits::Last` is the last row of `Logits::All`.
    let mut cache = model.new_cache();
    model
        .forward(&toks[..44], &mut cache, Logits::Last)
        .unwrap();
    let last = model
        .forward(&toks[44..], &mut cache, Logits::Last)
        .unwrap();
    assert!(max_abs_diff(&last, &full[44 * vocab..]) < 1e-4);
}

#[test]
fn sliding_window_changes_the_result_once_exceeded() {
    // Guards the test above against a window that is never applied.
    let (_a, narrow) = build(&small_opts(4));
    let mut wide_opts = small_opts(4);
    wide_opts.sliding_window = Some(64);
    let (_b, wide) = build(&wide_opts);
    let toks = tokens(20, narrow.config.vocab_size, 2);
    let (x, y) = (full_logits(&narrow, &toks), full_logits(&wide, &toks));
    let vocab = narrow.config.vocab_size;
    // Positions 0..8 see at most 8 keys either way: identical.
    assert!(max_abs_diff(&x[..8 * vocab], &y[..8 * vocab]) < 1e-5);
    assert!(max_abs_diff(&x[8 * vocab..], &y[8 * vocab..]) > 1e-3);
}

#[test]
fn original_layout_matches_hugging_face_layout() {
    let hf_opts = small_opts(5);
    let mut orig_opts = small_opts(5);
    orig_opts.layout = Layout::Original;
    let (_a, hf) = build(&hf_opts);
    let (_b, orig) = build(&orig_opts);
    assert_eq!(orig.layout, Layout::Original);
    assert_eq!(orig.config, hf.config);
    let toks = tokens(12, hf.config.vocab_size, 3);
    assert_eq!(full_logits(&hf, &toks), full_logits(&orig, &toks));
    // `--model` may also name the `original/` folder itself.
    let direct = Checkpoint::open(&orig.dir.join("original")).unwrap();
    assert_eq!(direct.layout, Layout::Original);
    assert_eq!(full_logits(&direct, &toks), full_logits(&hf, &toks));
}

#[test]
fn sharded_checkpoint_matches_single_file() {
    let single = small_opts(6);
    let mut sharded = small_opts(6);
    sharded.max_shard_bytes = 3_000_000;
    let (_a, one) = build(&single);
    let (_b, many) = build(&sharded);
    assert_eq!(one.files.len(), 1);
    assert!(many.files.len() >= 3, "{:?}", many.files);
    assert!(many.files[0].ends_with(format!(
        "model-00000-of-{:05}.safetensors",
        many.files.len() - 1
    )));
    let toks = tokens(10, one.config.vocab_size, 4);
    assert_eq!(full_logits(&one, &toks), full_logits(&many, &toks));
}

#[test]
fn dense_bf16_experts_match_mxfp4_experts() {
    let q = small_opts(7);
    let mut d = small_opts(7);
    d.experts = ExpertFormat::Bf16;
    let (_a, mx) = build(&q);
    let (_b, dense) = build(&d);
    assert_eq!(dense.config.expert_format, ExpertFormat::Bf16);
    let toks = tokens(12, mx.config.vocab_size, 5);
    let diff = max_abs_diff(&full_logits(&mx, &toks), &full_logits(&dense, &toks));
    // Same values, different summation order (row dot products vs column updates).
    assert!(diff < 1e-3, "{diff}");
}

#[test]
fn bad_tokens_and_empty_input_are_errors() {
    let (_d, ck) = build(&small_opts(8));
    let model = GptOss::new(&ck);
    let mut cache = model.new_cache();
    let err = model
        .forward(&[1, 4096], &mut cache, Logits::Last)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "token id 4096 is outside the vocabulary (0..4096)"
    );
    assert!(model.forward(&[], &mut cache, Logits::Last).is_err());
    // A failed call leaves the cache untouched.
    assert_eq!(cache.len(), 0);
}

/// A batch-invariant model gives each sequence of a batched step the logits it gets alone,
/// bit for bit, whatever else is in the step (prompt chunks, other decode tokens), in both
/// precisions and both expert formats; and a plain batched step stays close to them.
#[test]
fn batched_steps_equal_sequences_alone_bit_for_bit() {
    use gossamer_model::{Precision, Step};
    for experts in [ExpertFormat::Mxfp4, ExpertFormat::Bf16] {
        let mut opts = SynthOptions::new(Preset::SmallVocab, 5);
        opts.layers = Some(2);
        opts.experts = experts;
        let (_d, ck) = build(&opts);
        for precision in [Precision::Exact, Precision::Fast] {
            let mut model = GptOss::new(&ck);
            model.set_precision(precision);
            model.set_batch_invariant(true);
            let vocab = ck.config.vocab_size;
            let prompts: Vec<Vec<u32>> = (0..4)
                .map(|i| tokens(5 + 9 * i, vocab, i as u64 + 1))
                .collect();
            // Alone: the prompt, then one decode token.
            let mut alone = Vec::new();
            for p in &prompts {
                let mut cache = model.new_cache();
                let a = model.forward(p, &mut cache, Logits::All).unwrap();
                let b = model.forward(&[7], &mut cache, Logits::Last).unwrap();
                alone.push((a, b));
            }
            // Together: all prompts in one step, then all decode tokens in the next.
            let mut caches: Vec<_> = prompts.iter().map(|_| model.new_cache()).collect();
            let mut steps: Vec<Step> = prompts
                .iter()
                .zip(caches.iter_mut())
                .map(|(p, c)| Step {
                    tokens: p,
                    cache: c,
                    logits: Logits::All,
                })
                .collect();
            let first = model.forward_batch(&mut steps).unwrap();
            let seven = [7u32];
            let mut steps: Vec<Step> = caches
                .iter_mut()
                .map(|c| Step {
                    tokens: &seven,
                    cache: c,
                    logits: Logits::Last,
                })
                .collect();
            let second = model.forward_batch(&mut steps).unwrap();
            for (i, (a, b)) in alone.iter().enumerate() {
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&first[i]),
                    bits(a),
                    "{experts:?} {precision:?} prompt {i}"
                );
                assert_eq!(
                    bits(&second[i]),
                    bits(b),
                    "{experts:?} {precision:?} decode {i}"
                );
            }
        }
    }
}
