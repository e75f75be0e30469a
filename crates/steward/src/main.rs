//! The `steward` binary: a thin layer of commands over the library crates.

mod admin;
mod bench;
mod bench_connectors;
mod bench_journeys;
mod bench_score;
mod bench_segments;
mod bench_ui;
mod cli;
mod client;
mod config;
mod demo;
mod import;
mod intel;
mod playbooks;
mod run;

use anyhow::Result;
use clap::Parser;

// Capture allocates and frees many small JSON values per event; mimalloc does that at a
// fraction of the system allocator's cost.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (the bindings name only some options), whose default
/// in the mimalloc they build is 1000 ms.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// For a command that is one burst of work and then ends (an import): memory freed is kept
/// for the process rather than given back to the system a second later. An import's stages
/// free and allocate hundreds of megabytes in turn, and memory given back was faulted in
/// again, zeroed by the kernel: with it kept, an import of ChurnSim's 3.6 million events
/// took 5% less time (BENCHMARKS.md). The option is changed only while it has its default,
/// so that one set in the environment (`MIMALLOC_PURGE_DELAY`) is kept, and so that a
/// mimalloc whose options were numbered otherwise is left alone.
fn keep_freed_memory() {
    // SAFETY: mimalloc's option calls take and return plain integers, may be made from any
    // thread at any time, and change when memory is given back, never what is allocated.
    #[allow(unsafe_code)]
    unsafe {
        if libmimalloc_sys::mi_option_get(PURGE_DELAY) == 1000 {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, -1);
        }
    }
}

/// No transparent huge pages for the process. A long-running process gives freed memory back
/// and later takes it again, and with huge pages the kernel zeroed 2 MiB for each fault (a
/// quarter of an import's CPU went to it before imports kept their memory). An import, which
/// keeps its memory, faults far less often with them, but each fault of memory the system
/// has not lately used costs more than its 512 small pages do: on a virtual machine whose
/// host takes back what the guest frees, faulting in 700 MB right after another program's
/// work took 0.9 to 2.8 s with huge pages and 0.4 s without (BENCHMARKS.md).
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: `prctl` with these arguments only sets a flag of the calling process; it reads
    // and writes no memory of ours.
    #[allow(unsafe_code)]
    unsafe {
        let _ = libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// SQLite's memory from the process's allocator (mimalloc) rather than the C library's: one
/// pool, so that memory either frees is the other's again. An import's SQLite took 100 MB of
/// fresh memory from the system while Rust's freed more (BENCHMARKS.md). Must come before any
/// database is opened; SQLite refuses it afterwards, and then keeps its own. Whether it took it.
fn sqlite_memory_from_mimalloc() -> bool {
    use libmimalloc_sys as mi;
    use rusqlite::ffi;
    use std::ffi::{c_int, c_void};
    // SAFETY (all five): mimalloc's functions take any size and any pointer it returned (or
    // null), which is what SQLite passes; sizes SQLite asks for are positive and below 2 GiB.
    #[allow(unsafe_code)]
    unsafe extern "C" fn malloc(n: c_int) -> *mut c_void {
        unsafe { mi::mi_malloc(n as usize) }
    }
    #[allow(unsafe_code)]
    unsafe extern "C" fn free(p: *mut c_void) {
        unsafe { mi::mi_free(p) }
    }
    #[allow(unsafe_code)]
    unsafe extern "C" fn realloc(p: *mut c_void, n: c_int) -> *mut c_void {
        unsafe { mi::mi_realloc(p, n as usize) }
    }
    #[allow(unsafe_code)]
    unsafe extern "C" fn size(p: *mut c_void) -> c_int {
        if p.is_null() { 0 } else { unsafe { mi::mi_usable_size(p) as c_int } }
    }
    #[allow(unsafe_code)]
    unsafe extern "C" fn roundup(n: c_int) -> c_int {
        unsafe { mi::mi_good_size(n as usize) as c_int }
    }
    #[allow(unsafe_code)]
    unsafe extern "C" fn init(_: *mut c_void) -> c_int {
        ffi::SQLITE_OK
    }
    #[allow(unsafe_code)]
    unsafe extern "C" fn shutdown(_: *mut c_void) {}
    let methods = ffi::sqlite3_mem_methods {
        xMalloc: Some(malloc),
        xFree: Some(free),
        xRealloc: Some(realloc),
        xSize: Some(size),
        xRoundup: Some(roundup),
        xInit: Some(init),
        xShutdown: Some(shutdown),
        pAppData: std::ptr::null_mut(),
    };
    // SAFETY: SQLite copies the methods before the call returns; it is made before SQLite is
    // initialised (first thing in `main`), and if it were not SQLite would refuse it.
    #[allow(unsafe_code)]
    unsafe {
        ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &methods as *const ffi::sqlite3_mem_methods) == ffi::SQLITE_OK
    }
}

fn main() -> Result<()> {
    let _ = sqlite_memory_from_mimalloc();
    let cli = cli::Cli::parse();
    no_huge_pages();
    let config = config::Config::load(&cli)?;
    config::init_logging(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(cli::dispatch(cli, config))
}

#[cfg(test)]
mod tests {
    /// SQLite's allocator is set once per process, before anything opens a database, so this
    /// is checked in a process of its own: the test binary run again for this test alone.
    #[test]
    fn sqlite_allocates_from_mimalloc() {
        const CHILD: &str = "STEWARD_TEST_SQLITE_MEMORY";
        if std::env::var_os(CHILD).is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "tests::sqlite_allocates_from_mimalloc", "--test-threads=1"])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success() && stdout.contains("1 passed"), "{stdout}");
            return;
        }
        assert!(super::sqlite_memory_from_mimalloc(), "SQLite was set up before");
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(100000));").unwrap();
        let n: i64 = conn.query_row("SELECT length(x) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 100_000);
        #[allow(unsafe_code)]
        // SAFETY: a block SQLite allocates is given back to it; mimalloc only reads the address.
        unsafe {
            let p = rusqlite::ffi::sqlite3_malloc(1_000);
            assert!(!p.is_null() && libmimalloc_sys::mi_is_in_heap_region(p), "SQLite's block is mimalloc's");
            rusqlite::ffi::sqlite3_free(p);
        }
        assert!(!super::sqlite_memory_from_mimalloc(), "SQLite refuses it once set up");
    }

    #[test]
    fn freed_memory_is_kept_once_asked() {
        // The option numbered as assumed has the purge delay's default, or was set already.
        super::keep_freed_memory();
        #[allow(unsafe_code)]
        // SAFETY: as in `keep_freed_memory`.
        let delay = unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DELAY) };
        assert_eq!(delay, -1, "mimalloc's purge delay is not option {} here", super::PURGE_DELAY);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn huge_pages_are_turned_off_for_the_process() {
        #[allow(unsafe_code)]
        // SAFETY: reads a flag of the calling process.
        let disabled = || unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        super::no_huge_pages();
        assert_eq!(disabled(), 1);
    }
}
