//! The ACME (RFC 8555) client, on `instant-acme`: one account per Fjord installation and directory
//! (its credentials in the secrets store), orders answered with HTTP-01 challenge files under the
//! directory every vhost serves `/.well-known/acme-challenge/` from, finalisation with a fresh key,
//! and revocation of a replaced certificate.
//!
//! An alias whose validation fails is left out (when asked): the order is placed again without it,
//! so one bad alias never costs the site its certificate.

use crate::cmd::OutputSink;
use crate::host::Host;
use crate::secrets::{Secret, SecretStore};
use crate::{ExecError, ExecResult};
use fjord_core::LogStream;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The directory URLs of Let's Encrypt, by the names the configuration accepts.
pub const LETSENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// An order's settings.
#[derive(Debug, Clone)]
pub struct AcmeRequest<'a> {
    pub directory: &'a str,
    pub ca_file: Option<&'a str>,
    pub contact: Option<&'a str>,
    /// The main domain first.
    pub names: &'a [String],
    pub acme_dir: &'a str,
    pub drop_failing_aliases: bool,
}

/// A certificate obtained: its chain, its key, the names it covers and the aliases left out.
#[derive(Debug)]
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: Secret,
    pub names: Vec<String>,
    pub failed: Vec<(String, String)>,
}

fn err(msg: impl Into<String>) -> ExecError {
    ExecError::Other(msg.into())
}

fn acme_err(what: &str) -> impl FnOnce(instant_acme::Error) -> ExecError + '_ {
    move |e| err(format!("ACME {what}: {e}"))
}

fn say(sink: &Option<OutputSink>, text: String) {
    tracing::info!("{text}");
    if let Some(s) = sink {
        let _ = s.send((LogStream::Stdout, text));
    }
}

/// The secret that holds the account for `directory`.
fn account_secret(directory: &str) -> String {
    let digest = Sha256::digest(directory.as_bytes());
    format!("acme-account-{}", &hex::encode(digest)[..16])
}

/// One account per installation and directory: loaded from the secrets store, or registered once.
/// Registration is serialised so two tasks never create two accounts.
pub async fn account(
    secrets: &SecretStore,
    directory: &str,
    ca_file: Option<&str>,
    contact: Option<&str>,
) -> ExecResult<Account> {
    static REGISTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _guard = REGISTER.lock().await;
    let builder = match ca_file {
        Some(f) => Account::builder_with_root(f).map_err(acme_err("client"))?,
        None => Account::builder().map_err(acme_err("client"))?,
    };
    let key = account_secret(directory);
    if let Some(saved) = secrets.get(&key)? {
        let creds: AccountCredentials = serde_json::from_str(saved.expose())
            .map_err(|e| err(format!("the saved ACME account {key} cannot be read: {e}")))?;
        return builder.from_credentials(creds).await.map_err(acme_err("account"));
    }
    let mailto = contact.map(|c| if c.starts_with("mailto:") { c.to_string() } else { format!("mailto:{c}") });
    let contacts: Vec<&str> = mailto.iter().map(String::as_str).collect();
    let new = NewAccount { contact: &contacts, terms_of_service_agreed: true, only_return_existing: false };
    let (account, creds) = builder.create(&new, directory.to_string(), None).await.map_err(acme_err("registration"))?;
    let json = serde_json::to_string(&creds).map_err(|e| err(format!("ACME account: {e}")))?;
    secrets.put(&key, &Secret::new(json))?;
    Ok(account)
}

fn challenge_path(acme_dir: &str, token: &str) -> ExecResult<PathBuf> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(err(format!("ACME challenge token {token:?} is not base64url")));
    }
    Ok(Path::new(acme_dir).join(".well-known/acme-challenge").join(token))
}

/// Orders a certificate. Challenge files are removed again whatever happens.
pub async fn obtain(
    host: &Host,
    secrets: &SecretStore,
    req: &AcmeRequest<'_>,
    sink: &Option<OutputSink>,
) -> ExecResult<Issued> {
    let account = account(secrets, req.directory, req.ca_file, req.contact).await?;
    let mut names: Vec<String> = req.names.to_vec();
    let mut failed: Vec<(String, String)> = Vec::new();
    loop {
        let mut written = Vec::new();
        let attempt = order_once(host, &account, &names, req.acme_dir, sink, &mut written).await;
        for p in &written {
            let _ = host.remove_all(p);
        }
        match attempt? {
            Attempt::Issued { chain_pem, key_pem } => {
                return Ok(Issued { chain_pem, key_pem: Secret::new(key_pem), names, failed });
            }
            Attempt::Invalid(bad) => {
                let main = &req.names[0];
                if let Some((_, why)) = bad.iter().find(|(n, _)| n == main) {
                    return Err(err(format!("validation of {main} failed: {why}")));
                }
                if bad.is_empty() {
                    return Err(err("the ACME order became invalid without a failed authorization"));
                }
                if !req.drop_failing_aliases {
                    let list: Vec<String> = bad.iter().map(|(n, why)| format!("{n}: {why}")).collect();
                    return Err(err(format!("validation failed for {}", list.join("; "))));
                }
                for (n, why) in bad {
                    say(sink, format!("alias {n} failed validation and is left out: {why}"));
                    names.retain(|x| x != &n);
                    failed.push((n, why));
                }
            }
        }
    }
}

