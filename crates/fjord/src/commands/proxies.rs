//! Trusted proxies: a server's real-IP settings and the published ranges of proxy providers.

use super::objects::set_services_and_verify;
use super::Ctx;
use crate::cli::{ProxyRangesCmd, ServerRealIp};
use crate::output::{fields, when};
use anyhow::Result;
use fjord_actions::{Actions, RealIpSet, CLOUDFLARE};
use fjord_core::*;
use std::process::ExitCode;

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
            let urls = if from.is_empty() { fjord_actions::cloudflare_urls() } else { from };
            let store = ctx.store().await?;
            let layout = ctx.layout();
            let done = Actions::new(&store, &layout).refresh_cloudflare_ranges(&urls, &ctx.actor()).await?;
            let json = serde_json::json!({ "ranges": done.ranges, "report": done.report });
            ctx.out.emit(&json, || {
                for r in &done.report {
                    println!("{r}");
                }
            });
            Ok(ExitCode::SUCCESS)
        }
    }
}
