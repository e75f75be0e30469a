//! One workspace's recent ids in memory: an ordered hash table of `(hash, seq)`.
//!
//! Linear probing whose home slot is the hash's top bits, with each run of occupied slots
//! kept in hash order (an insert shifts the larger entries of its run one slot on). The
//! slots, read in order, are then the ids sorted by hash: writing them out as a run of the
//! log-structured merge ([`crate::runs`]) needs no sort. A lookup ends at the first larger
//! hash, and an entry is 16 bytes.
//!
//! The hashes are the first bytes of SHA-256 digests, so uniform: the top bits spread them
//! evenly without mixing. A batch of lookups first touches every home slot
//! ([`IdTable::touch`]), so that their cache misses overlap instead of coming one by one: an
//! import's millions of ids are nearly all new, and each would otherwise wait on memory.

/// Kept while a slot is empty: seqs start at 1.
const EMPTY: Slot = [0, 0];

/// Slots past the last home slot, so that the last runs need not wrap around to the start
/// (which would break the order); more are added if a run would go past them.
const SLACK: usize = 256;

/// The key (the hash with its sign bit flipped: ordered as unsigned, as the hashes are as
/// signed) and the seq. Plain words, so that a new table is memory the system gives zeroed,
/// touched only where entries go, rather than written empty first (a large import's table is
/// over a hundred megabytes).
type Slot = [u64; 2];

fn key(s: &Slot) -> u64 {
    s[0]
}

fn seq(s: &Slot) -> i64 {
    s[1] as i64
}

fn is_empty(s: &Slot) -> bool {
    s[1] == 0
}

fn key_of(hash: i64) -> u64 {
    (hash as u64) ^ (1 << 63)
}

fn hash_of(key: u64) -> i64 {
    (key ^ (1 << 63)) as i64
}

#[derive(Debug, Default)]
pub(crate) struct IdTable {
    /// The home slots, then at least [`SLACK`] more.
    slots: Vec<Slot>,
    homes: usize,
    /// `64 - log2(homes)`: a key's home is its top bits.
    shift: u32,
    len: usize,
    /// No seq held is larger.
    max_seq: i64,
}

impl IdTable {
    /// A table that holds `ids` without growing.
    pub(crate) fn with_capacity(ids: usize) -> IdTable {
        // At most three quarters full: runs stay short.
        let homes = (ids.max(16) * 4).div_ceil(3).next_power_of_two();
        IdTable { slots: vec![[0u64; 2]; homes + SLACK], homes, shift: 64 - homes.trailing_zeros(), len: 0, max_seq: 0 }
    }

