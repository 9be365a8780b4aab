//! The documented deployment end to end: Debian's nginx with `deploy/nginx.conf` (TLS
//! with a certificate of the test's own) in front of innohook on loopback. Needs nginx and
//! openssl; `INNOHOOK_TEST_NGINX=1` (as `.ci/run` sets) requires them.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use reqwest::StatusCode;

use crate::dashboard::*;
use crate::helpers::*;

const NGINX: &str = "/usr/sbin/nginx";

/// nginx serving `deploy/nginx.conf` on a port of its own, stopped when dropped.
struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    /// SIGTERM to the master, which stops its workers (SIGKILL would leave them running,
    /// with the listening socket and whatever descriptors they inherited).
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// nginx in front of innohook at `upstream`, or `None` (after a line saying why).
    fn start(test: &str, upstream: std::net::SocketAddr) -> Option<Nginx> {
        let installed =
            Path::new(NGINX).exists() && Command::new("openssl").arg("version").output().is_ok();
        if !installed {
            assert!(
                std::env::var("INNOHOOK_TEST_NGINX").as_deref() != Ok("1"),
                "INNOHOOK_TEST_NGINX=1, but nginx or openssl is missing: apt-get install nginx openssl"
            );
            skipped(
                test,
                "install nginx and openssl (apt-get) to run the proxy test, or set INNOHOOK_TEST_NGINX=1 to require them",
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let made = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=localhost"])
            .arg("-keyout")
            .arg(d.join("key.pem"))
            .arg("-out")
            .arg(d.join("cert.pem"))
            .output()
            .unwrap();
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // The shipped file as it is, but for where it listens, its certificate and its
        // upstream.
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx.conf"),
        )
        .unwrap();
        let site = shipped
            .replace("listen 443 ssl;", &format!("listen 127.0.0.1:{port} ssl;"))
            .replace(
                "/etc/ssl/hooks.example.com/fullchain.pem",
                d.join("cert.pem").to_str().unwrap(),
            )
            .replace(
                "/etc/ssl/hooks.example.com/privkey.pem",
                d.join("key.pem").to_str().unwrap(),
            )
            .replace("server 127.0.0.1:8080;", &format!("server {upstream};"));
        assert!(site.contains(&format!("listen 127.0.0.1:{port} ssl;")));
        let temp = |name: &str| d.join(name).to_str().unwrap().to_owned();
        let main = format!(
            "daemon off;\nworker_processes 1;\npid {};\nerror_log {} warn;\n{}events {{}}\nhttp {{\n access_log off;\n client_body_temp_path {};\n proxy_temp_path {};\n fastcgi_temp_path {};\n uwsgi_temp_path {};\n scgi_temp_path {};\n{site}\n}}\n",
            temp("nginx.pid"),
            temp("error.log"),
            // As root, nginx's workers would run as nobody, who cannot use this directory.
            if unsafe { libc::geteuid() } == 0 {
                "user root;\n"
            } else {
                ""
            },
            temp("body"),
            temp("proxy"),
            temp("fastcgi"),
            temp("uwsgi"),
            temp("scgi"),
        );
        std::fs::write(d.join("nginx.conf"), main).unwrap();
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(d)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        wait_until("nginx listens", std::time::Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Some(Nginx {
            child,
            port,
            _dir: dir,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }
}

/// Through the shipped nginx configuration: a push is answered, the dashboard signs in
/// (the session cookie marked Secure, since nginx tells innohook the scheme was https),
/// its pages and the API answer, and anything else is nginx's 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_nginx_configuration_serves_the_webhook_the_api_and_the_dashboard() {
    let app = app_with_dashboard("").await;
    let test = "the_shipped_nginx_configuration_serves_the_webhook_the_api_and_the_dashboard";
    let Some(nginx) = Nginx::start(test, app.addr) else {
        return;
    };
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = client
        .post(nginx.url("/webhook"))
        .header("content-type", "application/json")
        .body(seed_bytes("delivered"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // Signing in as a browser does: a form posted from the dashboard's own origin.
    let origin = format!("https://127.0.0.1:{}", nginx.port);
    let res = client
        .post(nginx.url("/ui/login"))
        .header("origin", &origin)
        .form(&[("token", TOKEN), ("next", "/ui/batches")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let set = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.ends_with("; Secure"), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    for page in ["/ui/", "/ui/batches", "/ui/reports/daily"] {
        let res = client
            .get(nginx.url(page))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{page}");
    }
    let res = client
        .get(nginx.url("/api/events?limit=1"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // A send list larger than the webhook's 64 KiB passes on /api/sends.
    let rows: String = (0..3000)
        .map(|m| format!("nx-{m:05},6581{m:06},nx,2026-03-01T08:00:00Z\n"))
        .collect();
    let res = client
        .post(nginx.url("/api/sends"))
        .bearer_auth(TOKEN)
        .header("content-type", "text/csv")
        .body(format!("id,phone,uid,sentAt\n{rows}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        res.text().await.unwrap()
    );
    // Nothing else is passed on.
    let res = client.get(nginx.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(!res.text().await.unwrap().contains("innohook_"));
}