enum Attempt {
    Issued {
        chain_pem: String,
        key_pem: String,
    },
    /// The names whose authorization failed, with why.
    Invalid(Vec<(String, String)>),
}

async fn order_once(
    host: &Host,
    account: &Account,
    names: &[String],
    acme_dir: &str,
    sink: &Option<OutputSink>,
    written: &mut Vec<PathBuf>,
) -> ExecResult<Attempt> {
    let ids: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account.new_order(&NewOrder::new(&ids)).await.map_err(acme_err("new order"))?;
    say(sink, format!("ACME order {} for {}", order.url(), names.join(", ")));
    let mut auths = order.authorizations();
    while let Some(a) = auths.next().await {
        let mut authz = a.map_err(acme_err("authorization"))?;
        if authz.status != AuthorizationStatus::Pending {
            continue;
        }
        let ident = authz.identifier().to_string();
        let mut ch = authz
            .challenge(ChallengeType::Http01)
            .ok_or_else(|| err(format!("the ACME server offers no HTTP-01 challenge for {ident}")))?;
        let path = challenge_path(acme_dir, &ch.token)?;
        host.create_dirs(path.parent().expect("a challenge file has a parent"), 0o755)?;
        host.write_atomic(&path, ch.key_authorization().as_str().as_bytes(), 0o644)?;
        written.push(path);
        ch.set_ready().await.map_err(acme_err("challenge"))?;
    }
    let polling =
        RetryPolicy::new().initial_delay(Duration::from_millis(250)).backoff(1.5).timeout(Duration::from_secs(90));
    // An order that turns invalid comes back as an error (the order's problem) or as its status; either
    // way, the authorizations tell which names failed.
    let polled = order.poll_ready(&polling).await;
    match polled {
        Ok(OrderStatus::Ready) => {}
        Ok(OrderStatus::Invalid) | Err(instant_acme::Error::Api(_)) => {
            let mut bad = Vec::new();
            let mut auths = order.authorizations();
            while let Some(a) = auths.next().await {
                let mut authz = a.map_err(acme_err("authorization"))?;
                let state = authz.refresh().await.map_err(acme_err("authorization"))?;
                if state.status == AuthorizationStatus::Invalid {
                    let why = state
                        .challenges
                        .iter()
                        .find_map(|c| c.error.as_ref())
                        .map(|p| p.detail.clone().unwrap_or_else(|| p.r#type.clone().unwrap_or_default()))
                        .unwrap_or_else(|| "invalid".into());
                    bad.push((state.identifier().to_string(), why));
                }
            }
            if bad.is_empty() {
                return Err(match polled {
                    Err(e) => acme_err("order")(e),
                    Ok(s) => err(format!("ACME order ended {s:?}")),
                });
            }
            return Ok(Attempt::Invalid(bad));
        }
        Ok(other) => return Err(err(format!("ACME order ended {other:?}"))),
        Err(e) => return Err(acme_err("order")(e)),
    }
    let key_pem = order.finalize().await.map_err(acme_err("finalize"))?;
    let chain_pem = order.poll_certificate(&polling).await.map_err(acme_err("certificate"))?;
    say(sink, "ACME certificate issued".into());
    Ok(Attempt::Issued { chain_pem, key_pem })
}

/// Revokes a certificate (the first in `chain_pem`) as superseded.
pub async fn revoke(
    secrets: &SecretStore,
    directory: &str,
    ca_file: Option<&str>,
    contact: Option<&str>,
    chain_pem: &str,
) -> ExecResult<()> {
    let account = account(secrets, directory, ca_file, contact).await?;
    let der = crate::tls::pem_certs(chain_pem)?.remove(0);
    let cert = rustls_pki_types::CertificateDer::from(der);
    account
        .revoke(&instant_acme::RevocationRequest {
            certificate: &cert,
            reason: Some(instant_acme::RevocationReason::Superseded),
        })
        .await
        .map_err(acme_err("revocation"))
}
