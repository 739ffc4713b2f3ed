//! `medgemma doctor`: what this machine and this build can do, checked rather than assumed: the build (version,
//! llama.cpp's system info, GPU backends), the CPU features ggml uses against those the CPU advertises (AMX is
//! advertised but faults on some virtual machines), the kernel's sandboxing (Landlock ABI, seccomp) with a proof,
//! and the cache folders with their free space.
//!
//! The proof runs this binary again as a child (`medgemma sandbox-proof`, hidden) that enters the sandbox and then
//! tries to connect to a TCP listener this process holds and to read a file outside its rules (both must be
//! refused) and to read its one allowed file (which must work). Owns: the report and its checks; exit 1 when a
//! check fails. Must not: change anything on the machine beyond a temporary folder it removes.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cli::{DoctorArgs, SandboxProofArgs};
use crate::sandbox::{self, Policy};

#[derive(Serialize)]
struct Report {
    version: &'static str,
    build: Build,
    cpu: Cpu,
    kernel: String,
    sandbox: SandboxReport,
    caches: Vec<CacheFolder>,
    /// Every device llama.cpp sees in this build (the CPU included), with its memory.
    devices: Vec<crate::engine::Device>,
    checks: Vec<Check>,
    ok: bool,
}

#[derive(Serialize)]
struct Build {
    bindings: &'static str,
    llama_cpp_system_info: String,
    backends: Vec<String>,
    gpu_offload: bool,
    gpu_features: Vec<&'static str>,
}

#[derive(Serialize)]
struct Cpu {
    /// Flags of /proc/cpuinfo that matter to ggml.
    advertised: Vec<String>,
    amx_advertised: bool,
    amx_compiled: bool,
    /// When advertised: what one AMX tile instruction does in a child process ("runs", "faults (SIGILL)", ...).
    amx_probe: Option<String>,
    amx_note: &'static str,
}

#[derive(Serialize)]
struct SandboxReport {
    landlock_abi: i32,
    seccomp_errno_filters: bool,
    proof: Option<ProofOutcome>,
}

#[derive(Serialize)]
struct CacheFolder {
    what: &'static str,
    path: PathBuf,
    exists: bool,
    free_bytes: Option<u64>,
}

#[derive(Serialize)]
struct Check {
    name: String,
    ok: bool,
    detail: String,
}

