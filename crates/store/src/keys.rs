//! How repos, refs and trees are spelled as index keys: the one place that turns the typed
//! [`RevisionKey`] and [`CommitKey`] into bytes and back. Callers hand the store typed keys and
//! never build these strings, so the format can only change here.
//!
//! The format predates typed identities and stays byte-identical, so existing stores keep
//! working:
//! - a repo: `{type}/{namespace}/{name}` (`model/org/name`);
//! - a ref ([`Table::Ref`](super::Table::Ref), origins `r…`): `{repo}@{revision}`;
//! - a tree a hub listed ([`Table::Tree`](super::Table::Tree), origins `t…`, the holders of
//!   tree and revision roots): `{repo}@{commit}`; a tree built here is keyed by its bare commit.

use super::source::{CommitKey, RevisionKey};
use tessera_protocol::{RepoId, RepoType};

/// `model/org/name`.
fn repo(repo_type: RepoType, repo_id: &RepoId) -> String {
    format!("{repo_type}/{repo_id}")
}

/// Prefix of the ref keys of every repo of a type (`model/`), or of one namespace's repos
/// (`model/org/`).
pub(crate) fn refs_prefix(repo_type: RepoType, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{repo_type}/{ns}/"),
        None => format!("{repo_type}/"),
    }
}

/// Key of a ref: `model/org/name@main`.
pub(crate) fn ref_key(key: &RevisionKey) -> String {
    format!("{}@{}", repo(key.repo_type, &key.repo_id), key.revision)
}

/// Key of the tree a hub listed for a repo at a commit: `model/org/name@{commit}`.
pub(crate) fn tree_key(key: &CommitKey) -> String {
    format!("{}@{}", repo(key.repo_type, &key.repo_id), key.commit)
}

/// Parses a key made by [`ref_key`]; `None` for anything else (refs written before keys were
/// typed may hold any caller-chosen string).
pub(crate) fn parse_ref_key(key: &str) -> Option<RevisionKey> {
    let (repo_type, rest) = key.split_once('/')?;
    let (repo_id, revision) = rest.rsplit_once('@')?;
    let repo_type = RepoType::from_name(Some(repo_type)).ok()?;
    RevisionKey::new(repo_type, RepoId::parse(repo_id).ok()?, revision).ok()
}

/// Parses a key made by [`tree_key`]; `None` for anything else.
pub(crate) fn parse_tree_key(key: &str) -> Option<CommitKey> {
    let rev = parse_ref_key(key)?;
    Some(rev.at(rev.as_commit()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, Table, TreeEntry};
    use tessera_protocol::CommitId;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const C: &str = "0123456789abcdef0123456789abcdef01234567";

    fn rev(
        repo_type: RepoType,
        id: &str,
        revision: &str,
    ) -> Result<RevisionKey, Box<dyn std::error::Error>> {
        Ok(RevisionKey::new(repo_type, RepoId::parse(id)?, revision)?)
    }

    /// The bytes existing stores hold: changing any of these strands their refs and trees.
    #[test]
    fn encoding_is_the_one_existing_stores_hold() -> TestResult {
        assert_eq!(ref_key(&rev(RepoType::Model, "org/name", "main")?), "model/org/name@main");
        assert_eq!(ref_key(&rev(RepoType::Dataset, "o/d", "refs/pr/3")?), "dataset/o/d@refs/pr/3");
        assert_eq!(ref_key(&rev(RepoType::Space, "o/s", "v1.0")?), "space/o/s@v1.0");
        let at = rev(RepoType::Model, "org/name", "main")?.at(CommitId::parse(C)?);
        assert_eq!(tree_key(&at), format!("model/org/name@{C}"));
        assert_eq!(ref_key(&at.as_revision()), tree_key(&at));
        assert_eq!(refs_prefix(RepoType::Model, None), "model/");
        assert_eq!(refs_prefix(RepoType::Dataset, Some("org")), "dataset/org/");
        Ok(())
    }

    /// The same through the store: the rows a ref, a hub's tree and a pinned revision write.
    #[test]
    fn the_store_writes_rows_under_those_keys() -> TestResult {
        let home = tempfile::tempdir()?;
        let store = Store::open(home.path())?;
        let added = store.ingest_bytes(b"x")?;
        let entry = TreeEntry::lfs("x".into(), added.size, added.file, added.sha256);
        let main = rev(RepoType::Model, "org/m", "main")?;
        let at = main.at(CommitId::parse(C)?);
        store.put_ref(&main, &at.commit, 7, Some("http://hub"))?;
        store.put_repo_tree(&at, &[entry], "http://hub")?;
        store.pin_revision(&at)?;
        let db = &store.inner.db;
        let tree = format!("model/org/m@{C}");
        assert!(db.get(Table::Ref, b"model/org/m@main")?.is_some());
        assert_eq!(
            db.get(Table::Origin, b"rmodel/org/m@main")?.as_deref(),
            Some(&b"http://hub"[..])
        );
        assert!(db.get(Table::Tree, tree.as_bytes())?.is_some());
        assert!(db.get(Table::Origin, format!("t{tree}").as_bytes())?.is_some());
        for kind in ["t", "r"] {
            let root = [format!("{kind}{tree}\0").as_bytes(), added.file.as_bytes()].concat();
            assert!(db.get(Table::Root, &root)?.is_some(), "{kind} root");
        }
        Ok(())
    }

    #[test]
    fn stored_keys_parse_back_to_what_made_them() -> TestResult {
        let key = rev(RepoType::Dataset, "o/d", "refs/pr/3")?;
        assert_eq!(parse_ref_key(&ref_key(&key)), Some(key));
        let at = rev(RepoType::Model, "o/m", "main")?.at(CommitId::parse(&"a".repeat(40))?);
        assert_eq!(parse_tree_key(&tree_key(&at)), Some(at));
        for junk in ["", "model", "model/org@main", "blob/o/m@main", "model/o/m@", "model/o/m@main"]
        {
            assert_eq!(parse_tree_key(junk), None, "{junk}");
        }
        assert_eq!(parse_ref_key("model/o/m"), None);
        Ok(())
    }
}
