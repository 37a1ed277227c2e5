//! Small HTTP-level helpers both ends need: header names, byte ranges, lenient booleans,
//! url-encoded forms, Hub dates, git object ids and LFS pointers.

use sha1::Digest;

use crate::ids::GitOid;

/// Header names used by the Hub and the Xet CAS (lowercase, as HTTP/2 wants them).
pub mod headers {
    /// Resolved commit on `/resolve` replies.
    pub const X_REPO_COMMIT: &str = "x-repo-commit";
    /// Etag of the linked (LFS) object: the quoted sha256.
    pub const X_LINKED_ETAG: &str = "x-linked-etag";
    /// Real size of the linked (LFS) object.
    pub const X_LINKED_SIZE: &str = "x-linked-size";
    /// Xet file hash of a Xet-backed file.
    pub const X_XET_HASH: &str = "x-xet-hash";
    /// Legacy refresh-route header for Xet tokens.
    pub const X_XET_REFRESH_ROUTE: &str = "x-xet-refresh-route";
    /// Xet token (also in the JSON body).
    pub const X_XET_ACCESS_TOKEN: &str = "x-xet-access-token";
    /// Xet token expiry, unix seconds.
    pub const X_XET_TOKEN_EXPIRATION: &str = "x-xet-token-expiration";
    /// CAS base URL.
    pub const X_XET_CAS_URL: &str = "x-xet-cas-url";
    /// Machine-readable error code (`RepoNotFound`, ...).
    pub const X_ERROR_CODE: &str = "x-error-code";
    /// Human-readable error message.
    pub const X_ERROR_MESSAGE: &str = "x-error-message";
    /// Request id echoed in errors.
    pub const X_REQUEST_ID: &str = "x-request-id";
}

/// Values of `X-Error-Code` that clients map to typed errors.
pub mod error_codes {
    /// Repo missing or invisible to the caller.
    pub const REPO_NOT_FOUND: &str = "RepoNotFound";
    /// Branch, tag or commit unknown.
    pub const REVISION_NOT_FOUND: &str = "RevisionNotFound";
    /// Path missing at that revision.
    pub const ENTRY_NOT_FOUND: &str = "EntryNotFound";
}

/// One parsed `Range` item, before it is applied to a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `a-b` or `a-` (`end` inclusive, `None` = to the end).
    FromTo(u64, Option<u64>),
    /// `-n`: the last n bytes.
    Suffix(u64),
}

/// Parses `bytes=a-b[,c-d...]`. `None` for anything malformed or for another unit.
///
/// ```
/// use tessera_protocol::{parse_range_header, RangeSpec};
/// assert_eq!(parse_range_header("bytes=5-"), Some(vec![RangeSpec::FromTo(5, None)]));
/// assert_eq!(parse_range_header("bytes=0-0, -3").unwrap().len(), 2);
/// assert_eq!(parse_range_header("items=1-2"), None);
/// ```
pub fn parse_range_header(value: &str) -> Option<Vec<RangeSpec>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    let mut out = Vec::new();
    for part in spec.split(',') {
        let (a, b) = part.trim().split_once('-')?;
        let (a, b) = (a.trim(), b.trim());
        let item = if a.is_empty() {
            RangeSpec::Suffix(b.parse().ok()?)
        } else {
            let start: u64 = a.parse().ok()?;
            let end = if b.is_empty() { None } else { Some(b.parse::<u64>().ok()?) };
            if end.is_some_and(|e| e < start) {
                return None;
            }
            RangeSpec::FromTo(start, end)
        };
        out.push(item);
    }
    (!out.is_empty() && out.len() <= 1024).then_some(out)
}

/// Why a `Range` header of closed ranges was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedRangesError {
    /// Not `bytes=a-b[,c-d...]`, or an open or suffix range.
    Malformed,
    /// Two ranges overlap or repeat.
    Overlapping,
}

