//! The shared harness of the fuzz tests (`tests/fuzz.rs` of lorag-gguf, lorag-ingest,
//! lorag-train and lorag-eval): seeded mutation fuzzing on stable Rust, no dependencies beyond
//! std. Used only as a dev-dependency.
//!
//! - [`Counting`]: a global allocator that counts the bytes each thread holds; each test binary
//!   declares `#[global_allocator] static ALLOC: lorag_fuzz::Counting = lorag_fuzz::Counting;`
//!   and [`peak_of`] measures the most bytes a call held at once.
//! - [`Rng`] (xorshift64*), [`mutate`] (text formats: interesting bytes and numbers, format
//!   tokens, deletions, duplications, long repeats, truncation) and [`mutate_binary`]
//!   (binary headers: little-endian numbers that make counts and lengths lie).
//! - [`run_on_thread`]: one case on a thread of its own (2 MiB stack, as a worker thread has),
//!   with a timeout: a panic or a hang is an outcome, not a crash of the test.
//! - [`fuzz`]: the loop over cases, with the environment it reads: `LORAG_FUZZ_CASES` (cases
//!   per target, else the suite's bounded count), `LORAG_FUZZ_SEED`, `LORAG_FUZZ_ONLY` (replay
//!   one case), `LORAG_FUZZ_TIMEOUT_S` (default 20) and `LORAG_FUZZ_OUT` (where failing inputs
//!   are kept; default a `lorag-fuzz` folder in the temporary directory).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

// ---------- a counting allocator: the peak bytes one thread holds ----------

/// A global allocator that forwards to the system's and counts, per thread, the bytes live and
/// their peak (see [`peak_of`]).
pub struct Counting;

thread_local! {
    static LIVE: Cell<u64> = const { Cell::new(0) };
    static PEAK: Cell<u64> = const { Cell::new(0) };
}