/// What the child reports, one JSON object on its stdout.
#[derive(Debug, Serialize, Deserialize)]
struct ProofOutcome {
    enforcement: Option<serde_json::Value>,
    attempts: Vec<Attempt>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Attempt {
    what: String,
    /// "allowed" or "refused".
    expected: String,
    outcome: String,
    detail: String,
}

const CPU_FLAGS: [&str; 10] = [
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
];

pub fn run(args: DoctorArgs) -> Result<()> {
    let info = crate::engine::system_info();
    let flags = cpu_flags();
    let amx_advertised = flags.iter().any(|f| f.starts_with("amx"));
    let cpu = Cpu {
        amx_note: match (amx_advertised, info.amx_compiled) {
            (true, true) => "AMX is advertised and compiled in; on virtual machines where it faults, llama.cpp dies with SIGILL: rebuild with scripts/build (it probes AMX)",
            (true, false) => "AMX is advertised but not compiled in (the build left it out, e.g. because executing it faults here)",
            (false, true) => "AMX is compiled in but not advertised: ggml will not use it",
            (false, false) => "no AMX",
        },
        advertised: flags,
        amx_advertised,
        amx_compiled: info.amx_compiled,
        amx_probe: amx_advertised.then(probe_amx),
    };
    let mut checks = Vec::new();
    if let Some(probe) = &cpu.amx_probe {
        checks.push(Check {
            name: "AMX: compiled in only where it runs".into(),
            ok: !cpu.amx_compiled || probe == "runs",
            detail: format!(
                "advertised, {}, one tile instruction {probe}",
                if cpu.amx_compiled {
                    "compiled in"
                } else {
                    "not compiled in"
                }
            ),
        });
    }
    let landlock_abi = sandbox::landlock_abi();
    checks.push(Check {
        name: "Landlock available".into(),
        ok: landlock_abi >= 1,
        detail: format!("ABI {landlock_abi} (4+ also confines TCP, 6+ signals and abstract sockets)"),
    });
    let seccomp = sandbox::seccomp_supported();
    checks.push(Check {
        name: "seccomp filters with errno".into(),
        ok: seccomp,
        detail: "/proc/sys/kernel/seccomp/actions_avail".into(),
    });
    let proof = match run_proof() {
        Ok(p) => Some(p),
        Err(e) => {
            checks.push(Check {
                name: "sandbox proof ran".into(),
                ok: false,
                detail: format!("{e:#}"),
            });
            None
        }
    };
    if let Some(p) = &proof {
        let field = |k: &str| {
            p.enforcement
                .as_ref()
                .and_then(|e| e.get(k))
                .cloned()
                .unwrap_or_default()
        };
        let landlock = field("landlock").as_str().unwrap_or("none").to_string();
        let seccomp = field("seccomp").as_bool().unwrap_or(false);
        checks.push(Check {
            name: "sandbox fully enforced".into(),
            ok: landlock == "full" && seccomp,
            detail: format!(
                "Landlock rules: {landlock}, seccomp filter: {}",
                if seccomp { "on" } else { "off" }
            ),
        });
        for a in &p.attempts {
            checks.push(Check {
                name: format!("sandbox: {} is {}", a.what, a.expected),
                ok: a.outcome == a.expected,
                detail: format!("{} ({})", a.outcome, a.detail),
            });
        }
    }
    let caches = cache_folders();
    for c in &caches {
        checks.push(Check {
            name: format!("free space for {}", c.what),
            ok: c.free_bytes.is_some(),
            detail: c.free_bytes.map_or_else(
                || "unknown".into(),
                |b| format!("{} at {}", human_bytes(b), c.path.display()),
            ),
        });
    }
    let ok = checks.iter().all(|c| c.ok);
    let report = Report {
        version: env!("CARGO_PKG_VERSION"),
        build: Build {
            bindings: crate::engine::BINDINGS,
            llama_cpp_system_info: info.system_info,
            backends: info.backends,
            gpu_offload: info.gpu_offload,
            gpu_features: [
                (cfg!(feature = "cuda"), "cuda"),
                (cfg!(feature = "vulkan"), "vulkan"),
                (cfg!(feature = "metal"), "metal"),
            ]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect(),
        },
        cpu,
        kernel: kernel_release(),
        sandbox: SandboxReport {
            landlock_abi,
            seccomp_errno_filters: seccomp,
            proof,
        },
        caches,
        devices: crate::engine::devices(),
        checks,
        ok,
    };
    super::print_report(args.json, &report, write_text)?;
    let failed = report.checks.iter().filter(|c| !c.ok).count();
    if failed > 0 {
        bail!("{failed} of {} checks failed (see above)", report.checks.len());
    }
    Ok(())
}

fn write_text(out: &mut dyn Write, r: &Report) -> std::io::Result<()> {
    writeln!(out, "medgemma {}", r.version)?;
    writeln!(
        out,
        "build      {}; backends: {}",
        r.build.bindings,
        r.build.backends.join(", ")
    )?;
    writeln!(out, "llama.cpp  {}", r.build.llama_cpp_system_info)?;
    writeln!(out, "cpu        {}", r.cpu.advertised.join(" "))?;
    writeln!(out, "amx        {}", r.cpu.amx_note)?;
    if let Some(probe) = &r.cpu.amx_probe {
        writeln!(out, "amx probe  one tile instruction {probe}")?;
    }
    writeln!(out, "kernel     {}", r.kernel)?;
    writeln!(
        out,
        "sandbox    Landlock ABI {}, seccomp errno filters: {}",
        r.sandbox.landlock_abi,
        if r.sandbox.seccomp_errno_filters { "yes" } else { "no" }
    )?;
    for c in &r.caches {
        let free = c
            .free_bytes
            .map_or_else(|| "free space unknown".into(), |b| format!("{} free", human_bytes(b)));
        let state = if c.exists { "" } else { " (not created yet)" };
        writeln!(out, "cache      {}: {}{state}, {free}", c.what, c.path.display())?;
    }
    for d in &r.devices {
        let memory = if d.kind == "cpu" {
            String::new()
        } else {
            format!(
                ", {} free of {}",
                human_bytes(d.memory_free),
                human_bytes(d.memory_total)
            )
        };
        writeln!(
            out,
            "device     {} ({}, {}): {}{memory}",
            d.name, d.backend, d.kind, d.description
        )?;
    }
    if !r.devices.iter().any(|d| d.kind != "cpu") {
        writeln!(
            out,
            "device     no GPU: {}",
            if r.build.gpu_features.is_empty() {
                "this is a CPU build (scripts/build --features vulkan or cuda makes a GPU build)"
            } else {
                "none found by this GPU build (lavapipe, the Vulkan CPU device, shows with GGML_VK_VISIBLE_DEVICES=0)"
            }
        )?;
    }
    writeln!(out)?;
    for c in &r.checks {
        writeln!(
            out,
            "{:<6} {}: {}",
            if c.ok { "ok" } else { "FAILED" },
            c.name,
            c.detail
        )?;
    }
    Ok(())
}

/// Runs the proof child and reads its answer; the listener must have seen no connection.
fn run_proof() -> Result<ProofOutcome> {
    let dir = tempfile::tempdir().context("cannot create a temporary folder for the sandbox proof")?;
    let allowed = dir.path().join("allowed.txt");
    let outside = dir.path().join("outside.txt");
    std::fs::write(&allowed, b"allowed").context("cannot write the proof's allowed file")?;
    std::fs::write(&outside, b"outside").context("cannot write the proof's outside file")?;
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot listen on 127.0.0.1 for the sandbox proof")?;
    let addr = listener.local_addr()?;
    // Control: outside the sandbox the same file and the same listener are reachable.
    std::fs::read(&outside).context("control: cannot read the outside file without the sandbox")?;
    drop(std::net::TcpStream::connect(addr).context("control: cannot connect without the sandbox")?);
    listener.accept().context("control: the listener saw no connection")?;
    listener.set_nonblocking(true)?;

    let exe = std::env::current_exe().context("cannot find this program to run the sandbox proof")?;
    let output = Command::new(exe)
        .arg("sandbox-proof")
        .arg("--allowed")
        .arg(&allowed)
        .arg("--outside")
        .arg(&outside)
        .arg("--connect")
        .arg(addr.to_string())
        .env_remove("MEDGEMMA_SANDBOX_PROBE")
        .output()
        .context("cannot run the sandbox proof")?;
    if !output.status.success() {
        bail!(
            "the proof child failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let mut outcome: ProofOutcome =
        serde_json::from_slice(&output.stdout).context("the proof child's answer is not the expected JSON")?;
    let reached = match listener.accept() {
        Ok(_) => (
            "allowed",
            "a connection from the sandbox reached the listener".to_string(),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => ("refused", "no connection arrived".to_string()),
        Err(e) => ("refused", e.to_string()),
    };
    outcome.attempts.push(Attempt {
        what: format!("the listener at {addr} (seen from outside)"),
        expected: "refused".into(),
        outcome: reached.0.into(),
        detail: reached.1,
    });
    Ok(outcome)
}

/// The child: enter the sandbox (required), then try each thing; one JSON object on stdout.
pub fn proof_child(args: SandboxProofArgs) -> Result<()> {
    let enforcement = Policy::new("sandbox-proof").read(&args.allowed).apply()?;
    let mut attempts = vec![
        attempt(format!("reading {}", args.allowed.display()), "allowed", || {
            read(&args.allowed)
        }),
        attempt(format!("reading {}", args.outside.display()), "refused", || {
            read(&args.outside)
        }),
    ];
    let outside = args.outside.clone();
    let from_thread = std::thread::spawn(move || read(&outside))
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the thread panicked")));
    attempts.push(attempt(
        format!("reading {} from a new thread", args.outside.display()),
        "refused",
        || from_thread,
    ));
    let addr = args.connect.clone();
    attempts.push(attempt(format!("connecting to {addr}"), "refused", || {
        std::net::TcpStream::connect(&addr).map(|_| "connected".to_string())
    }));
    let outcome = ProofOutcome {
        enforcement: serde_json::to_value(&enforcement).ok(),
        attempts,
    };
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &outcome)?;
    writeln!(out)?;
    Ok(())
}

fn read(path: &Path) -> std::io::Result<String> {
    let mut s = String::new();
    std::fs::File::open(path)?.read_to_string(&mut s)?;
    Ok(format!("read {} bytes", s.len()))
}

/// Runs `f`; a permission error (EACCES, EPERM) counts as refused, success as allowed, anything else as an error.
fn attempt(what: String, expected: &str, f: impl FnOnce() -> std::io::Result<String>) -> Attempt {
    let (outcome, detail) = match f() {
        Ok(d) => ("allowed", d),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => ("refused", e.to_string()),
        Err(e) => ("error", e.to_string()),
    };
    Attempt {
        what,
        expected: expected.into(),
        outcome: outcome.into(),
        detail,
    }
}

/// Runs `medgemma amx-probe` and says what happened to it.
fn probe_amx() -> String {
    use std::os::unix::process::ExitStatusExt;
    let status = std::env::current_exe().and_then(|exe| {
        Command::new(exe)
            .arg("amx-probe")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
    });
    match status {
        Ok(s) if s.success() => "runs".into(),
        Ok(s) if s.code() == Some(2) => "is refused by the kernel (arch_prctl)".into(),
        Ok(s) if s.signal() == Some(libc::SIGILL) => "faults (SIGILL)".into(),
        Ok(s) => format!("fails ({s})"),
        Err(e) => format!("cannot be tried ({e})"),
    }
}

/// The child of the AMX check: asks the kernel for the AMX tile state, then runs one tile instruction. Exits 0 when
/// it ran, 2 when the kernel refuses AMX (or this is not x86-64); a CPU that faults kills it with SIGILL.
pub fn amx_probe_child() -> Result<()> {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: arch_prctl only grants this process the AMX state; the tile configuration is a valid 64-byte palette
    // 1 (one tile of 16 rows of 64 bytes), read by ldtilecfg and released before returning.
    unsafe {
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        if libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0 {
            std::process::exit(2);
        }
        let mut config = [0u8; 64];
        (config[0], config[16], config[48]) = (1, 64, 16);
        std::arch::asm!(
            "ldtilecfg [{0}]",
            "tilezero tmm0",
            "tilerelease",
            in(reg) config.as_ptr(),
            options(nostack)
        );
        Ok(())
    }
    #[cfg(not(target_arch = "x86_64"))]
    std::process::exit(2)
}

fn cpu_flags() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let line = text.lines().find(|l| l.starts_with("flags")).unwrap_or("");
    let have: Vec<&str> = line.split_whitespace().collect();
    CPU_FLAGS
        .iter()
        .filter(|f| have.contains(f))
        .map(|f| f.to_string())
        .collect()
}

fn kernel_release() -> String {
    // SAFETY: uname fills the zeroed struct; its fields are NUL-terminated strings.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return "unknown".into();
        }
        let field = |f: &[libc::c_char]| std::ffi::CStr::from_ptr(f.as_ptr()).to_string_lossy().into_owned();
        format!("{} {} {}", field(&u.sysname), field(&u.release), field(&u.machine))
    }
}

