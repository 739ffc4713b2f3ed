//! The sandbox a command enters once its model and inputs are known and before llama.cpp runs: Landlock limits
//! the file system to what the command needs, and a seccomp filter refuses sockets, so that a malicious GGUF or
//! image that took over the process could neither read other files nor reach the network.
//!
//! Owns: the [`Policy`] (which paths with what access, whether the network is needed), applying it to the process,
//! the user's choice (`--sandbox` required, default best effort, `--no-sandbox` off; see [`set_mode`]), the one
//! line it may print, the `MEDGEMMA_SANDBOX_PROBE` test hook, and the facts `doctor` reports (Landlock ABI,
//! seccomp support). Must not: decide what a command reads or writes (each command builds its policy from its
//! arguments), or touch llama.cpp.
//!
//! When to enter: before the first thread that must be confined starts. Landlock before ABI 8 covers the calling
//! thread and the threads it creates afterwards only; llama.cpp starts its OpenMP pool while the vision projector
//! loads (its warm-up) or at the first decode, so commands enter before `Engine::load`, and llama.cpp then opens the
//! model through the read rules. The seccomp filter is applied to every thread (TSYNC) and answers EPERM rather
//! than killing: libgomp misbehaves when a thread dies inside a parallel region.
//!
//! What stays allowed besides the command's own paths: reading the system libraries (for a late `dlopen`),
//! `/proc/self`, `/proc/cpuinfo`, `/sys/devices/system/cpu` and `/sys/fs/cgroup` (CPU detection and thread
//! counts), and reading and writing `/dev/null`. GPU builds skip the sandbox unless `--sandbox` is given: GPU
//! drivers open device files and shared memory that no policy here allows.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use landlock::{
    Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, RestrictSelfAttr, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use serde::Serialize;

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The default: enter the sandbox where the kernel supports it; otherwise print one notice and go on.
    BestEffort,
    /// `--sandbox`: refuse to run when the sandbox cannot be fully enforced.
    Required,
    /// `--no-sandbox`.
    Off,
}

static MODE: OnceLock<Mode> = OnceLock::new();
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Sets the mode for this process (from `--sandbox` / `--no-sandbox`); the first call wins.
pub fn set_mode(mode: Mode) {
    let _ = MODE.set(mode);
}

fn mode() -> Mode {
    MODE.get().copied().unwrap_or(Mode::BestEffort)
}

/// Whether this process is inside the sandbox.
pub fn is_active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// What a command keeps of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// No sockets at all: `socket`, `connect`, `bind`, `listen` and `accept` answer EPERM.
    None,
    /// A listening socket opened before entering keeps accepting connections; no new socket can be made and no
    /// connection can be opened (`serve`).
    KeepListening,
}

/// Why the sandbox could not be entered.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot set up the Landlock file-system rules: {0}")]
    Landlock(#[from] landlock::RulesetError),
    #[error("cannot allow {} in the sandbox: {source}", path.display())]
    Path {
        path: PathBuf,
        #[source]
        source: landlock::PathFdError,
    },
    #[error(
        "--sandbox was given but the sandbox cannot be fully enforced here ({0}); run without --sandbox to accept \
         a partial one (a notice says what is missing), or with --no-sandbox"
    )]
    NotEnforced(String),
}

/// How far the sandbox was enforced.
#[derive(Debug, Clone, Serialize)]
pub struct Enforcement {
    /// The kernel's Landlock ABI version (0 when Landlock is not available).
    pub landlock_abi: i32,
    /// Landlock's rules: "full", "partial" or "none".
    pub landlock: &'static str,
    /// Whether the Landlock rules cover every thread, including those started before (ABI 8).
    pub landlock_all_threads: bool,
    /// Whether the seccomp filter is installed (on every thread).
    pub seccomp: bool,
}

impl Enforcement {
    /// Fully enforced: every Landlock rule and the seccomp filter.
    pub fn is_full(&self) -> bool {
        self.landlock == "full" && self.seccomp
    }

