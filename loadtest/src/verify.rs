//! Bulk data checked at the far end: each session sends a deterministic pseudo-random stream
//! into a remote command that digests it (`cksum`, or `wc -c`), and the digest it prints is
//! compared with the one computed here. A bridge that drops, duplicates or mangles bytes shows
//! up as `corrupt`, not as a fine-looking MiB/s.
//!
//! `cksum` (POSIX CRC-32) rather than a cryptographic hash: coreutils computes it with
//! carry-less multiply at a fraction of `sha256sum`'s cost, which on a shared machine would
//! otherwise be the bottleneck being measured. Here it costs nothing per byte: the stream is
//! made of chunks of one pseudo-random pool whose CRCs are known, and CRC is linear, so the
//! running CRC advances by one 32x32 bit matrix product per chunk.

use std::sync::LazyLock;

use bytes::Bytes;

/// How the far end checks what it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verify {
    /// `cksum`: CRC and length.
    Cksum,
    /// `wc -c`: length only.
    Count,
    /// `cat > /dev/null`: nothing checked.
    None,
}

impl Verify {
    /// The remote command that does the check.
    pub fn command(self) -> &'static str {
        match self {
            Verify::Cksum => "cksum",
            Verify::Count => "wc -c",
            Verify::None => "cat > /dev/null",
        }
    }
}

/// Bytes per chunk sent.
pub const CHUNK: usize = 32 * 1024;
/// Chunks in the pool the streams draw from.
const POOL_CHUNKS: usize = 32;

const POLY: u32 = 0x04C1_1DB7;

/// Slicing-by-8 tables of the MSB-first CRC-32 `cksum` uses: `T[k][b]` is the CRC register
/// contribution of byte `b` followed by `k` zero bytes.
static TABLES: LazyLock<[[u32; 256]; 8]> = LazyLock::new(|| {
    let mut t = [[0u32; 256]; 8];
    for (b, entry) in t[0].iter_mut().enumerate() {
        let mut crc = (b as u32) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ POLY
            } else {
                crc << 1
            };
        }
        *entry = crc;
    }
    for k in 1..8 {
        for b in 0..256 {
            let prev = t[k - 1][b];
            t[k][b] = (prev << 8) ^ t[0][(prev >> 24) as usize];
        }
    }
    t
});

fn update_byte(crc: u32, b: u8) -> u32 {
    (crc << 8) ^ TABLES[0][((crc >> 24) ^ u32::from(b)) as usize]
}

/// Advances the raw CRC register (no initial value, no final complement) over `data`.
pub fn crc_update(mut crc: u32, data: &[u8]) -> u32 {
    let t = &*TABLES;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let hi = crc ^ u32::from_be_bytes([w[0], w[1], w[2], w[3]]);
        let lo = u32::from_be_bytes([w[4], w[5], w[6], w[7]]);
        crc = t[7][(hi >> 24) as usize]
            ^ t[6][((hi >> 16) & 0xff) as usize]
            ^ t[5][((hi >> 8) & 0xff) as usize]
            ^ t[4][(hi & 0xff) as usize]
            ^ t[3][(lo >> 24) as usize]
            ^ t[2][((lo >> 16) & 0xff) as usize]
            ^ t[1][((lo >> 8) & 0xff) as usize]
            ^ t[0][(lo & 0xff) as usize];
    }
    words
        .remainder()
        .iter()
        .fold(crc, |c, b| update_byte(c, *b))
}

/// What `cksum` prints for data whose raw CRC register is `crc` and length `len`: the
/// length's bytes (least significant first) are fed in, then the register is complemented.
pub fn cksum_line(mut crc: u32, len: u64) -> String {
    let mut n = len;
    while n != 0 {
        crc = update_byte(crc, n as u8);
        n >>= 8;
    }
    format!("{} {len}", !crc)
}

/// The pool, each chunk's CRC, and the "append one chunk" map of the register.
struct Pool {
    data: Bytes,
    chunk_crc: [u32; POOL_CHUNKS],
    /// `shift[j]`: the register `1 << j` after CHUNK zero bytes; linear, so any register
    /// advances by XOR-ing the columns of its set bits.
    shift: [u32; 32],
}

