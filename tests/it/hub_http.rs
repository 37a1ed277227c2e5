//! The hub server in process, held to the HTTP details clients depend on (ranges, empty files,
//! HEAD sizes, pagination links, public URLs), to a full Xet upload built with our own codecs
//! (concurrent identical xorb uploads, shard, reconstruction, presigned fetch, commit by
//! pointer) and to its send-rate limit.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, ETAG, LINK, RANGE};
use tessera::chunking::chunk_boundaries;
use tessera::format::{CompressionPolicy, Shard, ShardFile, ShardTerm, XorbBuilder};
use tessera::hash::{ChunkHash, Sha256, file_hash, range_hash};
use tessera::server::{AppState, ServerOptions, TokenTable, serve};

pub(crate) const W: &str = "Bearer hf_w";

pub(crate) struct Hub {
    pub(crate) addr: String,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub(crate) async fn hub(options: ServerOptions) -> Hub {
    hub_with_tokens(options, "hf_w alice write\nhf_r alice read\n").await
}

/// A server in process with these tokens (`TOKEN USER SCOPE` lines).
pub(crate) async fn hub_with_tokens(options: ServerOptions, tokens: &str) -> Hub {
    let dir = tempfile::tempdir().unwrap();
    let tokens = TokenTable::parse(tokens).unwrap();
    let state = AppState::open(dir.path(), options.tokens(tokens)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, state, async move {
        let _ = rx.await;
    }));
    Hub { addr, _dir: dir, stop: Some(tx) }
}

