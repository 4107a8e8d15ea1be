//! Markdown (`.md`, `.markdown`): the text is the markdown source (front matter dropped);
//! ATX and setext headings become sections, their lines staying in the text. A `#` inside a
//! code block is not a heading: pulldown-cmark parses the document.

use lorag_core::Document;
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

use super::{collapse_ws, decode_text, record_encoding, stem_title, SectionBuilder};
use crate::{Candidate, IngestError};

pub(super) fn load(c: &Candidate, bytes: &[u8]) -> Result<Vec<Document>, IngestError> {
    let decoded = decode_text(&c.source, bytes)?;
    let text = strip_front_matter(&decoded.text).to_string();
    if text.trim().is_empty() {
        return Err(IngestError::Empty {
            input: c.source.clone(),
        });
    }
    let mut sections = SectionBuilder::default();
    // (level, start, title so far) of the heading being read.
    let mut heading: Option<(u8, usize, String)> = None;
    let opts = Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_HEADING_ATTRIBUTES;
    for (event, range) in Parser::new_ext(&text, opts).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                heading = Some((level as u8, range.start, String::new()));
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((level, start, title)) = heading.take() {
                    let title = collapse_ws(&title);
                    if !title.is_empty() {
                        sections.heading(level, title, start);
                    }
                }
            }
            Event::Text(t) | Event::Code(t) | Event::InlineMath(t) => {
                if let Some((_, _, title)) = heading.as_mut() {
                    title.push_str(&t);
                }
            }
            Event::SoftBreak | Event::HardBreak => {
                if let Some((_, _, title)) = heading.as_mut() {
                    title.push(' ');
                }
            }
            _ => {}
        }
    }
    let title = sections.first_title().or_else(|| stem_title(&c.path));
    let mut doc = Document::new(&c.source, "md", text);
    doc.sections = sections.finish(doc.text.len());
    doc.title = title;
    let mut docs = vec![doc];
    record_encoding(&mut docs, decoded.encoding);
    Ok(docs)
}

/// The text after a leading YAML (`---`) or TOML (`+++`) front matter block, if it has one.
fn strip_front_matter(text: &str) -> &str {
    for fence in ["---", "+++"] {
        let Some(rest) = text.strip_prefix(fence) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix('\n') else {
            continue;
        };
        let mut pos = 0;
        for line in rest.split_inclusive('\n') {
            let bare = line.trim_end();
            if bare == fence || (fence == "---" && bare == "...") {
                return &rest[pos + line.len()..];
            }
            pos += line.len();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::strip_front_matter;

    #[test]
    fn front_matter_is_dropped_only_when_closed() {
        assert_eq!(strip_front_matter("---\ntitle: x\n---\n# A\n"), "# A\n");
        assert_eq!(strip_front_matter("+++\na = 1\n+++\nbody"), "body");
        assert_eq!(strip_front_matter("---\nnot closed\n"), "---\nnot closed\n");
        assert_eq!(strip_front_matter("# A\n---\n"), "# A\n---\n");
    }
}