static POOL: LazyLock<Pool> = LazyLock::new(|| {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut data = Vec::with_capacity(CHUNK * POOL_CHUNKS);
    while data.len() < CHUNK * POOL_CHUNKS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    let mut chunk_crc = [0u32; POOL_CHUNKS];
    for (i, c) in data.chunks_exact(CHUNK).enumerate() {
        chunk_crc[i] = crc_update(0, c);
    }
    let zeros = vec![0u8; CHUNK];
    let mut shift = [0u32; 32];
    for (j, s) in shift.iter_mut().enumerate() {
        *s = crc_update(1 << j, &zeros);
    }
    Pool {
        data: Bytes::from(data),
        chunk_crc,
        shift,
    }
});

/// One session's stream: which pool chunk comes next, and the digest of what was sent.
pub struct Stream {
    x: u64,
    crc: u32,
    len: u64,
}

impl Stream {
    /// A stream whose chunk order is decided by `seed` (each session its own).
    pub fn new(seed: u64) -> Stream {
        Stream {
            x: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            crc: 0,
            len: 0,
        }
    }

    /// The next chunk to send, counted as sent (send it whole, or the digests disagree).
    pub fn next_chunk(&mut self) -> Bytes {
        self.x ^= self.x << 13;
        self.x ^= self.x >> 7;
        self.x ^= self.x << 17;
        let i = (self.x % POOL_CHUNKS as u64) as usize;
        let pool = &*POOL;
        let shifted = (0..32)
            .filter(|j| self.crc & (1 << j) != 0)
            .fold(0, |acc, j| acc ^ pool.shift[j]);
        self.crc = shifted ^ pool.chunk_crc[i];
        self.len += CHUNK as u64;
        pool.data.slice(i * CHUNK..(i + 1) * CHUNK)
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Compares what the far end printed with what was sent; `Err` says both.
    pub fn check(&self, verify: Verify, output: &[u8]) -> Result<(), String> {
        let got = String::from_utf8_lossy(output);
        let got = got.trim();
        let expected = match verify {
            Verify::None => return Ok(()),
            Verify::Cksum => cksum_line(self.crc, self.len),
            Verify::Count => self.len.to_string(),
        };
        if got == expected {
            Ok(())
        } else {
            Err(format!("sent \"{expected}\", the far end read \"{got}\""))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cksum_of(data: &[u8]) -> String {
        cksum_line(crc_update(0, data), data.len() as u64)
    }

    /// Values printed by GNU coreutils `cksum`.
    #[test]
    fn matches_posix_cksum() {
        assert_eq!(cksum_of(b"123456789"), "930766865 9");
        assert_eq!(cksum_of(b""), "4294967295 0");
        assert_eq!(cksum_of(&[b'a'; 70000]), "3508083167 70000");
    }

    #[test]
    fn slicing_agrees_with_bytewise() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 3) as u8).collect();
        let bytewise = data.iter().fold(0u32, |c, b| update_byte(c, *b));
        assert_eq!(crc_update(0, &data), bytewise);
    }

    #[test]
    fn a_stream_digest_is_that_of_its_bytes() {
        let mut s = Stream::new(3);
        let mut sent = Vec::new();
        for _ in 0..5 {
            sent.extend_from_slice(&s.next_chunk());
        }
        assert_eq!(s.len(), sent.len() as u64);
        let line = cksum_of(&sent);
        assert_eq!(
            s.check(Verify::Cksum, format!("{line}\n").as_bytes()),
            Ok(())
        );
        assert_eq!(s.check(Verify::Count, b"163840\n"), Ok(()));
        sent[1000] ^= 1;
        let bad = cksum_of(&sent);
        assert!(s.check(Verify::Cksum, bad.as_bytes()).is_err());
        assert!(s.check(Verify::Count, b"163839").is_err());
        // Sessions send different streams.
        let mut other = Stream::new(4);
        let first: Vec<Bytes> = (0..5).map(|_| other.next_chunk()).collect();
        assert_ne!(first.concat(), sent);
    }
}
