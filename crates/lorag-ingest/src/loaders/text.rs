//! Plain text (`.txt`): any encoding `decode_text` reads, one document titled by the file stem.

use lorag_core::Document;

use super::{decode_text, record_encoding, stem_title};
use crate::{Candidate, IngestError};

pub(super) fn load(c: &Candidate, bytes: &[u8]) -> Result<Vec<Document>, IngestError> {
    let decoded = decode_text(&c.source, bytes)?;
    let mut doc = Document::new(&c.source, "txt", decoded.text);
    doc.title = stem_title(&c.path);
    let mut docs = vec![doc];
    record_encoding(&mut docs, decoded.encoding);
    Ok(docs)
}
