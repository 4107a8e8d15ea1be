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
//! - Bytes that are not UTF-8 are decoded with the charset the page declares, if any.

use lorag_core::Document;
use scraper::{ElementRef, Html, Node};

use super::{collapse_ws, decode_text, stem_title, SectionBuilder};
use crate::{Candidate, IngestError};

pub(super) fn load(c: &Candidate, bytes: &[u8]) -> Result<Vec<Document>, IngestError> {
    let source = match decode_text(&c.source, bytes) {
        Err(IngestError::InvalidUtf8 { input, offset }) => {
            declared_charset_decode(bytes).ok_or(IngestError::InvalidUtf8 { input, offset })?
        }
        other => other?,
    };
    let html = Html::parse_document(&source);
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
    Ok(vec![doc])
}

/// Decodes bytes with the `charset` a page declares in its first KiB (`<meta charset=...>` or
/// `content="text/html; charset=..."`).
fn declared_charset_decode(bytes: &[u8]) -> Option<String> {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]).to_ascii_lowercase();
    let at = head.find("charset=")? + "charset=".len();
    let label: String = head[at..]
        .trim_start_matches(['"', '\''])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
        .collect();
    let encoding = encoding_rs::Encoding::for_label(label.as_bytes())?;
    if encoding == encoding_rs::UTF_8 {
        return None;
    }
    let (text, _, _) = encoding.decode(bytes);
    Some(super::normalize_newlines(&text))
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
