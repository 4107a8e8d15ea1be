//! Bad GGUF files: crafted headers whose counts lie, and seeded mutations of a tiny model
//! (`tiny::write_tiny_model`) and a LoRA adapter. `Gguf::open` must return (an `Error` naming
//! the file, or a header it checked) without a panic, and never hold more memory than a small
//! multiple of the file's size: a counting allocator measures the peak of every call.
//!
//! The suite runs a bounded number of mutations; `bench/fuzz.sh` runs more
//! (`LORAG_FUZZ_CASES`, `LORAG_FUZZ_SEED`). The allocator and the mutator are shared with the
//! other fuzz tests: `crates/lorag-fuzz`.

use std::path::Path;
use std::time::{Duration, Instant};

use lorag_fuzz::{mutate_binary, peak_of, Rng};
use lorag_gguf::tiny::{write_random_lora, write_tiny_model, Arch, TinyConfig};
use lorag_gguf::{Error, Gguf, Value, Writer};

#[global_allocator]
static ALLOC: lorag_fuzz::Counting = lorag_fuzz::Counting;

/// `Gguf::open(path)` and the most bytes it held at once.
fn open_measured(path: &Path) -> (lorag_gguf::Result<Gguf>, u64) {
    peak_of(|| Gguf::open(path))
}

/// The bound on what opening a file of `size` bytes may hold: the BufReader's 64 KiB, the
/// parsed values (a `Value` is 32 bytes for every byte of a u8 array, at worst), and slack.
fn bound(size: u64) -> u64 {
    (1 << 20) + 40 * size
}

fn le64(v: u64) -> [u8; 8] {
    v.to_le_bytes()
}

/// A GGUF v3 header: counts, then `rest`.
fn header(n_tensors: u64, n_kv: u64, rest: &[u8]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(le64(n_tensors));
    b.extend(le64(n_kv));
    b.extend(rest);
    b
}

fn kv(key: &str, ty: u32, value: &[u8]) -> Vec<u8> {
    let mut b = le64(key.len() as u64).to_vec();
    b.extend(key.as_bytes());
    b.extend(ty.to_le_bytes());
    b.extend(value);
    b
}

fn array_head(elem: u32, n: u64) -> Vec<u8> {
    let mut b = elem.to_le_bytes().to_vec();
    b.extend(le64(n));
    b
}

fn tensor_entry(name: &str, dims: &[u64], ty: u32, offset: u64) -> Vec<u8> {
    let mut b = le64(name.len() as u64).to_vec();
    b.extend(name.as_bytes());
    b.extend((dims.len() as u32).to_le_bytes());
    for d in dims {
        b.extend(le64(*d));
    }
    b.extend(ty.to_le_bytes());
    b.extend(le64(offset));
    b
}

