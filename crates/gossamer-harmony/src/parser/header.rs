//! Lenient parsing of a harmony message header from its decoded text.
//!
//! The header is kept as one string in which the special tokens `<|channel|>` and
//! `<|constrain|>` appear as their literal text, with the byte ranges of those that came from
//! special tokens remembered (they are structural: they carry no text of their own). Literal
//! `<|channel|>` / `<|constrain|>` typed as ordinary tokens are recognised the same way.

use std::ops::Range;

use super::{role_from_word, Role, ALL_ROLES};

pub(crate) const CHANNEL_MARK: &str = "<|channel|>";
pub(crate) const CONSTRAIN_MARK: &str = "<|constrain|>";

/// Content types the model writes as a bare word (without `<|constrain|>`).
const KNOWN_CONTENT_TYPES: &[&str] = &["json", "code", "text", "markdown", "md", "html", "python"];

/// Header bytes of the message being read.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeaderBuf {
    /// Decoded header text with special markers rendered literally.
    pub text: String,
    /// Ranges of `text` that came from special tokens.
    pub specials: Vec<Range<usize>>,
    /// Bytes of `text` that came from ordinary tokens.
    pub text_bytes: usize,
    /// Role known before the header text (the prompt's `<|start|>assistant`, or a continuation).
    pub preset: Option<Role>,
    /// Whether the header was opened by an actual `<|start|>` token.
    pub explicit_start: bool,
    /// Size (text bytes) past which the parser next checks for headerless content.
    pub next_check: usize,
}

impl HeaderBuf {
    pub fn new(preset: Option<Role>, explicit_start: bool) -> HeaderBuf {
        HeaderBuf {
            preset,
            explicit_start,
            next_check: super::MAX_HEADER_BYTES,
            ..HeaderBuf::default()
        }
    }

    pub fn push_text(&mut self, s: &str) {
        self.text.push_str(s);
        self.text_bytes += s.len();
    }

    pub fn push_marker(&mut self, mark: &str) {
        let start = self.text.len();
        self.text.push_str(mark);
        self.specials.push(start..self.text.len());
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// `text[range]` without the parts that came from special tokens.
    fn accounted(&self, range: Range<usize>) -> String {
        let mut out = String::new();
        let mut pos = range.start;
        for sp in &self.specials {
            if sp.end <= pos || sp.start >= range.end {
                continue;
            }
            if sp.start > pos {
                out.push_str(&self.text[pos..sp.start]);
            }
            pos = sp.end.max(pos);
        }
        if pos < range.end {
            out.push_str(&self.text[pos..range.end]);
        }
        out
    }
}

/// How to read the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `<|message|>` arrived: everything is header; odd words stay in the header text.
    Full,
    /// No `<|message|>` (the header ran into a stop token, a new message, a size limit or the
    /// end of output): the first word that is not a header field starts the content.
    Partial,
}

#[derive(Debug, Clone)]
pub(crate) struct ParsedHeader {
    pub role: Role,
    pub name: Option<String>,
    pub channel: Option<String>,
    pub recipient: Option<String>,
    pub content_type: Option<String>,
    /// The part of the header text consumed as header (special tokens excluded).
    pub header_text: String,
    /// Partial mode: the rest, which is message content.
    pub content: String,
    /// Partial mode: whether some of the header text is content.
    pub has_content: bool,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
enum Item {
    Word(Range<usize>),
    Channel,
    Constrain,
}

fn lex(text: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut pos = 0;
    let bytes = text.as_bytes();
    while pos < text.len() {
        let rest = &text[pos..];
        if rest.starts_with(CHANNEL_MARK) {
            items.push(Item::Channel);
            pos += CHANNEL_MARK.len();
        } else if rest.starts_with(CONSTRAIN_MARK) {
            items.push(Item::Constrain);
            pos += CONSTRAIN_MARK.len();
        } else if let Some(c) = rest.chars().next().filter(|c| c.is_whitespace()) {
            pos += c.len_utf8();
        } else {
            let start = pos;
            while pos < text.len() {
                let rest = &text[pos..];
                if rest.starts_with(CHANNEL_MARK) || rest.starts_with(CONSTRAIN_MARK) {
                    break;
                }
                match rest.chars().next() {
                    Some(c) if c.is_whitespace() => break,
                    Some(c) => pos += c.len_utf8(),
                    None => break,
                }
            }
            debug_assert!(pos <= bytes.len());
            items.push(Item::Word(start..pos));
        }
    }
    items
}

fn is_type_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+' | '/')
}

