//! Lazy bytes: fetching missing ranges through the [`RemoteSource`] with a deadline, and
//! sequential prefetch.
//!
//! Every remote request is a *flight* over a byte range of one file. A read that misses waits
//! for a flight covering its range (a prefetch window already on its way, or one it starts),
//! never longer than the fetch timeout, so a remote that hangs costs a reader `EIO` after a
//! bounded time rather than a stuck process. Flights run on their own threads: a foreground
//! flight on a thread of its own (so the reader can give up on it), prefetch windows on a small
//! shared pool.
//!
//! A read at offset 0 starts the file's prefetch: windows of `prefetch_window` bytes from the
//! start, `prefetch_depth` of them in flight (one until the first has arrived), each skipped
//! without asking the remote when the store already holds it. Other reads fetch only the range
//! they touch.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak, mpsc};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::errno::Errno;
use super::vfs::{FileNode, VfsOptions};
use crate::store::{FileRecord, RemoteSource, Store};

/// Foreground flights allowed at once; beyond that reads fail fast instead of piling up threads
/// on a remote that does not answer.
const MAX_FOREGROUND: usize = 256;

/// Per-file fetch state.
#[derive(Default)]
pub(crate) struct FileFetch {
    flights: Mutex<Vec<Arc<Flight>>>,
    prefetch: Mutex<Prefetch>,
}

#[derive(Default)]
struct Prefetch {
    started: bool,
    stopped: bool,
    cursor: u64,
    outstanding: usize,
    /// Windows fetched; until the first is, only one is in flight (a remote may answer the
    /// first window with the whole file, and parallel windows would fetch parts twice).
    done: usize,
}

/// One remote request for `[start, end)` of a file, and its outcome once known.
struct Flight {
    start: u64,
    end: u64,
    outcome: Mutex<Option<Result<(), Errno>>>,
    done: Condvar,
}

type Job = (Arc<FileNode>, Arc<Flight>);

/// Runs flights against the remote for every file of a mount.
pub(crate) struct Fetcher {
    remote: Arc<dyn RemoteSource>,
    store: Store,
    timeout: Duration,
    window: u64,
    depth: usize,
    threads: usize,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    foreground: AtomicUsize,
    /// Remote `fetch` calls made (tests and logs).
    calls: AtomicUsize,
}

impl Fetcher {
    pub(crate) fn new(remote: Arc<dyn RemoteSource>, store: Store, opts: &VfsOptions) -> Arc<Self> {
        Arc::new(Self {
            remote,
            store,
            timeout: opts.fetch_timeout,
            window: opts.prefetch_window.max(1 << 20),
            depth: opts.prefetch_depth.max(1),
            threads: opts.prefetch_threads.max(1),
            jobs: Mutex::new(None),
            foreground: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
        })
    }