fn grow(n: usize) {
    let _ = LIVE.try_with(|live| {
        let v = live.get().saturating_add(n as u64);
        live.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

fn shrink(n: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(n as u64)));
}

// SAFETY: every call forwards to the system allocator; the counters are thread-locals without
// destructors, so they never allocate. A request is counted before it is made, so a huge one
// shows in the peak even though the system would refuse it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        shrink(layout.size());
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            grow(new_size - layout.size());
        } else {
            shrink(layout.size() - new_size);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` and returns its result and the most bytes it held at once (on this thread). Counts
/// only where the test binary's global allocator is [`Counting`]; 0 otherwise.
pub fn peak_of<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    (out, PEAK.with(Cell::get) - base)
}

// ---------- the mutators ----------

/// xorshift64*: deterministic, seedable, no RNG crate (the same generator as
/// `lorag_gguf::tiny::Rng`).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Inserted or written over by [`mutate`]: numbers at the edges of integer and float types,
/// and bytes that break encodings (BOMs, a lone lead byte, a UTF-8 surrogate).
pub const INTERESTING: &[&[u8]] = &[
    b"0",
    b"-1",
    b"4294967295",
    b"4294967296",
    b"18446744073709551615",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"999999999999999999999999",
    b"1e308",
    b"NaN",
    b"\xff\xff\xff\xff",
    b"\x00\x00\x00\x80",
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    b"\xc3",
    b"\xed\xa0\x80",
];

/// 1-4 mutations of `input`, cut to 1 MiB; `tokens` are pieces of the format (tags, brackets,
/// keywords).
pub fn mutate(rng: &mut Rng, input: &[u8], tokens: &[&[u8]]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = b.len();
        let at = rng.below(len + 1);
        match rng.below(10) {
            0 if len > 0 => {
                let i = rng.below(len);
                b[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                b[i] = rng.next_u64() as u8;
            }
            2 => {
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let end = (at + v.len()).min(len);
                b.splice(at..end, v.iter().copied());
            }
            3 if !tokens.is_empty() => {
                let t = tokens[rng.below(tokens.len())];
                b.splice(at..at, t.iter().copied());
            }
            4 if len > 0 => {
                let start = rng.below(len);
                let n = 1 + rng.below(64.min(len - start));
                b.drain(start..start + n);
            }
            5 if len > 0 => {
                let start = rng.below(len);
                let n = 1 + rng.below(256.min(len - start));
                let piece = b[start..start + n].to_vec();
                let to = rng.below(len + 1);
                b.splice(to..to, piece);
            }
            6 => {
                // A long repeat: deep nesting, huge lines, many fields.
                let piece: Vec<u8> = if !tokens.is_empty() && rng.below(2) == 0 {
                    tokens[rng.below(tokens.len())].to_vec()
                } else if len > 0 {
                    let start = rng.below(len);
                    b[start..(start + 1 + rng.below(8)).min(len)].to_vec()
                } else {
                    b"x".to_vec()
                };
                let times = 1 + rng.below(20_000 / piece.len().max(1));
                let rep = piece.repeat(times);
                b.splice(at..at, rep);
            }
            7 if len > 1 => b.truncate(rng.below(len)),
            8 if len > 0 => {
                // Swap two ranges' bytes (reorders structure).
                let i = rng.below(len);
                let j = rng.below(len);
                b.swap(i, j);
            }
            _ => {
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                b.splice(at..at, bytes);
            }
        }
    }
    b.truncate(1 << 20);
    b
}

/// Written over bytes by [`mutate_binary`] (1, 2, 4 or 8 of them, little-endian): numbers that
/// make counts and lengths lie.
pub const INTERESTING_NUMBERS: &[u64] = &[
    0,
    1,
    7,
    8,
    9,
    12,
    13,
    31,
    32,
    33,
    255,
    4096,
    65_535,
    1 << 31,
    u32::MAX as u64,
    1 << 32,
    1 << 40,
    1 << 62,
    i64::MAX as u64,
    u64::MAX,
];

/// 1-4 mutations of a binary file (`input` not empty): bit flips, random bytes,
/// [`INTERESTING_NUMBERS`], truncation, deletions, duplications, random insertions; half of
/// them aimed at the first 1 KiB, where headers and their counts are.
pub fn mutate_binary(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = b.len();
        let at = if rng.below(2) == 0 {
            rng.below(len.min(1024))
        } else {
            rng.below(len)
        };
        match rng.below(7) {
            0 => b[at] ^= 1 << rng.below(8),
            1 => b[at] = rng.next_u64() as u8,
            2 => {
                let v = INTERESTING_NUMBERS[rng.below(INTERESTING_NUMBERS.len())];
                let width = [1, 2, 4, 8][rng.below(4)];
                let bytes = &v.to_le_bytes()[..width];
                let end = (at + width).min(len);
                b[at..end].copy_from_slice(&bytes[..end - at]);
            }
            3 => b.truncate(at.max(1)),
            4 => {
                let n = 1 + rng.below(32.min(len - at));
                b.drain(at..at + n);
            }
            5 => {
                let n = 1 + rng.below(64.min(len - at));
                let piece = b[at..at + n].to_vec();
                let to = rng.below(len);
                b.splice(to..to, piece);
            }
            _ => {
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                b.splice(at..at, bytes);
            }
        }
        if b.is_empty() {
            b.push(0);
        }
    }
    b
}

// ---------- the environment ----------

/// The number in environment variable `name`, if it is set and parses.
pub fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Cases per target: `LORAG_FUZZ_CASES`, else the suite's bounded count `default`.
pub fn cases(default: u64) -> u64 {
    env_u64("LORAG_FUZZ_CASES").unwrap_or(default)
}

/// The run's seed: `LORAG_FUZZ_SEED`, else a fixed one (the suite is deterministic).
pub fn seed() -> u64 {
    env_u64("LORAG_FUZZ_SEED").unwrap_or(0x10_4A6)
}

/// The one case to run (`LORAG_FUZZ_ONLY`), to replay a failure.
pub fn only() -> Option<u64> {
    env_u64("LORAG_FUZZ_ONLY")
}

/// How long a case may run: `LORAG_FUZZ_TIMEOUT_S`, default 20 s.
pub fn timeout() -> Duration {
    Duration::from_secs(env_u64("LORAG_FUZZ_TIMEOUT_S").unwrap_or(20))
}

/// A fresh folder for `kind`'s cases and failing inputs, under `LORAG_FUZZ_OUT` (default: a
/// `lorag-fuzz` folder in the temporary directory).
pub fn out_dir(kind: &str) -> PathBuf {
    let base = std::env::var_os("LORAG_FUZZ_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("lorag-fuzz"));
    let dir = base.join(format!("{kind}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("fuzz output folder");
    dir
}

// ---------- one case ----------

/// How one case ended.
pub enum Outcome<T> {
    /// It returned: its value and the most bytes it held at once.
    Done { value: T, peak: u64 },
    /// It panicked, with this message.
    Panicked(String),
    /// It was still running at the timeout (its thread is left behind: it cannot be stopped).
    Hung,
}

/// Runs `f` on a thread of its own with a 2 MiB stack (a worker thread's), measuring its peak
/// bytes, and waits at most `timeout`.
pub fn run_on_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
    timeout: Duration,
) -> Outcome<T> {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let _ = tx.send(peak_of(f));
        })
        .expect("spawn");
    match rx.recv_timeout(timeout) {
        Ok((value, peak)) => {
            let _ = handle.join();
            Outcome::Done { value, peak }
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => Outcome::Panicked(match handle.join() {
            Err(p) => p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into()),
            Ok(()) => "ended without a result".into(),
        }),
        Err(mpsc::RecvTimeoutError::Timeout) => Outcome::Hung,
    }
}

// ---------- the loop ----------

/// A fuzz target: its name, how many cases, what to mutate, and the memory bound.
pub struct Target<'a> {
    /// Names the target in the summary line (`fuzz KIND: N cases: ...`), its output folder and
    /// its salt: each target sees different mutations under the same seed.
    pub kind: &'a str,
    pub cases: u64,
    /// Real-looking inputs; each case mutates one of them with [`mutate`].
    pub seeds: &'a [Vec<u8>],
    pub tokens: &'a [&'a [u8]],
    /// The most bytes a case of an input of this many bytes may hold at once.
    pub bound: fn(u64) -> u64,
    /// An error message, less the name of its file and the `:`, reduced to its kind for the
    /// summary (e.g. [`error_kind`]).
    pub error_kind: fn(&str) -> String,
}

/// One case, ready to run.
pub struct Prepared {
    /// The input file, kept under [`out_dir`] if the case fails.
    pub file: PathBuf,
    /// What an error message must start with (followed by `:`): the file's name as the code
    /// under test writes it.
    pub name: String,
    /// The code under test, with its own checks (a panic is a failure); `Err(message)` when
    /// the input was refused.
    pub run: Box<dyn FnOnce() -> Result<(), String> + Send>,
}

/// A case whose input is the file `dir/name` holding the mutated `bytes`, run by
/// `check(path, bytes)` (a reader that names the file as its path displays).
pub fn file_case(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    check: fn(&Path, &[u8]) -> Result<(), String>,
) -> Prepared {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write case");
    let bytes = bytes.to_vec();
    Prepared {
        file: path.clone(),
        name: path.display().to_string(),
        run: Box::new(move || check(&path, &bytes)),
    }
}

/// What a run saw: outcome counts, the largest peak, the slowest case, the distinct error kinds
/// and the failures.
#[derive(Default)]
pub struct Stats {
    pub ok: u64,
    pub err: u64,
    pub max_peak: u64,
    pub slowest: Duration,
    pub errors: BTreeMap<String, u64>,
    pub failures: Vec<String>,
}

/// Fuzzes `target`: each case mutates one of its seeds (seeded by [`seed`], the kind and the
/// case number), has `prepare` write it under a case folder, and runs it with
/// [`run_on_thread`] under [`timeout`]. A case fails when it panics, hangs, holds more than the
/// bound, or returns an error that does not start with the name of its file; a failing input is
/// kept and named with what replays it (`LORAG_FUZZ_SEED`, `LORAG_FUZZ_ONLY`). Prints a
/// summary and the error kinds, then fails the test if any case failed.
pub fn fuzz(target: &Target, mut prepare: impl FnMut(&Path, &[u8], &mut Rng) -> Prepared) -> Stats {
    let kind = target.kind;
    let seed = seed();
    let only = only();
    let timeout = timeout();
    let dir = out_dir(kind);
    let kind_salt = kind
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
    let mut stats = Stats::default();
    for i in 0..target.cases {
        if only.is_some_and(|o| o != i) {
            continue;
        }
        let mut rng = Rng::new(seed ^ kind_salt ^ i.wrapping_mul(0x1000_0001));
        let input = &target.seeds[rng.below(target.seeds.len())];
        let bytes = mutate(&mut rng, input, target.tokens);
        let case_dir = dir.join("current");
        let _ = std::fs::remove_dir_all(&case_dir);
        std::fs::create_dir_all(&case_dir).expect("case folder");
        let case = prepare(&case_dir, &bytes, &mut rng);
        let started = Instant::now();
        let outcome = run_on_thread(case.run, timeout);
        stats.slowest = stats.slowest.max(started.elapsed());
        let why = match outcome {
            Outcome::Done { value, peak } => {
                stats.max_peak = stats.max_peak.max(peak);
                let bound = (target.bound)(bytes.len() as u64);
                let unnamed = match value {
                    Ok(()) => {
                        stats.ok += 1;
                        None
                    }
                    Err(msg) => {
                        stats.err += 1;
                        match msg
                            .strip_prefix(case.name.as_str())
                            .and_then(|rest| rest.strip_prefix(':'))
                        {
                            Some(rest) => {
                                *stats.errors.entry((target.error_kind)(rest)).or_default() += 1;
                                None
                            }
                            None => Some(format!("an error that does not name the file: {msg}")),
                        }
                    }
                };
                unnamed.or_else(|| {
                    (peak > bound).then(|| format!("held {peak} bytes at once (bound {bound})"))
                })
            }
            Outcome::Panicked(why) => Some(format!("panicked: {why}")),
            Outcome::Hung => Some(format!("still running after {timeout:?} (hang)")),
        };
        if let Some(why) = why {
            let name = format!(
                "case-{i}.{}",
                case.file
                    .extension()
                    .map_or("bin".into(), |e| e.to_string_lossy())
            );
            let kept = dir.join(name);
            let _ = std::fs::copy(&case.file, &kept);
            stats.failures.push(format!(
                "{kind} case {i} (LORAG_FUZZ_SEED={seed} LORAG_FUZZ_ONLY={i}): {why}; input kept at {}",
                kept.display()
            ));
            if why.ends_with("(hang)") {
                // The thread cannot be stopped: stop this target's run here.
                break;
            }
        }
    }
    eprintln!(
        "fuzz {kind}: {} cases: {} loaded, {} refused, {} failures (panic, hang or memory); \
         max peak {} KiB; slowest {:?}",
        target.cases,
        stats.ok,
        stats.err,
        stats.failures.len(),
        stats.max_peak >> 10,
        stats.slowest,
    );
    for (what, count) in &stats.errors {
        eprintln!("fuzz {kind}:   {count:6} x {what}");
    }
    let _ = std::fs::remove_dir_all(dir.join("current"));
    assert!(
        stats.failures.is_empty(),
        "{} failing case(s):\n{}",
        stats.failures.len(),
        stats.failures.join("\n")
    );
    stats
}

/// An error message's kind: its first seven words without digits (numbers, line numbers and
/// byte offsets dropped), after the file's name.
pub fn error_kind(rest: &str) -> String {
    let words: Vec<&str> = rest
        .split_whitespace()
        .filter(|w| !w.chars().any(|c| c.is_ascii_digit()))
        .take(7)
        .collect();
    words.join(" ")
}
