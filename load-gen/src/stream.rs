//! The deterministic byte stream each connection sends, so every echoed byte can be checked without
//! keeping a copy: byte i of connection c is a pure function of (c, i).

/// splitmix64: a fast, well-mixed 64-bit hash of a counter.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The stream of one connection.
#[derive(Clone, Copy, Debug)]
pub struct ByteStream {
    seed: u64,
}

impl ByteStream {
    pub fn new(connection: u64) -> ByteStream {
        ByteStream {
            seed: mix(connection ^ 0x706f_6c6c_6265_6e63),
        }
    }

    /// Fill `out` with the stream's bytes starting at `offset`.
    pub fn fill(&self, offset: u64, out: &mut [u8]) {
        let mut pos = offset;
        let mut i = 0;
        while i < out.len() {
            let word = mix(self.seed ^ (pos / 8)).to_le_bytes();
            let start = (pos % 8) as usize;
            let n = (8 - start).min(out.len() - i);
            out[i..i + n].copy_from_slice(&word[start..start + n]);
            i += n;
            pos += n as u64;
        }
    }

    /// Does `data` equal the stream at `offset`? Returns the index of the first wrong byte.
    pub fn check(&self, offset: u64, data: &[u8]) -> Result<(), usize> {
        let mut expected = [0u8; 512];
        for (k, chunk) in data.chunks(expected.len()).enumerate() {
            let exp = &mut expected[..chunk.len()];
            self.fill(offset + (k * 512) as u64, exp);
            if let Some(j) = chunk.iter().zip(exp.iter()).position(|(a, b)| a != b) {
                return Err(k * 512 + j);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_split_of_the_stream_is_the_same_stream() {
        let s = ByteStream::new(7);
        let mut whole = vec![0u8; 1000];
        s.fill(0, &mut whole);
        let mut parts = vec![0u8; 1000];
        let mut off = 0;
        for len in [1, 3, 8, 13, 64, 200, 711] {
            s.fill(off as u64, &mut parts[off..off + len]);
            off += len;
        }
        assert_eq!(whole, parts);
        assert_eq!(s.check(5, &whole[5..900]), Ok(()));
        let mut bad = whole[100..400].to_vec();
        bad[37] ^= 1;
        assert_eq!(s.check(100, &bad), Err(37));
        assert_ne!(whole[..64], {
            let mut other = [0u8; 64];
            ByteStream::new(8).fill(0, &mut other);
            other
        });
    }
}
