//! Bytes of a text format → `String`, whatever the encoding the file was saved in.
//!
//! Order: a byte-order mark decides (UTF-8, UTF-16LE, UTF-16BE); else NUL bytes mean binary
//! content; else valid UTF-8 is UTF-8; else the encoding the file declares (HTML `charset`), or
//! the one `chardetng` guesses (Windows-1252 for Latin-1 text, Shift_JIS, ...), decodes it. Only
//! bytes that no encoding explains are an error: a sequence invalid in the chosen encoding, control
//! characters that text does not hold, or a file that mixes UTF-8 with the bytes of a single-byte
//! encoding (decoding it either way would garble part of it).

use encoding_rs::{Encoding, UTF_16BE, UTF_16LE, UTF_8};

use crate::IngestError;

/// Decoded text, and the encoding it was in when that was not UTF-8.
#[derive(Debug)]
pub(crate) struct Decoded {
    /// The text, without a byte-order mark and with `\n` line ends.
    pub(crate) text: String,
    /// The encoding's name (`windows-1252`, `UTF-16LE`...) when it was not UTF-8.
    pub(crate) encoding: Option<&'static str>,
}

/// Decodes `bytes` (see the module doc). `declared` is an encoding the file names itself; it is
/// used, before guessing, when the bytes are not UTF-8.
pub(crate) fn decode(
    input: &str,
    bytes: &[u8],
    declared: Option<&'static Encoding>,
) -> Result<Decoded, IngestError> {
    let undecodable = |offset: usize, reason: String| IngestError::Undecodable {
        input: input.to_string(),
        offset,
        reason,
    };
    let (text, encoding) = if let Some((enc, bom)) = Encoding::for_bom(bytes) {
        let body = &bytes[bom..];
        let text = match enc.decode_without_bom_handling_and_without_replacement(body) {
            Some(t) => t.into_owned(),
            None => {
                let offset = bom + first_invalid(enc, body);
                return Err(undecodable(
                    offset,
                    format!(
                        "the file starts with a {} byte-order mark, but the bytes at offset \
                         {offset} are not valid {}",
                        enc.name(),
                        enc.name()
                    ),
                ));
            }
        };
        if text.contains('\0') {
            return Err(IngestError::Binary {
                input: input.to_string(),
            });
        }
        (text, (enc != UTF_8).then(|| enc.name()))
    } else if bytes.contains(&0) {
        return Err(IngestError::Binary {
            input: input.to_string(),
        });
    } else {
        match std::str::from_utf8(bytes) {
            Ok(t) => (t.to_string(), None),
            Err(e) => {
                let offset = e.valid_up_to();
                let byte = bytes[offset];
                let enc = declared
                    .filter(|d| ![UTF_8, UTF_16LE, UTF_16BE].contains(d))
                    .unwrap_or_else(|| guess(bytes));
                // In a single-byte encoding, valid UTF-8 sequences of two or more bytes hardly
                // ever occur by chance (in Shift_JIS or GBK they do).
                if enc.is_single_byte() && has_utf8_multibyte(bytes) {
                    return Err(undecodable(
                        offset,
                        format!(
                            "byte 0x{byte:02X} at offset {offset} is not UTF-8, but the file \
                             also holds UTF-8 characters: it mixes encodings (save it in one \
                             encoding, e.g. UTF-8)"
                        ),
                    ));
                }
                let Some(text) = enc.decode_without_bom_handling_and_without_replacement(bytes)
                else {
                    let bad = first_invalid(enc, bytes);
                    return Err(undecodable(
                        bad,
                        format!(
                            "byte 0x{byte:02X} at offset {offset} is not UTF-8, and the bytes \
                             at offset {bad} are not valid {} either (the closest encoding)",
                            enc.name()
                        ),
                    ));
                };
                if let Some((at, c)) = text.char_indices().find(|&(_, c)| is_binary_control(c)) {
                    // `at` counts bytes of the decoded text; the byte in the file is the one
                    // that decodes to the control character (single-byte encodings: same count
                    // of characters before it).
                    let chars_before = text[..at].chars().count();
                    return Err(undecodable(
                        offset,
                        format!(
                            "byte 0x{byte:02X} at offset {offset} is not UTF-8, and as {} the \
                             file holds control character U+{:04X} (character {}): not text",
                            enc.name(),
                            c as u32,
                            chars_before + 1
                        ),
                    ));
                }
                (text.into_owned(), Some(enc.name()))
            }
        }
    };
    if text.trim().is_empty() {
        return Err(IngestError::Empty {
            input: input.to_string(),
        });
    }
    Ok(Decoded {
        text: super::normalize_newlines(&text),
        encoding,
    })
}

