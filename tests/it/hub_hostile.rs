//! The hub server against hostile callers (issue 13): each test is one attack that worked
//! before, held against the in-process server and real HTTP.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::RANGE;
use tessera::format::{CHUNK_HEADER_LEN, ChunkHeader, CompressionPolicy, CompressionScheme};
use tessera::format::{Shard, ShardFile, ShardTerm, XorbBuilder};
use tessera::hash::{ChunkHash, Sha256, chunk_hash, file_hash, range_hash, xorb_hash};
use tessera::server::{AppState, ServerOptions, TokenTable, serve};

use super::hub_http::{
    W, cas_repo, cas_token, commit, create, get_json, header, hub, hub_with_tokens, inline,
    pseudo_random,
};

async fn post(c: &reqwest::Client, url: &str, bearer: &str, body: Vec<u8>) -> StatusCode {
    c.post(url).header("authorization", bearer).body(body).send().await.unwrap().status()
}

/// Issue 13 item 1: a presigned fetch URL serves each signed byte at most once per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_fetch_refuses_repeated_and_overlapping_ranges() {
    let (_h, c, bearer, cas) = cas_repo("pub").await;
    let file = upload_file(&c, &cas, &bearer, &pseudo_random(300_000, 11)).await;
    let rec = get_json(&c, &format!("{cas}/v2/reconstructions/{file}"), &bearer).await;
    let fetch = rec["xorbs"].as_object().unwrap().values().next().unwrap()[0].clone();
    let url = fetch["url"].as_str().unwrap();
    let a = fetch["ranges"][0]["bytes"]["start"].as_u64().unwrap();
    let b = fetch["ranges"][0]["bytes"]["end"].as_u64().unwrap();
    assert!(b - a > 100);
    let get = |range: String| c.get(url).header(RANGE, range).send();
    let repeated = std::iter::repeat_n(format!("{a}-{b}"), 127).collect::<Vec<_>>().join(",");
    for bad in [format!("bytes={repeated}"), format!("bytes={a}-{},{}-{}", a + 50, a + 10, a + 60)]
    {
        let r = get(bad).await.unwrap();
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert!(r.bytes().await.unwrap().len() < 1000);
    }
    // Disjoint ranges are still served, streamed as multipart with an exact length.
    let r = get(format!("bytes={a}-{},{}-{}", a + 9, a + 20, a + 29)).await.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    let len: usize = r.headers()["content-length"].to_str().unwrap().parse().unwrap();
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), len);
    assert_eq!(body.windows(13).filter(|w| *w == b"Content-Range").count(), 2);
}

/// Uploads `data` as one xorb of 100 kB chunks and a shard naming it; returns the file hash.
async fn upload_file(c: &reqwest::Client, cas: &str, bearer: &str, data: &[u8]) -> String {
    let mut builder = XorbBuilder::new(CompressionPolicy::Auto);
    for piece in data.chunks(100_000) {
        builder.push(piece).unwrap();
    }
    let x = builder.finish();
    let url = format!("{cas}/v1/xorbs/default/{}", x.hash);
    assert_eq!(post(c, &url, bearer, x.body).await, StatusCode::OK);
    let leaves: Vec<(ChunkHash, u64)> =
        x.chunks.iter().map(|c| (c.hash, u64::from(c.unpacked_len))).collect();
    let n = x.chunks.len() as u32;
    let term =
        ShardTerm { xorb: x.hash, unpacked_len: data.len() as u32, chunk_start: 0, chunk_end: n };
    let shard = shard_of(vec![term], &leaves, Some(Sha256::of(data)));
    assert_eq!(post(c, &format!("{cas}/v1/shards"), bearer, shard).await, StatusCode::OK);
    file_hash(&leaves).to_string()
}

/// `n` chunks of `len` bytes of 7s, stored uncompressed, written by hand.
fn raw_xorb(n: usize, len: usize) -> (Vec<u8>, tessera::hash::XorbHash) {
    let header = ChunkHeader {
        scheme: CompressionScheme::None,
        compressed_len: len as u32,
        uncompressed_len: len as u32,
    };
    let mut body = Vec::with_capacity(n * (CHUNK_HEADER_LEN + len));
    for _ in 0..n {
        body.extend_from_slice(&header.to_bytes());
        body.extend(std::iter::repeat_n(7u8, len));
    }
    let leaf = (chunk_hash(&vec![7u8; len]), len as u64);
    (body, xorb_hash(&vec![leaf; n]))
}

