use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = triaged::cli::Cli::parse();
    // `deliver` (one process per message, run by the MTA) needs no runtime:
    // starting one is a thread and a fifth of its cost.
    if let Some(code) = triaged::cli::run_without_runtime(&cli) {
        return code;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("triaged: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(triaged::cli::run(cli))
}

/// The allocator. glibc's serialises threads that free what another thread
/// allocated (the reader parses, the committer frees): its arena locks were
/// 15 % of an ingest's CPU, and without a limit its arenas kept 71-88 MiB
/// after an IMAP backfill. jemalloc: `bench ingest` (10,000 messages) 5,000
/// -> 5,800-7,900 msg/s at the same peak memory (see `MALLOC_CONF`).
#[cfg(all(unix, not(target_os = "openbsd")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read at its start (`_RJEM_MALLOC_CONF` in the
/// environment still overrides them): two arenas (more only cost memory
/// here: two cores, one reader, one committer), and freed pages returned to
/// the system after a second rather than ten, so memory stays flat (peak
/// RSS over a 100,000-message ingest: 68 MiB with jemalloc's defaults, 63
/// with these).
// SAFETY: jemalloc reads this symbol, a pointer to a NUL-terminated string,
// once at its start; the string is a 'static constant, never written.
#[cfg(all(unix, not(target_os = "openbsd")))]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: &u8 = &b"narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0];
