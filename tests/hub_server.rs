//! A local stand-in for the Hugging Face hub on 127.0.0.1, for `tests/hub.rs`: it serves the hub's routes
//! (`HEAD`/`GET /{repo}/resolve/main/{file}` with Range requests, X-Repo-Commit, ETag / X-Linked-Etag (SHA-256),
//! X-Linked-Size, Content-Length; `GET /api/models/{repo}/revision/main`) from files held in memory, records every
//! request, and can misbehave on purpose (a status for a repository, a corrupted body, a connection dropped or
//! stalled mid-file). No test ever talks to the real hub.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
}

/// How the next GETs of a file misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Send the headers and this many bytes of the body, then close the connection.
    DropAfter(usize),
    /// Send this many bytes, then stall (until the client goes away).
    StallAfter(usize),
    /// Send the whole body with one byte changed (the ETag stays the real SHA-256).
    Corrupt,
}

#[derive(Default)]
struct State {
    files: HashMap<String, HashMap<String, Vec<u8>>>,
    status: HashMap<String, u16>,
    faults: HashMap<(String, String), Vec<Fault>>,
    seen: Vec<Seen>,
}

#[derive(Clone)]
pub struct HubServer {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// A stable fake commit id for a repository (40 hex digits).
pub fn commit_of(repo: &str) -> String {
    sha256_hex(repo.as_bytes())[..40].to_string()
}

impl HubServer {
    pub fn start() -> HubServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = handle(stream, &s);
                });
            }
        });
        HubServer { endpoint, state }
    }

    pub fn add_file(&self, repo: &str, name: &str, bytes: Vec<u8>) {
        let mut st = self.state.lock().unwrap();
        st.files.entry(repo.into()).or_default().insert(name.into(), bytes);
    }

    pub fn add_path(&self, repo: &str, name: &str, path: &Path) {
        self.add_file(repo, name, std::fs::read(path).unwrap());
    }

    /// Every request for this repository answers `status`.
    pub fn set_status(&self, repo: &str, status: u16) {
        self.state.lock().unwrap().status.insert(repo.into(), status);
    }

    /// The next GETs of `repo`/`file` misbehave, one fault each, in order.
    pub fn fault(&self, repo: &str, file: &str, faults: Vec<Fault>) {
        self.state
            .lock()
            .unwrap()
            .faults
            .insert((repo.into(), file.into()), faults);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// The GET requests for files (not metadata, not HEAD).
    pub fn file_gets(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == "GET" && s.path.contains("/resolve/"))
            .collect()
    }
}

fn handle(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let seen = Seen {
        method: method.clone(),
        path: path.clone(),
        range: headers.get("range").cloned(),
        authorization: headers.get("authorization").cloned(),
    };
    state.lock().unwrap().seen.push(seen);
    let mut out = stream;

    if let Some(rest) = path.strip_prefix("/api/models/") {
        let repo = rest.split("/revision/").next().unwrap_or_default().to_string();
        let st = state.lock().unwrap();
        if let Some(&status) = st.status.get(&repo) {
            return respond(&mut out, status, &[], b"");
        }
        let Some(files) = st.files.get(&repo) else {
            return respond(&mut out, 404, &[("X-Error-Code", "RepoNotFound".into())], b"");
        };
        let siblings: Vec<_> = files.keys().map(|f| serde_json::json!({ "rfilename": f })).collect();
        let body = serde_json::json!({ "id": repo, "sha": commit_of(&repo), "siblings": siblings }).to_string();
        return respond(
            &mut out,
            200,
            &[("Content-Type", "application/json".into())],
            body.as_bytes(),
        );
    }

    let Some((repo, file)) = path.trim_start_matches('/').split_once("/resolve/main/") else {
        return respond(&mut out, 404, &[], b"");
    };
    let (repo, file) = (repo.to_string(), file.to_string());
    let (bytes, fault) = {
        let mut st = state.lock().unwrap();
        if let Some(&status) = st.status.get(&repo) {
            drop(st);
            return respond(&mut out, status, &[("X-Error-Code", "GatedRepo".into())], b"");
        }
        let Some(bytes) = st.files.get(&repo).and_then(|f| f.get(&file)).cloned() else {
            drop(st);
            return respond(&mut out, 404, &[("X-Error-Code", "EntryNotFound".into())], b"");
        };
        let fault = if method == "GET" {
            st.faults
                .get_mut(&(repo.clone(), file.clone()))
                .and_then(|f| (!f.is_empty()).then(|| f.remove(0)))
        } else {
            None
        };
        (bytes, fault)
    };
    let sha = sha256_hex(&bytes);
    let len = bytes.len();
    let mut common = vec![
        ("X-Repo-Commit", commit_of(&repo)),
        ("ETag", format!("\"{sha}\"")),
        ("X-Linked-Etag", format!("\"{sha}\"")),
        ("X-Linked-Size", len.to_string()),
        ("Accept-Ranges", "bytes".into()),
    ];
    if method == "HEAD" {
        common.push(("Content-Length", len.to_string()));
        return respond_head(&mut out, 200, &common);
    }
    let start = headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = bytes[start.min(len)..].to_vec();
    if fault == Some(Fault::Corrupt) {
        let mid = body.len() / 2;
        body[mid] ^= 0xff;
    }
    let status = if start > 0 { 206 } else { 200 };
    if start > 0 {
        common.push(("Content-Range", format!("bytes {start}-{}/{len}", len - 1)));
    }
    common.push(("Content-Length", body.len().to_string()));
    write_head(&mut out, status, &common)?;
    match fault {
        Some(Fault::DropAfter(n)) => {
            out.write_all(&body[..n.min(body.len())])?;
            out.flush()?;
            out.shutdown(std::net::Shutdown::Both)
        }
        Some(Fault::StallAfter(n)) => {
            out.write_all(&body[..n.min(body.len())])?;
            out.flush()?;
            std::thread::sleep(Duration::from_secs(120));
            Ok(())
        }
        _ => {
            out.write_all(&body)?;
            out.flush()
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Status",
    }
}

fn write_head(out: &mut TcpStream, status: u16, headers: &[(&str, String)]) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\nConnection: close\r\n", reason(status));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())
}

fn respond_head(out: &mut TcpStream, status: u16, headers: &[(&str, String)]) -> std::io::Result<()> {
    write_head(out, status, headers)?;
    out.flush()
}

fn respond(out: &mut TcpStream, status: u16, headers: &[(&str, String)], body: &[u8]) -> std::io::Result<()> {
    let mut h = headers.to_vec();
    h.push(("Content-Length", body.len().to_string()));
    write_head(out, status, &h)?;
    out.write_all(body)?;
    out.flush()
}
