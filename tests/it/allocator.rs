//! The binary's allocator settings (`src/main.rs`): jemalloc reads them
//! from an exported symbol, and ignores a symbol of the wrong name without a
//! word, so the test asks jemalloc what it runs with.

use std::process::Command;
use std::time::Duration;

use crate::harness::{bin, output_within};

#[test]
#[cfg(all(unix, not(target_os = "openbsd")))]
fn jemalloc_runs_with_the_binarys_settings() {
    let out = output_within(
        Command::new(bin())
            .arg("--version")
            .env("_RJEM_MALLOC_CONF", "stats_print:true"),
        None,
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{out:?}");
    let stats =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    for setting in [
        "opt.narenas: 2",
        "opt.dirty_decay_ms: 1000",
        "opt.muzzy_decay_ms: 0",
    ] {
        assert!(
            stats.contains(setting),
            "jemalloc does not run with {setting}:\n{stats}"
        );
    }
}
