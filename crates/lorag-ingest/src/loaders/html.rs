//! HTML (`.html`, `.htm`): the main text, as a browser would lay it out in plain text.
//!
//! - The content is `<main>` (or `role="main"`) when there is one, else the only `<article>`,
//!   else `<body>`.
//! - Dropped: `script`, `style`, `nav`, `header` and `footer` (outside an `<article>`), `aside`,
//!   `noscript`, forms and their controls, embedded objects, hidden elements (`hidden`,
//!   `aria-hidden="true"`), navigation roles, and the classes that mark navigation in generated
//!   documentation (`navheader`, `navfooter`, `toc`, `breadcrumb(s)`, `sidebar`, `skip-link`).
//! - Whitespace collapses as in a browser (verbatim inside `<pre>`); block elements are
//!   separated by a blank line, list items, table rows and `<br>` by a newline, table cells by
//!   ` | `; list items start with `- `. Entities are decoded by the parser.
//! - `h1`-`h6` become sections, each heading on its own line; `<title>` is the title (else the
//!   first heading, else the file stem).
//! - Bytes that are not UTF-8 are decoded with the charset the page declares, else the one
//!   `chardetng` guesses (a byte-order mark comes first); the encoding is recorded as `encoding`.

use lorag_core::Document;
use scraper::{ElementRef, Html, Node};

use super::{collapse_ws, record_encoding, stem_title, SectionBuilder};
use crate::{Candidate, IngestError};

pub(super) fn load(c: &Candidate, bytes: &[u8]) -> Result<Vec<Document>, IngestError> {
    let decoded = super::decode::decode(&c.source, bytes, declared_charset(bytes))?;
    let depth = nesting_depth(&decoded.text, MAX_DEPTH);
    if depth > MAX_DEPTH {
        return Err(IngestError::Parse {
            input: c.source.clone(),
            format: "HTML",
            reason: format!(
                "elements are nested more than {MAX_DEPTH} deep (the limit; browsers stop at 512)"
            ),
        });
    }
    let html = Html::parse_document(&decoded.text);
    let root = content_root(&html);
    let mut out = Out::default();
    out.walk(root);
    let title = page_title(&html)
        .or_else(|| out.sections.first_title())
        .or_else(|| stem_title(&c.path));
    if out.text.trim().is_empty() {
        return Err(IngestError::NoText {
            input: c.source.clone(),
            hint: " (the page has no visible text outside scripts, navigation and forms)"
                .to_string(),
        });
    }
    let mut doc = Document::new(&c.source, "html", out.text);
    doc.sections = out.sections.finish(doc.text.len());
    doc.title = title;
    let mut docs = vec![doc];
    record_encoding(&mut docs, decoded.encoding);
    Ok(docs)
}

/// The deepest element nesting a page may have. The HTML parser's work grows with the square of
/// the depth (100,000 nested `<div>`s take a minute), and no real page comes near it.
const MAX_DEPTH: usize = 1024;

/// An upper estimate of how deep the parser will nest the page's elements, by a linear scan of
/// its tags (stopping once past `limit`): void elements, elements whose end tag is optional (`p`,
/// `li`, `td`...) and self-closed ones do not nest; an end tag closes the elements opened after
/// its start tag; one without a matching start tag is ignored, as the parser ignores it;
/// comments and the text of `script`, `style` and the like are skipped.
fn nesting_depth(html: &str, limit: usize) -> usize {
    use std::collections::HashMap;
    let b = html.as_bytes();
    let mut stack: Vec<String> = Vec::new();
    let mut open: HashMap<String, usize> = HashMap::new();
    let mut max = 0;
    let mut i = 0;
    let find = |from: usize, pat: &[u8]| -> usize {
        b[from.min(b.len())..]
            .windows(pat.len())
            .position(|w| w.eq_ignore_ascii_case(pat))
            .map_or(b.len(), |p| from + p)
    };
    while let Some(p) = b[i..].iter().position(|&c| c == b'<') {
        i += p + 1;
        if b[i..].starts_with(b"!--") {
            i = find(i + 3, b"-->");
            continue;
        }
        let close = b.get(i) == Some(&b'/');
        let start = i + usize::from(close);
        let len = b[start..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'-' || **c == b':')
            .count();
        if len == 0 || !b[start].is_ascii_alphabetic() {
            continue;
        }
        let name = html[start..start + len].to_ascii_lowercase();
        let end = find(start + len, b">");
        i = end;
        if close {
            if open.get(&name).copied().unwrap_or(0) > 0 {
                while let Some(top) = stack.pop() {
                    *open.entry(top.clone()).or_default() -= 1;
                    if top == name {
                        break;
                    }
                }
            }
            continue;
        }
        let self_closed = end > 0 && b.get(end - 1) == Some(&b'/');
        if matches!(
            name.as_str(),
            "script"
                | "style"
                | "textarea"
                | "title"
                | "xmp"
                | "iframe"
                | "noembed"
                | "noframes"
                | "noscript"
        ) && !self_closed
        {
            i = find(i, format!("</{name}").as_bytes());
            continue;
        }
        let flat = matches!(
            name.as_str(),
            "area"
                | "base"
                | "br"
                | "col"
                | "embed"
                | "hr"
                | "img"
                | "input"
                | "link"
                | "meta"
                | "param"
                | "source"
                | "track"
                | "wbr"
                | "keygen"
                | "p"
                | "li"
                | "dt"
                | "dd"
                | "option"
                | "optgroup"
                | "tr"
                | "td"
                | "th"
                | "tbody"
                | "thead"
                | "tfoot"
                | "colgroup"
                | "caption"
                | "rb"
                | "rt"
                | "rtc"
                | "rp"
        );
        if flat || self_closed {
            continue;
        }
        *open.entry(name.clone()).or_default() += 1;
        stack.push(name);
        max = max.max(stack.len());
        if max > limit {
            break;
        }
    }
    max
}

