//! Support of goods_images.rs: a real S3-compatible server (moto's server mode, from the
//! virtualenv scripts/venv.sh makes), listing what a store holds without the app's code,
//! multipart bodies and real image files.

use std::{
    io::{BufRead, BufReader, Cursor},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};

/// `moto_server` on a free port, killed when dropped.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

/// Where scripts/venv.sh installs moto (`make test` runs it before the Rust tests), unless
/// FLOODGATE_MOTO_SERVER names another `moto_server`.
fn moto_server_path() -> PathBuf {
    if let Ok(p) = std::env::var("FLOODGATE_MOTO_SERVER") {
        return p.into();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.data/venv-chart/bin/moto_server")
}

impl Moto {
    /// Starts the server and waits until it answers; fails the test with the reason if it
    /// cannot (never skips).
    pub fn start() -> Self {
        let path = moto_server_path();
        assert!(
            path.exists(),
            "the S3-compatible test server is missing: {} does not exist. Run `bash scripts/venv.sh` \
             (scripts/test.sh does before the Rust tests) to install moto from tests/chart/requirements.txt, \
             or set FLOODGATE_MOTO_SERVER to a moto_server",
            path.display()
        );
        let mut child = Command::new(&path)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && let Some(at) = line.find("Running on http://") {
                    let url = line[at + "Running on ".len()..].trim().to_owned();
                    let _ = tx.send(url);
                    sent = true;
                }
            }
        });
        let endpoint = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                panic!(
                    "{} did not report its address within 30 s (exit: {status:?})",
                    path.display()
                )
            }
        };
        Self { child, endpoint }
    }

    /// Creates `bucket` (moto does not check signatures, so a plain PUT does).
    pub async fn create_bucket(&self, bucket: &str) {
        let res = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "create bucket: {}", res.status());
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a store holds, read without the app's code: the folder walked with std::fs, or the
/// bucket listed with a plain ListObjectsV2 request.
pub enum Objects {
    Folder(PathBuf),
    Bucket { endpoint: String, bucket: String },
}

impl Objects {
    /// The keys under `prefix` (e.g. `goods/12/`), sorted.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let mut keys = match self {
            Self::Folder(root) => {
                let mut out = Vec::new();
                walk(root, root, &mut out);
                out.retain(|k| k.starts_with(prefix));
                out
            }
            Self::Bucket { endpoint, bucket } => {
                let xml = reqwest::Client::new()
                    // prefixes here are `goods/<id>/`: nothing to escape but the slashes
                    .get(format!(
                        "{endpoint}/{bucket}?list-type=2&prefix={}",
                        prefix.replace('/', "%2F")
                    ))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                xml.split("<Key>")
                    .skip(1)
                    .map(|s| s.split("</Key>").next().unwrap().to_owned())
                    .collect()
            }
        };
        keys.sort();
        keys
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.map(Result::unwrap) {
        let path = entry.path();
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            let key = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.push(key);
        }
    }
}

/// A multipart/form-data body of `parts` (name, file name, Content-Type, bytes); returns the
/// request's Content-Type and the body.
pub fn multipart(parts: &[(&str, &str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "floodgate-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, file, content_type, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        body.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(format!("Content-Type: {content_type}\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A real image file of `w` x `h` pixels.
pub fn image_file(w: u32, h: u32, format: ImageFormat) -> Vec<u8> {
    let img = match format {
        ImageFormat::Png => DynamicImage::ImageRgba8(RgbaImage::from_fn(w, h, |x, y| {
            Rgba([(x % 256) as u8, (y % 256) as u8, 128, 255])
        })),
        _ => DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
            Rgb([(x % 256) as u8, (y % 256) as u8, 64])
        })),
    };
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), format).unwrap();
    out
}
