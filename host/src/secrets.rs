//! Named secrets and the masking of their values.
//!
//! Secrets come from the config file (a literal, an environment variable or
//! a file) and from `MERIDIAN_SECRET_<NAME>` environment variables. A step
//! sees a secret only through the secrets capability, and only when granted;
//! every value is masked in whatever the host writes or returns (step
//! outputs, errors, logs), by one [`Masker`] built once at load.

use aho_corasick::AhoCorasick;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

/// What a masked secret is replaced with.
pub const MASK: &str = "***";

/// A secret value that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The plain value, for the one place that hands it to a step.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// All named secrets known to this host, with the masker for their values.
#[derive(Clone, Default)]
pub struct SecretStore {
    values: BTreeMap<String, SecretValue>,
    masker: Arc<Masker>,
}

impl fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretStore")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SecretStore {
    pub fn new(values: BTreeMap<String, SecretValue>) -> Self {
        let masker = Arc::new(Masker::new(values.values().map(SecretValue::expose)));
        Self { values, masker }
    }

    pub fn get(&self, name: &str) -> Option<&SecretValue> {
        self.values.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    pub fn masker(&self) -> &Arc<Masker> {
        &self.masker
    }
}

/// Secrets shorter than this many bytes are masked as written and in their
/// percent-encoded and JSON-escaped forms (which are at least as long and as
/// specific), but not in base64 or hex. A short secret's base64 inside a
/// longer base64 text is only a few characters (4 for 4 bytes: 24 bits, met
/// by chance about once in every 16 MiB of random base64, so digests, ids
/// and payloads would be cut up); from 6 bytes every base64 alignment leaves
/// at least 7 characters (42 bits) and the hex form 12 (48 bits), which
/// random text matches about once in a few terabytes.
pub const MIN_ENCODED_SECRET_BYTES: usize = 6;

/// Up to this many forms (some 40 secrets) the masker's automaton is a DFA
/// and texts are first checked by SIMD detectors (see [`Masker::new`]);
/// beyond, aho-corasick's contiguous NFA alone, which costs less memory and,
/// with that many forms, no more time.
const MAX_FAST_FORMS: usize = 512;
/// Forms one detector takes: the most a Teddy searcher handles well.
const DETECTOR_FORMS: usize = 64;

/// Replaces every occurrence of any secret value with [`MASK`], in the
/// value's exact spelling and in the encodings a step (or a library it
/// uses) commonly puts it through before it is printed, sent or returned:
///
/// - base64, standard and URL-safe, padded or not, and embedded in a longer
///   base64 text (`Basic base64(user:pass)`): a secret that starts 0, 1 or 2
///   bytes into a 3-byte group has a different encoding each time, so the
///   characters fully determined by the secret's own bits are looked for in
///   each of the three alignments;
/// - percent-encoding: every unreserved-only and form encoding in use
///   (RFC 3986 components, `encodeURIComponent`, the form encoding of the
///   `url` crate's query serializer with `+` for a space, and what
///   `url::Url` leaves of a value put into a path, query, fragment or user
///   name), upper and lower hex;
/// - hex, lower and upper case;
/// - JSON-escaped as `serde_json` writes it, with non-ASCII characters as
///   `\uXXXX` (lower or upper hex) as ASCII-only writers do, and `/` as
///   `\/`.
///
/// Base64 and hex only from [`MIN_ENCODED_SECRET_BYTES`]. All the forms of
/// all the secrets go into one Aho-Corasick automaton, built once, matching
/// leftmost-longest so a form that contains another is masked whole; with
/// few enough forms, SIMD detectors answer first whether there is anything
/// to replace at all.
#[derive(Default)]
pub struct Masker {
    automaton: Option<AhoCorasick>,
    /// SIMD searchers (Teddy, on x86-64 and aarch64) over all the forms,
    /// 64 each, when there are at most [`MAX_FAST_FORMS`]: they tell that a
    /// text holds no secret (nearly always the answer) two to four times
    /// faster than a run of the automaton, which replaces what they find.
    /// Empty when there are more forms or a searcher could not be built.
    detectors: Vec<aho_corasick::packed::Searcher>,
    /// The longest form looked for: text cut at `n + longest - 1` bytes
    /// keeps every secret that starts before `n` whole.
    longest: usize,
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Masker")
            .field("active", &self.automaton.is_some())
            .field(
                "forms",
                &self.automaton.as_ref().map_or(0, AhoCorasick::patterns_len),
            )
            .finish()
    }
}

