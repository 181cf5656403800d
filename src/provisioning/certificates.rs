//! The cluster's private certificate authority and its servers' certificate, as pure
//! functions of their inputs (names, the current time, what the Secrets hold).
//!
//! Every cluster gets its own CA: a certificate that verifies to it proves the peer is
//! one of the cluster's instances, whatever address it was dialled at. One server
//! certificate serves every instance; it names the pods, the Services and a wildcard
//! under the headless Service. It lasts [`SERVER_LIFETIME`] and is reissued once less
//! than a third of its lifetime remains ([`renewal_due`]); the servers then reload it
//! without a restart.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;

/// Key of the CA certificate in both Secrets.
pub const CA_CERT: &str = "ca.crt";
/// Key of the CA's private key in the CA Secret.
pub const CA_KEY: &str = "ca.key";
/// Key of the server certificate in the server Secret.
pub const SERVER_CERT: &str = "tls.crt";
/// Key of the server's private key in the server Secret.
pub const SERVER_KEY: &str = "tls.key";
/// How long a CA is valid.
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a server certificate is valid.
pub const SERVER_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);
/// Certificates are backdated this much, for clocks a little behind the issuer's.
const BACKDATE: Duration = Duration::from_secs(300);

/// Why a certificate could not be issued or read.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// rcgen refused the parameters or a key.
    #[error("issuing a certificate: {0}")]
    Issue(#[from] rcgen::Error),
    /// A stored certificate is not one.
    #[error("reading a certificate: {0}")]
    Read(String),
    /// A time outside what certificates can carry.
    #[error("a certificate validity outside the representable range")]
    Time,
}

/// A certificate authority: certificate and private key, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct Authority {
    /// The CA certificate.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

/// A server certificate with its key and the CA that signed it, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerCertificate {
    /// The signing CA's certificate.
    pub ca: String,
    /// The server certificate.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

impl std::fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCertificate").finish_non_exhaustive()
    }
}

impl Authority {
    /// Reads the CA Secret's decoded data; `None` when a key is missing.
    pub fn from_secret_data(data: &BTreeMap<String, Vec<u8>>) -> Option<Self> {
        Some(Self {
            cert: text(data, CA_CERT)?,
            key: text(data, CA_KEY)?,
        })
    }

    /// The CA Secret's data.
    pub fn to_secret_data(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (CA_CERT.to_string(), self.cert.clone()),
            (CA_KEY.to_string(), self.key.clone()),
        ])
    }
}

impl ServerCertificate {
    /// Reads the server Secret's decoded data; `None` when a key is missing.
    pub fn from_secret_data(data: &BTreeMap<String, Vec<u8>>) -> Option<Self> {
        Some(Self {
            ca: text(data, CA_CERT)?,
            cert: text(data, SERVER_CERT)?,
            key: text(data, SERVER_KEY)?,
        })
    }

    /// The server Secret's data.
    pub fn to_secret_data(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (CA_CERT.to_string(), self.ca.clone()),
            (SERVER_CERT.to_string(), self.cert.clone()),
            (SERVER_KEY.to_string(), self.key.clone()),
        ])
    }
}

fn text(data: &BTreeMap<String, Vec<u8>>, key: &str) -> Option<String> {
    data.get(key)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .filter(|v| !v.trim().is_empty())
}

/// The DNS names every instance's certificate carries: each pod under the headless
/// Service, a wildcard for pods added later, and the Services, short and qualified.
pub fn server_names(cluster: &str, namespace: &str, replicas: i32) -> Vec<String> {
    let mut names = vec![
        cluster_server_name(cluster, namespace),
        format!("*.{cluster}.{namespace}.svc"),
        format!("*.{cluster}.{namespace}.svc.cluster.local"),
    ];
    names.extend((0..replicas.max(0)).map(|i| format!("{cluster}-{i}.{cluster}.{namespace}.svc")));
    for service in [
        cluster.to_string(),
        format!("{cluster}-primary"),
        format!("{cluster}-replicas"),
    ] {
        names.push(service.clone());
        names.push(format!("{service}.{namespace}"));
        names.push(format!("{service}.{namespace}.svc.cluster.local"));
        if service != cluster {
            names.push(format!("{service}.{namespace}.svc"));
        }
    }
    names
}

/// The name korc verifies on every instance's certificate (the headless Service's):
/// instances are often dialled by IP, which no certificate issued before the pod
/// existed can name, and every certificate of the cluster carries this name.
pub fn cluster_server_name(cluster: &str, namespace: &str) -> String {
    format!("{cluster}.{namespace}.svc")
}

