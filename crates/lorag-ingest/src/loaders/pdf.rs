//! PDF (`.pdf`): text per page with pdf-extract (on lopdf); each page is a `Page` span, pages
//! separated by a blank line. The title is the document information `Title`, else the file stem.
//!
//! pdf-extract can panic on malformed input. What it takes for granted about a page is checked
//! first (`check_page`: a looping `/Parent` chain made it loop forever, or overflow the stack,
//! which no `catch_unwind` catches); the rest runs under `catch_unwind`, and the
//! panic message is kept out of stderr by a panic hook installed once, which stays silent only
//! on a thread that is extracting and otherwise calls the hook it replaced.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Once;

use lorag_core::{Document, Page};
use pdf_extract::{
    ConvertToFmt, Dictionary, MediaBox, Object, ObjectId, OutputDev, OutputError, PlainTextOutput,
    Transform,
};

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
    if let Some(problem) = xref_stream_problem(bytes) {
        return Err(problem);
    }
    BOMB.with(|b| b.set(None));
    let options = pdf_extract::LoadOptions::with_filter(guard_stream);
    let loaded = pdf_extract::Document::load_mem_with_options(bytes, options);
    if let Some((id, generation)) = BOMB.with(Cell::take) {
        return Err(format!(
            "stream {id} {generation} R inflates to more than {} MiB (the limit for one stream; \
             a decompression bomb?)",
            MAX_INFLATED >> 20
        ));
    }
    let mut doc = loaded.map_err(|e| e.to_string())?;
    if doc.is_encrypted() && doc.decrypt("").is_err() {
        return Err("encrypted (needs a password); save an unencrypted copy".to_string());
    }
    let title = info_title(&doc);
    let page_ids = doc.get_pages();
    for (&number, &id) in &page_ids {
        check_page(&doc, number, id)?;
    }
    if page_ids.is_empty() {
        return Err("no pages".to_string());
    }
    // One pass over the document: `output_doc_page` walks the whole page tree for every page
    // (10,000 pages took 62 s, 6 ms a page; 1,000 took 2 ms a page).
    let mut out = PerPage::default();
    let result = pdf_extract::output_doc(&doc, &mut out);
    let failed_on = out.current.as_ref().map(|(n, _)| *n);
    let pages = out.finish();
    result.map_err(|e| match failed_on {
        Some(n) => format!("page {n}: {e}"),
        None => e.to_string(),
    })?;
    Ok((title, pages))
}

/// The most bytes one compressed stream may inflate to.
const MAX_INFLATED: u64 = 256 << 20;

thread_local! {
    /// The first stream `guard_stream` found over `MAX_INFLATED` in the load on this thread
    /// (lopdf runs the filter on the loading thread: its `rayon` feature is off).
    static BOMB: Cell<Option<(u32, u16)>> = const { Cell::new(None) };
}

/// lopdf's load filter: a Flate stream that inflates past `MAX_INFLATED` (counted in 64 KiB
/// pieces, never held) is emptied and reported in `BOMB`, so that neither lopdf nor pdf-extract
/// ever inflates it. The returned object is used only for objects inside object streams.
fn guard_stream(id: (u32, u16), obj: &mut Object) -> Option<((u32, u16), Object)> {
    let Object::Stream(stream) = obj else {
        return Some((id, obj.clone()));
    };
    let flate = match stream.dict.get(b"Filter") {
        Ok(Object::Name(n)) => n == b"FlateDecode",
        Ok(Object::Array(a)) => a
            .iter()
            .any(|f| matches!(f, Object::Name(n) if n == b"FlateDecode")),
        _ => false,
    };
    if flate && inflated_len(&stream.content, MAX_INFLATED + 1) > MAX_INFLATED {
        stream.content.clear();
        BOMB.with(|b| {
            if b.get().is_none() {
                b.set(Some(id));
            }
        });
    }
    Some((id, Object::Null))
}

