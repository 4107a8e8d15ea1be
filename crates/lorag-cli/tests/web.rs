//! The web page of `lorag serve`, end to end, as staff use it: a real headless Chromium driven over
//! WebDriver (chromedriver, installed by scripts/setup.sh) against the real binary, with the
//! construction-law FAQ as the knowledge base. One test walks through the steps in order on one
//! server, because ingesting the FAQ takes a minute or two: the key, a streamed answer with a
//! citation whose source opens with the quote marked, uploading documents (one good, one broken),
//! hostile markup in a document, and a server restart under the open page. Each step leaves a
//! screenshot in `<target>/web-screenshots/`; with `LORAG_UPDATE_SCREENSHOT=1` the one with the
//! source panel open also replaces docs/screenshot.png.

mod common;

use common::{add_key, bin, run_lorag as lorag, Server};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use lorag_models::test_model;
use serde_json::{json, Value};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long an answer may take on a small machine (2 cores, debug-free release build).
const ANSWER_WAIT: Duration = Duration::from_secs(180);

fn target_dir() -> PathBuf {
    bin()
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver in its own process group: dropping it kills chromedriver and the Chromium it
/// started, even when the test failed before closing the session.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        for p in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(p).exists(),
                "{p} is missing: run scripts/setup.sh (it installs chromium and chromium-driver)"
            );
        }
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        let d = Driver { child, port };
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "chromedriver never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's process group.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn shot(c: &Client, name: &str) -> PathBuf {
    let dir = target_dir().join("web-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{name}.png"));
    std::fs::write(&p, c.screenshot().await.expect("screenshot")).unwrap();
    eprintln!("[web] screenshot {}", p.display());
    p
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// Poll `script` until it returns something other than null/false, up to `limit`.
async fn wait_for(c: &Client, script: &str, limit: Duration, what: &str) -> Value {
    let t0 = Instant::now();
    loop {
        let v = js(c, script).await;
        if !(v.is_null() || v == Value::Bool(false)) {
            return v;
        }
        if t0.elapsed() > limit {
            shot(c, "timeout").await;
            let page = js(c, "return document.body.innerText").await;
            panic!("timed out after {limit:?} waiting for {what}; the page says:\n{page}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn find(c: &Client, css: &str) -> Element {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
}

/// The state of the last assistant turn.
const LAST_TURN: &str = r#"
const turns = document.querySelectorAll('#messages .turn.assistant');
const t = turns[turns.length - 1];
if (!t) return {n: 0};
const a = t.querySelector('.answer');
const e = t.querySelector(':scope > p.error');
return {n: turns.length, cls: a ? a.className : '', text: a ? a.textContent : '',
        error: e ? e.textContent : '', cites: t.querySelectorAll('a.cite').length,
        busy: !document.getElementById('stop').disabled};
"#;

struct Answer {
    text: String,
    error: String,
    cites: usize,
    /// Distinct text lengths seen while the answer was streaming.
    streamed: Vec<usize>,
    secs: f64,
}

/// Type a question, send it, follow the stream to its end.
async fn ask(c: &Client, question: Option<&str>) -> Answer {
    let before = js(c, LAST_TURN).await["n"].as_u64().unwrap();
    if let Some(q) = question {
        js(c, "document.getElementById('question').value = ''").await;
        find(c, "#question").await.send_keys(q).await.unwrap();
    }
    let t0 = Instant::now();
    find(c, "#send").await.click().await.unwrap();
    let mut streamed: Vec<usize> = Vec::new();
    loop {
        let v = js(c, LAST_TURN).await;
        if v["n"].as_u64().unwrap() > before {
            let cls = v["cls"].as_str().unwrap_or("");
            let len = v["text"].as_str().unwrap_or("").len();
            if cls.contains("streaming") && len > 0 && streamed.last() != Some(&len) {
                streamed.push(len);
            }
            if v["busy"] == false && !cls.contains("pending") && !cls.contains("streaming") {
                let a = Answer {
                    text: v["text"].as_str().unwrap_or("").to_string(),
                    error: v["error"].as_str().unwrap_or("").to_string(),
                    cites: v["cites"].as_u64().unwrap() as usize,
                    streamed,
                    secs: t0.elapsed().as_secs_f64(),
                };
                eprintln!(
                    "[web] {:?} -> {:.1} s, {} stream paints, {} citations, error {:?}: {}",
                    question,
                    a.secs,
                    a.streamed.len(),
                    a.cites,
                    a.error,
                    a.text
                );
                return a;
            }
        }
        if t0.elapsed() > ANSWER_WAIT {
            shot(c, "timeout").await;
            panic!("no answer to {question:?} after {ANSWER_WAIT:?}: {v}");
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

/// The source panel, once open: {name, text, mark}.
const SOURCE_PANEL: &str = r#"
const p = document.getElementById('source-panel');
if (p.hidden) return null;
const m = p.querySelector('.source-text mark');
return {name: p.querySelector('.source-name').textContent,
        text: p.querySelector('.source-text').textContent,
        mark: m ? m.textContent : null};
"#;

/// Click each citation of the last answer until one opens a source whose name ends with
/// `source_suffix` (any source when empty); returns the panel.
async fn open_citation(c: &Client, source_suffix: &str) -> Option<Value> {
    let cites = c
        .find_all(Locator::Css("#messages .turn.assistant:last-child a.cite"))
        .await
        .unwrap();
    for a in cites {
        a.click().await.unwrap();
        let p = wait_for(c, SOURCE_PANEL, Duration::from_secs(10), "the source panel").await;
        if p["name"].as_str().unwrap_or("").ends_with(source_suffix) {
            return Some(p);
        }
    }
    None
}

async fn new_conversation(c: &Client) {
    find(c, "#new-conversation").await.click().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn staff_ask_the_kb_and_open_every_source() {
    let t_all = Instant::now();
    let dir = tempfile::tempdir().unwrap();

    // The KB: the construction-law FAQ.
    let kb = dir.path().join("kb");
    let faq = test_model("construction-faq");
    let t = Instant::now();
    let out = lorag(&[
        "ingest",
        faq.to_str().unwrap(),
        "--kb",
        kb.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "[web] ingested the FAQ in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let keys = dir.path().join("keys.json");
    let key = add_key(&keys, "staff", &["--kb", "faq", "--ingest"]);
    let wrong = "lorag-not-a-real-key-0123456789";
    let kb_arg = format!("faq={}", kb.display());
    let server_args = [
        "--kb",
        kb_arg.as_str(),
        "--api-keys",
        keys.to_str().unwrap(),
        "--parallel",
        "1",
        "--ctx",
        "4096",
    ];
    let mut server = Server::start(&server_args, &[]);
    let port = server.port();

    let driver = Driver::start();
    let profile = dir.path().join("chromium-profile");
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1280,900", format!("--user-data-dir={}", profile.display())],
        },
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session with headless Chromium");

    // a. The page asks for a key; a wrong one gets a plain error, the right one the KB picker.
    let (st, _, v) = server.http("GET", "/v1/me", &[], b"");
    assert_eq!(st, 401, "{v}");
    c.goto(&server.url()).await.unwrap();
    wait_for(
        &c,
        "return !document.getElementById('key-panel').hidden",
        Duration::from_secs(20),
        "the key form",
    )
    .await;
    find(&c, "#key-input").await.send_keys(wrong).await.unwrap();
    find(&c, "#key-save").await.click().await.unwrap();
    let err = wait_for(
        &c,
        "const e = document.getElementById('key-error'); return e.hidden ? null : e.textContent",
        Duration::from_secs(20),
        "the wrong-key error",
    )
    .await;
    let err = err.as_str().unwrap();
    assert!(err.starts_with("Wrong or missing key"), "{err}");
    assert!(
        !err.contains('{') && !err.contains("\"error\""),
        "not plain: {err}"
    );
    shot(&c, "a1-wrong-key").await;
    find(&c, "#key-input").await.send_keys(&key).await.unwrap();
    find(&c, "#key-save").await.click().await.unwrap();
    let kbs = wait_for(
        &c,
        "const s = document.getElementById('kb-select');
         return document.getElementById('key-panel').hidden && !s.disabled
           ? [...s.options].map(o => o.value) : null",
        Duration::from_secs(20),
        "the KB picker",
    )
    .await;
    assert_eq!(kbs, json!(["faq"]));
    shot(&c, "a2-key-ok").await;

    // b. A streamed answer with a citation; its source opens with the quote marked.
    let a = ask(&c, Some("How long does it take to get a building permit?")).await;
    assert!(a.error.is_empty(), "{}", a.error);
    assert!(
        !a.streamed.is_empty(),
        "the answer never showed while streaming"
    );
    assert!(a.text.len() >= *a.streamed.last().unwrap() / 2);
    assert!(a.cites >= 1, "no citation in: {}", a.text);
    let first = find(&c, "#messages .turn.assistant:last-child a.cite").await;
    first.click().await.unwrap();
    let p = wait_for(
        &c,
        SOURCE_PANEL,
        Duration::from_secs(10),
        "the source panel",
    )
    .await;
    let text = p["text"].as_str().unwrap();
    let mark = p["mark"]
        .as_str()
        .unwrap_or_else(|| panic!("no <mark> in the source: {p}"));
    assert!(!mark.trim().is_empty(), "{p}");
    assert!(text.contains(mark), "{p}");
    let source = p["name"].as_str().unwrap();
    assert!(source.ends_with("faq-en.jsonl"), "{p}");
    // The server's own chunk text holds the marked quote.
    let auth = format!("Bearer {key}");
    let h = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (st, _, v) = server.http(
        "POST",
        "/v1/kb/faq/search",
        &h,
        json!({"query": mark, "k": 5}).to_string().as_bytes(),
    );
    assert_eq!(st, 200, "{v}");
    assert!(
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["text"].as_str().unwrap_or("").contains(mark)),
        "the marked quote {mark:?} is in no chunk the API returns: {v}"
    );
    let png = shot(&c, "b-source-panel").await;
    if std::env::var_os("LORAG_UPDATE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(&png, docs.join("screenshot.png")).unwrap();
    }

    // c. Upload several files at once: a Markdown file is added, a broken PDF fails with a reason;
    // the new fact is then answered from the new file.
    let up = dir.path().join("upload");
    std::fs::create_dir_all(&up).unwrap();
    let md = up.join("zorblat.md");
    std::fs::write(
        &md,
        "# Zorblat permits\n\nThe Zorblat permit fee in Lindholm is 4711 crowns. The Zorblat permit is issued by the Lindholm building office.\n",
    )
    .unwrap();
    let pdf = up.join("bad.pdf");
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&pdf, junk).unwrap();
    find(&c, "#documents-toggle").await.click().await.unwrap();
    wait_for(
        &c,
        "return !document.getElementById('documents-panel').hidden
           && /document/.test(document.getElementById('doc-status').textContent)",
        Duration::from_secs(20),
        "the documents panel",
    )
    .await;
    find(&c, "#file-input")
        .await
        .send_keys(&format!("{}\n{}", md.display(), pdf.display()))
        .await
        .unwrap();
    let results = wait_for(
        &c,
        "const li = [...document.querySelectorAll('#upload-results li')];
         return li.length >= 2 ? li.map(l => ({cls: l.className, text: l.textContent})) : null",
        Duration::from_secs(120),
        "the upload results",
    )
    .await;
    let results = results.as_array().unwrap();
    let row = |name: &str| {
        results
            .iter()
            .find(|r| r["text"].as_str().unwrap().contains(name))
            .unwrap_or_else(|| panic!("no row for {name}: {results:?}"))
            .clone()
    };
    let (md_row, pdf_row) = (row("zorblat.md"), row("bad.pdf"));
    assert_eq!(md_row["cls"], "ok", "{md_row}");
    assert_eq!(pdf_row["cls"], "failed", "{pdf_row}");
    let why = pdf_row["text"].as_str().unwrap();
    let reason = why.split("failed:").nth(1).unwrap_or("").trim();
    assert!(
        reason.len() > 3 && reason != "unknown error",
        "no reason given: {why}"
    );
    wait_for(
        &c,
        "return [...document.querySelectorAll('#doc-table td.doc-name')].some(t => t.textContent.endsWith('zorblat.md'))",
        Duration::from_secs(20),
        "zorblat.md in the document table",
    )
    .await;
    shot(&c, "c1-upload").await;
    find(&c, "#documents-close").await.click().await.unwrap();
    new_conversation(&c).await;
    let a = ask(&c, Some("What is the Zorblat permit fee?")).await;
    assert!(a.error.is_empty(), "{}", a.error);
    assert!(
        open_citation(&c, "zorblat.md").await.is_some(),
        "no citation of zorblat.md in: {}",
        a.text
    );
    shot(&c, "c2-uploaded-source").await;

    // d. Markup in a document never runs: not in the answer, not in the source panel.
    let xss = up.join("quuxle.md");
    std::fs::write(
        &xss,
        "# Quuxle inspections\n\nThe Quuxle inspection of a chimney in Lindholm is done every 7 years. <script>window.__pwned=1</script>\n\n<img src=x onerror=\"window.__pwned=2\">\n\nThe Quuxle inspection is booked with the chimney office: [x](javascript:window.__pwned=3).\n",
    )
    .unwrap();
    find(&c, "#documents-toggle").await.click().await.unwrap();
    find(&c, "#file-input")
        .await
        .send_keys(&xss.display().to_string())
        .await
        .unwrap();
    let r = wait_for(
        &c,
        "const li = [...document.querySelectorAll('#upload-results li')];
         return li.length && li[0].textContent.includes('quuxle.md') ? li[0].className : null",
        Duration::from_secs(120),
        "the quuxle.md upload",
    )
    .await;
    assert_eq!(r, "ok");
    find(&c, "#documents-close").await.click().await.unwrap();
    new_conversation(&c).await;
    let a = ask(&c, Some("How often is the Quuxle inspection done?")).await;
    assert!(a.error.is_empty(), "{}", a.error);
    let p = open_citation(&c, "quuxle.md")
        .await
        .unwrap_or_else(|| panic!("no citation of quuxle.md in: {}", a.text));
    assert!(
        p["text"].as_str().unwrap().contains("<script>"),
        "the markup is shown as text: {p}"
    );
    // Click every link in the source and in the answer (but not citations and the external ones).
    let links = c
        .find_all(Locator::Css(
            "#source-panel a, #source-panel .unsafe-link, #messages .answer a:not(.cite), #messages .unsafe-link",
        ))
        .await
        .unwrap();
    let mut clicked = 0;
    for l in links {
        let href = l.attr("href").await.unwrap().unwrap_or_default();
        if href.starts_with("http") && !href.starts_with(&server.url()) {
            continue;
        }
        if l.click().await.is_ok() {
            clicked += 1;
        }
    }
    eprintln!("[web] clicked {clicked} links");
    assert!(clicked >= 1);
    let safe = js(
        &c,
        "return window.__pwned === undefined
           && !document.querySelector('#messages script, #messages img, #side script, #side img')",
    )
    .await;
    assert_eq!(safe, true, "markup from a document ran or was inserted");
    shot(&c, "d-markup").await;

    // e. The server goes away: a plain error and the question kept; back on the same port: answers.
    drop(server);
    new_conversation(&c).await;
    let q = "Do I need a building permit for a deck?";
    let a = ask(&c, Some(q)).await;
    assert!(a.error.contains("could not be reached"), "{}", a.error);
    let kept = js(&c, "return document.getElementById('question').value").await;
    assert_eq!(kept, q);
    shot(&c, "e1-server-down").await;
    server = Server::start_on(port, &server_args, &[]);
    let a = ask(&c, None).await;
    assert!(a.error.is_empty(), "{}", a.error);
    assert!(!a.text.trim().is_empty());
    shot(&c, "e2-server-back").await;

    c.close().await.unwrap();
    drop(driver);
    drop(server);
    eprintln!("[web] all steps in {:.1} s", t_all.elapsed().as_secs_f64());
}