    /// Slots, occupied or not.
    pub(crate) fn slots(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn home(&self, key: u64) -> usize {
        if self.slots.is_empty() { 0 } else { (key >> self.shift) as usize }
    }

    /// An empty table for `ids`, its memory written once here, page by page: the writer
    /// that takes it (see [`IdTable::reserve_in`]) then neither clears nor faults in what may
    /// be a hundred megabytes while appends wait.
    pub(crate) fn touched(ids: usize) -> IdTable {
        let mut table = IdTable::with_capacity(ids);
        // A slot is 16 bytes: one in 256 is one a 4 KiB page. What is written is hidden from
        // the compiler, which would otherwise know the memory is zero already.
        for at in (0..table.slots.len()).step_by(256) {
            table.slots[at] = std::hint::black_box(EMPTY);
        }
        table
    }

    /// Makes room for `more` ids beyond those held, moving into `empty` (made for them off
    /// the writer) if it is large enough.
    pub(crate) fn reserve_in(&mut self, more: usize, empty: IdTable) {
        let want = self.len + more;
        if want * 4 <= self.homes * 3 {
            return;
        }
        if empty.len > 0 || want * 4 > empty.homes * 3 {
            return self.rebuild(want);
        }
        let entries = self.slots.iter().copied().filter(|s| !is_empty(s));
        let mut bigger = IdTable::fill(empty, entries);
        bigger.max_seq = self.max_seq;
        *self = bigger;
    }

    /// The same entries in a table sized for `ids`.
    fn rebuild(&mut self, ids: usize) {
        let entries = self.slots.iter().copied().filter(|s| !is_empty(s));
        let mut bigger = IdTable::placed(ids.max(self.len), entries);
        bigger.max_seq = self.max_seq;
        *self = bigger;
    }

    /// A table sized for `ids` holding `entries`, which come in order.
    fn placed(ids: usize, entries: impl Iterator<Item = Slot>) -> IdTable {
        IdTable::fill(IdTable::with_capacity(ids), entries)
    }

    /// `table` (empty) holding `entries`, which come in order.
    fn fill(mut table: IdTable, entries: impl Iterator<Item = Slot>) -> IdTable {
        let mut next = 0;
        for s in entries {
            // In order, each entry goes at its home or right after the one before.
            let at = table.home(key(&s)).max(next);
            if at == table.slots.len() {
                table.slots.push(EMPTY);
            }
            table.slots[at] = s;
            next = at + 1;
            table.len += 1;
        }
        table
    }

    /// Reads each hash's home slot, so that the misses of a batch of lookups overlap; what
    /// is read is returned only so that the reads are not left out.
    pub(crate) fn touch(&self, hashes: &[i64]) -> u64 {
        if self.slots.is_empty() {
            return 0;
        }
        hashes.iter().fold(0u64, |acc, &h| acc ^ key(&self.slots[self.home(key_of(h))]))
    }

    /// Where `key` is, or where it would go.
    fn position(&self, key: u64) -> (usize, bool) {
        let mut i = self.home(key);
        while let Some(s) = self.slots.get(i)
            && !is_empty(s)
        {
            if self::key(s) >= key {
                return (i, self::key(s) == key);
            }
            i += 1;
        }
        (i, false)
    }

    /// The seq held for `hash`.
    pub(crate) fn get(&self, hash: i64) -> Option<i64> {
        match self.position(key_of(hash)) {
            (i, true) => Some(seq(&self.slots[i])),
            _ => None,
        }
    }

    /// Holds `seq` for `hash` unless some seq is held for it already; says whether it did.
    pub(crate) fn insert_new(&mut self, hash: i64, seq: i64) -> bool {
        debug_assert!(seq > 0, "seqs start at 1");
        if (self.len + 1) * 4 > self.homes * 3 {
            // Twice the home slots.
            self.rebuild((self.homes * 3 / 2).max(16));
        }
        let key = key_of(hash);
        let (at, found) = self.position(key);
        if found {
            return false;
        }
        let free = match self.slots[at..].iter().position(is_empty) {
            Some(f) => at + f,
            // The last run reaches the end: one more slot (hashes alike enough to come here
            // are not spread by more home slots).
            None => {
                self.slots.push(EMPTY);
                self.slots.len() - 1
            }
        };
        self.slots.copy_within(at..free, at + 1);
        self.slots[at] = [key, seq as u64];
        self.len += 1;
        self.max_seq = self.max_seq.max(seq);
        true
    }

    /// Forgets `hash` if `seq` is what is held for it; says whether it did.
    pub(crate) fn remove(&mut self, hash: i64, seq: i64) -> bool {
        let (mut at, found) = self.position(key_of(hash));
        if !found || self::seq(&self.slots[at]) != seq {
            return false;
        }
        // The entries after it that are past their home move back one.
        while let Some(&next) = self.slots.get(at + 1)
            && !is_empty(&next)
            && self.home(key(&next)) <= at
        {
            self.slots[at] = next;
            at += 1;
        }
        self.slots[at] = EMPTY;
        self.len -= 1;
        true
    }

    /// Keeps only the entries whose seq is after `through` (those appended while a run was
    /// written): read once and put in a table their size, the old one let go, rather than
    /// every slot of a large table written again on the writer that appends wait for. When
    /// none is kept, the memory goes back at once (a first import's ids are all written out
    /// when it ends).
    pub(crate) fn retain_after(&mut self, through: i64) {
        if self.max_seq <= through {
            *self = IdTable::default();
            return;
        }
        let kept: Vec<Slot> = self.slots.iter().copied().filter(|s| !is_empty(s) && seq(s) > through).collect();
        let mut table = IdTable::placed(kept.len(), kept.into_iter());
        table.max_seq = self.max_seq;
        *self = table;
    }

    /// The first entry at slot `from` or after: its slot, hash and seq.
    pub(crate) fn occupied_from(&self, from: usize) -> Option<(usize, i64, i64)> {
        let at = from + self.slots.get(from..)?.iter().position(|s| !is_empty(s))?;
        let s = &self.slots[at];
        Some((at, hash_of(key(s)), seq(s)))
    }

    /// `(hash, seq)` in hash order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.slots.iter().filter(|s| !is_empty(s)).map(|s| (hash_of(key(s)), seq(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A reproducible spread of hashes: uniform, with runs of near neighbours and extremes.
    fn hashes(n: usize, seed: u64) -> Vec<i64> {
        let mut x = seed | 1;
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                match i % 50 {
                    0 => i64::MIN + (x % 4) as i64,
                    1 => i64::MAX - (x % 4) as i64,
                    // Neighbours: the same home slot, so long runs.
                    2..=9 => 0x1234_5678_0000_0000 + (x % 64) as i64,
                    _ => x as i64,
                }
            })
            .collect()
    }

    fn check(table: &IdTable, model: &BTreeMap<i64, i64>) {
        let held: Vec<(i64, i64)> = table.iter().collect();
        let expected: Vec<(i64, i64)> = model.iter().map(|(h, s)| (*h, *s)).collect();
        assert_eq!(held, expected, "in hash order, as a sorted map holds them");
        assert_eq!(table.len(), model.len());
        for (&h, &s) in model {
            assert_eq!(table.get(h), Some(s));
        }
    }

    #[test]
    fn agrees_with_a_sorted_map_through_inserts_removals_and_retains() {
        for (start, seed) in [(0usize, 7u64), (4, 99), (100_000, 12_345)] {
            let mut table = IdTable::with_capacity(start);
            let mut model = BTreeMap::new();
            let all = hashes(20_000, seed);
            for (i, &h) in all.iter().enumerate() {
                let seq = i as i64 + 1;
                let new = !model.contains_key(&h);
                assert_eq!(table.insert_new(h, seq), new, "hash {h:x}");
                if new {
                    model.insert(h, seq);
                }
                if i % 7 == 3
                    && let Some(&held) = model.get(&all[i / 2])
                {
                    // A removal of the wrong seq changes nothing.
                    let victim = all[i / 2];
                    assert!(!table.remove(victim, held + 1_000_000));
                    assert!(table.remove(victim, held));
                    model.remove(&victim);
                    assert_eq!(table.get(victim), None);
                }
                if i % 5_000 == 4_999 {
                    check(&table, &model);
                }
            }
            check(&table, &model);
            let cut = 12_000;
            table.retain_after(cut);
            model.retain(|_, seq| *seq > cut);
            check(&table, &model);
            for (i, &h) in hashes(5_000, seed + 1).iter().enumerate() {
                let seq = 100_000 + i as i64;
                if table.insert_new(h, seq) {
                    assert!(model.insert(h, seq).is_none());
                }
            }
            check(&table, &model);
            table.retain_after(i64::MAX - 1);
            assert!(table.is_empty());
            assert_eq!(table.iter().count(), 0);
            assert!(table.insert_new(all[0], 7), "a cleared table takes ids again");
            assert_eq!(table.get(all[0]), Some(7));
        }
    }

    #[test]
    fn a_crowd_at_the_end_lengthens_the_table_instead_of_wrapping() {
        let mut table = IdTable::with_capacity(16);
        let mut model = BTreeMap::new();
        for i in 0..(3 * SLACK as i64) {
            let h = i64::MAX - 3 * i;
            assert!(table.insert_new(h, i + 1));
            model.insert(h, i + 1);
        }
        check(&table, &model);
        // Room made too small for what it is to hold: the table is rebuilt instead.
        table.reserve_in(10_000, IdTable::touched(100));
        check(&table, &model);
        assert!(table.homes * 3 >= (model.len() + 10_000) * 4);
        // Room large enough: the entries move into it.
        let room = IdTable::touched(100_000);
        let homes = room.homes;
        table.reserve_in(50_000, room);
        check(&table, &model);
        assert_eq!(table.homes, homes);
        for i in 0..1_000 {
            let h = i64::MIN + 7 * i;
            assert!(table.insert_new(h, 10_000 + i));
            model.insert(h, 10_000 + i);
        }
        check(&table, &model);
        // Room enough already: nothing changes.
        table.reserve_in(10, IdTable::touched(1));
        assert_eq!(table.homes, homes);
        check(&table, &model);
    }

    #[test]
    fn grows_by_doubling_and_shrinks_to_what_it_keeps() {
        let mut table = IdTable::default();
        for (i, h) in hashes(100_000, 5).into_iter().enumerate() {
            table.insert_new(h, i as i64 + 1);
            // Never more than twice the home slots three quarters of them need.
            assert!(table.homes <= 2 * (table.len() * 4).div_ceil(3).next_power_of_two().max(32), "{}", table.homes);
        }
        table.retain_after(99_000);
        assert!(table.len() <= 1_000 && table.homes <= 2048, "{} ids in {} home slots", table.len(), table.homes);
    }

    #[test]
    fn touching_reads_without_changing() {
        let mut table = IdTable::default();
        assert_eq!(table.touch(&[1, 2, 3]), 0, "an empty table has nothing to read");
        assert!(table.insert_new(5, 1));
        let _ = table.touch(&hashes(1_000, 3));
        assert_eq!(table.iter().collect::<Vec<_>>(), [(5, 1)]);
    }
}