fn cache_folders() -> Vec<CacheFolder> {
    let hub = crate::hub::HubSettings::from_env(false);
    let mut folders = vec![
        ("medgemma home (MEDGEMMA_HOME)", crate::hub::local::medgemma_home()),
        ("Hugging Face cache (HF_HUB_CACHE)", hub.cache_dir),
    ];
    if let Some(sha) = crate::batch::sha256_cache::cache_file_from_vars(|k| std::env::var_os(k)) {
        if let Some(dir) = sha.parent() {
            folders.push(("SHA-256 memory of batch", dir.to_path_buf()));
        }
    }
    if let Some(dir) = crate::image_cache::dir_from_vars(|k| std::env::var_os(k)) {
        folders.push(("image embedding cache (medgemma cache)", dir));
    }
    folders
        .into_iter()
        .map(|(what, path)| CacheFolder {
            what,
            exists: path.is_dir(),
            free_bytes: free_bytes(&path),
            path,
        })
        .collect()
}

/// Free bytes for an unprivileged user on the file system that holds `path` (or its nearest existing parent).
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let existing = path.ancestors().find(|p| p.exists())?;
    let c = std::ffi::CString::new(existing.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct from a NUL-terminated path.
    #[allow(clippy::useless_conversion)] // the fields are u32 on 32-bit targets
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c.as_ptr(), &mut s) == 0).then(|| u64::from(s.f_bavail) * u64::from(s.f_frsize))
    }
}

fn human_bytes(b: u64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    format!("{:.1} GiB", b as f64 / GIB)
}
