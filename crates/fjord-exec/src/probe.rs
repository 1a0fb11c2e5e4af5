//! Looking at a codebase to learn what it is: where its web root is, which application and version.
//! Read-only; the results feed the planners as facts.

use fjord_core::AppKind;
use std::path::Path;

/// Web root candidates, in the order Aegir probes them; the root itself is the fallback.
const DOCROOTS: &[&str] = &["web", "docroot", "html"];

pub fn docroot(root: &Path) -> Option<String> {
    if !root.is_dir() {
        return None;
    }
    DOCROOTS
        .iter()
        .find(|d| root.join(d).join("index.php").is_file())
        .map(|d| d.to_string())
        .or_else(|| Some(String::new()))
}

/// Finds `marker` in the file and returns the quoted string that follows it: for
/// `const VERSION = '10.3.1';` and marker `const VERSION` it returns `10.3.1`.
fn quoted_after(file: &Path, marker: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let rest = &text[text.find(marker)? + marker.len()..];
    let start = rest.find(['\'', '"'])?;
    let quote = rest.as_bytes()[start] as char;
    let value = &rest[start + 1..];
    let end = value.find(quote)?;
    let v = &value[..end];
    (!v.is_empty() && v.len() < 40 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b".-+_".contains(&b)))
        .then(|| v.to_string())
}

/// Detects the application in a web root.
pub fn app(web: &Path) -> Option<(AppKind, Option<String>)> {
    if web.join("core/lib/Drupal.php").is_file() {
        return Some((AppKind::Drupal, quoted_after(&web.join("core/lib/Drupal.php"), "const VERSION")));
    }
    if web.join("includes/bootstrap.inc").is_file() && web.join("modules/system").is_dir() {
        return Some((AppKind::Drupal7, quoted_after(&web.join("includes/bootstrap.inc"), "define('VERSION'")));
    }
    if web.join("wp-includes/version.php").is_file() {
        return Some((AppKind::Wordpress, quoted_after(&web.join("wp-includes/version.php"), "$wp_version")));
    }
    if web.join("index.php").is_file() {
        return Some((AppKind::Php, None));
    }
    None
}

/// Profiles, site-local drush, the declared PHP requirement and the site directories of a codebase.
pub fn platform_details(root: &Path, web: Option<&Path>) -> fjord_core::PlatformDetails {
    let mut d = fjord_core::PlatformDetails::default();
    for drush in ["vendor/bin/drush", "vendor/drush/drush/drush.php"] {
        if root.join(drush).is_file() {
            d.drush = Some(drush.into());
            break;
        }
    }
    d.php_requirement = std::fs::read_to_string(root.join("composer.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["require"]["php"].as_str().map(String::from));
    let Some(web) = web else { return d };
    // Drupal 8+ keeps profiles in core/profiles and profiles/; Drupal 7 in profiles/.
    for dir in ["core/profiles", "profiles", "profiles/contrib", "profiles/custom"] {
        for e in std::fs::read_dir(web.join(dir)).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let p = e.path();
            let is_profile =
                p.join(format!("{name}.info.yml")).is_file() || p.join(format!("{name}.profile")).is_file();
            if is_profile && !name.starts_with("testing") && !d.profiles.contains(&name) {
                d.profiles.push(name);
            }
        }
    }
    d.profiles.sort();
    for e in std::fs::read_dir(web.join("sites")).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name != "default" && name != "all" && e.path().join("settings.php").is_file() {
            d.unknown_sites.push(name);
        }
    }
    d.unknown_sites.sort();
    d
}

/// A PHP-FPM runtime found on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundPhp {
    pub version: String,
    pub fpm: String,
    pub cli: Option<String>,
}