/// How many bytes zlib data inflates to, counting up to `limit` (what a corrupt tail leaves
/// undecoded is not counted).
fn inflated_len(data: &[u8], limit: u64) -> u64 {
    use std::io::Read;
    let mut decoder = flate2::read::ZlibDecoder::new(data);
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    while total < limit {
        match decoder.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n as u64,
        }
    }
    total
}

/// What lopdf would trust in a cross-reference stream's dictionary (`/Type /XRef`), found by a
/// scan of the raw bytes before lopdf parses them: `/W` field widths (it allocates each, and
/// loops over the entries: widths of 4294967295 made it reserve 4 GiB) must be 0-8 with at
/// least one non-zero.
fn xref_stream_problem(bytes: &[u8]) -> Option<String> {
    let mut from = 0;
    while let Some(p) = find(&bytes[from..], b"/XRef") {
        let at = from + p;
        from = at + 5;
        let Some((start, end)) = enclosing_dict(bytes, at) else {
            continue;
        };
        let dict = &bytes[start..end];
        let Some(w) = key_int_array(dict, b"/W") else {
            continue;
        };
        if w.len() < 3 || w.iter().any(|&x| !(0..=8).contains(&x)) || w.iter().all(|&x| x == 0) {
            return Some(format!(
                "the cross-reference stream's /W {w:?} is not 3 field widths of 0-8 bytes"
            ));
        }
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `[start, end)` of the `<< ... >>` dictionary around `at` (nesting counted, 4 KiB each way).
fn enclosing_dict(b: &[u8], at: usize) -> Option<(usize, usize)> {
    let lo = at.saturating_sub(4096);
    let (mut depth, mut i, mut start) = (0usize, at, None);
    while i > lo + 1 {
        i -= 1;
        if &b[i - 1..=i] == b">>" {
            depth += 1;
            i -= 1;
        } else if &b[i - 1..=i] == b"<<" {
            if depth == 0 {
                start = Some(i - 1);
                break;
            }
            depth -= 1;
            i -= 1;
        }
    }
    let start = start?;
    let hi = (at + 4096).min(b.len());
    let (mut depth, mut i) = (0usize, start + 2);
    while i + 1 < hi {
        if &b[i..i + 2] == b"<<" {
            depth += 1;
            i += 2;
        } else if &b[i..i + 2] == b">>" {
            if depth == 0 {
                return Some((start, i + 2));
            }
            depth -= 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    None
}

/// The integers of `KEY [a b c]` in a dictionary's bytes (the key not a prefix of a longer one).
fn key_int_array(dict: &[u8], key: &[u8]) -> Option<Vec<i64>> {
    let mut from = 0;
    while let Some(p) = find(&dict[from..], key) {
        let after = from + p + key.len();
        from = after;
        let rest = &dict[after..];
        if rest.first().is_some_and(|c| c.is_ascii_alphanumeric()) {
            continue;
        }
        let rest = std::str::from_utf8(rest).ok().or_else(|| {
            let valid = std::str::from_utf8(rest).err()?.valid_up_to();
            std::str::from_utf8(&rest[..valid]).ok()
        })?;
        let rest = rest.trim_start().strip_prefix('[')?;
        let inner = &rest[..rest.find(']')?];
        return inner
            .split_ascii_whitespace()
            .map(|t| t.parse::<i64>().ok())
            .collect();
    }
    None
}

/// A page's text as pdf-extract writes it into a shared buffer.
#[derive(Clone, Default)]
struct Shared(Rc<RefCell<String>>);

impl std::fmt::Write for Shared {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.borrow_mut().push_str(s);
        Ok(())
    }
}

impl ConvertToFmt for Shared {
    type Writer = Shared;
    fn convert(self) -> Shared {
        self
    }
}

/// Plain text per page from one `output_doc` pass: a fresh `PlainTextOutput` for each page (as
/// a page-by-page extraction gives), its text collected at the page's end.
#[derive(Default)]
struct PerPage {
    buf: Shared,
    current: Option<(u32, PlainTextOutput<Shared>)>,
    pages: Vec<(u32, String)>,
}

impl PerPage {
    fn end_current(&mut self) {
        if let Some((number, _)) = self.current.take() {
            let text = std::mem::take(&mut *self.buf.0.borrow_mut());
            self.pages.push((number, text));
        }
    }

    fn finish(mut self) -> Vec<(u32, String)> {
        self.end_current();
        self.pages
    }

    fn with(
        &mut self,
        f: impl FnOnce(&mut PlainTextOutput<Shared>) -> Result<(), OutputError>,
    ) -> Result<(), OutputError> {
        match self.current.as_mut() {
            Some((_, out)) => f(out),
            None => Ok(()),
        }
    }
}

impl OutputDev for PerPage {
    fn begin_page(
        &mut self,
        page_num: u32,
        media_box: &MediaBox,
        art_box: Option<(f64, f64, f64, f64)>,
    ) -> Result<(), OutputError> {
        self.end_current();
        let mut out = PlainTextOutput::new(self.buf.clone());
        out.begin_page(page_num, media_box, art_box)?;
        self.current = Some((page_num, out));
        Ok(())
    }
    fn end_page(&mut self) -> Result<(), OutputError> {
        self.with(|o| o.end_page())?;
        self.end_current();
        Ok(())
    }
    fn output_character(
        &mut self,
        trm: &Transform,
        width: f64,
        spacing: f64,
        font_size: f64,
        char: &str,
    ) -> Result<(), OutputError> {
        self.with(|o| o.output_character(trm, width, spacing, font_size, char))
    }
    fn begin_word(&mut self) -> Result<(), OutputError> {
        self.with(|o| o.begin_word())
    }
    fn end_word(&mut self) -> Result<(), OutputError> {
        self.with(|o| o.end_word())
    }
    fn end_line(&mut self) -> Result<(), OutputError> {
        self.with(|o| o.end_line())
    }
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
    check_content(doc, id, resources_dict(doc, id)).map_err(|what| err(&what))
}

/// The page's `Resources` as pdf-extract finds them (the first on the `/Parent` chain that is a
/// dictionary; `check_page` has made sure the chain ends).
fn resources_dict(doc: &pdf_extract::Document, id: ObjectId) -> Option<&Dictionary> {
    let mut dict = doc.get_dictionary(id).ok()?;
    for _ in 0..=MAX_TREE_DEPTH {
        if let Ok(Object::Dictionary(r)) = dict
            .get(b"Resources")
            .and_then(|o| doc.dereference(o))
            .map(|(_, o)| o)
        {
            return Some(r);
        }
        let parent = dict.get(b"Parent").and_then(Object::as_reference).ok()?;
        dict = doc.get_dictionary(parent).ok()?;
    }
    None
}

/// The operators pdf-extract reads in a content stream, with what it assumes of their operands
/// (it asserts or unwraps): that many numbers at least (`exact`: exactly that many).
fn numeric_operands(op: &str) -> Option<(usize, bool)> {
    Some(match op {
        "cm" | "Tm" => (6, true),
        "c" => (6, false),
        "Td" | "TD" => (2, true),
        "m" | "l" => (2, false),
        "v" | "y" | "re" => (4, false),
        "Tc" | "Tw" | "Tz" | "TL" | "Ts" | "w" => (1, false),
        _ => return None,
    })
}

/// Checks a page's content stream for what pdf-extract unwraps: the content decodes; the
/// operators above have their numbers; `Tf` names a font of the page's resources that resolves to
/// a font dictionary with a `/Subtype` (and a `/BaseFont` unless Type3); `Tj` shows a string,
/// and text is shown only once a font is selected (`q`/`Q` save and restore it);
/// `CS`/`cs`/`gs` take a name, and `gs` one of the page's `/ExtGState`s. Only what is used is
/// checked: a broken font no operator selects is no error.
fn check_content(
    doc: &pdf_extract::Document,
    id: ObjectId,
    resources: Option<&Dictionary>,
) -> Result<(), String> {
    let content = doc
        .get_page_content(id)
        .map_err(|e| format!("its content cannot be read ({e})"))?;
    let content = pdf_extract::content::Content::decode(&content)
        .map_err(|e| format!("its content stream cannot be parsed ({e})"))?;
    fn resolve<'a>(doc: &'a pdf_extract::Document, o: &'a Object) -> Option<&'a Object> {
        doc.dereference(o).ok().map(|(_, o)| o)
    }
    let sub_dict = |key: &[u8]| -> Option<&Dictionary> {
        match resolve(doc, resources?.get(key).ok()?)? {
            Object::Dictionary(d) => Some(d),
            _ => None,
        }
    };
    let is_num = |o: &Object| matches!(o, Object::Integer(_) | Object::Real(_));
    let name_of = |o: &Object| String::from_utf8_lossy(o.as_name().unwrap_or(b"?")).into_owned();
    let mut fonts_seen: HashSet<Vec<u8>> = HashSet::new();
    // Whether a font is selected, and the values saved by `q` (restored by `Q`).
    let (mut font_set, mut saved) = (false, Vec::new());
    for (k, op) in content.operations.iter().enumerate() {
        let bad = |what: &str| Err(format!("operator {k} ({}) {what}", op.operator));
        let operands = &op.operands;
        if let Some((n, exact)) = numeric_operands(&op.operator) {
            if operands.len() < n
                || (exact && operands.len() != n)
                || !operands[..n].iter().all(is_num)
            {
                return bad(&format!("needs {n} numbers"));
            }
            continue;
        }
        match op.operator.as_str() {
            "Tf" => {
                let [name, size, ..] = &operands[..] else {
                    return bad("needs a font name and a size");
                };
                let (Ok(name), true) = (name.as_name(), is_num(size)) else {
                    return bad("needs a font name and a size");
                };
                font_set = true;
                if !fonts_seen.insert(name.to_vec()) {
                    continue;
                }
                let shown = String::from_utf8_lossy(name);
                let Some(fonts) = sub_dict(b"Font") else {
                    return bad("selects a font, but the page's resources have no /Font");
                };
                let Some(Object::Dictionary(font)) =
                    fonts.get(name).ok().and_then(|o| resolve(doc, o))
                else {
                    return bad(&format!(
                        "selects font /{shown}, which the resources do not hold"
                    ));
                };
                let name_key = |key: &[u8]| {
                    font.get(key)
                        .ok()
                        .and_then(|o| resolve(doc, o))
                        .and_then(|o| o.as_name().ok())
                        .map(|n| n.to_vec())
                };
                let Some(subtype) = name_key(b"Subtype") else {
                    return bad(&format!("selects font /{shown}, which has no /Subtype"));
                };
                if subtype != b"Type3" && name_key(b"BaseFont").is_none() {
                    return bad(&format!("selects font /{shown}, which has no /BaseFont"));
                }
            }
            "q" => saved.push(font_set),
            "Q" => font_set = saved.pop().unwrap_or(font_set),
            "Tj" if !matches!(operands.first(), Some(Object::String(..))) => {
                return bad("needs a string");
            }
            "Tj" if !font_set => return bad("shows text before a font is selected (Tf)"),
            "TJ" if operands.is_empty() => return bad("needs an array"),
            "TJ" if !font_set
                && matches!(&operands[0], Object::Array(a)
                    if a.iter().any(|e| matches!(e, Object::String(..)))) =>
            {
                return bad("shows text before a font is selected (Tf)");
            }
            "CS" | "cs" if operands.first().and_then(|o| o.as_name().ok()).is_none() => {
                return bad("needs a colour space name");
            }
            "gs" => {
                let Some(Ok(name)) = operands.first().map(Object::as_name) else {
                    return bad("needs a graphics state name");
                };
                let found = sub_dict(b"ExtGState")
                    .and_then(|g| g.get(name).ok())
                    .and_then(|o| resolve(doc, o))
                    .is_some_and(|o| matches!(o, Object::Dictionary(_)));
                if !found {
                    return bad(&format!(
                        "selects graphics state /{}, which the resources do not hold",
                        name_of(&operands[0])
                    ));
                }
            }
            _ => {}
        }
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
pub(super) fn catch_quiet<T>(f: impl FnOnce() -> T) -> Result<T, String> {
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