/// Issue 13 item 3: the Xet limits of xorbs hold at upload (their hashes are right, so only
/// the limits can refuse them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xorbs_past_the_xet_limits_are_refused() {
    let (_h, c, bearer, cas) = cas_repo("x").await;
    for (n, len) in [(100_000, 0), (8193, 1), (513, 131_072)] {
        let (body, hash) = raw_xorb(n, len);
        let status = post(&c, &format!("{cas}/v1/xorbs/default/{hash}"), &bearer, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{n} chunks of {len} bytes");
    }
    let (body, hash) = raw_xorb(8192, 1);
    assert_eq!(
        post(&c, &format!("{cas}/v1/xorbs/default/{hash}"), &bearer, body).await,
        StatusCode::OK
    );
}

/// A one-file shard over `terms`, with verification entries and the given sha256 claim.
fn shard_of(terms: Vec<ShardTerm>, leaves: &[(ChunkHash, u64)], sha256: Option<Sha256>) -> Vec<u8> {
    let hashes: Vec<ChunkHash> = leaves.iter().map(|l| l.0).collect();
    let mut verification = Vec::new();
    let mut at = 0;
    for t in &terms {
        let n = (t.chunk_end - t.chunk_start) as usize;
        verification.push(range_hash(&hashes[at..at + n]));
        at += n;
    }
    let file =
        ShardFile { hash: file_hash(leaves), terms, verification: Some(verification), sha256 };
    Shard { files: vec![file], xorbs: Vec::new(), footer: None }.encode_upload().unwrap()
}

/// Issue 13 item 3: a small shard cannot make the server verify millions of chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_referencing_too_many_chunks_are_refused() {
    let (_h, c, bearer, cas) = cas_repo("s").await;
    let (body, xorb) = raw_xorb(8192, 1);
    assert_eq!(
        post(&c, &format!("{cas}/v1/xorbs/default/{xorb}"), &bearer, body).await,
        StatusCode::OK
    );
    let n = 130; // 130 x 8192 chunk references, over the limit of 2^20
    let term = ShardTerm { xorb, unpacked_len: 8192, chunk_start: 0, chunk_end: 8192 };
    let leaves = vec![(chunk_hash(&[7]), 1u64); 8192 * n];
    let shard = shard_of(vec![term; n], &leaves, None);
    assert!(shard.len() < 20_000);
    let t = Instant::now();
    let status = post(&c, &format!("{cas}/v1/shards"), &bearer, shard).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

/// Issue 13 item 2: a shard's sha256 claim is checked, so no repo can bind another's sha256
/// (which LFS downloads and commits by pointer resolve) to different bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_cannot_claim_another_files_sha256() {
    let h = hub_with_tokens(ServerOptions::default(), "hf_w alice write\nhf_b bob write\n").await;
    let c = reqwest::Client::new();
    create(&c, &h.addr, "a").await;
    let (bearer, cas) = cas_token(&c, &h.addr, "alice/a", true).await;
    let data = pseudo_random(200_000, 5);
    let mut builder = XorbBuilder::new(CompressionPolicy::Auto);
    builder.push(&data[..100_000]).unwrap();
    builder.push(&data[100_000..]).unwrap();
    let x = builder.finish();
    assert_eq!(
        post(&c, &format!("{cas}/v1/xorbs/default/{}", x.hash), &bearer, x.body).await,
        StatusCode::OK
    );
    let leaves: Vec<(ChunkHash, u64)> =
        x.chunks.iter().map(|c| (c.hash, u64::from(c.unpacked_len))).collect();
    let term = ShardTerm { xorb: x.hash, unpacked_len: 200_000, chunk_start: 0, chunk_end: 2 };
    // Bob's file: its sha256 is what alice's shard claims for her bytes.
    let victim = b"bob's weights".to_vec();
    let claim = Sha256::of(&victim);
    let shard = shard_of(vec![term], &leaves, Some(claim));
    assert_eq!(
        post(&c, &format!("{cas}/v1/shards"), &bearer, shard).await,
        StatusCode::BAD_REQUEST
    );
    let shard = shard_of(vec![term], &leaves, Some(Sha256::of(&data)));
    assert_eq!(post(&c, &format!("{cas}/v1/shards"), &bearer, shard).await, StatusCode::OK);
    // Bob commits his file, and the LFS batch API serves his bytes for his sha256.
    let bob = "Bearer hf_b";
    let r = c
        .post(format!("{}/api/repos/create", h.addr))
        .header("authorization", bob)
        .json(&serde_json::json!({"name": "b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let lines = super::hub_http::ndjson(&[header(), inline("w.bin", &victim)]);
    let r = c
        .post(format!("{}/api/models/bob/b/commit/main", h.addr))
        .header("authorization", bob)
        .body(lines)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c.get(format!("{}/bob/b/resolve/main/w.bin", h.addr)).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap()[..], victim[..]);
}

/// Issue 13 item 9: namespaces are case-insensitive, so `Alice` is alice's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_namespace_is_refused_in_any_case() {
    let h = hub_with_tokens(ServerOptions::default(), "hf_w alice write\nhf_b bob write\n").await;
    let c = reqwest::Client::new();
    create(&c, &h.addr, "x").await;
    let make = |token: &'static str, org: &'static str| {
        c.post(format!("{}/api/repos/create", h.addr))
            .header("authorization", token)
            .json(&serde_json::json!({"name": "y", "organization": org}))
            .send()
    };
    for org in ["Alice", "ALICE", "alice"] {
        assert_eq!(
            make("Bearer hf_b", org).await.unwrap().status(),
            StatusCode::FORBIDDEN,
            "{org}"
        );
    }
    let r = make(W, "ALICE").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["name"], "alice/y");
}

