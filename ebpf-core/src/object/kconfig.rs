//! Values for `extern ... __kconfig` variables: `LINUX_KERNEL_VERSION` from the running
//! kernel's release, `LINUX_HAS_BPF_COOKIE` and `LINUX_HAS_SYSCALL_WRAPPER` from feature
//! probes, `CONFIG_*` from `/proc/config.gz` or `/boot/config-<release>`.

use std::collections::HashMap;
use std::io::Read;
use std::sync::OnceLock;

use super::data::KconfigExtern;
use super::error::ObjectError;
use super::variable::VariableType;

/// The running kernel's configuration, read once per process: it cannot change while the
/// kernel runs, and a daemon that loads an object per endpoint would otherwise decompress
/// `/proc/config.gz` for every one.
fn kernel_config_map(release: &str) -> Result<&'static HashMap<String, String>, String> {
    static CONFIG: OnceLock<Result<HashMap<String, String>, String>> = OnceLock::new();
    CONFIG.get_or_init(|| read_config(release)).as_ref().map_err(Clone::clone)
}

/// The running kernel's value of the configuration `option` (`"CONFIG_HZ"` → `"250"`), as
/// written in `/proc/config.gz` or `/boot/config-<release>` (read once per process); `None`
/// when the option is not set. Options a program reads as `__kconfig` externs are filled in by
/// the loader; this is for user space that needs the same facts (the tick rate behind
/// `bpf_jiffies64`, say).
///
/// ```no_run
/// let hz: u64 = ebpf_core::object::kernel_config("CONFIG_HZ")?.and_then(|v| v.parse().ok()).unwrap_or(0);
/// # Ok::<(), ebpf_core::object::ObjectError>(())
/// ```
pub fn kernel_config(option: &str) -> Result<Option<&'static str>, ObjectError> {
    let options = kernel_config_map(&crate::features::kernel_release())
        .map_err(|reason| ObjectError::Extern { name: option.to_owned(), reason })?;
    Ok(options.get(option).map(String::as_str).filter(|v| *v != "n"))
}

/// The kernel's configuration: option → value as written (`y`, `m`, `42`, `"str"`).
fn read_config(release: &str) -> Result<HashMap<String, String>, String> {
    let text = match std::fs::read("/proc/config.gz") {
        Ok(gz) => {
            let mut text = String::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_string(&mut text)
                .map_err(|e| format!("decompress /proc/config.gz: {e}"))?;
            text
        }
        Err(_) => {
            let path = format!("/boot/config-{release}");
            std::fs::read_to_string(&path).map_err(|e| format!("neither /proc/config.gz nor {path}: {e}"))?
        }
    };
    Ok(parse_config(&text))
}

fn parse_config(text: &str) -> HashMap<String, String> {
    let mut options = HashMap::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("# ").and_then(|l| l.strip_suffix(" is not set")) {
            options.insert(name.to_owned(), "n".to_owned());
        } else if let Some((name, value)) = line.split_once('=') {
            if name.starts_with("CONFIG_") {
                options.insert(name.to_owned(), value.to_owned());
            }
        }
    }
    options
}

/// `KERNEL_VERSION(a, b, c)` of a release string such as `6.18.44-amd64`.
fn kernel_version(release: &str) -> u32 {
    let mut parts =
        release.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty()).map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b, c) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a << 16) + (b << 8) + c.min(255)
}

fn encode(external: &KconfigExtern, raw: &str) -> Result<Vec<u8>, String> {
    let size = external.ty.size() as usize;
    let tristate = |allow_module: bool| match raw {
        "y" => Ok(1),
        "n" => Ok(0),
        "m" if allow_module => Ok(2),
        _ => Err(format!("value {raw} is not y/n{}", if allow_module { "/m" } else { "" })),
    };
    match &external.ty {
        VariableType::Bool => encode_number(external, tristate(false)?),
        VariableType::Enum { .. } => encode_number(external, tristate(true)?),
        VariableType::Int { size: 1, .. } if matches!(raw, "y" | "n" | "m") => Ok(vec![raw.as_bytes()[0]]),
        VariableType::Int { .. } => {
            let parsed = match raw.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => raw.parse::<i64>().map(|v| v as u64),
            };
            encode_number(external, parsed.map_err(|_| format!("value {raw} is not a number"))?)
        }
        VariableType::Other { .. } if raw.starts_with('"') => {
            let text = raw.trim_matches('"').as_bytes();
            let mut out = vec![0u8; size];
            let n = text.len().min(size.saturating_sub(1));
            out[..n].copy_from_slice(&text[..n]);
            Ok(out)
        }
        other => Err(format!("cannot hold {raw} in a {other}")),
    }
}

