//! Redaction of secret values (passwords, usernames, 2FA codes) in text that leaves the
//! appliance: events, logs, the action log, provider requests.
//!
//! A [`Redactor`] holds named values and, for each, the forms the value commonly takes once it
//! has passed through a serializer or a URL; every occurrence of any form becomes
//! `<secret:NAME>`. The forms:
//!
//! - verbatim, and reversed (by characters);
//! - JSON string content: as `serde_json` writes it (`\"`, `\\`, `\n`…, `\u00XX` for other
//!   control characters), the variant that also escapes `/` as `\/`, and the ASCII-only variant
//!   (`\uXXXX`, surrogate pairs) that Python's `json.dumps` writes — and their combination;
//! - HTML-escaped: `&amp; &lt; &gt; &quot;` with `'` as `&#39;` or `&#x27;`, and the text-node
//!   variant that escapes only `& < >`;
//! - URL-encoded, upper- and lower-case hex: every byte outside RFC 3986's unreserved set
//!   (`%20` or `+` for a space), the WHATWG form encoding (`application/x-www-form-urlencoded`),
//!   and JavaScript's `encodeURIComponent`;
//! - base64, standard and URL-safe alphabets, with and without padding, plus the part of the
//!   encoding that stays the same when the value sits inside a longer base64 text (an HTTP
//!   Basic `user:password` header) at any byte alignment, when that part is 8+ characters;
//! - hex of the UTF-8 bytes, matched without regard to case.
//!
//! Matching is exact (case-sensitive) except for hex. All forms are found in one pass over the
//! text; where matches overlap, the covered text is replaced as a whole (a longer value that
//! contains a shorter one is reported under the longer value's name only, and two values that
//! partly overlap are both named), so no fragment of either is left.
//!
//! Values shorter than [`MIN_VALUE_CHARS`] characters are ignored: redacting them would
//! mangle ordinary text (and a 3-character secret is not one). Every value and every form is
//! held in zeroizing memory, wiped when the redactor is dropped; [`Redactor`]'s `Debug` shows
//! the names only.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use zeroize::Zeroizing;

/// Values with fewer characters than this are not redacted (see the module doc).
pub const MIN_VALUE_CHARS: usize = 4;

/// The shortest base64 fragment (of a value inside a longer base64 text) that is redacted.
const MIN_BASE64_CORE: usize = 8;

/// Every form is at least this long (a value has 4+ characters, so 4+ bytes).
const MIN_FORM_BYTES: usize = 4;

/// One encoded form of one value.
#[derive(Clone)]
struct Form {
    bytes: Zeroizing<Vec<u8>>,
    /// Matched without regard to ASCII case (hex).
    fold: bool,
    /// Index of the value's name in [`Redactor::names`].
    owner: usize,
}

impl Form {
    /// The index key: the first two bytes, ASCII-lowercased.
    fn key(&self) -> u16 {
        key_of(&self.bytes)
    }

    fn is_at(&self, hay: &[u8]) -> bool {
        let Some(head) = hay.get(..self.bytes.len()) else {
            return false;
        };
        if self.fold {
            head.eq_ignore_ascii_case(&self.bytes)
        } else {
            head == self.bytes.as_slice()
        }
    }
}

fn key_of(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0].to_ascii_lowercase(), bytes[1].to_ascii_lowercase()])
}

/// Redacts secret values, in all their usual encodings, from text (see the module doc).
#[derive(Clone, Default)]
pub struct Redactor {
    names: Vec<String>,
    /// Sorted by (key, length descending): the longest form at a position is found first.
    forms: Vec<Form>,
    /// One bit per possible key: whether any form starts with it (a fast skip).
    starts: Zeroizing<Vec<u64>>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("names", &self.names)
            .field("forms", &self.forms.len())
            .finish()
    }
}

