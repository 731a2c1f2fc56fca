//! Writes the kernels' PTX for a compute capability (default 9.0) to a file, to inspect it
//! or run `ptxas -v` on it without a GPU:
//! `cargo run -p gossamer-cuda --example ptx -- /tmp/k.ptx 90` (needs libnvrtc).

fn main() {
    let mut args = std::env::args().skip(1);
    let out = args.next().unwrap_or_else(|| "gossamer_kernels.ptx".into());
    let cc: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(90);
    match gossamer_cuda::compile_kernels((cc / 10) as i32, (cc % 10) as i32) {
        Ok(ptx) => {
            if let Err(e) = std::fs::write(&out, ptx) {
                eprintln!("error: cannot write {out}: {e}");
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