    /// Remote `fetch` calls made so far.
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }

    /// Returns once `[offset, offset + len)` of the file has been fetched, or with the flight's
    /// error, or with `EIO` when the fetch timeout passes first.
    pub(crate) fn ensure(
        self: &Arc<Self>,
        file: &Arc<FileNode>,
        offset: u64,
        len: u64,
    ) -> Result<(), Errno> {
        let deadline = Instant::now() + self.timeout;
        let flight = {
            let mut flights = file.fetch.flights.lock();
            match flights.iter().find(|f| f.start <= offset && offset + len <= f.end) {
                Some(f) => f.clone(),
                None => {
                    let f = Flight::new(offset, offset + len);
                    flights.push(f.clone());
                    drop(flights);
                    self.launch(file, &f)?;
                    f
                }
            }
        };
        flight.wait(deadline, &file.entry.path)
    }

    /// Runs a foreground flight on its own thread.
    fn launch(self: &Arc<Self>, file: &Arc<FileNode>, flight: &Arc<Flight>) -> Result<(), Errno> {
        if self.foreground.fetch_add(1, Ordering::SeqCst) >= MAX_FOREGROUND {
            self.foreground.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(path = %file.entry.path, "too many remote fetches outstanding; failing the read");
            finish(file, flight, Err(Errno::Io));
            return Err(Errno::Io);
        }
        let (me, file2, flight2) = (self.clone(), file.clone(), flight.clone());
        let spawned = std::thread::Builder::new().name("tessera-fetch".into()).spawn(move || {
            let _published = me.run(&file2, &flight2);
            me.foreground.fetch_sub(1, Ordering::SeqCst);
        });
        if let Err(e) = spawned {
            self.foreground.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(error = %e, "cannot start a fetch thread");
            finish(file, flight, Err(Errno::Io));
            return Err(Errno::Io);
        }
        Ok(())
    }

    /// Calls the remote for one flight and publishes the outcome.
    fn run(&self, file: &FileNode, flight: &Arc<Flight>) -> Result<(), Errno> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let call = || {
            self.remote.fetch(&file.key, &file.entry.file, flight.start, flight.end - flight.start)
        };
        // A panicking remote must still finish the flight, or its waiters would wait in vain.
        let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
            Ok(r) => r.map_err(Errno::from),
            Err(_) => {
                tracing::error!(path = %file.entry.path, "the remote panicked while fetching");
                Err(Errno::Io)
            }
        };
        tracing::debug!(path = %file.entry.path, start = flight.start, end = flight.end, ms = started.elapsed().as_millis() as u64, ok = result.is_ok(), "fetch");
        finish(file, flight, result);
        result
    }

    /// Starts (or restarts after a failure) the sequential prefetch of a file.
    pub(crate) fn start_prefetch(self: &Arc<Self>, file: &Arc<FileNode>) {
        {
            let mut p = file.fetch.prefetch.lock();
            let restart = p.stopped && p.outstanding == 0;
            if p.started && !restart {
                return;
            }
            *p = Prefetch { started: true, ..Prefetch::default() };
        }
        self.pump(file);
    }

    /// Queues prefetch windows until `depth` are in flight or the file's end is reached.
    fn pump(self: &Arc<Self>, file: &Arc<FileNode>) {
        let size = file.entry.size;
        loop {
            let (start, end) = {
                let mut p = file.fetch.prefetch.lock();
                let depth = if p.done == 0 { 1 } else { self.depth };
                if p.stopped || p.outstanding >= depth || p.cursor >= size {
                    return;
                }
                let start = p.cursor;
                p.cursor = (start + self.window).min(size);
                p.outstanding += 1;
                (start, p.cursor)
            };
            if self.window_present(file, start, end) {
                let mut p = file.fetch.prefetch.lock();
                p.outstanding -= 1;
                p.done += 1;
                continue;
            }
            let flight = Flight::new(start, end);
            file.fetch.flights.lock().push(flight.clone());
            if !self.submit((file.clone(), flight.clone())) {
                finish(file, &flight, Err(Errno::Io));
                let mut p = file.fetch.prefetch.lock();
                p.outstanding -= 1;
                p.stopped = true;
                return;
            }
        }
    }

    /// Hands a prefetch job to the pool, starting the pool on first use.
    fn submit(self: &Arc<Self>, job: Job) -> bool {
        let mut jobs = self.jobs.lock();
        if jobs.is_none() {
            let (tx, rx) = mpsc::channel::<Job>();
            let rx = Arc::new(Mutex::new(rx));
            for i in 0..self.threads {
                let (rx, me) = (rx.clone(), Arc::downgrade(self));
                let started = std::thread::Builder::new()
                    .name(format!("tessera-prefetch-{i}"))
                    .spawn(move || prefetch_worker(&rx, &me));
                if let Err(e) = started {
                    tracing::warn!(error = %e, "cannot start a prefetch thread");
                }
            }
            *jobs = Some(tx);
        }
        jobs.as_ref().is_some_and(|tx| tx.send(job).is_ok())
    }

    /// Whether the store holds every chunk of the terms overlapping `[start, end)` (local
    /// lookups only: a warm file costs the remote nothing).
    fn window_present(&self, file: &FileNode, start: u64, end: u64) -> bool {
        let record = match file.record.get() {
            Some(r) => r.clone(),
            None => match self.store.file(&file.entry.file) {
                Ok(Some(r)) if r.size == file.entry.size => {
                    file.record.get_or_init(|| Arc::new(r)).clone()
                }
                _ => return false,
            },
        };
        range_present(&self.store, &record, start, end)
    }
}

/// Whether a read of `[start, end)` would find every chunk it needs: the overlapping chunks and,
/// in each overlapping term, the chunks before them (the store places a chunk by their lengths).
pub(crate) fn range_present(store: &Store, record: &FileRecord, start: u64, end: u64) -> bool {
    let mut pos = 0u64;
    for term in &record.terms {
        let term_end = pos + u64::from(term.unpacked_len);
        if term_end > start && pos < end {
            let Ok(Some(meta)) = store.xorb_meta(&term.xorb) else { return false };
            let mut at = pos;
            for idx in term.chunk_start..term.chunk_end {
                if at >= end {
                    break;
                }
                match meta.chunks.get(idx as usize).copied().flatten() {
                    Some(c) => at += u64::from(c.unpacked_len),
                    None => return false,
                }
            }
        }
        if term_end >= end {
            break;
        }
        pos = term_end;
    }
    true
}

fn prefetch_worker(rx: &Mutex<mpsc::Receiver<Job>>, fetcher: &Weak<Fetcher>) {
    loop {
        let job = rx.lock().recv();
        let Ok((file, flight)) = job else { return };
        let Some(fetcher) = fetcher.upgrade() else {
            finish(&file, &flight, Err(Errno::Io));
            return;
        };
        let result = fetcher.run(&file, &flight);
        {
            let mut p = file.fetch.prefetch.lock();
            p.outstanding = p.outstanding.saturating_sub(1);
            p.done += 1;
            if result.is_err() {
                p.stopped = true;
            }
        }
        fetcher.pump(&file);
    }
}

/// Publishes a flight's outcome and forgets it, so later misses start a new one.
fn finish(file: &FileNode, flight: &Arc<Flight>, result: Result<(), Errno>) {
    file.fetch.flights.lock().retain(|f| !Arc::ptr_eq(f, flight));
    *flight.outcome.lock() = Some(result);
    flight.done.notify_all();
}

impl Flight {
    fn new(start: u64, end: u64) -> Arc<Self> {
        Arc::new(Self { start, end, outcome: Mutex::new(None), done: Condvar::new() })
    }

    fn wait(&self, deadline: Instant, path: &str) -> Result<(), Errno> {
        let mut outcome = self.outcome.lock();
        while outcome.is_none() {
            if self.done.wait_until(&mut outcome, deadline).timed_out() && outcome.is_none() {
                tracing::warn!(%path, start = self.start, end = self.end, "no answer from the remote within the fetch timeout");
                return Err(Errno::Io);
            }
        }
        outcome.unwrap_or(Err(Errno::Io))
    }
}