#[test]
fn crafted_counts_are_errors_without_big_allocations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pad = vec![0u8; 4096];
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "n_kv",
            header(0, u64::MAX, &pad),
            "the metadata count claims",
        ),
        (
            "n_kv_fits_bytes",
            header(0, 4000, &pad),
            "the metadata count claims",
        ),
        (
            "n_tensors",
            header(1 << 40, 0, &pad),
            "the tensor count claims",
        ),
        (
            "n_tensors_after_kv",
            header(
                171,
                1,
                &[kv("a", 4, &7u32.to_le_bytes()), pad.clone()].concat(),
            ),
            "the tensor count claims",
        ),
        (
            "u8_array",
            header(
                0,
                1,
                &[kv("tokenizer.x", 9, &array_head(0, 1 << 50)), pad.clone()].concat(),
            ),
            "array \"tokenizer.x\" claims",
        ),
        (
            // Within the file by bytes (1 byte each) but strings take 8 bytes at least.
            "string_array",
            header(
                0,
                1,
                &[
                    kv("tokenizer.ggml.tokens", 9, &array_head(8, 4000)),
                    pad.clone(),
                ]
                .concat(),
            ),
            "array \"tokenizer.ggml.tokens\" claims",
        ),
        (
            "nested_array",
            header(0, 1, &[kv("a", 9, &array_head(9, 2)), pad.clone()].concat()),
            "nested type 9",
        ),
        (
            "string_len",
            header(0, 1, &[le64(u64::MAX - 3).to_vec(), pad.clone()].concat()),
            "needs 18446744073709551612 bytes",
        ),
        (
            "value_string_len",
            header(0, 1, &[kv("k", 8, &le64(1 << 62)), pad.clone()].concat()),
            "needs 4611686018427387904 bytes",
        ),
        (
            "dims_overflow",
            header(
                1,
                0,
                &[tensor_entry("t", &[1 << 32, 1 << 32, 2], 0, 0), pad.clone()].concat(),
            ),
            "more elements than a 64-bit count holds",
        ),
        (
            "bytes_overflow",
            header(
                1,
                0,
                &[tensor_entry("t", &[1 << 62], 0, 0), pad.clone()].concat(),
            ),
            "not a whole number of blocks",
        ),
        (
            "offset_overflow",
            header(
                1,
                0,
                &[tensor_entry("t", &[4], 0, u64::MAX - 2), pad.clone()].concat(),
            ),
            "tensor \"t\" ends at byte",
        ),
        (
            "alignment_huge",
            header(
                0,
                1,
                &[kv("general.alignment", 10, &le64(1 << 63)), pad.clone()].concat(),
            ),
            "general.alignment",
        ),
        (
            "alignment_odd",
            header(
                0,
                1,
                &[kv("general.alignment", 4, &3u32.to_le_bytes()), pad.clone()].concat(),
            ),
            "not a power of two",
        ),
        (
            "alignment_zero",
            header(
                0,
                1,
                &[kv("general.alignment", 4, &0u32.to_le_bytes()), pad.clone()].concat(),
            ),
            "not a power of two",
        ),
        (
            "too_many_dims",
            header(
                1,
                0,
                &[tensor_entry("t", &[1; 9], 0, 0), pad.clone()].concat(),
            ),
            "9 dimensions",
        ),
    ];
    for (name, bytes, want) in cases {
        let path = dir.path().join(format!("{name}.gguf"));
        std::fs::write(&path, &bytes).expect("write");
        let (r, peak) = open_measured(&path);
        let err = r.expect_err(name);
        let msg = err.to_string();
        assert!(
            msg.starts_with(&path.display().to_string()),
            "{name}: {msg}"
        );
        assert!(msg.contains(want), "{name}: {msg}");
        assert!(
            matches!(err, Error::Truncated { .. } | Error::Malformed { .. }),
            "{name}: {err:?}"
        );
        assert!(
            peak <= bound(bytes.len() as u64),
            "{name}: held {peak} bytes for a {}-byte file",
            bytes.len()
        );
    }
}

#[test]
fn a_large_honest_array_is_read_and_memory_follows_the_bytes() {
    // 200,000 one-byte elements: read fully; the reservation never runs ahead of the file.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = Writer::new();
    w.set("big", Value::Array(0, vec![Value::U8(7); 200_000]));
    let path = dir.path().join("big.gguf");
    w.write(&path).expect("write");
    let size = std::fs::metadata(&path).expect("meta").len();
    let (r, peak) = open_measured(&path);
    let g = r.expect("opens");
    assert_eq!(
        g.get("big").and_then(Value::as_array).map(<[Value]>::len),
        Some(200_000)
    );
    assert!(
        peak <= bound(size),
        "held {peak} bytes for a {size}-byte file"
    );
}

