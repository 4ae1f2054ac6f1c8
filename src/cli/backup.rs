//! `triaged backup PATH`: an online copy of a SQLite database (the daemon may
//! keep running); for PostgreSQL, pg_dump is the tool (deploy/scaling.md).

use std::path::Path;
use std::process::ExitCode;

use crate::store::{Backend, Store};

pub async fn backup(store: &Store, target: &Path) -> anyhow::Result<ExitCode> {
    if store.backend() == Backend::Postgres {
        eprintln!(
            "triaged: backup: the database is PostgreSQL; back it up with pg_dump \
             (e.g. `pg_dump --format=custom --file=triaged.dump DBNAME`), see deploy/scaling.md"
        );
        return Ok(ExitCode::from(1));
    }
    if target.exists() {
        eprintln!(
            "triaged: backup: {} exists; a backup never overwrites a file",
            target.display()
        );
        return Ok(ExitCode::from(1));
    }
    store.backup_to(target).await?;
    println!("backed up to {}", target.display());
    Ok(ExitCode::SUCCESS)
}
