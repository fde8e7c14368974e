//! The certificates and keys a loopback control plane needs, made with rcgen (no openssl).
//!
//! ```text
//! CA --signs--> serving cert (IP:127.0.0.1, localhost, kubernetes.default.svc)  kube-apiserver
//!    \-signs--> admin client cert (O=system:masters)                            tests, kubectl
//!    \-signs--> controller-manager client cert (O=system:masters)               kube-controller-manager
//! service-account key pair (ECDSA P-256)                                         token signing
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// The files written by [`write`], all PEM.
#[derive(Clone, Debug)]
pub struct Files {
    /// The CA certificate every client trusts and the API server checks client certs against.
    pub ca: PathBuf,
    /// The API server's serving certificate and key.
    pub serving_cert: PathBuf,
    /// The serving certificate's key.
    pub serving_key: PathBuf,
    /// The admin client certificate (`CN=netfence-e2e-admin`, `O=system:masters`).
    pub admin_cert: PathBuf,
    /// The admin client certificate's key.
    pub admin_key: PathBuf,
    /// The controller-manager's client certificate (`CN=system:kube-controller-manager`).
    pub controller_manager_cert: PathBuf,
    /// The controller-manager client certificate's key.
    pub controller_manager_key: PathBuf,
    /// The private key that signs ServiceAccount tokens.
    pub service_account_key: PathBuf,
    /// Its public half, which verifies them.
    pub service_account_public_key: PathBuf,
}

/// The identity of the admin client, as the audit log names it.
pub const ADMIN_USER: &str = "netfence-e2e-admin";

/// The identity of kube-controller-manager, as the audit log names it.
pub const CONTROLLER_MANAGER_USER: &str = "system:kube-controller-manager";

fn name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    if let Some(organization) = organization {
        name.push(DnType::OrganizationName, organization);
    }
    name
}

fn client_params(common_name: &str) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name(common_name, Some("system:masters"));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

fn write_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("failed to write {}", path.display()))
}

/// Make a fresh CA, serving and client certificates and the ServiceAccount key in `directory`.
pub fn write(directory: &Path) -> anyhow::Result<Files> {
    std::fs::create_dir_all(directory)
        .with_context(|| format!("failed to create {}", directory.display()))?;
    let files = Files {
        ca: directory.join("ca.crt"),
        serving_cert: directory.join("apiserver.crt"),
        serving_key: directory.join("apiserver.key"),
        admin_cert: directory.join("admin.crt"),
        admin_key: directory.join("admin.key"),
        controller_manager_cert: directory.join("controller-manager.crt"),
        controller_manager_key: directory.join("controller-manager.key"),
        service_account_key: directory.join("service-account.key"),
        service_account_public_key: directory.join("service-account.pub"),
    };

    let ca_key = KeyPair::generate().context("failed to generate the CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name = name("netfence-e2e-ca", None);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    write_file(&files.ca, &ca_cert.pem())?;
    let issuer = Issuer::new(ca_params, ca_key);

    let serving_key = KeyPair::generate()?;
    let mut serving_params = CertificateParams::new(vec![
        "127.0.0.1".to_owned(),
        "localhost".to_owned(),
        "kubernetes".to_owned(),
        "kubernetes.default".to_owned(),
        "kubernetes.default.svc".to_owned(),
    ])?;
    serving_params.distinguished_name = name("kube-apiserver", None);
    serving_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    serving_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_cert = serving_params.signed_by(&serving_key, &issuer)?;
    write_file(&files.serving_cert, &serving_cert.pem())?;
    write_file(&files.serving_key, &serving_key.serialize_pem())?;

    for (user, cert_path, key_path) in [
        (ADMIN_USER, &files.admin_cert, &files.admin_key),
        (
            CONTROLLER_MANAGER_USER,
            &files.controller_manager_cert,
            &files.controller_manager_key,
        ),
    ] {
        let key = KeyPair::generate()?;
        let cert = client_params(user)?.signed_by(&key, &issuer)?;
        write_file(cert_path, &cert.pem())?;
        write_file(key_path, &key.serialize_pem())?;
    }

    let service_account_key = KeyPair::generate()?;
    write_file(
        &files.service_account_key,
        &service_account_key.serialize_pem(),
    )?;
    write_file(
        &files.service_account_public_key,
        &service_account_key.public_key_pem(),
    )?;
    Ok(files)
}