/// A vocabulary GGUF as a tokenizer-only file (what `write_tiny_model` copies keys from).
fn write_vocab(path: &Path) {
    let mut w = Writer::new();
    w.set("general.architecture", Value::String("llama".into()));
    w.set("tokenizer.ggml.model", Value::String("gpt2".into()));
    let tokens: Vec<Value> = [
        "<s>", "</s>", "a", "b", "c", "ab", "bc", "abc", " ", "Ġx", "é", "日本",
    ]
    .iter()
    .map(|t| Value::String((*t).into()))
    .collect();
    let n = tokens.len();
    w.set("tokenizer.ggml.tokens", Value::Array(8, tokens));
    w.set(
        "tokenizer.ggml.token_type",
        Value::Array(5, vec![Value::I32(1); n]),
    );
    w.set(
        "tokenizer.ggml.merges",
        Value::Array(8, vec![Value::String("a b".into())]),
    );
    w.set("tokenizer.ggml.bos_token_id", Value::U32(0));
    w.write(path).expect("write vocab");
}

#[test]
fn mutated_models_and_adapters_never_panic_or_overallocate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vocab = dir.path().join("vocab.gguf");
    write_vocab(&vocab);
    let cfg = TinyConfig {
        n_embd: 8,
        n_ff: 16,
        n_layer: 1,
        n_head: 2,
        n_head_kv: 1,
        n_ctx: 64,
        ..TinyConfig::default()
    };
    let mut seeds = Vec::new();
    for arch in [Arch::Llama, Arch::Phi3, Arch::Qwen2, Arch::Gemma3] {
        let out = dir.path().join(format!("{}.gguf", arch.name()));
        write_tiny_model(arch, &vocab, &out, &cfg).expect("tiny model");
        Gguf::open(&out).expect("the seed opens");
        seeds.push(std::fs::read(&out).expect("read"));
    }
    let lora = dir.path().join("lora.gguf");
    let targets = vec![("blk.0.attn_q".to_string(), 8, 8)];
    write_random_lora("llama", &targets, 2, 4.0, 3, 0.1, &lora).expect("lora");
    seeds.push(std::fs::read(&lora).expect("read"));

    let n = lorag_fuzz::cases(1500);
    let seed = lorag_fuzz::seed();
    let case = dir.path().join("case.gguf");
    let (mut opened, mut refused, mut max_peak, mut slowest) = (0u64, 0u64, 0u64, Duration::ZERO);
    for i in 0..n {
        let mut rng = Rng::new(seed ^ i.wrapping_mul(0x1000_0001));
        let input = &seeds[rng.below(seeds.len())];
        let bytes = mutate_binary(&mut rng, input);
        std::fs::write(&case, &bytes).expect("write case");
        let started = Instant::now();
        // A panic fails the test here, with the case named.
        let (r, peak) = std::panic::catch_unwind(|| open_measured(&case)).unwrap_or_else(|_| {
            let kept = std::env::temp_dir().join(format!("lorag-gguf-fuzz-{seed}-{i}.gguf"));
            let _ = std::fs::copy(&case, &kept);
            panic!(
                "case {i} (LORAG_FUZZ_SEED={seed}) panicked; input kept at {}",
                kept.display()
            )
        });
        slowest = slowest.max(started.elapsed());
        let size = bytes.len() as u64;
        assert!(
            peak <= bound(size),
            "case {i}: held {peak} bytes for a {size}-byte file"
        );
        max_peak = max_peak.max(peak);
        match r {
            Ok(g) => {
                opened += 1;
                // What callers do next must not panic either.
                let _ = (g.n_params(), g.quantization(), g.architecture());
                for t in g.tensors.iter().take(4) {
                    let data = g.read_tensor_bytes(t).expect("a checked tensor reads");
                    assert_eq!(Some(data.len() as u64), t.n_bytes());
                }
            }
            Err(e) => {
                refused += 1;
                assert!(
                    e.to_string().starts_with(&case.display().to_string()),
                    "{e}"
                );
            }
        }
    }
    eprintln!(
        "gguf fuzz: {n} cases, {opened} opened, {refused} refused, 0 panics; \
         max peak {} KiB (bound: 1 MiB + 40 x the file); slowest {slowest:?}",
        max_peak >> 10
    );
    assert!(
        opened > 0 && refused > 0,
        "{opened} opened, {refused} refused"
    );
}
