//! Certificates made at test time (rcgen): a CA and the certificates it issues, as PEM files in
//! a temporary directory. No key is ever committed.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A CA and the certificates it issued.
pub struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    /// A new CA named `name`; its certificate is [`Pki::ca_file`].
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("ca.pem"), ca.pem())?;
        Ok(Self { dir, ca })
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Issues a certificate for `sans` (DNS names or IP addresses), usable by a server and
    /// as a client certificate, written to `<stem>.pem` and `<stem>.key` (replacing them by
    /// rename, as a Kubernetes Secret volume does). Returns (certificate, key) paths.
    pub fn issue(&self, stem: &str, sans: &[&str]) -> anyhow::Result<(PathBuf, PathBuf)> {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name.push(DnType::CommonName, stem);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca)?;
        let cert_file = self.dir.path().join(format!("{stem}.pem"));
        let key_file = self.dir.path().join(format!("{stem}.key"));
        replace(&key_file, key.serialize_pem().as_bytes())?;
        replace(&cert_file, cert.pem().as_bytes())?;
        Ok((cert_file, key_file))
    }
}

fn replace(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, contents)?;
    std::fs::rename(&staged, path)?;
    Ok(())
}