impl Redactor {
    /// A redactor with no values: [`Redactor::redact`] returns its input.
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// Adds a value, redacted as `<secret:NAME>`. Values shorter than [`MIN_VALUE_CHARS`]
    /// characters are ignored (they would redact ordinary text).
    pub fn add(&mut self, name: &str, value: &str) {
        if value.chars().count() < MIN_VALUE_CHARS {
            return;
        }
        let owner = self.names.len();
        self.names.push(name.to_owned());
        for (bytes, fold) in forms_of(value) {
            let dup = self
                .forms
                .iter()
                .any(|f| f.owner == owner && f.fold == fold && f.bytes == bytes);
            if !dup && bytes.len() >= MIN_FORM_BYTES {
                self.forms.push(Form { bytes, fold, owner });
            }
        }
        self.forms
            .sort_by(|a, b| (a.key(), b.bytes.len()).cmp(&(b.key(), a.bytes.len())));
        let mut starts = Zeroizing::new(vec![0u64; 1 << 10]);
        for f in &self.forms {
            let k = usize::from(f.key());
            starts[k >> 6] |= 1 << (k & 63);
        }
        self.starts = starts;
    }

    /// Whether no value has been added (or every one was too short).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// How many values are redacted.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// The names of the values, in the order they were added (a name added twice appears twice).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// `text` with every form of every value replaced by `<secret:NAME>`; borrowed when nothing
    /// matched.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let hay = text.as_bytes();
        let mut out: Option<String> = None;
        let mut copied = 0;
        // The region being replaced: [start, end) and the names it reports.
        let mut region: Option<(usize, usize, Vec<usize>)> = None;
        for i in 0..hay.len() {
            let Some((len, owner)) = self.longest_at(hay, i) else {
                continue;
            };
            let end = i + len;
            match &mut region {
                Some((_, r_end, owners)) if i < *r_end => {
                    if end > *r_end {
                        *r_end = end;
                        if owners.last() != Some(&owner) {
                            owners.push(owner);
                        }
                    }
                }
                _ => {
                    if let Some(done) = region.take() {
                        copied = self.flush(text, copied, done, &mut out);
                    }
                    region = Some((i, end, vec![owner]));
                }
            }
        }
        if let Some(done) = region.take() {
            copied = self.flush(text, copied, done, &mut out);
        }
        match out {
            None => Cow::Borrowed(text),
            Some(mut s) => {
                s.push_str(&text[copied..]);
                Cow::Owned(s)
            }
        }
    }

    /// Whether `text` holds any form of any value.
    pub fn contains_secret(&self, text: &str) -> bool {
        let hay = text.as_bytes();
        (0..hay.len()).any(|i| self.longest_at(hay, i).is_some())
    }

    /// Writes `text[copied..start]` and the region's names; returns the new copied offset.
    fn flush(
        &self,
        text: &str,
        copied: usize,
        (start, end, owners): (usize, usize, Vec<usize>),
        out: &mut Option<String>,
    ) -> usize {
        let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
        // Forms are whole UTF-8 strings, so matches start and end on character boundaries.
        out.push_str(&text[copied..start]);
        for o in owners {
            out.push_str("<secret:");
            out.push_str(self.names.get(o).map_or("?", String::as_str));
            out.push('>');
        }
        end
    }

    /// The longest form starting at `hay[i]`: its length and owner.
    fn longest_at(&self, hay: &[u8], i: usize) -> Option<(usize, usize)> {
        let rest = hay.get(i..)?;
        if rest.len() < MIN_FORM_BYTES {
            return None;
        }
        let key = key_of(rest);
        let k = usize::from(key);
        if self
            .starts
            .get(k >> 6)
            .is_none_or(|w| w & (1 << (k & 63)) == 0)
        {
            return None;
        }
        let from = self.forms.partition_point(|f| f.key() < key);
        self.forms[from..]
            .iter()
            .take_while(|f| f.key() == key)
            .find(|f| f.is_at(rest))
            .map(|f| (f.bytes.len(), f.owner))
    }
}

