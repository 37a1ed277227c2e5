//! Deterministic data for tests and benchmarks, in one place for unit tests, integration tests
//! and `benches/` alike.

/// `n` bytes of the SplitMix64 stream started at `seed`: incompressible, reproducible and cheap.
/// With seed 0 this is the spec's test vector 2 (xet-protocol.md), as in xet-core's tests.
pub fn splitmix(n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// Bytes per block of [`SyntheticSafetensors`] data (each block its own SplitMix64 stream, so
/// any range can be made without making what comes before it).
const BLOCK: u64 = 1 << 20;

/// A model-sized safetensors file made on the fly: a real header (8-byte length, JSON naming
/// `tensors` fp16 tensors of `tensor_bytes` each) followed by random tensor data. Any byte range
/// can be produced in isolation, so tests and benches check reads of a multi-GB file against it
/// without holding it in memory.
#[derive(Debug, Clone)]
pub struct SyntheticSafetensors {
    header: Vec<u8>,
    tensors: u64,
    tensor_bytes: u64,
    seed: u64,
}

impl SyntheticSafetensors {
    /// `tensors` tensors of `tensor_bytes` bytes (even) each, data from `seed`.
    pub fn new(tensors: u64, tensor_bytes: u64, seed: u64) -> Self {
        let entries: Vec<String> = (0..tensors)
            .map(|i| {
                let (a, b) = (i * tensor_bytes, (i + 1) * tensor_bytes);
                format!(
                    "\"t{i}\":{{\"dtype\":\"F16\",\"shape\":[{}],\"data_offsets\":[{a},{b}]}}",
                    tensor_bytes / 2
                )
            })
            .collect();
        let mut json = format!("{{{}}}", entries.join(",")).into_bytes();
        // The format pads the header with spaces to a multiple of 8.
        json.resize(json.len().div_ceil(8) * 8, b' ');
        let mut header = (json.len() as u64).to_le_bytes().to_vec();
        header.extend_from_slice(&json);
        Self { header, tensors, tensor_bytes, seed }
    }

    /// Total file size.
    pub fn size(&self) -> u64 {
        self.header.len() as u64 + self.tensors * self.tensor_bytes
    }

    /// Header bytes (length prefix included).
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// File offset and length of tensor `i`.
    pub fn tensor(&self, i: u64) -> (u64, u64) {
        (self.header.len() as u64 + i * self.tensor_bytes, self.tensor_bytes)
    }

    /// Bytes `[offset, offset + len)` of the file (fewer at its end).
    pub fn bytes(&self, offset: u64, len: u64) -> Vec<u8> {
        let end = (offset + len).min(self.size());
        let h = self.header.len() as u64;
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut pos = offset;
        while pos < end {
            if pos < h {
                let upto = end.min(h);
                out.extend_from_slice(&self.header[pos as usize..upto as usize]);
                pos = upto;
                continue;
            }
            let (block, within) = ((pos - h) / BLOCK, (pos - h) % BLOCK);
            let take = (BLOCK - within).min(end - pos);
            let data = splitmix(BLOCK as usize, self.seed ^ block.wrapping_mul(0x9E37_79B9));
            out.extend_from_slice(&data[within as usize..(within + take) as usize]);
            pos += take;
        }
        out
    }

    /// Writes the whole file into `out`, 16 MiB at a time.
    pub fn write_into(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let mut pos = 0;
        while pos < self.size() {
            let piece = self.bytes(pos, 16 << 20);
            out.write_all(&piece)?;
            pos += piece.len() as u64;
        }
        out.flush()
    }
}
