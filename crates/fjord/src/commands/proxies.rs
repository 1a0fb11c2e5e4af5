//! Trusted proxies: a server's real-IP settings and the published ranges of proxy providers.

use super::objects::set_services_and_verify;
use super::Ctx;
use crate::cli::{ProxyRangesCmd, ServerRealIp};
use crate::output::{fields, when};
use anyhow::{bail, Context, Result};
use fjord_core::proxies::parse_range_list;
use fjord_core::*;
use fjord_web::actions::{Actions, RealIpSet, CLOUDFLARE};
use std::process::ExitCode;

/// Where Cloudflare publishes its edge ranges, one CIDR block a line.
const CLOUDFLARE_URLS: &[&str] = &["https://www.cloudflare.com/ips-v4", "https://www.cloudflare.com/ips-v6"];

/// Cloudflare's ranges as last updated in the state database, or as shipped.
async fn cloudflare_ranges(ctx: &mut Ctx) -> Result<(Vec<String>, String, Option<Millis>)> {
    let store = ctx.store().await?;
    let layout = ctx.layout();
    Ok(Actions::new(&store, &layout).cloudflare_ranges().await?)
}

pub async fn real_ip(ctx: &mut Ctx, a: ServerRealIp) -> Result<ExitCode> {
    let store = ctx.store().await?;
    let s = store.server_by_name(&a.name).await?;
    let req = RealIpSet { trust: a.trust, cloudflare: a.cloudflare, header: a.header, off: a.off };
    let layout = ctx.layout();
    let services = Actions::new(&store, &layout).real_ip_set(&s, &req).await?;
    set_services_and_verify(ctx, &s, &services, serde_json::json!({})).await
}

pub async fn ranges(ctx: &mut Ctx, cmd: ProxyRangesCmd) -> Result<ExitCode> {
    match cmd {
        ProxyRangesCmd::Show => {
            let (ranges, source, at) = cloudflare_ranges(ctx).await?;
            let json = serde_json::json!({ "name": CLOUDFLARE, "ranges": ranges, "source": source, "updated_at": at });
            ctx.out.emit(&json, || {
                fields(&[
                    ("name", CLOUDFLARE.to_string()),
                    ("source", source.clone()),
                    ("updated", when(at)),
                    ("ranges", ranges.join(" ")),
                ])
            });
            Ok(ExitCode::SUCCESS)
        }
        ProxyRangesCmd::Update { from } => {
            let urls: Vec<String> =
                if from.is_empty() { CLOUDFLARE_URLS.iter().map(|u| u.to_string()).collect() } else { from };
            let mut text = String::new();
            for url in &urls {
                if !["http://", "https://", "file://"].iter().any(|p| url.starts_with(p)) {
                    bail!("invalid --from {url:?}: an http://, https:// or file:// URL");
                }
                // curl speaks all three; --proto keeps a redirect from leaving them.
                let cmd = Command::new(["curl", "-fsS", "--max-time", "30", "--proto", "=http,https,file", "--", url])
                    .timeout(60);
                let out =
                    ctx.executor()?.run_command(&cmd, None, None).await.with_context(|| format!("fetching {url}"))?;
                text.push_str(&out.stdout);
                text.push('\n');
            }
            // All or nothing: one bad line and the recorded list stays as it was.
            let ranges = parse_range_list(&text).map_err(|e| anyhow::anyhow!("the fetched list is not valid: {e}"))?;
            let store = ctx.store().await?;
            let old = store.proxy_ranges(CLOUDFLARE).await?.map(|(r, ..)| r);
            store.set_proxy_ranges(CLOUDFLARE, &ranges, &urls.join(" ")).await?;
            let mut report = vec![format!(
                "cloudflare: {} ranges from {}{}",
                ranges.len(),
                urls.join(" "),
                if old.as_ref() == Some(&ranges) { " (unchanged)" } else { "" }
            )];
            // Servers that trust Cloudflare get the new list, and a verify to apply it.
            for s in store.servers().await? {
                let Some(mut rip) = s.http().and_then(|h| h.real_ip.clone()).filter(|r| r.cloudflare) else {
                    continue;
                };
                if rip.cloudflare_ranges == ranges {
                    continue;
                }
                rip.cloudflare_ranges = ranges.clone();
                let mut services = s.services.clone();
                for svc in &mut services {
                    if let Service::Http(h) = svc {
                        h.real_ip = Some(rip.clone());
                    }
                }
                store.set_server_services(s.id, &services).await?;
                let t = store
                    .enqueue(&NewTask {
                        kind: TaskKind::ServerVerify,
                        target_id: s.id.0,
                        lane: store.lane_of(TaskKind::ServerVerify.target_kind(), s.id.0).await?,
                        args: serde_json::json!({}),
                        created_by: ctx.actor(),
                    })
                    .await?;
                report.push(format!("server {}: verify queued (task {})", s.name, t.id));
            }
            let json = serde_json::json!({ "ranges": ranges, "report": report });
            ctx.out.emit(&json, || {
                for r in &report {
                    println!("{r}");
                }
            });
            Ok(ExitCode::SUCCESS)
        }
    }
}
