//! The thin FUSE adapter (fuser 0.18, pure-Rust mount): each callback is a call into [`Vfs`]
//! and a reply; plus mounting, stale-mount cleanup, the bdi read-ahead and unmounting.
//!
//! Kernel caching: everything under a revision is immutable, so entries and attributes carry
//! long TTLs and files open with `FOPEN_KEEP_CACHE`. After mounting, the bdi `read_ahead_kb` is
//! raised to 1 MiB so buffered reads reach the filesystem as 1 MiB requests
//! (`docs/build-notes.md` §3). With `fusermount3` on the PATH the mount uses `auto_unmount`, so
//! even a `kill -9` leaves no dead mount point behind (no `ENOTCONN`).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use fuser::{
    BackgroundSession, BackingId, Config, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, MountOption, OpenAccMode, OpenFlags,
    ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyXattr, Request,
    Session, SessionACL,
};

use parking_lot::Mutex;

use super::errno::Errno;
use super::vfs::{Attr, Kind, Vfs};

/// Read-ahead the kernel is asked to use for the mount (KiB): 1 MiB FUSE reads.
const READ_AHEAD_KB: u32 = 1024;
/// Longest an unmount waits for the session to wind down before the process lets go.
const UNMOUNT_WAIT: Duration = Duration::from_secs(5);

/// Why mounting failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    /// The mount point is a dead FUSE mount that could not be cleaned.
    #[error(
        "{0} is a stale FUSE mount (its process died) and unmounting it failed; run `fusermount3 -u -z {0}` (or `umount -l {0}`) and retry"
    )]
    Stale(PathBuf),
    /// Something is already mounted there and answering.
    #[error("{0} is already a mount point ({1}); unmount it first or choose another directory")]
    Busy(PathBuf, String),
    /// A system call or helper failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// How to mount.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MountConfig {
    /// Let every user (not just the owner and root) use the mount.
    pub allow_other: bool,
    /// Kernel request threads.
    pub threads: usize,
    /// Use `fusermount3`'s `auto_unmount` so a killed process leaves no dead mount.
    pub auto_unmount: bool,
}

impl Default for MountConfig {
    fn default() -> Self {
        Self { allow_other: false, threads: 16, auto_unmount: true }
    }
}

/// A live mount; [`Mounted::unmount`] ends it (dropping it unmounts too).
pub struct Mounted {
    session: BackgroundSession,
    mountpoint: PathBuf,
}

impl Mounted {
    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Whether the session ended on its own (someone unmounted it).
    pub fn is_finished(&self) -> bool {
        self.session.guard.is_finished()
    }

    /// Unmounts and waits (briefly) for the session to end. If files are still open the mount
    /// is detached lazily; the kernel connection closes when this process exits.
    pub fn unmount(self) -> Result<(), MountError> {
        let mountpoint = self.mountpoint;
        // Unmount here rather than through fuser: with auto_unmount it only closes the socket
        // to fusermount3, which leaves a mount that still answers in place. Busy (files
        // open): detach lazily; the kernel ends the session once they close.
        let unmounted = Command::new("fusermount3")
            .args(["-u", "-q"])
            .arg(&mountpoint)
            .output()
            .is_ok_and(|o| o.status.success());
        if !unmounted {
            lazy_unmount(&mountpoint)?;
        }
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(self.session.umount_and_join());
        });
        match rx.recv_timeout(UNMOUNT_WAIT) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, mountpoint = %mountpoint.display(), "session ended with an error");
                Ok(())
            }
            Err(_) => {
                tracing::warn!(mountpoint = %mountpoint.display(), "session still busy after unmount; letting go");
                Ok(())
            }
        }
    }
}

