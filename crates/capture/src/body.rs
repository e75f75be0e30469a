//! Request bodies: gzip is detected by its magic bytes, whatever the headers say.

use flate2::read::GzDecoder;
use std::borrow::Cow;
use std::io::Read;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("the body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the body looks gzip-compressed but does not decompress: {0}")]
    BadGzip(String),
    #[error("the body is empty")]
    Empty,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Decompresses a gzip body (detected by content, as some SDKs send gzip without saying so)
/// and enforces `limit` on the decompressed size.
pub fn decode_body(raw: &[u8], limit: usize) -> Result<Cow<'_, [u8]>, BodyError> {
    if raw.is_empty() {
        return Err(BodyError::Empty);
    }
    if !raw.starts_with(&GZIP_MAGIC) {
        if raw.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = Vec::with_capacity(raw.len() * 4);
    // Read one byte past the limit to tell "exactly at the limit" from "over it" without
    // inflating a decompression bomb.
    let mut reader = GzDecoder::new(raw).take(limit as u64 + 1);
    reader.read_to_end(&mut out).map_err(|e| BodyError::BadGzip(e.to_string()))?;
    if out.len() > limit {
        return Err(BodyError::TooLarge { limit });
    }
    if out.is_empty() {
        return Err(BodyError::Empty);
    }
    Ok(Cow::Owned(out))
}
