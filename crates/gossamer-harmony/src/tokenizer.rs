//! o200k_harmony, from `tiktoken-rs` (vocabulary embedded in the crate: no download).

use tiktoken_rs::CoreBPE;

/// Ids of the special tokens gossamer needs by name (spec §4).
pub mod special {
    pub const RETURN: u32 = 200002;
    pub const CONSTRAIN: u32 = 200003;
    pub const CHANNEL: u32 = 200005;
    pub const START: u32 = 200006;
    pub const END: u32 = 200007;
    pub const MESSAGE: u32 = 200008;
    pub const CALL: u32 = 200012;
}

#[derive(Clone, Copy)]
pub struct Tokenizer {
    bpe: &'static CoreBPE,
}

#[derive(Debug, thiserror::Error)]
#[error("token id {0} is not in the o200k_harmony vocabulary")]
pub struct UnknownToken(pub u32);

impl Tokenizer {
    /// The process-wide o200k_harmony tokenizer (built once, on first use).
    pub fn o200k_harmony() -> Tokenizer {
        Tokenizer {
            bpe: tiktoken_rs::o200k_harmony_singleton(),
        }
    }

    /// Encodes text with no special tokens: `<|start|>` typed by a user stays plain text.
    pub fn encode_ordinary(&self, text: &str) -> Vec<u32> {
        self.bpe.encode_ordinary(text)
    }

    /// Raw bytes of tokens (a token may end inside a UTF-8 character).
    pub fn decode_bytes(&self, tokens: &[u32]) -> Result<Vec<u8>, UnknownToken> {
        self.bpe
            .decode_bytes(tokens)
            .map_err(|e| UnknownToken(e.token))
    }

    /// Text of tokens; invalid UTF-8 (a character split across the end) becomes U+FFFD.
    pub fn decode_lossy(&self, tokens: &[u32]) -> Result<String, UnknownToken> {
        Ok(String::from_utf8_lossy(&self.decode_bytes(tokens)?).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_ids() {
        let t = Tokenizer::o200k_harmony();
        assert_eq!(t.encode_ordinary("hello world"), [24912, 2375]);
        // Special-token text typed by a user is not a special token.
        assert!(!t.encode_ordinary("<|start|>").contains(&special::START));
        assert_eq!(t.decode_lossy(&[special::START]).unwrap(), "<|start|>");
        assert_eq!(t.encode_ordinary(" 2"), [220, 17]);
    }
}
