//! HTTPS clients that present a workload's client certificate to Envoy, as a mesh sidecar would.

use std::net::SocketAddr;
use std::time::Duration;

use super::pki::{Pki, Workload};

/// A client for one workload, trusting only the test CA. `localhost` is pinned to Envoy's
/// listener address, so the server name Envoy's certificate carries is what gets verified.
pub fn mtls_client(pki: &Pki, workload: Workload, envoy: SocketAddr) -> reqwest::Client {
    let identity = pki.client(workload);
    let pem = format!("{}{}", identity.cert_pem, identity.key_pem);
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("CA certificate"),
        )
        .identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("client identity"))
        .resolve("localhost", envoy)
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("mTLS client")
}
