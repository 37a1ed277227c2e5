//! CAS calls: file reconstruction (v2, falling back to v1) and ranged xorb fetches.

use super::api::Subject;
use super::{HubClient, HubError, api, retry};
use tessera_protocol::{
    ChunkRange, InclusiveByteRange, ReconstructionTerm, ReconstructionV1, ReconstructionV2,
    check_reconstruction,
};
use tessera_xet::hash::{FileHash, XorbHash};

/// One byte range of one xorb to download: it holds chunks `chunks` of `xorb`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchUnit {
    /// The xorb.
    pub xorb: XorbHash,
    /// Chunk range `[start, end)` the bytes hold.
    pub chunks: ChunkRange,
    /// Presigned URL (no Authorization header is sent to it).
    pub url: String,
    /// First byte (offset in the stored xorb).
    pub byte_start: u64,
    /// Last byte, inclusive.
    pub byte_end: u64,
}

/// How to rebuild a file: terms in order, and where their bytes are.
#[derive(Debug, Clone)]
pub struct Reconstruction {
    /// Bytes of the first term to skip (ranged reconstructions only).
    pub offset_into_first_range: u64,
    /// The file's terms in order.
    pub terms: Vec<ReconstructionTerm>,
    /// Byte ranges that together cover every term.
    pub units: Vec<FetchUnit>,
    /// Whether units of one xorb with the same URL may be fetched in one multi-range request
    /// (a v2 answer: one URL per xorb for all its ranges; v1 URLs are signed per range).
    pub shared_urls: bool,
}

impl HubClient {
    /// The reconstruction of a file (v2, or v1 where the server has no v2).
    pub async fn reconstruction(
        &self,
        cas_url: &str,
        token: &str,
        file: &FileHash,
    ) -> Result<Reconstruction, HubError> {
        let base = cas_url.trim_end_matches('/');
        let v2 = format!("{base}/v2/reconstructions/{file}");
        match api::get_body(&self.config.retry, &v2, Subject::Other, || {
            self.http.get(&v2).bearer_auth(token)
        })
        .await
        {
            Ok((_, body)) => {
                let r: ReconstructionV2 =
                    serde_json::from_slice(&body).map_err(|e| malformed(&v2, e))?;
                return from_v2(r, &v2);
            }
            // A server without v2 answers 404/501 without an X-Error-Code: fall back to v1.
            Err(HubError::NotFound(_)) | Err(HubError::Status { status: 501, .. }) => {}
            Err(e) => return Err(e),
        }
        let v1 = format!("{base}/v1/reconstructions/{file}");
        let (_, body) = api::get_body(&self.config.retry, &v1, Subject::Other, || {
            self.http.get(&v1).bearer_auth(token)
        })
        .await?;
        let r: ReconstructionV1 = serde_json::from_slice(&body).map_err(|e| malformed(&v1, e))?;
        from_v1(r, &v1)
    }

    /// Opens bytes `[from, unit.byte_end]` of a fetch unit as a stream, for a reader that parses
    /// chunks as they arrive and may stop early (the lazy mount). The caller resumes broken
    /// transfers itself, from the first chunk it has not kept.
    pub async fn open_unit_range(
        &self,
        unit: &FetchUnit,
        from: u64,
    ) -> Result<reqwest::Response, HubError> {
        let range = format!("bytes={from}-{}", unit.byte_end);
        let resp = retry::send(&self.config.retry, "xorb range", || {
            self.http.get(&unit.url).header(reqwest::header::RANGE, &range)
        })
        .await?;
        api::check(resp, &reqwest::Method::GET, Subject::Other).await
    }

    /// Opens several closed byte ranges of one xorb URL in one request (`Range: bytes=a-b,c-d`),
    /// answered as `multipart/byteranges` (`xet-protocol.md` §5.3).
    pub async fn open_ranges(
        &self,
        url: &str,
        ranges: &[(u64, u64)],
    ) -> Result<reqwest::Response, HubError> {
        let spec: Vec<String> = ranges.iter().map(|(a, b)| format!("{a}-{b}")).collect();
        let range = format!("bytes={}", spec.join(","));
        let resp = retry::send(&self.config.retry, "xorb ranges", || {
            self.http.get(url).header(reqwest::header::RANGE, &range)
        })
        .await?;
        api::check(resp, &reqwest::Method::GET, Subject::Other).await
    }
}

fn from_v2(r: ReconstructionV2, url: &str) -> Result<Reconstruction, HubError> {
    check_reconstruction(r.offset_into_first_range, &r.terms).map_err(|e| malformed(url, e))?;
    let mut units = Vec::new();
    for (xorb, fetches) in r.xorbs {
        let xorb = XorbHash::from_hex(&xorb).map_err(|e| malformed(url, e))?;
        for f in fetches {
            for range in f.ranges {
                units.push(unit(
                    xorb,
                    range.chunks,
                    f.url.clone(),
                    range.bytes.start,
                    range.bytes.end,
                    url,
                )?);
            }
        }
    }
    Ok(Reconstruction {
        offset_into_first_range: r.offset_into_first_range,
        terms: r.terms,
        units,
        shared_urls: true,
    })
}

fn from_v1(r: ReconstructionV1, url: &str) -> Result<Reconstruction, HubError> {
    check_reconstruction(r.offset_into_first_range, &r.terms).map_err(|e| malformed(url, e))?;
    let mut units = Vec::new();
    for (xorb, fetches) in r.fetch_info {
        let xorb = XorbHash::from_hex(&xorb).map_err(|e| malformed(url, e))?;
        for f in fetches {
            units.push(unit(xorb, f.range, f.url, f.url_range.start, f.url_range.end, url)?);
        }
    }
    Ok(Reconstruction {
        offset_into_first_range: r.offset_into_first_range,
        terms: r.terms,
        units,
        shared_urls: false,
    })
}

fn unit(
    xorb: XorbHash,
    chunks: ChunkRange,
    url: String,
    start: u64,
    end: u64,
    from: &str,
) -> Result<FetchUnit, HubError> {
    if !chunks.is_within_xorb() || !(InclusiveByteRange { start, end }).is_within_xorb() {
        return Err(HubError::Malformed {
            url: from.into(),
            message: format!("empty or out-of-bounds fetch range for xorb {xorb}"),
        });
    }
    Ok(FetchUnit { xorb, chunks, url, byte_start: start, byte_end: end })
}

fn malformed(url: &str, e: impl std::fmt::Display) -> HubError {
    HubError::Malformed { url: url.to_string(), message: e.to_string() }
}
