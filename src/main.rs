//! The `tessera` command; all logic lives in the library's `cli` module.

/// mimalloc keeps freed memory for reuse across threads: ingest, reads and the mount allocate and
/// free chunk-sized buffers on every core, which with the system allocator cost more in page
/// faults and kernel zeroing than the copies themselves.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    if !serves_the_hub() {
        large_buffers_from_the_os();
    }
    tessera::cli::main()
}

/// `tessera hub serve` keeps mimalloc's defaults: a hub sends xorb ranges in 64 KiB buffers
/// from pages that, mapped from the OS as below, were unmapped and faulted in again with every
/// range; it spent 2.6 CPU-s serving a 2 GiB pull that way and 1.0 CPU-s with the defaults, at
/// 77 MB peak RSS.
fn serves_the_hub() -> bool {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    args.windows(2).any(|w| w[0] == "hub" && w[1] == "serve")
}

/// mimalloc v3's `mi_option_arena_max_object_size` (`mimalloc.h`), in KiB.
const ARENA_MAX_OBJECT_SIZE: libmimalloc_sys::mi_option_t = 45;
/// Its default (2 GiB): reading it back tells that the index above names that option in the
/// mimalloc this was built with.
const ARENA_MAX_OBJECT_SIZE_DEFAULT_KIB: std::ffi::c_long = 2 << 20;
/// Objects above this many KiB are mapped from the OS and unmapped when freed.
const LARGE_OBJECT_KIB: std::ffi::c_long = 128;

/// Objects over 128 KiB (64 MiB scan windows and xorbs, fuser's 16 MiB request buffer per FUSE
/// thread, the pages of medium objects) come straight from the OS and go back to it when freed.
/// Kept in mimalloc's arena, freed memory stayed resident, and a reused buffer is zeroed by
/// hand, so every FUSE thread's 16 MiB became resident: a mount reading 2 GiB peaked at
/// 391-413 MB and a push of it at 318-346 MB; with this, 268-270 MB and 246-251 MB, at the same
/// speed (1 MiB instead of 128 KiB left the mount at 343 MB). An explicit
/// `MIMALLOC_ARENA_MAX_OBJECT_SIZE` in the environment wins (the default is then not what is
/// read back).
fn large_buffers_from_the_os() {
    // SAFETY: both calls only read or write one of mimalloc's option slots, which it reads on
    // every large allocation; no allocation is in flight on another thread yet.
    #[allow(unsafe_code)]
    unsafe {
        if libmimalloc_sys::mi_option_get(ARENA_MAX_OBJECT_SIZE) == ARENA_MAX_OBJECT_SIZE_DEFAULT_KIB {
            libmimalloc_sys::mi_option_set(ARENA_MAX_OBJECT_SIZE, LARGE_OBJECT_KIB);
        }
    }
}
