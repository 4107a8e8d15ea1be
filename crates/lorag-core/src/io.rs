//! The file helpers every crate shares: replace a small file whole ([`write_atomic`]), and read a
//! text file line by line with memory bounded ([`next_line`]).

/// The longest line the JSONL readers (training data, eval Q&A) read: a longer one is refused,
/// naming file and line, after reading no more than this much of it.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// A line of a JSONL file, read by [`next_line`].
pub enum Line {
    /// The end of the file.
    End,
    /// A line (its bytes in the buffer, without the line end).
    Text,
    /// A line longer than the limit: it was read to its end but not kept.
    TooLong,
}

/// Reads the next line of `r` into `buf` (without `\n` or `\r\n`), keeping at most `limit`
/// bytes: memory stays bounded whatever the file holds.
pub fn next_line(
    r: &mut impl std::io::BufRead,
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Line> {
    use std::io::{BufRead, Read};
    buf.clear();
    // `limit` bytes and a `\r\n` at most: more is a line over the limit.
    let n = r.by_ref().take(limit as u64 + 2).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(Line::End);
    }
    let whole = buf.last() == Some(&b'\n') || n < limit + 2;
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    if !whole {
        // Read the rest of the line without keeping it.
        loop {
            let avail = r.fill_buf()?;
            if avail.is_empty() {
                break;
            }
            match avail.iter().position(|&b| b == b'\n') {
                Some(at) => {
                    r.consume(at + 1);
                    break;
                }
                None => {
                    let all = avail.len();
                    r.consume(all);
                }
            }
        }
    }
    if buf.len() > limit {
        buf.clear();
        return Ok(Line::TooLong);
    }
    Ok(Line::Text)
}

/// `limit` as `16 MiB`, or in bytes when it is not a whole number of MiB.
pub fn human_bytes(limit: usize) -> String {
    if limit >= 1 << 20 && limit.is_multiple_of(1 << 20) {
        format!("{} MiB", limit >> 20)
    } else {
        format!("{limit}-byte")
    }
}

/// Write `bytes` to `path` through a temporary file in the same folder, synced, then renamed over
/// `path`: the file is whole or as it was, never half-written, whether the process is killed or
/// the disk fills up (the temporary file is removed on error). The error is the OS's; callers
/// name the path.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
