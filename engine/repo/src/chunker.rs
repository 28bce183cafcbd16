//! Content-defined chunking, push-based (bytes arrive in blocks, chunks come out).
//!
//! Same cut points as rustic_core 0.13's Rabin chunker (restic's polynomial, 64-byte window,
//! min/avg/max chunk sizes from the repository config), so new backups deduplicate against
//! what restic, rustic and earlier kstash versions stored (tested against `rustic_cdc`, and
//! against restic in the interop tests).
//!
//! Why it is fast: the Rabin fingerprint of a window is exact (fully reduced modulo the
//! polynomial), so the rolling hash at a position depends only on the 64 bytes ending there,
//! not on where hashing started. A scan therefore splits its range into [`LANES`] independent
//! lanes, each primed with the 64 bytes before it, and rolls them in lockstep: the serial
//! rolling hash is one table lookup chain per byte (~9 cycles of latency), four lanes hide
//! that latency. The first cut is the earliest hit of the earliest lane. The first 63
//! positions after the minimum size are rolled serially, because rustic_core primes its
//! window there with 63 bytes that skip the chunk's last minimum byte (a quirk its cut points
//! depend on).

use std::sync::Arc;

use rustic_cdc::{Polynom, Rabin64};

use crate::bufpool::BufPool;

/// Bytes in the rolling window.
const WINDOW: usize = 64;
/// Bytes appended to the current chunk and scanned at a time: bounds the bytes copied past
/// a cut (they are copied again into the next chunk).
const STEP: usize = 64 << 10;
/// Independent hash lanes rolled in lockstep.
const LANES: usize = 4;
/// Ranges shorter than this are scanned on one lane.
const LANE_MIN: usize = 1024;

/// The chunking rule of a repository.
#[derive(Clone, Debug)]
pub(crate) enum ChunkRule {
    /// Rabin content-defined chunking (restic's default).
    Rabin {
        /// Irreducible polynomial from the repository config.
        poly: u64,
        /// Average chunk size (power of two).
        avg: usize,
        /// Minimum chunk size (at least the window, 64).
        min: usize,
        /// Maximum chunk size.
        max: usize,
    },
    /// Fixed-size chunks.
    Fixed(usize),
}

/// The rolling-hash tables of one polynomial and the cut mask.
struct Rabin {
    out: [u64; 256],
    modt: [u64; 256],
    shift: u32,
    mask: u64,
}

impl Rabin {
    fn new(poly: u64, avg: usize) -> Self {
        Rabin {
            out: Rabin64::calculate_out_table(WINDOW, &poly),
            modt: Rabin64::calculate_mod_table(&poly),
            shift: (poly.degree() - 8) as u32,
            mask: avg as u64 - 1,
        }
    }

    /// Appends byte `b` to the fingerprint `h` (`shift` is `self.shift`, passed so that the
    /// common degree-53 case compiles to an immediate shift).
    #[inline(always)]
    fn append(&self, shift: u32, h: u64, b: u8) -> u64 {
        ((h << 8) | u64::from(b)) ^ self.modt[((h >> shift) & 255) as usize]
    }

    /// Rolls the window: byte `out` leaves, byte `b` enters.
    #[inline(always)]
    fn roll(&self, shift: u32, h: u64, out: u8, b: u8) -> u64 {
        self.append(shift, h ^ self.out[usize::from(out)], b)
    }

    fn fingerprint(&self, bytes: &[u8]) -> u64 {
        bytes.iter().fold(0, |h, &b| self.append(self.shift, h, b))
    }

    /// Whether a chunk of exactly `min` bytes ends with a cut (rustic_core's check right after
    /// priming the window with 63 of the last 64 bytes).
    fn cut_at_min(&self, chunk: &[u8], min: usize) -> bool {
        self.fingerprint(&chunk[min - WINDOW..min - 1]) & self.mask == 0
    }

    /// The first position `p` in `from..to` whose hash (after rolling in `chunk[p]`) is a cut;
    /// `chunk[..to]` is the current chunk, `min <= from`.
    fn find(&self, chunk: &[u8], min: usize, from: usize, to: usize) -> Option<usize> {
        let pure = min + WINDOW - 1;
        let mut p = from;
        if p < pure {
            // rustic_core's primed window: the 63 bytes before the last minimum byte, then a
            // zero; rolled serially until it holds only bytes after the minimum.
            let shift = self.shift;
            let mut h = self.fingerprint(&chunk[min - WINDOW..min - 1]);
            let end = pure.min(to);
            for q in min..end {
                let out = if q == min { 0 } else { chunk[q - WINDOW - 1] };
                h = self.roll(shift, h, out, chunk[q]);
                if q >= from && h & self.mask == 0 {
                    return Some(q);
                }
            }
            p = end;
        }
        if p >= to {
            return None;
        }
        if self.shift == 45 {
            self.scan(45, chunk, p, to)
        } else {
            self.scan(self.shift, chunk, p, to)
        }
    }

