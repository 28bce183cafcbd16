//! Content-defined chunking, push-based (bytes arrive in blocks, chunks come out).
//!
//! Same cut points as rustic_core 0.13's Rabin chunker (restic's polynomial, 64-byte window,
//! min/avg/max chunk sizes from the repository config), so streams backed up before this
//! pipeline existed deduplicate against new backups. Operates on slices: no `Read` adaptor,
//! no per-byte `Vec::push`.

use rustic_cdc::{Polynom, Rabin64};

const WINDOW: usize = 64;

/// The chunking rule of a repository.
#[derive(Clone, Debug)]
pub(crate) enum ChunkRule {
    /// Rabin content-defined chunking (restic's default).
    Rabin {
        /// Irreducible polynomial from the repository config.
        poly: u64,
        /// Average chunk size (power of two).
        avg: usize,
        /// Minimum chunk size.
        min: usize,
        /// Maximum chunk size.
        max: usize,
    },
    /// Fixed-size chunks.
    Fixed(usize),
}

/// A push-based chunker.
pub(crate) struct Chunker {
    rule: ChunkRule,
    out_table: Box<[u64; 256]>,
    mod_table: Box<[u64; 256]>,
    shift: u32,
    mask: u64,
    window: [u8; WINDOW],
    widx: usize,
    hash: u64,
    cur: Vec<u8>,
}

impl Chunker {
    /// A chunker for `rule`.
    pub(crate) fn new(rule: ChunkRule) -> Self {
        let (out_table, mod_table, shift, mask) = match &rule {
            ChunkRule::Rabin { poly, avg, .. } => (
                Rabin64::calculate_out_table(WINDOW, poly),
                Rabin64::calculate_mod_table(poly),
                (poly.degree() - 8) as u32,
                *avg as u64 - 1,
            ),
            ChunkRule::Fixed(_) => ([0; 256], [0; 256], 0, 0),
        };
        Chunker {
            rule,
            out_table: Box::new(out_table),
            mod_table: Box::new(mod_table),
            shift,
            mask,
            window: [0; WINDOW],
            widx: 0,
            hash: 0,
            cur: Vec::new(),
        }
    }

    fn bounds(&self) -> (usize, usize) {
        match self.rule {
            ChunkRule::Rabin { min, max, .. } => (min, max),
            ChunkRule::Fixed(n) => (n, n),
        }
    }

    /// Hash state after the first `min` bytes of a chunk: the 63 bytes before the last one
    /// (rustic_core's `reset_and_prefill_window` over the last 64 bytes).
    fn prefill(&mut self) {
        let n = self.cur.len();
        self.hash = 0;
        self.window = [0; WINDOW];
        for (i, &b) in self.cur[n - WINDOW..n - 1].iter().enumerate() {
            self.window[i] = b;
            let m = (self.hash >> self.shift) & 255;
            self.hash = (self.hash << 8) | u64::from(b);
            self.hash ^= self.mod_table[m as usize];
        }
        self.widx = WINDOW - 1;
    }

    /// Feeds bytes; calls `emit` with every completed chunk.
    pub(crate) fn feed(&mut self, mut data: &[u8], emit: &mut impl FnMut(Vec<u8>)) {
        let (min, max) = self.bounds();
        let rabin = matches!(self.rule, ChunkRule::Rabin { .. });
        while !data.is_empty() {
            if self.cur.capacity() == 0 {
                self.cur.reserve(min.max(1 << 20));
            }
            if self.cur.len() < min {
                let take = (min - self.cur.len()).min(data.len());
                self.cur.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.cur.len() == min {
                    if !rabin || min >= max {
                        emit(std::mem::take(&mut self.cur));
                        continue;
                    }
                    self.prefill();
                    if self.hash & self.mask == 0 {
                        emit(std::mem::take(&mut self.cur));
                    }
                }
                continue;
            }
            let room = max - self.cur.len();
            let limit = room.min(data.len());
            let (mut i, mut cut) = (0, false);
            let (mut hash, mut widx) = (self.hash, self.widx);
            let (out_t, mod_t, shift, mask) =
                (&*self.out_table, &*self.mod_table, self.shift, self.mask);
            let window = &mut self.window;
            while i < limit {
                let b = data[i];
                i += 1;
                hash ^= out_t[window[widx] as usize];
                window[widx] = b;
                let m = (hash >> shift) & 255;
                hash = ((hash << 8) | u64::from(b)) ^ mod_t[m as usize];
                widx = (widx + 1) & (WINDOW - 1);
                if hash & mask == 0 {
                    cut = true;
                    break;
                }
            }
            self.hash = hash;
            self.widx = widx;
            self.cur.extend_from_slice(&data[..i]);
            data = &data[i..];
            if cut || self.cur.len() >= max {
                emit(std::mem::take(&mut self.cur));
            }
        }
    }

    /// Ends the stream: emits the last (short) chunk, if any.
    pub(crate) fn finish(&mut self, emit: &mut impl FnMut(Vec<u8>)) {
        if !self.cur.is_empty() {
            emit(std::mem::take(&mut self.cur));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        let mut x: u64 = 7;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn rule() -> ChunkRule {
        // restic's defaults with a real restic polynomial.
        ChunkRule::Rabin {
            poly: 0x3DA3358B4DC173,
            avg: 1 << 20,
            min: 512 << 10,
            max: 8 << 20,
        }
    }

    fn chunks(input: &[u8], block: usize) -> Vec<Vec<u8>> {
        let mut c = Chunker::new(rule());
        let mut out = vec![];
        for b in input.chunks(block) {
            c.feed(b, &mut |v| out.push(v));
        }
        c.finish(&mut |v| out.push(v));
        out
    }

    #[test]
    fn cut_points_do_not_depend_on_block_sizes_and_respect_bounds() {
        let input = data(12 << 20);
        let a = chunks(&input, 1 << 20);
        let b = chunks(&input, 4099);
        assert_eq!(a, b);
        assert_eq!(a.concat(), input);
        assert!(a.len() > 3, "{} chunks", a.len());
        for c in &a[..a.len() - 1] {
            assert!(c.len() >= 512 << 10 && c.len() <= 8 << 20, "{}", c.len());
        }
    }

    #[test]
    fn content_defined_cuts_resynchronise_after_an_insert() {
        let input = data(10 << 20);
        let mut shifted = b"inserted bytes".to_vec();
        shifted.extend_from_slice(&input);
        let a = chunks(&input, 65536);
        let b = chunks(&shifted, 65536);
        let common = a.iter().filter(|c| b.contains(c)).count();
        assert!(
            common + 2 >= a.len(),
            "{common} of {} chunks shared",
            a.len()
        );
    }

    #[test]
    fn short_and_fixed_streams() {
        assert!(chunks(&[], 10).is_empty());
        assert_eq!(chunks(b"abc", 1), vec![b"abc".to_vec()]);
        let mut c = Chunker::new(ChunkRule::Fixed(4));
        let mut out = vec![];
        c.feed(b"abcdefghij", &mut |v| out.push(v));
        c.finish(&mut |v| out.push(v));
        assert_eq!(
            out,
            vec![b"abcd".to_vec(), b"efgh".to_vec(), b"ij".to_vec()]
        );
    }
}
