//! The reconstruction planner (`xet-protocol.md` §5.2): which chunk ranges of which xorbs
//! rebuild bytes `[start, end)` of a file, and the byte ranges of the stored xorbs to fetch.
//! Pure: xorb chunk tables come through a lookup, so it is tested without a store or a server.

use std::collections::{BTreeMap, HashMap};

use tessera_xet::hash::XorbHash;
use tessera_protocol::{ChunkRange, InclusiveByteRange, ReconstructionTerm};
use tessera_store::{FileRecord, XorbMeta};

/// Terms and fetch ranges answering one reconstruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Bytes to drop from the first term's output.
    pub(crate) offset: u64,
    /// The terms covering the range, in file order.
    pub(crate) terms: Vec<ReconstructionTerm>,
    /// Per xorb: merged chunk ranges with their inclusive byte ranges.
    pub(crate) fetch: BTreeMap<XorbHash, Vec<(ChunkRange, InclusiveByteRange)>>,
}

/// Why a file cannot be planned: the lookup failed (`E`, the store's error), or the file's
/// records disagree (damage, never user input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PlanError<E> {
    /// The lookup of a xorb's chunk table failed.
    #[error(transparent)]
    Lookup(E),
    /// The lookup has no chunk table for a xorb the file names.
    #[error("xorb {0} missing")]
    XorbMissing(XorbHash),
    /// A chunk the file names is absent from its xorb's table.
    #[error("chunk {index} of {xorb} missing")]
    ChunkMissing {
        /// The xorb.
        xorb: XorbHash,
        /// The chunk index.
        index: u32,
    },
    /// A term's length is not the sum of its chunks.
    #[error("term lengths of {0} disagree with its xorbs")]
    TermLength(tessera_xet::hash::FileHash),
}

/// Xorb chunk tables, each looked up once per plan and lent out, never copied.
struct Metas<F> {
    lookup: F,
    known: HashMap<XorbHash, XorbMeta>,
}

impl<E, F: FnMut(&XorbHash) -> Result<Option<XorbMeta>, E>> Metas<F> {
    fn get(&mut self, xorb: &XorbHash) -> Result<&XorbMeta, PlanError<E>> {
        if !self.known.contains_key(xorb) {
            let m = (self.lookup)(xorb).map_err(PlanError::Lookup)?;
            self.known.insert(*xorb, m.ok_or(PlanError::XorbMissing(*xorb))?);
        }
        self.known.get(xorb).ok_or(PlanError::XorbMissing(*xorb))
    }
}

/// Plans bytes `[start, end)` of `record`; `lookup` gives a xorb's chunk table.
pub(crate) fn plan<E>(
    record: &FileRecord,
    start: u64,
    end: u64,
    lookup: impl FnMut(&XorbHash) -> Result<Option<XorbMeta>, E>,
) -> Result<Plan, PlanError<E>> {
    let mut metas = Metas { lookup, known: HashMap::new() };
    let (mut pos, mut offset, mut terms) = (0u64, None, Vec::new());
    let mut wanted: BTreeMap<XorbHash, Vec<(u32, u32)>> = BTreeMap::new();
    for t in &record.terms {
        let term_end = pos + u64::from(t.unpacked_len);
        if term_end > start && pos < end {
            let m = metas.get(&t.xorb)?;
            let kept = kept_chunks(m, t.chunk_start, t.chunk_end, pos, start, end)?;
            if kept.end_pos != term_end {
                return Err(PlanError::TermLength(record.hash));
            }
            if let Some((first, last, bytes, skip)) = kept.range {
                offset.get_or_insert(skip);
                let unpacked_length =
                    u32::try_from(bytes).map_err(|_| PlanError::TermLength(record.hash))?;
                terms.push(ReconstructionTerm {
                    hash: t.xorb,
                    unpacked_length,
                    range: ChunkRange { start: first, end: last },
                });
                wanted.entry(t.xorb).or_default().push((first, last));
            }
        }
        pos = term_end;
    }
    let mut fetch = BTreeMap::new();
    for (xorb, ranges) in wanted {
        let m = metas.get(&xorb)?;
        let list = merge(ranges)
            .into_iter()
            .map(|(a, b)| byte_range(m, a, b))
            .collect::<Result<Vec<_>, _>>()?;
        fetch.insert(xorb, list);
    }
    Ok(Plan { offset: offset.unwrap_or(0), terms, fetch })
}

/// The chunks of one term that overlap `[start, end)`.
struct Kept {
    /// (first chunk, one past the last, their bytes, bytes to skip in the first).
    range: Option<(u32, u32, u64, u64)>,
    /// File position after the term's last chunk.
    end_pos: u64,
}

