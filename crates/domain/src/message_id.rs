//! A message id as an import may hold it: text, or the parts of an id derived from a row's
//! content (`import_<32 hex digits>_<n>`), written out only when something needs the text.
//! An import derives millions of these; held as parts they are neither written as hex nor
//! read back from it.

use std::borrow::Cow;
use std::fmt;

/// `import_<key as 32 lowercase hex digits>_<n>`: the id `steward import` gives the `n`th row
/// (`n` from 1) of a content whose 128-bit key is `key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DerivedId {
    pub key: u128,
    pub n: u64,
}

impl DerivedId {
    pub const PREFIX: &'static str = "import_";
    /// The longest text of one: the prefix, 32 digits, `_` and twenty digits.
    pub const MAX_LEN: usize = Self::PREFIX.len() + 32 + 1 + 20;

    /// The parts of `id` when it has exactly this shape (lowercase digits, `n` from 1 with
    /// no leading zero), so that writing them out gives `id` again.
    pub fn parse(id: &str) -> Option<DerivedId> {
        let rest = id.strip_prefix(Self::PREFIX)?;
        let (digits, n) = (rest.get(..32)?, rest.get(32..)?.strip_prefix('_')?);
        let lowercase = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
        if !digits.bytes().all(|b| lowercase(&b)) {
            return None;
        }
        if n.is_empty() || n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(DerivedId { key: u128::from_str_radix(digits, 16).ok()?, n: n.parse().ok()? })
    }

    /// The id's text, in `buf`.
    pub fn write<'b>(&self, buf: &'b mut [u8; DerivedId::MAX_LEN]) -> &'b [u8] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let p = Self::PREFIX.len();
        buf[..p].copy_from_slice(Self::PREFIX.as_bytes());
        // A byte at a time: every id an import stores is written out to be hashed.
        for (pair, b) in buf[p..p + 32].chunks_exact_mut(2).zip(self.key.to_be_bytes()) {
            pair[0] = HEX[(b >> 4) as usize];
            pair[1] = HEX[(b & 0xf) as usize];
        }
        buf[p + 32] = b'_';
        let mut digits = [0u8; 20];
        let (mut n, mut at) = (self.n, digits.len());
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let len = p + 33 + digits.len() - at;
        buf[p + 33..len].copy_from_slice(&digits[at..]);
        &buf[..len]
    }
}

impl fmt::Display for DerivedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{:032x}_{}", Self::PREFIX, self.key, self.n)
    }
}

/// A message id: text, or a [`DerivedId`] in parts. Two are equal when their texts are.
#[derive(Clone, Copy, Debug)]
pub enum MessageId<'a> {
    Text(&'a str),
    Derived(DerivedId),
}

impl<'a> MessageId<'a> {
    /// The id's text as bytes, written in `buf` when it is a [`DerivedId`].
    pub fn bytes<'b>(&self, buf: &'b mut [u8; DerivedId::MAX_LEN]) -> &'b [u8]
    where
        'a: 'b,
    {
        match self {
            MessageId::Text(text) => text.as_bytes(),
            MessageId::Derived(id) => id.write(buf),
        }
    }

    /// Its text.
    pub fn text(&self) -> Cow<'a, str> {
        match self {
            MessageId::Text(text) => Cow::Borrowed(text),
            MessageId::Derived(id) => Cow::Owned(id.to_string()),
        }
    }

    /// The length of its text.
    pub fn len(&self) -> usize {
        match self {
            MessageId::Text(text) => text.len(),
            MessageId::Derived(id) => DerivedId::PREFIX.len() + 33 + id.n.checked_ilog10().unwrap_or(0) as usize + 1,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PartialEq for MessageId<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (MessageId::Text(a), MessageId::Text(b)) => a == b,
            (MessageId::Derived(a), MessageId::Derived(b)) => a == b,
            _ => {
                let (mut a, mut b) = ([0; DerivedId::MAX_LEN], [0; DerivedId::MAX_LEN]);
                self.bytes(&mut a) == other.bytes(&mut b)
            }
        }
    }
}

impl Eq for MessageId<'_> {}

impl PartialEq<&str> for MessageId<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self == MessageId::Text(other)
    }
}

impl<'a> From<&'a str> for MessageId<'a> {
    fn from(text: &'a str) -> Self {
        MessageId::Text(text)
    }
}

impl<'a> From<&'a String> for MessageId<'a> {
    fn from(text: &'a String) -> Self {
        MessageId::Text(text)
    }
}

impl fmt::Display for MessageId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageId::Text(text) => f.write_str(text),
            MessageId::Derived(id) => id.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_write_and_parse_back_the_same_text() {
        let cases = [
            DerivedId { key: 0x3d79_8c1a_0bd7_400c_ddf1_99e8_7768_222e, n: 1 },
            DerivedId { key: 0xab, n: 12 },
            DerivedId { key: u128::MAX, n: u64::MAX },
            DerivedId { key: 1, n: 1_000_000_000 },
            DerivedId { key: 0, n: 10 },
        ];
        for id in cases {
            let text = id.to_string();
            let mut buf = [0; DerivedId::MAX_LEN];
            assert_eq!(id.write(&mut buf), text.as_bytes());
            assert_eq!(MessageId::Derived(id).len(), text.len(), "{text}");
            assert_eq!(DerivedId::parse(&text), Some(id));
            assert_eq!(MessageId::Derived(id), MessageId::Text(&text));
            assert_eq!(MessageId::Derived(id), text.as_str());
        }
        assert_eq!(DerivedId { key: 0xab, n: 12 }.to_string(), format!("import_{}ab_12", "0".repeat(30)));
        let key = "0".repeat(32);
        for not in [
            format!("import_{key}_0"),
            format!("import_{key}_01"),
            format!("import_{key}_"),
            format!("import_{key}1"),
            format!("import_{}_1", "A".repeat(32)),
            format!("import_{}_1", "0".repeat(31)),
            format!("import_{key}_18446744073709551616"),
            format!("import_{key}_1x"),
            format!("export_{key}_1"),
            format!("import_+{}_1", "0".repeat(31)),
        ] {
            assert_eq!(DerivedId::parse(&not), None, "{not}");
        }
        assert_ne!(MessageId::Text("m-1"), MessageId::Text("m-2"));
        assert_ne!(MessageId::Derived(cases[0]), MessageId::Derived(cases[1]));
    }
}
