//! The control plane's certificates: a cluster CA that signs every component's serving and client certificate,
//! a CA of its own for the aggregation layer's front proxy (a certificate from it can claim to be any user), and
//! the key that signs ServiceAccount tokens. ECDSA P-256 throughout, which Go's TLS, etcd and the token signer all
//! accept. Files are written 0600 into a 0700 directory.

use std::{
    fs,
    io::Write,
    net::IpAddr,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// The certificate directory of a control plane's state.
#[derive(Clone, Debug)]
pub struct Pki {
    pub dir: PathBuf,
}

/// Who a certificate is for.
struct Subject<'a> {
    common_name: &'a str,
    organization: Option<&'a str>,
    usages: &'a [ExtendedKeyUsagePurpose],
    sans: Vec<SanType>,
}

impl Pki {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// `NAME.crt` or `NAME.key` (or `sa.pub`) in the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Makes every certificate and key the control plane uses. `api_names` are the DNS names and IPs that the
    /// API server's certificate names.
    pub fn create(&self, api_dns: &[&str], api_ips: &[IpAddr]) -> anyhow::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let server = [ExtendedKeyUsagePurpose::ServerAuth];
        let client = [ExtendedKeyUsagePurpose::ClientAuth];
        let ca = self.authority("ca", "rktnetes-ca")?;
        let mut api_sans: Vec<SanType> = api_ips.iter().copied().map(SanType::IpAddress).collect();
        for name in api_dns {
            api_sans.push(SanType::DnsName((*name).try_into()?));
        }
        self.leaf(
            &ca,
            "apiserver",
            subject("kube-apiserver", &server, api_sans),
        )?;
        // etcd uses one certificate as server and, towards its (absent) peers, as client.
        let loopback = vec![
            SanType::DnsName("localhost".try_into()?),
            SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
        ];
        let both = [
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.leaf(&ca, "etcd", subject("etcd", &both, loopback))?;
        let etcd_client = subject("kube-apiserver-etcd-client", &client, vec![]);
        self.leaf(&ca, "apiserver-etcd-client", etcd_client)?;
        let admin = Subject {
            organization: Some("system:masters"),
            ..subject("admin", &client, vec![])
        };
        self.leaf(&ca, "admin", admin)?;
        let bench_kubelets = Subject {
            organization: Some("system:masters"),
            ..subject(super::BENCH_KUBELETS_USER, &client, vec![])
        };
        self.leaf(&ca, "bench-kubelets", bench_kubelets)?;
        let manager = subject("system:kube-controller-manager", &client, vec![]);
        self.leaf(&ca, "controller-manager", manager)?;
        // Without the front proxy's CA the controller manager's delegated authentication complains, forever, that
        // the requestheader CA bundle is missing.
        let front_proxy = self.authority("front-proxy-ca", "rktnetes-front-proxy-ca")?;
        let proxy_client = subject("front-proxy-client", &client, vec![]);
        self.leaf(&front_proxy, "front-proxy-client", proxy_client)?;
        let service_accounts = KeyPair::generate().context("generating the token signing key")?;
        self.write("sa.key", &service_accounts.serialize_pem())?;
        self.write("sa.pub", &service_accounts.public_key_pem())
    }

    /// A self-signed CA, written as `NAME.crt` and `NAME.key`.
    fn authority(&self, name: &str, common_name: &str) -> anyhow::Result<Issuer<'static, KeyPair>> {
        let key = KeyPair::generate().with_context(|| format!("generating {name}'s key"))?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let certificate = params
            .self_signed(&key)
            .with_context(|| format!("signing {name}"))?;
        self.write(&format!("{name}.crt"), &certificate.pem())?;
        self.write(&format!("{name}.key"), &key.serialize_pem())?;
        Ok(Issuer::new(params, key))
    }

    /// A key and a certificate signed by `issuer`, written as `NAME.crt` and `NAME.key`.
    fn leaf(
        &self,
        issuer: &Issuer<'static, KeyPair>,
        name: &str,
        who: Subject<'_>,
    ) -> anyhow::Result<()> {
        let key = KeyPair::generate().with_context(|| format!("generating {name}'s key"))?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, who.common_name);
        if let Some(organization) = who.organization {
            params
                .distinguished_name
                .push(DnType::OrganizationName, organization);
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = who.usages.to_vec();
        params.subject_alt_names = who.sans;
        params.use_authority_key_identifier_extension = true;
        let certificate = params
            .signed_by(&key, issuer)
            .with_context(|| format!("signing {name}"))?;
        self.write(&format!("{name}.crt"), &certificate.pem())?;
        self.write(&format!("{name}.key"), &key.serialize_pem())
    }

    fn write(&self, name: &str, content: &str) -> anyhow::Result<()> {
        write_private(&self.file(name), content)
    }
}

fn subject<'a>(
    common_name: &'a str,
    usages: &'a [ExtendedKeyUsagePurpose],
    sans: Vec<SanType>,
) -> Subject<'a> {
    Subject {
        common_name,
        organization: None,
        usages,
        sans,
    }
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(content.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_the_components_read_is_made_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let directory = tempfile::tempdir().unwrap();
        let pki = Pki::new(directory.path().join("pki"));
        pki.create(
            &["localhost", "kubernetes"],
            &[IpAddr::from([10, 96, 0, 1])],
        )
        .unwrap();
        for name in [
            "ca",
            "apiserver",
            "etcd",
            "apiserver-etcd-client",
            "admin",
            "controller-manager",
            "front-proxy-ca",
            "front-proxy-client",
        ] {
            for extension in ["crt", "key"] {
                let path = pki.file(&format!("{name}.{extension}"));
                let text = fs::read_to_string(&path).unwrap();
                assert!(text.starts_with("-----BEGIN "), "{}", path.display());
                let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", path.display());
            }
        }
        assert!(
            fs::read_to_string(pki.file("sa.pub"))
                .unwrap()
                .starts_with("-----BEGIN PUBLIC KEY-----")
        );
    }
}