fn kept_chunks<E>(
    m: &XorbMeta,
    from: u32,
    to: u32,
    mut pos: u64,
    start: u64,
    end: u64,
) -> Result<Kept, PlanError<E>> {
    let mut range: Option<(u32, u32, u64, u64)> = None;
    for i in from..to {
        let c = m
            .chunks
            .get(i as usize)
            .and_then(Option::as_ref)
            .ok_or(PlanError::ChunkMissing { xorb: m.hash, index: i })?;
        let (a, b) = (pos, pos + u64::from(c.unpacked_len));
        pos = b;
        if b <= start || a >= end {
            continue;
        }
        let r = range.get_or_insert((i, i, 0, start.saturating_sub(a)));
        r.1 = i + 1;
        r.2 += u64::from(c.unpacked_len);
    }
    Ok(Kept { range, end_pos: pos })
}

/// Sorted, overlapping or touching chunk ranges merged.
fn merge(mut ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    ranges.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::new();
    for (a, b) in ranges {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

/// Chunks `[a, b)` of a xorb and the inclusive byte range of the stored xorb that holds them.
fn byte_range<E>(
    m: &XorbMeta,
    a: u32,
    b: u32,
) -> Result<(ChunkRange, InclusiveByteRange), PlanError<E>> {
    let chunk = |i: u32| {
        m.chunks
            .get(i as usize)
            .and_then(Option::as_ref)
            .ok_or(PlanError::ChunkMissing { xorb: m.hash, index: i })
    };
    let (first, last) = (chunk(a)?, chunk(b - 1)?);
    let bytes = InclusiveByteRange {
        start: u64::from(first.byte_start),
        end: u64::from(last.byte_end) - 1,
    };
    Ok((ChunkRange { start: a, end: b }, bytes))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tessera_xet::hash::{ChunkHash, FileHash, Sha256};
    use tessera_store::{ChunkMeta, Term};

    /// A xorb of `n` chunks of 100 bytes each, 60 bytes stored per chunk.
    fn xorb(seed: u8, n: u32) -> XorbMeta {
        let chunks = (0..n)
            .map(|i| {
                Some(ChunkMeta {
                    hash: ChunkHash::from_bytes([seed; 32]),
                    byte_start: i * 60,
                    byte_end: (i + 1) * 60,
                    unpacked_len: 100,
                })
            })
            .collect();
        XorbMeta { hash: XorbHash::from_bytes([seed; 32]), chunks }
    }

    fn term(x: &XorbMeta, a: u32, b: u32) -> Term {
        Term { xorb: x.hash, chunk_start: a, chunk_end: b, unpacked_len: (b - a) * 100 }
    }

    fn file(terms: Vec<Term>) -> FileRecord {
        let size = terms.iter().map(|t| u64::from(t.unpacked_len)).sum();
        FileRecord { hash: FileHash::from_bytes([9; 32]), size, sha256: Sha256::of(b""), terms }
    }

    fn lookup(
        xs: &[XorbMeta],
    ) -> impl FnMut(&XorbHash) -> Result<Option<XorbMeta>, std::convert::Infallible> + '_ {
        |h| Ok(xs.iter().find(|x| x.hash == *h).cloned())
    }

    #[test]
    fn a_range_inside_one_chunk_skips_to_it() {
        let x = xorb(1, 4);
        let p =
            plan(&file(vec![term(&x, 0, 4)]), 250, 260, lookup(std::slice::from_ref(&x))).unwrap();
        assert_eq!(p.offset, 50);
        assert_eq!(
            p.terms,
            vec![ReconstructionTerm {
                hash: x.hash,
                unpacked_length: 100,
                range: ChunkRange { start: 2, end: 3 }
            }]
        );
        assert_eq!(
            p.fetch[&x.hash],
            vec![(ChunkRange { start: 2, end: 3 }, InclusiveByteRange { start: 120, end: 179 })]
        );
    }

    #[test]
    fn terms_of_one_xorb_share_merged_fetch_ranges() {
        let (x, y) = (xorb(1, 8), xorb(2, 2));
        let f = file(vec![term(&x, 0, 2), term(&y, 0, 2), term(&x, 1, 4), term(&x, 6, 8)]);
        let p = plan(&f, 0, f.size, lookup(&[x.clone(), y.clone()])).unwrap();
        assert_eq!(p.offset, 0);
        assert_eq!(p.terms.len(), 4);
        let ranges: Vec<ChunkRange> = p.fetch[&x.hash].iter().map(|(c, _)| *c).collect();
        assert_eq!(ranges, vec![ChunkRange { start: 0, end: 4 }, ChunkRange { start: 6, end: 8 }]);
        assert_eq!(p.fetch[&y.hash].len(), 1);
    }

    #[test]
    fn damaged_indexes_are_errors_not_panics() {
        let x = xorb(1, 2);
        assert_eq!(
            plan(&file(vec![term(&x, 0, 2)]), 0, 200, lookup(&[])),
            Err(PlanError::XorbMissing(x.hash))
        );
        let beyond = file(vec![term(&x, 0, 3)]);
        assert_eq!(
            plan(&beyond, 0, 300, lookup(std::slice::from_ref(&x))),
            Err(PlanError::ChunkMissing { xorb: x.hash, index: 2 })
        );
        let mut short = file(vec![term(&x, 0, 2)]);
        short.terms[0].unpacked_len = 150;
        assert_eq!(plan(&short, 0, 150, lookup(&[x])), Err(PlanError::TermLength(short.hash)));
    }
}
