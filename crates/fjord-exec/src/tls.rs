//! Certificates: reading PEM chains, checking an uploaded certificate and key (the key matches, the
//! chain is in order, the names cover the domain), and making self-signed ones.

use crate::{ExecError, ExecResult};
use fjord_core::{CertMeta, CertSource};
use x509_parser::prelude::*;

fn err(msg: impl Into<String>) -> ExecError {
    ExecError::Other(msg.into())
}

/// The DER blocks of every `CERTIFICATE` in a PEM text, in order.
pub fn pem_certs(pem: &str) -> ExecResult<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for p in Pem::iter_from_buffer(pem.as_bytes()) {
        let p = p.map_err(|e| err(format!("not PEM: {e}")))?;
        if p.label == "CERTIFICATE" {
            out.push(p.contents);
        }
    }
    if out.is_empty() {
        return Err(err("no certificate in the PEM text"));
    }
    Ok(out)
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// DNS names of its subjectAltName (the common name when there is none).
    pub names: Vec<String>,
    pub not_after_ms: i64,
    pub not_before_ms: i64,
    pub subject: String,
    pub issuer: String,
    /// Its SubjectPublicKeyInfo, DER.
    pub spki: Vec<u8>,
}

pub fn cert_info(der: &[u8]) -> ExecResult<CertInfo> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| err(format!("bad certificate: {e}")))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        names.extend(cert.subject().iter_common_name().filter_map(|c| c.as_str().ok()).map(|c| c.to_ascii_lowercase()));
    }
    Ok(CertInfo {
        names,
        not_after_ms: cert.validity().not_after.timestamp() * 1000,
        not_before_ms: cert.validity().not_before.timestamp() * 1000,
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        spki: cert.public_key().raw.to_vec(),
    })
}

/// Whether a certificate name (possibly `*.example.org`) covers `host`.
pub fn name_covers(name: &str, host: &str) -> bool {
    let (name, host) = (name.to_ascii_lowercase(), host.to_ascii_lowercase());
    match name.strip_prefix("*.") {
        Some(suffix) => host.split_once('.').is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
        None => name == host,
    }
}

/// The SubjectPublicKeyInfo of a PEM private key (PKCS#8, as `openssl genpkey` writes).
fn key_spki(key_pem: &str) -> ExecResult<Vec<u8>> {
    use rcgen::PublicKeyData;
    let key = rcgen::KeyPair::from_pem(key_pem)
        .map_err(|e| err(format!("the key cannot be read (PKCS#8 PEM expected): {e}")))?;
    Ok(key.subject_public_key_info())
}

/// Checks an uploaded certificate chain and key for `names` (the main domain first): the key matches
/// the first certificate, each certificate is signed by the next, the first is valid now and covers
/// the main domain. Returns what goes in `cert.json`; aliases it does not cover are in `failed`.
pub fn check_upload(chain_pem: &str, key_pem: &str, names: &[String], now_ms: i64) -> ExecResult<CertMeta> {
    let ders = pem_certs(chain_pem)?;
    let leaf = cert_info(&ders[0])?;
    if key_spki(key_pem)? != leaf.spki {
        return Err(err("the key does not match the certificate"));
    }
    for pair in ders.windows(2) {
        let (_, child) = X509Certificate::from_der(&pair[0]).map_err(|e| err(format!("bad certificate: {e}")))?;
        let (_, parent) = X509Certificate::from_der(&pair[1]).map_err(|e| err(format!("bad certificate: {e}")))?;
        if child.issuer() != parent.subject() || child.verify_signature(Some(parent.public_key())).is_err() {
            return Err(err(format!(
                "the chain is out of order: {} is not issued by the certificate after it ({})",
                child.subject(),
                parent.subject()
            )));
        }
    }
    if leaf.not_after_ms <= now_ms {
        return Err(err("the certificate has expired"));
    }
    if leaf.not_before_ms > now_ms {
        return Err(err("the certificate is not valid yet"));
    }
    let main = &names[0];
    if !leaf.names.iter().any(|n| name_covers(n, main)) {
        return Err(err(format!("the certificate does not cover {main} (it covers {})", leaf.names.join(", "))));
    }
    let (covered, failed): (Vec<String>, Vec<String>) =
        names.iter().cloned().partition(|h| leaf.names.iter().any(|n| name_covers(n, h)));
    Ok(CertMeta {
        source: CertSource::Uploaded,
        names: covered,
        failed,
        not_after: leaf.not_after_ms,
        issued_at: now_ms,
    })
}

/// A self-signed certificate for `names`, valid `days` from now: (certificate PEM, key PEM).
pub fn self_signed(names: &[String], days: u32) -> ExecResult<(String, String)> {
    let mut params =
        rcgen::CertificateParams::new(names.to_vec()).map_err(|e| err(format!("certificate names: {e}")))?;
    let now = std::time::SystemTime::now();
    params.not_before = (now - std::time::Duration::from_secs(3600)).into();
    params.not_after = (now + std::time::Duration::from_secs(u64::from(days) * 86_400)).into();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, names[0].clone());
    params.distinguished_name = dn;
    let key = rcgen::KeyPair::generate().map_err(|e| err(format!("key generation: {e}")))?;
    let cert = params.self_signed(&key).map_err(|e| err(format!("self-signing: {e}")))?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn wildcards_cover_one_label() {
        assert!(name_covers("*.example.org", "www.example.org"));
        assert!(!name_covers("*.example.org", "example.org"));
        assert!(!name_covers("*.example.org", "a.b.example.org"));
        assert!(name_covers("Example.org", "example.org"));
    }

    #[test]
    fn self_signed_passes_the_upload_checks_and_a_wrong_key_does_not() {
        let n = names(&["a.example", "www.a.example"]);
        let (cert, key) = self_signed(&n, 30).expect("self-signed");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
        let meta = check_upload(&cert, &key, &names(&["a.example", "www.a.example", "b.example"]), now).expect("valid");
        assert_eq!(meta.names, n);
        assert_eq!(meta.failed, names(&["b.example"]));
        let (_, other_key) = self_signed(&n, 30).expect("self-signed");
        assert!(check_upload(&cert, &other_key, &n, now).expect_err("refused").to_string().contains("does not match"));
        let e = check_upload(&cert, &key, &names(&["c.example"]), now).expect_err("refused");
        assert!(e.to_string().contains("does not cover c.example"), "{e}");
    }

    #[test]
    fn a_chain_out_of_order_is_refused() {
        // A CA, a leaf it signs; the chain given as CA first is refused, leaf first accepted.
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Test CA");
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().expect("key");
        let mut leaf_params = rcgen::CertificateParams::new(names(&["a.example"])).expect("params");
        leaf_params.distinguished_name.push(rcgen::DnType::CommonName, "a.example");
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).expect("leaf");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
        let good = format!("{}{}", leaf.pem(), ca.pem());
        check_upload(&good, &leaf_key.serialize_pem(), &names(&["a.example"]), now).expect("in order");
        let bad = format!("{}{}{}", leaf.pem(), leaf.pem(), ca.pem());
        let e = check_upload(&bad, &leaf_key.serialize_pem(), &names(&["a.example"]), now).expect_err("refused");
        assert!(e.to_string().contains("out of order"), "{e}");
    }
}
