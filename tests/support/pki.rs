//! The test PKI: a CA, Envoy's server certificate and one client certificate per workload.
//!
//! Generated fresh by every test binary (rcgen, ECDSA P-256) rather than committed, so no test
//! depends on a certificate that can expire, and the private keys never leave the temp dirs.
//! Clients expose their DER because RFC 8705 binds a token to the SHA-256 of exactly those bytes.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use sha2::{Digest, Sha256};

/// The callers the tests impersonate. Two SPIFFE workloads (the allowed writer and a second
/// workload to replay or mis-bind tokens), and a legacy caller whose certificate has no URI SAN,
/// for which Envoy reports the subject DN as the principal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Workload {
    Frontend,
    Batch,
    NonSpiffe,
}

impl Workload {
    pub const ALL: [Workload; 3] = [Workload::Frontend, Workload::Batch, Workload::NonSpiffe];

    /// What Envoy puts in `source.principal` for this caller: the URI SAN when there is one,
    /// otherwise the RFC 2253 subject, which is why the legacy cert carries only a CN.
    pub fn principal(self) -> &'static str {
        match self {
            Workload::Frontend => "spiffe://cluster.local/ns/shop/sa/frontend",
            Workload::Batch => "spiffe://cluster.local/ns/shop/sa/batch",
            Workload::NonSpiffe => "CN=legacy-client",
        }
    }

    fn common_name(self) -> &'static str {
        match self {
            Workload::Frontend => "frontend",
            Workload::Batch => "batch",
            Workload::NonSpiffe => "legacy-client",
        }
    }
}

/// A leaf certificate with its key, in the forms the clients and the tokens need.
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl Identity {
    /// The RFC 8705 `x5t#S256` value: base64url (no padding) of SHA-256 over the leaf's DER.
    pub fn thumbprint(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(&self.der))
    }
}

/// Everything signed by one throw-away CA.
pub struct Pki {
    pub ca_pem: String,
    pub server: Identity,
    frontend: Identity,
    batch: Identity,
    non_spiffe: Identity,
}

/// Paths of the files Envoy's TLS context reads; produced by [`Pki::write_server_files`].
pub struct ServerFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// One PKI per test binary: generating it is cheap, but sharing it lets every stack and
    /// client in the binary trust each other without passing it around.
    pub fn shared() -> &'static Pki {
        static PKI: OnceLock<Pki> = OnceLock::new();
        PKI.get_or_init(Pki::generate)
    }

    pub fn generate() -> Pki {
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = dn("sessiongate test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
            .expect("self-signed CA");

        let server = leaf(
            &ca,
            "localhost",
            vec![
                SanType::DnsName("localhost".try_into().expect("DNS SAN")),
                SanType::IpAddress([127, 0, 0, 1].into()),
            ],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let client = |workload: Workload| {
            let sans = if workload.principal().starts_with("spiffe://") {
                vec![SanType::URI(
                    workload.principal().try_into().expect("URI SAN"),
                )]
            } else {
                Vec::new()
            };
            leaf(
                &ca,
                workload.common_name(),
                sans,
                ExtendedKeyUsagePurpose::ClientAuth,
            )
        };

        Pki {
            ca_pem: ca.pem(),
            server,
            frontend: client(Workload::Frontend),
            batch: client(Workload::Batch),
            non_spiffe: client(Workload::NonSpiffe),
        }
    }

    pub fn client(&self, workload: Workload) -> &Identity {
        match workload {
            Workload::Frontend => &self.frontend,
            Workload::Batch => &self.batch,
            Workload::NonSpiffe => &self.non_spiffe,
        }
    }

    /// Writes the CA and the server's certificate and key, the only files Envoy needs.
    pub fn write_server_files(&self, dir: &Path) -> ServerFiles {
        let files = ServerFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server-key.pem"),
        };
        std::fs::write(&files.ca, &self.ca_pem).expect("write ca.pem");
        std::fs::write(&files.cert, &self.server.cert_pem).expect("write server.pem");
        std::fs::write(&files.key, &self.server.key_pem).expect("write server-key.pem");
        files
    }
}

fn dn(common_name: &str) -> rcgen::DistinguishedName {
    let mut name = rcgen::DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

fn leaf(
    ca: &CertifiedIssuer<'_, KeyPair>,
    common_name: &str,
    sans: Vec<SanType>,
    usage: ExtendedKeyUsagePurpose,
) -> Identity {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(common_name);
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, ca).expect("sign leaf");
    Identity {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}
