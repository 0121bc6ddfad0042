mod support;
use support::*;
use support::envoy::Envoy;
use support::envoy_config::EnvoyConfig;
use support::pki::Pki;

#[test]
fn scratch() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let upstream = support::echo::spawn().await;
        let tls = Pki::shared().write_server_files(dir.path());
        let yaml = EnvoyConfig { tls: &tls, sessiongate: "127.0.0.1:1".parse().unwrap(), upstream }.render();
        let start = yaml.find("                  - name: envoy.filters.http.ext_authz").unwrap();
        let end = yaml.find("                  - name: envoy.filters.http.router").unwrap();
        let yaml = format!("{}{}", &yaml[..start], &yaml[end..]);
        std::fs::write(dir.path().join("x.yaml"), &yaml).unwrap();
        let out = support::envoy::validate(&dir.path().join("x.yaml"), dir.path());
        println!("validate: {:?} {}", out.status, String::from_utf8_lossy(&out.stdout));
        let t = std::time::Instant::now();
        let envoy = Envoy::start(dir.path(), &yaml).await;
        println!("envoy up in {:?} at {} admin {}", t.elapsed(), envoy.listener, envoy.admin);
        for w in Workload::ALL {
            let c = support::client::mtls_client(Pki::shared(), w, envoy.listener);
            let r = c.get(format!("https://localhost:{}/admin/x", envoy.listener.port())).header("x-sessiongate-a","1").reply().await;
            println!("{w:?}: {r}");
        }
        let plain = reqwest::Client::builder().use_rustls_tls().add_root_certificate(reqwest::Certificate::from_pem(Pki::shared().ca_pem.as_bytes()).unwrap()).resolve("localhost", envoy.listener).build().unwrap();
        println!("no cert: {:?}", plain.get(format!("https://localhost:{}/", envoy.listener.port())).send().await.map(|r| r.status()));
        println!("{}", envoy.output());
    });
}
