//! The clients (`pull`, `export`) pointed at a hostile hub (issue 13): a loopback server that
//! answers fixed bodies per path prefix, as a mirror under someone else's control could, and
//! records what it was sent. The real `tessera` binary runs against it.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use super::common::Home;

/// One canned answer: status, extra header lines, body.
type Answer = (u16, String, String);

/// A hostile hub: the first route whose prefix starts the request path answers; others 404.
struct Hostile {
    url: String,
    /// Request lines received, each with whether it carried `Authorization`.
    seen: Arc<Mutex<Vec<(String, bool)>>>,
}

impl Hostile {
    fn start(routes: Vec<(String, Answer)>) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (routes, log, me) = (Arc::new(routes), seen.clone(), url.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (routes, log) = (routes.clone(), log.clone());
                let me = me.clone();
                std::thread::spawn(move || answer(conn, &routes, &log, &me));
            }
        });
        Hostile { url, seen }
    }

    fn requests(&self) -> Vec<(String, bool)> {
        self.seen.lock().unwrap().clone()
    }
}

/// Answers one request; `{SELF}` in a body stands for this server's URL.
fn answer(
    mut conn: TcpStream,
    routes: &[(String, Answer)],
    log: &Mutex<Vec<(String, bool)>>,
    me: &str,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let line = text.lines().next().unwrap_or_default().to_owned();
    let auth = text.lines().any(|l| l.to_ascii_lowercase().starts_with("authorization:"));
    log.lock().unwrap().push((line.clone(), auth));
    let path = line.split(' ').nth(1).unwrap_or_default();
    let (status, headers, body) = routes
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix.as_str()))
        .map_or((404, String::new(), String::new()), |(_, a)| a.clone());
    let body = body.replace("{SELF}", me);
    let reply = format!(
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\ncontent-type: application/json\r\nconnection: close\r\n{headers}\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(reply.as_bytes());
}

fn ok(body: &str) -> Answer {
    (200, String::new(), body.to_owned())
}

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Runs `tessera ARGS` against `endpoint` with a token; returns (exit code, stderr).
fn run(home: &Home, endpoint: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = home
        .cmd(args)
        .env("HF_ENDPOINT", endpoint)
        .env("HF_TOKEN", "hf_precious")
        .env("HF_HOME", home.path().join("hf"))
        .env_remove("HF_HUB_OFFLINE")
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Issue 13 item 13: the token never follows a pagination link to another origin.
#[test]
fn the_token_stays_on_the_endpoint() {
    let elsewhere = Hostile::start(vec![("/".into(), ok("[]"))]);
    let link = format!(
        "link: <{}/api/models/o/n/tree/{COMMIT}?cursor=2>; rel=\"next\"\r\n",
        elsewhere.url
    );
    let hub = Hostile::start(vec![
        (
            "/api/models/o/n/revision/".into(),
            ok(&format!("{{\"id\":\"o/n\",\"sha\":\"{COMMIT}\"}}")),
        ),
        ("/api/models/o/n/tree/".into(), (200, link, "[]".into())),
    ]);
    let home = Home::new();
    let (code, stderr) = run(&home, &hub.url, &["pull", "o/n"]);
    assert!(hub.requests().iter().all(|(_, auth)| *auth), "the endpoint gets the token");
    let leaked: Vec<_> = elsewhere.requests().into_iter().filter(|(_, auth)| *auth).collect();
    assert!(leaked.is_empty(), "token sent to another origin: {leaked:?}");
    assert!(matches!(code, Some(1 | 2)), "{code:?}: {stderr}");
}

/// Issue 13 item 10: a commit id from the hub never becomes a path outside the HF cache.
#[test]
fn a_hostile_commit_id_cannot_leave_the_cache() {
    let evil = "../../../../evil";
    let oid = tessera::protocol::git_blob_oid(b"hi\n");
    let tree = format!("[{{\"type\":\"file\",\"oid\":\"{oid}\",\"size\":3,\"path\":\"a.txt\"}}]");
    let hub = Hostile::start(vec![
        ("/api/models/o/n/revision/".into(), ok(&format!("{{\"id\":\"o/n\",\"sha\":\"{evil}\"}}"))),
        ("/api/models/o/n/tree/".into(), ok(&tree)),
        ("/o/n/resolve/".into(), ok("hi\n")),
    ]);
    let home = Home::new();
    let base = home.path().join("a");
    let cache = base.join("b/cache");
    std::fs::create_dir_all(&cache).unwrap();
    let (code, stderr) =
        run(&home, &hub.url, &["export", "--hf-cache", cache.to_str().unwrap(), "o/n"]);
    assert!(!base.join("evil").exists(), "export wrote outside the cache");
    assert!(matches!(code, Some(1 | 2)), "{code:?}: {stderr}");
}

/// Issue 13 item 11: numbers of a reconstruction are bounded before they are used; a byte end
/// of 2^64-1 is an error, not a panic.
#[test]
fn an_unbounded_reconstruction_is_an_error() {
    let hash = "ab".repeat(32);
    let oid = tessera::protocol::git_blob_oid(b"x");
    let size = 20_000_000;
    let tree = format!(
        "[{{\"type\":\"file\",\"oid\":\"{oid}\",\"size\":{size},\"path\":\"w.bin\",\"lfs\":{{\"oid\":\"{hash}\",\"size\":{size},\"pointerSize\":130}},\"xetHash\":\"{hash}\"}}]"
    );
    let term = format!(
        "{{\"hash\":\"{hash}\",\"unpacked_length\":{size},\"range\":{{\"start\":0,\"end\":1}}}}"
    );
    let range = format!(
        "{{\"chunks\":{{\"start\":0,\"end\":1}},\"bytes\":{{\"start\":0,\"end\":{}}}}}",
        u64::MAX
    );
    let recon = format!(
        "{{\"offset_into_first_range\":0,\"terms\":[{term}],\"xorbs\":{{\"{hash}\":[{{\"url\":\"{{SELF}}/x\",\"ranges\":[{range}]}}]}}}}"
    );
    let hub = Hostile::start(vec![
        (
            "/api/models/o/n/revision/".into(),
            ok(&format!("{{\"id\":\"o/n\",\"sha\":\"{COMMIT}\"}}")),
        ),
        ("/api/models/o/n/tree/".into(), ok(&tree)),
        (
            "/api/models/o/n/xet-read-token/".into(),
            ok("{\"accessToken\":\"t\",\"exp\":9999999999,\"casUrl\":\"{SELF}\"}"),
        ),
        ("/v2/reconstructions/".into(), ok(&recon)),
        ("/x".into(), (206, String::new(), "x".repeat(100))),
    ]);
    let home = Home::new();
    let (code, stderr) = run(&home, &hub.url, &["pull", "o/n"]);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(matches!(code, Some(1 | 2)), "{code:?}: {stderr}");
    assert!(hub.requests().iter().any(|(line, _)| line.contains("/v2/reconstructions/")));
}

/// A real hub with `org/real` holding `a.txt` = "real\n"; its commit id; and a tree listing
/// that names `a.txt` = "hacked\n" for a hostile hub to answer with.
#[cfg(feature = "mount")]
fn real_repo_and_hacked_tree(py: &std::path::Path, data: &std::path::Path) -> (crate::common::Hub, String, String) {
    let real = crate::common::Hub::start(&data.join("hub"), &[]);
    let folder = data.join("real");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("a.txt"), "real\n").unwrap();
    let spec = format!("{}=", folder.display());
    let seeded =
        crate::common::py_script(py, &real.url, "seed_repo.py", &["org/real", crate::common::WRITE_TOKEN, &spec]);
    let line: serde_json::Value = serde_json::from_str(seeded.lines().next().unwrap()).unwrap();
    let commit = line["commit"].as_str().unwrap().to_owned();
    let oid = tessera::protocol::git_blob_oid(b"hacked\n");
    let tree = format!("[{{\"type\":\"file\",\"oid\":\"{oid}\",\"size\":7,\"path\":\"a.txt\"}}]");
    (real, commit, tree)
}

