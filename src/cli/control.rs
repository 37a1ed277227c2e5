//! The control socket: how every command works while a long-running process holds the store.
//!
//! RocksDB admits one process per store. `tessera mount` and `tessera hub serve` hold theirs for
//! weeks, so they serve `<home>/run/control.sock` (a directory and socket only the owner can
//! reach). A command that needs the store first tries that socket: when a holder answers, the
//! command's arguments, working directory and Hugging Face environment go to it, the holder
//! parses them and runs the very same command function against its open store, and stdout,
//! stderr and the exit status stream back. There is one code path per command; only where its
//! output goes differs.
//!
//! Whoever opens the store also writes `<home>/run/holder.json` (pid, command line), so that
//! when the store is locked and no holder answers, the error names the process that holds it.
//! A holder killed with SIGKILL leaves its socket behind: connecting is then refused, the
//! command opens the store itself (the kernel released RocksDB's lock with the process), and the
//! next holder replaces the socket.
//!
//! Wire format: the client sends one JSON line ([`Request`]); the holder answers with frames of
//! `[kind: u8][length: u32 big-endian][payload]`: [`ACCEPTED`] once, then [`STDOUT`] and
//! [`STDERR`] pieces, then [`EXIT`] with one byte, the exit status.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::env::Env;
use super::output::Io;
use super::status::HolderStatus;
use crate::store::Store;

/// Frame: the holder took the request and is running it.
const ACCEPTED: u8 = 0;
/// Frame: bytes for the client's stdout.
const STDOUT: u8 = 1;
/// Frame: bytes for the client's stderr.
const STDERR: u8 = 2;
/// Frame: the exit status, one byte; the last frame.
const EXIT: u8 = 3;
/// Largest payload of one frame, and of a request line.
const MAX_FRAME: usize = 1 << 20;
/// How long a client waits for a holder to accept: a holder that is stopped (SIGSTOP) or
/// wedged still lets the kernel complete the connection, so silence is the only sign.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);

/// A command sent to the holder.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Request {
    /// The full command line, program name first, as the client received it.
    pub(crate) argv: Vec<OsString>,
    /// The client's working directory (relative paths in `argv` are relative to it).
    pub(crate) cwd: OsString,
    /// The client's Hugging Face and Tessera environment ([`Env::forwarded`]).
    pub(crate) env: Env,
}

/// Who holds a store: written by every process that opens one.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct HolderRecord {
    /// Its process id.
    pub(crate) pid: u32,
    /// Its command line.
    pub(crate) command: String,
    /// Whether it serves the control socket (a mount or hub server) or is a one-off command.
    pub(crate) serves_commands: bool,
}

/// `<home>/run`, owner-only.
fn run_dir(home: &Path) -> PathBuf {
    home.join("run")
}

/// The control socket of a store.
pub(crate) fn socket_path(home: &Path) -> PathBuf {
    run_dir(home).join("control.sock")
}

fn record_path(home: &Path) -> PathBuf {
    run_dir(home).join("holder.json")
}