/// Every form of `value` (see the module doc), each with whether it matches case-insensitively.
/// Buffers are sized up front so that no copy of a value is left behind by a reallocation.
fn forms_of(value: &str) -> Vec<(Zeroizing<Vec<u8>>, bool)> {
    let mut forms = vec![(Zeroizing::new(value.as_bytes().to_vec()), false)];
    let mut rev = Zeroizing::new(Vec::with_capacity(value.len()));
    let mut buf = [0u8; 4];
    for c in value.chars().rev() {
        rev.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
    forms.push((rev, false));
    for slash in [false, true] {
        for ascii in [false, true] {
            forms.push((json_escaped(value, slash, ascii), false));
        }
    }
    for apos in [Some("&#39;"), Some("&#x27;"), None] {
        forms.push((html_escaped(value, apos), false));
    }
    for (safe, plus) in [
        (UNRESERVED, false),
        (UNRESERVED, true),
        (WHATWG_FORM, true),
        (URI_COMPONENT, false),
    ] {
        for upper in [true, false] {
            forms.push((url_encoded(value, safe, plus, upper), false));
        }
    }
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        let mut s = Zeroizing::new(String::with_capacity(value.len() / 3 * 4 + 8));
        engine.encode_string(value, &mut s);
        forms.push((Zeroizing::new(s.as_bytes().to_vec()), false));
    }
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        for shift in 0..3 {
            if let Some(core) = base64_core(value.as_bytes(), shift, engine) {
                forms.push((core, false));
            }
        }
    }
    let mut hex = Zeroizing::new(Vec::with_capacity(value.len() * 2));
    for b in value.bytes() {
        hex.push(HEX_LOWER[usize::from(b >> 4)]);
        hex.push(HEX_LOWER[usize::from(b & 15)]);
    }
    forms.push((hex, true));
    forms
}

const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Bytes besides ASCII alphanumerics left as they are by a URL encoding.
const UNRESERVED: &[u8] = b"-._~";
const WHATWG_FORM: &[u8] = b"*-._";
const URI_COMPONENT: &[u8] = b"-_.!~*'()";

fn url_encoded(value: &str, safe: &[u8], plus: bool, upper: bool) -> Zeroizing<Vec<u8>> {
    let hex = if upper { HEX_UPPER } else { HEX_LOWER };
    let mut out = Zeroizing::new(Vec::with_capacity(value.len() * 3));
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || safe.contains(&b) {
            out.push(b);
        } else if b == b' ' && plus {
            out.push(b'+');
        } else {
            out.extend_from_slice(&[b'%', hex[usize::from(b >> 4)], hex[usize::from(b & 15)]]);
        }
    }
    out
}

/// JSON string content as serde_json writes it; `slash` also escapes `/`, `ascii` escapes every
/// non-ASCII character as `\uXXXX` (UTF-16, lower-case hex).
fn json_escaped(value: &str, slash: bool, ascii: bool) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(value.len() * 6));
    let mut utf16 = [0u16; 2];
    let mut utf8 = [0u8; 4];
    for c in value.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '/' if slash => out.extend_from_slice(b"\\/"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 || (ascii && !c.is_ascii()) => {
                for unit in c.encode_utf16(&mut utf16).iter() {
                    out.extend_from_slice(b"\\u");
                    for shift in [12, 8, 4, 0] {
                        out.push(HEX_LOWER[usize::from((unit >> shift) & 15)]);
                    }
                }
            }
            c => out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes()),
        }
    }
    out
}

/// HTML-escaped text: `& < >` always, `"` and `'` (as `apos`) when `apos` is given.
fn html_escaped(value: &str, apos: Option<&str>) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(value.len() * 6));
    for b in value.bytes() {
        match (b, apos) {
            (b'&', _) => out.extend_from_slice(b"&amp;"),
            (b'<', _) => out.extend_from_slice(b"&lt;"),
            (b'>', _) => out.extend_from_slice(b"&gt;"),
            (b'"', Some(_)) => out.extend_from_slice(b"&quot;"),
            (b'\'', Some(a)) => out.extend_from_slice(a.as_bytes()),
            _ => out.push(b),
        }
    }
    out
}