/// The legacy encoding `chardetng` finds most likely for bytes that are not UTF-8.
fn guess(bytes: &[u8]) -> &'static Encoding {
    let mut detector = chardetng::EncodingDetector::new();
    detector.feed(bytes, true);
    detector.guess(None, false)
}

/// Whether valid UTF-8 sequences of two or more bytes occur (outside invalid stretches).
fn has_utf8_multibyte(bytes: &[u8]) -> bool {
    bytes.utf8_chunks().any(|c| !c.valid().is_ascii())
}

/// Control characters that text files do not hold: C0 controls other than tab, line feed,
/// vertical tab, form feed and carriage return; DEL; and the C1 controls (U+0080-U+009F), which a
/// legacy decoding yields only for bytes the encoding leaves undefined.
fn is_binary_control(c: char) -> bool {
    matches!(c, '\u{1}'..='\u{8}' | '\u{e}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

/// The offset of the first byte `enc` cannot decode (0 when it cannot tell).
fn first_invalid(enc: &'static Encoding, bytes: &[u8]) -> usize {
    let mut decoder = enc.new_decoder_without_bom_handling();
    let mut out = String::with_capacity(
        decoder
            .max_utf8_buffer_length_without_replacement(bytes.len())
            .unwrap_or(0),
    );
    let (result, read) = decoder.decode_to_string_without_replacement(bytes, &mut out, true);
    match result {
        encoding_rs::DecoderResult::Malformed(bad, after) => {
            read.saturating_sub(bad as usize + after as usize)
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(bytes: &[u8]) -> Decoded {
        decode("f", bytes, None).expect("decodes")
    }

    #[test]
    fn boms_decide() {
        let d = ok(b"\xef\xbb\xbfhej\r\n");
        assert_eq!((d.text.as_str(), d.encoding), ("hej\n", None));
        let d = ok(b"\xff\xfeh\0\xe5\0j\0");
        assert_eq!(
            (d.text.as_str(), d.encoding),
            ("h\u{e5}j", Some("UTF-16LE"))
        );
        let d = ok(b"\xfe\xff\0h\0\xe5\0j");
        assert_eq!(
            (d.text.as_str(), d.encoding),
            ("h\u{e5}j", Some("UTF-16BE"))
        );
        // An unpaired surrogate after a UTF-16 BOM: named by offset.
        let e = decode("f", b"\xff\xfea\0\x00\xd8b\0", None).unwrap_err();
        assert!(
            matches!(e, IngestError::Undecodable { offset: 4, .. }),
            "{e}"
        );
    }

    #[test]
    fn legacy_and_mixed() {
        let d = ok(b"caf\xe9 cr\xe8me br\xfbl\xe9e, na\xefve fa\xe7ade");
        assert_eq!(d.text, "café crème brûlée, naïve façade");
        assert_eq!(d.encoding, Some("windows-1252"));
        let d = ok(b"\x93Smart quotes\x94 \x96 5 \x80");
        assert_eq!(d.text, "\u{201c}Smart quotes\u{201d} \u{2013} 5 \u{20ac}");
        let e = decode("f", b"\xc3\xa9 then \xe9", None).unwrap_err();
        assert!(
            matches!(e, IngestError::Undecodable { offset: 8, .. }),
            "{e}"
        );
        let e = decode("f", b"abc\x81\x02\x03", None).unwrap_err();
        assert!(matches!(e, IngestError::Undecodable { .. }), "{e}");
        assert!(e.to_string().starts_with("f: "), "{e}");
    }
}
