//! Connections: the pool from `[store] url` (TLS with rustls unless `sslmode=disable`),
//! and errors put into sentences a person can act on.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::config::SslMode;
use tokio_postgres::{Config as PgConfig, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

/// How long the server lets a transaction wait for its client's next statement.
const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(2);

/// The pool for `url`. `sslmode` means what it means to libpq: `disable` plain TCP,
/// `prefer` (the default) TLS when the server offers it, `require` TLS; neither checks
/// the server's certificate. `verify-ca` checks it against the web's roots and the CA in
/// `sslrootcert=PATH`, `verify-full` also that it names the host.
pub(super) fn pool(url: &str, size: usize) -> anyhow::Result<Pool> {
    let (url, extra_ca, check) = libpq_options(url)?;
    let mut pg = PgConfig::from_str(&url)
        .map_err(|e| anyhow::anyhow!("store.url is not a PostgreSQL URL: {e}"))?;
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(Duration::from_secs(5));
    }
    pg.application_name("innohook");
    // Statements are prepared once per connection, but planned on every run: a plan
    // cached while a table was small would scan it whole once it has grown.
    // A transaction whose replica is cut off (a partition: its COMMIT never arrives)
    // would keep its locks until TCP gives up on the server's side, hours by default:
    // the `seq_counter` row holds up every replica's commits, a lease row the takeover of
    // a sink. innohook never keeps a transaction waiting on anything but the database,
    // so the server ends one that has waited for the next statement this long.
    let ours = format!(
        "-c plan_cache_mode=force_custom_plan -c idle_in_transaction_session_timeout={}",
        IDLE_IN_TRANSACTION.as_millis()
    );
    let options = match pg.get_options() {
        Some(given) => format!("{given} {ours}"),
        None => ours,
    };
    pg.options(&options);
    // Find a dead peer within a minute rather than the system's two hours.
    pg.keepalives_idle(Duration::from_secs(30));
    let manager = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match pg.get_ssl_mode() {
        SslMode::Disable => Manager::from_config(pg, NoTls, manager),
        _ => Manager::from_config(pg, tls(check, extra_ca.as_deref())?, manager),
    };
    Ok(Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(2)))
        .build()?)
}

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Encrypted, certificate not checked (`prefer`, `require`).
    None,
    /// Signed by a trusted CA (`verify-ca`).
    Ca,
    /// Signed by a trusted CA and naming the host (`verify-full`).
    Full,
}

/// Takes out of the URL what tokio-postgres does not read: `sslrootcert` (returned,
/// read) and the `sslmode`s that check certificates (tokio-postgres reads `require`).
fn libpq_options(url: &str) -> anyhow::Result<(String, Option<Vec<u8>>, Check)> {
    let Ok(mut parsed) = url::Url::parse(url) else {
        // Not a URL: a key=value string, which tokio-postgres reads itself.
        return Ok((url.to_owned(), None, Check::None));
    };
    let mut extra_ca = None;
    let mut check = Check::None;
    let mut pairs = Vec::new();
    for (k, v) in parsed.query_pairs() {
        match (k.as_ref(), v.as_ref()) {
            ("sslrootcert", path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| anyhow::anyhow!("cannot read sslrootcert {path}: {e}"))?;
                extra_ca = Some(pem);
            }
            ("sslmode", mode @ ("verify-ca" | "verify-full")) => {
                check = if mode == "verify-ca" {
                    Check::Ca
                } else {
                    Check::Full
                };
                pairs.push(("sslmode".to_owned(), "require".to_owned()))
            }
            (k, v) => pairs.push((k.to_owned(), v.to_owned())),
        }
    }
    if pairs.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    Ok((parsed.to_string(), extra_ca, check))
}

fn tls(check: Check, extra_ca: Option<&[u8]>) -> anyhow::Result<MakeRustlsConnect> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_ca {
        for cert in CertificateDer::pem_slice_iter(pem) {
            roots.add(cert.map_err(|e| anyhow::anyhow!("sslrootcert: {e}"))?)?;
        }
    }
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?;
    let verifier = Verifier {
        check,
        webpki,
        provider: provider.clone(),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// libpq's certificate checks (see [`Check`]). The handshake's signatures are always
/// verified, so the connection is encrypted with the key of the certificate presented.
#[derive(Debug)]
struct Verifier {
    check: Check,
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::{CertificateError, Error};
        let checked = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match (self.check, checked) {
            (Check::None, _) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            (
                Check::Ca,
                Err(Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )),
            ) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            (_, checked) => checked,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A sentence for a PostgreSQL error: the server's message and SQLSTATE, or the cause
/// of a failed connection.
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let hint = match db.code().code() {
            "28P01" | "28000" => " (check the user and password in store.url)",
            "42501" => {
                " (the user lacks a privilege: it needs to create tables in its database, or to read and write innohook's)"
            }
            "3D000" => " (create the database first: CREATE DATABASE …)",
            _ => "",
        };
        return format!("PostgreSQL: {} [{}]{hint}", db.message(), db.code().code());
    }
    let mut text = format!("PostgreSQL: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether the error is about the connection rather than the data: then redoing the
/// writes one by one would fail the same way.
pub(super) fn is_connection(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || e.as_db_error().is_none_or(|db| {
            let code = db.code().code();
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
        })
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Backend(describe(&e))
    }
}

impl From<PoolError> for StoreError {
    fn from(e: PoolError) -> Self {
        Self::Backend(match e {
            PoolError::Backend(e) => describe(&e),
            PoolError::Timeout(_) => {
                "PostgreSQL: no connection within 5 s (the server is unreachable, or every pooled connection is busy)".to_owned()
            }
            other => format!("PostgreSQL: {other}"),
        })
    }
}

/// Text as PostgreSQL can keep it: `text` cannot hold NUL, which JSON can ("\u0000");
/// it becomes U+FFFD in the tracking columns (the body is kept as sent, in `bytea`).
pub(super) fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}