    /// What is missing, for a notice or an error.
    pub fn missing(&self) -> String {
        let mut gaps = Vec::new();
        match self.landlock {
            "full" => {}
            "partial" => gaps.push(format!(
                "this kernel's Landlock ABI {} lacks some of the rules; ABI 6 (Linux 6.12) has them all",
                self.landlock_abi
            )),
            _ => gaps.push("Landlock is not available in this kernel".to_string()),
        }
        if !self.seccomp {
            gaps.push("the seccomp filter could not be installed (no sockets refused)".to_string());
        }
        gaps.join("; ")
    }

    fn summary(&self) -> String {
        format!(
            "Landlock ABI {} ({}{}), seccomp {}",
            self.landlock_abi,
            self.landlock,
            if self.landlock_all_threads { ", all threads" } else { "" },
            if self.seccomp { "on (no sockets)" } else { "off" }
        )
    }
}

/// One allowed path.
#[derive(Debug, Clone)]
struct Rule {
    path: PathBuf,
    access: Allow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Allow {
    /// Read a file, or list and read everything beneath a folder.
    Read,
    /// Create, replace, write and remove regular files beneath a folder (or write a file).
    Write,
    /// Read and map executable (the system libraries).
    Library,
    /// Read and write a device file such as /dev/null.
    ReadWriteDevice,
}

/// What a command may touch once inside the sandbox.
#[derive(Debug, Clone)]
pub struct Policy {
    command: &'static str,
    rules: Vec<Rule>,
    network: Network,
    verbose: bool,
}

impl Policy {
    /// A policy for `command` (named in messages) that allows only what the runtime needs, no network.
    pub fn new(command: &'static str) -> Policy {
        Policy {
            command,
            rules: Vec::new(),
            network: Network::None,
            verbose: false,
        }
    }

    /// Allows reading `path`: a file, or everything beneath a folder.
    pub fn read(mut self, path: impl AsRef<Path>) -> Policy {
        self.rules.push(Rule {
            path: path.as_ref().to_path_buf(),
            access: Allow::Read,
        });
        self
    }

    /// Allows reading a GGUF model: the file, and when it is one part of a split model
    /// (`NAME-00001-of-00003.gguf`), every part, which llama.cpp opens by name as it loads.
    pub fn read_model(self, path: impl AsRef<Path>) -> Policy {
        let path = path.as_ref();
        let parts = split_parts(path);
        self.read(path).read_all(parts)
    }

    /// [`Policy::read_model`] for each of `paths`.
    pub fn read_models<P: AsRef<Path>>(self, paths: impl IntoIterator<Item = P>) -> Policy {
        paths.into_iter().fold(self, Policy::read_model)
    }

    /// Allows reading each of `paths`.
    pub fn read_all<P: AsRef<Path>>(self, paths: impl IntoIterator<Item = P>) -> Policy {
        paths.into_iter().fold(self, Policy::read)
    }

    /// Allows writing the output file `path` the way [`crate::files::write_atomically`] does: creating, writing,
    /// renaming and removing regular files in its folder.
    pub fn write_beside(self, path: impl AsRef<Path>) -> Policy {
        let dir = match path.as_ref().parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        self.write_beneath(dir)
    }

    /// [`Policy::write_beside`] for each of `paths` (e.g. an optional output).
    pub fn write_beside_each<P: AsRef<Path>>(self, paths: impl IntoIterator<Item = P>) -> Policy {
        paths.into_iter().fold(self, Policy::write_beside)
    }

    /// Allows creating, writing and removing regular files beneath the folder `dir`.
    pub fn write_beneath(mut self, dir: impl AsRef<Path>) -> Policy {
        self.rules.push(Rule {
            path: dir.as_ref().to_path_buf(),
            access: Allow::Write,
        });
        self
    }

    /// Write access to the cache folder that holds the image embedding cache (and the remembered SHA-256 of the
    /// projector), created first when missing; nothing when the cache is off or cannot be made (the engine then
    /// goes on without it).
    pub fn image_cache(self, cache: Option<&crate::image_cache::DiskCache>) -> Policy {
        match cache {
            Some(cache) if cache.ensure_dir().is_ok() => {
                let root = cache.dir().parent().unwrap_or(cache.dir()).to_path_buf();
                self.write_beneath(root)
            }
            _ => self,
        }
    }

