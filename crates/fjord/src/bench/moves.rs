//! `fjord bench backup` and `fjord bench migrate`: real sites moved by the real binary. A throwaway
//! state dir gets its own `fjord serve`, a server on the given MariaDB and the Drupal 10 fixture
//! platform; every measured operation is the CLI a user would type (`site backup --wait`, …), timed
//! from outside, against the plain tools doing the same job in the same run (`mariadb-dump | gzip` +
//! `tar czf`, and back). Like the other benches it prints times and ratios, never verdicts.

use crate::cli::BenchEnv;
use crate::commands::Ctx;
use anyhow::{bail, ensure, Context as _, Result};
use fjord_exec::cmd::{run, run_checked, run_pipe};
use fjord_exec::Cmd;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const LONG: Duration = Duration::from_secs(6 * 3600);

/// A state dir with its daemon, a server on the given MariaDB, and fixture platforms.
struct Driver {
    exe: String,
    dir: tempfile::TempDir,
    state: PathBuf,
    socket: String,
    /// The web server's port on 127.0.0.1.
    http_port: u16,
    serve: Option<(tokio::task::JoinHandle<()>, watch::Sender<bool>)>,
}

impl Driver {
    async fn new(env: &BenchEnv, platforms: &[&str]) -> Result<Driver> {
        use std::os::unix::fs::PermissionsExt;
        let exe = std::env::current_exe()?.to_string_lossy().into_owned();
        let dir = match &env.dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                tempfile::Builder::new().prefix("fjord-bench-").tempdir_in(d)?
            }
            None => tempfile::Builder::new().prefix("fjord-bench-").tempdir()?,
        };
        // Web-server workers and PHP-FPM pools run as www-data: they must reach the state dir.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let state = dir.path().join("state");
        let http_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut d = Driver { exe, dir, state, socket: env.mariadb_socket.clone(), http_port, serve: None };
        d.fjord(&["init"]).await?;
        d.start_serve().await?;
        let port = http_port.to_string();
        let db_port = env.mariadb_port.to_string();
        d.fjord(&[
            "server",
            "add",
            "localhost",
            "--http-port",
            &port,
            "--listen",
            "127.0.0.1",
            "--database",
            "mariadb",
            "--mariadb-socket",
            &env.mariadb_socket,
            "--mariadb-port",
            &db_port,
            "--wait",
        ])
        .await?;
        let source = env.codebase.clone().unwrap_or_else(|| "tests/fixtures/platforms/drupal10".into());
        std::fs::create_dir_all(d.dir.path().join("code"))?;
        for name in platforms {
            let root = d.dir.path().join("code").join(name).to_string_lossy().into_owned();
            run_checked(&Cmd::new(["cp", "-a", source.as_str(), root.as_str()]), None, None).await.with_context(
                || format!("copying the codebase {source} (run from the repository root or give --codebase)"),
            )?;
            d.fjord(&["platform", "add", name, "--path", &root, "--wait"]).await?;
        }
        Ok(d)
    }

    fn cmd(&self, args: &[&str]) -> Cmd {
        let mut argv = vec![self.exe.clone(), "--state".into(), self.state.to_string_lossy().into_owned()];
        argv.extend(args.iter().map(|a| a.to_string()));
        Cmd::new(argv)
            .env("FJORD_DB", format!("sqlite://{}/fjord.db", self.state.display()))
            .env("FJORD_NODE", "bench")
            .env("FJORD_LOG", "warn")
            .timeout(LONG)
    }

    /// Runs `fjord ARGS`, which must succeed; returns its stdout.
    async fn fjord(&self, args: &[&str]) -> Result<String> {
        let out =
            run_checked(&self.cmd(args), None, None).await.with_context(|| format!("fjord {}", args.join(" ")))?;
        Ok(out.stdout)
    }

    async fn json(&self, args: &[&str]) -> Result<Value> {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.fjord(&a).await?;
        serde_json::from_str(&out).with_context(|| format!("JSON from fjord {}", args.join(" ")))
    }

    /// Runs `fjord --json ARGS` (a task with `--wait`) and times it; fails unless the task succeeded.
    async fn timed_task(&self, args: &[&str]) -> Result<(Duration, Value)> {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let t0 = Instant::now();
        let out = run(&self.cmd(&a), None, None).await?;
        let took = t0.elapsed();
        let task: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
        if task["status"] != "succeeded" {
            let log = match task["id"].as_i64() {
                Some(id) => self.fjord(&["task", "log", &id.to_string()]).await.unwrap_or_default(),
                None => String::new(),
            };
            bail!("fjord {}: {}\n{}\n{log}", args.join(" "), out.stderr.trim(), out.stdout.trim());
        }
        Ok((took, task))
    }

    async fn start_serve(&mut self) -> Result<()> {
        let cmd = self.cmd(&["serve", "--workers", "4"]);
        let (tx, rx) = watch::channel(false);
        let handle = tokio::spawn(async move {
            if let Ok(out) = run(&cmd, None, Some(rx)).await {
                if !out.success() {
                    eprintln!("fjord serve exited: {}", out.stderr);
                }
            }
        });
        self.serve = Some((handle, tx));
        let t0 = Instant::now();
        while self.json(&["health"]).await?["daemon_running"] != true {
            ensure!(t0.elapsed() < Duration::from_secs(30), "fjord serve did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// SQL as MariaDB's root over the socket, on stdin.
    async fn sql(&self, db: Option<&str>, sql: &str) -> Result<String> {
        let mut argv = vec![
            "mariadb".to_string(),
            "--no-defaults".into(),
            format!("--socket={}", self.socket),
            "-uroot".into(),
            "--batch".into(),
            "--skip-column-names".into(),
            "--local-infile=1".into(),
        ];
        argv.extend(db.map(String::from));
        let out = run_checked(&Cmd::new(argv).stdin(sql.as_bytes().to_vec()).timeout(LONG), None, None).await?;
        Ok(out.stdout)
    }

    fn root_client(&self, tool: &str) -> Vec<String> {
        vec![tool.into(), "--no-defaults".into(), format!("--socket={}", self.socket), "-uroot".into()]
    }

    /// Stops the daemon (SIGTERM, as an admin would) and the nginx and PHP-FPM masters it started.
    async fn stop(&mut self) {
        if let Some((handle, tx)) = self.serve.take() {
            if let Some(pid) = read_pid(&self.state.join("serve.pid")) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
            }
            let mut handle = handle;
            if tokio::time::timeout(Duration::from_secs(30), &mut handle).await.is_err() {
                let _ = tx.send(true);
                let _ = handle.await;
            }
        }
        self.stop_masters();
    }

    fn stop_masters(&self) {
        for e in std::fs::read_dir(self.state.join("run")).into_iter().flatten().flatten() {
            if e.path().extension().is_some_and(|x| x == "pid") {
                if let Some(pid) = read_pid(&e.path()) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGQUIT);
                }
            }
        }
    }

    /// Drops the databases and users of every site the bench made (they live outside the temp dir).
    async fn drop_site_databases(&self) -> Result<()> {
        let sites = self.json(&["site", "list"]).await?;
        let mut sql = String::new();
        for s in sites.as_array().into_iter().flatten() {
            let (Some(db), Some(user)) = (s["db_name"].as_str(), s["db_user"].as_str()) else { continue };
            sql.push_str(&format!(
                "DROP DATABASE IF EXISTS `{db}`;\nDROP USER IF EXISTS '{user}'@'localhost', '{user}'@'127.0.0.1';\n"
            ));
        }
        self.sql(None, &sql).await.map(|_| ())
    }

    /// The site's directory in the platform (Drupal: `sites/DOMAIN`, with `files/`).
    fn site_dir(&self, platform: &str, domain: &str) -> Result<PathBuf> {
        let code = self.dir.path().join("code").join(platform);
        [code.join("web/sites").join(domain), code.join("sites").join(domain)]
            .into_iter()
            .find(|p| p.is_dir())
            .with_context(|| format!("no sites/{domain} under {}", code.display()))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some((_, tx)) = self.serve.take() {
            let _ = tx.send(true);
        }
        self.stop_masters();
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok().and_then(|p| p.trim().parse().ok())
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn file_size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path).with_context(|| format!("stat {}", path.display()))?.len())
}