/// A short word made of content-type characters (`json`, `code`, `application/json`).
fn is_type_like(w: &str) -> bool {
    !w.is_empty() && w.len() <= 32 && w.chars().all(is_type_char)
}

/// A word that plausibly names a tool: `functions.get_weather`, `browser.search`, `python`,
/// `get_weather`, `container.exec`.
pub(crate) fn looks_like_tool(w: &str) -> bool {
    let ident = !w.is_empty()
        && w.len() <= 128
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'))
        && w.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    ident && (w.contains('.') || w.contains('_') || w == "python")
}

/// `assistantassistant` → Some(Assistant).
fn repeated_role(w: &str) -> Option<Role> {
    for role in ALL_ROLES {
        let r = role.as_str();
        if w.len() > r.len()
            && w.len().is_multiple_of(r.len())
            && w.as_bytes().chunks(r.len()).all(|c| c == r.as_bytes())
        {
            return Some(role);
        }
    }
    None
}

pub(crate) fn parse(buf: &HeaderBuf, mode: Mode) -> ParsedHeader {
    let text = buf.text.as_str();
    let items = lex(text);
    let word = |r: &Range<usize>| &text[r.clone()];
    let mut warnings = Vec::new();
    let mut i = 0;

    // Role.
    let mut name = None;
    let role = match (buf.preset, items.first()) {
        (Some(preset), Some(Item::Word(r))) => {
            let w = word(r);
            if w == preset.as_str() {
                i = 1;
            } else if repeated_role(w) == Some(preset) {
                warnings.push(format!("role written more than once: {w:?}"));
                i = 1;
            }
            preset
        }
        (Some(preset), _) => preset,
        (None, Some(Item::Word(r))) => {
            let w = word(r);
            if let Some(role) = role_from_word(w) {
                i = 1;
                role
            } else if let Some(role) = repeated_role(w) {
                warnings.push(format!("role written more than once: {w:?}"));
                i = 1;
                role
            } else if let Some((role, n)) = w
                .split_once(':')
                .and_then(|(r, n)| role_from_word(r).map(|r| (r, n)))
                .filter(|(_, n)| !n.is_empty())
            {
                i = 1;
                name = Some(n.to_string());
                role
            } else if !buf.explicit_start || w.starts_with("to=") {
                if buf.explicit_start {
                    warnings.push("message header has no role; assuming assistant".to_string());
                }
                Role::Assistant
            } else if mode == Mode::Partial && !looks_like_tool(w) {
                warnings.push("message header has no role; assuming assistant".to_string());
                Role::Assistant
            } else {
                if !looks_like_tool(w) {
                    warnings.push(format!("unknown role {w:?}; treating it as a tool name"));
                }
                i = 1;
                name = Some(w.to_string());
                Role::Tool
            }
        }
        (None, _) => {
            if buf.explicit_start {
                warnings.push("message header has no role; assuming assistant".to_string());
            }
            Role::Assistant
        }
    };

    let mut channel: Option<String> = None;
    let mut recipient: Option<String> = None;
    let mut content_type: Option<String> = None;
    let mut content_start: Option<usize> = None;
    let mut after_recipient = false;

    while i < items.len() {
        let was_after_recipient = after_recipient;
        after_recipient = false;
        match &items[i] {
            Item::Channel => match items.get(i + 1) {
                Some(Item::Word(r)) if !word(r).starts_with("to=") => {
                    let w = word(r);
                    if let Some(old) = &channel {
                        warnings.push(format!("second channel {w:?} in header (was {old:?})"));
                    }
                    channel = Some(w.to_string());
                    i += 2;
                }
                _ => {
                    warnings.push("channel marker with no channel name".to_string());
                    i += 1;
                }
            },
            Item::Constrain => match items.get(i + 1) {
                Some(Item::Word(r)) => {
                    let w = word(r);
                    let ty_len = w.find(|c: char| !is_type_char(c)).unwrap_or(w.len());
                    if ty_len == 0 {
                        warnings.push("<|constrain|> with no content type".to_string());
                        i += 1;
                        continue;
                    }
                    content_type = Some(format!("{CONSTRAIN_MARK}{}", &w[..ty_len]));
                    i += 2;
                    if ty_len < w.len() {
                        if mode == Mode::Partial {
                            content_start = Some(r.start + ty_len);
                            break;
                        }
                        warnings.push(format!("unexpected text in header: {:?}", &w[ty_len..]));
                    }
                }
                _ => {
                    warnings.push("<|constrain|> with no content type".to_string());
                    i += 1;
                }
            },
            Item::Word(r) => {
                let w = word(r);
                if let Some(rec) = w.strip_prefix("to=") {
                    if rec.is_empty() {
                        warnings.push("empty recipient `to=`".to_string());
                    } else if let Some(old) = &recipient {
                        warnings.push(format!("second recipient {rec:?} in header (kept {old:?})"));
                    } else {
                        recipient = Some(rec.to_string());
                        after_recipient = true;
                    }
                    i += 1;
                    continue;
                }
                let known_type = KNOWN_CONTENT_TYPES.contains(&w);
                if content_type.is_none()
                    && is_type_like(w)
                    && (was_after_recipient || (known_type && mode == Mode::Full))
                {
                    content_type = Some(w.to_string());
                } else if mode == Mode::Full && recipient.is_none() && looks_like_tool(w) {
                    warnings.push(format!("recipient {w:?} written without `to=`"));
                    recipient = Some(w.to_string());
                    after_recipient = true;
                } else if mode == Mode::Partial {
                    content_start = Some(r.start);
                    break;
                } else {
                    warnings.push(format!("unexpected text in header: {w:?}"));
                }
                i += 1;
            }
        }
    }

    let split = content_start.unwrap_or(text.len());
    ParsedHeader {
        role,
        name,
        channel,
        recipient,
        content_type,
        header_text: buf.accounted(0..split),
        content: buf.accounted(split..text.len()),
        has_content: content_start.is_some(),
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(preset: Option<Role>, parts: &[&str]) -> HeaderBuf {
        let mut b = HeaderBuf::new(preset, true);
        for p in parts {
            match *p {
                "#C" => b.push_marker(CHANNEL_MARK),
                "#K" => b.push_marker(CONSTRAIN_MARK),
                t => b.push_text(t),
            }
        }
        b
    }

    #[test]
    fn orders_and_types() {
        let h = parse(
            &buf(
                None,
                &[
                    "assistant to=functions.f",
                    "#C",
                    "commentary ",
                    "#K",
                    "json",
                ],
            ),
            Mode::Full,
        );
        assert_eq!(h.role, Role::Assistant);
        assert_eq!(h.recipient.as_deref(), Some("functions.f"));
        assert_eq!(h.channel.as_deref(), Some("commentary"));
        assert_eq!(h.content_type.as_deref(), Some("<|constrain|>json"));
        assert_eq!(h.header_text, "assistant to=functions.fcommentary json");
        assert!(h.warnings.is_empty(), "{:?}", h.warnings);

        let h = parse(
            &buf(
                Some(Role::Assistant),
                &["#C", "commentary to=functions.f<|constrain|>json"],
            ),
            Mode::Full,
        );
        assert_eq!(h.recipient.as_deref(), Some("functions.f"));
        assert_eq!(h.content_type.as_deref(), Some("<|constrain|>json"));
        assert_eq!(h.header_text, "commentary to=functions.f<|constrain|>json");
    }

    #[test]
    fn partial_splits_content() {
        let h = parse(
            &buf(Some(Role::Assistant), &["#C", "commentary Hello there"]),
            Mode::Partial,
        );
        assert_eq!(h.channel.as_deref(), Some("commentary"));
        assert_eq!(h.header_text, "commentary ");
        assert_eq!(h.content, "Hello there");
        let h = parse(
            &buf(Some(Role::Assistant), &["I must refuse"]),
            Mode::Partial,
        );
        assert_eq!(h.content, "I must refuse");
        assert!(h.has_content);
    }
}
