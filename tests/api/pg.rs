//! PostgreSQL for tests: a database of its own for each test, on the server that
//! `INNOHOOK_TEST_POSTGRES_URL` names (dropped afterwards), and servers of their own for
//! the tests that stop one. Without the variable these tests say so in one line and pass.

use std::path::{Path, PathBuf};
use std::process::Command;

use innohook::config::{StoreBackend, StoreConfig};

const VAR: &str = "INNOHOOK_TEST_POSTGRES_URL";

/// The server's URL, or `None` (and one line saying how to run the test) when unset.
pub fn server_url(test: &str) -> Option<String> {
    match std::env::var(VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            crate::helpers::skipped(
                test,
                &format!(
                    "set {VAR}=postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable to run the PostgreSQL tests"
                ),
            );
            None
        }
    }
}

/// A database of its own, dropped when this is.
pub struct TestDb {
    pub url: String,
    admin: String,
    name: String,
}

impl TestDb {
    pub async fn create(test: &str) -> Option<TestDb> {
        let admin = server_url(test)?;
        Some(Self::create_on(&admin).await)
    }

    /// A database on the server at `admin`.
    pub async fn create_on(admin: &str) -> TestDb {
        let name = format!(
            "innohook_test_{}_{:012x}",
            std::process::id(),
            fastrand::u64(..1 << 48)
        );
        let (client, conn) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("{VAR}: cannot connect to {admin}: {e}"));
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let mut url = reqwest::Url::parse(admin).expect("a URL");
        url.set_path(&format!("/{name}"));
        TestDb {
            url: url.to_string(),
            admin: admin.to_owned(),
            name,
        }
    }

    /// A store config for this database.
    pub fn config(&self) -> StoreConfig {
        StoreConfig {
            backend: StoreBackend::Postgres,
            url: Some(self.url.clone()),
            ..StoreConfig::default()
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop may run inside a runtime; the database is dropped from a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                    .await
                    .ok()?;
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

/// A PostgreSQL server of its own, on a free port of 127.0.0.1, from the installed
/// binaries (`initdb` refuses root, so it runs as the `postgres` user when root).
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

impl PgServer {
    pub fn start() -> PgServer {
        let bin = Self::binaries().expect("PostgreSQL's binaries (initdb, pg_ctl) are installed");
        let dir = tempfile::Builder::new()
            .prefix("innohook-pg")
            .tempdir_in("/tmp")
            .unwrap();
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success());
        }
        let data = dir.path().join("data");
        let initdb = Self::as_postgres(root, &bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"])
            .output()
            .unwrap();
        assert!(initdb.status.success(), "initdb: {initdb:?}");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = PgServer { dir, bin, port };
        server.pg_ctl_start();
        server
    }

    /// `/usr/lib/postgresql/<newest>/bin`, if PostgreSQL is installed.
    fn binaries() -> Option<PathBuf> {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .collect();
        versions.sort();
        versions.pop()
    }

    fn as_postgres(root: bool, program: &Path) -> Command {
        if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    fn pg_ctl(&self) -> Command {
        let root = unsafe { libc::geteuid() } == 0;
        let mut c = Self::as_postgres(root, &self.bin.join("pg_ctl"));
        c.arg("-D").arg(self.dir.path().join("data"));
        c
    }

    fn pg_ctl_start(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .pg_ctl()
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-w", "-o", &options, "start"])
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl start: {out:?}");
    }

    /// Stops the server at once (connections are cut).
    pub fn stop(&self) {
        let out = self
            .pg_ctl()
            .args(["-m", "immediate", "-w", "stop"])
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl stop: {out:?}");
    }

    pub fn restart(&self) {
        self.pg_ctl_start();
    }

    /// The admin URL (database `postgres`).
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self
            .pg_ctl()
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}
