//! Mints access tokens for the demo, signed with the example keys (`examples/keys/`, published in
//! `examples/jwks.json`, trusted by `examples/sessiongate.yaml`). Prints the token alone on
//! stdout, so `TOKEN=$(cargo run -q --example mint -- …)` works.
//!
//! ```text
//! cargo run --example mint -- --alg ES256 --scope "orders:read" --sub alice --age 0s
//! cargo run --example mint -- --age 20m                          # too old for max_token_age 15m
//! cargo run --example mint -- --exp-in -5m                       # expired five minutes ago
//! cargo run --example mint -- --auth-age 2h                      # user logged in 2 hours ago
//! cargo run --example mint -- --client-id spiffe://cluster.local/ns/shop/sa/batch
//! cargo run --example mint -- --cnf-cert examples/certs/frontend.pem   # RFC 8705 binding
//! cargo run --example mint -- --cnf-jkt "$(cargo run -q --example dpop -- jkt dpop.key)"  # DPoP
//! cargo run --example mint -- --alg none                         # unsigned: always rejected
//! cargo run --example mint -- --alg HS256                        # HS256 keyed with the RSA public key
//! cargo run --example mint -- --key tests/fixtures/keys/es256.pem --kid example-es256   # bad signature
//! ```
//!
//! Durations are humantime (`30s`, `15m`, `8h`); `--exp-in` and `--nbf-in` take a leading `-`
//! for the past.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use clap::{Parser, ValueEnum};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Alg {
    #[value(name = "RS256")]
    Rs256,
    #[value(name = "ES256")]
    Es256,
    #[value(name = "EdDSA")]
    EdDsa,
    /// Unsigned (`alg: none`): an attack, to see it rejected.
    #[value(name = "none")]
    None,
    /// HS256 keyed with the RSA public key: the algorithm-confusion attack.
    #[value(name = "HS256")]
    Hs256,
}

#[derive(Debug, Parser)]
#[command(about = "Mint a demo access token signed with the example keys")]
struct Args {
    #[arg(long, value_enum, default_value = "ES256")]
    alg: Alg,
    #[arg(long, default_value = "https://idp.example.test")]
    iss: String,
    #[arg(long, default_value = "shop-api")]
    aud: String,
    #[arg(long, default_value = "alice")]
    sub: String,
    /// Space-separated scopes (empty: no `scope` claim).
    #[arg(long, default_value = "orders:read")]
    scope: String,
    /// How long ago the token was issued (`iat`).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    age: Duration,
    /// Leave `iat` out altogether.
    #[arg(long)]
    no_iat: bool,
    /// `exp` relative to now; `-5m` is already expired.
    #[arg(long, default_value = "10m", allow_hyphen_values = true, value_parser = signed_secs)]
    exp_in: i64,
    /// `nbf` relative to now, e.g. `5m` for a token not valid yet.
    #[arg(long, allow_hyphen_values = true, value_parser = signed_secs)]
    nbf_in: Option<i64>,
    /// How long ago the user authenticated (`auth_time`).
    #[arg(long, value_parser = humantime::parse_duration)]
    auth_age: Option<Duration>,
    /// The `client_id` claim: the SPIFFE ID of the workload the token belongs to.
    #[arg(long)]
    client_id: Option<String>,
    /// Bind the token to this PEM certificate (`cnf.x5t#S256`, RFC 8705).
    #[arg(long)]
    cnf_cert: Option<PathBuf>,
    /// Bind the token to a DPoP key by its RFC 7638 thumbprint (`cnf.jkt`, RFC 9449); see
    /// `examples/dpop.rs`.
    #[arg(long, conflicts_with = "cnf_cert")]
    cnf_jkt: Option<String>,
    /// `jti`; a fresh one by default, since the session cache keys on it.
    #[arg(long)]
    jti: Option<String>,
    /// Header `kid` (default: the example key's kid for the algorithm).
    #[arg(long)]
    kid: Option<String>,
    /// Sign with this PKCS#8 PEM key instead of the example key (e.g. to forge a signature).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Header `typ`.
    #[arg(long, default_value = "at+jwt")]
    typ: String,
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs() as i64;

