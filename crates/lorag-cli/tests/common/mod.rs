//! Helpers shared by the CLI's test files.

use std::path::Path;
use std::process::Command;

/// `lorag ARGS` run with every file it writes limited to `kib` KiB (RLIMIT_FSIZE through bash's
/// `ulimit -f`, with SIGXFSZ ignored so that a write past the limit fails with EFBIG, as a write
/// to a full disk fails with ENOSPC). A portable stand-in for a full disk: no mount, no root.
pub fn size_limited(kib: u64, args: &[&str]) -> Command {
    let mut c = Command::new("bash");
    c.arg("-c")
        .arg("trap '' XFSZ; ulimit -f \"$1\"; shift; exec \"$@\"")
        .arg("bash")
        .arg(kib.to_string())
        .arg(env!("CARGO_BIN_EXE_lorag"))
        .args(args);
    c
}

/// The names in `dir` that look like temporary or partial files (none may be left behind).
pub fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial") || n.ends_with(".tmp"))
        .collect()
}