/// The base64 characters of `value` that do not depend on its neighbours when it starts
/// `shift` bytes (mod 3) into a longer encoded text, if there are at least
/// [`MIN_BASE64_CORE`] of them.
fn base64_core(
    value: &[u8],
    shift: usize,
    engine: &base64::engine::GeneralPurpose,
) -> Option<Zeroizing<Vec<u8>>> {
    let mut input = Zeroizing::new(Vec::with_capacity(shift + value.len()));
    input.resize(shift, 0);
    input.extend_from_slice(value);
    let mut encoded = Zeroizing::new(String::with_capacity(input.len() / 3 * 4 + 8));
    engine.encode_string(input.as_slice(), &mut encoded);
    // Character i carries bits [6i, 6i + 6); the value's bits are [8 * shift, 8 * len).
    let first = (8 * shift).div_ceil(6);
    let end = 8 * input.len() / 6;
    let core = encoded.as_bytes().get(first..end)?;
    (core.len() >= MIN_BASE64_CORE).then(|| Zeroizing::new(core.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, value: &str) -> Redactor {
        let mut r = Redactor::new();
        r.add(name, value);
        r
    }

    /// Asserts that `text` (which holds an encoded `value`) is redacted to `want` and no longer
    /// contains the encoding.
    fn check(r: &Redactor, text: &str, want: &str) {
        assert!(r.contains_secret(text), "not detected in {text:?}");
        let got = r.redact(text);
        assert_eq!(got, want, "redacting {text:?}");
        assert!(!r.contains_secret(&got), "still detected in {got:?}");
    }

    #[test]
    fn empty_redactor_returns_the_input_borrowed() {
        let r = Redactor::new();
        assert!(r.is_empty());
        assert!(matches!(
            r.redact("anything at all"),
            Cow::Borrowed("anything at all")
        ));
        assert!(!r.contains_secret("anything"));
    }

    #[test]
    fn text_without_a_secret_is_borrowed() {
        let r = one("pw", "hunter22");
        assert!(matches!(r.redact("hunter2 hunter 22"), Cow::Borrowed(_)));
        assert!(!r.contains_secret("hunter2 hunter 22"));
    }

    #[test]
    fn short_values_are_ignored() {
        let mut r = Redactor::new();
        r.add("pin", "123");
        r.add("e", "");
        assert!(r.is_empty());
        assert_eq!(r.redact("code 123"), "code 123");
        r.add("pin4", "1234");
        assert_eq!(r.len(), 1);
        check(&r, "code 1234.", "code <secret:pin4>.");
    }

    #[test]
    fn verbatim_every_occurrence_and_multibyte_neighbours() {
        let r = one("pw", "s3cr3t!");
        check(
            &r,
            "héllo s3cr3t! wörld s3cr3t!s3cr3t!",
            "héllo <secret:pw> wörld <secret:pw><secret:pw>",
        );
    }

    #[test]
    fn matching_is_case_sensitive() {
        let r = one("pw", "Tr0ub4dor");
        assert!(!r.contains_secret("tr0ub4dor TR0UB4DOR"));
        check(&r, "[Tr0ub4dor]", "[<secret:pw>]");
    }

    #[test]
    fn non_ascii_value() {
        let r = one("pw", "pässwörd€😀");
        check(&r, "x pässwörd€😀 y", "x <secret:pw> y");
    }

    #[test]
    fn reversed() {
        let r = one("pw", "abc123xyz");
        check(
            &r,
            "typed zyx321cba backwards",
            "typed <secret:pw> backwards",
        );
        let r = one("pw", "pä€😀s");
        check(&r, "s😀€äp", "<secret:pw>");
    }

    #[test]
    fn json_escaped_as_serde_json_writes_it() {
        let value = "pa\"ss\\wo/rd\n\t\u{1}\u{1f}é";
        let r = one("pw", value);
        let json = serde_json::to_string(value).expect("json");
        assert!(json.contains("\\u0001") && json.contains("\\\""), "{json}");
        check(&r, &json, "\"<secret:pw>\"");
        // The value is back intact when the text is parsed: verbatim form.
        let parsed: String = serde_json::from_str(&json).expect("parse");
        check(&r, &parsed, "<secret:pw>");
    }

    #[test]
    fn json_escaped_slash_and_ascii_variants() {
        let r = one("pw", "a/b/c\"dé😀");
        check(&r, r#"{"p":"a\/b\/c\"dé😀"}"#, r#"{"p":"<secret:pw>"}"#);
        // Python's json.dumps (ensure_ascii): non-ASCII as \uXXXX with surrogate pairs.
        check(
            &r,
            r#"{"p": "a/b/c\"d\u00e9\ud83d\ude00"}"#,
            r#"{"p": "<secret:pw>"}"#,
        );
        check(
            &r,
            r#"{"p": "a\/b\/c\"d\u00e9\ud83d\ude00"}"#,
            r#"{"p": "<secret:pw>"}"#,
        );
    }

    #[test]
    fn value_inside_a_serialized_struct() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Request {
            url: String,
            body: String,
            note: Vec<String>,
        }
        let value = "Sup3r\"S3cret\\/pw";
        let r = one("bank", value);
        let req = Request {
            url: "https://bank.example/login".into(),
            body: format!("user=alice&password={value}"),
            note: vec![value.into(), "other".into()],
        };
        let json = serde_json::to_string(&req).expect("json");
        let red = r.redact(&json);
        assert!(!r.contains_secret(&red));
        let back: Request = serde_json::from_str(&red).expect("still valid JSON");
        assert_eq!(back.url, "https://bank.example/login");
        assert_eq!(back.body, "user=alice&password=<secret:bank>");
        assert_eq!(back.note, ["<secret:bank>", "other"]);
        let pretty = serde_json::to_string_pretty(&req).expect("json");
        assert!(!r.redact(&pretty).contains("S3cret"));
    }

    #[test]
    fn html_escaped() {
        let r = one("pw", "a<b>&\"c'd");
        check(
            &r,
            "<p>a&lt;b&gt;&amp;&quot;c&#39;d</p>",
            "<p><secret:pw></p>",
        );
        check(
            &r,
            "<p>a&lt;b&gt;&amp;&quot;c&#x27;d</p>",
            "<p><secret:pw></p>",
        );
        check(&r, "<p>a&lt;b&gt;&amp;\"c'd</p>", "<p><secret:pw></p>");
    }

    #[test]
    fn url_encoded_upper_lower_and_form() {
        let r = one("pw", "p@ss w/rd~*!é");
        check(
            &r,
            "q=p%40ss%20w%2Frd~%2A%21%C3%A9&x=1",
            "q=<secret:pw>&x=1",
        );
        check(
            &r,
            "q=p%40ss%20w%2frd~%2a%21%c3%a9&x=1",
            "q=<secret:pw>&x=1",
        );
        // quote_plus
        check(&r, "q=p%40ss+w%2Frd~%2A%21%C3%A9", "q=<secret:pw>");
        // a browser's form body (WHATWG): '*' kept, '~' encoded
        check(
            &r,
            "password=p%40ss+w%2Frd%7E*%21%C3%A9",
            "password=<secret:pw>",
        );
        // encodeURIComponent
        check(&r, "?p=p%40ss%20w%2Frd~*!%C3%A9", "?p=<secret:pw>");
    }

    #[test]
    fn base64_standard_and_url_safe_with_and_without_padding() {
        let value = "p>?w~~rd1"; // 9 bytes: no padding, exercises '+', '/' vs '-', '_'
        let r = one("pw", value);
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            let enc = engine.encode(value);
            check(&r, &format!("data:{enc};"), "data:<secret:pw>;");
        }
        let value = "pw-with-pad"; // 11 bytes: one '='
        let r = one("pw", value);
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            let enc = engine.encode(value);
            check(&r, &format!("[{enc}]"), "[<secret:pw>]");
        }
        assert!(STANDARD.encode("p>?w~~rd1").contains(['+', '/']));
        assert!(URL_SAFE.encode("p>?w~~rd1").contains(['-', '_']));
        assert!(STANDARD.encode("pw-with-pad").ends_with('='));
    }

    #[test]
    fn base64_of_a_value_inside_a_longer_text_at_any_alignment() {
        let password = "correct horse battery";
        let r = one("pw", password);
        for user in ["al", "ali", "alic", "alice"] {
            let basic = STANDARD.encode(format!("{user}:{password}"));
            let header = format!("Authorization: Basic {basic}");
            let red = r.redact(&header);
            assert!(red.contains("<secret:pw>"), "{user}: {red}");
            // Only the characters mixing in the neighbours' bits remain (at most 2 each side).
            let left = red.trim_start_matches("Authorization: Basic ");
            let left = &left[..left.find("<secret:pw>").expect("redacted")];
            assert!(
                basic.starts_with(left) && left.len() <= STANDARD.encode(format!("{user}:")).len(),
                "{user}: {red}"
            );
        }
    }

    #[test]
    fn hex_lower_upper_and_mixed() {
        let r = one("pw", "hunter22");
        check(&r, "0x68756e7465723232;", "0x<secret:pw>;");
        check(&r, "0x68756E7465723232;", "0x<secret:pw>;");
        check(
            &r,
            "0x68756e7465723232".to_ascii_uppercase().as_str(),
            "0X<secret:pw>",
        );
        check(&r, "68756E7465723232", "<secret:pw>");
    }

    #[test]
    fn a_longer_value_containing_a_shorter_one_wins() {
        let mut r = Redactor::new();
        r.add("short", "horse");
        r.add("long", "correcthorsebattery");
        check(
            &r,
            "a correcthorsebattery and a horse",
            "a <secret:long> and a <secret:short>",
        );
        // The same, added in the other order.
        let mut r = Redactor::new();
        r.add("long", "correcthorsebattery");
        r.add("short", "horse");
        check(&r, "correcthorsebattery", "<secret:long>");
    }

    #[test]
    fn partly_overlapping_values_leave_no_fragment() {
        let mut r = Redactor::new();
        r.add("a", "abcdefgh");
        r.add("b", "efghijkl");
        check(&r, "<abcdefghijkl>", "<<secret:a><secret:b>>");
        check(&r, "xefghijklabcdefgh", "x<secret:b><secret:a>");
    }

    #[test]
    fn two_values_and_their_forms_in_one_text() {
        let mut r = Redactor::new();
        r.add("site.username", "alice@example.com");
        r.add("site", "pa ss/word");
        let text = format!(
            "u={} p={} h={} b={}",
            "alice%40example.com",
            "pa+ss%2Fword",
            "70612073732f776f7264",
            STANDARD.encode("alice@example.com")
        );
        check(
            &r,
            &text,
            "u=<secret:site.username> p=<secret:site> h=<secret:site> b=<secret:site.username>",
        );
    }

    #[test]
    fn a_large_base64_payload_with_many_values() {
        let mut r = Redactor::new();
        for i in 0..20 {
            r.add(&format!("v{i}"), &format!("value-number-{i}-Xy/+"));
        }
        let image: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let payload = format!(
            "{{\"image\":\"{}\",\"t\":\"value-number-7-Xy/+\"}}",
            STANDARD.encode(&image)
        );
        let started = std::time::Instant::now();
        let red = r.redact(&payload);
        eprintln!(
            "redacted {} bytes in {:?}",
            payload.len(),
            started.elapsed()
        );
        assert_eq!(
            red.len(),
            payload.len() - "value-number-7-Xy/+".len() + "<secret:v7>".len()
        );
        assert!(red.ends_with(",\"t\":\"<secret:v7>\"}"));
    }

    #[test]
    fn debug_prints_names_only() {
        let mut r = Redactor::new();
        r.add("bank", "Sup3rS3cret");
        r.add("bank.username", "alice.smith");
        let dbg = format!("{r:?} {r:#?}");
        assert!(
            dbg.contains("bank") && dbg.contains("bank.username"),
            "{dbg}"
        );
        for needle in [
            "Sup3r",
            "S3cret",
            "alice",
            "smith",
            &STANDARD.encode("Sup3rS3cret"),
            "5375703372",
            "terceS3repuS",
        ] {
            assert!(!dbg.contains(needle), "{needle} in {dbg}");
        }
    }

    #[test]
    fn clone_redacts_the_same() {
        let r = one("pw", "clone-me-pw");
        let c = r.clone();
        drop(r);
        check(&c, "x clone-me-pw", "x <secret:pw>");
        assert_eq!(c.names().collect::<Vec<_>>(), ["pw"]);
    }
}
