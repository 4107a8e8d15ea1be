//! PDF (`.pdf`): text per page with pdf-extract (on lopdf); each page is a `Page` span, pages
//! separated by a blank line. The title is the document information `Title`, else the file stem.
//!
//! pdf-extract can panic on malformed input. What it takes for granted about a page is checked
//! first (`check_page`: a looping `/Parent` chain made it loop forever, or overflow the stack,
//! which no `catch_unwind` catches); the rest runs under `catch_unwind`, and the
//! panic message is kept out of stderr by a panic hook installed once, which stays silent only
//! on a thread that is extracting and otherwise calls the hook it replaced.

use std::cell::Cell;
use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use lorag_core::{Document, Page};
use pdf_extract::{Object, ObjectId, PlainTextOutput};

use super::stem_title;
use crate::{Candidate, IngestError};

pub(super) fn load(c: &Candidate, bytes: &[u8]) -> Result<Vec<Document>, IngestError> {
    let parse_error = |reason: String| IngestError::Parse {
        input: c.source.clone(),
        format: "PDF",
        reason,
    };
    if bytes.is_empty() {
        return Err(IngestError::Empty {
            input: c.source.clone(),
        });
    }
    let head = &bytes[..bytes.len().min(1024)];
    if !head.windows(5).any(|w| w == b"%PDF-") {
        return Err(parse_error("no %PDF- header".to_string()));
    }
    let (info_title, pages) = catch_quiet(|| extract(bytes))
        .map_err(|panic| {
            parse_error(format!(
                "the PDF extractor failed ({panic}); the file is corrupt or uses a feature it cannot read"
            ))
        })?
        .map_err(parse_error)?;

    let mut text = String::new();
    let mut spans = Vec::new();
    for (number, page) in pages {
        let page = clean(&page);
        if page.is_empty() {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        let start = text.len();
        text.push_str(&page);
        spans.push(Page {
            number,
            start,
            end: text.len(),
        });
    }
    if text.is_empty() {
        return Err(IngestError::NoText {
            input: c.source.clone(),
            hint: " (a scanned PDF? run OCR first, e.g. ocrmypdf)".to_string(),
        });
    }
    let mut doc = Document::new(&c.source, "pdf", text);
    doc.pages = spans;
    doc.title = info_title.or_else(|| stem_title(&c.path));
    Ok(vec![doc])
}

/// The information dictionary's title, and the raw text of each page by 1-based number.
type Extracted = (Option<String>, Vec<(u32, String)>);

/// Parses the PDF and extracts the text of every page; an error names the failing page.
fn extract(bytes: &[u8]) -> Result<Extracted, String> {
    let mut doc = pdf_extract::Document::load_mem(bytes).map_err(|e| e.to_string())?;
    if doc.is_encrypted() && doc.decrypt("").is_err() {
        return Err("encrypted (needs a password); save an unencrypted copy".to_string());
    }
    let title = info_title(&doc);
    let mut pages = Vec::new();
    for (&number, &id) in &doc.get_pages() {
        check_page(&doc, number, id)?;
        let mut text = String::new();
        let mut out = PlainTextOutput::new(&mut text);
        pdf_extract::output_doc_page(&doc, &mut out, number)
            .map_err(|e| format!("page {number}: {e}"))?;
        pages.push((number, text));
    }
    if pages.is_empty() {
        return Err("no pages".to_string());
    }
    Ok((title, pages))
}

/// Checks what pdf-extract takes for granted about a page, so that such a file is an error naming
/// the page instead of a panic, an endless loop or a stack overflow (an abort that no
/// `catch_unwind` catches):
/// its `/Parent` chain (followed recursively for inherited keys) must end, and its `MediaBox`
/// (required) and `Resources` must not refer to missing objects; a `MediaBox` is 4 numbers.
/// Only what pdf-extract would panic on is refused.
fn check_page(doc: &pdf_extract::Document, number: u32, id: ObjectId) -> Result<(), String> {
    let err = |what: &str| format!("page {number}: {what}");
    let mut dict = doc
        .get_dictionary(id)
        .map_err(|e| err(&format!("the page is not a dictionary ({e})")))?;
    let mut seen = HashSet::from([id]);
    let (mut media_box, mut resources) = (false, false);
    loop {
        if !media_box {
            if let Ok(o) = dict.get(b"MediaBox") {
                let o = doc
                    .dereference(o)
                    .map_err(|e| err(&format!("/MediaBox refers to a missing object ({e})")))?
                    .1;
                if let Object::Array(items) = o {
                    if items.len() < 4
                        || !items
                            .iter()
                            .all(|x| matches!(x, Object::Integer(_) | Object::Real(_)))
                    {
                        return Err(err("/MediaBox is not 4 numbers"));
                    }
                    media_box = true;
                }
            }
        }
        if !resources {
            if let Ok(o) = dict.get(b"Resources") {
                let o = doc
                    .dereference(o)
                    .map_err(|e| err(&format!("/Resources refers to a missing object ({e})")))?
                    .1;
                resources = matches!(o, Object::Dictionary(_));
            }
        }
        let Some(parent) = dict.get(b"Parent").and_then(Object::as_reference).ok() else {
            break;
        };
        let Ok(next) = doc.get_dictionary(parent) else {
            break;
        };
        if !seen.insert(parent) {
            return Err(err("its /Parent chain loops"));
        }
        if seen.len() > MAX_TREE_DEPTH {
            return Err(err(&format!(
                "its /Parent chain is more than {MAX_TREE_DEPTH} deep"
            )));
        }
        dict = next;
    }
    if !media_box {
        return Err(err("no /MediaBox (page size) on the page or its parents"));
    }
    Ok(())
}

/// The deepest page tree accepted (real ones are a few levels deep).
const MAX_TREE_DEPTH: usize = 256;

fn info_title(doc: &pdf_extract::Document) -> Option<String> {
    let info = doc.trailer.get(b"Info").ok()?;
    let (_, info) = doc.dereference(info).ok()?;
    let Object::Dictionary(info) = info else {
        return None;
    };
    let (_, title) = doc.dereference(info.get(b"Title").ok()?).ok()?;
    let title = super::collapse_ws(&pdf_extract::decode_text_string(title).ok()?);
    (!title.is_empty()).then_some(title)
}

/// Drops control characters and trailing spaces, and keeps at most one blank line in a row.
fn clean(page: &str) -> String {
    let mut out = String::with_capacity(page.len());
    let mut blank_run = 0;
    for line in page.lines() {
        let line: String = line
            .chars()
            .filter(|&c| c == '\t' || !c.is_control())
            .collect();
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(line);
    }
    out
}

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, turning a panic into `Err(message)` without printing it.
fn catch_quiet<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::{catch_quiet, clean};

    #[test]
    fn clean_keeps_one_blank_line() {
        assert_eq!(clean("  a  \n\n\n\nb\x0c\n c\n\n"), "  a\n\nb\n c");
    }

    #[test]
    fn a_panic_becomes_an_error() {
        let r: Result<(), String> = catch_quiet(|| panic!("boom {}", 1));
        assert_eq!(r, Err("boom 1".to_string()));
        assert_eq!(catch_quiet(|| 7), Ok(7));
    }
}