/// Mounts `vfs` at `mountpoint` (created if missing) and serves it on background threads.
pub fn mount(vfs: Vfs, mountpoint: &Path, cfg: &MountConfig) -> Result<Mounted, MountError> {
    std::fs::create_dir_all(mountpoint).map_err(|e| io("create", mountpoint, e))?;
    clear_stale(mountpoint)?;
    let mountpoint = mountpoint.canonicalize().map_err(|e| io("resolve", mountpoint, e))?;
    let use_auto = cfg.auto_unmount && fusermount_available();
    let session = match Session::new(
        TesseraFs::new(vfs.clone()),
        &mountpoint,
        &fuser_config(cfg, use_auto),
    ) {
        Ok(s) => s,
        Err(e) if use_auto => {
            tracing::warn!(error = %e, "mounting with auto_unmount failed; mounting without it");
            Session::new(TesseraFs::new(vfs), &mountpoint, &fuser_config(cfg, false))
                .map_err(|e| io("mount", &mountpoint, e))?
        }
        Err(e) => return Err(io("mount", &mountpoint, e)),
    };
    raise_read_ahead(&mountpoint);
    let session = session.spawn().map_err(|e| io("serve", &mountpoint, e))?;
    Ok(Mounted { session, mountpoint })
}

fn fuser_config(cfg: &MountConfig, auto_unmount: bool) -> Config {
    let mut c = Config::default();
    c.mount_options = vec![
        MountOption::RO,
        MountOption::FSName("tessera".into()),
        MountOption::Subtype("tessera".into()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    if auto_unmount {
        c.mount_options.push(MountOption::AutoUnmount);
    }
    // auto_unmount needs allow_other at the kernel; fuser then admits only root and the owner.
    c.acl = match (cfg.allow_other, auto_unmount) {
        (true, _) => SessionACL::All,
        (false, true) => SessionACL::RootAndOwner,
        (false, false) => SessionACL::Owner,
    };
    c.n_threads = Some(cfg.threads.max(1));
    c.clone_fd = true;
    c
}

fn io(op: &'static str, path: &Path, source: std::io::Error) -> MountError {
    MountError::Io { op, path: path.to_path_buf(), source }
}

/// Whether `fusermount3` is on the PATH (looked up rather than run: mounting is on the restart
/// path, and a process spawn costs more than the lookup).
fn fusermount_available() -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join("fusermount3")).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Detects a dead FUSE mount at `mountpoint` (its process was killed) and lazily unmounts it;
/// refuses a live mount.
///
/// A dead mount does not always show as `ENOTCONN` on `stat` (the kernel may answer from
/// cached attributes), so a FUSE mount found in mountinfo is probed with a directory read,
/// which always reaches the daemon; the probe runs on a helper thread so a live but hung
/// daemon cannot hang this process.
pub fn clear_stale(mountpoint: &Path) -> Result<(), MountError> {
    let dead =
        |e: &std::io::Error| matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED));
    let stale = match std::fs::metadata(mountpoint) {
        Err(e) if dead(&e) => true,
        Err(e) => return Err(io("stat", mountpoint, e)),
        Ok(_) => match mount_at(mountpoint) {
            None => false,
            Some(m) if !m.fstype.starts_with("fuse") => {
                return Err(MountError::Busy(mountpoint.to_path_buf(), m.fstype));
            }
            Some(m) => match probe_dir(mountpoint) {
                Some(Err(e)) if dead(&e) => true,
                Some(_) => return Err(MountError::Busy(mountpoint.to_path_buf(), m.fstype)),
                None => {
                    return Err(MountError::Busy(
                        mountpoint.to_path_buf(),
                        format!("{}, not answering", m.fstype),
                    ));
                }
            },
        },
    };
    if !stale {
        return Ok(());
    }
    tracing::warn!(mountpoint = %mountpoint.display(), "found a stale FUSE mount (its process died); unmounting it");
    lazy_unmount(mountpoint).map_err(|_| MountError::Stale(mountpoint.to_path_buf()))?;
    match std::fs::metadata(mountpoint) {
        Ok(_) => Ok(()),
        Err(_) => Err(MountError::Stale(mountpoint.to_path_buf())),
    }
}

/// Lists a directory on a helper thread; `None` if it has not answered within 3 s.
fn probe_dir(path: &Path) -> Option<std::io::Result<()>> {
    let (tx, rx) = mpsc::channel();
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::read_dir(&path).map(|mut d| {
            let _ = d.next();
        }));
    });
    rx.recv_timeout(Duration::from_secs(3)).ok()
}

