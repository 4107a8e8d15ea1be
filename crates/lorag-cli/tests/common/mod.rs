//! Helpers shared by the CLI's test files: the binary, a size-limited run (a full disk), and a
//! `lorag serve` child with a raw HTTP/1.1 client. Each test file uses a part.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lorag"))
}

/// `lorag` as a command to complete.
pub fn lorag_cmd() -> Command {
    Command::new(bin())
}

/// A path as the `&str` an argument list wants.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A tiny random phi3 model with the real Phi-3 tokenizer (fused qkv and gate|up), in `dir`.
pub fn tiny_phi3(dir: &Path) -> PathBuf {
    use lorag_gguf::tiny::{write_tiny_model, Arch, TinyConfig};
    let out = dir.join("tiny-phi3.gguf");
    let cfg = TinyConfig {
        n_embd: 64,
        n_ff: 128,
        n_layer: 2,
        n_head: 4,
        n_head_kv: 2,
        ..TinyConfig::default()
    };
    write_tiny_model(
        Arch::Phi3,
        &lorag_models::test_model("phi3-vocab"),
        &out,
        &cfg,
    )
    .unwrap();
    out
}

/// `lorag ARGS`, run to the end.
pub fn run_lorag(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("lorag runs")
}

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

/// `lorag serve` on 127.0.0.1; killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Server {
    /// Start on any free port and wait until /health answers.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_on(0, args, env)
    }

    /// Start on `port` (0: any free one) and wait until /health answers.
    pub fn start_on(port: u16, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("lorag serve starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[serve] {line}");
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server prints its address");
        let s = Server { child, addr };
        let t0 = Instant::now();
        loop {
            if let Ok((200, _, _)) = s.try_http("GET", "/health", &[], b"") {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(180),
                "server never became ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn try_http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<(u16, String, Vec<u8>)> {
        let mut s = TcpStream::connect(&self.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())?;
        s.write_all(body)?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        let split = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| std::io::Error::other("no header end"))?;
        let head = String::from_utf8_lossy(&out[..split]).to_string();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other("no status"))?;
        let mut body = out[split + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = dechunk(&body);
        }
        Ok((status, head, body))
    }

    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String, Value) {
        let (st, head, b) = self.try_http(method, path, headers, body).expect("http");
        let v = serde_json::from_slice(&b)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&b).into()));
        (st, head, v)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn dechunk(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let Some(nl) = b[i..].windows(2).position(|w| w == b"\r\n") else {
            break;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[i..i + nl]).trim(), 16).unwrap_or(0);
        i += nl + 2;
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[i..(i + size).min(b.len())]);
        i += size + 2;
    }
    out
}

/// `lorag keys add NAME --file FILE EXTRA...`; the new key.
pub fn add_key(file: &Path, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["keys", "add", name, "--file", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = run_lorag(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