/// Notes that this process holds the store (called right after the store opened).
pub(crate) fn write_record(home: &Path, serves_commands: bool) -> anyhow::Result<()> {
    let dir = run_dir(home);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {}", dir.display()))?;
    let (pid, command) = identity();
    let record = HolderRecord { pid, command, serves_commands };
    let tmp = dir.join(format!("holder.json.{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec(&record)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, record_path(home)).context("recording the store's holder")
}

/// The recorded holder of a store, if its process is still alive.
pub(crate) fn live_holder(home: &Path) -> Option<HolderRecord> {
    let bytes = std::fs::read(record_path(home)).ok()?;
    let record: HolderRecord = serde_json::from_slice(&bytes).ok()?;
    let alive = Path::new("/proc").join(record.pid.to_string()).exists()
        && record.pid != std::process::id();
    alive.then_some(record)
}

/// What to say when the store is locked: who holds it, and why this command could not go
/// through it.
pub(crate) fn held_message(home: &Path) -> String {
    let answers = || UnixStream::connect(socket_path(home)).is_ok();
    match live_holder(home) {
        // A second mount or hub server on one store: those never run through the holder.
        Some(h) if h.serves_commands && answers() => format!(
            "the store is held by pid {} (`{}`); one mount or hub server per store (other commands run through it)",
            h.pid, h.command
        ),
        Some(h) if h.serves_commands => format!(
            "the store is held by pid {} (`{}`), whose control socket {} does not answer",
            h.pid,
            h.command,
            socket_path(home).display()
        ),
        Some(h) => format!(
            "the store is in use by pid {} (`{}`); try again when it has finished",
            h.pid, h.command
        ),
        None => "the store is in use by another process".to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Client side.

/// Runs this process's command in the store's holder, if one answers on the control socket.
/// `Ok(None)`: nobody serves the socket (no holder, or one killed without cleaning up); the
/// caller runs the command itself.
pub(crate) fn forward(home: &Path, env: &Env) -> anyhow::Result<Option<u8>> {
    let Ok(stream) = UnixStream::connect(socket_path(home)) else { return Ok(None) };
    let request = Request {
        argv: std::env::args_os().collect(),
        cwd: std::env::current_dir().context("reading the working directory")?.into_os_string(),
        env: env.forwarded(),
    };
    let holder = || held_message(home);
    let mut line = serde_json::to_vec(&request)?;
    line.push(b'\n');
    (&stream).write_all(&line).with_context(holder)?;
    stream.set_read_timeout(Some(ACCEPT_TIMEOUT))?;
    let mut reader = BufReader::new(&stream);
    match read_frame(&mut reader).with_context(holder)? {
        Some((ACCEPTED, _)) => {}
        _ => anyhow::bail!("{}: it closed the connection", holder()),
    }
    stream.set_read_timeout(None)?;
    relay(&mut reader)
        .with_context(|| format!("lost the connection to the store's holder: {}", holder()))
        .map(Some)
}

/// Copies the holder's output frames to our stdout and stderr until the exit status.
fn relay(reader: &mut impl Read) -> anyhow::Result<u8> {
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr());
    loop {
        let (kind, payload) =
            read_frame(reader)?.context("connection closed before the exit status")?;
        let written = match kind {
            STDOUT => out.write_all(&payload),
            STDERR => err.write_all(&payload),
            EXIT => {
                out.flush()?;
                return Ok(payload.first().copied().unwrap_or(2));
            }
            other => anyhow::bail!("unknown frame kind {other}"),
        };
        match written {
            // Our reader went away (`tessera cat | head`): as for a local command, success;
            // dropping the connection stops the holder's side.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(0),
            other => other?,
        }
    }
}

/// One frame, or `None` at a clean end of stream.
fn read_frame(reader: &mut impl Read) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match reader.read_exact(&mut head) {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        other => other?,
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload)?;
    Ok(Some((head[0], payload)))
}

// ---------------------------------------------------------------------------------------------
// Holder side.

/// A served control socket; dropping it removes the socket file.
pub(crate) struct ControlServer {
    path: PathBuf,
    stop: Arc<std::sync::atomic::AtomicBool>,
    accepting: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ControlServer {
    /// Stops accepting and waits for the accept loop to end, so that it no longer holds the
    /// store: the holder closes its store before it exits (see `Store::close`).
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the loop blocked in accept(); it sees the flag and ends.
        let woke = UnixStream::connect(&self.path).is_ok();
        if let Some(t) = self.accepting.take().filter(|_| woke) {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What a holder lends the commands it runs: its open store and its status.
#[derive(Clone)]
pub(crate) struct Held {
    pub(crate) store: Store,
    pub(crate) status: Arc<dyn HolderStatus>,
    /// Forwarded commands hold it shared, `gc` alone: gc deletes what no root holds yet, which
    /// includes what a running `pull` or `add` has written and not yet rooted.
    gc_gate: Arc<parking_lot::RwLock<()>>,
}

impl Held {
    /// What a holder lends: its store and status.
    pub(crate) fn new(store: Store, status: Arc<dyn HolderStatus>) -> Self {
        Self { store, status, gc_gate: Arc::default() }
    }

    /// Runs `f` alone among forwarded commands (`Some(true)`), beside the others
    /// (`Some(false)`), or ungated (`None`: commands that only read counters).
    pub(crate) fn gated<T>(&self, exclusive: Option<bool>, f: impl FnOnce() -> T) -> T {
        match exclusive {
            Some(true) => {
                let _alone = self.gc_gate.write();
                f()
            }
            Some(false) => {
                let _beside = self.gc_gate.read();
                f()
            }
            None => f(),
        }
    }
}

/// Runs one forwarded command against the holder's store, writing to `io`; returns the exit
/// status. (`cli::run_forwarded`: parsing and dispatch are the CLI's own.)
pub(crate) type Runner = fn(Request, Held, Io) -> u8;

/// This process as `describe` shows it: pid and command line.
pub(crate) fn identity() -> (u32, String) {
    let command =
        std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ");
    (std::process::id(), command)
}

/// Serves the control socket of a holder's store on a thread of its own (one more per
/// connection). Called by the holder after it opened the store, so any socket found is a dead
/// holder's.
pub(crate) fn serve(held: Held, runner: Runner) -> anyhow::Result<ControlServer> {
    let home = held.store.home().to_path_buf();
    write_record(&home, true)?;
    let path = socket_path(&home);
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let accepting = std::thread::Builder::new()
        .name("control".into())
        .spawn(move || accept_loop(listener, held, runner, &stopped))?;
    Ok(ControlServer { path, stop, accepting: Some(accepting) })
}

fn accept_loop(
    listener: UnixListener,
    held: Held,
    runner: Runner,
    stop: &std::sync::atomic::AtomicBool,
) {
    for conn in listener.incoming() {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "control socket: accept failed");
                continue;
            }
        };
        let held = held.clone();
        let spawned = std::thread::Builder::new().name("control-cmd".into()).spawn(move || {
            if let Err(e) = handle(conn, held, runner) {
                tracing::info!(error = %e, "control socket: a forwarded command ended early");
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "control socket: cannot start a thread");
        }
    }
}

/// Reads one request, runs it, streams its output and exit status back.
fn handle(conn: UnixStream, held: Held, runner: Runner) -> anyhow::Result<()> {
    conn.set_read_timeout(Some(ACCEPT_TIMEOUT))?;
    let mut line = Vec::new();
    BufReader::new((&conn).take(MAX_FRAME as u64)).read_until(b'\n', &mut line)?;
    let request: Request = serde_json::from_slice(&line).context("malformed request")?;
    tracing::info!(argv = ?request.argv, "control socket: running a forwarded command");
    let hangup = watch_for_hangup(&conn)?;
    let sock = Arc::new(Mutex::new(conn));
    write_frame(&sock, ACCEPTED, &[])?;
    let out = BufWriter::with_capacity(256 << 10, FrameWriter { sock: sock.clone(), kind: STDOUT });
    let err = FrameWriter { sock: sock.clone(), kind: STDERR };
    let code = runner(request, held, Io::forwarded(Box::new(out), Box::new(err), hangup.clone()));
    if hangup.is_cancelled() {
        tracing::info!(
            code,
            "control socket: the client of a forwarded command went away; stopped it"
        );
    }
    write_frame(&sock, EXIT, &[code])?;
    // Ends the watcher's read at once, whether or not the client has closed yet.
    let _ = sock.lock().shutdown(std::net::Shutdown::Read);
    Ok(())
}

/// The client sends nothing after its request, so a read that ends means it went away.
fn watch_for_hangup(conn: &UnixStream) -> anyhow::Result<CancellationToken> {
    let (watched, hangup) = (conn.try_clone()?, CancellationToken::new());
    watched.set_read_timeout(None)?;
    let cancel = hangup.clone();
    std::thread::Builder::new().name("control-hangup".into()).spawn(move || {
        let mut byte = [0u8; 1];
        while let Ok(1..) = (&watched).read(&mut byte) {}
        cancel.cancel();
    })?;
    Ok(hangup)
}

fn write_frame(sock: &Mutex<UnixStream>, kind: u8, payload: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(std::io::Error::other)?;
    let mut head = [kind, 0, 0, 0, 0];
    head[1..].copy_from_slice(&len.to_be_bytes());
    let mut s = sock.lock();
    s.write_all(&head)?;
    s.write_all(payload)
}

/// Stdout or stderr of a forwarded command: each write becomes frames on the socket.
struct FrameWriter {
    sock: Arc<Mutex<UnixStream>>,
    kind: u8,
}

impl Write for FrameWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(MAX_FRAME);
        write_frame(&self.sock, self.kind, &buf[..n])?;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused() {
        let (a, b) = UnixStream::pair().expect("socket pair");
        let sock = Mutex::new(a);
        write_frame(&sock, STDOUT, b"hello").expect("write");
        write_frame(&sock, EXIT, &[3]).expect("write");
        drop(sock);
        let mut r = BufReader::new(b);
        assert_eq!(read_frame(&mut r).expect("read"), Some((STDOUT, b"hello".to_vec())));
        assert_eq!(read_frame(&mut r).expect("read"), Some((EXIT, vec![3])));
        assert_eq!(read_frame(&mut r).expect("read"), None);
        let huge = [STDOUT, 0xff, 0xff, 0xff, 0xff];
        assert!(read_frame(&mut &huge[..]).is_err());
    }
}
