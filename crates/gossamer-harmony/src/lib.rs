//! The harmony side of gpt-oss: the o200k_harmony tokenizer (embedded, offline), and — in
//! later work — rendering conversations and parsing model output.

pub mod tokenizer;

pub use tokenizer::Tokenizer;
