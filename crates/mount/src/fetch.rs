//! Lazy bytes: fetching missing ranges through the [`RemoteSource`], and adaptive read-ahead.
//!
//! A read that misses asks the remote for exactly its range (a *flight*, on a thread of its own
//! so the reader can give up on it); the remote answers as soon as those bytes are in the store,
//! and shares one transfer among every reader of the same bytes. A reader gives up with `EIO`
//! only when the remote made no progress for the fetch timeout: a slow link is not an error.
//!
//! Read-ahead follows sequential readers: a read that starts where the file's last read ended
//! keeps `window` bytes ahead of it requested, in pieces on a small shared pool. The window
//! starts at [`FIRST_WINDOW`] and doubles each time the reader has consumed a whole window, up
//! to `prefetch_window`; a read elsewhere (a loader seeking to one tensor) stops it, so random
//! reads fetch only what they touch, and a reader stopping early leaves at most one window
//! fetched past its last read. Pieces the store holds already cost the remote nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak, mpsc};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::errno::Errno;
use super::vfs::{FileNode, VfsOptions};
use tessera_store::{RemoteSource, Store};

/// Foreground flights allowed at once; beyond that reads fail fast instead of piling up threads
/// on a remote that does not answer.
const MAX_FOREGROUND: usize = 256;
/// Read-ahead of a reader just found sequential.
const FIRST_WINDOW: u64 = 8 << 20;
/// Bytes per read-ahead request.
const PIECE: u64 = 16 << 20;
/// How far from the last read's end a read still counts as sequential: the kernel sends a
/// sequential reader's requests from several threads, slightly out of order.
const SEQUENTIAL_SLACK: u64 = 4 << 20;

/// Per-file fetch state.
#[derive(Default)]
pub(crate) struct FileFetch {
    flights: Mutex<Vec<Arc<Flight>>>,
    ahead: Mutex<ReadAhead>,
}

/// Where a file's reader is and how far ahead of it bytes are requested.
#[derive(Default)]
struct ReadAhead {
    /// End of the last read: a read starting here is sequential.
    next: u64,
    /// Bytes kept requested ahead of a sequential reader; 0 while reads are not sequential.
    window: u64,
    /// Where the reader will have consumed the current window, and it grows.
    grow_at: u64,
    /// Read-ahead requested up to here.
    issued: u64,
    /// Read-ahead pieces not finished.
    outstanding: usize,
}

/// One remote request for `[start, end)` of a file, and its outcome once known.
struct Flight {
    start: u64,
    end: u64,
    outcome: Mutex<Option<Result<(), Errno>>>,
    done: Condvar,
}

type Job = (Arc<FileNode>, u64, u64);

/// A foreground flight's work, run on a thread of [`Fetcher::idle`].
type Task = Box<dyn FnOnce() + Send>;

/// How long a foreground thread waits for another flight before it exits.
const FOREGROUND_IDLE: Duration = Duration::from_secs(30);

/// Runs flights against the remote for every file of a mount.
pub(crate) struct Fetcher {
    remote: Arc<dyn RemoteSource>,
    store: Store,
    timeout: Duration,
    max_window: u64,
    depth: usize,
    threads: usize,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    foreground: AtomicUsize,
    /// Foreground threads waiting for a flight. A cold sequential read of 2 GiB starts ~370
    /// flights; reusing threads saves a spawn (and a fresh allocator heap) per flight.
    idle: Mutex<Vec<mpsc::Sender<Task>>>,
    /// Remote `fetch` calls made (tests and logs).
    calls: AtomicUsize,
}

impl Fetcher {
    pub(crate) fn new(remote: Arc<dyn RemoteSource>, store: Store, opts: &VfsOptions) -> Arc<Self> {
        Arc::new(Self {
            remote,
            store,
            timeout: opts.fetch_timeout,
            max_window: opts.prefetch_window.max(1 << 20),
            depth: opts.prefetch_depth.max(1),
            threads: opts.prefetch_threads.max(1),
            jobs: Mutex::new(None),
            foreground: AtomicUsize::new(0),
            idle: Mutex::new(Vec::new()),
            calls: AtomicUsize::new(0),
        })
    }

