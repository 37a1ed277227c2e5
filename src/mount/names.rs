//! The mount's namespace: `<org>/<name>@<rev>/<path>`, with `/` in a revision written `%2F`
//! (`refs/pr/3` is `refs%2Fpr%2F3`) and `%` written `%25`. Pure functions only.

/// Whether `s` can be a Hub org or repo name: `[A-Za-z0-9._-]`, at most 96 bytes, not starting
/// with `.` or `-`. Rejecting everything else keeps probes such as `.Trash` or `.git` from
/// ever reaching the remote.
pub(crate) fn is_repo_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 96
        && !s.starts_with(['.', '-'])
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Whether a revision is a full commit id (40 lowercase hex digits).
pub(crate) fn is_commit_id(rev: &str) -> bool {
    rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Splits a directory name `name@rev` into the repo name and the decoded revision.
pub(crate) fn parse_rev_dir(entry: &str) -> Option<(&str, String)> {
    let (name, rev) = entry.split_once('@')?;
    let rev = decode_rev(rev)?;
    (is_repo_part(name) && is_valid_rev(&rev)).then_some((name, rev))
}

/// The directory name of a repo revision.
pub(crate) fn rev_dir_name(name: &str, rev: &str) -> String {
    format!("{name}@{}", encode_rev(rev))
}

fn is_valid_rev(rev: &str) -> bool {
    !rev.is_empty()
        && rev.len() <= 255
        && !rev.split('/').any(|p| p.is_empty() || p == "." || p == "..")
        && !rev.chars().any(|c| c.is_control() || c == '\\')
}

/// `/` -> `%2F`, `%` -> `%25`.
pub(crate) fn encode_rev(rev: &str) -> String {
    rev.replace('%', "%25").replace('/', "%2F")
}

/// Inverse of [`encode_rev`]; `None` for any other `%` escape.
pub(crate) fn decode_rev(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i + 1..i + 3)?;
        out.push(match esc {
            "2F" | "2f" => '/',
            "25" => '%',
            _ => return None,
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// Splits a repo path into components, or `None` if it is not a clean relative path.
pub(crate) fn path_components(path: &str) -> Option<Vec<&str>> {
    let parts: Vec<&str> = path.split('/').collect();
    let clean = parts.iter().all(|p| !p.is_empty() && *p != "." && *p != ".." && !p.contains('\0'));
    clean.then_some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_directories_round_trip() {
        assert_eq!(parse_rev_dir("silero-vad@main"), Some(("silero-vad", "main".into())));
        assert_eq!(parse_rev_dir("m@refs%2Fpr%2F3"), Some(("m", "refs/pr/3".into())));
        assert_eq!(parse_rev_dir("m@refs%2fpr%2f3"), Some(("m", "refs/pr/3".into())));
        assert_eq!(parse_rev_dir("m@a%25b"), Some(("m", "a%b".into())));
        for rev in ["main", "refs/pr/3", "v1.0", "a%b", "x@y"] {
            let dir = rev_dir_name("model", rev);
            assert_eq!(parse_rev_dir(&dir), Some(("model", rev.to_string())), "{dir}");
        }
        for bad in ["nomark", "@main", "m@", "m@%41", "m@%2", ".x@main", "m@..", "m@a%2F%2Fb"] {
            assert_eq!(parse_rev_dir(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_and_paths() {
        assert!(
            is_repo_part("snakers4") && is_repo_part("all-MiniLM-L6-v2") && is_repo_part("a.b_c")
        );
        assert!(
            !is_repo_part(".Trash-0")
                && !is_repo_part("")
                && !is_repo_part("a b")
                && !is_repo_part("a/b")
        );
        assert!(
            is_commit_id(&"ab".repeat(20))
                && !is_commit_id(&"AB".repeat(20))
                && !is_commit_id("main")
        );
        assert_eq!(path_components("a/b.onnx"), Some(vec!["a", "b.onnx"]));
        assert_eq!(path_components("a//b"), None);
        assert_eq!(path_components("../x"), None);
        assert_eq!(path_components(""), None);
    }
}
