//! Not a test: a fake Hub serving the tiny checkpoint as `openai/gpt-oss-tiny`, for checking
//! by hand (progress bars on a terminal, Python's `huggingface_hub` against it):
//!
//! ```sh
//! cargo test --release -p gossamer-hub --test manual_hub -- --ignored --nocapture
//! ```
//!
//! It prints the `HF_ENDPOINT` to use and serves for `GOSSAMER_FAKE_HUB_SECONDS` (600), at
//! `GOSSAMER_FAKE_HUB_RATE` bytes per second per file (20 MB/s; 0 for full speed).

mod common;

#[test]
#[ignore = "serves until it times out; run by hand"]
fn serve_the_tiny_checkpoint() {
    let number = |var: &str, default: u64| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (hub, commit) = common::hub_with_tiny();
    hub.throttle(number("GOSSAMER_FAKE_HUB_RATE", 20_000_000));
    println!(
        "HF_ENDPOINT={} serves {} at commit {commit}",
        hub.endpoint(),
        common::REPO
    );
    std::thread::sleep(std::time::Duration::from_secs(number(
        "GOSSAMER_FAKE_HUB_SECONDS",
        600,
    )));
}
