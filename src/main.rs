//! The `tessera` command; all logic lives in the library's `cli` module.

/// mimalloc keeps freed memory for reuse across threads: ingest, reads and the mount allocate and
/// free chunk-sized buffers on every core, which with the system allocator cost more in page
/// faults and kernel zeroing than the copies themselves.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tessera::cli::main()
}
