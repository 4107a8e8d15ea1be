//! Plain text (`.txt`): UTF-8, one document titled by the file stem.

use lorag_core::Document;

use super::{decode_text, stem_title};
use crate::{Candidate, IngestError};

pub(super) fn load(c: &Candidate, bytes: &[u8]) -> Result<Vec<Document>, IngestError> {
    let text = decode_text(&c.source, bytes)?;
    let mut doc = Document::new(&c.source, "txt", text);
    doc.title = stem_title(&c.path);
    Ok(vec![doc])
}
