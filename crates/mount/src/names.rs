//! The mount's namespace: `<org>/<name>@<rev>/<path>`, with `/` in a revision written `%2F`
//! (`refs/pr/3` is `refs%2Fpr%2F3`) and `%` written `%25`. Pure functions only; what a valid
//! name, revision or path is, `tessera-protocol` decides (one set of rules with the server).

pub(crate) use tessera_protocol::is_repo_id_part;
use tessera_protocol::{normalize_repo_path, validate_revision};

/// Splits a directory name `name@rev` into the repo name and the decoded revision.
pub(crate) fn parse_rev_dir(entry: &str) -> Option<(&str, String)> {
    let (name, rev) = entry.split_once('@')?;
    let rev = decode_rev(rev)?;
    (is_repo_id_part(name) && validate_revision(&rev).is_ok()).then_some((name, rev))
}

/// The directory name of a repo revision.
pub(crate) fn rev_dir_name(name: &str, rev: &str) -> String {
    format!("{name}@{}", encode_rev(rev))
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

/// Splits a repo path into components, or `None` if it is not a path a repo may hold
/// ([`normalize_repo_path`]'s rules, the server's).
pub(crate) fn path_components(path: &str) -> Option<Vec<&str>> {
    (normalize_repo_path(path).ok()? == path).then(|| path.split('/').collect())
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
        for ok in ["snakers4", "all-MiniLM-L6-v2", "a.b_c"] {
            assert!(is_repo_id_part(ok), "{ok}");
        }
        // The server's rules, which the mount once disagreed with (`a--b`, a trailing `.`).
        for bad in [".Trash-0", "", "a b", "a/b", "a--b", "b."] {
            assert!(!is_repo_id_part(bad), "{bad}");
        }
        assert!(parse_rev_dir(&format!("m@{}", "r".repeat(256))).is_some());
        assert!(parse_rev_dir(&format!("m@{}", "r".repeat(257))).is_none());
        assert_eq!(path_components("a/b.onnx"), Some(vec!["a", "b.onnx"]));
        assert_eq!(path_components("a//b"), None);
        assert_eq!(path_components("../x"), None);
        assert_eq!(path_components("a/.git/config"), None);
        assert_eq!(path_components(""), None);
    }
}