/// The closed ranges `(first, last)` of a `Range` header in their order, refusing open, suffix,
/// overlapping and repeated ranges: the answer to a presigned xorb URL is then never larger than
/// the ranges it signs, however the header is written.
///
/// ```
/// use tessera_protocol::http::{ClosedRangesError, parse_closed_ranges};
/// assert_eq!(parse_closed_ranges("bytes=10-19,0-4"), Ok(vec![(10, 19), (0, 4)]));
/// assert_eq!(parse_closed_ranges("bytes=0-4,4-9"), Err(ClosedRangesError::Overlapping));
/// assert_eq!(parse_closed_ranges("bytes=5-"), Err(ClosedRangesError::Malformed));
/// ```
pub fn parse_closed_ranges(value: &str) -> Result<Vec<(u64, u64)>, ClosedRangesError> {
    let ranges = parse_range_header(value)
        .ok_or(ClosedRangesError::Malformed)?
        .into_iter()
        .map(|spec| match spec {
            RangeSpec::FromTo(a, Some(b)) => Ok((a, b)),
            _ => Err(ClosedRangesError::Malformed),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut sorted = ranges.clone();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[1].0 <= w[0].1) {
        return Err(ClosedRangesError::Overlapping);
    }
    Ok(ranges)
}

impl RangeSpec {
    /// The half-open byte range this selects in a body of `size` bytes, with the end clamped to
    /// the size (RFC 9110). `None` if it selects nothing (unsatisfiable).
    pub fn resolve(self, size: u64) -> Option<(u64, u64)> {
        match self {
            RangeSpec::FromTo(start, end) => {
                if start >= size {
                    return None;
                }
                let end = end.map_or(size, |e| e.saturating_add(1).min(size));
                Some((start, end))
            }
            RangeSpec::Suffix(0) => None,
            RangeSpec::Suffix(n) => (size > 0).then(|| (size.saturating_sub(n), size)),
        }
    }
}

/// Lenient boolean query value: `true`/`True`/`1` and `false`/`False`/`0`.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// Percent-decodes a URL component; `plus_as_space` for form bodies. Invalid escapes are kept
/// literally; invalid UTF-8 becomes U+FFFD.
pub fn percent_decode(s: &str, plus_as_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(if plus_as_space && b == b'+' { b' ' } else { b });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Percent-encodes a URL component: everything but `A-Za-z0-9-._~` (and `/` when `keep_slash`).
pub fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses an `application/x-www-form-urlencoded` body or query string into ordered pairs
/// (repeated keys kept, as Python sends `paths` several times).
pub fn parse_urlencoded(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// Formats unix seconds as the Hub's date form `YYYY-MM-DDTHH:MM:SS.000Z`.
///
/// ```
/// assert_eq!(tessera_protocol::format_hub_date(0), "1970-01-01T00:00:00.000Z");
/// assert_eq!(tessera_protocol::format_hub_date(1_700_000_000), "2023-11-14T22:13:20.000Z");
/// ```
pub fn format_hub_date(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Git blob object id: SHA-1 of `blob {len}\0` + content, 40 hex.
///
/// ```
/// let oid = tessera_protocol::git_blob_oid(b"");
/// assert_eq!(oid.as_str(), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
/// ```
pub fn git_blob_oid(content: &[u8]) -> GitOid {
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", content.len()).as_bytes());
    h.update(content);
    GitOid::from_sha1(h.finalize().into())
}

/// SHA-1 hex of arbitrary bytes (used for commit and tree ids).
pub fn sha1_hex(data: &[u8]) -> String {
    hex::encode(sha1::Sha1::digest(data))
}

/// The Git LFS pointer file committed for an LFS object.
pub fn lfs_pointer(sha256_hex: &str, size: u64) -> String {
    format!("version https://git-lfs.github.com/spec/v1\noid sha256:{sha256_hex}\nsize {size}\n")
}

/// True for 64 lowercase hex digits (a sha256 or Xet hash in string form).
pub fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve() {
        let r = |s: &str| parse_range_header(s).unwrap()[0];
        assert_eq!(r("bytes=0-0").resolve(10), Some((0, 1)));
        assert_eq!(r("bytes=0-99").resolve(10), Some((0, 10)));
        assert_eq!(r("bytes=8-").resolve(10), Some((8, 10)));
        assert_eq!(r("bytes=-3").resolve(10), Some((7, 10)));
        assert_eq!(r("bytes=-30").resolve(10), Some((0, 10)));
        assert_eq!(r("bytes=10-").resolve(10), None);
        assert_eq!(r("bytes=0-0").resolve(0), None);
        assert!(parse_range_header("bytes=5-1").is_none());
        assert!(parse_range_header("bytes=x-1").is_none());
        assert!(parse_range_header("bytes=").is_none());
    }

    #[test]
    fn forms() {
        let f = parse_urlencoded("paths=a%2Fb.txt&paths=c+d&expand=False&x");
        assert_eq!(f[0], ("paths".into(), "a/b.txt".into()));
        assert_eq!(f[1].1, "c d");
        assert_eq!(parse_bool(&f[2].1), Some(false));
        assert_eq!(f[3], ("x".into(), String::new()));
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(percent_decode("%zz%41", false), "%zzA");
        assert_eq!(percent_encode("refs/pr/1", false), "refs%2Fpr%2F1");
        assert_eq!(percent_encode("a b/c", true), "a%20b/c");
    }

    #[test]
    fn dates() {
        assert_eq!(format_hub_date(951_782_400), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_hub_date(4_102_444_799), "2099-12-31T23:59:59.000Z");
    }

    #[test]
    fn git_ids() {
        assert_eq!(git_blob_oid(b"hello\n").as_str(), "ce013625030ba8dba906f756967f9e9ca394464a");
        let p = lfs_pointer(&"a".repeat(64), 5);
        assert!(
            p.starts_with("version https://git-lfs.github.com/spec/v1\n")
                && p.ends_with("size 5\n")
        );
    }
}

/// Parses the Hub's dates (`2024-05-01T12:34:56.000Z`, fraction and `Z` optional) to unix
/// seconds; `None` for anything else or before 1970.
pub fn parse_hub_date(text: &str) -> Option<u64> {
    let (date, time) = text.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.trim_end_matches('Z');
    let time = time.split_once('.').map_or(time, |(whole, _)| whole);
    let mut t = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || h > 23
        || m > 59
        || s > 60
        || h < 0
        || m < 0
        || s < 0
    {
        return None;
    }
    // Days-from-civil (Howard Hinnant's algorithm), the inverse of `format_hub_date`.
    let y = year - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + m * 60 + s).ok()
}

#[cfg(test)]
mod date_tests {
    use super::{format_hub_date, parse_hub_date};

    #[test]
    fn hub_dates_round_trip_and_junk_is_refused() {
        for secs in [0, 86_399, 951_782_400, 1_709_251_199, 1_733_443_200, 4_102_444_800] {
            assert_eq!(
                parse_hub_date(&format_hub_date(secs)),
                Some(secs),
                "{}",
                format_hub_date(secs)
            );
        }
        assert_eq!(parse_hub_date("2024-05-01T12:34:56Z"), Some(1_714_566_896));
        for junk in
            ["", "2024-05-01", "2024-13-01T00:00:00Z", "x-y-zTa:b:c", "1969-12-31T23:59:59Z"]
        {
            assert_eq!(parse_hub_date(junk), None, "{junk}");
        }
    }
}
