//! Word (`.docx`): the paragraphs of `word/document.xml`, separated by blank lines; a table is
//! one line per row, cells separated by ` | `. A paragraph whose style is a heading (by the style
//! name `heading N` in `word/styles.xml`, an outline level, or a style id `HeadingN`) starts a
//! section; the first `Title`-styled paragraph, else the first heading, else the file stem, is the
//! title. Deleted revisions, headers, footers and comments are not part of the text.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use lorag_core::Document;
use roxmltree::Node;

use super::{collapse_ws, stem_title, SectionBuilder};
use crate::{Candidate, IngestError};

const W: &str = "http://schemas.openxmlformats.org/wordprocessingml/2006/main";
/// The most uncompressed XML read from one part (a guard against zip bombs): past it the part
/// is refused while it is inflated, never read whole.
pub const MAX_PART: u64 = 64 << 20;

/// What a paragraph style means here.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Style {
    Heading(u8),
    Title,
}

pub(super) fn load(c: &Candidate, bytes: &[u8]) -> Result<Vec<Document>, IngestError> {
    let parse_error = |reason: String| IngestError::Parse {
        input: c.source.clone(),
        format: "DOCX",
        reason,
    };
    if bytes.is_empty() {
        return Err(IngestError::Empty {
            input: c.source.clone(),
        });
    }
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| parse_error(format!("not a zip archive ({e})")))?;
    let document = read_part(&mut zip, "word/document.xml")
        .map_err(parse_error)?
        .ok_or_else(|| parse_error("no word/document.xml (is it a Word document?)".to_string()))?;
    let styles = match read_part(&mut zip, "word/styles.xml").map_err(parse_error)? {
        Some(xml) => style_map(&xml),
        None => HashMap::new(),
    };
    let xml = roxmltree::Document::parse(&document)
        .map_err(|e| parse_error(format!("word/document.xml: {e}")))?;
    let body = xml
        .root_element()
        .children()
        .find(|n| is_w(n, "body"))
        .ok_or_else(|| parse_error("word/document.xml has no body".to_string()))?;

    let mut text = String::new();
    let mut sections = SectionBuilder::default();
    let mut title = None;
    for block in body.children().filter(Node::is_element) {
        let (para, style) = if is_w(&block, "p") {
            (paragraph_text(block), paragraph_style(block, &styles))
        } else if is_w(&block, "tbl") {
            (table_text(block), None)
        } else if is_w(&block, "sdt") {
            // A content control (e.g. a table of contents) holding paragraphs.
            let paras: Vec<String> = block
                .descendants()
                .filter(|n| is_w(n, "p"))
                .map(paragraph_text)
                .filter(|p| !p.trim().is_empty())
                .collect();
            (paras.join("\n\n"), None)
        } else {
            continue;
        };
        if para.trim().is_empty() {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        let start = text.len();
        match style {
            Some(Style::Heading(level)) => {
                let heading = collapse_ws(&para);
                sections.heading(level, heading.clone(), start);
                text.push_str(&heading);
                continue;
            }
            Some(Style::Title) if title.is_none() => title = Some(collapse_ws(&para)),
            _ => {}
        }
        text.push_str(para.trim_end());
    }
    if text.is_empty() {
        return Err(IngestError::NoText {
            input: c.source.clone(),
            hint: " (the document has no paragraphs with text)".to_string(),
        });
    }
    let title = title
        .or_else(|| sections.first_title())
        .or_else(|| stem_title(&c.path));
    let mut doc = Document::new(&c.source, "docx", text);
    doc.sections = sections.finish(doc.text.len());
    doc.title = title;
    Ok(vec![doc])
}

