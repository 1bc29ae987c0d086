//! A throwaway certificate authority for secured local clusters (`dmq dev --secure`, the
//! security tests): a CA, one server certificate for `localhost` and `127.0.0.1`, and client
//! certificates with a chosen subject, written as PEM files.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// PEM files of a fresh CA and a server certificate signed by it.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    ca_params: CertificateParams,
    ca_key_pem: String,
    dir: PathBuf,
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

impl Pki {
    /// A new CA named `name` and a server certificate for `localhost`/`127.0.0.1`, in `dir`.
    pub fn generate(dir: &Path, name: &str) -> anyhow::Result<Pki> {
        std::fs::create_dir_all(dir)?;
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        ca_params.distinguished_name = dn;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let pki = Pki {
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server.key"),
            ca_key_pem: ca_key.serialize_pem(),
            ca_params,
            dir: dir.to_path_buf(),
        };
        write(&pki.ca_file, &ca_cert.pem())?;
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "dmq broker");
        params.distinguished_name = dn;
        let cert = params.signed_by(&key, &pki.issuer()?)?;
        write(&pki.cert_file, &cert.pem())?;
        write(&pki.key_file, &key.serialize_pem())?;
        Ok(pki)
    }

    fn issuer(&self) -> anyhow::Result<Issuer<'_, KeyPair>> {
        let key = KeyPair::from_pem(&self.ca_key_pem)?;
        Ok(Issuer::from_params(&self.ca_params, key))
    }

    /// A client certificate whose subject is `rdns` (most significant first, e.g.
    /// `[(OrganizationalUnitName, "eng"), (CommonName, "alice")]`), signed by the CA; returns
    /// the certificate and key files `<file_stem>.pem` / `.key`.
    pub fn client(
        &self,
        file_stem: &str,
        rdns: &[(DnType, &str)],
    ) -> anyhow::Result<(PathBuf, PathBuf)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        for (t, v) in rdns {
            dn.push(t.clone(), *v);
        }
        params.distinguished_name = dn;
        let cert = params.signed_by(&key, &self.issuer()?)?;
        let (c, k) = (
            self.dir.join(format!("{file_stem}.pem")),
            self.dir.join(format!("{file_stem}.key")),
        );
        write(&c, &cert.pem())?;
        write(&k, &key.serialize_pem())?;
        Ok((c, k))
    }
}