fn at(t: SystemTime) -> Result<OffsetDateTime, CertificateError> {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| CertificateError::Time)?
        .as_secs();
    OffsetDateTime::from_unix_timestamp(secs as i64).map_err(|_| CertificateError::Time)
}

fn validity(
    params: &mut CertificateParams,
    now: SystemTime,
    lifetime: Duration,
) -> Result<(), CertificateError> {
    params.not_before = at(now.checked_sub(BACKDATE).ok_or(CertificateError::Time)?)?;
    params.not_after = at(now.checked_add(lifetime).ok_or(CertificateError::Time)?)?;
    params.serial_number = Some(SerialNumber::from_slice(
        // A positive 16-byte number: a fresh one for every certificate.
        &[&[0x01][..], uuid::Uuid::new_v4().as_bytes()].concat(),
    ));
    Ok(())
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "korc");
    name.push(DnType::CommonName, common_name);
    name
}

/// A new CA for `cluster`, valid from `now` for [`CA_LIFETIME`].
pub fn issue_authority(cluster: &str, now: SystemTime) -> Result<Authority, CertificateError> {
    let key = KeyPair::generate()?;
    let params = authority_params(cluster, now)?;
    let cert = params.self_signed(&key)?;
    Ok(Authority {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

fn authority_params(cluster: &str, now: SystemTime) -> Result<CertificateParams, CertificateError> {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.distinguished_name = distinguished_name(&format!("{cluster} CA"));
    validity(&mut params, now, CA_LIFETIME)?;
    Ok(params)
}

/// A server certificate for `names`, signed by `ca`, valid from `now` for `lifetime`.
pub fn issue_server(
    ca: &Authority,
    names: &[String],
    now: SystemTime,
    lifetime: Duration,
) -> Result<ServerCertificate, CertificateError> {
    let ca_key = KeyPair::from_pem(&ca.key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name =
        distinguished_name(names.first().map(String::as_str).unwrap_or("korc"));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, now, lifetime)?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(ServerCertificate {
        ca: ca.cert.clone(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// What korc reads from a certificate to decide on its renewal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// The DNS names it carries.
    pub names: Vec<String>,
    /// Its serial number, hexadecimal.
    pub serial: String,
}

/// Reads a PEM certificate's validity, names and serial number.
pub fn facts(pem: &str) -> Result<Facts, CertificateError> {
    let (_, pem) = parse_x509_pem(pem.as_bytes())
        .map_err(|e| CertificateError::Read(format!("not PEM: {e}")))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| CertificateError::Read(e.to_string()))?;
    let time = |t: &x509_parser::time::ASN1Time| {
        let secs = t.timestamp();
        if secs < 0 {
            SystemTime::UNIX_EPOCH
        } else {
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
        }
    };
    let names = cert
        .subject_alternative_name()
        .map_err(|e| CertificateError::Read(e.to_string()))?
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Facts {
        not_before: time(&cert.validity().not_before),
        not_after: time(&cert.validity().not_after),
        names,
        serial: cert.raw_serial_as_string().replace(':', ""),
    })
}

/// Whether a certificate valid from `not_before` to `not_after` is due for renewal at
/// `now`: less than a third of its lifetime remains (with 90 days, after 60).
pub fn renewal_due(not_before: SystemTime, not_after: SystemTime, now: SystemTime) -> bool {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    let remaining = not_after.duration_since(now).unwrap_or(Duration::ZERO);
    remaining < lifetime / 3
}

/// Why the server certificate is (re)issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reissue {
    /// There is none (or it cannot be read).
    Missing,
    /// It was signed by another CA than the cluster's.
    OtherAuthority,
    /// It lacks a name the instances need (the cluster grew).
    Names,
    /// Less than a third of its lifetime remains.
    Renewal,
}

/// Whether the stored server certificate must be (re)issued, and why; `None` keeps it.
pub fn reissue(
    current: Option<&ServerCertificate>,
    ca: &Authority,
    names: &[String],
    now: SystemTime,
) -> Option<Reissue> {
    let Some(current) = current else {
        return Some(Reissue::Missing);
    };
    if current.ca.trim() != ca.cert.trim() {
        return Some(Reissue::OtherAuthority);
    }
    let Ok(f) = facts(&current.cert) else {
        return Some(Reissue::Missing);
    };
    if names.iter().any(|n| !f.names.contains(n)) {
        return Some(Reissue::Names);
    }
    renewal_due(f.not_before, f.not_after, now).then_some(Reissue::Renewal)
}

#[cfg(test)]
mod tests;
