//! Cursor pagination: opaque cursors that name the last row seen.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::StoreError;

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1_000;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: usize,
    pub after: Option<Cursor>,
}

impl PageRequest {
    pub fn first(limit: usize) -> Self {
        PageRequest { limit: limit.clamp(1, MAX_LIMIT), after: None }
    }

    /// The number of rows to fetch: one more than the page, to know whether another follows.
    pub fn fetch_limit(&self) -> usize {
        self.limit.clamp(1, MAX_LIMIT) + 1
    }

    /// Trims a fetched `fetch_limit()` rows to a page, with the cursor of its last row when
    /// more follow.
    pub fn finish<T>(&self, mut rows: Vec<T>, cursor_of: impl Fn(&T) -> Cursor) -> Page<T> {
        let limit = self.limit.clamp(1, MAX_LIMIT);
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(cursor_of)
        } else {
            None
        };
        Page { items: rows, next }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

/// The sort key of the last row of a page, as parts. Opaque to clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor(pub Vec<String>);

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.join("\u{1f}"))
    }

    pub fn decode(s: &str) -> Result<Cursor, StoreError> {
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| StoreError::InvalidCursor)?;
        let text = String::from_utf8(bytes).map_err(|_| StoreError::InvalidCursor)?;
        Ok(Cursor(text.split('\u{1f}').map(str::to_owned).collect()))
    }

    /// The parts, checking there are `n` of them.
    pub fn parts(&self, n: usize) -> Result<&[String], StoreError> {
        if self.0.len() == n { Ok(&self.0) } else { Err(StoreError::InvalidCursor) }
    }

    /// Part `i` as an integer.
    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.0.get(i).and_then(|s| s.parse().ok()).ok_or(StoreError::InvalidCursor)
    }
}
