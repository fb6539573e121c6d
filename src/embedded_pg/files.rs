//! The embedded cluster's files in the data directory: the directory itself, the lock
//! that keeps a second Herald off it, and `initdb` with its password.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
    process::Command,
};

use nix::fcntl::{Flock, FlockArg};

use super::{
    cluster::{failed, ClusterError, USER},
    server::{as_user, RunAs},
};

/// The data directory: private to Herald's user, except that the server's user (as root)
/// may pass through it to the cluster's own directory.
pub(super) fn make_dir(dir: &Path, shared: bool) -> Result<(), ClusterError> {
    let fresh = !dir.exists();
    std::fs::create_dir_all(dir).map_err(|e| failed(format!("creating {}", dir.display()), e))?;
    if fresh || shared {
        let mode = if shared { 0o711 } else { 0o700 };
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .map_err(|e| failed(format!("securing {}", dir.display()), e))?;
    }
    Ok(())
}

/// Takes `herald.lock` for this process, or says who has it.
pub(super) fn lock(dir: &Path) -> Result<Flock<File>, ClusterError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(dir.join("herald.lock"))
        .map_err(|e| failed("opening herald.lock", e))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut locked) => {
            locked
                .set_len(0)
                .and_then(|_| locked.rewind())
                .and_then(|_| write!(locked, "{}", std::process::id()))
                .map_err(|e| failed("writing herald.lock", e))?;
            Ok(locked)
        }
        Err((mut file, _)) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let mut lines = text.lines();
            Err(ClusterError::InUse {
                dir: dir.to_path_buf(),
                pid: lines.next().unwrap_or("?").trim().to_string(),
                port: lines.next().and_then(|p| p.trim().parse().ok()),
            })
        }
    }
}

/// `initdb` with a superuser `postgres` whose random password goes to `postgres.password`.
pub(super) fn initdb(
    bin: &Path,
    dir: &Path,
    data: &Path,
    run_as: Option<&RunAs>,
) -> Result<(), ClusterError> {
    let password = hex_token();
    // The server's user must read the password file; it is removed right after.
    let pwfile = dir.join("initdb.pw");
    write_private(&pwfile, &password)?;
    std::fs::create_dir_all(data).map_err(|e| failed("creating the cluster directory", e))?;
    if let Some(user) = run_as {
        for path in [&pwfile, &data.to_path_buf()] {
            std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                .map_err(|e| {
                    failed(
                        format!("handing {} to the server's user", path.display()),
                        e,
                    )
                })?;
        }
    }
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| failed("securing the cluster directory", e))?;
    let mut command = Command::new(bin.join("initdb"));
    command
        .arg("-D")
        .arg(data)
        .args([
            "-U",
            USER,
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .args(["--no-instructions"]);
    as_user(&mut command, run_as);
    let output = command.output();
    let _ = std::fs::remove_file(&pwfile);
    let output = output.map_err(|e| failed("running initdb", e))?;
    if !output.status.success() {
        // A half-made cluster would be mistaken for a made one next time.
        let _ = std::fs::remove_dir_all(data);
        return Err(failed(
            "initdb",
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        ));
    }
    write_private(&dir.join("postgres.password"), &password)
}

fn write_private(path: &Path, text: &str) -> Result<(), ClusterError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| failed(format!("writing {}", path.display()), e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| failed(format!("writing {}", path.display()), e))
}

fn hex_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