    /// The first cut in `from..to` by the window of the 64 bytes ending at each position
    /// (`from >= 64`).
    #[inline(always)]
    fn scan(&self, shift: u32, buf: &[u8], from: usize, to: usize) -> Option<usize> {
        let n = to - from;
        if n < LANE_MIN {
            return self.scan_one(shift, buf, from, to);
        }
        let len = n / LANES;
        let mask = self.mask;
        // Lane k covers from + k*len .. from + (k+1)*len; its window starts 64 bytes before.
        let lane = |k: usize| {
            let s = from + k * len;
            let h = self.fingerprint(&buf[s - WINDOW..s]);
            (h, &buf[s - WINDOW..s - WINDOW + len], &buf[s..s + len])
        };
        let (mut h0, o0, i0) = lane(0);
        let (mut h1, o1, i1) = lane(1);
        let (mut h2, o2, i2) = lane(2);
        let (mut h3, o3, i3) = lane(3);
        let mut hit = [usize::MAX; LANES];
        for j in 0..len {
            h0 = self.roll(shift, h0, o0[j], i0[j]);
            h1 = self.roll(shift, h1, o1[j], i1[j]);
            h2 = self.roll(shift, h2, o2[j], i2[j]);
            h3 = self.roll(shift, h3, o3[j], i3[j]);
            if (h0 & mask == 0) | (h1 & mask == 0) | (h2 & mask == 0) | (h3 & mask == 0) {
                for (k, h) in [h0, h1, h2, h3].into_iter().enumerate() {
                    if h & mask == 0 && hit[k] == usize::MAX {
                        hit[k] = from + k * len + j;
                    }
                }
                if hit[0] != usize::MAX {
                    return Some(hit[0]);
                }
            }
        }
        if let Some(&p) = hit.iter().find(|&&p| p != usize::MAX) {
            return Some(p);
        }
        self.scan_one(shift, buf, from + LANES * len, to)
    }

    fn scan_one(&self, shift: u32, buf: &[u8], from: usize, to: usize) -> Option<usize> {
        if from >= to {
            return None;
        }
        let mut h = self.fingerprint(&buf[from - WINDOW..from]);
        for p in from..to {
            h = self.roll(shift, h, buf[p - WINDOW], buf[p]);
            if h & self.mask == 0 {
                return Some(p);
            }
        }
        None
    }
}

/// A push-based chunker.
pub(crate) struct Chunker {
    rabin: Option<Box<Rabin>>,
    min: usize,
    max: usize,
    /// The chunk being cut. Invariant: no cut at any length `<= cur.len()` (lengths below
    /// `min` are never cuts).
    cur: Vec<u8>,
    pool: Arc<BufPool>,
}

impl Chunker {
    /// A chunker for `rule`, taking chunk buffers from `pool`.
    pub(crate) fn new(rule: ChunkRule, pool: Arc<BufPool>) -> Self {
        let (rabin, min, max) = match rule {
            ChunkRule::Rabin {
                poly,
                avg,
                min,
                max,
            } => {
                assert!(min >= WINDOW && max >= min, "checked by the caller");
                (Some(Box::new(Rabin::new(poly, avg))), min, max)
            }
            ChunkRule::Fixed(n) => (None, n.max(1), n.max(1)),
        };
        Chunker {
            rabin,
            min,
            max,
            cur: Vec::new(),
            pool,
        }
    }

