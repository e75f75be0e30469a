//! How an id page holds its ids (`id_pages.data`).
//!
//! Format 2, written now: a `0` byte, the page's workspace and its number of ids (varints),
//! the first id's hash (8 bytes, little-endian), the smallest seq (a varint), the bit widths
//! of the steps between hashes and of the seqs above the smallest (a byte each), then the ids
//! packed in those widths, least significant bit first: the first id's seq, then each further
//! id's step from the hash before it and its seq. Ids are sorted by hash, so a step is small:
//! about 45 bits in a run of millions, where format 1 took 64 bits for each hash and a varint
//! of 3 or 4 bytes for each seq (13 bytes an id against about 8.5).
//!
//! Format 1, pages written before: each id as its workspace (a varint), its hash (8 bytes,
//! little-endian) and its seq (a varint). A workspace is at least 1, so a format 1 page never
//! starts with the `0` of format 2.

use store::Result;

use crate::block::{Reader, put_uint};
use crate::runs::Id;

/// A page is filled to about this many bytes, so that it fits one 4 KB database page.
pub(super) const PAGE_BYTES: usize = 3_800;
/// The most bytes a format 2 header takes (before the packed ids).
const HEADER_BYTES: usize = 1 + 10 + 10 + 8 + 10 + 2;

const FORMAT_2: u8 = 0;

fn corrupt(why: &str) -> store::StoreError {
    store::StoreError::Backend(format!("corrupt id page: {why}"))
}

/// Bits needed to write `v`.
fn width(v: u64) -> u32 {
    u64::BITS - v.leading_zeros()
}

/// Ids gathered for one page: one workspace's, in order.
#[derive(Default)]
pub(super) struct PageBuilder {
    ws: i64,
    /// `(hash, seq)` of each id.
    ids: Vec<(i64, i64)>,
    step_bits: u32,
    seq_min: i64,
    seq_max: i64,
}

impl PageBuilder {
    /// The key of the page's first id.
    pub(super) fn first(&self) -> Option<(i64, i64)> {
        self.ids.first().map(|&(hash, _)| (self.ws, hash))
    }

    /// Adds `id` (not before the last added) if it belongs on this page: one of its
    /// workspace that keeps it within [`PAGE_BYTES`], or one with the same key as the last,
    /// as equal keys stay on one page (a lookup reads one page per run). Says whether it did.
    pub(super) fn take(&mut self, (ws, hash, seq): Id) -> bool {
        let Some(&(last, _)) = self.ids.last() else {
            (self.ws, self.seq_min, self.seq_max) = (ws, seq, seq);
            self.ids.push((hash, seq));
            return true;
        };
        if ws != self.ws {
            return false;
        }
        let step_bits = self.step_bits.max(width(hash.wrapping_sub(last) as u64));
        let (seq_min, seq_max) = (self.seq_min.min(seq), self.seq_max.max(seq));
        if hash != last && Self::bytes(self.ids.len() + 1, step_bits, seq_min, seq_max) > PAGE_BYTES {
            return false;
        }
        (self.step_bits, self.seq_min, self.seq_max) = (step_bits, seq_min, seq_max);
        self.ids.push((hash, seq));
        true
    }

    /// The most bytes a page of `n` ids with these widths takes.
    fn bytes(n: usize, step_bits: u32, seq_min: i64, seq_max: i64) -> usize {
        let seq_bits = width(seq_max.wrapping_sub(seq_min) as u64) as usize;
        HEADER_BYTES + (n * seq_bits + (n - 1) * step_bits as usize).div_ceil(8)
    }

    /// The page in format 2. The builder must hold an id.
    pub(super) fn encode(&self) -> Vec<u8> {
        let &(first, _) = self.ids.first().expect("a page holds an id");
        let seq_bits = width(self.seq_max.wrapping_sub(self.seq_min) as u64);
        let mut out = Vec::with_capacity(Self::bytes(self.ids.len(), self.step_bits, self.seq_min, self.seq_max));
        out.push(FORMAT_2);
        put_uint(&mut out, self.ws as u64);
        put_uint(&mut out, self.ids.len() as u64);
        out.extend_from_slice(&first.to_le_bytes());
        put_uint(&mut out, self.seq_min as u64);
        out.push(self.step_bits as u8);
        out.push(seq_bits as u8);
        let mut bits = BitWriter { out, acc: 0, filled: 0 };
        let mut prev = first;
        for (i, &(hash, seq)) in self.ids.iter().enumerate() {
            if i > 0 {
                bits.put(hash.wrapping_sub(prev) as u64, self.step_bits);
            }
            bits.put(seq.wrapping_sub(self.seq_min) as u64, seq_bits);
            prev = hash;
        }
        bits.finish()
    }
}