    /// Sets what the command keeps of the network (none by default).
    #[allow(dead_code)] // no command serves yet
    pub fn network(mut self, network: Network) -> Policy {
        self.network = network;
        self
    }

    /// With `--verbose`, one line on stderr says what was enforced.
    pub fn verbose(mut self, verbose: bool) -> Policy {
        self.verbose = verbose;
        self
    }

    /// Enters the sandbox as the user asked (`--sandbox`, default, `--no-sandbox`). Returns what was enforced,
    /// `None` when the sandbox is off. Best effort prints one notice when something could not be enforced;
    /// `--sandbox` makes that an error.
    pub fn enter(self) -> Result<Option<Enforcement>, SandboxError> {
        let mode = mode();
        if mode == Mode::Off {
            return Ok(None);
        }
        if cfg!(any(feature = "cuda", feature = "vulkan", feature = "metal")) && mode == Mode::BestEffort {
            if self.verbose {
                eprintln!("medgemma: sandbox: skipped in GPU builds (pass --sandbox to try it anyway)");
            }
            return Ok(None);
        }
        let enforcement = match self.apply() {
            Ok(e) => e,
            Err(e) if mode == Mode::BestEffort => {
                eprintln!("medgemma: sandbox: not entered ({e}); {} runs without it", self.command);
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if !enforcement.is_full() {
            if mode == Mode::Required {
                return Err(SandboxError::NotEnforced(enforcement.missing()));
            }
            eprintln!(
                "medgemma: sandbox: only partly enforced ({}); --no-sandbox turns it off, --sandbox requires it",
                enforcement.missing()
            );
        } else if self.verbose {
            eprintln!("medgemma: sandbox: {}: {}", self.command, enforcement.summary());
        }
        probe_from_env();
        Ok(Some(enforcement))
    }

    /// Applies the policy now, whatever the mode: Landlock (best effort), then the seccomp filter on all threads.
    pub fn apply(&self) -> Result<Enforcement, SandboxError> {
        let abi = landlock_abi();
        let (landlock, all_threads) = self.apply_landlock(abi)?;
        if landlock != "none" {
            ACTIVE.store(true, Ordering::Relaxed);
        }
        // Landlock is in force from here: a failed filter leaves a partial sandbox, reported as such.
        let seccomp = seccomp_filter(self.network).is_ok();
        Ok(Enforcement {
            landlock_abi: abi,
            landlock,
            landlock_all_threads: all_threads,
            seccomp,
        })
    }

    /// Every rule: the command's own, then the runtime's.
    fn all_rules(&self) -> Vec<Rule> {
        let mut rules = self.rules.clone();
        let libraries = ["/usr/lib", "/usr/lib64", "/lib", "/lib64", "/etc/ld.so.cache"];
        rules.extend(libraries.iter().map(|p| Rule {
            path: PathBuf::from(p),
            access: Allow::Library,
        }));
        let read = [
            "/proc/self",
            "/proc/cpuinfo",
            "/sys/devices/system/cpu",
            "/sys/fs/cgroup",
        ];
        rules.extend(read.iter().map(|p| Rule {
            path: PathBuf::from(p),
            access: Allow::Read,
        }));
        rules.push(Rule {
            path: PathBuf::from("/dev/null"),
            access: Allow::ReadWriteDevice,
        });
        rules
    }

    fn apply_landlock(&self, abi: i32) -> Result<(&'static str, bool), SandboxError> {
        use landlock::Ruleset;
        // The file-system rights of ABI 5 (ioctl on devices included), TCP bind and connect (ABI 4; no rule allows
        // a port), and the scopes of ABI 6 (signals and abstract UNIX sockets stay inside the sandbox). A kernel
        // with an older ABI enforces what it knows: the status then says partial.
        let fs_abi = ABI::V5;
        let net: BitFlags<AccessNet> = match self.network {
            Network::None => AccessNet::from_all(ABI::V4),
            Network::KeepListening => AccessNet::ConnectTcp.into(),
        };
        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(AccessFs::from_all(fs_abi))?
            .handle_access(net)?
            .scope(Scope::from_all(ABI::V6))?
            .create()?;
        for rule in self.all_rules() {
            let Ok(meta) = std::fs::metadata(&rule.path) else {
                // A missing path needs no rule: opening it fails anyway.
                continue;
            };
            let access: BitFlags<AccessFs> = match (rule.access, meta.is_dir()) {
                (Allow::Read, true) => AccessFs::ReadFile | AccessFs::ReadDir,
                (Allow::Read, false) => AccessFs::ReadFile.into(),
                (Allow::Library, true) => AccessFs::from_read(fs_abi),
                (Allow::Library, false) => AccessFs::ReadFile | AccessFs::Execute,
                (Allow::Write, true) => {
                    AccessFs::ReadFile
                        | AccessFs::ReadDir
                        | AccessFs::WriteFile
                        | AccessFs::Truncate
                        | AccessFs::MakeReg
                        | AccessFs::RemoveFile
                }
                (Allow::Write, false) => AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate,
                (Allow::ReadWriteDevice, _) => AccessFs::ReadFile | AccessFs::WriteFile,
            };
            let fd = PathFd::new(&rule.path).map_err(|source| SandboxError::Path {
                path: rule.path.clone(),
                source,
            })?;
            ruleset = ruleset.add_rule(PathBeneath::new(fd, access))?;
        }
        if abi >= 8 {
            ruleset = ruleset.all_threads(true)?;
        }
        let status = ruleset.restrict_self()?;
        let level = match status.ruleset {
            RulesetStatus::FullyEnforced => "full",
            RulesetStatus::PartiallyEnforced => "partial",
            RulesetStatus::NotEnforced => "none",
        };
        Ok((level, status.all_threads))
    }
}

/// The other parts of a split GGUF, named as llama.cpp names them (`PREFIX-%05d-of-%05d.gguf`); none for a
/// file whose name is not such a part.
fn split_parts(path: &Path) -> Vec<PathBuf> {
    let Some(stem) = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".gguf"))
    else {
        return Vec::new();
    };
    // PREFIX-00001-of-00003
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    let Some((prefix, index, count)) = stem
        .rsplit_once("-of-")
        .and_then(|(rest, count)| rest.rsplit_once('-').map(|(prefix, index)| (prefix, index, count)))
    else {
        return Vec::new();
    };
    if !digits(count) || !digits(index) {
        return Vec::new();
    }
    let count: u32 = count.parse().unwrap_or(0);
    (1..=count)
        .map(|i| path.with_file_name(format!("{prefix}-{i:05}-of-{count:05}.gguf")))
        .filter(|p| p != path)
        .collect()
}

/// The kernel's Landlock ABI version, 0 when Landlock is not built in or not enabled.
pub fn landlock_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute and size 0, this call only returns the ABI version (or an error).
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    i32::try_from(v).unwrap_or(0).max(0)
}

