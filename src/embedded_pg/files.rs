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
/// may pass through it to the cluster's own directory. A directory that already exists is
/// never changed: it may be the operator's own (`HERALD_DATA_DIR=/srv/...`), so where the
/// server's user could not enter it, this says so instead.
pub(super) fn make_dir(dir: &Path, shared: bool) -> Result<(), ClusterError> {
    if dir.exists() {
        let mode = std::fs::metadata(dir)
            .map_err(|e| failed(format!("opening {}", dir.display()), e))?
            .permissions()
            .mode();
        if shared && mode & 0o001 == 0 {
            return Err(failed(
                format!("using {} as the data directory", dir.display()),
                "the embedded PostgreSQL runs as another user (Herald runs as root), who cannot \
                 enter it; allow it with `chmod o+x` or choose another HERALD_DATA_DIR",
            ));
        }
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| failed(format!("creating {}", dir.display()), e))?;
    let mode = if shared { 0o711 } else { 0o700 };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| failed(format!("securing {}", dir.display()), e))
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

/// Makes the cluster `data` (`dir/postgres`) unless it is there: `initdb` with a superuser
/// `postgres` whose random password goes to `postgres.password`.
///
/// Crash-safe: initdb writes into `postgres.init/`, the password is written next, and a
/// rename to `postgres/` is the last step. A start finds either a whole cluster with its
/// password, or no cluster (and a half-made `postgres.init/`, which it removes and makes
/// again). A `postgres/` without `PG_VERSION` was not made here and is refused, not removed.
pub(super) fn ensure_cluster(
    bin: &Path,
    dir: &Path,
    data: &Path,
    run_as: Option<&RunAs>,
) -> Result<(), ClusterError> {
    if data.join("PG_VERSION").exists() {
        return Ok(());
    }
    if data.exists() {
        return Err(failed(
            format!("using {}", data.display()),
            "it is not a PostgreSQL cluster (no PG_VERSION); move it away, and Herald makes \
             a new one",
        ));
    }
    let staging = staging_dir(data);
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .map_err(|e| failed(format!("removing the half-made {}", staging.display()), e))?;
    }
    let password = initdb(bin, dir, &staging, run_as)?;
    write_private(&dir.join("postgres.password"), &password)?;
    std::fs::rename(&staging, data)
        .map_err(|e| failed(format!("moving the new cluster to {}", data.display()), e))
}

/// Where `initdb` makes the cluster before it is moved to `data`.
fn staging_dir(data: &Path) -> std::path::PathBuf {
    data.with_extension("init")
}

/// `initdb` in `data` with a superuser `postgres`; returns its random password.
fn initdb(
    bin: &Path,
    dir: &Path,
    data: &Path,
    run_as: Option<&RunAs>,
) -> Result<String, ClusterError> {
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
    Ok(password)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("herald-files-{name}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_data_directory_is_private_or_passable_for_the_servers_user() {
        let root = temp("new");
        make_dir(&root.join("own"), false).unwrap();
        make_dir(&root.join("shared"), true).unwrap();
        assert_eq!(mode(&root.join("own")), 0o700);
        assert_eq!(mode(&root.join("shared")), 0o711);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn an_existing_directory_is_never_changed_and_one_the_server_cannot_enter_is_refused() {
        let root = temp("existing");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o750)).unwrap();
        make_dir(&root, false).unwrap();
        assert_eq!(mode(&root), 0o750);
        let refused = make_dir(&root, true).unwrap_err().to_string();
        assert!(refused.contains("chmod o+x"), "{refused}");
        assert_eq!(mode(&root), 0o750, "left as it was");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        make_dir(&root, true).unwrap();
        assert_eq!(mode(&root), 0o755);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_cluster_directory_that_is_not_one_is_refused_and_left_alone() {
        let root = temp("not-a-cluster");
        let data = root.join("postgres");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("mine.txt"), "keep").unwrap();
        // No binaries are needed to refuse it.
        let refused = ensure_cluster(Path::new("/nonexistent"), &root, &data, None)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("no PG_VERSION"), "{refused}");
        assert_eq!(
            std::fs::read_to_string(data.join("mine.txt")).unwrap(),
            "keep"
        );
        assert_eq!(staging_dir(&data), root.join("postgres.init"));
        std::fs::remove_dir_all(root).unwrap();
    }
}
