//! Any bytes as a commit body (NDJSON lines) and as ids: parsing never panics, and every path a
//! commit line names that `normalize_repo_path` accepts stays inside the repository.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_protocol::{CommitLine, RepoId, normalize_repo_path, validate_revision};

fuzz_target!(|data: &[u8]| {
    for line in data.split(|&b| b == b'\n') {
        let _ = serde_json::from_slice::<CommitLine>(line);
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(path) = normalize_repo_path(text) {
        assert!(!path.starts_with('/') && !path.contains('\\'));
        assert!(path.split('/').all(|s| !s.is_empty() && s != "." && s != ".."));
    }
    if let Ok(id) = RepoId::parse(text) {
        assert_eq!(RepoId::parse(&id.to_string()).ok(), Some(id));
    }
    let _ = validate_revision(text);
});
