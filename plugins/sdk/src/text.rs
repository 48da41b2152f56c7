//! The text of a series, `name{label="value",...}`, as the exposition formats print
//! it: the SDK's key for a series, and what a scrape compares a page's lines with.
//!
//! Label values are escaped as in the text format and OpenMetrics (`\\`, `\"`, `\n`);
//! a series without labels is its bare name. The labels keep the order they were
//! given in. Rendering is injective for valid label names, so equal texts are equal
//! series.
//!
//! [`hash`] and [`same`] are the fast byte hash and equality the SDK and the scrape
//! cache use: every sample of a scrape goes through them, in wasm32.

/// Appends the text of `name` and `labels` to `out`.
pub fn render(out: &mut Vec<u8>, name: &str, labels: &[(&str, &str)]) {
    out.extend_from_slice(name.as_bytes());
    if labels.is_empty() {
        return;
    }
    for (i, (n, v)) in labels.iter().enumerate() {
        out.push(if i == 0 { b'{' } else { b',' });
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b"=\"");
        for &b in v.as_bytes() {
            match b {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'"' => out.extend_from_slice(b"\\\""),
                b'\n' => out.extend_from_slice(b"\\n"),
                b => out.push(b),
            }
        }
        out.push(b'"');
    }
    out.push(b'}');
}

/// Whether `text` is the [`render`]ing of `name` and `labels`, without rendering.
pub fn matches(text: &[u8], name: &str, labels: &[(&str, &str)]) -> bool {
    let Some(mut rest) = text.strip_prefix(name.as_bytes()) else {
        return false;
    };
    for (i, (n, v)) in labels.iter().enumerate() {
        let open: &[u8] = if i == 0 { b"{" } else { b"," };
        let Some(r) = rest
            .strip_prefix(open)
            .and_then(|r| r.strip_prefix(n.as_bytes()))
            .and_then(|r| r.strip_prefix(b"=\""))
            .and_then(|r| strip_escaped(r, v.as_bytes()))
            .and_then(|r| r.strip_prefix(b"\""))
        else {
            return false;
        };
        rest = r;
    }
    if labels.is_empty() {
        rest.is_empty()
    } else {
        rest == b"}"
    }
}

/// `text` after the escaped form of `value`.
fn strip_escaped<'t>(text: &'t [u8], value: &[u8]) -> Option<&'t [u8]> {
    if !value.iter().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        return text.strip_prefix(value);
    }
    let mut rest = text;
    for &b in value {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'"' => b"\\\"",
            b'\n' => b"\\n",
            _ => std::slice::from_ref(&b),
        };
        rest = rest.strip_prefix(esc)?;
    }
    Some(rest)
}

/// Hash of a text, eight bytes per step (in wasm32 about twice as fast as the
/// word-sized, 32-bit there, FxHasher).
pub fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    // The multiplications only carry differences upwards, and hash tables take their
    // bucket from the low bits: mix everything down (murmur3's finaliser).
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Byte equality sixteen bytes per step: `==` on slices calls memcmp, a byte loop in
/// wasi-libc, and every loop iteration in wasm carries an interruption check.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
    if n < 8 {
        let pad = |s: &[u8]| {
            let mut w = [0u8; 8];
            w[..n].copy_from_slice(s);
            u64::from_le_bytes(w)
        };
        return pad(a) == pad(b);
    }
    let mut i = 0;
    while i + 16 <= n {
        if (word(a, i) ^ word(b, i)) | (word(a, i + 8) ^ word(b, i + 8)) != 0 {
            return false;
        }
        i += 16;
    }
    if i + 8 <= n {
        if word(a, i) != word(b, i) {
            return false;
        }
        i += 8;
    }
    // The last 0..7 bytes: the final eight, overlapping what was compared.
    i == n || word(a, n - 8) == word(b, n - 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(name: &str, labels: &[(&str, &str)]) -> String {
        let mut out = Vec::new();
        render(&mut out, name, labels);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn texts_are_printed_as_the_exposition_formats_print_series() {
        assert_eq!(text("up", &[]), "up");
        assert_eq!(
            text("http_requests_total", &[("code", "200"), ("path", "/a")]),
            r#"http_requests_total{code="200",path="/a"}"#
        );
        assert_eq!(text("m", &[("v", "a\\b\"c\nd")]), r#"m{v="a\\b\"c\nd"}"#);
        assert_eq!(text("m", &[("v", "")]), r#"m{v=""}"#);
    }

    #[test]
    fn matching_agrees_with_rendering() {
        let sets: &[(&str, &[(&str, &str)])] = &[
            ("m", &[]),
            ("m", &[("a", "")]),
            ("m", &[("a", "1")]),
            ("m", &[("a", "1"), ("b", "2")]),
            ("m", &[("a", "1\",b=\"2")]),
            ("m", &[("a", "x\\")]),
            ("m", &[("a", "x\\\"")]),
            ("m", &[("a", "line\nbreak"), ("le", "+Inf")]),
            ("m_total", &[("a", "1")]),
            ("mm", &[]),
        ];
        for (i, (n, l)) in sets.iter().enumerate() {
            let t = text(n, l);
            for (j, (n2, l2)) in sets.iter().enumerate() {
                assert_eq!(matches(t.as_bytes(), n2, l2), i == j, "{t} against {n2} {l2:?}");
                assert_eq!(t == text(n2, l2), i == j, "{t}: rendering is injective");
            }
        }
        assert!(!matches(b"m{a=\"1\"", "m", &[("a", "1")]), "unclosed");
        assert!(!matches(b"m{a=\"1\"}x", "m", &[("a", "1")]), "trailing bytes");
    }

    #[test]
    fn equality_and_hash_cover_every_byte() {
        for n in 0..=40u8 {
            let base: Vec<u8> = (1..=n).collect();
            assert!(same(&base, &base.clone()), "length {n}");
            for i in 0..base.len() {
                let mut other = base.clone();
                other[i] ^= 1;
                assert!(!same(&base, &other), "length {n}, byte {i}");
                assert_ne!(hash(&base), hash(&other));
            }
        }
        assert!(!same(b"ab", b"abc"));
        assert!(!same(b"", b"\0"));
    }
}
