//! Byte-level BPE (the "gpt2" tokenizer of GGUF files), with the
//! pre-tokenizers of the model families we serve.
//!
//! The vocabulary, merges and token types come from the GGUF's
//! `tokenizer.ggml.*` metadata, exactly as llama.cpp reads them, and the
//! splitting rules are llama.cpp's for each `tokenizer.ggml.pre` value, so
//! both tokenize a prompt the same way (a test in `tests/` compares them).
//!
//! Special tokens (`<|im_start|>`, ...) are only recognised where the
//! caller says so: the chat template's own text, never the content of a
//! message, so a user cannot forge a role boundary by typing one.

use std::collections::HashMap;

use fancy_regex::Regex;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("pre-tokenizer {0:?} is not supported (supported: {SUPPORTED_PRE:?})")]
    UnsupportedPre(String),
    #[error("the tokenizer metadata is inconsistent: {0}")]
    Inconsistent(String),
}

/// `tokenizer.ggml.pre` values whose splitting rules are implemented.
pub const SUPPORTED_PRE: &[&str] = &["smollm", "gpt2", "default", "qwen2", "llama-bpe", "llama3"];

const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GGUF token types (llama.cpp's `llama_token_type`).
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;

pub type TokenId = u32;

#[derive(Debug)]
pub struct Tokenizer {
    /// Token id → its text in GPT-2's byte-to-unicode form.
    tokens: Vec<String>,
    ids: HashMap<String, TokenId>,
    /// "a b" → rank (lower merges first).
    merges: HashMap<(String, String), usize>,
    /// Control and user-defined tokens, longest first (for matching).
    specials: Vec<(String, TokenId)>,
    control: Vec<bool>,
    splits: Vec<Regex>,
    byte_to_char: [char; 256],
    char_to_byte: HashMap<char, u8>,
    pub bos: Option<TokenId>,
    pub eos: TokenId,
    pub add_bos: bool,
}

/// A piece of prompt text and whether special tokens in it count.
#[derive(Debug, Clone, Copy)]
pub enum Segment<'a> {
    /// Template text: special token strings become special tokens.
    Template(&'a str),
    /// User-controlled text: tokenized as plain text only.
    Content(&'a str),
}

/// GPT-2's reversible map from bytes to printable characters.
fn byte_chars() -> [char; 256] {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut map = ['\0'; 256];
    let mut extra = 0;
    for b in 0..256u32 {
        if let Some(pos) = printable.iter().position(|&p| p == b) {
            map[b as usize] = char::from_u32(printable[pos]).unwrap();
            printable[pos] = u32::MAX; // used
        } else {
            map[b as usize] = char::from_u32(256 + extra).unwrap();
            extra += 1;
        }
    }
    map
}

impl Tokenizer {
    pub fn new(
        tokens: Vec<String>,
        types: &[i32],
        merges: &[String],
        pre: &str,
        bos: Option<TokenId>,
        eos: TokenId,
        add_bos: bool,
    ) -> Result<Self, TokenizerError> {
        let patterns: &[&str] = match pre {
            "smollm" => &[r"\p{N}", GPT2],
            "gpt2" | "default" => &[GPT2],
            "qwen2" => &[QWEN2],
            "llama-bpe" | "llama3" => &[LLAMA3],
            other => return Err(TokenizerError::UnsupportedPre(other.to_string())),
        };
        if types.len() != tokens.len() {
            return Err(TokenizerError::Inconsistent(format!(
                "{} tokens but {} token types",
                tokens.len(),
                types.len()
            )));
        }
        let n = tokens.len() as u32;
        if eos >= n || bos.is_some_and(|b| b >= n) {
            return Err(TokenizerError::Inconsistent(
                "bos or eos is outside the vocabulary".into(),
            ));
        }
        let ids = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as TokenId))
            .collect();
        let mut ranks = HashMap::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            let (a, b) = m
                .split_once(' ')
                .ok_or_else(|| TokenizerError::Inconsistent(format!("merge {m:?} has no space")))?;
            ranks.entry((a.to_string(), b.to_string())).or_insert(rank);
        }
        let mut specials: Vec<(String, TokenId)> = tokens
            .iter()
            .zip(types)
            .enumerate()
            .filter(|(_, (t, ty))| {
                (**ty == TYPE_CONTROL || **ty == TYPE_USER_DEFINED) && !t.is_empty()
            })
            .map(|(i, (t, _))| (t.clone(), i as TokenId))
            .collect();
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let byte_to_char = byte_chars();
        let char_to_byte = byte_to_char
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        Ok(Tokenizer {
            control: types.iter().map(|&t| t == TYPE_CONTROL).collect(),
            tokens,
            ids,
            merges: ranks,
            specials,
            splits: patterns
                .iter()
                .map(|p| Regex::new(p).expect("built-in pattern"))
                .collect(),
            byte_to_char,
            char_to_byte,
            bos,
            eos,
            add_bos,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The id of a special token, by its text (`<|im_end|>`).
    pub fn special(&self, text: &str) -> Option<TokenId> {
        self.specials
            .iter()
            .find(|(t, _)| t == text)
            .map(|(_, id)| *id)
    }

    /// The texts of every special token (to keep them out of user content).
    pub fn special_texts(&self) -> Vec<String> {
        self.specials.iter().map(|(t, _)| t.clone()).collect()
    }

    /// Whether a token is a control token (never shown to the client).
    pub fn is_control(&self, id: TokenId) -> bool {
        self.control.get(id as usize).copied().unwrap_or(false)
    }

    pub fn encode(&self, segments: &[Segment<'_>]) -> Vec<TokenId> {
        let mut out = Vec::new();
        if self.add_bos
            && let Some(b) = self.bos
        {
            out.push(b);
        }
        for seg in segments {
            match *seg {
                Segment::Content(text) => self.encode_plain(text, &mut out),
                Segment::Template(text) => {
                    let mut rest = text;
                    while !rest.is_empty() {
                        match self.next_special(rest) {
                            Some((at, tok, id)) => {
                                self.encode_plain(&rest[..at], &mut out);
                                out.push(id);
                                rest = &rest[at + tok.len()..];
                            }
                            None => {
                                self.encode_plain(rest, &mut out);
                                break;
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// The earliest special token in `text` (longest at that position).
    fn next_special<'s>(&'s self, text: &str) -> Option<(usize, &'s str, TokenId)> {
        let mut best: Option<(usize, &str, TokenId)> = None;
        for (tok, id) in &self.specials {
            if let Some(at) = text.find(tok.as_str())
                && best.is_none_or(|(b, bt, _)| at < b || (at == b && tok.len() > bt.len()))
            {
                best = Some((at, tok, *id));
            }
        }
        best
    }

    /// Splits with each pattern in turn, keeping the text between matches.
    fn pre_split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut pieces = vec![text];
        for re in &self.splits {
            let mut next = Vec::with_capacity(pieces.len() * 2);
            for piece in pieces {
                let mut last = 0;
                for m in re.find_iter(piece).flatten() {
                    if m.start() > last {
                        next.push(&piece[last..m.start()]);
                    }
                    if m.end() > m.start() {
                        next.push(m.as_str());
                    }
                    last = m.end();
                }
                if last < piece.len() {
                    next.push(&piece[last..]);
                }
            }
            pieces = next;
        }
        pieces
    }

    fn encode_plain(&self, text: &str, out: &mut Vec<TokenId>) {
        for piece in self.pre_split(text) {
            let mapped: String = piece
                .bytes()
                .map(|b| self.byte_to_char[b as usize])
                .collect();
            let mut symbols: Vec<String> = mapped.chars().map(String::from).collect();
            loop {
                let best = symbols
                    .windows(2)
                    .enumerate()
                    .filter_map(|(i, w)| {
                        self.merges
                            .get(&(w[0].clone(), w[1].clone()))
                            .map(|r| (*r, i))
                    })
                    .min();
                let Some((_, i)) = best else { break };
                let right = symbols.remove(i + 1);
                symbols[i].push_str(&right);
            }
            for s in symbols {
                match self.ids.get(&s) {
                    Some(&id) => out.push(id),
                    // A symbol the vocabulary lacks: fall back to its
                    // single characters (every byte has a token).
                    None => out.extend(
                        s.chars()
                            .filter_map(|c| self.ids.get(&c.to_string()).copied()),
                    ),
                }
            }
        }
    }

    /// The bytes a token stands for; control tokens give nothing.
    pub fn token_bytes(&self, id: TokenId) -> Vec<u8> {
        if self.is_control(id) {
            return Vec::new();
        }
        let Some(text) = self.tokens.get(id as usize) else {
            return Vec::new();
        };
        text.chars()
            .flat_map(|c| match self.char_to_byte.get(&c) {
                Some(&b) => vec![b],
                // User-defined tokens are stored as plain text.
                None => c.to_string().into_bytes(),
            })
            .collect()
    }

    /// A token's text as written in the vocabulary, specials included
    /// (for the template's `bos_token` and `eos_token`).
    pub fn decode_special(&self, id: TokenId) -> String {
        match self.tokens.get(id as usize) {
            Some(t) if self.is_control(id) => t.clone(),
            Some(_) => String::from_utf8_lossy(&self.token_bytes(id)).into_owned(),
            None => String::new(),
        }
    }

    pub fn decode(&self, ids: &[TokenId]) -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|&id| self.token_bytes(id)).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy vocabulary: every byte, a few merges, two control tokens.
    fn toy() -> Tokenizer {
        let chars = byte_chars();
        let mut tokens: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
        let mut types = vec![1; 256];
        for (t, ty) in [
            ("<|im_start|>", 3),
            ("<|im_end|>", 3),
            ("he", 1),
            ("ll", 1),
            ("hell", 1),
            ("hello", 1),
            ("Ġw", 1),
        ] {
            tokens.push(t.to_string());
            types.push(ty);
        }
        let merges: Vec<String> = ["h e", "l l", "he ll", "hell o", "Ġ w"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        Tokenizer::new(tokens, &types, &merges, "smollm", Some(256), 257, false).unwrap()
    }

    #[test]
    fn merges_apply_by_rank_and_decode_round_trips() {
        let t = toy();
        let ids = t.encode(&[Segment::Content("hello world 42")]);
        assert_eq!(ids[0], t.ids["hello"]);
        assert_eq!(ids[1], t.ids["Ġw"]);
        assert_eq!(t.decode(&ids), "hello world 42");
        // smollm splits digits one by one.
        let n = t.encode(&[Segment::Content("42")]);
        assert_eq!(n.len(), 2);
        let s = "naïve ☃ \n\n  x";
        assert_eq!(t.decode(&t.encode(&[Segment::Content(s)])), s);
    }

    #[test]
    fn specials_only_count_in_template_text() {
        let t = toy();
        let start = t.special("<|im_start|>").unwrap();
        let tpl = t.encode(&[Segment::Template("<|im_start|>hello<|im_end|>")]);
        assert_eq!(tpl.first(), Some(&start));
        assert_eq!(tpl.last(), Some(&t.special("<|im_end|>").unwrap()));
        let content = t.encode(&[Segment::Content("<|im_start|>")]);
        assert!(!content.contains(&start));
        assert_eq!(t.decode(&content), "<|im_start|>");
        // Control tokens decode to nothing.
        assert_eq!(t.decode(&tpl), "hello");
    }

    #[test]
    fn refuses_unknown_pre_tokenizers_and_bad_metadata() {
        let e = Tokenizer::new(vec!["a".into()], &[1], &[], "falcon", None, 0, false).unwrap_err();
        assert!(matches!(e, TokenizerError::UnsupportedPre(_)));
        assert!(Tokenizer::new(vec!["a".into()], &[1, 1], &[], "gpt2", None, 0, false).is_err());
        assert!(Tokenizer::new(vec!["a".into()], &[1], &[], "gpt2", None, 5, false).is_err());
        assert!(
            Tokenizer::new(
                vec!["a".into()],
                &[1],
                &["ab".into()],
                "gpt2",
                None,
                0,
                false
            )
            .is_err()
        );
    }
}