/// A store that pulled `repo` from a hostile hub claiming it is at `commit` with `tree`
/// (whose files all read "hacked\n"), and that hub.
#[cfg(feature = "mount")]
fn pulled_from_a_hostile_hub(repo: &str, commit: &str, tree: &str) -> (Home, Hostile) {
    let hostile = Hostile::start(vec![
        (format!("/api/models/{repo}/revision/"), ok(&format!("{{\"id\":\"{repo}\",\"sha\":\"{commit}\"}}"))),
        (format!("/api/models/{repo}/tree/"), ok(tree)),
        (format!("/{repo}/resolve/"), ok("hacked\n")),
    ]);
    let home = Home::new();
    let (code, stderr) = run(&home, &hostile.url, &["pull", repo]);
    assert_eq!(code, Some(0), "the hostile pull itself is well-formed: {stderr}");
    (home, hostile)
}

/// Issue 13 item 12: a hostile hub claiming that its repo is at another repo's commit id cannot
/// make a later mount of the real repo show its tree (trees from the network are kept per repo).
#[cfg(feature = "mount")]
#[test]
fn a_claimed_commit_id_cannot_stand_in_for_another_repos_tree() {
    use crate::require;
    require!(crate::mount::fuse_ready(), "needs root, /dev/fuse and fusermount3");
    let py = require!(crate::common::python(), "no venv");
    let data = tempfile::tempdir().unwrap();
    let (real, commit, tree) = real_repo_and_hacked_tree(&py, data.path());
    let (home, _hostile) = pulled_from_a_hostile_hub("evil/x", &commit, &tree);
    let mnt = data.path().join("models");
    let _mount = crate::mount::MountProc::start(&home, &mnt, &["--endpoint", &real.url]);
    let got = std::fs::read_to_string(mnt.join("org/real@main/a.txt")).unwrap();
    assert_eq!(got, "real\n", "the real repo's file was served from the hostile tree");
}

/// Issue 13 item 12, the same repo id: a hostile mirror claiming the real repo's own id and
/// commit id, pulled first, cannot make a later mount from the real hub show its tree (trees
/// and refs are kept per origin); offline, the store shows what its own pulls brought.
#[cfg(feature = "mount")]
#[test]
fn a_mirror_posing_as_the_same_repo_cannot_poison_the_real_hubs_tree() {
    use crate::require;
    require!(crate::mount::fuse_ready(), "needs root, /dev/fuse and fusermount3");
    let py = require!(crate::common::python(), "no venv");
    let data = tempfile::tempdir().unwrap();
    let (real, commit, tree) = real_repo_and_hacked_tree(&py, data.path());
    let (home, _hostile) = pulled_from_a_hostile_hub("org/real", &commit, &tree);
    let mnt = data.path().join("models");
    let mount = crate::mount::MountProc::start(&home, &mnt, &["--endpoint", &real.url]);
    for rev in ["main", commit.as_str()] {
        let got = std::fs::read_to_string(mnt.join(format!("org/real@{rev}/a.txt"))).unwrap();
        assert_eq!(got, "real\n", "@{rev} was served from the hostile mirror's tree");
    }
    drop(mount);
}
