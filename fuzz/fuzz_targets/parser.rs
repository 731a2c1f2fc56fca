//! Fuzzes the harmony streaming parser: any token-id stream must parse without panicking and
//! without losing text (see the guarantee in `gossamer_harmony::parser`).
//!
//! Input bytes: the first byte chooses whether parsing starts inside `<|start|>assistant`;
//! then every 3 bytes make one token id, biased toward harmony's special ids.

#![no_main]

use gossamer_harmony::parser::{ordinary_text, Event, Role, StreamParser};
use gossamer_harmony::Tokenizer;
use libfuzzer_sys::fuzz_target;

fn token_id(b: &[u8]) -> u32 {
    let v = u32::from(b[0]) | (u32::from(b[1]) << 8) | (u32::from(b[2]) << 16);
    match b[0] % 8 {
        // Harmony's special tokens, 199998..=200018.
        0..=2 => 199_998 + (v >> 3) % 21,
        // Reserved ids up to the end of the embedding, and a few beyond the vocabulary.
        3 => {
            if b[1] == 0xFF {
                201_088 + (v >> 3)
            } else {
                200_019 + (v >> 3) % 1_069
            }
        }
        // Ordinary BPE ranks.
        _ => (v >> 3) % 199_998,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let tokens: Vec<u32> = rest.chunks_exact(3).map(token_id).collect();
    let t = Tokenizer::o200k_harmony();
    let first_role = (first & 1 == 1).then_some(Role::Assistant);

    let mut parser = StreamParser::new(t, first_role);
    let mut events = Vec::new();
    for &id in &tokens {
        parser.push_into(id, &mut events);
    }
    parser.finish_into(&mut events);

    let mut text = String::new();
    let mut open = false;
    for e in &events {
        match e {
            Event::MessageStart { header_text, .. } => {
                assert!(!open, "MessageStart inside a message");
                open = true;
                text.push_str(header_text);
            }
            Event::TextDelta { text: d } => {
                assert!(open && !d.is_empty());
                text.push_str(d);
            }
            Event::MessageEnd { .. } => {
                assert!(open, "MessageEnd outside a message");
                open = false;
            }
            Event::ToolCall(_) | Event::Warning(_) => {}
        }
    }
    assert!(!open, "a message is still open after finish()");
    assert_eq!(text, ordinary_text(&t, &tokens), "text lost or invented");
});
