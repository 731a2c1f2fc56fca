//! Tokenizer throughput: gossamer's o200k_harmony (tiktoken-rs) against openai-harmony's own
//! tokenizer, on the same text in the same process, alternating runs so machine noise hits
//! both alike. Prints MB/s (mean ± stddev) for encode and decode and the ratio.
//!
//! `cargo bench -p gossamer-harmony --bench tokenizer`

#[allow(unused_imports)]
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use gossamer_harmony::Tokenizer;

/// A deterministic mixed corpus: prose in several scripts, code, numbers, whitespace runs.
fn corpus(bytes: usize) -> String {
    const PIECES: &[&str] = &[
        "The quick brown fox jumps over the lazy dog. ",
        "It's a truth universally acknowledged, isn't it? They'll say they've done it. ",
        "Le cœur a ses raisons que la raison ne connaît point. ",
        "Die Würde des Menschen ist unantastbar. ",
        "東京は日本の首都です。今日はいい天気ですね。",
        "Москва — столица России. ",
        "مرحبا بالعالم. ",
        "fn main() {\n    let x: Vec<u32> = (0..10).map(|i| i * 2).collect();\n    println!(\"{x:?}\");\n}\n",
        "def f(a, b=2):\n\treturn {'a': a, 'b': b}  # comment\n",
        "3.14159 2718281828 1,000,000 42%  0x7fff_ffff ",
        "    \n\n   \t  ",
        "<|start|>assistant<|channel|>final<|message|>plain text, not special<|end|> ",
        "emoji 🚀🔥 café naïve résumé ",
    ];
    let mut s = String::with_capacity(bytes + 256);
    let mut x: u64 = 0x9E3779B97F4A7C15;
    while s.len() < bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(PIECES[(x % PIECES.len() as u64) as usize]);
    }
    s
}

fn stats(v: &[f64]) -> (f64, f64) {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64;
    (mean, var.sqrt())
}

fn main() {
    let text = corpus(4 << 20);
    let mb = text.len() as f64 / 1e6;
    let ours = Tokenizer::o200k_harmony();
    let theirs = support::oracle().tokenizer();

    // Same tokens, or the comparison means nothing.
    let a = ours.encode_ordinary(&text);
    let b = theirs.encode_ordinary(&text);
    assert_eq!(a, b, "the two tokenizers disagree on the corpus");
    println!("corpus: {:.1} MB, {} tokens", mb, a.len());

    let repeats = 5;
    let (mut enc_ours, mut enc_theirs, mut dec_ours, mut dec_theirs) =
        (vec![], vec![], vec![], vec![]);
    for _ in 0..repeats {
        let t = Instant::now();
        std::hint::black_box(ours.encode_ordinary(std::hint::black_box(&text)));
        enc_ours.push(mb / t.elapsed().as_secs_f64());
        let t = Instant::now();
        std::hint::black_box(theirs.encode_ordinary(std::hint::black_box(&text)));
        enc_theirs.push(mb / t.elapsed().as_secs_f64());
        let t = Instant::now();
        std::hint::black_box(ours.decode_bytes(std::hint::black_box(&a)).unwrap());
        dec_ours.push(mb / t.elapsed().as_secs_f64());
        let t = Instant::now();
        std::hint::black_box(
            theirs
                .decode_bytes(std::hint::black_box(a.iter().copied()))
                .unwrap(),
        );
        dec_theirs.push(mb / t.elapsed().as_secs_f64());
    }
    for (name, o, t) in [
        ("encode", &enc_ours, &enc_theirs),
        ("decode", &dec_ours, &dec_theirs),
    ] {
        let ((om, os), (tm, ts)) = (stats(o), stats(t));
        println!(
            "{name}: gossamer {om:8.2} ± {os:5.2} MB/s   openai-harmony {tm:8.2} ± {ts:5.2} MB/s   ratio {:.2}",
            om / tm
        );
    }
}
