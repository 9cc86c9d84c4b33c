//! The cost of [`Masker::mask`], which runs on every log line, every
//! capability record and every string of every step output.
//!
//! Secrets of 20 to 40 bytes with some punctuation (so their encoded forms
//! differ from the plain one), 1, 10 or 100 of them, against:
//!
//! - `line`: a 200-byte log line that holds no secret (the common case);
//! - `line_hit`: the same line with one secret in it;
//! - `output_64k`: 64 KiB of JSON-ish text that holds no secret;
//!
//! and `build`: making the masker from 100 secrets (once, at load).
//!
//! Each case also runs on `exact/…`: one Aho-Corasick automaton over the
//! secrets as written and nothing else (leftmost-longest, replace-all),
//! which is what the masker was before it looked for encodings: the
//! baseline the ratios in BENCHMARKS.md are taken against, in the same run.
//!
//! Run: `cargo bench -p meridian-tests --bench masking`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use meridian::secrets::Masker;
use std::borrow::Cow;
use std::hint::black_box;
use std::time::Duration;

/// `n` distinct random secrets of 20-40 bytes (a fixed-seed generator),
/// with characters that percent and JSON encoding change.
fn secrets(n: usize) -> Vec<String> {
    const CHARS: &[u8] =
        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/+:@ \"!$%&=";
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|_| {
            let len = 20 + (next() % 21) as usize;
            (0..len)
                .map(|_| char::from(CHARS[(next() % CHARS.len() as u64) as usize]))
                .collect()
        })
        .collect()
}

const LINE: &str = "2026-03-29T23:50:00.000Z  INFO meridian::step{execution_id=0192f0c4-7c1e-7d2a-9e4b-3f1a2b3c4d5e zone=Asia/Kolkata}: fetched 3 rows from warehouse in 12 ms source=step";

fn output_text() -> String {
    let mut s = String::with_capacity(64 * 1024);
    let mut i = 0u32;
    while s.len() < 64 * 1024 {
        s.push_str(&format!(
            "{{\"id\":{i},\"name\":\"row {i}\",\"value\":\"{:08x}\",\"ok\":true}},",
            i.wrapping_mul(2_654_435_761)
        ));
        i += 1;
    }
    s
}

/// The baseline: the secrets as written, nothing else.
struct Exact {
    automaton: AhoCorasick,
}

impl Exact {
    fn new(values: &[String]) -> Self {
        let automaton = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(values)
            .unwrap();
        Self { automaton }
    }

    fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.automaton.is_match(text) {
            let with = vec!["***"; self.automaton.patterns_len()];
            Cow::Owned(self.automaton.replace_all(text, &with))
        } else {
            Cow::Borrowed(text)
        }
    }
}

fn bench(c: &mut Criterion) {
    let output = output_text();
    let mut group = c.benchmark_group("masking");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for n in [1usize, 10, 100] {
        let values = secrets(n);
        let masker = Masker::new(values.iter().map(String::as_str));
        let hit = format!("{LINE} token={}", values[n / 2]);
        group.bench_with_input(BenchmarkId::new("line", n), &masker, |b, m| {
            b.iter(|| black_box(m.mask(black_box(LINE))).len())
        });
        group.bench_with_input(BenchmarkId::new("line_hit", n), &masker, |b, m| {
            b.iter(|| black_box(m.mask(black_box(&hit))).len())
        });
        group.bench_with_input(BenchmarkId::new("output_64k", n), &masker, |b, m| {
            b.iter(|| black_box(m.mask(black_box(&output))).len())
        });
        let exact = Exact::new(&values);
        group.bench_with_input(BenchmarkId::new("exact/line", n), &exact, |b, e| {
            b.iter(|| black_box(e.mask(black_box(LINE))).len())
        });
        group.bench_with_input(BenchmarkId::new("exact/line_hit", n), &exact, |b, e| {
            b.iter(|| black_box(e.mask(black_box(&hit))).len())
        });
        group.bench_with_input(BenchmarkId::new("exact/output_64k", n), &exact, |b, e| {
            b.iter(|| black_box(e.mask(black_box(&output))).len())
        });
    }
    let values = secrets(100);
    group.bench_function("build/100", |b| {
        b.iter(|| Masker::new(black_box(&values).iter().map(String::as_str)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
