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
    (d.drush, d.drush_script) = match drush_entry(root) {
        Some((path, script)) => (Some(path), script),
        None => (None, false),
    };
    let (requirements, extensions) = php_needs(root, web);
    let mut constraints: Vec<&str> = Vec::new();
    for r in &requirements {
        if !constraints.contains(&r.constraint.as_str()) {
            constraints.push(&r.constraint);
        }
    }
    d.php_requirement = (!constraints.is_empty()).then(|| constraints.join("; "));
    d.php_requirements = requirements;
    d.php_extensions = extensions;
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

/// Whether a file is a PHP script (`<?php` first, or after a `#!…php` line), rather than a shell
/// script or a binary: only a PHP script may be given to `php`.
fn is_php_script(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 256];
    let Ok(n) = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)) else { return false };
    let text = String::from_utf8_lossy(&head[..n]);
    let body = match text.strip_prefix("#!") {
        Some(rest) => {
            let (shebang, body) = rest.split_once('\n').unwrap_or((rest, ""));
            if !shebang.contains("php") {
                return false;
            }
            body
        }
        None => &text,
    };
    body.trim_start().starts_with("<?php")
}

/// How a codebase's own drush is run, relative to its root: its PHP entry point (drush 9 to 13 have
/// `drush.php`; composer's `vendor/bin/drush` is a PHP proxy up to drush 12, a shell script from
/// drush 13), run with the site's `php`; or, when there is none, a script that runs itself
/// (`true`), with the site's `php` first on `PATH`.
pub fn drush_entry(root: &Path) -> Option<(String, bool)> {
    for php in ["vendor/drush/drush/drush.php", "vendor/drush/drush/drush", "vendor/bin/drush.php", "vendor/bin/drush"]
    {
        if is_php_script(&root.join(php)) {
            return Some((php.to_string(), false));
        }
    }
    root.join("vendor/bin/drush").is_file().then(|| ("vendor/bin/drush".to_string(), true))
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// `ext-*` names in a composer `require` object, lower case, without the prefix.
fn required_extensions(require: &serde_json::Value, into: &mut Vec<String>) {
    for name in require.as_object().into_iter().flat_map(|o| o.keys()) {
        if let Some(ext) = name.to_lowercase().strip_prefix("ext-") {
            into.push(ext.to_string());
        }
    }
}

/// `PHP_VERSION_ID >= 80300` (composer's platform check) as the constraint `>=8.3.0`.
fn version_id_constraint(text: &str) -> Option<String> {
    let rest = &text[text.find("PHP_VERSION_ID >= ")? + "PHP_VERSION_ID >= ".len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let id: u32 = digits.parse().ok()?;
    Some(format!(">={}.{}.{}", id / 10000, id / 100 % 100, id % 100))
}

/// What PHP a codebase says it needs: every version constraint it declares, with its source, and
/// the extensions its composer metadata requires. Read from whichever of these the codebase has:
/// `composer.json` and Drupal's `core/composer.json` (`require.php`, `ext-*`), composer's
/// `vendor/composer/platform_check.php` (what the autoloader refuses to run without),
/// `Drupal::MINIMUM_PHP`, Drupal 7's `DRUPAL_MINIMUM_PHP` and WordPress's `$required_php_version`.
pub fn php_needs(root: &Path, web: Option<&Path>) -> (Vec<fjord_core::PhpRequirement>, Vec<String>) {
    let mut requirements = Vec::new();
    let mut extensions = Vec::new();
    let mut require = |source: &str, constraint: String| {
        requirements.push(fjord_core::PhpRequirement { source: source.into(), constraint })
    };
    let mut composer_files = vec![("composer.json".to_string(), root.join("composer.json"))];
    if let Some(web) = web {
        let rel = web.strip_prefix(root).ok().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        let name = if rel.is_empty() { "core/composer.json".to_string() } else { format!("{rel}/core/composer.json") };
        composer_files.push((name, web.join("core/composer.json")));
    }
    for (name, path) in composer_files {
        let Some(json) = read_json(&path) else { continue };
        if let Some(php) = json["require"]["php"].as_str() {
            require(&name, php.to_string());
        }
        required_extensions(&json["require"], &mut extensions);
    }
    if let Some(text) = read_text(&root.join("vendor/composer/platform_check.php")) {
        if let Some(c) = version_id_constraint(&text) {
            require("vendor/composer/platform_check.php", c);
        }
        // `extension_loaded('gd') || $missingExtensions[] = 'gd';`
        for part in text.split("extension_loaded(").skip(1) {
            let name: String = part
                .trim_start_matches(['\'', '"'])
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-' || *c == ' ')
                .collect();
            if !name.is_empty() {
                extensions.push(name.to_lowercase());
            }
        }
    }
    if let Some(web) = web {
        if let Some(v) = quoted_after(&web.join("core/lib/Drupal.php"), "const MINIMUM_PHP") {
            require("Drupal::MINIMUM_PHP", format!(">={v}"));
        }
        if let Some(v) = quoted_after(&web.join("includes/bootstrap.inc"), "define('DRUPAL_MINIMUM_PHP'") {
            require("DRUPAL_MINIMUM_PHP", format!(">={v}"));
        }
        if let Some(v) = quoted_after(&web.join("wp-includes/version.php"), "$required_php_version") {
            require("$required_php_version", format!(">={v}"));
        }
    }
    // The `ext-*` of single packages are not counted: they are often for features a site never
    // uses (civicrm-core wants bcmath and zip, and a Drupal 10 site with it runs without them), and
    // the autoloader does not refuse to run without them unless platform_check.php says so.
    for e in &mut extensions {
        *e = e.replace(' ', "-");
    }
    extensions.sort();
    extensions.dedup();
    (requirements, extensions)
}

/// The packages composer installed (`vendor/composer/installed.json`, composer 1 or 2), without the
/// dev packages of a `--no-dev` install (listed, never installed), and the directory their
/// `install-path`s are relative to.
fn installed_packages(root: &Path) -> Option<(Vec<serde_json::Value>, std::path::PathBuf)> {
    let composer_dir = root.join("vendor/composer");
    let json = read_json(&composer_dir.join("installed.json"))?;
    let (packages, dev_names) = match &json {
        serde_json::Value::Array(list) => (list.clone(), vec![]),
        v => {
            let dev = v["dev"].as_bool().unwrap_or(true);
            let names: Vec<String> = if dev {
                vec![]
            } else {
                v["dev-package-names"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.as_str())
                    .map(String::from)
                    .collect()
            };
            (v["packages"].as_array().cloned().unwrap_or_default(), names)
        }
    };
    let packages =
        packages.into_iter().filter(|p| !dev_names.iter().any(|n| Some(n.as_str()) == p["name"].as_str())).collect();
    Some((packages, composer_dir))
}

/// What is missing of the packages `vendor/composer/installed.json` lists: each as
/// `NAME (what is missing)`: its directory, a file it autoloads (`autoload.files`), or the directory
/// of a namespace it autoloads (`psr-4`, `psr-0`) and so the classes the autoloader cannot find.
/// Empty when the codebase has no composer metadata.
pub fn missing_vendor_packages(root: &Path) -> Vec<String> {
    let Some((packages, composer_dir)) = installed_packages(root) else { return vec![] };
    let mut missing = Vec::new();
    if !root.join("vendor/autoload.php").is_file() {
        missing.push("composer's autoloader (vendor/autoload.php)".to_string());
    }
    for p in &packages {
        let Some(name) = p["name"].as_str() else { continue };
        if p["type"].as_str() == Some("metapackage") {
            continue;
        }
        let dir = match p["install-path"].as_str() {
            Some(rel) => composer_dir.join(rel),
            None => root.join("vendor").join(name),
        };
        if !dir.is_dir() {
            missing.push(format!("{name} (no {})", shown(root, &dir)));
            continue;
        }
        let autoload = &p["autoload"];
        let mut gaps = Vec::new();
        for file in autoload["files"].as_array().into_iter().flatten().filter_map(|f| f.as_str()) {
            if !dir.join(file).is_file() {
                gaps.push(format!("autoloaded file {file}"));
            }
        }
        // Namespace directories are looked at as a whole: real packages declare some their archives
        // leave out (civicrm-core's `tests/phpunit/`), which the autoloader tolerates; a package none
        // of whose namespace directories is there has lost its code.
        let mut declared = Vec::new();
        for kind in ["psr-4", "psr-0"] {
            for (namespace, dirs) in autoload[kind].as_object().into_iter().flatten() {
                let dirs: Vec<&str> = match dirs {
                    serde_json::Value::String(d) => vec![d.as_str()],
                    serde_json::Value::Array(list) => list.iter().filter_map(|d| d.as_str()).collect(),
                    _ => vec![],
                };
                declared.extend(dirs.into_iter().map(|d| (namespace.clone(), d)));
            }
        }
        if !declared.is_empty() && declared.iter().all(|(_, d)| !dir.join(d).is_dir()) {
            for (namespace, d) in &declared {
                let classes = if namespace.is_empty() { "classes".to_string() } else { format!("{namespace}*") };
                gaps.push(format!("{} for {classes}", if d.is_empty() { "its directory" } else { d }));
            }
        }
        if !gaps.is_empty() {
            missing.push(format!("{name} (missing {})", gaps.join(", ")));
        }
    }
    missing
}

/// `path` relative to `root` when it is inside it.
fn shown(root: &Path, path: &Path) -> String {
    // install-paths go through vendor/composer/../: tidy them without touching the disk.
    let mut parts: Vec<std::path::Component> = Vec::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::CurDir => {}
            c => parts.push(c),
        }
    }
    let tidy: std::path::PathBuf = parts.iter().collect();
    tidy.strip_prefix(root).unwrap_or(&tidy).to_string_lossy().into_owned()
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

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    #[test]
    fn finds_what_is_missing_of_the_installed_packages() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        assert!(missing_vendor_packages(root).is_empty(), "no composer metadata, nothing to check");
        let installed = serde_json::json!({
            "dev": false,
            "dev-package-names": ["phpunit/phpunit"],
            "packages": [
                {"name": "acme/whole", "install-path": "../acme/whole",
                 "autoload": {"psr-4": {"Acme\\Whole\\": "src/"}, "files": ["helpers.php"]}},
                {"name": "acme/gone", "install-path": "../acme/gone"},
                {"name": "acme/half", "install-path": "../acme/half",
                 "autoload": {"psr-4": {"Acme\\Half\\": ["src/", "lib/"]}, "files": ["boot.php"]}},
                {"name": "acme/hollow", "install-path": "../acme/hollow",
                 "autoload": {"psr-4": {"Acme\\Hollow\\": "src/"}, "psr-0": {"Acme_": "lib/"}}},
                {"name": "acme/meta", "type": "metapackage"},
                {"name": "phpunit/phpunit", "install-path": "../phpunit/phpunit"}
            ]
        });
        write(root, "vendor/composer/installed.json", &installed.to_string());
        write(root, "vendor/autoload.php", "<?php");
        write(root, "vendor/acme/whole/src/A.php", "<?php");
        write(root, "vendor/acme/whole/helpers.php", "<?php");
        write(root, "vendor/acme/half/src/A.php", "<?php");
        write(root, "vendor/acme/hollow/README.md", "");
        // A namespace directory left out beside others that are there is tolerated, as the
        // autoloader does; a package with none of its namespace directories is not.
        assert_eq!(
            missing_vendor_packages(root),
            [
                "acme/gone (no vendor/acme/gone)",
                "acme/half (missing autoloaded file boot.php)",
                "acme/hollow (missing src/ for Acme\\Hollow\\*, lib/ for Acme_*)",
            ]
        );
    }

    #[test]
    fn reads_the_php_a_codebase_needs_from_wherever_it_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, "composer.json", r#"{"require": {"php": ">=8.1", "ext-GD": "*", "drupal/core": "^11"}}"#);
        write(root, "web/core/composer.json", r#"{"require": {"php": ">=8.3.0", "ext-pdo": "*"}}"#);
        write(
            root,
            "web/core/lib/Drupal.php",
            "class Drupal {\n  const VERSION = '11.1.0';\n  const MINIMUM_PHP = '8.3.0';\n}",
        );
        write(
            root,
            "vendor/composer/platform_check.php",
            "<?php\n$issues = array();\nif (!(PHP_VERSION_ID >= 80300)) {\n    $issues[] = 'x';\n}\n$missingExtensions = array();\nextension_loaded('intl') || $missingExtensions[] = 'intl';\n",
        );
        write(
            root,
            "vendor/composer/installed.json",
            r#"{"packages": [{"name": "a/b", "require": {"ext-mbstring": "*", "php": ">=7"}}]}"#,
        );
        let (req, ext) = php_needs(root, Some(&root.join("web")));
        let pairs: Vec<(&str, &str)> = req.iter().map(|r| (r.source.as_str(), r.constraint.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("composer.json", ">=8.1"),
                ("web/core/composer.json", ">=8.3.0"),
                ("vendor/composer/platform_check.php", ">=8.3.0"),
                ("Drupal::MINIMUM_PHP", ">=8.3.0"),
            ]
        );
        // A single package's own `ext-*` (mbstring here) is not a requirement of the codebase.
        assert_eq!(ext, ["gd", "intl", "pdo"]);
        let d = platform_details(root, Some(&root.join("web")));
        assert_eq!(d.php_requirement.as_deref(), Some(">=8.1; >=8.3.0"));
    }

    #[test]
    fn runs_drush_by_its_php_entry_point() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        assert_eq!(drush_entry(root), None);
        // Drush 13: composer's vendor/bin/drush is a shell proxy; drush.php is the PHP.
        write(root, "vendor/bin/drush", "#!/usr/bin/env sh\nexec \"$dir/drush\" \"$@\"\n");
        assert_eq!(drush_entry(root), Some(("vendor/bin/drush".into(), true)), "only a script: it runs itself");
        write(root, "vendor/drush/drush/drush", "#!/usr/bin/env sh\nexec php drush.php \"$@\"\n");
        write(root, "vendor/drush/drush/drush.php", "#!/usr/bin/env php\n<?php\nrequire 'x';\n");
        assert_eq!(drush_entry(root), Some(("vendor/drush/drush/drush.php".into(), false)));
        // Drush 12 and older fixtures: vendor/bin/drush is PHP.
        let other = tempfile::tempdir().expect("tempdir");
        write(other.path(), "vendor/bin/drush", "#!/usr/bin/env php\n<?php\n");
        assert_eq!(drush_entry(other.path()), Some(("vendor/bin/drush".into(), false)));
    }
}
