//! `hydrant certs`: a CA and component certificates for a development mTLS setup.
//!
//! Every certificate is valid for both server and client authentication, names
//! `localhost`, `127.0.0.1` and the component name (Loggregator's conventions: the doppler
//! is "doppler", the agent "metron"), and is signed by one freshly generated CA.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// Component certificates written by default.
pub const DEFAULT_NAMES: &[&str] = &["doppler", "metron", "client"];

/// Errors generating or writing certificates.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Key or certificate generation failed.
    #[error("generating {what}: {source}")]
    Generate {
        /// What was being generated.
        what: String,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

fn generate(what: &str) -> impl Fn(rcgen::Error) -> Error + '_ {
    move |source| Error::Generate {
        what: what.to_owned(),
        source,
    }
}

fn write(path: PathBuf, contents: &str) -> Result<PathBuf, Error> {
    std::fs::write(&path, contents).map_err(|source| Error::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Writes `ca.pem`, `ca-key.pem`, and `NAME.pem` / `NAME-key.pem` for each name into `out`.
/// Returns the files written.
pub fn generate_all(out: &Path, names: &[String]) -> Result<Vec<PathBuf>, Error> {
    std::fs::create_dir_all(out).map_err(|source| Error::Write {
        path: out.into(),
        source,
    })?;
    let mut written = Vec::new();

    let ca_key = KeyPair::generate().map_err(generate("CA key"))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(generate("CA"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Hydrant development CA");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(generate("CA"))?;
    written.push(write(out.join("ca.pem"), &ca_cert.pem())?);
    written.push(write(out.join("ca-key.pem"), &ca_key.serialize_pem())?);
    let issuer = Issuer::new(ca_params, ca_key);

    for name in names {
        let key = KeyPair::generate().map_err(generate(name))?;
        let sans = vec![name.clone(), "localhost".to_owned(), "127.0.0.1".to_owned()];
        let mut params = CertificateParams::new(sans).map_err(generate(name))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name.as_str());
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &issuer).map_err(generate(name))?;
        written.push(write(out.join(format!("{name}.pem")), &cert.pem())?);
        written.push(write(
            out.join(format!("{name}-key.pem")),
            &key.serialize_pem(),
        )?);
    }
    Ok(written)
}
