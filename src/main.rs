use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    limit_malloc_arenas();
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
    runtime.block_on(triaged::cli::run(triaged::cli::Cli::parse()))
}

/// glibc's allocator gives each thread that allocates its own arena (up to
/// eight per core) and seldom returns their memory: the IMAP backfill, which
/// prepares chunks on blocking threads while the runtime's threads commit,
/// peaked at 71-88 MiB with them and at 56 MiB with four (`bench imap`,
/// 10,000 messages, the same speed). Two arenas cost the Maildir ingest about
/// 8 % more CPU (threads waiting on each other's arena); four cost nothing
/// measurable. Four, unless the operator set `MALLOC_ARENA_MAX` or a glibc
/// tunable. Runs before any thread exists.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_ARENAS: libc::c_int = 4;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    let set_by_operator = std::env::var_os("MALLOC_ARENA_MAX").is_some()
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("arena_max"));
    if !set_by_operator {
        // SAFETY: mallopt only changes a parameter of the allocator; it is
        // called here before the runtime or any other thread is started.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}
