//! A DPoP client (RFC 9449) for the demo: keeps a P-256 key, prints its thumbprint for the
//! token's `cnf.jkt`, and makes a proof for one request. Prints the value alone on stdout, so
//! `PROOF=$(cargo run -q --example dpop -- proof …)` works.
//!
//! ```text
//! cargo run -q --example dpop -- jkt dpop.key          # creates dpop.key if absent
//! TOKEN=$(cargo run -q --example mint -- --cnf-jkt "$(cargo run -q --example dpop -- jkt dpop.key)")
//! PROOF=$(cargo run -q --example dpop -- proof dpop.key GET https://localhost:10443/orders/1 "$TOKEN")
//! curl … -H "Authorization: DPoP $TOKEN" -H "DPoP: $PROOF" https://localhost:10443/orders/1
//! PROOF=$(cargo run -q --example dpop -- proof dpop.key GET https://localhost:10443/orders/1 "$TOKEN" --nonce "$NONCE")
//! ```
//!
//! A proof is good for one request, within `dpop.proof_lifetime` of its making.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Parser, Subcommand};
use serde_json::json;
use sha2::{Digest, Sha256};

#[derive(Debug, Parser)]
#[command(about = "A demo DPoP client: key thumbprint and proofs")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the key's RFC 7638 thumbprint (the token's `cnf.jkt`); create the key if absent.
    Jkt { key: PathBuf },
    /// Print a proof for one request.
    Proof {
        key: PathBuf,
        /// The HTTP method (`htm`).
        method: String,
        /// The URL as the client addresses it (`htu`; query and fragment are ignored).
        url: String,
        /// The access token the proof accompanies (`ath`).
        token: String,
        /// The server's nonce, from a `DPoP-Nonce` header.
        #[arg(long)]
        nonce: Option<String>,
    },
}

fn main() -> Result<(), String> {
    match Args::parse().command {
        Command::Jkt { key } => {
            let key = load_or_create(&key)?;
            println!("{}", b64(&Sha256::digest(canonical_jwk(&key).as_bytes())));
        }
        Command::Proof {
            key,
            method,
            url,
            token,
            nonce,
        } => {
            let key = load_or_create(&key)?;
            let point = key.public_key().as_ref();
            let header = json!({"typ": "dpop+jwt", "alg": "ES256",
                "jwk": {"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])}});
            let mut jti = [0u8; 16];
            aws_lc_rs::rand::fill(&mut jti).map_err(|_| "no randomness")?;
            let iat = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_err(|e| e.to_string())?
                .as_secs();
            let mut claims = json!({"jti": b64(&jti), "htm": method, "htu": url, "iat": iat,
                "ath": b64(&Sha256::digest(token.as_bytes()))});
            if let Some(nonce) = nonce {
                claims["nonce"] = json!(nonce);
            }
            let input = format!(
                "{}.{}",
                b64(header.to_string().as_bytes()),
                b64(claims.to_string().as_bytes())
            );
            let signature = key
                .sign(&SystemRandom::new(), input.as_bytes())
                .map_err(|_| "signing failed")?;
            println!("{input}.{}", b64(signature.as_ref()));
        }
    }
    Ok(())
}

/// The P-256 key in `path` (PKCS#8 DER), created there first if absent.
fn load_or_create(path: &Path) -> Result<EcdsaKeyPair, String> {
    if !path.exists() {
        let document =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| "cannot generate a key")?;
        std::fs::write(path, document.as_ref())
            .map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    let bytes = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &bytes)
        .map_err(|_| format!("{} is not a P-256 PKCS#8 key", path.display()))
}

/// RFC 7638: the required members, in lexicographic order, no white space.
fn canonical_jwk(key: &EcdsaKeyPair) -> String {
    let point = key.public_key().as_ref();
    format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        b64(&point[1..33]),
        b64(&point[33..])
    )
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}
