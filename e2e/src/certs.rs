//! The control plane's PKI: a CA, the API server's serving certificate, the
//! service-account signing key, and for `kubectl logs` each node's kubelet serving
//! certificate and the API server's client certificate for kubelets, all generated
//! fresh per control plane.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::error::{IoContext, Result};

/// Paths of the generated PEM files.
#[derive(Debug, Clone)]
pub struct Pki {
    /// CA certificate (what clients trust; also KCM's `--root-ca-file`).
    pub ca_cert: PathBuf,
    /// The API server's certificate, valid for `localhost`, 127.0.0.1 and its own address.
    pub serving_cert: PathBuf,
    /// Its private key.
    pub serving_key: PathBuf,
    /// Service-account signing key (private).
    pub service_account_key: PathBuf,
    /// Its public half, which the API server verifies tokens with.
    pub service_account_public_key: PathBuf,
    /// The API server's client certificate towards kubelets
    /// (`--kubelet-client-certificate`).
    pub kubelet_client_cert: PathBuf,
    /// Its private key.
    pub kubelet_client_key: PathBuf,
    /// Each node's kubelet serving certificate.
    pub kubelet_serving: Vec<NodeCert>,
}

/// A node's kubelet serving certificate, valid for its name and address.
#[derive(Debug, Clone)]
pub struct NodeCert {
    /// The node's name.
    pub node: String,
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

impl Pki {
    /// Generates the PKI into `dir` for an API server listening on `ip` and kubelets
    /// on `nodes` (name and address).
    pub fn generate(dir: &Path, ip: IpAddr, nodes: &[(String, IpAddr)]) -> Result<Self> {
        std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;

        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params.distinguished_name = name("korc-e2e-ca");
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let serving_key = KeyPair::generate()?;
        let mut serving = CertificateParams::new(vec![
            "localhost".to_owned(),
            "kubernetes".to_owned(),
            "kubernetes.default".to_owned(),
            "kubernetes.default.svc".to_owned(),
        ])?;
        serving
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
        serving.subject_alt_names.push(SanType::IpAddress(ip));
        serving.distinguished_name = name("kube-apiserver");
        let serving_cert = serving.signed_by(&serving_key, &issuer)?;

        let sa_key = KeyPair::generate()?;

        let client_key = KeyPair::generate()?;
        let mut client = CertificateParams::default();
        client.distinguished_name = name("kube-apiserver-kubelet-client");
        client
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client.signed_by(&client_key, &issuer)?;

        let mut kubelet_serving = Vec::new();
        for (node, node_ip) in nodes {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(vec![node.clone()])?;
            params.subject_alt_names.push(SanType::IpAddress(*node_ip));
            params.distinguished_name = name(&format!("system:node:{node}"));
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            let cert = params.signed_by(&key, &issuer)?;
            let paths = NodeCert {
                node: node.clone(),
                cert: dir.join(format!("kubelet-{node}.crt")),
                key: dir.join(format!("kubelet-{node}.key")),
            };
            write(&paths.cert, &cert.pem())?;
            write(&paths.key, &key.serialize_pem())?;
            kubelet_serving.push(paths);
        }

        let pki = Self {
            ca_cert: dir.join("ca.crt"),
            serving_cert: dir.join("apiserver.crt"),
            serving_key: dir.join("apiserver.key"),
            service_account_key: dir.join("sa.key"),
            service_account_public_key: dir.join("sa.pub"),
            kubelet_client_cert: dir.join("kubelet-client.crt"),
            kubelet_client_key: dir.join("kubelet-client.key"),
            kubelet_serving,
        };
        write(&pki.ca_cert, &ca_cert.pem())?;
        write(&pki.serving_cert, &serving_cert.pem())?;
        write(&pki.serving_key, &serving_key.serialize_pem())?;
        write(&pki.service_account_key, &sa_key.serialize_pem())?;
        write(&pki.service_account_public_key, &sa_key.public_key_pem())?;
        write(&pki.kubelet_client_cert, &client_cert.pem())?;
        write(&pki.kubelet_client_key, &client_key.serialize_pem())?;
        Ok(pki)
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn write(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).context(|| format!("writing {}", path.display()))
}
