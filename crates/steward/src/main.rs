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

fn main() -> Result<()> {
    let cli = cli::Cli::parse();
    no_huge_pages();
    let config = config::Config::load(&cli)?;
    config::init_logging(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(cli::dispatch(cli, config))
}

#[cfg(test)]
mod tests {
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