/// Every `php-fpmX.Y` under /usr/sbin, newest first, with its CLI if installed.
pub fn php_runtimes() -> Vec<FoundPhp> {
    let mut found: Vec<FoundPhp> = std::fs::read_dir("/usr/sbin")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let version = name.strip_prefix("php-fpm")?.to_string();
            if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                return None;
            }
            let cli = format!("/usr/bin/php{version}");
            Some(FoundPhp { fpm: format!("/usr/sbin/{name}"), cli: Path::new(&cli).exists().then_some(cli), version })
        })
        .collect();
    found.sort_by(|a, b| b.version.cmp(&a.version));
    found
}

/// A Drupal site's `$databases['default']['default']`, read by running its `settings.php` in PHP
/// (`php`, the CLI), as drush would: the file is PHP, so only PHP reads it right. Paths reach the
/// script through the environment, never its text.
pub async fn drupal_db_settings(php: &str, web: &Path, site_dir: &str) -> Result<serde_json::Value, String> {
    let script = "define('DRUPAL_ROOT', getenv('FJORD_WEB')); $app_root = getenv('FJORD_WEB'); \
                  $site_path = 'sites/' . getenv('FJORD_SITE'); $databases = []; $settings = []; $conf = []; \
                  include $app_root . '/' . $site_path . '/settings.php'; \
                  echo json_encode($databases['default']['default'] ?? null);";
    let cmd = crate::Cmd::new([php, "-r", script])
        .env("FJORD_WEB", web.to_string_lossy())
        .env("FJORD_SITE", site_dir)
        .timeout(std::time::Duration::from_secs(60));
    let out = crate::cmd::run(&cmd, None, None).await.map_err(|e| e.to_string())?;
    if !out.success() {
        return Err(format!("php could not read its settings: {}", out.stderr.trim()));
    }
    match serde_json::from_str::<serde_json::Value>(out.stdout.trim()) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err("no database settings".into()),
    }
}

/// What a path names on this machine, as [`path_kind`] finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Dir,
    File,
    /// A device, socket, FIFO…
    Other,
}

/// What is at `path` on this machine (a symbolic link is followed), or `None` when nothing is there
/// or it cannot be looked at. Read-only: one `stat`.
pub fn path_kind(path: &Path) -> Option<PathKind> {
    let meta = std::fs::metadata(path).ok()?;
    Some(if meta.is_dir() {
        PathKind::Dir
    } else if meta.is_file() {
        PathKind::File
    } else {
        PathKind::Other
    })
}

/// A text file's content, if it can be read.
pub fn read_text(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Whether a program named in a request may be run as root to probe it: an absolute path to an
/// executable regular file that root owns and only root can change, in directories only root can
/// change (else whoever could write it would run code as root). The error says why not.
pub fn trusted_binary(path: &str) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(format!("{path} is not an absolute path"));
    }
    let real = std::fs::canonicalize(p).map_err(|e| format!("{path}: {e}"))?;
    let meta = std::fs::metadata(&real).map_err(|e| format!("{path}: {e}"))?;
    if !meta.is_file() || meta.mode() & 0o111 == 0 {
        return Err(format!("{path} is not an executable file"));
    }
    for part in real.ancestors() {
        let m = std::fs::metadata(part).map_err(|e| format!("{}: {e}", part.display()))?;
        if m.uid() != 0 || m.mode() & 0o022 != 0 {
            return Err(format!("{} can be changed by a user other than root: not running {path}", part.display()));
        }
    }
    Ok(())
}

