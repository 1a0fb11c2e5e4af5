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

/// What a PHP-FPM binary is: its `MAJOR.MINOR` version (`-v`) and its extensions (`-m` of the
/// matching CLI if there is one, else of the FPM binary itself).
pub async fn php_fpm_info(fpm: &str, cli: Option<&str>) -> Option<(String, Vec<String>)> {
    let out = crate::cmd::run(&crate::Cmd::new([fpm, "-v"]), None, None).await.ok()?;
    // "PHP 8.2.29 (fpm-fcgi) (built: …)"
    let full = out.stdout.strip_prefix("PHP ")?.split_whitespace().next()?.to_string();
    let version = full.split('.').take(2).collect::<Vec<_>>().join(".");
    let modules = crate::cmd::run(&crate::Cmd::new([cli.unwrap_or(fpm), "-m"]), None, None).await.ok()?;
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
