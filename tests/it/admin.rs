//! What an operator installs: the systemd unit (verified by systemd itself),
//! the daemon's readiness and stopping notices to the service manager, and
//! the container recipe.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use triaged::dev::devstack::PASSWORD;

use crate::harness::{Mailbox, PW_ENV, World, bin};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `[Service]` settings of a unit: (key, value) in order.
fn service_settings(unit: &str) -> Vec<(String, String)> {
    let mut section = "";
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            section = if line == "[Service]" { "service" } else { "" };
            continue;
        }
        if let (Some((k, v)), "service") = (line.split_once('='), section) {
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

/// The unit says what the issue asks, and `systemd-analyze verify` finds
/// nothing wrong with it (an unknown key, a bad value, a missing binary all
/// print a warning, which fails the test); `systemd-analyze security` rates
/// its exposure at most 2.0 of 10.
#[test]
fn service_unit_is_hardened_and_verified_by_systemd() {
    let unit = std::fs::read_to_string(repo().join("deploy/triaged.service")).expect("unit");
    let settings = service_settings(&unit);
    let get = |key: &str| -> Vec<&str> {
        settings
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(get("Type"), ["notify"]);
    assert_eq!(get("ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert_eq!(get("User"), ["triaged"]);
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("StateDirectory", "triaged"),
    ] {
        assert_eq!(get(key), [value], "{key}");
    }
    assert!(
        get("ReadWritePaths").contains(&"/var/lib/triaged"),
        "the state directory is writable"
    );
    let exec = get("ExecStart");
    assert_eq!(exec.len(), 1);
    assert!(exec[0].starts_with("/usr/local/bin/triaged ") && exec[0].ends_with(" run"));

    let analyze = which("systemd-analyze").unwrap_or_else(|| {
        panic!("systemd-analyze is missing: deploy/dev-setup.sh installs the systemd package")
    });
    // Verified as installed, with the binary at the path the unit names
    // replaced by the one under test (verify checks that it is executable).
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("triaged.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/triaged", bin())).expect("write");
    let out = Command::new(&analyze)
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");

    // The check can fail: a unit with a typo is refused.
    let typo = dir.path().join("typo").join("triaged.service");
    std::fs::create_dir_all(typo.parent().expect("parent")).expect("mkdir");
    std::fs::write(
        &typo,
        unit.replace("/usr/local/bin/triaged", bin())
            .replace("ProtectHome=yes", "ProtectHome=yes\nProtectHomes=yes"),
    )
    .expect("write");
    let out = Command::new(&analyze)
        .args(["verify", "--man=no"])
        .arg(&typo)
        .output()
        .expect("systemd-analyze verify");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ProtectHomes"),
        "{out:?}"
    );

    let out = Command::new(&analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .expect("systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout);
    let level: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for triaged.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {text}"));
    assert!(level <= 2.0, "exposure {level}:\n{text}");
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// Under `Type=notify` the daemon says READY=1 once its mailboxes are
/// watched and STOPPING=1 when SIGTERM starts the shutdown, over the socket
/// in `$NOTIFY_SOCKET`.
#[test]
fn daemon_notifies_ready_and_stopping() {
    let world = World::new(
        &[Mailbox {
            name: "isda-support",
            user: "isda-support@example.edu",
            queue: "Customer-Support",
            after: "seen",
        }],
        None,
        "",
    );
    let socket_path = world.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let log = world.dir.path().join("daemon.log");
    let mut child = Command::new(bin())
        .arg("--config")
        .arg(&world.config)
        .arg("run")
        .env(PW_ENV, PASSWORD)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let receive = |what: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = socket.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                if msg.lines().any(|l| l == what) {
                    return msg;
                }
            }
        }
        panic!("no {what} on $NOTIFY_SOCKET; log:\n{}", read_log())
    };
    let ready = receive("READY=1");
    assert!(ready.contains("STATUS=watching 1 mailboxes"), "{ready}");
    assert!(read_log().contains("triaged running"), "{}", read_log());

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let stopping = receive("STOPPING=1");
    assert!(stopping.contains("STATUS="), "{stopping}");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{}", read_log());
}

/// The container recipe, read as a reviewer would (no registry is reachable
/// here to build it): a build stage and a runtime stage, the production
/// build, a non-root user, the daemon as the default command.
#[test]
fn containerfile_is_multi_stage_non_root_production_build() {
    let text = std::fs::read_to_string(repo().join("deploy/Containerfile")).expect("Containerfile");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert!(froms[0].ends_with(" AS build"), "{froms:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("cargo build --release --locked --no-default-features")),
        "the production build"
    );
    // Everything the build reads is copied (include_str!, migrations, and
    // the test target Cargo.toml names).
    for dir in [
        "src",
        "migrations",
        "templates",
        "routing-rules",
        "deploy",
        "tests",
    ] {
        assert!(
            lines.iter().any(|l| *l == format!("COPY {dir} {dir}")),
            "COPY {dir}"
        );
    }
    let start = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .unwrap_or(0);
    let runtime = &lines[start..];
    let user = runtime
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER in the runtime stage");
    assert!(
        !matches!(user.split(':').next(), Some("root" | "0")),
        "runs as {user}"
    );
    assert!(runtime.iter().any(|l| l.starts_with("COPY --from=build ")));
    assert!(
        runtime
            .iter()
            .any(|l| l.starts_with("CMD ") && l.contains("\"run\"")),
        "{runtime:?}"
    );
}