pub(crate) fn ndjson(lines: &[serde_json::Value]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

pub(crate) fn inline(path: &str, data: &[u8]) -> serde_json::Value {
    let content = base64::engine::general_purpose::STANDARD.encode(data);
    serde_json::json!({"key": "file", "value": {"path": path, "content": content, "encoding": "base64"}})
}

pub(crate) fn header() -> serde_json::Value {
    serde_json::json!({"key": "header", "value": {"summary": "test", "description": ""}})
}

pub(crate) async fn commit(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    lines: &[serde_json::Value],
) -> serde_json::Value {
    let r = c
        .post(format!("{base}/api/models/{repo}/commit/main"))
        .header("authorization", W)
        .header("content-type", "application/x-ndjson")
        .body(ndjson(lines))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

pub(crate) async fn create(c: &reqwest::Client, base: &str, name: &str) -> serde_json::Value {
    let r = c
        .post(format!("{base}/api/repos/create"))
        .header("authorization", W)
        .json(&serde_json::json!({"name": name}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// GETs `url` with this `Authorization` and decodes the JSON answer.
pub(crate) async fn get_json(c: &reqwest::Client, url: &str, auth: &str) -> serde_json::Value {
    c.get(url).header("authorization", auth).send().await.unwrap().json().await.unwrap()
}

/// A CAS token of one of alice's repos and the CAS URL: `(Authorization value, base URL)`.
pub(crate) async fn cas_token(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    write: bool,
) -> (String, String) {
    let kind = if write { "write" } else { "read" };
    let tok = get_json(c, &format!("{base}/api/models/{repo}/xet-{kind}-token/main"), W).await;
    let bearer = format!("Bearer {}", tok["accessToken"].as_str().unwrap());
    (bearer, tok["casUrl"].as_str().unwrap().to_owned())
}

/// A default server with alice's repo `name`, a client, and a CAS write token of the repo:
/// `(hub, client, Authorization value, CAS URL)`.
pub(crate) async fn cas_repo(name: &str) -> (Hub, reqwest::Client, String, String) {
    let h = hub(ServerOptions::default()).await;
    let c = reqwest::Client::new();
    create(&c, &h.addr, name).await;
    let (bearer, cas) = cas_token(&c, &h.addr, &format!("alice/{name}"), true).await;
    (h, c, bearer, cas)
}

pub(crate) fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_heads_links_and_public_urls() {
    let public = "http://hub.example:1234";
    let h = hub(ServerOptions::default().public_url(Some(format!("{public}/"))).tree_page_size(2))
        .await;
    let c = reqwest::Client::new();
    let created = create(&c, &h.addr, "r").await;
    assert_eq!(created["url"], format!("{public}/alice/r"));
    let data = pseudo_random(300_000, 1);
    let out = commit(
        &c,
        &h.addr,
        "alice/r",
        &[header(), inline("a.bin", &data), inline("empty.txt", b""), inline("d/x.txt", b"x")],
    )
    .await;
    let oid = out["commitOid"].as_str().unwrap().to_owned();
    assert_eq!(out["commitUrl"], format!("{public}/alice/r/commit/{oid}"));

    let url = format!("{}/alice/r/resolve/main/a.bin", h.addr);
    let head = c.head(&url).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], "300000");
    assert_eq!(head.headers()["x-repo-commit"], oid.as_str());
    let etag = head.headers()[ETAG].to_str().unwrap();
    assert_eq!(etag, format!("\"{}\"", tessera::protocol::git_blob_oid(&data)));

    let get = |range: &'static str| c.get(&url).header(RANGE, range).send();
    let r = get("bytes=0-0").await.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()[CONTENT_RANGE], "bytes 0-0/300000");
    assert_eq!(r.bytes().await.unwrap()[..], data[..1]);
    let r = get("bytes=299990-300000").await.unwrap(); // hf-hub 0.5 asks one past the end
    assert_eq!(r.headers()[CONTENT_RANGE], "bytes 299990-299999/300000");
    assert_eq!(r.bytes().await.unwrap()[..], data[299_990..]);
    let r = get("bytes=-5").await.unwrap();
    assert_eq!(r.bytes().await.unwrap()[..], data[299_995..]);
    let r = get("bytes=300000-").await.unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()[CONTENT_RANGE], "bytes */300000");
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap()[..], data[..]);

    let r = c
        .get(format!("{}/alice/r/resolve/main/empty.txt", h.addr))
        .header(RANGE, "bytes=0-0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[CONTENT_RANGE], "bytes */0");
    assert!(r.bytes().await.unwrap().is_empty());
    let r = c.head(format!("{}/alice/r/resolve/main/nope", h.addr)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()["x-error-code"], "EntryNotFound");
    assert_eq!(r.headers()["x-repo-commit"], oid.as_str());

    let r = c
        .get(format!("{}/api/models/alice/r/tree/main?recursive=True&expand=False", h.addr))
        .send()
        .await
        .unwrap();
    let link = r.headers()[LINK].to_str().unwrap().to_owned();
    assert_eq!(
        link,
        format!(
            "<{public}/api/models/alice/r/tree/main?recursive=True&expand=False&cursor=2>; rel=\"next\""
        )
    );
    let page: Vec<serde_json::Value> = r.json().await.unwrap();
    assert_eq!(page.len(), 2);
    let r = c
        .get(format!(
            "{}/api/models/alice/r/tree/main?recursive=True&expand=False&cursor=2",
            h.addr
        ))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get(LINK).is_none());
    let last: Vec<serde_json::Value> = r.json().await.unwrap();
    assert_eq!(last.len(), 2);

    // Revisions as one %-encoded segment; paths with %2F (Python's tree URLs).
    let r =
        c.get(format!("{}/api/models/alice/r/tree/{oid}/d%2Fx.txt", h.addr)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .get(format!("{}/api/models/alice/r/revision/refs%2Fheads%2Fmain", h.addr))
        .send()
        .await
        .unwrap();
    let info: serde_json::Value = r.json().await.unwrap();
    assert_eq!(info["sha"], oid.as_str());
    let tok: serde_json::Value = c
        .get(format!("{}/api/models/alice/r/xet-read-token/main", h.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tok["casUrl"], public);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xet_upload_with_our_codecs() {
    let (h, c, bearer, cas) = cas_repo("x").await;

    let data = pseudo_random(1_500_000, 7);
    let mut builder = XorbBuilder::new(CompressionPolicy::Auto);
    let mut start = 0;
    for end in chunk_boundaries(&data) {
        builder.push(&data[start..end]).unwrap();
        start = end;
    }
    let xorb = builder.finish();
    assert!(xorb.chunks.len() > 3);

    // The same xorb uploaded 8 times at once: every upload succeeds, one inserts it.
    let url = format!("{cas}/v1/xorbs/default/{}", xorb.hash);
    let uploads = (0..8)
        .map(|_| c.post(&url).header("authorization", &bearer).body(xorb.body.clone()).send());
    let mut inserted = 0;
    for r in futures::future::join_all(uploads).await {
        let r = r.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: serde_json::Value = r.json().await.unwrap();
        inserted += usize::from(v["was_inserted"] == true);
    }
    assert_eq!(inserted, 1);
    let r = c.head(&url).header("authorization", &bearer).send().await.unwrap();
    assert_eq!(r.headers()["content-length"], xorb.body.len().to_string().as_str());

    let hashes: Vec<ChunkHash> = xorb.chunks.iter().map(|c| c.hash).collect();
    let leaves: Vec<(ChunkHash, u64)> =
        xorb.chunks.iter().map(|c| (c.hash, u64::from(c.unpacked_len))).collect();
    let n = xorb.chunks.len() as u32;
    let file = ShardFile {
        hash: file_hash(&leaves),
        terms: vec![
            ShardTerm {
                xorb: xorb.hash,
                unpacked_len: leaves[..2].iter().map(|l| l.1 as u32).sum(),
                chunk_start: 0,
                chunk_end: 2,
            },
            ShardTerm {
                xorb: xorb.hash,
                unpacked_len: leaves[2..].iter().map(|l| l.1 as u32).sum(),
                chunk_start: 2,
                chunk_end: n,
            },
        ],
        verification: Some(vec![range_hash(&hashes[..2]), range_hash(&hashes[2..])]),
        sha256: Some(Sha256::of(&data)),
    };
    let mut wrong = file.clone();
    wrong.verification = Some(vec![range_hash(&hashes[..1]), range_hash(&hashes[2..])]);
    for (shard_file, want) in [(wrong, StatusCode::BAD_REQUEST), (file.clone(), StatusCode::OK)] {
        let shard = Shard { files: vec![shard_file], xorbs: Vec::new(), footer: None };
        let r = c
            .post(format!("{cas}/v1/shards"))
            .header("authorization", &bearer)
            .body(shard.encode_upload().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want);
    }

    // Reconstruct the middle of the file through a presigned URL.
    let r = c
        .get(format!("{cas}/v2/reconstructions/{}", file.hash))
        .header("authorization", &bearer)
        .header(RANGE, "bytes=100000-999999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let rec: serde_json::Value = r.json().await.unwrap();
    let fetch = &rec["xorbs"][xorb.hash.to_string()][0];
    let (a, b) = (
        fetch["ranges"][0]["bytes"]["start"].as_u64().unwrap(),
        fetch["ranges"][0]["bytes"]["end"].as_u64().unwrap(),
    );
    let r = c
        .get(fetch["url"].as_str().unwrap())
        .header(RANGE, format!("bytes={a}-{b}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap()[..], xorb.body[a as usize..=b as usize]);

    // Commit it by pointer and read it back through /resolve.
    let line = serde_json::json!({"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": Sha256::of(&data).to_string(), "size": data.len()}});
    commit(&c, &h.addr, "alice/x", &[header(), line]).await;
    let r = c.get(format!("{}/alice/x/resolve/main/w.bin", h.addr)).send().await.unwrap();
    assert_eq!(r.headers()["x-xet-hash"], file.hash.to_string().as_str());
    assert_eq!(r.bytes().await.unwrap()[..], data[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_rate_is_limited() {
    let h = hub(ServerOptions::default().max_bytes_per_sec(Some(1_000_000))).await;
    let c = reqwest::Client::new();
    create(&c, &h.addr, "slow").await;
    let data = pseudo_random(2_500_000, 3);
    commit(&c, &h.addr, "alice/slow", &[header(), inline("big.bin", &data)]).await;
    let t = Instant::now();
    let body = c
        .get(format!("{}/alice/slow/resolve/main/big.bin", h.addr))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let dt = t.elapsed();
    assert_eq!(body.len(), data.len());
    // 1 MB of burst, then 1 MB/s: about 1.5 s.
    assert!(dt > Duration::from_millis(1200) && dt < Duration::from_secs(6), "{dt:?}");
}