/// Sends request headers announcing a body that never comes; returns the status line and how
/// long the answer took.
fn head_only(addr: &str, request: &str) -> (String, Duration) {
    let mut s = std::net::TcpStream::connect(addr.trim_start_matches("http://")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t = Instant::now();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    (String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_owned(), t.elapsed())
}

/// Issue 13 item 4: a caller who may not see a private repo is refused before its body is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_repos_refuse_before_reading_the_body() {
    let h = hub(ServerOptions::default()).await;
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{}/api/repos/create", h.addr))
        .header("authorization", W)
        .json(&serde_json::json!({"name": "secret", "private": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let addr = h.addr.clone();
    let (batch, paths) = tokio::task::spawn_blocking(move || {
        let host = addr.trim_start_matches("http://");
        let req = |path: &str| format!("POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 16000000\r\n\r\n{{");
        (
            head_only(&addr, &req("/alice/secret.git/info/lfs/objects/batch")),
            head_only(&addr, &req("/api/models/alice/secret/paths-info/main")),
        )
    })
    .await
    .unwrap();
    for (line, took) in [batch, paths] {
        assert!(line.contains(" 401 "), "{line:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }
}

/// A server on a free port whose `serve` future can be awaited: (address, stop, task).
async fn own_server(
    options: ServerOptions,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let tokens = TokenTable::parse("hf_w alice write\n").unwrap();
    let state = AppState::open(dir.path(), options.tokens(tokens)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, state, async move {
        let _ = rx.await;
    }));
    (addr, tx, task, dir)
}

/// Issue 13 item 6: an unfinished request line is cut off, and shutdown is bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_shutdown_is_bounded() {
    let secs = Duration::from_secs;
    let options = ServerOptions::default().timeouts(secs(1), secs(1), secs(2));
    let (addr, stop, task, _dir) = own_server(options).await;
    let a = addr.clone();
    let took = tokio::task::spawn_blocking(move || head_only(&a, "GET /heal").1).await.unwrap();
    assert!(took < secs(5), "an unfinished request line held the connection {took:?}");
    // One connection stays half-open while the server is asked to stop.
    let mut stuck = std::net::TcpStream::connect(addr.trim_start_matches("http://")).unwrap();
    stuck
        .write_all(b"POST /api/repos/create HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(secs(10), task).await.expect("shutdown hung").unwrap().unwrap();
    assert!(t.elapsed() < secs(5), "{:?}", t.elapsed());
}

/// Issue 13 items 5 and 7: large uploads take a slot each; the others wait for one, and reads
/// are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_wait_for_a_slot_and_reads_go_on() {
    let h = hub(ServerOptions::default().max_concurrent_uploads(1)).await;
    let c = reqwest::Client::new();
    create(&c, &h.addr, "u").await;
    // A commit whose body trickles holds the only slot.
    let host = h.addr.trim_start_matches("http://").to_owned();
    let mut slow = std::net::TcpStream::connect(&host).unwrap();
    write!(slow, "POST /api/models/alice/u/commit/main HTTP/1.1\r\nHost: {host}\r\nAuthorization: {W}\r\nContent-Type: application/x-ndjson\r\nContent-Length: 1000\r\n\r\n{{").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = [header(), inline("f.txt", b"hi")];
    let fast = commit(&c, &h.addr, "alice/u", &lines);
    let mut fast = std::pin::pin!(fast);
    assert!(
        tokio::time::timeout(Duration::from_secs(1), fast.as_mut()).await.is_err(),
        "a second upload ran beside the first"
    );
    let r = tokio::time::timeout(
        Duration::from_secs(2),
        c.get(format!("{}/api/models/alice/u", h.addr)).send(),
    )
    .await;
    assert_eq!(r.expect("reads are blocked").unwrap().status(), StatusCode::OK);
    drop(slow);
    tokio::time::timeout(Duration::from_secs(10), fast).await.expect("the slot was not given back");
}