/// Whether this kernel accepts seccomp filters that answer with an errno.
pub fn seccomp_supported() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail")
        .is_ok_and(|a| a.split_whitespace().any(|w| w == "errno"))
        && cfg!(any(
            target_arch = "x86_64",
            target_arch = "aarch64",
            target_arch = "riscv64"
        ))
}

/// Installs the socket filter on every thread of the process.
fn seccomp_filter(network: Network) -> Result<(), String> {
    use seccompiler::{SeccompAction, SeccompFilter, TargetArch};
    let arch = if cfg!(target_arch = "x86_64") {
        TargetArch::x86_64
    } else if cfg!(target_arch = "aarch64") {
        TargetArch::aarch64
    } else if cfg!(target_arch = "riscv64") {
        TargetArch::riscv64
    } else {
        return Err("no seccomp filter for this architecture".into());
    };
    let mut denied = vec![libc::SYS_socket, libc::SYS_connect, libc::SYS_bind, libc::SYS_listen];
    if network == Network::None {
        denied.extend([libc::SYS_accept, libc::SYS_accept4]);
    }
    // An empty rule list matches every call of the syscall, whatever its arguments.
    let rules = denied.into_iter().map(|nr| (nr, Vec::new())).collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    let program: seccompiler::BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())?;
    seccompiler::apply_filter_all_threads(&program).map_err(|e| e.to_string())
}