/// The encoding a page declares in its first KiB (`<meta charset=...>` or
/// `content="text/html; charset=..."`), used when its bytes are not UTF-8.
fn declared_charset(bytes: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]).to_ascii_lowercase();
    let at = head.find("charset=")? + "charset=".len();
    let label: String = head[at..]
        .trim_start_matches(['"', '\''])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
        .collect();
    encoding_rs::Encoding::for_label(label.as_bytes())
}

fn content_root(html: &Html) -> ElementRef<'_> {
    let root = html.root_element();
    let mut body = None;
    let mut articles = Vec::new();
    for el in root.descendent_elements() {
        let name = el.value().name();
        if name == "main" || el.value().attr("role") == Some("main") {
            return el;
        }
        match name {
            "body" if body.is_none() => body = Some(el),
            "article" => articles.push(el),
            _ => {}
        }
    }
    match articles.as_slice() {
        [only] => *only,
        _ => body.unwrap_or(root),
    }
}

fn page_title(html: &Html) -> Option<String> {
    html.root_element()
        .descendent_elements()
        .find(|el| el.value().name() == "title")
        .map(|el| collapse_ws(&el.text().collect::<String>()))
        .filter(|t| !t.is_empty())
}

fn is_dropped(el: &scraper::node::Element, in_article: bool) -> bool {
    let name = el.name();
    if matches!(
        name,
        "script"
            | "style"
            | "nav"
            | "aside"
            | "noscript"
            | "form"
            | "template"
            | "iframe"
            | "object"
            | "embed"
            | "svg"
            | "math"
            | "canvas"
            | "button"
            | "select"
            | "textarea"
            | "input"
            | "dialog"
            | "audio"
            | "video"
            | "map"
            | "head"
            | "title"
    ) || (!in_article && matches!(name, "header" | "footer"))
    {
        return true;
    }
    if el.attr("hidden").is_some() || el.attr("aria-hidden") == Some("true") {
        return true;
    }
    if let Some(role) = el.attr("role") {
        if matches!(
            role,
            "navigation" | "banner" | "contentinfo" | "search" | "complementary"
        ) {
            return true;
        }
    }
    el.classes().any(|c| {
        matches!(
            c,
            "navheader"
                | "navfooter"
                | "toc"
                | "breadcrumb"
                | "breadcrumbs"
                | "sidebar"
                | "skip-link"
        )
    })
}

/// The break pending before the next text; the strongest one wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
enum Gap {
    #[default]
    None,
    Space,
    Cell,
    Line,
    Para,
}

#[derive(Default)]
struct Out {
    text: String,
    gap: Gap,
    sections: SectionBuilder,
    pre: usize,
    /// The heading being read: level, where its line starts, its text.
    heading: Option<(u8, Option<usize>, String)>,
}

impl Out {
    fn gap(&mut self, gap: Gap) {
        self.gap = self.gap.max(gap);
    }

    /// Writes the pending break (none at the very start).
    fn flush(&mut self) {
        if !self.text.is_empty() {
            self.text.push_str(match self.gap {
                Gap::None => "",
                Gap::Space => " ",
                Gap::Cell => " | ",
                Gap::Line => "\n",
                Gap::Para => "\n\n",
            });
        }
        self.gap = Gap::None;
        if let Some((_, start @ None, _)) = self.heading.as_mut() {
            *start = Some(self.text.len());
        }
    }

    fn word(&mut self, w: &str) {
        self.flush();
        self.text.push_str(w);
        if let Some((_, _, title)) = self.heading.as_mut() {
            title.push_str(w);
        }
    }

