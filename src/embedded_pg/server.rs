//! The embedded cluster's server process: the user it runs as, starting it as Herald's
//! child, and stopping one an earlier Herald left running.

use std::{
    fs::OpenOptions,
    os::unix::{fs::OpenOptionsExt, process::CommandExt},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::{Gid, Pid, Uid, User},
};

use super::cluster::{failed, ClusterError};

/// The user the server runs as, when Herald runs as root.
#[derive(Debug, Clone)]
pub(super) struct RunAs {
    pub uid: Uid,
    pub gid: Gid,
}

pub(super) fn run_as() -> Result<Option<RunAs>, ClusterError> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        if let Ok(Some(user)) = User::from_name(name) {
            return Ok(Some(RunAs {
                uid: user.uid,
                gid: user.gid,
            }));
        }
    }
    Err(ClusterError::NoUser)
}

/// A server left running by a Herald that died before stopping it (we hold the lock, so
/// no Herald uses it): stopped, so that this start owns the cluster.
pub(super) fn stop_orphan(data: &Path) -> Result<(), ClusterError> {
    let Ok(text) = std::fs::read_to_string(data.join("postmaster.pid")) else {
        return Ok(());
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
    else {
        return Ok(());
    };
    let pid = Pid::from_raw(pid);
    if kill(pid, None).is_err() || !serves(pid, data) {
        // Stale (a server killed, a reboot): the server removes it itself. A live pid that
        // is not a server of this directory was reused by another process: never signalled.
        return Ok(());
    }
    tracing::warn!(
        pid = pid.as_raw(),
        "stopping an embedded PostgreSQL left running by an earlier Herald"
    );
    let _ = kill(pid, Signal::SIGINT);
    let deadline = Instant::now() + Duration::from_secs(60);
    while kill(pid, None).is_ok() {
        if Instant::now() > deadline {
            return Err(failed(
                "stopping the embedded PostgreSQL an earlier Herald left running",
                format!("pid {pid} is still running"),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Whether `pid` is a server of the cluster in `data`: a postmaster's working directory is
/// its data directory. (Where /proc cannot tell, as on systems without it: assumed so.)
fn serves(pid: Pid, data: &Path) -> bool {
    match std::fs::read_link(format!("/proc/{}/cwd", pid.as_raw())) {
        Ok(cwd) => std::fs::canonicalize(data).is_ok_and(|d| d == cwd),
        Err(_) => !Path::new("/proc/self").exists(),
    }
}

pub(super) fn free_port() -> Result<u16, ClusterError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| failed("finding a free port", e))
}

pub(super) fn spawn(
    bin: &Path,
    dir: &Path,
    data: &Path,
    port: u16,
    run_as: Option<&RunAs>,
) -> Result<Child, ClusterError> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(dir.join("postgres.log"))
        .map_err(|e| failed("opening postgres.log", e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| failed("opening postgres.log", e))?;
    let mut command = Command::new(bin.join("postgres"));
    command
        .arg("-D")
        .arg(data)
        .args(["-p", &port.to_string()])
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
        ])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Not in the terminal's process group: Ctrl-C is Herald's to handle.
        .process_group(0);
    as_user(&mut command, run_as);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            #[cfg(target_os = "linux")]
            nix::sys::prctl::set_pdeathsig(Signal::SIGINT)?;
            Ok(())
        });
    }
    command
        .spawn()
        .map_err(|e| failed("starting the embedded PostgreSQL", e))
}

pub(super) fn as_user(command: &mut Command, run_as: Option<&RunAs>) {
    if let Some(user) = run_as {
        command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        // The server's user may not be able to read Herald's working directory.
        command.current_dir("/");
    }
}

pub(super) fn wait_exit(child: &mut Child, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_serves_the_directory_it_runs_in_and_no_other() {
        let here = std::env::current_dir().unwrap();
        assert!(serves(Pid::this(), &here));
        assert_ne!(here, std::env::temp_dir());
        assert!(!serves(Pid::this(), &std::env::temp_dir()));
    }
}