/// `fusermount3 -u -z`, then `umount -l`.
pub fn lazy_unmount(mountpoint: &Path) -> Result<(), MountError> {
    let attempts: [(&str, &[&str]); 2] =
        [("fusermount3", &["-u", "-z", "-q"]), ("umount", &["-l"])];
    for (cmd, args) in attempts {
        let out = Command::new(cmd).args(args).arg(mountpoint).output();
        if out.as_ref().is_ok_and(|o| o.status.success()) {
            return Ok(());
        }
        tracing::debug!(cmd, ?out, "lazy unmount attempt failed");
    }
    Err(io(
        "unmount",
        mountpoint,
        std::io::Error::other("fusermount3 -u -z and umount -l both failed"),
    ))
}

/// A mount listed in `/proc/self/mountinfo`.
struct MountInfo {
    dev: String,
    fstype: String,
}

/// The topmost mount at exactly `path`, if any (read from mountinfo, so it never touches the
/// filesystem itself: safe to call before the session serves requests).
fn mount_at(path: &Path) -> Option<MountInfo> {
    // A dead mount point cannot be canonicalized (ENOTCONN); then take it as given.
    let path = path.canonicalize().or_else(|_| std::path::absolute(path)).ok()?;
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines()
        .rev()
        .filter_map(parse_mountinfo)
        .find(|(p, _)| Path::new(p) == path)
        .map(|(_, m)| m)
}

fn parse_mountinfo(line: &str) -> Option<(String, MountInfo)> {
    let (left, right) = line.split_once(" - ")?;
    let fields: Vec<&str> = left.split(' ').collect();
    let dev = fields.get(2)?.to_string();
    let point = unescape_octal(fields.get(4)?);
    let fstype = right.split(' ').next()?.to_string();
    Some((point, MountInfo { dev, fstype }))
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let code = b
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match (b[i], code) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Raises the mount's bdi `read_ahead_kb` so sequential reads arrive as 1 MiB requests.
fn raise_read_ahead(mountpoint: &Path) {
    let Some(m) = mount_at(mountpoint).filter(|m| m.fstype.starts_with("fuse")) else {
        tracing::warn!(mountpoint = %mountpoint.display(), "mount not found in mountinfo; read-ahead left as is");
        return;
    };
    let knob = PathBuf::from(format!("/sys/class/bdi/{}/read_ahead_kb", m.dev));
    match std::fs::write(&knob, READ_AHEAD_KB.to_string()) {
        Ok(()) => {
            tracing::debug!(knob = %knob.display(), "read-ahead raised to {READ_AHEAD_KB} KiB")
        }
        Err(e) => {
            tracing::info!(knob = %knob.display(), error = %e, "cannot raise read-ahead (needs root); reads stay at 128 KiB")
        }
    }
}

/// The `fuser::Filesystem` over a [`Vfs`].
struct TesseraFs {
    vfs: Vfs,
    /// Whether the kernel agreed to passthrough (and flat copies are on).
    passthrough: bool,
    /// Open files per inode: all opens of an inode share one mode (the kernel refuses to mix
    /// cached and passthrough opens), chosen when the first one opens.
    opens: Mutex<HashMap<u64, OpenState>>,
}

#[derive(Default)]
struct OpenState {
    count: usize,
    backing: Option<BackingId>,
    /// Keeps the file's data from eviction while it is open.
    _hold: Option<tessera_store::FileHold>,
}

impl TesseraFs {
    fn new(vfs: Vfs) -> Self {
        Self { vfs, passthrough: false, opens: Mutex::new(HashMap::new()) }
    }
}

/// Runs one request's work, turning a panic (in the remote, say) into `EIO` so the thread
/// that serves the kernel survives and the mount stays up.
fn guarded<T>(op: &'static str, f: impl FnOnce() -> Result<T, Errno>) -> Result<T, Errno> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        tracing::error!(op, "panic while serving a request; answering EIO");
        Err(Errno::Io)
    })
}

fn errno(e: Errno) -> fuser::Errno {
    fuser::Errno::from_i32(e.raw())
}

impl TesseraFs {
    fn file_attr(&self, a: &Attr) -> FileAttr {
        let (kind, perm, nlink) = match a.kind {
            Kind::Dir => (FileType::Directory, 0o555, 2),
            Kind::File => (FileType::RegularFile, 0o444, 1),
        };
        let opts = self.vfs.options();
        let made = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(a.mtime);
        FileAttr {
            ino: INodeNo(a.ino),
            size: a.size,
            blocks: a.size.div_ceil(512),
            atime: made,
            mtime: made,
            ctime: made,
            crtime: made,
            kind,
            perm,
            nlink,
            uid: opts.uid,
            gid: opts.gid,
            rdev: 0,
            blksize: 1 << 20,
            flags: 0,
        }
    }
}