    fn push_text(&mut self, s: &str) {
        if self.pre > 0 {
            if !s.is_empty() {
                self.word(s);
            }
            return;
        }
        if s.starts_with(char::is_whitespace) {
            self.gap(Gap::Space);
            self.heading_space();
        }
        let mut any = false;
        for (i, w) in s.split_whitespace().enumerate() {
            if i > 0 {
                self.gap(Gap::Space);
                self.heading_space();
            }
            self.word(w);
            any = true;
        }
        if any && s.ends_with(char::is_whitespace) {
            self.gap(Gap::Space);
            self.heading_space();
        }
    }

    fn heading_space(&mut self) {
        if let Some((_, _, title)) = self.heading.as_mut() {
            title.push(' ');
        }
    }

    fn walk(&mut self, root: ElementRef<'_>) {
        use ego_tree::iter::Edge;
        // Depth of dropped subtrees we are inside, and of <article>s.
        let mut dropped = 0usize;
        let mut articles = 0usize;
        for edge in root.traverse() {
            match edge {
                Edge::Open(node) => match node.value() {
                    Node::Element(el) => {
                        if dropped > 0 || is_dropped(el, articles > 0) {
                            dropped += 1;
                            continue;
                        }
                        if el.name() == "article" {
                            articles += 1;
                        }
                        self.open(el.name());
                    }
                    Node::Text(t) if dropped == 0 => self.push_text(t),
                    _ => {}
                },
                Edge::Close(node) => {
                    if let Node::Element(el) = node.value() {
                        if dropped > 0 {
                            dropped -= 1;
                            continue;
                        }
                        if el.name() == "article" {
                            articles -= 1;
                        }
                        self.close(el.name());
                    }
                }
            }
        }
    }

    fn open(&mut self, name: &str) {
        match name {
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                self.gap(Gap::Para);
                if self.heading.is_none() {
                    let level = name.as_bytes()[1] - b'0';
                    self.heading = Some((level, None, String::new()));
                }
            }
            "pre" => {
                self.gap(Gap::Para);
                self.pre += 1;
            }
            "li" => {
                self.gap(Gap::Line);
                self.word("- ");
                self.gap = Gap::None;
            }
            "br" => {
                self.gap(Gap::Line);
            }
            "tr" | "dt" | "dd" | "caption" => self.gap(Gap::Line),
            _ if is_block(name) => self.gap(Gap::Para),
            _ => {}
        }
    }

    fn close(&mut self, name: &str) {
        match name {
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                let this_level = name.as_bytes()[1] - b'0';
                if let Some((level, start, title)) = self.heading.take() {
                    if level != this_level {
                        // A heading nested in another (invalid HTML): the outer one goes on.
                        self.heading = Some((level, start, title));
                        return;
                    }
                    let title = collapse_ws(&title);
                    if let (Some(start), false) = (start, title.is_empty()) {
                        self.sections.heading(level, title, start);
                    }
                }
                self.gap(Gap::Para);
            }
            "pre" => {
                self.pre = self.pre.saturating_sub(1);
                self.gap(Gap::Para);
            }
            "td" | "th" => self.gap(Gap::Cell),
            "li" | "tr" | "dt" | "dd" | "caption" => self.gap(Gap::Line),
            _ if is_block(name) => self.gap(Gap::Para),
            _ => {}
        }
    }
}

fn is_block(name: &str) -> bool {
    matches!(
        name,
        "p" | "div"
            | "section"
            | "article"
            | "main"
            | "body"
            | "blockquote"
            | "table"
            | "thead"
            | "tbody"
            | "tfoot"
            | "ul"
            | "ol"
            | "dl"
            | "figure"
            | "figcaption"
            | "address"
            | "details"
            | "summary"
            | "fieldset"
            | "hr"
            | "center"
            | "header"
            | "footer"
            | "hgroup"
    )
}

#[cfg(test)]
mod tests {
    use super::nesting_depth;

    #[test]
    fn nesting_is_estimated_from_tags() {
        let d = |s: &str| nesting_depth(s, 100);
        assert_eq!(
            d("<html><body><div><p>a<p>b<br><img src=x></div></body></html>"),
            3
        );
        assert_eq!(d("<ul><li>a<li>b<ul><li>c</ul></ul>"), 2);
        assert_eq!(d("<div></span><div></span><div>"), 3);
        assert_eq!(d("<div><b><i></div><div>"), 3);
        assert_eq!(
            d("<script>'<div><div>'</script><!-- <div><div> --><svg/><a>"),
            1
        );
        assert_eq!(d(&"<div>".repeat(1000)), 101);
        assert_eq!(d("< div a<3 <1"), 0);
    }
}