/// A hint for an error the sandbox may have caused (a refused read or write while the sandbox is on), e.g. chat's
/// `/image` of a file outside the current folder. The io error is found in the chain, or in the text of an error
/// that holds it without making it its source (the convention of `ImageError` and others).
pub fn denied_hint(error: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    if !is_active() {
        return None;
    }
    let denied = std::io::Error::from_raw_os_error(libc::EACCES).to_string();
    let mut next = Some(error);
    while let Some(e) = next {
        let is_io = e
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied);
        if is_io || e.to_string().contains(&denied) {
            return Some(
                "the sandbox allows only the files this command was started with (chat: also what is beneath the \
                 current folder); start from the folder that holds the file, or pass --no-sandbox",
            );
        }
        next = e.source();
    }
    None
}

/// The test hook `MEDGEMMA_SANDBOX_PROBE`: a path to read, or `tcp:HOST:PORT` to connect to, right after
/// entering; the outcome goes to stderr as `medgemma: sandbox probe: ...: allowed|denied (...)`.
fn probe_from_env() {
    let Some(target) = std::env::var_os("MEDGEMMA_SANDBOX_PROBE").filter(|v| !v.is_empty()) else {
        return;
    };
    let target = target.to_string_lossy().into_owned();
    let outcome = match target.strip_prefix("tcp:") {
        Some(addr) => std::net::TcpStream::connect(addr).map(|_| "connected".to_string()),
        None => std::fs::read(&target).map(|b| format!("{} bytes", b.len())),
    };
    match outcome {
        Ok(what) => eprintln!("medgemma: sandbox probe: {target}: allowed ({what})"),
        Err(e) => eprintln!("medgemma: sandbox probe: {target}: denied ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Applying a policy confines the whole test process, so these tests only look at what would be applied;
    // tests/sandbox.rs applies it, in the real binary.

    #[test]
    fn an_output_allows_its_folder() {
        let p = Policy::new("t")
            .write_beside("out/logits.json")
            .write_beside("logits.json");
        let dirs: Vec<_> = p.rules.iter().map(|r| (r.path.clone(), r.access)).collect();
        assert_eq!(
            dirs,
            [(PathBuf::from("out"), Allow::Write), (PathBuf::from("."), Allow::Write)]
        );
        let none: Option<PathBuf> = None;
        assert!(Policy::new("t").write_beside_each(&none).rules.is_empty());
    }

    #[test]
    fn a_split_model_allows_every_part() {
        let parts = split_parts(Path::new("/m/big-00002-of-00003.gguf"));
        assert_eq!(
            parts,
            [
                PathBuf::from("/m/big-00001-of-00003.gguf"),
                PathBuf::from("/m/big-00003-of-00003.gguf")
            ]
        );
        assert!(split_parts(Path::new("/m/model-q4_k_m.gguf")).is_empty());
        assert!(split_parts(Path::new("/m/a-1-of-3.gguf")).is_empty());
    }

    #[test]
    fn the_runtime_rules_come_after_the_commands() {
        let rules = Policy::new("t").read("model.gguf").all_rules();
        assert_eq!(rules[0].path, PathBuf::from("model.gguf"));
        assert!(rules
            .iter()
            .any(|r| r.path == Path::new("/proc/cpuinfo") && r.access == Allow::Read));
        assert!(
            rules.iter().all(|r| r.access != Allow::Write),
            "the runtime writes nothing"
        );
    }

    #[test]
    fn missing_parts_are_named() {
        let mut e = Enforcement {
            landlock_abi: 7,
            landlock: "full",
            landlock_all_threads: false,
            seccomp: true,
        };
        assert!(e.is_full() && e.missing().is_empty());
        e.landlock = "partial";
        e.seccomp = false;
        assert!(!e.is_full());
        assert!(
            e.missing().contains("Landlock ABI 7") && e.missing().contains("seccomp"),
            "{}",
            e.missing()
        );
    }

    #[test]
    fn the_hint_needs_an_active_sandbox() {
        let e = std::io::Error::from_raw_os_error(libc::EACCES);
        // Unit tests never enter the sandbox.
        assert!(denied_hint(&e).is_none());
    }
}
