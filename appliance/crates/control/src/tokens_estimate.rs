//! Offline token-count estimate (`zigral-estimate-v1`) used for context-window budgets.
//!
//! No model tokenizer is shipped (they need large vocabularies that cost memory and would have
//! to be fetched). Instead the text is scanned once and priced by character class, chosen to
//! err on the HIGH side against BPE tokenizers of the cl100k/o200k family, so a window built
//! under a budget also fits the model's real budget:
//! - a run of ASCII letters costs ceil(len / 4) (common words are one BPE token, long words
//!   split in ~4-char pieces);
//! - a run of digits costs ceil(len / 3) (cl100k splits numbers into groups of up to 3);
//! - each ASCII punctuation or symbol costs 1; a single space costs 0 (BPE folds it into the
//!   next word), a longer whitespace run costs 1;
//! - each non-ASCII character costs ceil(utf8_len / 2) (Cyrillic/Greek 1, CJK 2, emoji 2);
//! - each message adds 4 for role and framing; an image part costs its declared `tokens`, else
//!   [`IMAGE_TOKENS`] (a full-size screenshot under the Anthropic formula w*h/750 is <= 1,600).
//!
//! Error bound: by construction every rule is at or above the BPE cost of the same class
//! except for rare long ASCII words that are single tokens — so for prose the estimate is an
//! over-count (expected +10–35% for English, up to 2x for CJK), and under-counts are bounded
//! by the case of unusual long-word text tokenised into more than one token per 4 letters,
//! which BPE vocabularies built on English rarely do.

/// Name reported in context responses.
pub const ESTIMATOR: &str = "zigral-estimate-v1";
/// Framing cost per message.
pub const MESSAGE_OVERHEAD: u32 = 4;
/// Default cost of an image part without a declared token count.
pub const IMAGE_TOKENS: u32 = 1600;

/// Estimated tokens of a text.
pub fn text_tokens(s: &str) -> u32 {
    let mut total: u64 = 0;
    let mut letters = 0u64;
    let mut digits = 0u64;
    let mut spaces = 0u64;
    let flush = |letters: &mut u64, digits: &mut u64, spaces: &mut u64, total: &mut u64| {
        *total += letters.div_ceil(4) + digits.div_ceil(3) + u64::from(*spaces > 1);
        *letters = 0;
        *digits = 0;
        *spaces = 0;
    };
    for c in s.chars() {
        if c.is_ascii_alphabetic() {
            if digits > 0 || spaces > 0 {
                flush(&mut letters, &mut digits, &mut spaces, &mut total);
            }
            letters += 1;
        } else if c.is_ascii_digit() {
            if letters > 0 || spaces > 0 {
                flush(&mut letters, &mut digits, &mut spaces, &mut total);
            }
            digits += 1;
        } else if c.is_ascii_whitespace() {
            if letters > 0 || digits > 0 {
                flush(&mut letters, &mut digits, &mut spaces, &mut total);
            }
            spaces += 1;
        } else {
            flush(&mut letters, &mut digits, &mut spaces, &mut total);
            total += if c.is_ascii() {
                1
            } else {
                (c.len_utf8() as u64).div_ceil(2)
            };
        }
    }
    flush(&mut letters, &mut digits, &mut spaces, &mut total);
    total.min(u64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_by_character_class() {
        assert_eq!(text_tokens(""), 0);
        assert_eq!(text_tokens("hello"), 2);
        assert_eq!(text_tokens("the cat sat"), 3);
        assert_eq!(text_tokens("12345"), 2);
        assert_eq!(text_tokens("a, b."), 4);
        assert_eq!(text_tokens("a\n\nb"), 3);
        assert_eq!(text_tokens("日本語"), 6);
        assert_eq!(text_tokens("привет"), 6);
        // Prose lands near the usual ~4 characters per token, on the high side.
        let prose = "The quick brown fox jumps over the lazy dog while the agent \
                     fills in the login form and waits for the two-factor code.";
        let t = text_tokens(prose) as f64;
        let chars = prose.len() as f64;
        assert!(
            t >= chars / 5.0 && t <= chars / 2.5,
            "{t} tokens for {chars} chars"
        );
    }
}
