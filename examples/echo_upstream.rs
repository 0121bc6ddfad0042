//! The demo's application: answers every request with 200 and a JSON body listing the request
//! headers it received, so you can see what sessiongate made Envoy forward (the
//! `x-sessiongate-*` identity headers) and what it stripped (spoofed ones).
//!
//! ```text
//! cargo run --example echo_upstream                      # 127.0.0.1:10080, as examples/envoy.yaml expects
//! cargo run --example echo_upstream -- 127.0.0.1:18080   # elsewhere
//! ```
//!
//! It is the very upstream the end-to-end tests run behind Envoy (`tests/support/echo.rs`),
//! included here rather than copied.

#[allow(dead_code)]
#[path = "../tests/support/echo.rs"]
mod echo;

use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:10080".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("echo upstream listening on {}", listener.local_addr()?);
    echo::serve(listener).await;
    Ok(())
}