    /// Feeds bytes; calls `emit` with every completed chunk.
    pub(crate) fn feed(&mut self, mut data: &[u8], emit: &mut impl FnMut(Vec<u8>)) {
        let (min, max) = (self.min, self.max);
        while !data.is_empty() {
            if self.cur.capacity() == 0 {
                self.cur = self.pool.take();
            }
            let len = self.cur.len();
            if len < min {
                let take = (min - len).min(data.len());
                self.cur.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.cur.len() == min {
                    let cut = match &self.rabin {
                        None => true,
                        Some(r) => min >= max || r.cut_at_min(&self.cur, min),
                    };
                    if cut {
                        emit(std::mem::take(&mut self.cur));
                    }
                }
                continue;
            }
            let rabin = self.rabin.as_ref().expect("fixed chunks end at min");
            let take = STEP.min(max - len).min(data.len());
            self.cur.extend_from_slice(&data[..take]);
            match rabin.find(&self.cur, min, len, len + take) {
                Some(p) => {
                    self.cur.truncate(p + 1);
                    data = &data[p + 1 - len..];
                    emit(std::mem::take(&mut self.cur));
                }
                None => {
                    data = &data[take..];
                    if self.cur.len() >= max {
                        emit(std::mem::take(&mut self.cur));
                    }
                }
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
    use rustic_cdc::RollingHash64;

    fn data(n: usize, seed: u64) -> Vec<u8> {
        let mut x: u64 = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    const POLY: u64 = 0x3DA3358B4DC173;

    fn rule() -> ChunkRule {
        // restic's defaults with a real restic polynomial.
        ChunkRule::Rabin {
            poly: POLY,
            avg: 1 << 20,
            min: 512 << 10,
            max: 8 << 20,
        }
    }

    fn pool() -> Arc<BufPool> {
        BufPool::new(4, 1 << 20, 16 << 20)
    }

    fn chunks_with(rule: ChunkRule, input: &[u8], block: usize) -> Vec<Vec<u8>> {
        let mut c = Chunker::new(rule, pool());
        let mut out = vec![];
        for b in input.chunks(block) {
            c.feed(b, &mut |v| out.push(v));
        }
        c.finish(&mut |v| out.push(v));
        out
    }

    fn chunks(input: &[u8], block: usize) -> Vec<Vec<u8>> {
        chunks_with(rule(), input, block)
    }

    /// rustic_core 0.13's `ChunkIter::next` (chunker/rabin.rs) over a slice, on rustic_cdc's
    /// own rolling hash: the reference the cut points must match.
    fn rustic_lengths(input: &[u8], poly: u64, avg: usize, min: usize, max: usize) -> Vec<usize> {
        let mut rabin = Rabin64::new_with_polynom(6, &poly);
        let (mut out, mut pos) = (vec![], 0);
        while pos < input.len() {
            if input.len() - pos < min {
                out.push(input.len() - pos);
                break;
            }
            let mut len = min;
            let _ = rabin
                .reset_and_prefill_window(&mut input[pos + min - 64..pos + min].iter().copied());
            loop {
                if len >= max || rabin.hash & (avg as u64 - 1) == 0 || pos + len == input.len() {
                    break;
                }
                rabin.slide(input[pos + len]);
                len += 1;
            }
            out.push(len);
            pos += len;
        }
        out
    }

    #[test]
    fn cut_points_equal_rustic_cores_for_many_cuts_and_block_sizes() {
        // Small chunk sizes for many cuts; data mixing random bytes and long runs (which
        // cut at the minimum or run to the maximum).
        let mut input = data(3 << 20, 3);
        input[100_000..160_000].fill(0);
        input[1_000_000..1_300_000].fill(b'x');
        for (avg, min, max) in [
            (4096, 1024, 16 << 10),
            (8192, 64, 65536),
            (1024, 1024, 1024),
            (2048, 200, 5000),
        ] {
            let want = rustic_lengths(&input, POLY, avg, min, max);
            for block in [1 << 20, 65536, 4099, 100, 1] {
                if block == 1 && avg != 2048 {
                    continue; // byte-wise feeding is slow; one configuration is enough
                }
                let r = ChunkRule::Rabin {
                    poly: POLY,
                    avg,
                    min,
                    max,
                };
                let got: Vec<usize> = chunks_with(r, &input, block).iter().map(Vec::len).collect();
                assert_eq!(got, want, "avg {avg} min {min} max {max} block {block}");
            }
            assert!(want.len() > 100, "{} chunks", want.len());
        }
    }

    #[test]
    fn cut_points_equal_rustic_cores_with_restic_sizes_and_another_polynomial() {
        let input = data(24 << 20, 11);
        for poly in [POLY, 0xC_5F2D_6E8C_4AD5] {
            let want = rustic_lengths(&input, poly, 1 << 20, 512 << 10, 8 << 20);
            let r = ChunkRule::Rabin {
                poly,
                avg: 1 << 20,
                min: 512 << 10,
                max: 8 << 20,
            };
            let got: Vec<usize> = chunks_with(r, &input, 1 << 20)
                .iter()
                .map(Vec::len)
                .collect();
            assert_eq!(got, want, "poly {poly:x}");
            assert!(want.len() > 8);
        }
    }

    #[test]
    fn cut_points_do_not_depend_on_block_sizes_and_respect_bounds() {
        let input = data(12 << 20, 7);
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
        let input = data(10 << 20, 7);
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
        let mut c = Chunker::new(ChunkRule::Fixed(4), pool());
        let mut out = vec![];
        c.feed(b"abcdefghij", &mut |v| out.push(v));
        c.finish(&mut |v| out.push(v));
        assert_eq!(
            out,
            vec![b"abcd".to_vec(), b"efgh".to_vec(), b"ij".to_vec()]
        );
    }
}