impl Masker {
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut forms = BTreeSet::new();
        for value in values.into_iter().filter(|v| !v.is_empty()) {
            forms.extend(encoded::forms(value));
        }
        forms.retain(|f| !f.is_empty());
        if forms.is_empty() {
            return Self::default();
        }
        let longest = forms.iter().map(String::len).max().unwrap_or(0);
        // A DFA scans about twice as fast as the contiguous NFA that
        // aho-corasick picks on its own beyond 100 patterns, at about 15 KiB
        // per form: worth it up to a few MiB.
        let fast = forms.len() <= MAX_FAST_FORMS;
        let kind = fast.then_some(aho_corasick::AhoCorasickKind::DFA);
        let automaton = aho_corasick::AhoCorasickBuilder::new()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .kind(kind)
            .build(&forms)
            .ok();
        let forms: Vec<&String> = forms.iter().collect();
        let detectors = if fast {
            forms
                .chunks(DETECTOR_FORMS)
                .map(|chunk| {
                    let mut builder = aho_corasick::packed::Config::new().builder();
                    builder.extend(chunk);
                    builder.build()
                })
                .collect::<Option<Vec<_>>>()
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        Self {
            automaton,
            detectors,
            longest,
        }
    }

    /// The length in bytes of the longest form looked for (0 when there is
    /// nothing to mask).
    pub fn longest(&self) -> usize {
        self.longest
    }

