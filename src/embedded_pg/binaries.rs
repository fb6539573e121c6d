//! Finding PostgreSQL's server binaries on this machine, and what to install when there are
//! none.

use std::path::{Path, PathBuf};

/// The server programs a cluster needs.
const NEEDED: [&str; 2] = ["initdb", "postgres"];

/// Where distributions put the server binaries (besides `PATH`): Debian and Ubuntu keep
/// them out of `PATH`, under a directory per major version; Homebrew, under its prefix.
const KNOWN_ROOTS: [&str; 5] = [
    "/usr/lib/postgresql",
    "/usr/pgsql-",
    "/opt/homebrew/opt",
    "/usr/local/opt",
    "/usr/local/pgsql/bin",
];

/// The directory holding `initdb` and `postgres`: `configured` if given (it must hold
/// them), else the first of `PATH`, then the known places (the newest major version
/// first). `None` when there is none.
pub fn locate(configured: Option<&Path>, path_var: Option<&str>) -> Option<PathBuf> {
    if let Some(dir) = configured {
        return has_server(dir).then(|| dir.to_path_buf());
    }
    let on_path = path_var
        .into_iter()
        .flat_map(std::env::split_paths)
        .find(|d| has_server(d));
    on_path.or_else(|| known_places().into_iter().find(|d| has_server(d)))
}

fn has_server(dir: &Path) -> bool {
    NEEDED.iter().all(|p| is_executable(&dir.join(p)))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `/usr/lib/postgresql/{16,15,...}/bin`, `/usr/pgsql-16/bin`, Homebrew's
/// `postgresql@16/bin`, ..., newest version first.
fn known_places() -> Vec<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = Vec::new();
    for root in KNOWN_ROOTS {
        let root = Path::new(root);
        if root.ends_with("bin") {
            found.push((0, root.to_path_buf()));
            continue;
        }
        // `/usr/pgsql-16` is a prefix, not a directory: list its parent.
        let (parent, prefix) = match root.to_str() {
            Some(s) if s.ends_with('-') => (
                root.parent().unwrap_or(Path::new("/")),
                root.file_name().and_then(|n| n.to_str()).unwrap_or(""),
            ),
            _ => (root, ""),
        };
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(prefix) else {
                continue;
            };
            let rest = rest
                .trim_start_matches("postgresql@")
                .trim_start_matches("postgresql");
            if let Ok(version) = rest.parse::<u32>() {
                found.push((version, entry.path().join("bin")));
            } else if rest.is_empty() && !prefix.is_empty() {
                found.push((0, entry.path().join("bin")));
            }
        }
    }
    found.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    found.into_iter().map(|(_, p)| p).collect()
}

/// The command that installs PostgreSQL's server on this platform, from the contents of
/// `/etc/os-release` (`None` elsewhere: macOS and unknown systems).
pub fn install_hint(os_release: Option<&str>) -> String {
    if cfg!(target_os = "macos") {
        return "brew install postgresql@16".into();
    }
    let field = |name: &str| {
        os_release.and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .map(|v| v.trim_matches('"').to_ascii_lowercase())
        })
    };
    let ids = format!(
        "{} {}",
        field("ID").unwrap_or_default(),
        field("ID_LIKE").unwrap_or_default()
    );
    let is = |id: &str| ids.split_whitespace().any(|w| w == id);
    if is("debian") || is("ubuntu") {
        "apt-get install postgresql".into()
    } else if is("fedora") || is("rhel") || is("centos") {
        "dnf install postgresql-server".into()
    } else if is("alpine") {
        "apk add postgresql".into()
    } else if is("arch") {
        "pacman -S postgresql".into()
    } else if is("suse") || is("opensuse") {
        "zypper install postgresql-server".into()
    } else {
        "install PostgreSQL's server (initdb and postgres) with your package manager".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_platform_gets_its_package_command() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        let ubuntu = "ID=ubuntu\nID_LIKE=debian\n";
        let rocky = "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n";
        let alpine = "ID=alpine\n";
        if cfg!(target_os = "linux") {
            assert_eq!(install_hint(Some(debian)), "apt-get install postgresql");
            assert_eq!(install_hint(Some(ubuntu)), "apt-get install postgresql");
            assert_eq!(install_hint(Some(rocky)), "dnf install postgresql-server");
            assert_eq!(install_hint(Some(alpine)), "apk add postgresql");
            assert!(install_hint(None).contains("initdb and postgres"));
        }
    }

    #[test]
    fn a_configured_directory_must_hold_the_server() {
        let dir = std::env::temp_dir().join(format!("herald-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(locate(Some(&dir), None), None, "empty: no server there");
        for name in NEEDED {
            let p = dir.join(name);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        assert_eq!(locate(Some(&dir), None), Some(dir.clone()));
        // Found on PATH too, before any known place.
        let path = format!("/nonexistent:{}", dir.display());
        assert_eq!(locate(None, Some(&path)), Some(dir.clone()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
