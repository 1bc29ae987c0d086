//! Where a record goes: Java-compatible murmur2 for keyed records, sticky partitions for
//! unkeyed ones (KIP-480/794: stay on one partition until a batch's worth of bytes went there).

use rand::Rng;

/// Kafka's `Utils.murmur2`: 32-bit MurmurHash2 with seed `0x9747b28c`, as the Java client
/// computes it (little-endian 4-byte blocks, signed result).
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java client's default partitioner picks for `key`:
/// `toPositive(murmur2(key)) % partitions`.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) as i64 % partitions.max(1) as i64) as i32
}

/// The sticky partition of one topic and how many bytes went to it since it was picked.
#[derive(Debug, Default)]
pub(crate) struct Sticky {
    current: Option<i32>,
    bytes: usize,
}

impl Sticky {
    /// The partition for the next unkeyed record of `size` bytes: the current one until
    /// `batch_size` bytes went there, then another one at random.
    pub(crate) fn next(&mut self, partitions: i32, batch_size: usize, size: usize) -> i32 {
        let partitions = partitions.max(1);
        let current = match self.current {
            Some(p) if p < partitions && self.bytes < batch_size => p,
            prev => {
                let mut rng = rand::rng();
                let mut p = rng.random_range(0..partitions);
                if partitions > 1 && Some(p) == prev {
                    p = (p + 1 + rng.random_range(0..partitions - 1)) % partitions;
                }
                self.bytes = 0;
                p
            }
        };
        self.current = Some(current);
        self.bytes += size;
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Apache Kafka's `UtilsTest.testMurmur2`.
    #[test]
    fn murmur2_matches_kafka_vectors() {
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (input, want) in cases {
            assert_eq!(murmur2(input), *want, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn keyed_partition_is_to_positive_modulo() {
        // toPositive(-790332482) = 1357151166; 1357151166 % 50 = 16.
        assert_eq!(partition_for_key(b"foobar", 50), 16);
        for p in 1..64 {
            let got = partition_for_key(b"a-little-bit-long-string", p);
            assert!((0..p).contains(&got));
        }
    }

    #[test]
    fn sticky_stays_until_a_batch_is_full_then_moves() {
        let mut s = Sticky::default();
        let first = s.next(6, 1000, 400);
        assert_eq!(s.next(6, 1000, 400), first);
        assert_eq!(s.next(6, 1000, 400), first); // 1200 bytes now: the next record moves
        let second = s.next(6, 1000, 400);
        assert_ne!(second, first);
        let mut one = Sticky::default();
        for _ in 0..10 {
            assert_eq!(one.next(1, 10, 100), 0);
        }
    }
}
