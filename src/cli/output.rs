//! Output helpers: where a command's stdout and stderr go, JSON lines for scripts, human sizes,
//! progress bars only on a terminal.
//!
//! Commands write through [`Io`] rather than `println!`: run by the store's holder on behalf
//! of another `tessera` (see `control`), their output travels back to that process.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use parking_lot::{Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;

/// A boxed output stream.
pub(crate) type Sink = Box<dyn Write + Send>;

/// A command's stdout and stderr.
pub(crate) struct Io {
    out: Mutex<Sink>,
    err: Mutex<Sink>,
    /// Whether `err` is this process's stderr on a terminal (progress bars draw only there).
    terminal: bool,
    /// For a forwarded command: cancelled when its client goes away (Ctrl-C, a closed
    /// terminal), so its transfer stops rather than running on in the holder for nobody.
    hangup: Option<CancellationToken>,
}

impl Io {
    /// This process's stdout and stderr.
    pub(crate) fn process() -> Self {
        let terminal = std::io::stderr().is_terminal();
        Self {
            out: Mutex::new(Box::new(std::io::stdout())),
            err: Mutex::new(Box::new(std::io::stderr())),
            terminal,
            hangup: None,
        }
    }

    /// A forwarded command's streams (never a terminal of ours), and the sign its client left.
    pub(crate) fn forwarded(out: Sink, err: Sink, hangup: CancellationToken) -> Self {
        Self { out: Mutex::new(out), err: Mutex::new(err), terminal: false, hangup: Some(hangup) }
    }

    /// Runs `work` to its end, or until the client of a forwarded command goes away: dropping
    /// a transfer midway is safe (what landed is kept, crash-consistent, and reused by the next
    /// run), and Ctrl-C on a forwarded `pull` must stop it as it stops a local one.
    pub(crate) async fn unless_hung_up<T, E>(
        &self,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> anyhow::Result<T>
    where
        anyhow::Error: From<E>,
    {
        let Some(hangup) = &self.hangup else { return Ok(work.await?) };
        tokio::select! {
            done = work => Ok(done?),
            () = hangup.cancelled() => bail!("cancelled: the command's client went away"),
        }
    }

    /// Stdout, locked.
    pub(crate) fn out(&self) -> MutexGuard<'_, Sink> {
        self.out.lock()
    }

    /// Stderr, locked.
    pub(crate) fn err(&self) -> MutexGuard<'_, Sink> {
        self.err.lock()
    }

    /// Prints one JSON object as a line on stdout.
    pub(crate) fn json_line(&self, value: &impl serde::Serialize) -> anyhow::Result<()> {
        let mut out = self.out();
        serde_json::to_writer(&mut *out, value)?;
        out.write_all(b"\n")?;
        Ok(())
    }

    /// Flushes both streams (buffered forwarded output goes out before the exit status).
    pub(crate) fn flush(&self) -> std::io::Result<()> {
        self.out().flush()?;
        self.err().flush()
    }

    /// A byte progress bar on stderr, hidden unless stderr is our own terminal.
    pub(crate) fn byte_bar(&self, total: u64, what: &str) -> ProgressBar {
        if !self.terminal {
            return ProgressBar::hidden();
        }
        byte_bar(total, what)
    }
}

/// Prints one JSON object as a line on this process's stdout (commands that never run in a
/// holder: `hash`).
pub(crate) fn json_line(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Bytes in binary units, e.g. `2.2 MiB`.
pub(crate) fn size(bytes: u64) -> String {
    indicatif::BinaryBytes(bytes).to_string()
}

/// A byte progress bar on stderr.
fn byte_bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

/// Whether an error is stdout closing under us (`tessera cat | head`): that is success.
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
/// `33554432`, `512K`, `32M`, `1G` (binary units; `MiB`, `GiB` spelled out work too), at least
/// 1 MiB and at most 4 GiB.
pub(crate) fn parse_size(s: &str) -> anyhow::Result<u64> {
    parse_size_within(s, 1 << 20, 4 << 30, "1M to 4G")
}

/// A store's cap: [`parse_size`]'s forms, `T`/`TiB` too, from 64 MiB to 1 PiB.
pub(crate) fn parse_cache_size(s: &str) -> anyhow::Result<u64> {
    parse_size_within(s, 64 << 20, 1 << 50, "64M to 1048576G")
}

fn parse_size_within(s: &str, min: u64, max: u64, range: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().with_context(|| format!("bad size {s:?} (try 32M or 1G)"))?;
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KIB" => 10,
        "M" | "MIB" => 20,
        "G" | "GIB" => 30,
        "T" | "TIB" => 40,
        _ => bail!("bad size unit in {s:?} (use K, M, G or T)"),
    };
    let bytes = n.checked_mul(1 << shift).context("size too large")?;
    if !(min..=max).contains(&bytes) {
        bail!("size {s:?} out of range ({range})");
    }
    Ok(bytes)
}


/// `90`, `90s`, `10m`, `2h`, `1d`.
pub(crate) fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().with_context(|| format!("bad duration {s:?} (try 90s, 10m, 1h)"))?;
    let secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => bail!("bad duration unit in {s:?} (use s, m, h or d)"),
    };
    n.checked_mul(secs).map(Duration::from_secs).context("duration too large")
}