/// Waits for the newest task of `kind` (queued by the task that just ended) to succeed; returns it.
async fn wait_for_follow_up(d: &Driver, kind: &str) -> Result<Value> {
    let tasks = d.json(&["task", "list", "--limit", "5"]).await?;
    let id = tasks
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["kind"] == kind)
        .and_then(|t| t["id"].as_i64())
        .with_context(|| format!("no {kind} task queued"))?
        .to_string();
    let t0 = Instant::now();
    loop {
        let task = d.json(&["task", "show", &id]).await?["task"].clone();
        match task["status"].as_str() {
            Some("succeeded") => return Ok(task),
            Some("failed" | "cancelled") => bail!("{kind} task {id} did not succeed: {}", task["error"]),
            _ => {}
        }
        ensure!(t0.elapsed() < LONG, "{kind} task {id} still not finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How long each step of a task took, from its log: (label, ms).
async fn step_times(d: &Driver, task: &Value) -> Result<Vec<(String, i64)>> {
    let id = task["id"].as_i64().context("task id")?.to_string();
    let lines = d.json(&["task", "log", &id]).await?;
    let lines: Vec<(i64, String)> = lines
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| (l["ts"].as_i64().unwrap_or(0), l["text"].as_str().unwrap_or("").to_string()))
        .collect();
    let end = task["finished_at"].as_i64().or_else(|| lines.last().map(|l| l.0)).unwrap_or(0);
    let starts: Vec<&(i64, String)> = lines.iter().filter(|(_, t)| t.starts_with("step ")).collect();
    Ok(starts
        .iter()
        .enumerate()
        .map(|(i, (ts, text))| {
            let next = starts.get(i + 1).map(|n| n.0).unwrap_or(end);
            let label = text.split_once(": ").map(|(_, l)| l).unwrap_or(text).to_string();
            (label, next - ts)
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Generated content
// ---------------------------------------------------------------------------------------------

/// xorshift64*: fast, reproducible, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Text like a site's content: words from a vocabulary of a few thousand, common ones more often,
/// in sentences. Compresses about as well as prose (gzip -6: ~3:1), with no long repeats.
struct Text {
    words: Vec<String>,
}

impl Text {
    fn new(rng: &mut Rng) -> Text {
        const SYL: &[&str] = &[
            "ka", "lo", "ri", "ne", "sta", "tor", "ve", "mi", "an", "el", "qu", "is", "pre", "con", "ment", "ing",
            "al", "ex", "or", "ta", "de", "um", "ber", "si", "ron", "pa", "gu", "fle", "dor", "wy",
        ];
        let words = (0..6000)
            .map(|_| {
                let n = 1 + rng.below(4);
                (0..n).map(|_| SYL[rng.below(SYL.len() as u64) as usize]).collect::<String>()
            })
            .collect();
        Text { words }
    }

    /// Appends `min` to `min + spread` bytes of sentences.
    fn push_between(&self, rng: &mut Rng, out: &mut String, min: usize, spread: u64) {
        let bytes = min + rng.below(spread) as usize;
        self.push(rng, out, bytes)
    }

    /// Appends about `bytes` bytes of sentences (letters, spaces, commas and full stops only).
    fn push(&self, rng: &mut Rng, out: &mut String, bytes: usize) {
        let target = out.len() + bytes;
        let mut start = true;
        while out.len() < target {
            // Zipf-like: squaring a uniform variable favours the first words.
            let r = rng.below(1 << 16) as f64 / 65536.0;
            let w = &self.words[(r * r * self.words.len() as f64) as usize];
            if start {
                let mut c = w.chars();
                if let Some(f) = c.next() {
                    out.extend(f.to_uppercase());
                    out.push_str(c.as_str());
                }
                start = false;
            } else {
                out.push_str(w);
            }
            match rng.below(16) {
                0 => {
                    out.push_str(". ");
                    start = true;
                }
                1 => out.push_str(", "),
                _ => out.push(' '),
            }
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE node_field_data (nid INT UNSIGNED NOT NULL PRIMARY KEY, type VARCHAR(32) NOT NULL,
  title VARCHAR(255) NOT NULL, uid INT UNSIGNED NOT NULL, status TINYINT NOT NULL, created INT NOT NULL,
  changed INT NOT NULL, KEY node_uid (uid), KEY node_created (created, status)) ENGINE=InnoDB;
CREATE TABLE node__body (nid INT UNSIGNED NOT NULL PRIMARY KEY, body_value LONGTEXT NOT NULL,
  body_summary TEXT NOT NULL, body_format VARCHAR(32) NOT NULL) ENGINE=InnoDB;
CREATE TABLE cache_render (cid VARCHAR(255) NOT NULL PRIMARY KEY, data LONGBLOB, expire INT NOT NULL,
  created DECIMAL(14,3) NOT NULL, tags TEXT, KEY cache_expire (expire)) ENGINE=InnoDB;
CREATE TABLE watchdog (wid BIGINT UNSIGNED NOT NULL PRIMARY KEY, uid INT UNSIGNED NOT NULL,
  type VARCHAR(64) NOT NULL, message LONGTEXT NOT NULL, severity TINYINT UNSIGNED NOT NULL,
  location TEXT NOT NULL, timestamp INT NOT NULL, KEY wd_type (type), KEY wd_uid (uid),
  KEY wd_timestamp (timestamp)) ENGINE=InnoDB;
";

/// Fills the site's database with about `bytes` of rows: many narrow ones (nodes, log entries) and
/// a few wide tables (bodies, cache), loaded with `LOAD DATA LOCAL INFILE` from generated files.
async fn generate_db(d: &Driver, db: &str, bytes: u64, work: &Path) -> Result<Rows> {
    d.sql(Some(db), SCHEMA).await?;
    let mut rng = Rng(0x5eed_f00d_1234_5678);
    let text = Text::new(&mut rng);
    let chunk_file = work.join("rows.tsv");
    ensure!(!chunk_file.to_string_lossy().contains('\''), "a quote in the work dir's path");
    // (table, columns, share of the bytes)
    let tables: [(&str, &str, f64); 4] = [
        ("node_field_data", "nid, type, title, uid, status, created, changed", 0.10),
        ("node__body", "nid, body_value, body_summary, body_format", 0.50),
        ("cache_render", "cid, data, expire, created, tags", 0.25),
        ("watchdog", "wid, uid, type, message, severity, location, timestamp", 0.15),
    ];
    let mut rows = Rows::default();
    for (table, cols, share) in tables {
        let budget = (bytes as f64 * share) as usize;
        let mut done = 0usize;
        let mut id = 0u64;
        while done < budget {
            let mut chunk = String::with_capacity(33 << 20);
            while chunk.len() < 32 << 20 && done + chunk.len() < budget {
                id += 1;
                let t = 1_600_000_000 + rng.below(100_000_000);
                match table {
                    "node_field_data" => {
                        chunk.push_str(&format!("{id}\tarticle\t"));
                        text.push_between(&mut rng, &mut chunk, 20, 60);
                        chunk.push_str(&format!("\t{}\t{}\t{t}\t{}\n", 1 + rng.below(5000), rng.below(2), t + 100));
                    }
                    "node__body" => {
                        chunk.push_str(&format!("{id}\t"));
                        text.push_between(&mut rng, &mut chunk, 1000, 6000);
                        chunk.push('\t');
                        text.push_between(&mut rng, &mut chunk, 200, 200);
                        chunk.push_str("\tbasic_html\n");
                    }
                    "cache_render" => {
                        chunk.push_str(&format!("render:node:{id}:full\ta:2:{{s:4:\"html\";s:0:\""));
                        text.push_between(&mut rng, &mut chunk, 2000, 8000);
                        chunk.push_str(&format!("\";}}\t-1\t{t}.123\tnode:{id} rendered\n"));
                    }
                    _ => {
                        chunk.push_str(&format!("{id}\t{}\tphp\t", rng.below(5000)));
                        text.push_between(&mut rng, &mut chunk, 80, 300);
                        chunk.push_str(&format!("\t{}\thttp://example.com/node/{id}\t{t}\n", rng.below(8)));
                    }
                }
            }
            done += chunk.len();
            fjord_exec::fsops::write_atomic(&chunk_file, chunk.as_bytes(), 0o644)?;
            d.sql(Some(db), &format!("LOAD DATA LOCAL INFILE '{}' INTO TABLE {table} ({cols});", chunk_file.display()))
                .await?;
        }
        if table == CACHE_TABLE {
            rows.cache += id;
        } else {
            rows.content += id;
        }
    }
    let _ = std::fs::remove_file(&chunk_file);
    Ok(rows)
}

/// Writes about `bytes` of files into `files`: many small text files (documents, CSS-like, 1–64 KB;
/// 30%), images (incompressible, 50–500 KB; 30%) and a few large media files (incompressible,
/// 8–64 MB; 40%). Returns the number of files.
fn generate_files(files: &Path, bytes: u64) -> Result<u64> {
    let mut rng = Rng(0xf11e_5eed_0000_0001);
    let text = Text::new(&mut rng);
    let mut count = 0u64;
    let classes: [(&str, f64, u64, u64, bool); 3] = [
        ("documents", 0.30, 1 << 10, 64 << 10, true),
        ("images", 0.30, 50 << 10, 500 << 10, false),
        ("media", 0.40, 8 << 20, 64 << 20, false),
    ];
    for (class, share, min, max, is_text) in classes {
        let budget = (bytes as f64 * share) as u64;
        let mut done = 0u64;
        let mut i = 0u64;
        while done < budget {
            let size = (min + rng.below(max - min)).min(budget - done).max(1);
            let dir = files.join(class).join(format!("{:03}", i / 500));
            if i.is_multiple_of(500) {
                std::fs::create_dir_all(&dir)?;
            }
            let content = if is_text {
                let mut s = String::with_capacity(size as usize + 64);
                s.push_str("<html><body><p>");
                text.push(&mut rng, &mut s, size as usize);
                s.push_str("</p></body></html>\n");
                s.into_bytes()
            } else {
                let mut b = vec![0u8; size as usize];
                rng.fill(&mut b);
                b
            };
            let ext = if is_text {
                "html"
            } else if class == "images" {
                "jpg"
            } else {
                "mp4"
            };
            fjord_exec::fsops::write_atomic(&dir.join(format!("{class}-{i}.{ext}")), &content, 0o644)?;
            done += content.len() as u64;
            i += 1;
            count += 1;
        }
    }
    Ok(count)
}

/// The bench's Drupal cache bin: a backup archives it without its rows, as Drupal rebuilds them.
const CACHE_TABLE: &str = "cache_render";

/// Rows of the generated database: content (nodes, bodies, log) and the cache bin's.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Rows {
    content: u64,
    cache: u64,
}

impl Rows {
    fn total(self) -> u64 {
        self.content + self.cache
    }
}

async fn row_count(d: &Driver, db: &str) -> Result<Rows> {
    let out = d
        .sql(
            Some(db),
            &format!(
                "SELECT (SELECT COUNT(*) FROM node_field_data) + (SELECT COUNT(*) FROM node__body) + \
                 (SELECT COUNT(*) FROM watchdog), (SELECT COUNT(*) FROM {CACHE_TABLE});"
            ),
        )
        .await?;
    let mut n = out.split_whitespace().map(|v| v.parse::<u64>().context("a row count"));
    let (Some(content), Some(cache)) = (n.next(), n.next()) else { bail!("no row counts in {out:?}") };
    Ok(Rows { content: content?, cache: cache? })
}

async fn db_name(d: &Driver, domain: &str) -> Result<String> {
    let site = d.json(&["site", "show", domain]).await?;
    Ok(site["site"]["db_name"].as_str().context("db_name")?.to_string())
}

/// `mariadb-dump | gzip > out`, as a shell would run it: both at once, joined by an OS pipe (a FIFO
/// here, as Fjord starts no shell).
async fn dump_gzip(d: &Driver, db: &str, out: &Path, work: &Path, options: &[String]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let fifo = work.join("dump.fifo");
    let _ = std::fs::remove_file(&fifo);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR)?;
    // Held open for reading so that neither end's open blocks waiting for the other.
    let _hold = std::fs::OpenOptions::new().read(true).custom_flags(nix::libc::O_NONBLOCK).open(&fifo)?;
    let mut argv = d.root_client("mariadb-dump");
    argv.extend(["--single-transaction".into(), "--quick".into()]);
    argv.extend(options.iter().cloned());
    argv.push(db.into());
    let mut dump = Cmd::new(argv).timeout(LONG);
    dump.stdout_file = Some(fifo.clone());
    let mut gzip = Cmd::new(["gzip", "-c"]).timeout(LONG);
    gzip.stdin_file = Some(fifo.clone());
    gzip.stdout_file = Some(out.to_path_buf());
    let (a, b) = tokio::join!(run_checked(&dump, None, None), run_checked(&gzip, None, None));
    a?;
    b?;
    let _ = std::fs::remove_file(&fifo);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// fjord bench backup
// ---------------------------------------------------------------------------------------------

pub async fn backup(ctx: &mut Ctx, size_mb: u64, clone: bool, env: BenchEnv) -> Result<ExitCode> {
    let mut d = Driver::new(&env, &["d10"]).await?;
    let result = backup_bench(ctx, &d, size_mb, clone).await;
    if let Err(e) = d.drop_site_databases().await {
        eprintln!("warning: dropping the bench's databases: {e:#}");
    }
    d.stop().await;
    result
}

async fn backup_bench(ctx: &mut Ctx, d: &Driver, size_mb: u64, clone: bool) -> Result<ExitCode> {
    let bytes = size_mb * 1_000_000;
    let domain = "big.bench.example";
    let work = d.dir.path().join("work");
    std::fs::create_dir_all(&work)?;
    let say = |s: String| {
        if !ctx.out.json {
            eprintln!("{s}");
        }
    };
    d.fjord(&["site", "create", domain, "--platform", "d10", "--db-engine", "mariadb", "--wait"]).await?;
    let db = db_name(d, domain).await?;
    let t0 = Instant::now();
    let rows = generate_db(d, &db, bytes, &work).await?;
    let site_dir = d.site_dir("d10", domain)?;
    let files = generate_files(&site_dir.join("files"), bytes)?;
    say(format!(
        "generated {size_mb} MB of rows ({} rows in 4 tables, {} of them in the cache bin {CACHE_TABLE}) and \
         {size_mb} MB of files ({files} files) in {:.0} s",
        rows.total(),
        rows.cache,
        secs(t0.elapsed())
    ));

    // Baseline backup: mariadb-dump | gzip, then tar czf of the site's directory.
    let base_db = work.join("db.sql.gz");
    let base_files = work.join("files.tar.gz");
    let sites_dir = site_dir.parent().context("sites dir")?.to_string_lossy().into_owned();
    let t0 = Instant::now();
    dump_gzip(d, &db, &base_db, &work, &[]).await?;
    let base_dump = t0.elapsed();
    run_checked(
        &Cmd::new(["tar", "czf", &base_files.to_string_lossy(), "-C", &sites_dir, domain]).timeout(LONG),
        None,
        None,
    )
    .await?;
    let base_backup = t0.elapsed();
    let base_size = file_size(&base_db)? + file_size(&base_files)?;
    say(format!(
        "baseline backup: {:.1} s ({:.1} s the database), {:.0} MB",
        secs(base_backup),
        secs(base_dump),
        mb(base_size)
    ));

    // Fjord backup.
    let (fj_backup, task) = d.timed_task(&["site", "backup", domain, "--wait"]).await?;
    let backup_steps = step_times(d, &task).await?;
    let list = d.json(&["backup", "list", "--site", domain]).await?;
    let backup = list.as_array().and_then(|l| l.iter().max_by_key(|b| b["id"].as_i64())).context("no backup")?.clone();
    let backup_id = backup["id"].as_i64().context("backup id")?.to_string();
    let fj_size = backup["size"].as_u64().context("backup size")?;
    say(format!("fjord backup: {:.1} s, {:.0} MB", secs(fj_backup), mb(fj_size)));
    // Like for like: the size of a baseline whose dump also leaves out the cache bin's rows.
    let lean_db = work.join("db-without-cache-rows.sql.gz");
    dump_gzip(d, &db, &lean_db, &work, &[format!("--ignore-table-data={db}.{CACHE_TABLE}")]).await?;
    let lean_size = file_size(&lean_db)? + file_size(&base_files)?;
    std::fs::remove_file(&lean_db)?;

    // Baseline restore: gunzip | mariadb into a new database, tar xzf into a new directory.
    let restore_db = "fjord_bench_baseline_restore";
    d.sql(None, &format!("DROP DATABASE IF EXISTS {restore_db}; CREATE DATABASE {restore_db};")).await?;
    let restore_dir = work.join("restored");
    std::fs::create_dir_all(&restore_dir)?;
    let mut client = d.root_client("mariadb");
    client.push(restore_db.into());
    let t0 = Instant::now();
    run_pipe(
        &Cmd::new(["gunzip".to_string(), "-c".into(), base_db.to_string_lossy().into_owned()]).timeout(LONG),
        &Cmd::new(client).timeout(LONG),
        None,
        None,
    )
    .await?;
    let base_import = t0.elapsed();
    run_checked(
        &Cmd::new(["tar", "xzf", &base_files.to_string_lossy(), "-C", &restore_dir.to_string_lossy()]).timeout(LONG),
        None,
        None,
    )
    .await?;
    let base_restore = t0.elapsed();
    ensure!(row_count(d, restore_db).await? == rows, "the baseline restore lost rows");
    d.sql(None, &format!("DROP DATABASE {restore_db};")).await?;
    run_checked(&Cmd::new(["rm", "-rf", &restore_dir.to_string_lossy()]).timeout(LONG), None, None).await?;
    say(format!("baseline restore: {:.1} s ({:.1} s the database)", secs(base_restore), secs(base_import)));

    // Fjord restore. The site is restored and served when its task ends; the data it replaced is then
    // archived (the pre-restore backup) and removed by a follow-up task, timed separately.
    let (fj_restore, task) = d.timed_task(&["site", "restore", domain, "--backup", &backup_id, "--wait"]).await?;
    let restore_steps = step_times(d, &task).await?;
    ensure!(
        row_count(d, &db_name(d, domain).await?).await? == Rows { cache: 0, ..rows },
        "the restore lost rows, or brought back the cache bin's"
    );
    let t0 = Instant::now();
    let archived = wait_for_follow_up(d, "site-archive-replaced").await?;
    let fj_archive_replaced = t0.elapsed();
    let archive_steps = step_times(d, &archived).await?;
    say(format!(
        "fjord restore: {:.1} s; then the pre-restore archive of the replaced data: {:.1} s more",
        secs(fj_restore),
        secs(fj_archive_replaced)
    ));

    // Clone vs. backup-then-restore.
    let clone_time = if clone {
        // The restore removes the replaced files in the background (`.NAME.fjord-removed-…`); a clone
        // copying the site's directory meanwhile fails when entries vanish under `cp`. Wait for it.
        let t0 = Instant::now();
        while std::fs::read_dir(&site_dir)?.flatten().any(|e| e.file_name().to_string_lossy().contains("fjord-removed"))
        {
            ensure!(t0.elapsed() < Duration::from_secs(600), "the restore's old files are still being removed");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (t, _) = d.timed_task(&["site", "clone", domain, "copy.bench.example", "--wait"]).await?;
        // The source's rows as the restore left them (its cache bin empty).
        let source = row_count(d, &db_name(d, domain).await?).await?;
        ensure!(row_count(d, &db_name(d, "copy.bench.example").await?).await? == source, "the clone lost rows");
        say(format!("fjord clone: {:.1} s", secs(t)));
        Some(t)
    } else {
        None
    };

    let r = |base: Duration, fj: Duration| secs(base) / secs(fj).max(1e-9);
    let steps_json = |v: &[(String, i64)]| -> Vec<Value> {
        v.iter().map(|(l, ms)| serde_json::json!({ "step": l, "ms": ms })).collect()
    };
    let v = serde_json::json!({
        "size_mb": size_mb, "rows": rows.total(), "cache_rows": rows.cache, "files": files,
        "baseline_backup_s": secs(base_backup), "baseline_dump_s": secs(base_dump), "baseline_bytes": base_size,
        "fjord_backup_s": secs(fj_backup), "fjord_bytes": fj_size,
        "backup_speedup": r(base_backup, fj_backup), "size_ratio": fj_size as f64 / base_size as f64,
        "baseline_bytes_without_cache_rows": lean_size,
        "size_ratio_without_cache_rows": fj_size as f64 / lean_size as f64,
        "baseline_restore_s": secs(base_restore), "baseline_import_s": secs(base_import),
        "fjord_restore_s": secs(fj_restore), "fjord_archive_replaced_s": secs(fj_archive_replaced),
        "restore_speedup": r(base_restore, fj_restore),
        "restore_speedup_with_archive_replaced": r(base_restore, fj_restore + fj_archive_replaced),
        "clone_s": clone_time.map(secs),
        "clone_vs_fjord_backup_restore": clone_time.map(|c| r(fj_backup + fj_restore, c)),
        "clone_vs_baseline_backup_restore": clone_time.map(|c| r(base_backup + base_restore, c)),
        "backup_steps": steps_json(&backup_steps), "restore_steps": steps_json(&restore_steps),
        "archive_replaced_steps": steps_json(&archive_steps),
    });
    ctx.out.emit(&v, || {
        println!(
            "site with {size_mb} MB of database ({} rows, {} in the cache bin) and {size_mb} MB of files ({files} files):",
            rows.total(),
            rows.cache
        );
        println!(
            "backup:  fjord {:.1} s, {:.0} MB; baseline mariadb-dump | gzip + tar czf {:.1} s, {:.0} MB: \
             fjord is {:.2}x faster (target >= 2), archive {:.2}x the baseline's (target <= 1)",
            secs(fj_backup),
            mb(fj_size),
            secs(base_backup),
            mb(base_size),
            r(base_backup, fj_backup),
            fj_size as f64 / base_size as f64
        );
        println!(
            "         fjord leaves out the cache bin's rows; a baseline leaving them out too is {:.0} MB: \
             archive {:.2}x that",
            mb(lean_size),
            fj_size as f64 / lean_size as f64
        );
        println!(
            "restore: fjord {:.1} s to the restored site served; baseline gunzip | mariadb + tar xzf {:.1} s: \
             fjord is {:.2}x faster (target >= 2)",
            secs(fj_restore),
            secs(base_restore),
            r(base_restore, fj_restore),
        );
        println!(
            "         then {:.1} s archiving the replaced data (the pre-restore backup) and removing it; \
             with that, {:.1} s: {:.2}x",
            secs(fj_archive_replaced),
            secs(fj_restore + fj_archive_replaced),
            r(base_restore, fj_restore + fj_archive_replaced)
        );
        if let Some(c) = clone_time {
            println!(
                "clone:   {:.1} s; fjord backup + restore {:.1} s: clone is {:.2}x faster (target >= 3); \
                 baseline backup + restore {:.1} s: {:.2}x",
                secs(c),
                secs(fj_backup + fj_restore),
                r(fj_backup + fj_restore, c),
                secs(base_backup + base_restore),
                r(base_backup + base_restore, c)
            );
        }
        for (what, steps) in
            [("backup", &backup_steps), ("restore", &restore_steps), ("archive-replaced", &archive_steps)]
        {
            let slow: Vec<String> = steps
                .iter()
                .filter(|(_, ms)| *ms >= 500)
                .map(|(l, ms)| format!("{:.1} s {}", *ms as f64 / 1000.0, l.chars().take(60).collect::<String>()))
                .collect();
            println!("  fjord {what} steps over 0.5 s: {}", slow.join("; "));
        }
    });
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// fjord bench migrate
// ---------------------------------------------------------------------------------------------

pub async fn migrate(ctx: &mut Ctx, sites: usize, env: BenchEnv) -> Result<ExitCode> {
    if sites == 0 {
        bail!("--sites must be at least 1");
    }
    let mut d = Driver::new(&env, &["old", "new"]).await?;
    let result = migrate_bench(ctx, &d, sites).await;
    if let Err(e) = d.drop_site_databases().await {
        eprintln!("warning: dropping the bench's databases: {e:#}");
    }
    d.stop().await;
    result
}

/// Visitors of the sites: one thread per site requesting its front page through the real web server
/// in a loop (a new connection each time, as a visitor's browser would open), until stopped.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<SiteLoad>>,
}

/// What the visitor of one site saw.
#[derive(Default)]
struct SiteLoad {
    requests: u64,
    /// Answers that were not 2xx or 3xx (503 maintenance pages, 502s, refused connections).
    failed: u64,
    /// How long the site did not answer well: from each failed answer after a good one to the next
    /// good one, summed.
    unavailable: Duration,
}

impl Load {
    fn start(port: u16, domains: &[String]) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = domains
            .iter()
            .map(|domain| {
                let (stop, host) = (stop.clone(), format!("{domain}:{port}"));
                std::thread::spawn(move || {
                    let mut seen = SiteLoad::default();
                    let mut down_since: Option<Instant> = None;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let good = (200..400).contains(&get_status(port, &host));
                        let now = Instant::now();
                        seen.requests += 1;
                        match (good, down_since) {
                            (false, None) => down_since = Some(now),
                            (true, Some(t)) => {
                                seen.unavailable += now - t;
                                down_since = None;
                            }
                            _ => {}
                        }
                        seen.failed += u64::from(!good);
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    if let Some(t) = down_since {
                        seen.unavailable += t.elapsed();
                    }
                    seen
                })
            })
            .collect();
        Load { stop, threads }
    }

    fn stop(self) -> Vec<SiteLoad> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.threads.into_iter().map(|t| t.join().unwrap_or_default()).collect()
    }
}

/// One GET of `/` with the Host header `host`: the status, 0 without an answer.
fn get_status(port: u16, host: &str) -> u16 {
    use std::io::{Read, Write};
    let answer = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(s, "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
        let mut head = [0u8; 64];
        let n = s.read(&mut head)?;
        // The rest of the page is read to its end, as a visitor would.
        std::io::copy(&mut s, &mut std::io::sink())?;
        Ok(String::from_utf8_lossy(&head[..n]).into_owned())
    });
    answer.ok().and_then(|a| a.split_whitespace().nth(1).and_then(|s| s.parse().ok())).unwrap_or(0)
}

struct Batch {
    wall: Duration,
    migrated: u64,
    /// The maintenance window each migrate reported (0: switched live).
    downtimes: Vec<u64>,
    /// What the sites' visitors saw meanwhile.
    load: Vec<SiteLoad>,
}

/// A platform migrate of every site while each has a visitor; `maintenance` forces the window.
async fn platform_migrate(
    d: &Driver,
    domains: &[String],
    (from, to): (&str, &str),
    parallel: usize,
    maintenance: bool,
) -> Result<Batch> {
    let p = parallel.to_string();
    let mut args = vec!["--json", "platform", "migrate", from, "--to", to, "--parallel", &p];
    if maintenance {
        args.push("--maintenance");
    }
    let cmd = d.cmd(&args);
    let load = Load::start(d.http_port, domains);
    let t0 = Instant::now();
    let out = run(&cmd, None, None).await;
    let wall = t0.elapsed();
    let load = load.stop();
    let out = out?;
    let v: Value = serde_json::from_str(&out.stdout)
        .with_context(|| format!("platform migrate {from} --to {to}: {}", out.stderr))?;
    let mut downtimes: Vec<u64> =
        v["sites"].as_array().into_iter().flatten().filter_map(|s| s["downtime_ms"].as_u64()).collect();
    downtimes.sort();
    Ok(Batch { wall, migrated: v["migrated"].as_u64().unwrap_or(0), downtimes, load })
}

async fn migrate_bench(ctx: &mut Ctx, d: &Driver, sites: usize) -> Result<ExitCode> {
    let t0 = Instant::now();
    let domains: Vec<String> = (0..sites).map(|i| format!("m{i}.bench.example")).collect();
    for domain in &domains {
        d.fjord(&["site", "create", domain, "--platform", "old", "--db-engine", "mariadb", "--wait"]).await?;
    }
    if !ctx.out.json {
        eprintln!("created {sites} sites in {:.0} s", secs(t0.elapsed()));
    }
    // The same code move each time (the two platforms hold the same code: no database updates):
    // switched live, then the same sites back through the maintenance window as every migrate had it
    // before, then live again two at a time.
    let live = platform_migrate(d, &domains, ("old", "new"), 1, false).await?;
    let window = platform_migrate(d, &domains, ("new", "old"), 1, true).await?;
    let two = platform_migrate(d, &domains, ("old", "new"), 2, false).await?;
    let stats = |b: &Batch| {
        let n = b.downtimes.len().max(1);
        let mean = b.downtimes.iter().sum::<u64>() as f64 / n as f64;
        let p50 = b.downtimes.get(b.downtimes.len() / 2).copied().unwrap_or(0);
        let max = b.downtimes.last().copied().unwrap_or(0);
        let mut unavailable: Vec<u64> = b.load.iter().map(|l| l.unavailable.as_millis() as u64).collect();
        unavailable.sort();
        let requests: u64 = b.load.iter().map(|l| l.requests).sum();
        let failed: u64 = b.load.iter().map(|l| l.failed).sum();
        serde_json::json!({ "wall_s": secs(b.wall), "migrated": b.migrated, "per_site_s": secs(b.wall) / sites as f64,
            "downtime_mean_ms": mean, "downtime_p50_ms": p50, "downtime_max_ms": max, "downtime_ms": b.downtimes,
            "requests": requests, "failed_requests": failed,
            "unavailable_mean_ms": unavailable.iter().sum::<u64>() as f64 / unavailable.len().max(1) as f64,
            "unavailable_max_ms": unavailable.last().copied().unwrap_or(0), "unavailable_ms": unavailable })
    };
    let runs = [("live, --parallel 1", &live), ("--maintenance, --parallel 1", &window), ("live, --parallel 2", &two)];
    let v = serde_json::json!({ "sites": sites, "live": stats(&live), "maintenance": stats(&window),
        "live_parallel_2": stats(&two), "speedup": secs(live.wall) / secs(two.wall).max(1e-9) });
    ctx.out.emit(&v, || {
        for (label, b) in runs {
            let s = stats(b);
            println!(
                "platform migrate of {sites} sites ({label}): {:.1} s ({:.2} s/site), {} migrated; maintenance window \
                 per site: mean {:.0} ms, max {} ms; a visitor per site: {} of {} requests failed, unavailable \
                 mean {:.0} ms, max {} ms",
                secs(b.wall),
                secs(b.wall) / sites as f64,
                b.migrated,
                s["downtime_mean_ms"].as_f64().unwrap_or(0.0),
                s["downtime_max_ms"],
                s["failed_requests"],
                s["requests"],
                s["unavailable_mean_ms"].as_f64().unwrap_or(0.0),
                s["unavailable_max_ms"],
            );
        }
        let (l, w) = (stats(&live), stats(&window));
        println!(
            "live switch vs maintenance window: {} vs {} failed requests, unavailable {:.0} vs {:.0} ms per site, \
             {:.2}x the time per site",
            l["failed_requests"],
            w["failed_requests"],
            l["unavailable_mean_ms"].as_f64().unwrap_or(0.0),
            w["unavailable_mean_ms"].as_f64().unwrap_or(0.0),
            secs(live.wall) / secs(window.wall).max(1e-9)
        );
        println!("--parallel 2 is {:.2}x faster than one at a time", secs(live.wall) / secs(two.wall).max(1e-9));
    });
    let all = [&live, &window, &two].iter().all(|b| b.migrated == sites as u64);
    Ok(if all { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
