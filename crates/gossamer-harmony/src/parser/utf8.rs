//! Incremental UTF-8 decoding that agrees exactly with [`String::from_utf8_lossy`].
//!
//! Bytes arrive token by token; a character split across tokens is held back until it is
//! complete. Invalid sequences become U+FFFD as soon as they are known to be invalid; an
//! incomplete sequence left at a [`Utf8Decoder::flush`] becomes one U+FFFD. Decoding a byte
//! string in any number of pushes followed by one flush yields exactly
//! `String::from_utf8_lossy(whole)`.

#[derive(Debug, Default, Clone)]
pub struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    /// Adds bytes; appends every character that is now known to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut String) {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        while start < self.pending.len() {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    out.push_str(s);
                    start = self.pending.len();
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    if let Ok(s) = std::str::from_utf8(&self.pending[start..start + valid]) {
                        out.push_str(s);
                    }
                    start += valid;
                    match e.error_len() {
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            start += n;
                        }
                        // An incomplete character at the end: wait for more bytes.
                        None => break,
                    }
                }
            }
        }
        self.pending.drain(..start);
    }

    /// Ends the byte string: an incomplete trailing character becomes U+FFFD.
    pub fn flush(&mut self, out: &mut String) {
        if !self.pending.is_empty() {
            out.push_str(&String::from_utf8_lossy(&self.pending));
            self.pending.clear();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(bytes: &[u8], cuts: &[usize]) -> String {
        let mut d = Utf8Decoder::default();
        let mut out = String::new();
        let mut last = 0;
        for &c in cuts {
            let c = c.min(bytes.len()).max(last);
            d.push(&bytes[last..c], &mut out);
            last = c;
        }
        d.push(&bytes[last..], &mut out);
        d.flush(&mut out);
        out
    }

    #[test]
    fn split_characters_and_invalid_bytes() {
        let s = "héllo → 世界 🎉".as_bytes();
        for i in 0..s.len() {
            assert_eq!(decode_in_pieces(s, &[i]), "héllo → 世界 🎉");
        }
        let bad: &[u8] = &[b'a', 0xF0, 0x9F, b'b', 0xFF, 0xE4, 0xB8];
        let want = String::from_utf8_lossy(bad);
        for i in 0..bad.len() {
            for j in i..bad.len() {
                assert_eq!(decode_in_pieces(bad, &[i, j]), want);
            }
        }
    }
}
