//! OpenBLAS, which runs the encoder's matrix products: which kernels it uses, and on how many
//! threads.
//!
//! Debian's OpenBLAS picks its kernels for the CPU when the library loads, before `main`, from
//! the CPU's family and model numbers. A CPU newer than the library (0.3.21 in Debian 12: an
//! Intel Xeon of 2023, say) is not in its tables, and it falls back to its generic "Prescott"
//! kernels (SSE3) although the CPU has AVX2 or AVX-512: one face encoding then takes about twice
//! as long. OpenBLAS reads `OPENBLAS_CORETYPE` at that same moment, so the program cannot
//! change its choice once running: [`reexec_with_best_kernels`], called first thing in `main`,
//! runs the program again with that variable set when (and only when) OpenBLAS has fallen back
//! on a CPU that has AVX2. A variable the user set is left alone.

use std::ffi::{CStr, OsString};

/// OpenBLAS's variable naming the kernels to use, read when the library loads.
pub const CORETYPE_VAR: &str = "OPENBLAS_CORETYPE";

/// The kernels OpenBLAS uses in this process, as it names them ("Haswell", "SkylakeX",
/// "armv8", ...).
pub fn corename() -> String {
    extern "C" {
        fn openblas_get_corename() -> *const std::os::raw::c_char;
    }
    // SAFETY: takes nothing and returns a pointer to a static NUL-terminated string naming the
    // kernels chosen at load (libopenblas is linked by dlib-face-recognition's `openblas`
    // feature); checked for null before it is read, and only read.
    unsafe {
        let name = openblas_get_corename();
        if name.is_null() {
            return String::new();
        }
        CStr::from_ptr(name).to_string_lossy().trim().to_string()
    }
}

/// What the CPU can run, as far as the choice of kernels goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    /// AVX2 and FMA: OpenBLAS's Haswell kernels.
    pub avx2_fma: bool,
    /// AVX-512 F, CD, BW, DQ and VL: OpenBLAS's SkylakeX kernels.
    pub avx512: bool,
}

impl CpuFeatures {
    /// This CPU's (nothing outside x86_64).
    pub fn detect() -> CpuFeatures {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            CpuFeatures {
                avx2_fma: has!("avx2") && has!("fma"),
                avx512: has!("avx512f")
                    && has!("avx512cd")
                    && has!("avx512bw")
                    && has!("avx512dq")
                    && has!("avx512vl"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        CpuFeatures::default()
    }
}

/// The kernels to ask for instead of `corename`, the ones OpenBLAS chose: `None` unless it fell
/// back to its generic x86 kernels ("Prescott") on a CPU that can run better ones, which no
/// real Prescott-era CPU can (it is then certain that the CPU was not recognized).
pub fn better_kernels(corename: &str, cpu: CpuFeatures) -> Option<&'static str> {
    if !corename.eq_ignore_ascii_case("prescott") {
        return None;
    }
    if cpu.avx512 {
        Some("SkylakeX")
    } else if cpu.avx2_fma {
        Some("Haswell")
    } else {
        None
    }
}

/// Runs this program again, same arguments, with `OPENBLAS_CORETYPE` set to better kernels when
/// OpenBLAS fell back to its generic ones on this CPU ([`better_kernels`]); returns (doing
/// nothing) when the variable is already set, when OpenBLAS's choice is right, or when the
/// program cannot be run again (said on stderr: the program goes on with the slower kernels).
/// Call it before any other thread starts: the process image is replaced.
pub fn reexec_with_best_kernels() {
    if std::env::var_os(CORETYPE_VAR).is_some() {
        return;
    }
    let chosen = corename();
    let Some(better) = better_kernels(&chosen, CpuFeatures::detect()) else {
        return;
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return eprintln!("OpenBLAS chose {chosen} kernels; could not find this program to run it with {better}: {e}"),
    };
    let mut args = std::env::args_os();
    let arg0: OsString = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    use std::os::unix::process::CommandExt;
    let error = std::process::Command::new(&exe)
        .arg0(arg0)
        .args(args)
        .env(CORETYPE_VAR, better)
        .exec();
    eprintln!(
        "OpenBLAS chose {chosen} kernels; could not run {} again with {better}: {error}",
        exe.display()
    );
}

/// Tells OpenBLAS to use the calling thread only: the engine already runs one face per core,
/// and OpenBLAS's own threads would compete with it (measured: fewer requests/s at 4 clients
/// and a worse tail). Set by the program itself, whatever the user's environment says.
pub(super) fn single_threaded() {
    extern "C" {
        fn openblas_set_num_threads(num_threads: std::os::raw::c_int);
    }
    // SAFETY: takes an int and only sets OpenBLAS's thread count (libopenblas is linked by
    // dlib-face-recognition's `openblas` feature); safe to call at any time from any thread.
    unsafe { openblas_set_num_threads(1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AVX2: CpuFeatures = CpuFeatures {
        avx2_fma: true,
        avx512: false,
    };
    const AVX512: CpuFeatures = CpuFeatures {
        avx2_fma: true,
        avx512: true,
    };

    #[test]
    fn only_the_generic_fallback_on_a_capable_cpu_is_replaced() {
        assert_eq!(better_kernels("Prescott", AVX512), Some("SkylakeX"));
        assert_eq!(better_kernels("prescott", AVX2), Some("Haswell"));
        // A CPU that really has only SSE3: Prescott is right.
        assert_eq!(better_kernels("Prescott", CpuFeatures::default()), None);
        // OpenBLAS recognized the CPU: its choice stands.
        for name in [
            "Haswell",
            "SkylakeX",
            "Zen",
            "Sandybridge",
            "armv8",
            "cortexa72",
            "",
        ] {
            assert_eq!(better_kernels(name, AVX512), None, "{name}");
        }
    }

    #[test]
    fn the_linked_openblas_names_its_kernels() {
        assert!(!corename().is_empty());
    }
}
