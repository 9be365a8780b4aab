//! The ceiling of the HTTP stack on this machine: an axum server whose POST /webhook
//! reads the body and answers 200 without parsing or storing anything. `bench/run.sh`
//! measures innohook against it, and uses it as the forward sink's target.
//!
//! Usage: `baseline ADDR` (e.g. 127.0.0.1:18081).

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".into());
    // Same runtime shape as innohook's: multi-thread, one worker per core it may use.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let app = Router::new().route(
            "/webhook",
            post(|body: Bytes| async move {
                std::hint::black_box(body);
                (
                    [("content-type", "application/json")],
                    r#"{"status":"accepted"}"#,
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
        axum::serve(listener, app).await.unwrap();
    });
}
