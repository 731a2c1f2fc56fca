//! `--device`: where the forward pass runs. `cpu` (the default) or `cuda[:N]`, the latter
//! only in builds with the `cuda` feature (`cargo build --release --features cuda`).

use std::str::FromStr;
use std::sync::OnceLock;

use anyhow::Result;
use gossamer_checkpoint::Checkpoint;
use gossamer_model::GptOss;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda(usize),
}

impl FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Device, String> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| format!("unknown device `{s}` (cpu, cuda or cuda:N)")),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// The global device flags, set once by `main` before any command runs.
#[derive(Clone, Copy, Debug)]
pub struct DeviceChoice {
    pub device: Device,
    /// GiB for the GPU's KV cache (default: half the memory left after the weights).
    pub kv_cache_gb: Option<f64>,
}

static CHOICE: OnceLock<DeviceChoice> = OnceLock::new();

pub fn set(choice: DeviceChoice) {
    let _ = CHOICE.set(choice);
}

pub fn chosen() -> DeviceChoice {
    *CHOICE.get().unwrap_or(&DeviceChoice {
        device: Device::Cpu,
        kv_cache_gb: None,
    })
}

/// Measures the device's memory ceiling in GB/s (the GPU's copy bandwidth).
pub type CeilingProbe = Box<dyn Fn() -> Result<f64>>;

/// The model on the chosen device. On CUDA the weights are uploaded here (with a progress
/// bar on a terminal).
pub fn load_model(ck: &Checkpoint) -> Result<GptOss> {
    Ok(load_model_with_probe(ck)?.0)
}

/// [`load_model`], and on a GPU a probe of its copy bandwidth (for `bench --ceiling`).
pub fn load_model_with_probe(ck: &Checkpoint) -> Result<(GptOss, Option<CeilingProbe>)> {
    let mut model = GptOss::new(ck);
    let choice = chosen();
    let probe = match choice.device {
        Device::Cpu => None,
        Device::Cuda(ordinal) => Some(attach_cuda(&mut model, ck, ordinal, choice.kv_cache_gb)?),
    };
    Ok((model, probe))
}

#[cfg(feature = "cuda")]
fn attach_cuda(
    model: &mut GptOss,
    ck: &Checkpoint,
    ordinal: usize,
    kv_gb: Option<f64>,
) -> Result<CeilingProbe> {
    use anyhow::Context;
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(
            "uploading weights to cuda:{msg} {bar:30} {binary_bytes}/{binary_total_bytes}",
        )
        .expect("valid template"),
    );
    bar.set_message(ordinal.to_string());
    let opts = gossamer_cuda::CudaOptions {
        ordinal,
        kv_cache_bytes: kv_gb.map(|g| (g * (1u64 << 30) as f64) as usize),
    };
    let backend = gossamer_cuda::CudaBackend::new(ck, &opts, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .with_context(|| format!("cannot run on cuda:{ordinal}"))?;
    bar.finish_and_clear();
    model.set_accelerator(backend.clone());
    // 2 GiB copied, the best of 10: several times the L2, well past launch overhead.
    Ok(Box::new(move || {
        Ok(backend.copy_bandwidth(2 << 30, 10)? / 1e9)
    }))
}

#[cfg(not(feature = "cuda"))]
fn attach_cuda(
    _: &mut GptOss,
    _: &Checkpoint,
    ordinal: usize,
    _: Option<f64>,
) -> Result<CeilingProbe> {
    anyhow::bail!(
        "--device cuda:{ordinal}: this gossamer was built without CUDA support \
         (build it with `cargo build --release --features cuda`)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("cpu".parse::<Device>(), Ok(Device::Cpu));
        assert_eq!("cuda".parse::<Device>(), Ok(Device::Cuda(0)));
        assert_eq!("cuda:3".parse::<Device>(), Ok(Device::Cuda(3)));
        assert!("cuda:x".parse::<Device>().is_err());
        assert!("gpu".parse::<Device>().is_err());
    }
}