struct BitWriter {
    out: Vec<u8>,
    acc: u128,
    /// Bits in `acc` not yet written (fewer than 64 between calls).
    filled: u32,
}

impl BitWriter {
    fn put(&mut self, v: u64, bits: u32) {
        if bits == 0 {
            return;
        }
        self.acc |= u128::from(v) << self.filled;
        self.filled += bits;
        if self.filled >= 64 {
            self.out.extend_from_slice(&(self.acc as u64).to_le_bytes());
            self.acc >>= 64;
            self.filled -= 64;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        let bytes = self.filled.div_ceil(8) as usize;
        self.out.extend_from_slice(&(self.acc as u64).to_le_bytes()[..bytes]);
        self.out
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    at: usize,
    acc: u128,
    filled: u32,
}

impl BitReader<'_> {
    fn get(&mut self, bits: u32) -> Result<u64> {
        if bits == 0 {
            return Ok(0);
        }
        while self.filled < bits {
            if let Some(word) = self.bytes.get(self.at..self.at + 8) {
                self.acc |= u128::from(u64::from_le_bytes(word.try_into().expect("8 bytes"))) << self.filled;
                (self.at, self.filled) = (self.at + 8, self.filled + 64);
            } else {
                let byte = *self.bytes.get(self.at).ok_or_else(|| corrupt("truncated"))?;
                self.acc |= u128::from(byte) << self.filled;
                (self.at, self.filled) = (self.at + 1, self.filled + 8);
            }
        }
        let v = (self.acc & ((1u128 << bits) - 1)) as u64;
        self.acc >>= bits;
        self.filled -= bits;
        Ok(v)
    }
}

/// Whether the page keeps every id of its keys (format 2 never splits equal keys between
/// pages).
pub(super) fn keeps_equal_keys(data: &[u8]) -> bool {
    data.first() == Some(&FORMAT_2)
}

/// Calls `f` with each id of a page, in order, whichever its format.
pub(super) fn decode(data: &[u8], mut f: impl FnMut(Id)) -> Result<()> {
    let mut r = Reader::new(data);
    if data.first() != Some(&FORMAT_2) {
        while !r.at_end() {
            let ws = r.uint()? as i64;
            let hash = i64::from_le_bytes(r.fixed::<8>()?);
            let seq = r.uint()? as i64;
            f((ws, hash, seq));
        }
        return Ok(());
    }
    r.byte()?;
    let ws = r.uint()? as i64;
    let count = r.uint()?;
    let mut hash = i64::from_le_bytes(r.fixed::<8>()?);
    let seq_min = r.uint()? as i64;
    let (step_bits, seq_bits) = (u32::from(r.byte()?), u32::from(r.byte()?));
    if step_bits > 64 || seq_bits > 64 {
        return Err(corrupt("a width above 64 bits"));
    }
    // More ids than the bytes hold (no two ids of a page are alike, so only a page of one
    // takes no bits).
    let id_bits = u64::from(step_bits + seq_bits);
    let needed = count.saturating_sub(1).saturating_mul(id_bits.max(1));
    if needed > 8 * r.rest().len() as u64 {
        return Err(corrupt("more ids than bytes"));
    }
    let mut bits = BitReader { bytes: r.rest(), at: 0, acc: 0, filled: 0 };
    for i in 0..count {
        if i > 0 {
            hash = hash.wrapping_add(bits.get(step_bits)? as i64);
        }
        let seq = seq_min.wrapping_add(bits.get(seq_bits)? as i64);
        f((ws, hash, seq));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages(ids: &[Id]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut page = PageBuilder::default();
        for &id in ids {
            if !page.take(id) {
                out.push(page.encode());
                page = PageBuilder::default();
                assert!(page.take(id), "an empty page takes any id");
            }
        }
        if page.first().is_some() {
            out.push(page.encode());
        }
        out
    }

    fn decoded(pages: &[Vec<u8>]) -> Vec<Id> {
        let mut ids = Vec::new();
        for page in pages {
            decode(page, |id| ids.push(id)).unwrap();
        }
        ids
    }

    /// Sorted ids spread over the whole hash range, with seqs in no order.
    fn spread(n: u64, ws: i64) -> Vec<Id> {
        let mut ids: Vec<Id> = (1..=n)
            .map(|i| {
                let hash = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i << 7);
                (ws, hash as i64, (i * 7_919 % 1_000_003) as i64 + 1)
            })
            .collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn pages_give_back_their_ids_in_two_thirds_of_the_bytes() {
        let ids = spread(100_000, 3);
        let written = pages(&ids);
        assert_eq!(decoded(&written), ids);
        assert!(written.iter().all(|p| p.len() <= PAGE_BYTES), "each page fits");
        let bytes: usize = written.iter().map(Vec::len).sum();
        let per_id = bytes as f64 / ids.len() as f64;
        assert!(per_id < 9.0, "{per_id:.2} bytes an id (format 1: 13)");
    }

    #[test]
    fn the_edges_of_the_ranges_and_equal_keys_survive() {
        let mut ids: Vec<Id> = vec![
            (1, i64::MIN, 5),
            (1, i64::MIN, 1 << 40),
            (1, -1, 0),
            (1, 0, i64::MAX),
            (1, i64::MAX, 2),
            (2, i64::MIN, 9),
            (5, i64::MIN, 1),
            (5, i64::MAX, 2),
            (2, 7, 9),
            (i64::MAX, 7, 1),
        ];
        // Equal keys after a full page stay with it.
        let mut many = spread(2_000, 4);
        let last = *many.last().unwrap();
        many.extend((1..5).map(|k| (last.0, last.1, last.2 + k)));
        ids.extend(many);
        ids.sort_unstable();
        let written = pages(&ids);
        assert_eq!(decoded(&written), ids);
        let with_last: Vec<usize> = (0..written.len())
            .filter(|&i| decoded(&written[i..=i]).iter().any(|id| (id.0, id.1) == (last.0, last.1)))
            .collect();
        assert_eq!(with_last.len(), 1, "one page holds every id of one key");
        let workspaces: Vec<Vec<i64>> = written
            .iter()
            .map(|p| {
                let mut ws: Vec<i64> = decoded(std::slice::from_ref(p)).iter().map(|id| id.0).collect();
                ws.dedup();
                ws
            })
            .collect();
        assert!(workspaces.iter().all(|ws| ws.len() == 1), "a page holds one workspace's ids");
        assert_eq!(decoded(&pages(&[(1, 42, 42)])), vec![(1, 42, 42)], "a page of one id");
    }

    #[test]
    fn format_1_pages_still_read() {
        let ids = [(1i64, -5i64, 300i64), (1, 9, 2), (200, 9, 1 << 33)];
        let mut page = Vec::new();
        for (ws, hash, seq) in ids {
            put_uint(&mut page, ws as u64);
            page.extend_from_slice(&hash.to_le_bytes());
            put_uint(&mut page, seq as u64);
        }
        assert_eq!(decoded(&[page]), ids);
    }

    #[test]
    fn a_damaged_page_is_an_error() {
        let page = pages(&spread(500, 1)).remove(0);
        assert!(decode(&page[..page.len() - 3], |_| {}).is_err(), "truncated");
        // The widths follow the format byte, two varints, the first hash and a varint.
        let mut r = Reader::new(&page);
        r.byte().unwrap();
        r.uint().unwrap();
        r.uint().unwrap();
        r.fixed::<8>().unwrap();
        r.uint().unwrap();
        let widths = page.len() - r.rest().len();
        let mut wide = page.clone();
        wide[widths] = 65;
        assert!(decode(&wide, |_| {}).is_err(), "a width above 64 bits");
        // A count far beyond the bytes, with widths of nothing, is refused before any id.
        let mut page = vec![FORMAT_2];
        put_uint(&mut page, 1);
        put_uint(&mut page, u64::MAX);
        page.extend_from_slice(&7i64.to_le_bytes());
        put_uint(&mut page, 1);
        page.extend_from_slice(&[0, 0]);
        let mut seen = 0;
        assert!(decode(&page, |_| seen += 1).is_err());
        assert_eq!(seen, 0);
    }
}
