//! Installs the pinned Claude Code CLI from npm into a cache folder under the target directory,
//! once per cache, and hands out the path of its `claude` executable.
//!
//! The version is pinned exactly: an unpinned install on an older Node silently picks an old
//! release. The install goes to a scratch folder first and is renamed into place only once the
//! installed binary reports the pinned version, so an interrupted install never leaves a broken
//! cache behind. When npm or its registry cannot be reached the suite fails, loudly; it never
//! skips.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The Claude Code release this suite pins; bump it together with the fixtures.
pub const VERSION: &str = "2.1.331";

/// The npm package, pinned.
fn package() -> String {
    format!("@anthropic-ai/claude-code@{VERSION}")
}

/// `<target>/claude-code-cache/claude-code-<VERSION>`, reused when present; the folder above
/// `claude-code-<VERSION>` can be moved with `ORCH_CLAUDE_CODE_CACHE` (a CI cache, say).
pub fn cache_dir() -> PathBuf {
    let base = match std::env::var_os("ORCH_CLAUDE_CODE_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => {
            // CARGO_TARGET_TMPDIR is `<target>/tmp`; the cache sits beside it.
            let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
            tmp.parent().unwrap_or(tmp).join("claude-code-cache")
        }
    };
    base.join(format!("claude-code-{VERSION}"))
}

/// The installed `claude`, installing it on first use. Panics with the reason when it cannot.
pub fn claude() -> PathBuf {
    static CLAUDE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match CLAUDE.get_or_init(|| install(&cache_dir())) {
        Ok(path) => path.clone(),
        Err(why) => panic!(
            "\n\nThe Claude Code suite needs {} from npm and could not get it:\n{why}\n\
             It does not skip: install Node.js and npm and make https://registry.npmjs.org \
             reachable (or run `npm install --prefix {} {}` once by hand).\n",
            package(),
            cache_dir().display(),
            package(),
        ),
    }
}

fn bin(prefix: &Path) -> PathBuf {
    prefix.join("node_modules/.bin/claude")
}

fn install(dir: &Path) -> Result<PathBuf, String> {
    if version_of(&bin(dir)).is_ok() {
        return Ok(bin(dir));
    }
    let parent = dir.parent().expect("the cache folder has a parent");
    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let scratch = parent.join(format!(
        "{}.partial-{}",
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("claude"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&scratch);
    eprintln!(
        "installing {} into {} (once; reused afterwards)",
        package(),
        dir.display()
    );
    let out = Command::new("npm")
        // npm's own cache first (an offline machine that installed once still can); against an
        // unreachable registry, one quick retry rather than minutes of them.
        .args([
            "install",
            "--prefer-offline",
            "--no-audit",
            "--no-fund",
            "--fetch-retries=1",
            "--fetch-retry-mintimeout=2000",
            "--fetch-retry-maxtimeout=5000",
            "--prefix",
        ])
        .arg(&scratch)
        .arg(package())
        .output()
        .map_err(|e| format!("could not run npm: {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&scratch);
        return Err(format!(
            "`npm install {}` failed ({}):\n{}{}",
            package(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // The package's postinstall swaps a placeholder for the platform's native binary. An npm
    // that holds install scripts back leaves the placeholder: run the script ourselves then.
    if version_of(&bin(&scratch)).is_err() {
        let script = scratch.join("node_modules/@anthropic-ai/claude-code/install.cjs");
        let _ = Command::new("node")
            .arg(&script)
            .current_dir(script.parent().unwrap_or(&scratch))
            .status();
    }
    // A scratch install that does not check out is removed, not left behind (230 MB each).
    let version = version_of(&bin(&scratch)).inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&scratch);
    })?;
    if !version.starts_with(VERSION) {
        let _ = std::fs::remove_dir_all(&scratch);
        return Err(format!(
            "installed claude reports {version:?}, not {VERSION}"
        ));
    }
    // Another process may have won the race; its install is as good as ours.
    if std::fs::rename(&scratch, dir).is_err() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    version_of(&bin(dir))?;
    Ok(bin(dir))
}

/// `claude --version`, checked against the pin; inside a network namespace of its own, like
/// every other run of the CLI here.
fn version_of(claude: &Path) -> Result<String, String> {
    let mut cmd = Command::new(claude);
    // SAFETY: unshare(2) is a plain system call, safe between fork and exec. The forked child
    // still holds this process's capabilities (root's, or those of the suite's own user
    // namespace, see `sandbox`); `unshare -n` as a program would lose the latter at exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
        });
    }
    let out = cmd
        .arg("--version")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .output()
        .map_err(|e| format!("{}: {e}", claude.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && text.starts_with(VERSION) {
        Ok(text)
    } else {
        Err(format!(
            "{} --version said {text:?} ({}) {}",
            claude.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