    let mut claims = Map::new();
    claims.insert("iss".into(), json!(args.iss));
    claims.insert("aud".into(), json!(args.aud));
    claims.insert("sub".into(), json!(args.sub));
    if !args.no_iat {
        claims.insert("iat".into(), json!(now - args.age.as_secs() as i64));
    }
    claims.insert("exp".into(), json!(now + args.exp_in));
    if let Some(nbf_in) = args.nbf_in {
        claims.insert("nbf".into(), json!(now + nbf_in));
    }
    if let Some(auth_age) = args.auth_age {
        claims.insert("auth_time".into(), json!(now - auth_age.as_secs() as i64));
    }
    if !args.scope.is_empty() {
        claims.insert("scope".into(), json!(args.scope));
    }
    if let Some(client_id) = &args.client_id {
        claims.insert("client_id".into(), json!(client_id));
    }
    if let Some(cert) = &args.cnf_cert {
        claims.insert("cnf".into(), json!({ "x5t#S256": thumbprint(cert)? }));
    }
    if let Some(jkt) = &args.cnf_jkt {
        claims.insert("cnf".into(), json!({ "jkt": jkt }));
    }
    let jti = args.jti.clone().unwrap_or_else(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        format!("demo-{nanos:x}")
    });
    claims.insert("jti".into(), json!(jti));

    println!("{}", mint(&args, &claims)?);
    Ok(())
}

fn mint(args: &Args, claims: &Map<String, Value>) -> Result<String, String> {
    let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/keys");
    let (algorithm, stem) = match args.alg {
        Alg::Rs256 => (Algorithm::RS256, "rs256"),
        Alg::Es256 => (Algorithm::ES256, "es256"),
        Alg::EdDsa => (Algorithm::EdDSA, "eddsa"),
        Alg::None => {
            let header = json!({ "alg": "none", "typ": args.typ });
            let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
            return Ok(format!(
                "{}.{}.",
                part(&header),
                part(&Value::Object(claims.clone()))
            ));
        }
        Alg::Hs256 => {
            let rsa = read(&keys.join("rs256.pem"))?;
            let public = rcgen::KeyPair::from_pem(&String::from_utf8_lossy(&rsa))
                .map_err(|e| format!("parse RSA key: {e}"))?
                .public_key_pem();
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some(args.kid.clone().unwrap_or_else(|| "example-rs256".into()));
            header.typ = Some(args.typ.clone());
            let key = EncodingKey::from_secret(public.as_bytes());
            return jsonwebtoken::encode(&header, claims, &key).map_err(|e| e.to_string());
        }
    };
    let key_path = args
        .key
        .clone()
        .unwrap_or_else(|| keys.join(format!("{stem}.pem")));
    let pem = read(&key_path)?;
    let key = match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        _ => EncodingKey::from_ed_pem(&pem),
    }
    .map_err(|e| format!("{}: {e}", key_path.display()))?;

    let mut header = Header::new(algorithm);
    header.kid = Some(
        args.kid
            .clone()
            .unwrap_or_else(|| format!("example-{stem}")),
    );
    header.typ = Some(args.typ.clone());
    jsonwebtoken::encode(&header, claims, &key).map_err(|e| e.to_string())
}

/// base64url(SHA-256(DER)) of the first certificate in a PEM file (RFC 8705 `x5t#S256`).
fn thumbprint(path: &Path) -> Result<String, String> {
    let pem = String::from_utf8(read(path)?).map_err(|e| e.to_string())?;
    let body: String = pem
        .lines()
        .skip_while(|line| !line.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|line| !line.starts_with("-----END CERTIFICATE-----"))
        .collect();
    if body.is_empty() {
        return Err(format!("{}: no PEM certificate", path.display()));
    }
    let der = STANDARD
        .decode(body.trim())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(URL_SAFE_NO_PAD.encode(Sha256::digest(der)))
}

/// A humantime duration with an optional leading `-`, in whole seconds.
fn signed_secs(text: &str) -> Result<i64, String> {
    let (sign, magnitude) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text),
    };
    let duration = humantime::parse_duration(magnitude).map_err(|e| e.to_string())?;
    Ok(sign * duration.as_secs() as i64)
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}