    /// Remote `fetch` calls made so far.
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }

    /// Returns once `[offset, offset + len)` of the file has been fetched, or with the flight's
    /// error, or with `EIO` when the remote made no progress for the fetch timeout.
    pub(crate) fn ensure(self: &Arc<Self>, file: &Arc<FileNode>, offset: u64, len: u64) -> Result<(), Errno> {
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
        flight.wait(self.timeout, || self.remote.progress(), &file.entry.path)
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
        let task: Task = Box::new(move || {
            let result = me.call(&file2, flight2.start, flight2.end);
            finish(&file2, &flight2, result);
            me.foreground.fetch_sub(1, Ordering::SeqCst);
        });
        if let Err(e) = self.run_foreground(task) {
            self.foreground.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(error = %e, "cannot start a fetch thread");
            finish(file, flight, Err(Errno::Io));
            return Err(Errno::Io);
        }
        Ok(())
    }

    /// Runs a task on an idle foreground thread, or on a new one.
    fn run_foreground(self: &Arc<Self>, mut task: Task) -> std::io::Result<()> {
        loop {
            let Some(worker) = self.idle.lock().pop() else { break };
            match worker.send(task) {
                Ok(()) => return Ok(()),
                // That thread timed out meanwhile; try the next.
                Err(mpsc::SendError(back)) => task = back,
            }
        }
        let (tx, rx) = mpsc::channel::<Task>();
        let me = Arc::downgrade(self);
        std::thread::Builder::new().name("tessera-fetch".into()).spawn(move || {
            task();
            foreground_worker(&rx, tx, &me);
        })?;
        Ok(())
    }

    /// Asks the remote for `[start, end)` of a file.
    fn call(&self, file: &FileNode, start: u64, end: u64) -> Result<(), Errno> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let call = || self.remote.fetch(&file.key, &file.entry, start, end - start);
        // A panicking remote must still finish the flight, or its waiters would wait in vain.
        let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
            Ok(r) => r.map_err(Errno::from),
            Err(_) => {
                tracing::error!(path = %file.entry.path, "the remote panicked while fetching");
                Err(Errno::Io)
            }
        };
        tracing::debug!(path = %file.entry.path, start, end, ms = started.elapsed().as_millis() as u64, ok = result.is_ok(), "fetch");
        result
    }

    /// Notes a read of `[offset, end)` and keeps read-ahead going if reads are sequential.
    pub(crate) fn on_read(self: &Arc<Self>, file: &Arc<FileNode>, offset: u64, end: u64) {
        let size = file.entry.size;
        let pieces = {
            let mut a = file.fetch.ahead.lock();
            let sequential = offset <= a.next + SEQUENTIAL_SLACK && offset + SEQUENTIAL_SLACK >= a.next;
            if !sequential {
                a.next = end;
                a.window = 0;
                a.issued = end;
                return;
            }
            a.next = a.next.max(end);
            if a.window == 0 {
                a.window = FIRST_WINDOW.min(self.max_window);
                a.grow_at = end + a.window;
            } else if end >= a.grow_at {
                a.window = (a.window * 2).min(self.max_window);
                a.grow_at = end + a.window;
            }
            let horizon = (end + a.window).min(size);
            let mut pieces = Vec::new();
            let mut from = a.issued.max(end);
            while from < horizon && a.outstanding < self.depth {
                let to = (from + PIECE).min(horizon);
                pieces.push((from, to));
                a.outstanding += 1;
                from = to;
            }
            a.issued = a.issued.max(from);
            pieces
        };
        for (start, end) in pieces {
            if !self.submit((file.clone(), start, end)) {
                file.fetch.ahead.lock().outstanding -= 1;
            }
        }
    }

    /// Hands a read-ahead piece to the pool, starting the pool on first use.
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

    /// Fetches one read-ahead piece unless the store holds it (local lookups only: a warm file
    /// costs the remote nothing). A failed piece stops read-ahead until the reader asks again.
    fn read_ahead(&self, file: &FileNode, start: u64, end: u64) {
        let failed = !self.window_present(file, start, end) && self.call(file, start, end).is_err();
        let mut a = file.fetch.ahead.lock();
        a.outstanding = a.outstanding.saturating_sub(1);
        if failed {
            a.window = 0;
            a.issued = a.issued.min(start);
        }
    }

    /// Whether the store holds every chunk `[start, end)` needs (local lookups only).
    fn window_present(&self, file: &FileNode, start: u64, end: u64) -> bool {
        let record = match file.record.get() {
            Some(r) => r.clone(),
            None => match self.store.file(&file.entry.file) {
                Ok(Some(r)) if r.size == file.entry.size => file.record.get_or_init(|| Arc::new(r)).clone(),
                _ => return false,
            },
        };
        self.store.range_present(&record, start, end).unwrap_or(false)
    }
}

fn prefetch_worker(rx: &Mutex<mpsc::Receiver<Job>>, fetcher: &Weak<Fetcher>) {
    loop {
        let job = rx.lock().recv();
        let Ok((file, start, end)) = job else { return };
        let Some(fetcher) = fetcher.upgrade() else { return };
        fetcher.read_ahead(&file, start, end);
    }
}

/// Offers this thread for the next foreground flight until none comes for [`FOREGROUND_IDLE`].
fn foreground_worker(rx: &mpsc::Receiver<Task>, tx: mpsc::Sender<Task>, fetcher: &Weak<Fetcher>) {
    loop {
        match fetcher.upgrade() {
            Some(f) => f.idle.lock().push(tx.clone()),
            None => return,
        }
        match rx.recv_timeout(FOREGROUND_IDLE) {
            Ok(task) => task(),
            Err(_) => return,
        }
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

    /// Waits for the outcome while `progress` (bytes the remote received) keeps moving; gives
    /// up after `stall` without it.
    fn wait(&self, stall: Duration, progress: impl Fn() -> u64, path: &str) -> Result<(), Errno> {
        let mut outcome = self.outcome.lock();
        let mut seen = progress();
        while outcome.is_none() {
            if self.done.wait_for(&mut outcome, stall).timed_out() && outcome.is_none() {
                let now = progress();
                if now == seen {
                    tracing::warn!(%path, start = self.start, end = self.end, "no progress from the remote within the fetch timeout");
                    return Err(Errno::Io);
                }
                seen = now;
            }
        }
        outcome.unwrap_or(Err(Errno::Io))
    }
}