fn read_part(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
) -> Result<Option<String>, String> {
    let file = match zip.by_name(name) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(format!("{name}: {e}")),
    };
    let mut bytes = Vec::new();
    file.take(MAX_PART + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{name}: {e}"))?;
    if bytes.len() as u64 > MAX_PART {
        return Err(format!(
            "{name} inflates to more than {} MiB (the limit for one part; a zip bomb?)",
            MAX_PART >> 20
        ));
    }
    String::from_utf8(bytes).map(Some).map_err(|e| {
        format!(
            "{name}: invalid UTF-8 at byte {}",
            e.utf8_error().valid_up_to()
        )
    })
}

fn is_w(n: &Node, name: &str) -> bool {
    n.is_element() && n.tag_name().name() == name && n.tag_name().namespace() == Some(W)
}

fn w_attr<'a>(n: &Node<'a, '_>, name: &str) -> Option<&'a str> {
    n.attribute((W, name))
}

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| is_w(c, name))
}

/// The text of a paragraph's runs: `w:t`, tabs and breaks; deleted text (`w:delText`) is left
/// out.
fn paragraph_text(p: Node) -> String {
    let mut s = String::new();
    for n in p.descendants() {
        if !n.is_element() || n.tag_name().namespace() != Some(W) {
            continue;
        }
        match n.tag_name().name() {
            "t" => s.push_str(n.text().unwrap_or("")),
            "tab" if !n.ancestors().any(|a| is_w(&a, "tabs")) => s.push('\t'),
            "br" | "cr" => s.push('\n'),
            "noBreakHyphen" => s.push('-'),
            _ => {}
        }
    }
    s
}

fn table_text(tbl: Node) -> String {
    let mut rows = Vec::new();
    for tr in tbl.children().filter(|n| is_w(n, "tr")) {
        let cells: Vec<String> = tr
            .children()
            .filter(|n| is_w(n, "tc"))
            .map(|tc| {
                let paras: Vec<String> = tc
                    .descendants()
                    .filter(|n| is_w(n, "p"))
                    .map(|p| collapse_ws(&paragraph_text(p)))
                    .filter(|p| !p.is_empty())
                    .collect();
                paras.join(" ")
            })
            .collect();
        if cells.iter().any(|c| !c.is_empty()) {
            rows.push(cells.join(" | "));
        }
    }
    rows.join("\n")
}

fn paragraph_style(p: Node, styles: &HashMap<String, Style>) -> Option<Style> {
    let ppr = child(p, "pPr")?;
    if let Some(id) = child(ppr, "pStyle").and_then(|s| w_attr(&s, "val")) {
        if let Some(style) = styles.get(id).copied().or_else(|| style_from_name(id)) {
            return Some(style);
        }
    }
    outline_level(ppr)
}

/// A paragraph's own outline level (`w:outlineLvl` 0..5 → heading 1..6).
fn outline_level(ppr: Node) -> Option<Style> {
    let level: u8 = w_attr(&child(ppr, "outlineLvl")?, "val")?.parse().ok()?;
    (level < 6).then_some(Style::Heading(level + 1))
}

/// `Heading1`, `heading 2`, `Title` (style ids and the built-in style names, which are English
/// whatever the document's language).
fn style_from_name(name: &str) -> Option<Style> {
    let lower = name.to_ascii_lowercase();
    if lower == "title" {
        return Some(Style::Title);
    }
    let level: u8 = lower.strip_prefix("heading")?.trim().parse().ok()?;
    (1..=6).contains(&level).then_some(Style::Heading(level))
}

/// Style id → meaning, from `word/styles.xml` (by name, else by outline level).
fn style_map(xml: &str) -> HashMap<String, Style> {
    let mut map = HashMap::new();
    let Ok(doc) = roxmltree::Document::parse(xml) else {
        return map;
    };
    for style in doc.descendants().filter(|n| is_w(n, "style")) {
        let Some(id) = w_attr(&style, "styleId") else {
            continue;
        };
        let by_name = child(style, "name")
            .and_then(|n| w_attr(&n, "val"))
            .and_then(style_from_name);
        let by_level = child(style, "pPr").and_then(outline_level);
        if let Some(s) = by_name.or(by_level) {
            map.insert(id.to_string(), s);
        }
    }
    map
}