impl Filesystem for TesseraFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_readahead(READ_AHEAD_KB * 1024);
        let _ = config.set_max_background(64);
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        if self.vfs.options().flat_dir.is_some() {
            match config.add_capabilities(InitFlags::FUSE_PASSTHROUGH) {
                Ok(()) => self.passthrough = config.set_max_stack_depth(2).is_ok(),
                Err(_) => {
                    tracing::warn!("the kernel does not offer FUSE passthrough; serving every read")
                }
            }
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(name) = name.to_str() else { return reply.error(fuser::Errno::ENOENT) };
        match guarded("lookup", || self.vfs.lookup(parent.0, name)) {
            Ok(e) => reply.entry(&e.ttl, &self.file_attr(&e.attr), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match guarded("getattr", || self.vfs.getattr(ino.0)) {
            Ok(a) => reply.attr(&super::vfs::IMMUTABLE_TTL, &self.file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY;
        if let Err(e) = guarded("open", || self.vfs.open(ino.0, write)) {
            return reply.error(errno(e));
        }
        let mut opens = self.opens.lock();
        let state = opens.entry(ino.0).or_default();
        if state.count == 0 {
            state._hold = self.vfs.hold(ino.0);
        }
        if state.count == 0 && self.passthrough {
            state.backing = self.vfs.flat_file(ino.0).and_then(|f| {
                reply
                    .open_backing(&f)
                    .inspect_err(|e| tracing::warn!(error = %e, "passthrough open failed"))
                    .ok()
            });
        }
        state.count += 1;
        match &state.backing {
            Some(id) => reply.opened_passthrough(FileHandle(0), FopenFlags::empty(), id),
            None => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
        }
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut opens = self.opens.lock();
        if let Some(state) = opens.get_mut(&ino.0) {
            state.count = state.count.saturating_sub(1);
            if state.count == 0 {
                opens.remove(&ino.0);
            }
        }
        reply.ok();
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        thread_local! {
            /// Each FUSE thread answers from one buffer it keeps: a fresh 1 MiB per read cost
            /// page faults and zeroing on every request.
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUF.with_borrow_mut(|buf| match guarded("read", || self.vfs.read_into(ino.0, offset, size, buf)) {
            Ok(()) => reply.data(buf),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match guarded("readdir", || self.vfs.readdir(ino.0)) {
            Ok(e) => e,
            Err(e) => return reply.error(errno(e)),
        };
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, e) in entries.iter().enumerate().skip(skip) {
            let kind =
                if e.kind == Kind::Dir { FileType::Directory } else { FileType::RegularFile };
            if reply.add(INodeNo(e.ino), i as u64 + 1, kind, &e.name) {
                break;
            }
        }
        reply.ok();
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let Some(name) = name.to_str() else { return reply.error(fuser::Errno::ENODATA) };
        match guarded("getxattr", || self.vfs.getxattr(ino.0, name)) {
            Ok(v) => reply_xattr(reply, &v, size),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match guarded("listxattr", || self.vfs.listxattr(ino.0)) {
            Ok(names) => {
                let mut v = Vec::new();
                for n in names {
                    v.extend_from_slice(n.as_bytes());
                    v.push(0);
                }
                reply_xattr(reply, &v, size);
            }
            Err(e) => reply.error(errno(e)),
        }
    }
}

/// The xattr size protocol: `size == 0` asks for the length; too small a buffer is `ERANGE`.
fn reply_xattr(reply: ReplyXattr, value: &[u8], size: u32) {
    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
    if size == 0 {
        reply.size(len);
    } else if len > size {
        reply.error(errno(Errno::Range));
    } else {
        reply.data(value);
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_parse() {
        let line = "620 30 0:53 / /tmp/a\\040b rw,nosuid,nodev,relatime - fuse.tessera tessera ro,user_id=0";
        let (point, m) = parse_mountinfo(line).expect("parses");
        assert_eq!(point, "/tmp/a b");
        assert_eq!(m.dev, "0:53");
        assert_eq!(m.fstype, "fuse.tessera");
        assert!(parse_mountinfo("garbage").is_none());
    }
}