    /// The text with every secret replaced; borrowed when nothing matched.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let Some(ac) = &self.automaton else {
            return Cow::Borrowed(text);
        };
        if !self.detectors.is_empty() && self.detectors.iter().all(|d| d.find(text).is_none()) {
            return Cow::Borrowed(text);
        }
        let Some(first) = ac.find(text) else {
            return Cow::Borrowed(text);
        };
        // Matches of UTF-8 forms in UTF-8 text start and end on character
        // boundaries, so the slices below cannot split a character.
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        for m in ac.find_iter(aho_corasick::Input::new(text).range(first.start()..)) {
            out.push_str(text.get(copied..m.start()).unwrap_or_default());
            out.push_str(MASK);
            copied = m.end();
        }
        out.push_str(text.get(copied..).unwrap_or_default());
        Cow::Owned(out)
    }

    /// Masks every string (keys included) inside a JSON value, in place.
    /// Working on the parsed value keeps the JSON valid and catches secrets
    /// that the serialised text would show escaped.
    pub fn mask_json(&self, value: &mut Value) {
        if self.automaton.is_none() {
            return;
        }
        match value {
            Value::String(s) => {
                if let Cow::Owned(masked) = self.mask(s) {
                    *s = masked;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.mask_json(v)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut v) in entries {
                    self.mask_json(&mut v);
                    map.insert(self.mask(&key).into_owned(), v);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

/// The forms of one secret value that [`Masker`] looks for.
mod encoded {
    use super::MIN_ENCODED_SECRET_BYTES;
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC};

    /// RFC 3986 components: all but the unreserved characters.
    const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    /// JavaScript's `encodeURIComponent`.
    const JS_COMPONENT: &AsciiSet = &COMPONENT
        .remove(b'!')
        .remove(b'*')
        .remove(b'\'')
        .remove(b'(')
        .remove(b')');
    /// `application/x-www-form-urlencoded` (the `url` crate's query
    /// serializer), before a space becomes `+`.
    const FORM: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'*')
        .remove(b'-')
        .remove(b'.')
        .remove(b'_');
    /// What `url::Url` encodes of a query it parses (WHATWG URL).
    const QUERY: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'#').add(b'<').add(b'>');
    const SPECIAL_QUERY: &AsciiSet = &QUERY.add(b'\'');
    const FRAGMENT: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'<').add(b'>').add(b'`');
    const PATH: &AsciiSet = &QUERY.add(b'?').add(b'`').add(b'{').add(b'}');
    const PATH_SEGMENT: &AsciiSet = &PATH.add(b'/').add(b'%');
    const USERINFO: &AsciiSet = &PATH
        .add(b'/')
        .add(b':')
        .add(b';')
        .add(b'=')
        .add(b'@')
        .add(b'[')
        .add(b'\\')
        .add(b']')
        .add(b'^')
        .add(b'|');

    /// Every form of `value` to mask, the value itself first.
    pub(super) fn forms(value: &str) -> Vec<String> {
        let mut out = vec![value.to_owned()];
        json(value, &mut out);
        percent(value, &mut out);
        let bytes = value.as_bytes();
        if bytes.len() >= MIN_ENCODED_SECRET_BYTES {
            out.push(hex::encode(bytes));
            out.push(hex::encode_upper(bytes));
            base64(bytes, &mut out);
        }
        out
    }

    fn json(value: &str, out: &mut Vec<String>) {
        let mut escaped = Vec::new();
        if let Ok(quoted) = serde_json::to_string(value)
            && let Some(inner) = quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"'))
        {
            escaped.push(inner.to_owned());
        }
        escaped.push(json_ascii(value, false));
        escaped.push(json_ascii(value, true));
        if value.contains('/') {
            let slashed: Vec<String> = escaped.iter().map(|e| e.replace('/', "\\/")).collect();
            escaped.extend(slashed);
        }
        out.extend(escaped);
    }

    /// JSON string contents with every character outside printable ASCII
    /// as `\uXXXX` (UTF-16, so two escapes beyond the BMP).
    fn json_ascii(value: &str, upper: bool) -> String {
        let mut s = String::with_capacity(value.len());
        for c in value.chars() {
            match c {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                '\n' => s.push_str("\\n"),
                '\r' => s.push_str("\\r"),
                '\t' => s.push_str("\\t"),
                '\u{8}' => s.push_str("\\b"),
                '\u{c}' => s.push_str("\\f"),
                c if c.is_ascii() && !c.is_ascii_control() => s.push(c),
                c => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        if upper {
                            s.push_str(&format!("\\u{unit:04X}"));
                        } else {
                            s.push_str(&format!("\\u{unit:04x}"));
                        }
                    }
                }
            }
        }
        s
    }

    fn percent(value: &str, out: &mut Vec<String>) {
        let encode =
            |set: &'static AsciiSet| percent_encoding::utf8_percent_encode(value, set).to_string();
        // These sets encode `%` itself, so every `%` in their output starts
        // an escape whose hex digits can be written in lower case.
        for set in [COMPONENT, JS_COMPONENT, FORM] {
            let upper = encode(set);
            out.push(lower_escapes(&upper));
            out.push(upper);
        }
        let form: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
        out.push(lower_escapes(&form));
        out.push(form);
        // `url::Url` writes upper case and leaves an existing `%` alone.
        for set in [QUERY, SPECIAL_QUERY, FRAGMENT, PATH, PATH_SEGMENT, USERINFO] {
            out.push(encode(set));
        }
    }

    fn lower_escapes(encoded: &str) -> String {
        let mut s = String::with_capacity(encoded.len());
        let mut hex_left = 0;
        for c in encoded.chars() {
            if hex_left > 0 {
                s.push(c.to_ascii_lowercase());
                hex_left -= 1;
            } else {
                if c == '%' {
                    hex_left = 2;
                }
                s.push(c);
            }
        }
        s
    }

    fn base64(bytes: &[u8], out: &mut Vec<String>) {
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            out.push(engine.encode(bytes));
        }
        // Inside a longer text the secret starts `skip` bytes into a 3-byte
        // group; keep the characters made only of its own bits.
        for skip in 0..3usize {
            let mut shifted = vec![0u8; skip];
            shifted.extend_from_slice(bytes);
            let text = STANDARD_NO_PAD.encode(&shifted);
            let first = (8 * skip).div_ceil(6);
            let end = 8 * shifted.len() / 6;
            if let Some(core) = text.get(first..end) {
                out.push(core.replace('+', "-").replace('/', "_"));
                out.push(core.to_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_all_secrets_longest_first() {
        let m = Masker::new(["hunter2", "hunter2-and-more", ""]);
        assert_eq!(m.mask("a hunter2 b"), "a *** b");
        assert_eq!(m.mask("x hunter2-and-more y"), "x *** y");
        assert!(matches!(m.mask("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn masks_inside_json_keeping_it_valid() {
        let m = Masker::new(["p\"w"]);
        let mut v = json!({"a": ["x p\"w y", 1], "p\"w": true});
        m.mask_json(&mut v);
        assert_eq!(v, json!({"a": ["x *** y", 1], "***": true}));
    }

    /// A secret with characters every encoding treats differently: a
    /// space, a quote, a slash, `+`, `~`, `%`, non-ASCII (2 and 4 bytes).
    const SECRET: &str = "p@ss w\"rd/+~%é😀";

    fn assert_masked(m: &Masker, text: &str, form: &str) {
        assert!(text.contains(form), "the test text lacks the form {form:?}");
        let masked = m.mask(text);
        assert!(!masked.contains(form), "{form:?} survived in {masked:?}");
        assert!(masked.contains(MASK), "{masked:?}");
    }

    #[test]
    fn masks_base64_in_every_alphabet_and_alignment() {
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let m = Masker::new([SECRET]);
        for form in [STANDARD.encode(SECRET), URL_SAFE_NO_PAD.encode(SECRET)] {
            assert_masked(&m, &format!("x {form} y"), &form);
            assert_eq!(m.mask(&form), MASK, "the whole encoding, padding included");
        }
        // `Basic base64(user:pass)`: the secret starts 0, 1 and 2 bytes into
        // a 3-byte group, with more bytes after it.
        for user in ["", "a", "ab", "abc", "ops-user"] {
            for after in ["", "!", "-and-more"] {
                let plain = format!("{user}:{SECRET}{after}");
                let text = format!("Authorization: Basic {}", STANDARD.encode(&plain));
                let masked = m.mask(&text);
                assert!(masked.contains(MASK), "{plain:?}: {masked}");
                // Nothing of the secret decodes back out of what is left.
                let left = masked.rsplit(MASK).next().unwrap_or("");
                let first = masked.trim_start_matches("Authorization: Basic ");
                let first = first.split(MASK).next().unwrap_or("");
                for part in [first, left] {
                    let decoded = STANDARD
                        .decode(part.trim_end_matches('='))
                        .unwrap_or_default();
                    assert!(
                        !String::from_utf8_lossy(&decoded).contains("ss w"),
                        "{plain:?}: {masked}"
                    );
                }
            }
        }
    }

    #[test]
    fn masks_percent_encodings() {
        let m = Masker::new([SECRET]);
        // The `url` crate's query serializer (form encoding, `+` for space).
        let mut url = url::Url::parse("https://api.example.com/v1/items").unwrap();
        url.query_pairs_mut().append_pair("token", SECRET);
        let form: String = url::form_urlencoded::byte_serialize(SECRET.as_bytes()).collect();
        assert_masked(&m, url.as_str(), &form);
        assert_masked(&m, &form.to_lowercase(), &form.to_lowercase());
        // A value put into a path segment, and a parsed query.
        let mut url = url::Url::parse("https://api.example.com/").unwrap();
        url.path_segments_mut().unwrap().push(SECRET);
        let segment = url.path().trim_start_matches('/').to_owned();
        assert_masked(&m, url.as_str(), &segment);
        let parsed = url::Url::parse(&format!("https://h/?k={SECRET}")).unwrap();
        let query = parsed.query().unwrap().trim_start_matches("k=").to_owned();
        assert_masked(&m, parsed.as_str(), &query);
        // Everything but the unreserved characters, upper and lower hex.
        let strict = "p%40ss%20w%22rd%2F%2B~%25%C3%A9%F0%9F%98%80";
        assert_masked(&m, &format!("?t={strict}"), strict);
        assert_masked(
            &m,
            &format!("?t={}", strict.to_lowercase()),
            &strict.to_lowercase(),
        );
    }

    #[test]
    fn masks_hex_and_json_escapes() {
        let m = Masker::new([SECRET]);
        for form in [hex::encode(SECRET), hex::encode_upper(SECRET)] {
            assert_masked(&m, &format!("digest {form}."), &form);
        }
        let json = serde_json::to_string(&serde_json::json!({ "t": SECRET })).unwrap();
        let escaped = serde_json::to_string(SECRET).unwrap();
        assert_masked(&m, &json, escaped.trim_matches('"'));
        // ASCII-only JSON writers (Python's json.dumps, JavaScript tooling).
        let ascii = r#"p@ss w\"rd\/+~%\u00e9\ud83d\ude00"#;
        assert_masked(&m, &format!(r#"{{"t":"{ascii}"}}"#), ascii);
        let upper = r#"p@ss w\"rd/+~%\u00E9\uD83D\uDE00"#;
        assert_masked(&m, &format!(r#"{{"t":"{upper}"}}"#), upper);
    }

    #[test]
    fn short_secrets_are_masked_only_where_it_is_safe() {
        let m = Masker::new(["ab c"]);
        assert_eq!(m.mask("x ab c y"), "x *** y");
        assert_eq!(m.mask("q=ab+c&r=ab%20c"), "q=***&r=***");
        // Its hex and base64 forms are too short to tell from other text.
        let digest = hex::encode("ab c");
        assert_eq!(m.mask(&digest), digest);
    }

    #[test]
    fn unrelated_text_is_left_alone() {
        let m = Masker::new([SECRET, "another-secret-value"]);
        let text = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad \
                    Basic b3BzOmxldG1laW4= 0192f0c4-7c1e-7d2a-9e4b-3f1a2b3c4d5e";
        assert!(matches!(m.mask(text), Cow::Borrowed(_)));
    }

    #[test]
    fn many_secrets_are_each_masked_with_and_without_detectors() {
        // 30 secrets stay under MAX_FAST_FORMS (detectors); 60 go over.
        for n in [30usize, 60] {
            let values: Vec<String> = (0..n).map(|i| format!("s3cr3t-{i:03}/x+y z")).collect();
            let m = Masker::new(values.iter().map(String::as_str));
            assert_eq!(m.detectors.is_empty(), n == 60, "{m:?}");
            for v in &values {
                let text = format!("a {v} b {} c", hex::encode(v));
                assert_eq!(m.mask(&text), "a *** b *** c", "{n} secrets: {v}");
            }
            assert!(matches!(m.mask("nothing secret here"), Cow::Borrowed(_)));
        }
    }

    proptest::proptest! {
        /// Whatever comes before and after a secret inside a base64 text, the
        /// characters that encode only the secret's bits are masked.
        #[test]
        fn base64_of_a_secret_inside_anything_is_masked(
            secret in "[ -~]{6,40}",
            before in proptest::collection::vec(proptest::num::u8::ANY, 0..7),
            after in proptest::collection::vec(proptest::num::u8::ANY, 0..7),
        ) {
            use base64::Engine as _;
            use base64::engine::general_purpose::STANDARD;
            let m = Masker::new([secret.as_str()]);
            let mut plain = before.clone();
            plain.extend_from_slice(secret.as_bytes());
            plain.extend_from_slice(&after);
            let text = STANDARD.encode(&plain);
            let masked = m.mask(&text);
            proptest::prop_assert!(masked.contains(MASK), "{} in {}", secret, text);
            // The characters fully inside the secret are gone.
            let skip = before.len() % 3;
            let mut shifted = vec![0u8; skip];
            shifted.extend_from_slice(secret.as_bytes());
            let core = &STANDARD.encode(&shifted)[(8 * skip).div_ceil(6)..8 * shifted.len() / 6];
            proptest::prop_assert!(!masked.contains(core), "{} left in {}", core, masked);
        }
    }

    #[test]
    fn debug_never_shows_values() {
        let store = SecretStore::new(BTreeMap::from([("t".into(), SecretValue::new("s3cr3t"))]));
        let shown = format!("{store:?} {:?}", store.get("t"));
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
}