/// libbpf's virtual externs: values the loader works out rather than reads from the
/// configuration.
fn virtual_value(name: &str, release: &str) -> Option<u64> {
    use crate::features::{misc, MiscFeature};
    match name {
        "LINUX_KERNEL_VERSION" => Some(kernel_version(release).into()),
        "LINUX_HAS_BPF_COOKIE" => Some(misc(MiscFeature::BpfCookie).is_yes().into()),
        "LINUX_HAS_SYSCALL_WRAPPER" => Some(misc(MiscFeature::SyscallWrapper).is_yes().into()),
        _ => None,
    }
}

/// A number in an extern of integer, bool or enum type (libbpf's `set_kcfg_value_num`).
fn encode_number(external: &KconfigExtern, value: u64) -> Result<Vec<u8>, String> {
    match &external.ty {
        VariableType::Bool | VariableType::Int { .. } | VariableType::Enum { .. } => {
            let size = (external.ty.size() as usize).min(8);
            Ok(value.to_ne_bytes()[..size].to_vec())
        }
        other => Err(format!("cannot hold the number {value} in a {other}")),
    }
}

/// The `.kconfig` map image for `externs`.
pub(super) fn kconfig_image(externs: &[KconfigExtern], size: usize) -> Result<Vec<u8>, ObjectError> {
    let release = crate::features::kernel_release();
    let mut config = None;
    let mut image = vec![0u8; size];
    for external in externs {
        let fail = |reason: String| ObjectError::Extern { name: external.name.clone(), reason };
        let bytes = if let Some(value) = virtual_value(&external.name, &release) {
            encode_number(external, value).map_err(fail)?
        } else {
            let options = match &config {
                Some(c) => c,
                None => config.insert(kernel_config_map(&release).map_err(fail)?),
            };
            match options.get(&external.name) {
                Some(raw) => encode(external, raw).map_err(fail)?,
                None if external.weak => continue,
                None => {
                    return Err(fail("not in the kernel's configuration (declare it __weak to default to 0)".into()))
                }
            }
        };
        let start = external.offset as usize;
        let Some(slot) = image.get_mut(start..start + bytes.len()) else {
            return Err(fail(format!("offset {start} is outside the .kconfig map ({size} bytes)")));
        };
        slot.copy_from_slice(&bytes);
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(name: &str, ty: VariableType) -> KconfigExtern {
        KconfigExtern { name: name.into(), offset: 0, ty, weak: false }
    }

    #[test]
    fn the_running_kernels_configuration_is_readable() {
        match kernel_config("CONFIG_BPF_SYSCALL") {
            Ok(value) => assert_eq!(value, Some("y"), "a kernel that runs these tests has bpf(2)"),
            Err(e) if std::env::var_os("EBPF_REQUIRE_KERNEL").is_some() => panic!("kernel configuration: {e}"),
            Err(e) => eprintln!("SKIPPED: no kernel configuration to read here: {e}"),
        }
        if let Ok(Some(hz)) = kernel_config("CONFIG_HZ") {
            assert!(hz.parse::<u32>().is_ok_and(|hz| hz >= 100), "CONFIG_HZ={hz}");
        }
    }

    #[test]
    fn config_values_encode_like_libbpf() {
        let options = parse_config("CONFIG_BPF=y\n# CONFIG_FOO is not set\nCONFIG_HZ=250\nCONFIG_NAME=\"abc\"\n");
        assert_eq!(options["CONFIG_FOO"], "n");
        assert_eq!(encode(&ext("CONFIG_BPF", VariableType::Bool), "y").unwrap(), [1]);
        assert_eq!(
            encode(&ext("CONFIG_HZ", VariableType::Int { size: 4, signed: false }), "250").unwrap(),
            250u32.to_ne_bytes()
        );
        assert_eq!(
            encode(&ext("X", VariableType::Enum { name: "libbpf_tristate".into(), size: 4 }), "m").unwrap(),
            2u32.to_ne_bytes()
        );
        assert_eq!(
            encode(&ext("X", VariableType::Other { name: "char[4]".into(), size: 4 }), "\"abcdef\"").unwrap(),
            b"abc\0"
        );
        assert!(encode(&ext("X", VariableType::Bool), "m").is_err());
        assert_eq!(kernel_version("6.18.44-cloud"), (6 << 16) + (18 << 8) + 44);
    }
}