/// What a PHP-FPM binary is: its `MAJOR.MINOR` version (`-v`) and its extensions (`-m` of the
/// matching CLI if there is one, else of the FPM binary itself). Both programs must pass
/// [`trusted_binary`]; each gets 20 seconds.
pub async fn php_fpm_info(fpm: &str, cli: Option<&str>) -> Option<(String, Vec<String>)> {
    trusted_binary(fpm).ok()?;
    if let Some(c) = cli {
        trusted_binary(c).ok()?;
    }
    let limit = std::time::Duration::from_secs(20);
    let out = crate::cmd::run(&crate::Cmd::new([fpm, "-v"]).timeout(limit), None, None).await.ok()?;
    // "PHP 8.2.29 (fpm-fcgi) (built: …)"
    let full = out.stdout.strip_prefix("PHP ")?.split_whitespace().next()?.to_string();
    let version = full.split('.').take(2).collect::<Vec<_>>().join(".");
    let modules =
        crate::cmd::run(&crate::Cmd::new([cli.unwrap_or(fpm), "-m"]).timeout(limit), None, None).await.ok()?;
    let extensions = modules
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('['))
        .map(|l| l.to_lowercase())
        .collect();
    Some((version, extensions))
}

/// The version an `nginx -v` reports (it prints to stderr).
pub async fn nginx_version() -> Option<String> {
    let out = crate::cmd::run(&crate::Cmd::new(["nginx", "-v"]), None, None).await.ok()?;
    let text = format!("{}{}", out.stderr, out.stdout);
    text.split("nginx/").nth(1).map(|v| v.split_whitespace().next().unwrap_or("").to_string())
}

/// The version `apache2 -v` reports (`Server version: Apache/2.4.62 (Debian)`).
pub async fn apache_version() -> Option<String> {
    let out = crate::cmd::run(&crate::Cmd::new(["/usr/sbin/apache2", "-v"]), None, None).await.ok()?;
    out.stdout.split("Apache/").nth(1).map(|v| v.split_whitespace().next().unwrap_or("").to_string())
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn only_root_controlled_binaries_are_trusted() {
        use std::os::unix::fs::PermissionsExt;
        assert!(trusted_binary("/bin/true").is_ok());
        assert!(trusted_binary("bin/true").is_err(), "relative");
        assert!(trusted_binary("/etc/passwd").is_err(), "not executable");
        assert!(trusted_binary("/no/such/php-fpm").is_err());
        // /tmp is world-writable: anything under it could be swapped by another user.
        let dir = tempfile::tempdir_in("/tmp").expect("tempdir");
        let bin = dir.path().join("php-fpm");
        std::fs::write(&bin, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let err = trusted_binary(&bin.to_string_lossy()).expect_err("under /tmp");
        assert!(err.contains("other than root"), "{err}");
    }

    #[test]
    fn tells_directories_from_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(path_kind(dir.path()), Some(PathKind::Dir));
        assert_eq!(path_kind(Path::new("/etc/passwd")), Some(PathKind::File));
        assert_eq!(path_kind(Path::new("/dev/null")), Some(PathKind::Other));
        assert_eq!(path_kind(&dir.path().join("nothing")), None);
        std::os::unix::fs::symlink(dir.path(), dir.path().join("link")).expect("symlink");
        assert_eq!(path_kind(&dir.path().join("link")), Some(PathKind::Dir), "a link is followed");
    }

    #[test]
    fn detects_drupal_wordpress_and_docroots() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("web/core/lib")).expect("mkdir");
        std::fs::write(root.join("web/index.php"), "<?php").expect("write");
        std::fs::write(root.join("web/core/lib/Drupal.php"), "class Drupal {\n  const VERSION = '10.3.1';\n}")
            .expect("write");
        assert_eq!(docroot(root).as_deref(), Some("web"));
        assert_eq!(app(&root.join("web")), Some((AppKind::Drupal, Some("10.3.1".into()))));

        let wp = root.join("wp");
        std::fs::create_dir_all(wp.join("wp-includes")).expect("mkdir");
        std::fs::write(wp.join("index.php"), "<?php").expect("write");
        std::fs::write(wp.join("wp-includes/version.php"), "<?php\n$wp_version = '6.1.1';\n").expect("write");
        assert_eq!(docroot(&wp).as_deref(), Some(""));
        assert_eq!(app(&wp), Some((AppKind::Wordpress, Some("6.1.1".into()))));
        assert_eq!(docroot(&root.join("missing")), None);
    }
}
